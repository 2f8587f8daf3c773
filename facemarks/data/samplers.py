"""Samplers: the order of training samples, a function of (seed, epoch), sharded over ranks.

Identical conditions across runs: the order of samples is drawn from (seed, epoch) and every
sample's augmentation from (seed, epoch, sample index), never from a shared global
generator. Two runs with the same seed therefore see the same batches in the same order
with the same augmentation draws, whatever their loss, and a resumed run sees what an
uninterrupted one would have seen.

A sampler is chosen by name (`data.sampler` in the config, its parameters in
`data.sampler_params`, checked by the class's `check_params` when the config is validated)
from the SAMPLERS registry. Each one only says which samples an epoch visits, in which order
(`epoch_order`); the base class shards that order over distributed ranks.

Repeated samples: an epoch may visit a sample more than once (`pose_balanced`). Its k-th
visit is written `index + k * N` (N samples; k = 0 is the plain index), and FaceCrops takes
the sample `value % N` with the augmentation drawn from (seed, epoch, value): every copy
gets its own draw, and an order without repeats draws exactly what it always did.

Pose-based balancing (`pose_balanced`, after Feng et al.'s pose-based data balancing,
"Wing loss", CVPR 2018). Every training face has a head pose (yaw, pitch, roll in degrees):
its own `yaw`/`pitch`/`roll` attributes when it has all three (synthetic faces), else
`facemarks.pose.head_poses` of its ground-truth landmarks. Faces are binned on |yaw| by
`yaw_edges` (bins [0, e1), [e1, e2), ..., [e_last, inf)), jointly with |pitch| and |roll|
when `pitch_edges` / `roll_edges` are given; empty bins are dropped, leaving B bins. Face i
in a bin of n_bin(i) faces has the weight

    w_i = (1 - balance) / N + balance / (B * n_bin(i))        (the w_i sum to 1)

so balance 0 is uniform and balance 1 makes every bin equally likely. An epoch has
L = round(epoch_factor * N) positions; face i gets floor(L * w_i) copies plus a systematic
(low-variance) draw of the remainders, taken bin after bin so that every bin's count is
within 1 of L * (its total weight); then the copies are permuted. Both draws come from
np.random.default_rng([seed, epoch]) alone, so every compared entry with the same sampler
sees the same faces, and DDP shards the order like any other. Thin bins are thus drawn
with replacement up to their share and frequent (frontal) faces are subsampled.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Sampler

from facemarks.errors import DataError
from facemarks.registry import SAMPLERS


class SamplerParamError(ValueError):
    """A bad sampler parameter: `key` (in data.sampler_params) and what is wrong with it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class ShardedSampler(Sampler):
    """An epoch's order (drawn from seed and epoch), sharded over distributed ranks.

    Rank r takes positions r, r + W, r + 2W, ... of the order (W ranks), and the order is cut
    to a multiple of W, so all ranks run the same number of steps and, with a per-rank batch
    of B / W, global step k trains on exactly positions kB .. kB + B - 1: the batches of a
    single process with batch B. (Padding the order instead would give a distributed epoch
    more steps than a single-process one.)
    """

    PARAMS: dict = {}  # the parameters a config may give (data.sampler_params) and their defaults

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """`params` with the defaults filled in; SamplerParamError naming a bad key."""
        unknown = sorted(set(params) - set(cls.PARAMS))
        if unknown:
            raise SamplerParamError(unknown[0], f"unknown parameter; valid: {', '.join(sorted(cls.PARAMS)) or 'none'}")
        return {**cls.PARAMS, **params}

    def __init__(self, samples: list, seed: int, rank: int = 0, world_size: int = 1):
        self.samples = samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_order(self) -> np.ndarray:
        """Indices of the samples this epoch visits, in order (all ranks together)."""
        raise NotImplementedError

    def epoch_length(self) -> int:
        return len(self.samples)

    def __len__(self) -> int:
        return self.epoch_length() // self.world_size

    def __iter__(self):
        order = np.asarray(self.epoch_order())[: len(self) * self.world_size]
        return iter(order[self.rank::self.world_size].tolist())


@SAMPLERS.register("uniform")
class EpochSampler(ShardedSampler):
    """Every sample once per epoch, in a permutation drawn from (seed, epoch)."""

    def __init__(self, samples, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if isinstance(samples, int):  # a count is enough for a uniform sampler
            samples = range(samples)
        super().__init__(samples, seed, rank, world_size)
        self.shuffle = shuffle

    def epoch_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.samples))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))


def _check_edges(key: str, edges, optional: bool) -> None:
    if edges is None and optional:
        return
    if not (isinstance(edges, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool)
                                            and math.isfinite(e) and e > 0 for e in edges)
            and all(a < b for a, b in zip(edges, edges[1:]))):
        raise SamplerParamError(key, f"must be an increasing list of positive angles in degrees (bin edges on the "
                                     f"absolute angle){' or null' if optional else ''}, got {edges!r}")


