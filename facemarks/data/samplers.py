"""Samplers: the order of training samples, a function of (seed, epoch), sharded over ranks.

Identical conditions across runs: the order of samples is drawn from (seed, epoch) and every
sample's augmentation from (seed, epoch, sample index), never from a shared global
generator. Two runs with the same seed therefore see the same batches in the same order
with the same augmentation draws, whatever their loss, and a resumed run sees what an
uninterrupted one would have seen.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """A permutation drawn from (seed, epoch), sharded over distributed ranks.

    Every rank gets len/world samples (the permutation is padded by wrapping around), so
    all ranks run the same number of steps.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def __iter__(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        total = len(self) * self.world_size
        order = np.resize(order, total)  # wrap around so every rank has as many samples
        return iter(order[self.rank::self.world_size].tolist())


