"""The training loop: optimizer, schedule, checkpoints, logging, DDP, divergence check.

`fit(config, entry, seed, out_dir)` trains one compare entry (a model and a loss, see
facemarks.engine.config.Entry) for one seed. What is optimised is the task's business
(facemarks.engine.task); which faces and crops it sees is the data's (crop cache, crop
policy, sampler). The loop is the same for all of them.

The same code runs under `torchrun --nproc_per_node=N -m facemarks train ...` with PyTorch's
DistributedDataParallel (gloo on CPU, NCCL on GPU): each rank takes every N-th sample of the
epoch's order and gradients are averaged; rank 0 validates, logs and writes checkpoints.
The best checkpoint by validation NME is `best.pt`; `last.pt` is written every epoch and is
what `resume` continues from, ending with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from facemarks import losses, models, schemes
from facemarks.data import cache as crop_cache
from facemarks.data.augment import AugmentConfig
from facemarks.data.dataset import FaceCrops, make_loader
from facemarks.data.mix import check_scheme, with_synthetic_mix
from facemarks.data.samplers import build_sampler
from facemarks.data.splits import load_splits
from facemarks.engine import config as cfg
from facemarks.engine import distributed, runs, transfer
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.engine.evaluate import face_errors, predict_crops
from facemarks.engine.optim import build_optimizer, learning_rate
from facemarks.engine.task import add_region_attention
from facemarks.errors import CheckpointError, ConfigError, FacemarksError
from facemarks.fileio import write_text
from facemarks.geometry.affine import apply_to_points
from facemarks.geometry.coords import to_normalized
from facemarks.losses.regions import region_point_weights
from facemarks.registry import TASKS


# A best validation NME at or above the inter-ocular distance itself: the run diverged.
DIVERGED_NME = 1.0


class TrainingDiverged(FacemarksError):
    """The loss or the weights became NaN or infinite."""


@dataclass
class RunState:
    history: list = field(default_factory=list)
    best_val_nme: float = math.inf
    start_epoch: int = 0


@dataclass
class Run:
    """What one training run is made of (built once by `prepare`)."""

    config: cfg.Config
    entry: cfg.Entry
    seed: int
    out_dir: Path
    ddp: distributed.Distributed
    scheme: schemes.Scheme
    val_cache: crop_cache.CropCache
    val_samples: list
    train_set: FaceCrops
    sampler: object
    loader: object
    task: torch.nn.Module
    optimizer: torch.optim.Optimizer
    memory_format: torch.memory_format
    amp_dtype: torch.dtype | None         # autocast's dtype (config.precision); None: fp32
    scaler: torch.amp.GradScaler           # fp16's loss scaling (a no-op when disabled)


def fit(config: cfg.Config, entry: cfg.Entry | str, seed: int, out_dir, resume: bool = False,
        overwrite: bool = False, progress: bool = True, splits: dict | None = None, record_batches: bool = False,
        on_epoch_end=None) -> dict:
    """Train `entry` with `seed` into `out_dir`; returns the run's summary (history, best
    checkpoint, whether it diverged, and with record_batches the fingerprint of every batch).
    A folder holding a run is refused unless `resume` (continue it) or `overwrite` (replace
    it). `on_epoch_end` is called on rank 0 with the history after every epoch's checkpoint
    and log are written."""
    if isinstance(entry, str):
        entry = cfg.parse_entry(entry, config, "entry", "entry")
    config = cfg.config_for_entry(config, entry)  # the entry's own sampling / augmentation, if it has any
    out_dir = Path(out_dir)
    ddp = distributed.setup(training_device(config))
    if ddp.is_main:
        runs.prepare_folder(out_dir, resume, overwrite)
    previous = previous_run(out_dir, config, entry, seed) if resume else None
    run = prepare(config, entry, seed, out_dir, splits, progress, ddp)
    state = restore(run, previous)
    if ddp.is_main:
        cfg.save(config, out_dir / "config.yaml")
    bar = _progress_bar(run, state, progress)
    digests: list[str] = []
    for epoch in range(state.start_epoch, config.epochs):
        started = time.time()
        terms, lr = train_epoch(run, epoch, bar, digests if record_batches else None)
        if run.ddp.is_main:
            end_epoch(run, state, epoch, terms, lr, time.time() - started, bar)
            if on_epoch_end:
                on_epoch_end(state.history)
        run.ddp.barrier()
    if bar is not None:
        bar.close()
    return {"entry": entry.label, "seed": seed, "history": state.history, "best_val_nme": state.best_val_nme,
            "diverged": not state.best_val_nme < DIVERGED_NME, "checkpoint": str(run.out_dir / "best.pt"),
            "out_dir": str(run.out_dir), "batch_digests": digests, "rank": run.ddp.rank,
            "world_size": run.ddp.world_size}


def prepare(config: cfg.Config, entry: cfg.Entry, seed: int, out_dir: Path, splits, progress: bool,
            ddp: distributed.Distributed | None = None) -> Run:
    """Everything a run needs: caches, dataset, sampler, loader, task, optimizer."""
    ddp = ddp or distributed.setup(training_device(config))
    if config.batch_size % ddp.world_size:
        raise ConfigError("command line", "batch_size", f"{config.batch_size} is not a multiple of the "
                                                        f"{ddp.world_size} processes; each takes an equal share")
    if config.threads:
        torch.set_num_threads(config.threads)
    cv2.setNumThreads(1)  # per-sample warps are tiny; OpenCV's thread pool would fight torch's
    splits = splits or load_splits(config.data)
    train = ddp.main_first(lambda: with_synthetic_mix(splits["train"], config.data.synthetic_mix, config.data.cache_dir,
                                                      progress and ddp.is_main))
    splits = {**splits, "train": train}  # the faces trained on; validation and test stay the real ones
    scheme = schemes.get(splits["train"][0].scheme)
    policy = cfg.crop_policy_of(config)
    build = lambda split: crop_cache.build(splits[split], config.input_size, policy,  # noqa: E731
                                           root=config.data.cache_dir, progress=progress and ddp.is_main)
    train_cache, val_cache = ddp.main_first(lambda: (build("train"), build("val")))
    augment = AugmentConfig.from_dict(config.augment.params) if config.augment.enabled else None
    train_set = FaceCrops(train_cache, config.input_size, augment, scheme.flip_permutation, seed)
    sampler = build_sampler(config.data.sampler, splits["train"], seed, ddp.rank, ddp.world_size,
                            config.data.sampler_params)
    loader = make_loader(train_set, sampler, config.batch_size // ddp.world_size, config.data.num_workers,
                         drop_last=True)
    if len(loader) == 0:
        raise FacemarksError(f"training split has {len(train_set)} faces, fewer than one batch of {config.batch_size}")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    task = build_task(config, entry, scheme, train_cache, seed, ddp.device, memory_format)
    optimizer = build_optimizer(task.parameters(), config.optim)
    scaler = torch.amp.GradScaler(ddp.device.type, enabled=config.precision == "fp16")
    return Run(config, entry, seed, out_dir, ddp, scheme, val_cache, splits["val"], train_set, sampler, loader,
               ddp.wrap(task), optimizer, memory_format, AUTOCAST_DTYPES[config.precision], scaler)


# Training arithmetic (config.precision): autocast's dtype. The output layer of a regression
# model stays fp32 (facemarks.models.heads.PointsOutput), validation runs in fp32.
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def training_device(config: cfg.Config) -> str:
    """The device `config` trains on ("auto": CUDA when present), checked against this machine
    and config.precision before any work: ConfigError naming `device` or `precision`."""
    device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("config", "device", f"{device} asked for, but this PyTorch ({torch.__version__}) sees no "
                                              f"CUDA device; use device: cpu (or --device cpu)")
    if config.precision == "fp16" and not device.startswith("cuda"):
        # CPU autocast in fp16 is slow on most CPUs and has no use beside bf16 there.
        raise ConfigError("config", "precision", f"fp16 needs a CUDA device (with its gradient scaler), and this run "
                                                 f"trains on {device}; on a CPU use bf16 or fp32")
    if config.precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ConfigError("config", "precision", "this GPU has no bfloat16 arithmetic; use fp16 (or fp32)")
    return device


def check_synthetic_mix(config: cfg.Config, entries: list, train_scheme: str) -> None:
    """Before any entry trains: every entry's synthetic mix suits the training faces' scheme
    (ConfigError naming the entry's key)."""
    for i, entry in enumerate(entries):
        own = "synthetic_mix" in entry.overrides.get("data", {})
        check_scheme(cfg.config_for_entry(config, entry).data.synthetic_mix, train_scheme,
                     f"losses[{i}].overrides.data.synthetic_mix" if own else "data.synthetic_mix")


def build_task(config: cfg.Config, entry: cfg.Entry, scheme, train_cache, seed: int, device, memory_format):
    """The entry's model (same initial weights for every loss of a seed, output started at the
    mean training shape) and loss, inside the configured task."""
    torch.manual_seed(seed)
    model = models.create(entry.model.name, scheme.num_points, scheme=scheme, input_size=config.input_size,
                          **entry.model.kwargs)
    if entry.model.pretrained:
        models.load_pretrained_backbone(model, entry.model.pretrained)
    if model.kind == "regression":
        model.init_mean_shape(mean_shape(train_cache, config.input_size))
    transfer.initialise(model, entry.model)  # model.init / init_layers / freeze: after every other initialisation
    model = model.to(device, memory_format=memory_format)
    criterion = losses.build_loss(entry.loss, input_size=config.input_size, params=entry.params, scheme=scheme,
                                  point_weights=entry_point_weights(entry, scheme))
    task = TASKS.get(config.task.name)(config, model, criterion.to(device), device)
    if entry.region_attention:
        add_region_attention(task, scheme, entry_point_weights(entry, scheme))
    return task


def entry_point_weights(entry: cfg.Entry, scheme, key: str = "region_weights"):
    """The (N,) point weights of the entry's region_weights for `scheme` (None without any);
    ConfigError naming `key`.NAME for a region the scheme lacks."""
    if not entry.region_weights:
        return None
    try:
        return region_point_weights(entry.region_weights, scheme)
    except ValueError as exc:
        raise ConfigError(f"entry {entry.label!r}", f"{key}.{str(exc).partition(':')[0]}", str(exc)) from None


def mean_shape(crops: crop_cache.CropCache, input_size: int) -> np.ndarray:
    """Mean training shape in normalised input coordinates of the plain crops: the regression
    output's initial bias, so training starts from a face rather than a point."""
    return np.mean([to_normalized(apply_to_points(crops.plain_matrix(i, input_size), crops.points[i]), input_size)
                    for i in range(len(crops))], axis=0)


def previous_run(out_dir: Path, config: cfg.Config, entry: cfg.Entry, seed: int) -> Checkpoint | None:
    """OUT/last.pt to resume from (None: nothing to resume), checked before any work."""
    path = out_dir / "last.pt"
    if not path.is_file():
        return None
    saved = Checkpoint.load(path)
    runs.check_resumable(saved, config, entry, seed, path)
    return saved


def restore(run: Run, saved: Checkpoint | None) -> RunState:
    """The state of the run `saved` was written by, loaded into the task and optimizer."""
    if saved is None:
        return RunState()
    task = _unwrap(run.task)
    try:
        task.model.load_state_dict(saved.state_dict)
        task.load_extra_state(saved.task_state)
        run.optimizer.load_state_dict(saved.optimizer)
        if run.scaler.is_enabled() and "grad_scaler" in saved.training:
            run.scaler.load_state_dict(saved.training["grad_scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(saved.source, f"does not fit this run's model or optimizer "
                                            f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return RunState(saved.training["history"], saved.training["best_val_nme"], saved.training["epoch"] + 1)


def train_epoch(run: Run, epoch: int, bar, digests: list | None) -> tuple[dict, float]:
    """One pass over the epoch's batches; returns the mean of every loss term and the last lr."""
    run.train_set.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    torch.manual_seed(run.seed * 1_000_003 + epoch)  # dropout draws: a function of (seed, epoch)
    run.task.train()
    steps_per_epoch = len(run.loader)
    total_steps = steps_per_epoch * run.config.epochs
    sums: dict[str, float] = {}
    lr = run.config.optim.lr
    for step_in_epoch, batch in enumerate(run.loader):
        lr = learning_rate(run.config.optim, epoch * steps_per_epoch + step_in_epoch, total_steps, steps_per_epoch)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        if digests is not None:
            digests.append(batch_digest(batch))
        terms = train_step(run, batch)
        if not math.isfinite(terms["loss"]):
            last = run.out_dir / "last.pt"
            raise TrainingDiverged(
                f"entry {run.entry.label!r} loss became {terms['loss']} at epoch {epoch + 1}, step "
                f"{step_in_epoch + 1}; lower the learning rate (optim.lr = {run.config.optim.lr}) or enable "
                f"grad_clip. The last good checkpoint is {last if last.exists() else 'not written yet'}.")
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / (step_in_epoch + 1):.4f}", epoch=epoch + 1)
    return {name: value / steps_per_epoch for name, value in sums.items()}, lr


def train_step(run: Run, batch: dict) -> dict[str, float]:
    """One optimisation step on a batch of uint8 images; returns the loss terms. A non-finite
    loss is returned before any update, so the weights stay those of the last good step."""
    device = run.ddp.device
    images = batch["image"].to(device, non_blocking=True).float().div_(255)
    images = images.contiguous(memory_format=run.memory_format)
    with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        terms = run.task(images, batch["points"].to(device, non_blocking=True))
    values = {name: float(value.item()) for name, value in terms.items()}
    if not math.isfinite(values["loss"]):
        return values
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(terms["loss"]).backward()
    if run.config.optim.grad_clip:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(run.task.parameters(), run.config.optim.grad_clip)
    run.scaler.step(run.optimizer)  # skips the step when fp16 gradients overflowed
    run.scaler.update()
    return values


def end_epoch(run: Run, state: RunState, epoch: int, terms: dict, lr: float, seconds: float, bar) -> None:
    """Validate, write best.pt / last.pt and the logs (rank 0). Weights that are no longer
    finite are never written: the run stops, naming the last good checkpoint."""
    model = _unwrap(run.task).model
    if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
        last = run.out_dir / "last.pt"
        raise TrainingDiverged(f"entry {run.entry.label!r}: the weights became NaN or infinite in epoch {epoch + 1} "
                               f"(the loss stayed finite); lower the learning rate (optim.lr = {run.config.optim.lr}). "
                               f"The last good checkpoint is {last if last.exists() else 'not written yet'}.")
    predictions = predict_crops(model, run.val_cache, run.config.input_size,
                                channels_last=run.config.channels_last, device=run.ddp.device)
    val_nme = float(np.mean(face_errors(predictions, run.val_samples, run.scheme)["inter_ocular"]))
    state.history.append({"epoch": epoch + 1, "train_loss": terms.pop("loss"), "val_nme": val_nme, "lr": lr,
                          "seconds": seconds, **{f"train_{name}": value for name, value in terms.items()}})
    training = {"entry": run.entry.to_dict(), "loss": run.entry.label, "seed": run.seed, "epoch": epoch,
                "history": state.history, "best_val_nme": min(state.best_val_nme, val_nme),
                "world_size": run.ddp.world_size, "task": run.config.task.name}
    if run.scaler.is_enabled():
        training["grad_scaler"] = run.scaler.state_dict()  # fp16's loss scale, for an exact resume
    checkpoint = model_checkpoint(model, run, training)
    if val_nme < state.best_val_nme:
        state.best_val_nme = val_nme
        checkpoint.save(run.out_dir / "best.pt")
    checkpoint.optimizer = run.optimizer.state_dict()
    checkpoint.task_state = _unwrap(run.task).extra_state()
    checkpoint.save(run.out_dir / "last.pt")
    write_logs(run.out_dir, state.history)
    if bar is not None:
        bar.write(f"{run.entry.label} seed {run.seed} epoch {epoch + 1}/{run.config.epochs}: "
                  f"loss {state.history[-1]['train_loss']:.4f}, val NME {100 * val_nme:.2f}%")


def model_checkpoint(model, run: Run, training: dict) -> Checkpoint:
    return Checkpoint(ModelSpec(run.entry.model.name, dict(run.entry.model.kwargs)), run.scheme,
                      cfg.crop_policy_of(run.config), run.config.input_size, model.state_dict(), model.kind,
                      getattr(model, "decoder", None), cfg.to_dict(run.config), training)


def write_logs(out_dir: Path, history: list[dict]) -> None:
    """The whole history as JSON lines and CSV (so a resumed run's log has no duplicated epochs)."""
    write_text(out_dir / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(out_dir / "log.csv", text.getvalue())


def batch_digest(batch: dict) -> str:
    """Fingerprint of a batch's content (sample indices, pixels, targets)."""
    digest = hashlib.sha1(batch["index"].numpy().tobytes())
    digest.update(batch["image"].numpy().tobytes())
    digest.update(batch["points"].numpy().tobytes())
    return digest.hexdigest()[:16]


def _progress_bar(run: Run, state: RunState, progress: bool):
    if not (progress and run.ddp.is_main):
        return None
    from tqdm import tqdm

    steps = len(run.loader)
    return tqdm(total=steps * run.config.epochs, initial=state.start_epoch * steps, unit="step",
                desc=f"{run.entry.label} s{run.seed}", dynamic_ncols=True, leave=False)


def _unwrap(task):
    return task.module if isinstance(task, torch.nn.parallel.DistributedDataParallel) else task