def sample_poses(samples: list) -> np.ndarray:
    """(N, 3) yaw, pitch, roll in degrees: a sample's own attributes when it has all three
    (synthetic faces know their pose), else estimated from its ground-truth landmarks."""
    from facemarks.pose import head_poses

    known = np.array([all(k in (s.attributes or {}) for k in ("yaw", "pitch", "roll")) for s in samples], dtype=bool)
    poses = np.full((len(samples), 3), np.nan)
    if known.any():
        poses[known] = [[float(s.attributes[k]) for k in ("yaw", "pitch", "roll")] for s, ok in zip(samples, known) if ok]
    if not known.all():
        poses[~known] = head_poses([s for s, ok in zip(samples, known) if not ok])
    bad = np.flatnonzero(~np.isfinite(poses).all(axis=1))
    if bad.size:
        raise DataError(samples[bad[0]].image_path, f"no head pose for {bad.size} training face(s), e.g. this one; "
                                                    f"the pose_balanced sampler needs one for every face")
    return poses


def pose_bins(poses: np.ndarray, yaw_edges, pitch_edges=None, roll_edges=None) -> np.ndarray:
    """Bin of every face, 0 .. B-1 (only non-empty bins are numbered), on |yaw|, |pitch|, |roll|."""
    columns = [np.digitize(np.abs(poses[:, axis]), edges) for axis, edges in enumerate((yaw_edges, pitch_edges, roll_edges))
               if edges]
    if not columns:
        return np.zeros(len(poses), dtype=np.int64)
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


@SAMPLERS.register("pose_balanced")
class PoseBalancedSampler(ShardedSampler):
    """Faces drawn so that head-pose bins are balanced (the rule is in the module docstring)."""

    PARAMS = {"yaw_edges": [15, 30, 45], "pitch_edges": None, "roll_edges": None, "balance": 1.0, "epoch_factor": 1.0}

    @classmethod
    def check_params(cls, params: dict) -> dict:
        params = super().check_params(params)
        _check_edges("yaw_edges", params["yaw_edges"], optional=True)
        _check_edges("pitch_edges", params["pitch_edges"], optional=True)
        _check_edges("roll_edges", params["roll_edges"], optional=True)
        balance, factor = params["balance"], params["epoch_factor"]
        if isinstance(balance, bool) or not isinstance(balance, (int, float)) or not 0 <= balance <= 1:
            raise SamplerParamError("balance", f"must be a number in [0, 1] (0: uniform, 1: every pose bin equally "
                                               f"likely), got {balance!r}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 100:
            raise SamplerParamError("epoch_factor", f"must be a number in (0, 100] (epoch length in multiples of the "
                                                    f"training faces), got {factor!r}")
        return params

    def __init__(self, samples, seed: int, rank: int = 0, world_size: int = 1, poses=None, *,
                 yaw_edges=None, pitch_edges=None, roll_edges=None, balance: float = 1.0, epoch_factor: float = 1.0):
        super().__init__(samples, seed, rank, world_size)
        self.poses = sample_poses(samples) if poses is None else np.asarray(poses, dtype=np.float64)
        self.bins = pose_bins(self.poses, yaw_edges, pitch_edges, roll_edges)
        count = len(samples)
        per_bin = np.bincount(self.bins)
        self.weights = (1 - balance) / count + balance / (len(per_bin) * per_bin[self.bins])
        self.length = max(1, int(round(epoch_factor * count)))

    def epoch_length(self) -> int:
        return self.length

    def epoch_copies(self, rng: np.random.Generator) -> np.ndarray:
        """How many times each face is visited this epoch (they sum to the epoch length)."""
        expected = self.length * self.weights
        copies = np.floor(expected).astype(np.int64)
        by_bin = np.argsort(self.bins, kind="stable")  # each bin's remainders are contiguous: its count is within 1
        edges = np.concatenate([[0.0], np.cumsum((expected - copies)[by_bin])])
        extra = self.length - int(copies.sum())
        points = rng.uniform() + np.arange(extra)  # systematic draw: one uniform, then unit steps
        edges *= extra / edges[-1] if edges[-1] > 0 else 1.0  # rounding: the remainders sum to `extra`
        copies[by_bin] += np.diff(np.searchsorted(points, edges))
        return copies

    def epoch_order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        copies = self.epoch_copies(rng)
        faces = np.repeat(np.arange(len(self.samples)), copies)
        visit = np.arange(len(faces)) - np.repeat(np.cumsum(copies) - copies, copies)  # 0, 1, ... per face
        return rng.permutation(faces + visit * len(self.samples))


def build_sampler(name: str, samples: list, seed: int, rank: int = 0, world_size: int = 1,
                  params: dict | None = None) -> ShardedSampler:
    sampler = SAMPLERS.get(name)
    return sampler(samples, seed, rank=rank, world_size=world_size, **sampler.check_params(params or {}))
