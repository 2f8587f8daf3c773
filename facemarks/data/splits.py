"""The train, validation and test splits a config names."""

from __future__ import annotations

import numpy as np

from facemarks.data import formats
from facemarks.errors import DataError


# The validation faces held out of a training split are the same for every seed and loss.
VALIDATION_HOLDOUT_SEED = 20181


def load_splits(data) -> dict:
    """Samples of the train, val and test splits named in a DataConfig (`config.data`)."""
    train = list(formats.load(data.spec, data.train_split))
    if data.val_split:
        val = list(formats.load(data.spec, data.val_split))
    else:
        order = np.random.default_rng(VALIDATION_HOLDOUT_SEED).permutation(len(train))
        num_val = max(1, int(round(len(train) * data.val_fraction)))
        val = [train[i] for i in sorted(order[:num_val])]
        train = [train[i] for i in sorted(order[num_val:])]
    test = list(formats.load(data.spec, data.test_split))
    schemes = {s.scheme for s in train + val + test}
    if len(schemes) != 1:
        raise DataError(data.spec, f"splits mix landmark schemes {sorted(schemes)}")
    return {"train": train, "val": val, "test": test}


