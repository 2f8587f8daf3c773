"""Run configuration: plain YAML files mapped onto typed dataclasses, validated before any work.

`load(path)` reads a file; `validate(config, source)` checks every value (types from the
dataclass annotations, ranges, registered names, each compare entry's model and loss and
their compatibility) and returns the parsed entries, so a bad value stops a run with one
line naming the key before any data is read or any model is trained. Every run writes the
exact configuration it used (`config.yaml`) next to its results, so
`facemarks compare --config runs/x/config.yaml` repeats it.

Compare entries (`losses:`) are written either as strings -- a loss spec for the config's
model (`wing:w=10,epsilon=2`) or `MODEL+LOSS` (`dsnet_heatmap+awing`) -- or as mappings
that need no string parsing: `{model: dsnet, loss: wing, params: {w: 10, epsilon: 2}}`
(`model` may itself be a mapping `{name, kwargs, pretrained}`; `name` sets the label).

A mapping entry may also train under other data conditions than the config's:
`overrides: {data: {sampler, sampler_params, synthetic_mix}, augment: {enabled, params}}`.
Each key given replaces that field of the config for this entry only (`config_for_entry`;
training sampling and augmentation only: the test set, the crop and the validation faces
stay those of the config, so every entry is still evaluated on the same crops). An entry
with overrides needs a `name`, its label in reports and run folders.

A mapping entry may weight face regions in its loss: `region_weights: {eyes: 2, mouth: 1.5}`
(facemarks.losses.regions; it needs a `name` too), or learn them: `region_attention: true` (per-face
weights from the backbone's pooled features, facemarks.losses.regions.RegionAttention; a
regression model, a point loss and task "landmark"; a `name` too). Its `model` mapping may start from
another run's checkpoint: `{name: dsnet_heatmap, init: FILE, init_layers: n, freeze: n}`
(the config's own `model` takes the same keys; facemarks.engine.transfer).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from facemarks import fileio
from facemarks.data.convert import TARGETS
from facemarks.errors import ConfigError, DataError, FacemarksError, UnknownNameError


@dataclass
class SyntheticMix:
    """Synthetic faces of thin poses added to the training split (facemarks.data.mix): `share`
    = added faces / real training faces (0: none), each rendered with |yaw| uniform in
    [min_abs_yaw, max_abs_yaw] degrees (either side), faces `seed` of the renderer."""

    share: float = 0.0
    min_abs_yaw: float = 30.0
    max_abs_yaw: float = 60.0
    seed: int = 0


@dataclass
class DataConfig:
    spec: str = "synthetic"          # FORMAT:PATH, or "synthetic"
    train_split: str = "train"
    val_split: str | None = "val"    # None: hold out `val_fraction` of the training faces
    val_fraction: float = 0.1
    test_split: str = "test"
    points: str | None = None        # train and test on other points: "5pt" or "300w" (facemarks.data.convert)
    cache_dir: str | None = None     # crop cache; default $FACEMARKS_CACHE or ~/.cache/facemarks
    num_workers: int = 0             # DataLoader worker processes (0: load in the training process)
    sampler: str = "uniform"         # order of training samples (facemarks.data.samplers)
    sampler_params: dict = field(default_factory=dict)  # the sampler's parameters (see its PARAMS)
    synthetic_mix: SyntheticMix = field(default_factory=SyntheticMix)


@dataclass
class ModelConfig:
    """The model; `init`, `init_layers` and `freeze` start it from another run's checkpoint
    (facemarks.engine.transfer: what is copied, what a layer is, what freezing does)."""

    name: str = "dsnet"
    kwargs: dict = field(default_factory=dict)
    pretrained: str | None = None    # local file of torchvision-format ImageNet weights
    init: str | None = None          # facemarks checkpoint of the same model family to start from
    init_layers: int | None = None   # copy only the first n layers (model.feature_layers); None: every match
    freeze: int = 0                  # freeze the first n layers (weights and BatchNorm statistics)


@dataclass
class CropConfig:
    """How faces are cut out (facemarks.geometry.crop): "box" (square around the face box,
    side max(w, h) * (1 + margin)) or "align" (similarity onto a five-point template)."""

    policy: str = "box"
    margin: float = 0.25              # box crops
    template: list | None = None      # align crops: 5 (x, y) normalised points; None: the default


@dataclass
class AugmentSettings:
    """Training augmentation; see facemarks.data.augment.AugmentConfig for the meaning of each."""

    enabled: bool = True
    params: dict = field(default_factory=dict)  # overrides of AugmentConfig's defaults


@dataclass
class OptimConfig:
    optimizer: str = "adamw"         # "sgd" (the reference) or "adamw"
    lr: float = 4e-3
    momentum: float = 0.9            # SGD only
    weight_decay: float = 1e-4
    schedule: str = "cosine"         # "cosine" or "step"
    warmup_epochs: float = 1.0
    milestones: list = field(default_factory=lambda: [0.6, 0.85])  # step schedule, fractions of training
    gamma: float = 0.1
    grad_clip: float | None = 10.0   # max gradient norm; None disables


@dataclass
class TaskConfig:
    """What training optimises (facemarks.engine.task): "landmark" (the model and its loss) or
    "distill" (a student learning from the data and from a frozen teacher checkpoint)."""

    name: str = "landmark"
    teacher: str | None = None       # distill: the teacher's checkpoint file
    data_weight: float = 1.0         # distill: weight of the loss on the annotations
    output_weight: float = 1.0       # distill: MSE between student and teacher outputs
    feature_weight: float = 1.0      # distill: MSE between feature maps (1x1-conv adapted)
    features: list | None = None     # distill: [[student_layer, teacher_layer], ...]; None: every student block


@dataclass
class TuneLrConfig:
    """`facemarks compare --tune-lr` (facemarks.experiments.lr_sweep): a short learning-rate
    sweep per entry, scored on the validation split, then every entry trained in full at its
    best rate besides the runs at the shared optim.lr."""

    enabled: bool = False
    factors: list | None = None      # rates as multiples of optim.lr; with no grid either: DEFAULT_LR_FACTORS
    grid: list | None = None         # the rates themselves (instead of factors)
    epochs_fraction: float = 0.25    # a sweep run trains this share of `epochs` (at least one epoch)


@dataclass
class StabilityConfig:
    """Stability of every compared run, measured by `compare` after its NME
    (facemarks.experiments.compare.run_stability, facemarks.engine.stability): the per-face
    perturbation jitter of the test crops and, with `video_faces`, the video jitter and NME
    of moving-face videos of the first test faces. Every run sees the same perturbation
    draws and videos (a function of `seed` alone), so entries pair face by face."""

    jitter_k: int = 0                # perturbed versions per test face (>= 2); 0: no stability measured
    perturbations: list | None = None  # PERTURBATIONS names; None: stability.DEFAULT_PERTURBATIONS
    video_faces: int = 0             # moving-face videos of the first n test faces (needs jitter_k)
    seed: int = 0                    # the perturbation draws' seed, the same for every run


DEFAULT_LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)  # a log2 grid around optim.lr
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class Config:
    name: str = "facemarks"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    input_size: int = 96
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    optim: OptimConfig = field(default_factory=OptimConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    tune_lr: TuneLrConfig = field(default_factory=TuneLrConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    losses: list = field(default_factory=lambda: ["mpd", "huber", "wing:w=10,epsilon=2"])
    epochs: int = 30
    batch_size: int = 32
    seeds: list = field(default_factory=lambda: [0])
    channels_last: bool = True
    flip_test: bool = False           # test-time augmentation: average with the mirrored crop
    threads: int | None = None        # torch intra-op threads; None keeps torch's default
    device: str = "auto"              # training device: auto (CUDA when present), cpu, cuda, cuda:N
    precision: str = "fp32"           # training arithmetic: fp32, bf16 (autocast), fp16 (autocast + GradScaler, CUDA only)


@dataclass
class Entry:
    """One compared configuration: a model (with its kwargs), a loss with its parameters and
    the config fields it trains with instead of the config's (`overrides`, see the module doc)."""

    label: str
    model: ModelConfig
    loss: str
    params: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    region_weights: dict = field(default_factory=dict)  # {region: weight} (facemarks.losses.regions)
    region_attention: bool = False  # learned per-region weights (facemarks.losses.regions.RegionAttention)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        # Fields at their defaults are left out, so entries are written as before (resumable runs).
        for key in ("overrides", "region_weights", "region_attention"):
            if not values[key]:
                del values[key]
        for key, default in (("init", None), ("init_layers", None), ("freeze", 0)):
            if values["model"][key] == default:
                del values["model"][key]
        return values


