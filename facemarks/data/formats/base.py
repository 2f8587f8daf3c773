"""What every dataset format provides. A format is one class registered in
`facemarks.registry.FORMATS` under the name used in specs ("300w" in `300w:DIR`); the
package `facemarks.data.formats` imports every reader module so they register, and
dispatches specs to them. A reader is stateless: the dispatcher makes one per call.

Every reader returns `Sample` records in 0-based pixel-centre coordinates (see
facemarks/data/sample.py), converting its format's convention once.
"""

from __future__ import annotations

from pathlib import Path

from facemarks.data.sample import SampleList


class DatasetFormat:
    """Base of the registered readers. Subclasses set `name`, `default_splits` and
    `options`, implement `load` and `splits`, and override the rest where they apply."""

    name = ""
    # (train, validation, test) split names used when a dataset is given without a
    # config; validation None: hold a fraction of the training faces out.
    default_splits: tuple[str, str | None, str] = ("train", "val", "test")
    # keys accepted in the spec's "?key=value" part
    options: frozenset[str] = frozenset()

    def load(self, path: Path, split: str | None = None, on_error: str = "raise",
             allow_partial: bool = False, options: dict | None = None) -> SampleList:
        """The faces of a split (None or "all": every face). on_error "raise" stops at the
        first bad face with a DataError naming the file (and line); "skip" lists it in the
        result's `.skipped`. An empty result is a DataError."""
        raise NotImplementedError

    def splits(self, path: Path, options: dict | None = None) -> dict[str, int]:
        """Faces per available split (annotations counted, not validated)."""
        raise NotImplementedError

    def unavailable(self, path: Path, options: dict | None = None) -> dict[str, str]:
        """Standard splits of the format that cannot be formed here, with the reason."""
        return {}

    def guess(self, path: Path) -> bool:
        """Does `path` look like a dataset of this format (for specs without "FORMAT:")?"""
        return False

    def default_path(self) -> Path | None:
        """Where the dataset is when the spec gives no path (None: a path is required)."""
        return None
