"""Samplers: the order of training samples, a function of (seed, epoch), sharded over ranks.

Identical conditions across runs: the order of samples is drawn from (seed, epoch) and every
sample's augmentation from (seed, epoch, sample index), never from a shared global
generator. Two runs with the same seed therefore see the same batches in the same order
with the same augmentation draws, whatever their loss, and a resumed run sees what an
uninterrupted one would have seen.

A sampler is chosen by name (`data.sampler` in the config) from the SAMPLERS registry. Each
one only says which samples an epoch visits, in which order (`epoch_order`); the base class
shards that order over distributed ranks. A weighted or pose-balanced sampler is a new
subclass with its own `epoch_order`; nothing else changes.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from facemarks.registry import SAMPLERS


class ShardedSampler(Sampler):
    """An epoch's order (drawn from seed and epoch), sharded over distributed ranks.

    Rank r takes positions r, r + W, r + 2W, ... of the order (W ranks), and the order is cut
    to a multiple of W, so all ranks run the same number of steps and, with a per-rank batch
    of B / W, global step k trains on exactly positions kB .. kB + B - 1: the batches of a
    single process with batch B. (Padding the order instead would give a distributed epoch
    more steps than a single-process one.)
    """

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


def build_sampler(name: str, samples: list, seed: int, rank: int = 0, world_size: int = 1) -> ShardedSampler:
    return SAMPLERS.get(name)(samples, seed, rank=rank, world_size=world_size)