# Fields an entry may override: what is sampled and how it is augmented for training, never
# what the entries are evaluated on (test split, crop, validation faces, input size).
OVERRIDABLE = {"data": ("sampler", "sampler_params", "synthetic_mix"), "augment": ("enabled", "params")}


# ----------------------------------------------------------------------------- reading


def _build(cls, values, source: str, where: str):
    if not isinstance(values, dict):
        raise ConfigError(source, where.rstrip(".") or "config", f"must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(source, where + unknown[0], f"unknown key; valid: {', '.join(sorted(hints))}")
    kwargs = {}
    for name, value in values.items():
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, source, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, hints[name], source, where + name)
    return cls(**kwargs)


def _coerce(value, annotation, source: str, key: str):
    """`value` checked against a field's annotation (int, float, str, bool, list, dict, X | None)."""
    allowed = typing.get_args(annotation) or (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, str):
            try:  # YAML 1.1 reads 1e-4 (no dot) as text
                value = float(value)
            except ValueError:
                continue
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in (str, bool, list, dict) and isinstance(value, kind):
            return value
    names = " or ".join("null" if k is type(None) else k.__name__ for k in allowed)
    raise ConfigError(source, key, f"must be {names}, got {value!r}")


def from_dict(values: dict, source: str = "<config>") -> Config:
    values = dict(values or {})
    if "crop_margin" in values:  # the first format's key
        values.setdefault("crop", {})["margin"] = values.pop("crop_margin")
    if isinstance(values.get("seeds"), int) and not isinstance(values["seeds"], bool):
        values["seeds"] = list(range(values["seeds"]))  # `seeds: 3` means seeds 0, 1, 2
    return _build(Config, values, source, "")


