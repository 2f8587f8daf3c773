"""The train, validation and test splits a config names.

`load_splits` refuses a face present in two of the training, validation and test splits
(validation counts when it is a split of its own; a held-out fraction comes from the
training faces) (a
face: the same image file and the same points, see `sample.matching_faces`); both
`facemarks train` and `facemarks compare` read their data through it. `data.points` gives
every split the points of another scheme (facemarks.data.convert)."""

from __future__ import annotations

import numpy as np

from facemarks.data import formats
from facemarks.data.convert import convert_samples
from facemarks.data.sample import matching_faces
from facemarks.errors import DataError


# The validation faces held out of a training split are the same for every seed and loss.
VALIDATION_HOLDOUT_SEED = 20181


def load_splits(data) -> dict:
    """Samples of the train, val and test splits named in a DataConfig (`config.data`)."""
    train = list(formats.load(data.spec, data.train_split))
    if data.val_split:
        val = list(formats.load(data.spec, data.val_split))
    test = list(formats.load(data.spec, data.test_split))
    check_disjoint(data.spec, (data.train_split, train), (data.test_split, test))
    if data.val_split:
        check_disjoint(data.spec, (data.train_split, train), (data.val_split, val))
        check_disjoint(data.spec, (data.val_split, val), (data.test_split, test))  # model selection on test faces
    else:
        order = np.random.default_rng(VALIDATION_HOLDOUT_SEED).permutation(len(train))
        num_val = max(1, int(round(len(train) * data.val_fraction)))
        val = [train[i] for i in sorted(order[:num_val])]
        train = [train[i] for i in sorted(order[num_val:])]
    schemes = {s.scheme for s in train + val + test}
    if len(schemes) != 1:
        raise DataError(data.spec, f"splits mix landmark schemes {sorted(schemes)}")
    if data.points:  # after the checks above, which compare the faces as annotated
        train, val, test = (convert_samples(faces, data.points, data.spec)[0] for faces in (train, val, test))
    return {"train": train, "val": val, "test": test}


def check_disjoint(spec, first: tuple, second: tuple) -> None:
    """DataError naming the spec, both splits and an example face when a face of split
    `first` = (name, samples) is also in `second`."""
    (name_a, faces_a), (name_b, faces_b) = first, second
    pairs = matching_faces(faces_a, faces_b)
    if pairs:
        i, j = pairs[0]
        a, b = faces_a[i], faces_b[j]
        count = len({i for i, _ in pairs})
        raise DataError(spec, f"{count} face(s) of split {name_a!r} are also in split {name_b!r}, e.g. "
                              f"{a.origin or a.image_path} and {b.origin or b.image_path} (image {a.image_path}); "
                              f"a face must not be in both")
