"""Synthetic faces of thin poses added to a training split (config `data.synthetic_mix`).

A second way to balance head poses (besides the pose_balanced sampler): real training
sets have few turned faces, the renderer (facemarks.data.synthetic) can draw any number.
`with_synthetic_mix(train, mix)` returns the training faces followed by
round(share * len(train)) synthetic faces whose |yaw| is uniform in [min_abs_yaw,
max_abs_yaw] degrees (either side; the renderer's faces stay plausible up to 60, its plain
dataset stops at 45), faces of the renderer's seed `seed` drawn from a stream of their own
(`generate_face(..., abs_yaw=...)`), so they are never faces of a synthetic dataset spec.

The faces are rendered once into a folder under the cache root named after every parameter
(atomically: a finished folder is reused by later runs, seeds and entries) and carry their
true pose in their attributes, which the pose_balanced sampler uses. Only the training split
gets them: the validation faces (held out of the real training split, or a split of their
own) and the test faces are the real ones. They are in the 300W 68-point scheme, so the real
faces must be too (`check_scheme`).
"""

from __future__ import annotations

from pathlib import Path

from facemarks import schemes
from facemarks.data import formats
from facemarks.data.synthetic import VERSION, render
from facemarks.data.synthetic.template import SCHEME
from facemarks.errors import ConfigError
from facemarks.fileio import cache_root

MIX_IMAGE_SIZE = 256  # the renderer's default image: a face about 120 px across


def mix_count(mix, num_real: int) -> int:
    """Synthetic faces added to `num_real` real training faces."""
    return int(round(mix.share * num_real))


def check_scheme(mix, scheme_name: str, key: str = "data.synthetic_mix") -> None:
    """ConfigError naming `key` unless the training faces are in the synthetic faces' scheme."""
    if mix.share > 0 and schemes.get(scheme_name).name != SCHEME:
        raise ConfigError("config", key, f"synthetic faces have the 68 points of the {SCHEME!r} scheme, but the training "
                                         f"faces use {scheme_name!r}; a mix needs training data in the same scheme")


def mix_directory(mix, count: int, root=None) -> Path:
    """The cache folder of a mix: every parameter in its name."""
    name = (f"synthetic-mix-v{VERSION}-s{int(mix.seed)}-n{count}-yaw{mix.min_abs_yaw:g}-{mix.max_abs_yaw:g}"
            f"-px{MIX_IMAGE_SIZE}")
    return Path(root).expanduser() / name if root else cache_root() / name


def synthetic_faces(mix, count: int, root=None, progress: bool = False) -> list:
    """`count` faces of the mix (rendered into `mix_directory` unless already there)."""
    jsonl = render(mix_directory(mix, count, root), num_faces=count, seed=mix.seed, image_size=MIX_IMAGE_SIZE,
                   splits=(1.0, 0.0, 0.0), progress=progress, abs_yaw=(mix.min_abs_yaw, mix.max_abs_yaw))
    return list(formats.load(f"jsonl:{jsonl}", "train"))


def with_synthetic_mix(train: list, mix, root=None, progress: bool = False) -> list:
    """The training faces followed by the mix's synthetic faces (`train` itself when share is 0)."""
    count = mix_count(mix, len(train))
    if count == 0:
        return train
    check_scheme(mix, train[0].scheme)
    return list(train) + synthetic_faces(mix, count, root, progress)