def load(path) -> Config:
    """Read and validate a YAML config (ConfigError / DataError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(path, f"not valid YAML: {yaml_problem(exc)}", line=yaml_line(exc)) from None
    config = from_dict(values, str(path))
    validate(config, str(path))
    return config


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error's reason in one line (its own text spans several, with a caret)."""
    return " ".join(str(getattr(exc, "problem", None) or exc).split())


def yaml_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else None


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save(config: Config, path) -> None:
    fileio.write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def crop_policy_of(config: Config):
    from facemarks.geometry.crop import crop_policy

    spec = {"policy": config.crop.policy}
    if config.crop.policy == "box":
        spec["margin"] = config.crop.margin
    elif config.crop.template is not None:
        spec["template"] = tuple(tuple(p) for p in config.crop.template)
    return crop_policy(spec)


# ----------------------------------------------------------------------------- entries


def parse_entry(entry, config: Config, source: str, key: str) -> Entry:
    """A compare entry (string or mapping, see the module docstring) as an Entry."""
    from facemarks.losses import parse_loss_spec

    if isinstance(entry, dict):
        return _entry_from_mapping(entry, config, source, key)
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(source, key, f"an entry is a loss spec, MODEL+LOSS or a mapping, got {entry!r}")
    model_name, _, spec = entry.rpartition("+")
    try:
        loss, params = parse_loss_spec(spec)
    except ValueError as exc:
        raise ConfigError(source, key, str(exc)) from None
    return Entry(entry, _model_for(model_name.strip() or config.model.name, config), loss, params)


