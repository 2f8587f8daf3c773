"""Run configuration: plain YAML files mapped onto dataclasses.

Every run writes the exact configuration it used (`config.yaml`) next to its results, so
`facemarks compare --config runs/x/config.yaml` repeats it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from facemarks import fileio
from facemarks.errors import DataError


@dataclass
class DataConfig:
    spec: str = "synthetic"          # FORMAT:PATH, or "synthetic"
    train_split: str = "train"
    val_split: str | None = "val"    # None: hold out `val_fraction` of the training faces
    val_fraction: float = 0.1
    test_split: str = "test"
    cache_dir: str | None = None     # crop cache; default $FACEMARKS_CACHE or ~/.cache/facemarks
    num_workers: int = 0             # DataLoader worker processes (0: load in the training process)


@dataclass
class ModelConfig:
    name: str = "dsnet"
    kwargs: dict = field(default_factory=dict)
    pretrained: str | None = None    # local file of torchvision-format ImageNet weights


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
class Config:
    name: str = "facemarks"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    input_size: int = 96
    crop_margin: float = 0.25         # the square crop's side is max(w, h) of the box * (1 + margin)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    optim: OptimConfig = field(default_factory=OptimConfig)
    losses: list = field(default_factory=lambda: ["mpd", "huber", "wing:w=10,epsilon=2"])
    epochs: int = 30
    batch_size: int = 32
    seeds: list = field(default_factory=lambda: [0])
    channels_last: bool = True
    flip_test: bool = False           # test-time augmentation: average with the mirrored crop
    threads: int | None = None        # torch intra-op threads; None keeps torch's default


def _build(cls, values: dict, source: str, where: str):
    if not isinstance(values, dict):
        raise DataError(source, f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DataError(source, f"unknown key(s) {', '.join(where + k for k in unknown)}; "
                                f"valid: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, source, f"{where}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def from_dict(values: dict, source: str = "<config>") -> Config:
    config = _build(Config, values or {}, source, "")
    if isinstance(config.seeds, int):  # `seeds: 3` means seeds 0, 1, 2
        config.seeds = list(range(config.seeds))
    return config


def load(path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(path, f"not valid YAML: {exc}") from exc
    return from_dict(values, str(path))


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save(config: Config, path) -> None:
    fileio.write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
