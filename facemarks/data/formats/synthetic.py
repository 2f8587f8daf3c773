"""Synthetic faces (spec `synthetic[:DIR]`): rendered once into DIR by
facemarks.data.synthetic, then read as the JSON-lines file DIR/faces.jsonl (table.py).

Without DIR: the renderer's default folder, under the cache root and named after the
generator version and size (e.g. $FACEMARKS_CACHE/synthetic-v1-s0-n3000). A folder that
already holds a finished render (render.json and faces.jsonl, e.g. from
`facemarks data synth DIR`) is read as it is, whatever its parameters. Option
`?scheme=NAME` as for jsonl. Splits: train, val, test (the renderer's split field).

Spec `synthetic77[:DIR]`: the same faces annotated with the 77 points of scheme "300w77"
(the 68 and 9 forehead points, facemarks.data.synthetic.forehead); default folder
$FACEMARKS_CACHE/synthetic-v1-s0-n3000-300w77.
"""

from __future__ import annotations

from pathlib import Path

from facemarks.data.formats.base import DatasetFormat
from facemarks.data.formats.table import JSONLinesFormat
from facemarks.data.sample import SampleList
from facemarks.errors import DataError
from facemarks.registry import FORMATS


def default_directory(scheme: str = "300w") -> Path:
    """Default folder of the synthetic dataset (named after its generator version and size)."""
    from facemarks.data.synthetic import default_directory as renderer_default

    return renderer_default(scheme=scheme)


def rendered_faces(directory: Path, scheme: str = "300w") -> Path:
    """DIR/faces.jsonl, rendering the dataset into DIR first unless a render is finished."""
    directory = Path(directory)
    faces = directory / "faces.jsonl"
    if (directory / "render.json").is_file() and faces.is_file():
        return faces
    try:
        from facemarks.data.synthetic import ensure_rendered
    except ImportError as exc:
        raise DataError(directory, f"synthetic data is not available: {exc}") from None
    return Path(ensure_rendered(directory, scheme=scheme))


@FORMATS.register("synthetic")
class SyntheticFormat(DatasetFormat):
    """Rendered synthetic faces, read as JSON lines (see the module doc)."""

    name = "synthetic"
    options = JSONLinesFormat.options
    render_scheme = "300w"  # the points the renderer annotates

    def default_path(self) -> Path:
        return default_directory(self.render_scheme)

    def load(self, path, split: str | None = None, on_error: str = "raise", allow_partial: bool = False, options=None) -> SampleList:
        return JSONLinesFormat().load(rendered_faces(path, self.render_scheme), split, on_error, allow_partial, options)

    def splits(self, path, options=None) -> dict[str, int]:
        return JSONLinesFormat().splits(rendered_faces(path, self.render_scheme), options)


@FORMATS.register("synthetic77")
class Synthetic77Format(SyntheticFormat):
    """Rendered synthetic faces with 77 points (scheme "300w77"; see the module doc)."""

    name = "synthetic77"
    render_scheme = "300w77"