def _entry_from_mapping(entry: dict, config: Config, source: str, key: str) -> Entry:
    unknown = sorted(set(entry) - {"model", "loss", "params", "name", "overrides", "region_weights",
                                   "region_attention"})
    if unknown:
        raise ConfigError(source, f"{key}.{unknown[0]}", "unknown key; valid: loss, model, name, overrides, params, "
                                                         "region_attention, region_weights")
    if not isinstance(entry.get("loss"), str):
        raise ConfigError(source, f"{key}.loss", f"must name a loss, got {entry.get('loss')!r}")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(source, f"{key}.params", f"must be a mapping, got {params!r}")
    model = entry.get("model", config.model.name)
    if isinstance(model, dict):
        model = _build(ModelConfig, model, source, f"{key}.model.")
    elif isinstance(model, str):
        model = _model_for(model, config)
    else:
        raise ConfigError(source, f"{key}.model", f"must be a model name or mapping, got {model!r}")
    overrides = _parse_overrides(entry.get("overrides"), source, f"{key}.overrides")
    region_weights = _parse_region_weights(entry.get("region_weights"), source, f"{key}.region_weights")
    region_attention = entry.get("region_attention", False)
    if not isinstance(region_attention, bool):
        raise ConfigError(source, f"{key}.region_attention", f"must be true or false, got {region_attention!r}")
    for field_name, given, example in (("overrides", overrides, "pose_balanced"),
                                       ("region_weights", region_weights, "eyes_x2"),
                                       ("region_attention", region_attention, "attention")):
        if given and not entry.get("name"):
            raise ConfigError(source, f"{key}.name", f"an entry with {field_name} needs a name (its label in the "
                                                     f"report and its run folders), e.g. name: {example}")
    label = entry.get("name") or f"{model.name}+{entry['loss']}" + (
        ":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return Entry(str(label), model, entry["loss"], dict(params), overrides, region_weights, region_attention)


def _parse_region_weights(values, source: str, key: str) -> dict:
    """An entry's region weights, types and values checked (the names are checked against the
    data's scheme before training: facemarks.losses.regions.region_point_weights)."""
    from facemarks.losses.regions import check_region_weights

    if values is None:
        return {}
    try:
        return check_region_weights(values)
    except ValueError as exc:
        name = str(exc).partition(":")[0]
        raise ConfigError(source, f"{key}.{name}" if isinstance(values, dict) and name in values else key,
                          str(exc)) from None


def _parse_overrides(overrides, source: str, key: str) -> dict:
    """An entry's overrides, checked for their keys and types (values are checked by validate)."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(source, key, f"must be a mapping like {{data: {{sampler: pose_balanced}}}}, got {overrides!r}")
    hints = typing.get_type_hints(Config)
    for section, values in overrides.items():
        if section not in OVERRIDABLE:
            raise ConfigError(source, f"{key}.{section}", f"cannot differ between entries (every entry is trained "
                                                          f"and evaluated alike); overridable: {', '.join(OVERRIDABLE)}")
        if not isinstance(values, dict):
            raise ConfigError(source, f"{key}.{section}", f"must be a mapping, got {values!r}")
        for name in values:
            if name not in OVERRIDABLE[section]:
                raise ConfigError(source, f"{key}.{section}.{name}",
                                  f"cannot differ between entries: it would change the test or validation faces, "
                                  f"their crops or the model's input; an entry may override {section}."
                                  f"{{{', '.join(OVERRIDABLE[section])}}}")
        _build(hints[section], values, source, f"{key}.{section}.")  # types, with the key named
    return {section: dict(values) for section, values in overrides.items()}


def config_for_entry(config: Config, entry: Entry) -> Config:
    """The config `entry` trains with: a copy of `config` with the entry's overrides applied
    (each key given replaces that field); `config` itself when it has none."""
    if not entry.overrides:
        return config
    values = to_dict(config)
    for section, fields in entry.overrides.items():
        values[section].update(fields)
    return from_dict(values, f"entry {entry.label!r}")


def _model_for(name: str, config: Config) -> ModelConfig:
    # The config's own model keeps its kwargs and pretrained weights; another model named
    # in an entry string has none (write the entry as a mapping to give it some).
    return copy_model(config.model) if name == config.model.name else ModelConfig(name=name)


def copy_model(model: ModelConfig) -> ModelConfig:
    return dataclasses.replace(model, kwargs=dict(model.kwargs))


# ----------------------------------------------------------------------------- validation


def validate(config: Config, source: str = "<config>") -> list[Entry]:
    """Check the whole config and every entry; return the entries. Raises ConfigError naming
    the key (and the entry) with the valid choices. Reads no data and builds no model."""
    _check_ranges(config, source)
    _check_names(config, source)
    if not config.losses:
        raise ConfigError(source, "losses", "needs at least one entry")
    entries = [parse_entry(e, config, source, f"losses[{i}]") for i, e in enumerate(config.losses)]
    for i, entry in enumerate(entries):
        check_entry(entry, source, f"losses[{i}] ({entry.label})")
        if entry.overrides:
            _check_training_data(config_for_entry(config, entry), source, f"losses[{i}].overrides.")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(source, "losses", f"entries must differ; repeated: {sorted({x for x in labels if labels.count(x) > 1})}")
    _check_task(config, source)
    _check_device(config, source)
    _check_stability(config.stability, source)
    tune_lr_rates(config, source)
    return entries


def check_entry(entry: Entry, source: str, key: str) -> None:
    from facemarks import losses, models

    try:
        model_kind = models.kind(entry.model.name)
        losses.check_loss(entry.loss, entry.params)
        loss_kind = losses.loss_kind(entry.loss)
    except (UnknownNameError, ValueError) as exc:
        raise ConfigError(source, key, str(exc)) from None
    if model_kind != loss_kind:
        raise ConfigError(source, key, f"model {entry.model.name!r} is a {model_kind} model but loss {entry.loss!r} "
                                       f"is a {loss_kind} loss; pair heatmap models with heatmap losses "
                                       f"(awing, heatmap_mse) and regression models with point losses")
    if entry.region_attention and loss_kind != "regression":
        raise ConfigError(source, f"{key} region_attention", f"weights point losses; {entry.loss!r} is a {loss_kind} loss")
    fusion = entry.model.kwargs.get("region_fusion", False)
    if not isinstance(fusion, bool) or (fusion and model_kind != "regression") or (fusion and entry.region_attention):
        raise ConfigError(source, f"{key} model.kwargs.region_fusion", f"must be true or false, true only for a "
                                                                       f"regression model and without region_attention; "
                                                                       f"got {fusion!r} for {entry.model.name!r}")
    if entry.model.pretrained and not Path(entry.model.pretrained).is_file():
        raise ConfigError(source, f"{key} model.pretrained", f"file not found: {entry.model.pretrained}")
    _check_init(entry.model, source, key)


def _check_init(model: ModelConfig, source: str, key: str) -> None:
    """model.init / init_layers / freeze (facemarks.engine.transfer); the checkpoint's family and
    the number of layers are checked when the model is built."""
    if model.init is not None and not Path(model.init).is_file():
        raise ConfigError(source, f"{key} model.init", f"file not found: {model.init}")
    if model.init and model.pretrained:
        raise ConfigError(source, f"{key} model.init", "give init (a facemarks checkpoint) or pretrained (ImageNet "
                                                       "backbone weights), not both")
    if model.init_layers is not None and (model.init_layers < 1 or not model.init):
        raise ConfigError(source, f"{key} model.init_layers", f"must be >= 1 (or null: every matching tensor), with "
                                                              f"model.init set; got {model.init_layers}")
    if model.freeze < 0 or (model.freeze and not (model.init or model.pretrained)):
        raise ConfigError(source, f"{key} model.freeze", f"must be >= 0, and freezes trained layers: it needs "
                                                         f"model.init or model.pretrained; got {model.freeze}")


_POSITIVE_INT = ("input_size", "epochs", "batch_size")


def _check_ranges(config: Config, source: str) -> None:
    def require(ok: bool, key: str, message: str):
        if not ok:
            raise ConfigError(source, key, message)

    for key in _POSITIVE_INT:
        require(getattr(config, key) >= 1, key, f"must be a positive integer, got {getattr(config, key)}")
    require(config.input_size >= 16, "input_size", f"must be at least 16 pixels, got {config.input_size}")
    require(config.threads is None or config.threads >= 1, "threads", f"must be >= 1 or null, got {config.threads}")
    require(bool(config.seeds) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in config.seeds),
            "seeds", f"must be a non-empty list of non-negative integers (or a count), got {config.seeds}")
    data, optim = config.data, config.optim
    require(0 < data.val_fraction < 1, "data.val_fraction", f"must be in (0, 1), got {data.val_fraction}")
    require(data.num_workers >= 0, "data.num_workers", f"must be >= 0, got {data.num_workers}")
    require(optim.lr > 0 and math.isfinite(optim.lr), "optim.lr", f"must be a positive number, got {optim.lr}")
    require(0 <= optim.momentum < 1, "optim.momentum", f"must be in [0, 1), got {optim.momentum}")
    require(optim.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {optim.weight_decay}")
    require(optim.warmup_epochs >= 0, "optim.warmup_epochs", f"must be >= 0, got {optim.warmup_epochs}")
    require(0 < optim.gamma <= 1, "optim.gamma", f"must be in (0, 1], got {optim.gamma}")
    require(optim.grad_clip is None or optim.grad_clip > 0, "optim.grad_clip", f"must be > 0 or null, got {optim.grad_clip}")
    milestones = optim.milestones
    require(all(isinstance(m, (int, float)) and 0 < m < 1 for m in milestones) and milestones == sorted(milestones),
            "optim.milestones", f"must be increasing fractions of training in (0, 1), got {milestones}")


def _check_names(config: Config, source: str) -> None:
    from facemarks import models
    from facemarks.data import formats
    from facemarks.registry import OPTIMIZERS, SCHEDULES, TASKS

    checks = [("optim.optimizer", OPTIMIZERS, config.optim.optimizer),
              ("optim.schedule", SCHEDULES, config.optim.schedule), ("task.name", TASKS, config.task.name)]
    for key, registry, name in checks:
        if name not in registry:
            raise ConfigError(source, key, str(UnknownNameError(registry.kind, name, registry.names())))
    for key, check in (("model.name", lambda: models.kind(config.model.name)),
                       ("crop", lambda: crop_policy_of(config)),
                       ("data.spec", lambda: formats.parse_spec(config.data.spec))):
        try:
            check()
        except (FacemarksError, ValueError, TypeError) as exc:
            raise ConfigError(source, key, str(exc)) from None
    if config.data.points is not None and config.data.points not in TARGETS:
        raise ConfigError(source, "data.points", f"unknown scheme {config.data.points!r}; valid: null (as annotated), "
                                                 f"{', '.join(TARGETS)}")
    _check_training_data(config, source, "")


# The renderer's faces stay plausible up to this |yaw| (checked by eye; see facemarks.data.mix).
MAX_SYNTHETIC_YAW = 60.0


def _check_training_data(config: Config, source: str, prefix: str) -> None:
    """The fields an entry may override (OVERRIDABLE): sampler and its parameters, the
    synthetic mix, augmentation; errors name the key under `prefix` (an entry's overrides)."""
    from facemarks.data.augment import AugmentConfig
    from facemarks.data.samplers import SamplerParamError
    from facemarks.registry import SAMPLERS

    data, mix = config.data, config.data.synthetic_mix
    if data.sampler not in SAMPLERS:
        raise ConfigError(source, f"{prefix}data.sampler", str(UnknownNameError(SAMPLERS.kind, data.sampler, SAMPLERS.names())))
    try:
        SAMPLERS.get(data.sampler).check_params(data.sampler_params)
    except SamplerParamError as exc:
        raise ConfigError(source, f"{prefix}data.sampler_params.{exc.key}", str(exc)) from None
    try:
        augment = AugmentConfig.from_dict(config.augment.params)
    except (FacemarksError, ValueError, TypeError) as exc:
        raise ConfigError(source, f"{prefix}augment.params", str(exc)) from None
    if augment.box_noise != "none" and config.crop.policy != "box":
        raise ConfigError(source, f"{prefix}augment.params.box_noise", f"perturbs the face box of box crops; this "
                                                                       f"config crops with {config.crop.policy!r}")
    key = f"{prefix}data.synthetic_mix."
    if not (math.isfinite(mix.share) and 0 <= mix.share <= 10):
        raise ConfigError(source, key + "share", f"must be in [0, 10] (added synthetic faces per real training face; "
                                                 f"0: none), got {mix.share}")
    if not 0 <= mix.min_abs_yaw < mix.max_abs_yaw <= MAX_SYNTHETIC_YAW:
        bad = "min_abs_yaw" if not 0 <= mix.min_abs_yaw < MAX_SYNTHETIC_YAW else "max_abs_yaw"
        raise ConfigError(source, key + bad, f"needs 0 <= min_abs_yaw < max_abs_yaw <= {MAX_SYNTHETIC_YAW:g} degrees, "
                                             f"got {mix.min_abs_yaw} and {mix.max_abs_yaw}")
    if mix.seed < 0:
        raise ConfigError(source, key + "seed", f"must be >= 0, got {mix.seed}")


def _check_task(config: Config, source: str) -> None:
    task = config.task
    if task.name != "distill":
        return
    if not task.teacher or not Path(task.teacher).is_file():
        raise ConfigError(source, "task.teacher", f"distillation needs the teacher's checkpoint file, got {task.teacher!r}")
    for key in ("data_weight", "output_weight", "feature_weight"):
        if getattr(task, key) < 0:
            raise ConfigError(source, f"task.{key}", f"must be >= 0, got {getattr(task, key)}")
    if task.features is not None and not all(isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p)
                                             for p in task.features):
        raise ConfigError(source, "task.features", "must be a list of [student_layer, teacher_layer] pairs")


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_device(config: Config, source: str) -> None:
    """The spelling of `device` and `precision`; whether this machine has the device is
    facemarks.engine.trainer.training_device's question (a config is checked anywhere)."""
    if not isinstance(config.device, str) or not _DEVICE.fullmatch(config.device):
        raise ConfigError(source, "device", f"must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    if config.precision not in PRECISIONS:
        raise ConfigError(source, "precision", f"must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    if config.precision == "fp16" and config.device == "cpu":
        raise ConfigError(source, "precision", "fp16 needs a CUDA device (with its gradient scaler); on CPU use "
                                               "bf16 or fp32")


def _check_stability(stability: StabilityConfig, source: str) -> None:
    """stability.* (see StabilityConfig); whether the test split has `video_faces` faces is
    checked once it is read (facemarks.experiments.compare)."""
    from facemarks.registry import PERTURBATIONS

    if stability.jitter_k != 0 and stability.jitter_k < 2:
        raise ConfigError(source, "stability.jitter_k", f"must be 0 (no stability measured) or >= 2 perturbed "
                                                        f"versions per face, got {stability.jitter_k}")
    names = stability.perturbations
    if names is not None:
        if not names or len(set(map(str, names))) != len(names):
            raise ConfigError(source, "stability.perturbations", f"must be a non-empty list of distinct names (or "
                                                                 f"null: the defaults), got {names}")
        for name in names:
            if not isinstance(name, str) or name not in PERTURBATIONS:
                raise ConfigError(source, "stability.perturbations",
                                  str(UnknownNameError(PERTURBATIONS.kind, str(name), PERTURBATIONS.names())))
    if stability.video_faces < 0 or (stability.video_faces and not stability.jitter_k):
        raise ConfigError(source, "stability.video_faces", f"must be >= 0, and measured with the jitter (set "
                                                           f"stability.jitter_k); got {stability.video_faces}")
    if stability.seed < 0:
        raise ConfigError(source, "stability.seed", f"must be >= 0, got {stability.seed}")
    if names is not None and not stability.jitter_k:
        raise ConfigError(source, "stability.perturbations", "needs stability.jitter_k >= 2 (perturbations "
                                                             "without versions measure nothing)")


def tune_lr_rates(config: Config, source: str = "<config>") -> list[float]:
    """The sweep's learning rates, increasing: tune_lr.grid, or tune_lr.factors (default
    DEFAULT_LR_FACTORS) times optim.lr. Raises ConfigError naming the key."""
    tune = config.tune_lr
    if tune.grid is not None and tune.factors is not None:
        raise ConfigError(source, "tune_lr", "give either grid (the rates) or factors (multiples of optim.lr), not both")
    if not 0 < tune.epochs_fraction <= 1:
        raise ConfigError(source, "tune_lr.epochs_fraction", f"must be in (0, 1], got {tune.epochs_fraction}")
    key, values = ("tune_lr.grid", tune.grid) if tune.grid is not None else ("tune_lr.factors", tune.factors)
    values = DEFAULT_LR_FACTORS if values is None else values
    numbers = []
    for value in values:
        try:  # YAML 1.1 reads 1e-4 (no dot) as text
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise ConfigError(source, key, f"must be a list of positive numbers, got {value!r} in {list(values)}")
        numbers.append(number)
    rates = sorted(n * config.optim.lr if key == "tune_lr.factors" else n for n in numbers)
    names = [f"{r:.4g}" for r in rates]  # the sweep's run folders are named by rate
    if len(rates) < 2 or len(set(names)) != len(names):
        raise ConfigError(source, key, f"needs at least two distinct rates (to 4 significant digits), got "
                                       f"{', '.join(names)}")
    return rates
