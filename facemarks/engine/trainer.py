"""Train one landmark model with one loss.

`facemarks train --config FILE [--loss SPEC] [--seed N] --out DIR [--resume]`

The same code runs under `torchrun --nproc_per_node=N -m facemarks train ...` with PyTorch's
DistributedDataParallel (gloo on CPU, NCCL on GPU): each rank takes every N-th sample of the
epoch's permutation and gradients are averaged; rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist

from facemarks.data import cache as crop_cache
from facemarks.engine import checkpoint as ckpt
from facemarks.engine import config as cfg
from facemarks import losses, models, schemes
from facemarks import geometry as transforms
from facemarks.data import augment
from facemarks.data.samplers import EpochSampler
from facemarks.data.dataset import FaceCrops, make_loader
from facemarks.data.splits import load_splits
from facemarks.errors import FacemarksError
from facemarks.engine.evaluate import face_errors, predict_crops
from facemarks.registry import LOSSES, MODELS


class TrainingDiverged(FacemarksError):
    """The loss became NaN or infinite."""


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return Distributed(rank, world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def build_model(config: cfg.Config, num_points: int, scheme_name: str):
    kwargs = dict(config.model.kwargs)
    # Heatmap models with boundary branches need the scheme's boundaries.
    if "scheme" in inspect.signature(MODELS.get(config.model.name)).parameters:
        kwargs.setdefault("scheme", scheme_name)
    model = models.create(config.model.name, num_points, input_size=config.input_size, **kwargs)
    if config.model.pretrained:
        models.load_pretrained_backbone(model, config.model.pretrained)
    return model, kwargs


def build_criterion(loss_spec: str, input_size: int, scheme_name: str):
    # Heatmap losses draw boundary targets from the scheme; point losses take no scheme.
    factory = LOSSES.get(losses.parse_loss_spec(loss_spec)[0])
    extra = {"scheme": scheme_name} if "scheme" in inspect.signature(factory).parameters else {}
    return losses.build_loss(loss_spec, input_size=input_size, **extra)


def build_optimizer(model, optim: cfg.OptimConfig):
    # No weight decay on biases and normalisation parameters (standard practice).
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=False)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr)
    raise ValueError(f"unknown optimizer {optim.optimizer!r}; use 'sgd' or 'adamw'")


def learning_rate(optim: cfg.OptimConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to 0 or steps at fractions of training."""
    warmup = int(optim.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return optim.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    if optim.schedule == "cosine":
        return optim.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if optim.schedule == "step":
        return optim.lr * optim.gamma ** sum(step >= m * total_steps for m in optim.milestones)
    raise ValueError(f"unknown schedule {optim.schedule!r}; use 'cosine' or 'step'")


def mean_shape(crops: crop_cache.CropCache, input_size: int, crop_margin: float) -> np.ndarray:
    """Mean training shape in normalised input coordinates (plain crops): the regression
    output's initial bias, so training starts from a face rather than a point."""
    shapes = [transforms.to_normalized(transforms.apply_to_points(
        transforms.crop_matrix(box, input_size, margin=crop_margin), points), input_size)
        for box, points in zip(crops.boxes, crops.points)]
    return np.mean(shapes, axis=0)


def augment_config(config: cfg.Config):
    if not config.augment.enabled:
        return None
    return augment.AugmentConfig.from_dict(config.augment.params)


class RunLog:
    """Per-epoch log as JSON lines and CSV (rank 0 only)."""

    FIELDS = ["epoch", "train_loss", "val_nme", "lr", "seconds"]

    def __init__(self, out_dir: Path):
        self.jsonl = out_dir / "log.jsonl"
        self.csv = out_dir / "log.csv"

    def rewrite(self, history: list[dict]) -> None:
        """Write the whole history (so a resumed run's log has no duplicated epochs)."""
        self.jsonl.write_text("".join(json.dumps(h) + "\n" for h in history))
        with open(self.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)


def train_step(model, criterion, optimizer, batch: dict, device, memory_format, grad_clip) -> float:
    """One optimisation step on a batch of uint8 images; returns the loss value. A non-finite
    loss is returned before any update, so the weights stay those of the last good step."""
    images = batch["image"].to(device, non_blocking=True).float().div_(255)
    images = images.contiguous(memory_format=memory_format)
    targets = batch["points"].to(device, non_blocking=True)
    loss = criterion(model(images), targets)
    value = loss.item()
    if not math.isfinite(value):
        return value
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return value


def batch_digest(batch: dict) -> str:
    """Fingerprint of a batch's content (sample indices, pixels, targets)."""
    digest = hashlib.sha1(batch["index"].numpy().tobytes())
    digest.update(batch["image"].numpy().tobytes())
    digest.update(batch["points"].numpy().tobytes())
    return digest.hexdigest()[:16]


def fit(config: cfg.Config, loss_spec: str, seed: int, out_dir, resume: bool = False,
        progress: bool = True, splits: dict | None = None, record_batches: bool = False) -> dict:
    """Train one model with one loss; returns the run's summary (history, best checkpoint).

    The best checkpoint by validation NME is `best.pt`; `last.pt` is written every epoch and
    is what `resume` continues from.
    """
    out_dir = Path(out_dir)
    ddp = setup_distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    cv2.setNumThreads(1)  # per-sample warps are tiny; OpenCV's thread pool would fight torch's
    splits = splits or load_splits(config)
    scheme = schemes.get(splits["train"][0].scheme)
    size, margin = config.input_size, config.crop_margin
    # Rank 0 builds the caches first; the others then open them.
    if ddp.is_main:
        train_cache = crop_cache.build(splits["train"], size, margin, root=config.data.cache_dir, progress=progress)
        val_cache = crop_cache.build(splits["val"], size, margin, root=config.data.cache_dir, progress=progress)
    if ddp.world_size > 1:
        dist.barrier()
    if not ddp.is_main:
        train_cache = crop_cache.build(splits["train"], size, margin, root=config.data.cache_dir)
        val_cache = crop_cache.build(splits["val"], size, margin, root=config.data.cache_dir)

    train_set = FaceCrops(train_cache, size, margin, augment_config(config), scheme.flip_permutation, seed)
    sampler = EpochSampler(len(train_set), seed, rank=ddp.rank, world_size=ddp.world_size)
    per_rank_batch = max(1, config.batch_size // ddp.world_size)
    loader = make_loader(train_set, sampler, per_rank_batch, config.data.num_workers, drop_last=True)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise FacemarksError(f"training split has {len(train_set)} faces, fewer than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs

    torch.manual_seed(seed)  # same initial weights for every loss of a seed
    model, model_kwargs = build_model(config, scheme.num_points, scheme.name)
    if hasattr(getattr(model, "head", None), "init_mean_shape"):
        model.head.init_mean_shape(mean_shape(train_cache, size, margin))
    model.to(ddp.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    criterion = build_criterion(loss_spec, size, scheme.name).to(ddp.device)
    optimizer = build_optimizer(model, config.optim)
    train_model = model
    if ddp.world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None)

    history, best_nme, start_epoch = [], math.inf, 0
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.is_file():
        state = ckpt.load(last_path)
        if state.get("loss") != loss_spec or state.get("seed") != seed:
            raise ckpt.CheckpointError(last_path, f"was written by loss {state.get('loss')!r} seed "
                                                  f"{state.get('seed')}, not {loss_spec!r} seed {seed}")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history, best_nme, start_epoch = state["history"], state["best_val_nme"], state["epoch"] + 1

    if ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(config, out_dir / "config.yaml")
        log = RunLog(out_dir)
    bar = None
    if progress and ddp.is_main:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, unit="step",
                   desc=f"{loss_spec} s{seed}", dynamic_ncols=True, leave=False)
    digests = []
    base = {"model": {"name": config.model.name, "kwargs": model_kwargs}, "scheme": scheme.name,
            "input_size": size, "crop_margin": margin, "loss": loss_spec, "seed": seed,
            "world_size": ddp.world_size, "config": cfg.to_dict(config)}

    for epoch in range(start_epoch, config.epochs):
        started = time.time()
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout draws: a function of (seed, epoch)
        train_model.train()
        loss_sum, loss_count = 0.0, 0
        for step_in_epoch, batch in enumerate(loader):
            step = epoch * steps_per_epoch + step_in_epoch
            lr = learning_rate(config.optim, step, total_steps, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if record_batches:
                digests.append(batch_digest(batch))
            loss = train_step(train_model, criterion, optimizer, batch, ddp.device, memory_format,
                              config.optim.grad_clip)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss {loss_spec!r} became {loss} at epoch {epoch + 1}, step {step_in_epoch + 1}; "
                    f"lower the learning rate (optim.lr = {config.optim.lr}) or enable grad_clip. "
                    f"The last good checkpoint is {last_path if last_path.exists() else 'not written yet'}.")
            loss_sum += loss
            loss_count += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / loss_count:.4f}", epoch=epoch + 1)

        if ddp.is_main:
            predictions = predict_crops(model, val_cache, size, margin, channels_last=config.channels_last,
                                        device=ddp.device)
            val_nme = float(np.mean(face_errors(predictions, splits["val"], scheme)["inter_ocular"]))
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / loss_count, "val_nme": val_nme,
                            "lr": lr, "seconds": time.time() - started})
            state = {**base, "state_dict": model.state_dict(), "epoch": epoch, "history": history,
                     "best_val_nme": min(best_nme, val_nme)}
            if val_nme < best_nme:
                best_nme = val_nme
                ckpt.save(state, best_path)
            ckpt.save({**state, "optimizer": optimizer.state_dict()}, last_path)
            log.rewrite(history)
            if bar is not None:
                bar.write(f"{loss_spec} seed {seed} epoch {epoch + 1}/{config.epochs}: "
                          f"loss {loss_sum / loss_count:.4f}, val NME {100 * val_nme:.2f}%")
        else:
            best_nme = math.inf  # only rank 0 tracks it
        if ddp.world_size > 1:
            dist.barrier()
    if bar is not None:
        bar.close()
    return {"loss": loss_spec, "seed": seed, "history": history, "best_val_nme": best_nme,
            "checkpoint": str(best_path), "out_dir": str(out_dir), "batch_digests": digests,
            "rank": ddp.rank, "world_size": ddp.world_size}


