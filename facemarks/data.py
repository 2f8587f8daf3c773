"""From dataset splits to training batches.

Identical conditions across runs: the order of samples is drawn from (seed, epoch) and every
sample's augmentation from (seed, epoch, sample index), never from a shared global
generator. Two runs with the same seed therefore see the same batches in the same order
with the same augmentation draws, whatever their loss, and a resumed run sees what an
uninterrupted one would have seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facemarks import datasets, transforms
from facemarks.cache import CropCache
from facemarks.config import Config
from facemarks.errors import DataError

# The validation faces held out of a training split are the same for every seed and loss.
VALIDATION_HOLDOUT_SEED = 20181


def load_splits(config: Config) -> dict:
    """Samples of the train, val and test splits named in the config."""
    data = config.data
    train = list(datasets.load(data.spec, data.train_split))
    if data.val_split:
        val = list(datasets.load(data.spec, data.val_split))
    else:
        order = np.random.default_rng(VALIDATION_HOLDOUT_SEED).permutation(len(train))
        num_val = max(1, int(round(len(train) * data.val_fraction)))
        val = [train[i] for i in sorted(order[:num_val])]
        train = [train[i] for i in sorted(order[num_val:])]
    test = list(datasets.load(data.spec, data.test_split))
    schemes = {s.scheme for s in train + val + test}
    if len(schemes) != 1:
        raise DataError(data.spec, f"splits mix landmark schemes {sorted(schemes)}")
    return {"train": train, "val": val, "test": test}


class FaceCrops(Dataset):
    """Network inputs from a crop cache: one affine warp and photometric augmentation per sample.

    Items: {"image": uint8 (3, S, S), "points": float32 (N, 2) normalised to [0, 1] of the
    input, "matrix": float64 (2, 3) cache -> input pixels, "index": int}. With augment=None
    the item is the plain crop used for evaluation.
    """

    def __init__(self, cache: CropCache, input_size: int, crop_margin: float,
                 augment: transforms.AugmentConfig | None, flip_permutation, seed: int = 0):
        self.cache = cache
        self.input_size = input_size
        self.crop_margin = crop_margin
        self.augment = augment
        self.flip_permutation = None if flip_permutation is None else np.asarray(flip_permutation)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict:
        if self.augment is None:
            params = transforms.AugmentParams()  # the identity: a plain crop
        else:
            params = transforms.sample_augmentation(np.random.default_rng([self.seed, self.epoch, index]), self.augment)
        image, points, matrix = transforms.augment_sample(
            np.asarray(self.cache.images[index]), self.cache.points[index], self.cache.boxes[index], params,
            self.input_size, self.crop_margin, self.flip_permutation)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "points": torch.from_numpy(transforms.to_normalized(points, self.input_size).astype(np.float32)),
            "matrix": torch.from_numpy(matrix),  # cache pixels -> input pixels
            "index": index,
        }


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


def make_loader(dataset: FaceCrops, sampler: Sampler, batch_size: int, num_workers: int,
                drop_last: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=False, pin_memory=False)
