"""Network inputs from a crop cache: FaceCrops (one warp and photometric augmentation per
sample, drawn from (seed, epoch, index)) and the DataLoader around it.

A sampler that visits a face more than once in an epoch asks for `index + k * N` for its
k-th copy (N faces, see facemarks.data.samplers): the face is `key % N` and the draw comes
from (seed, epoch, key), so copies differ and copy 0 draws what the plain index always did."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facemarks.data import augment
from facemarks.data.cache import CropCache
from facemarks.geometry.coords import to_normalized


class FaceCrops(Dataset):
    """Network inputs from a crop cache: one affine warp and photometric augmentation per sample.

    Items: {"image": uint8 (3, S, S), "points": float32 (N, 2) normalised to [0, 1] of the
    input, "matrix": float64 (2, 3) cache -> input pixels, "index": int}. With augment=None
    the item is the plain crop used for evaluation. The crop is whatever the cache's crop
    policy made (box or aligned); augmentation is drawn from (seed, epoch, key) for the key
    asked for (`index + copy * N`, see the module docstring); "index" is the face's index.
    """

    def __init__(self, cache: CropCache, input_size: int, augment: augment.AugmentConfig | None = None,
                 flip_permutation=None, seed: int = 0):
        self.cache = cache
        self.input_size = input_size
        self.augment = augment
        self.flip_permutation = None if flip_permutation is None else np.asarray(flip_permutation)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, key: int) -> dict:
        index = int(key) % len(self.cache)
        if self.augment is None:
            params = augment.AugmentParams()  # the identity: a plain crop
        else:
            params = augment.sample_augmentation(np.random.default_rng([self.seed, self.epoch, int(key)]), self.augment)
        partner = augment.background_partner(params, index, len(self.cache))
        image, points, matrix = augment.augment_sample(
            np.asarray(self.cache.images[index]), self.cache.points[index], self.cache.windows[index], params,
            self.input_size, self.cache.window_margin, self.flip_permutation,
            background_image=None if partner is None else np.asarray(self.cache.images[partner]))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "points": torch.from_numpy(to_normalized(points, self.input_size).astype(np.float32)),
            "matrix": torch.from_numpy(matrix),  # cache pixels -> input pixels
            "index": index,
        }


def make_loader(dataset: FaceCrops, sampler: Sampler, batch_size: int, num_workers: int,
                drop_last: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=False, pin_memory=False)