# ----------------------------------------------------------------------------- command line

def add_common_arguments(parser) -> None:
    """Options shared by `train` and `compare`; each overrides the config file's value."""
    parser.add_argument("--config", help="YAML config (see configs/); defaults to the CPU synthetic profile")
    parser.add_argument("--data", help="FORMAT:PATH (300w:DIR, wflw:DIR, cofw:FILE, csv:FILE, jsonl:FILE) or synthetic")
    parser.add_argument("--model", help="model name (see `facemarks bench --list`)")
    parser.add_argument("--pretrained", help="local file of torchvision-format ImageNet weights for the backbone")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optimizer", choices=["sgd", "adamw"])
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--cache-dir", help="where decoded face crops are cached")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args) -> cfg.Config:
    # Without --config: the dataclass defaults, which are the CPU profile on synthetic data.
    config = cfg.load(args.config) if args.config else cfg.Config()
    overrides = {
        ("data", "spec"): args.data, ("model", "name"): args.model, ("model", "pretrained"): args.pretrained,
        ("input_size",): args.input_size, ("epochs",): args.epochs, ("batch_size",): args.batch_size,
        ("optim", "lr"): args.lr, ("optim", "optimizer"): args.optimizer, ("threads",): args.threads,
        ("data", "cache_dir"): args.cache_dir,
    }
    for path, value in overrides.items():
        if value is not None:
            target = config
            for part in path[:-1]:
                target = getattr(target, part)
            setattr(target, path[-1], value)
    if args.data and not args.config:
        apply_data_defaults(config)
    return config


def apply_data_defaults(config: cfg.Config) -> None:
    """Standard splits of the real formats when the data is given without a config."""
    fmt = config.data.spec.split(":", 1)[0]
    splits = {"300w": ("train", None, "common"), "wflw": ("train", None, "test"),
              "cofw": ("train", None, "test")}.get(fmt)
    if splits:
        config.data.train_split, config.data.val_split, config.data.test_split = splits


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--loss", help="loss spec, e.g. wing:w=10,epsilon=2 (default: the config's first loss)")
    parser.add_argument("--seed", type=int, help="seed (default: the config's first seed)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def run(args) -> int:
    config = config_from_args(args)
    loss = args.loss or config.losses[0]
    seed = config.seeds[0] if args.seed is None else args.seed
    result = fit(config, loss, seed, args.out, resume=args.resume, progress=not args.no_progress)
    if result["rank"] == 0:
        print(f"best validation NME {100 * result['best_val_nme']:.2f}% (inter-ocular); "
              f"checkpoint {result['checkpoint']}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
