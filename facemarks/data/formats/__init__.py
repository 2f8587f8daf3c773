"""Dataset readers behind one registry. Every reader converts its format's coordinate
convention once and returns `Sample` records in 0-based pixel-centre coordinates (see
facemarks/data/sample.py).

A dataset is named by a spec "FORMAT:PATH[?key=value&...]":
    300w:DIR          300W folders of images + 1-based .pts      (w300.py)
    wflw:DIR          WFLW annotation lists, 0-based             (wflw.py)
    cofw:FILE|DIR     COFW .mat files (v7.3 or v5), 1-based      (cofw.py)
                      option cache=DIR: where decoded images go
    csv:FILE          CSV table, 0-based                         (table.py)
    jsonl:FILE        JSON lines, 0-based                        (table.py)
                      csv/jsonl option scheme=NAME: scheme of faces without a scheme field
                      csv/jsonl option root=DIR: the dataset root of the images (below)
    synthetic[:DIR]   rendered once to DIR (default $FACEMARKS_CACHE/synthetic-v1-s0-n3000, else
                      ~/.cache/facemarks/...) as JSON lines, then read as jsonl (synthetic.py)
    synthetic77[:DIR] the same faces with the 77 points of scheme 300w77 (9 forehead points)
A spec without "FORMAT:" is recognised from the path when exactly one format claims it
(.csv, .jsonl, .mat, a folder with WFLW_annotations, a folder with .pts files, ...).

Rules every reader applies to every face (bad input stops with a DataError naming the
annotation file and line, or with on_error="skip" leaves the face out, listed in
SampleList.skipped):
* Containment: an image's real path (symlinks resolved) must lie inside the dataset
  root: the dataset folder for 300W and WFLW, the folder of the annotation file for CSV
  and JSON lines (or the spec's root=DIR), the reader's own image folder for COFW.
  Relative and absolute paths alike; the image must exist (`sample.image_inside`).
* Points may lie outside the image (as in WFLW), but no point may lie more than half the
  image's side (along that axis) outside it (`sample.check_inside_image`; the image size
  comes from its header).

Each format is a `DatasetFormat` (base.py) registered in `facemarks.registry.FORMATS`;
this module only parses specs and dispatches. A new format is one module with a
registered reader class plus one import line below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from facemarks.data.formats import cofw, synthetic, table, w300, wflw  # noqa: F401  (they register)
from facemarks.data.formats.base import DatasetFormat
from facemarks.data.sample import Sample, SampleList, check_on_error, read_image
from facemarks.errors import DataError, UnknownNameError
from facemarks.registry import FORMATS

__all__ = ["Sample", "SampleList", "DataError", "DatasetFormat", "DatasetSpec", "FORMATS", "load", "splits",
           "unavailable_splits", "default_splits", "parse_spec", "guess_format", "reader", "read_image", "synthetic_dir"]

_FORMAT_NAME = re.compile(r"[a-z0-9_-]+")


@dataclass
class DatasetSpec:
    format: str
    path: Path
    options: dict = field(default_factory=dict)


def synthetic_dir() -> Path:
    """Default folder of the synthetic dataset (named after its generator version and size)."""
    return synthetic.default_directory()


def reader(name: str) -> DatasetFormat:
    """The reader of a format; UnknownNameError listing the valid formats."""
    return FORMATS.get(name)()


def guess_format(path) -> str | None:
    """The one format whose reader recognises `path`; None if none does. DataError
    when several do (the spec then has to say FORMAT:)."""
    path = Path(path)
    claims = [name for name in FORMATS.names() if reader(name).guess(path)]
    if len(claims) > 1:
        raise DataError(path, f"ambiguous dataset: looks like {' and '.join(claims)}; write FORMAT:PATH")
    return claims[0] if claims else None


def _split_options(text: str) -> tuple[str, dict[str, str]]:
    """"HEAD?k=v&..." -> (HEAD, {k: v}); text without a well-formed query is left whole."""
    if "?" not in text:
        return text, {}
    head, _, query = text.rpartition("?")
    pairs = [p for p in query.split("&") if p]
    if not pairs or not all("=" in p for p in pairs):
        return text, {}
    return head, {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in pairs)}


def _format_and_path(spec, text: str) -> tuple[str, Path | None]:
    """The format name and path of a spec without its options (the path may be None)."""
    name, sep, rest = text.partition(":")
    name = name.strip().lower()
    if name in FORMATS:
        if sep:
            return name, Path(rest).expanduser() if rest else None
        if reader(name).default_path() is not None:
            return name, None  # e.g. "synthetic"
    path = Path(text).expanduser()
    guessed = guess_format(path)
    if guessed is not None:
        return guessed, path
    if sep and _FORMAT_NAME.fullmatch(name):  # "nosuch:x": a format name, not a path
        raise UnknownNameError(FORMATS.kind, name, FORMATS.names())
    raise DataError(spec, f"unknown dataset format; expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS.names())}")


def parse_spec(spec: str) -> DatasetSpec:
    """Split "FORMAT:PATH?key=value&..." into its parts (see the module doc)."""
    text = str(spec).strip()
    if not text:
        raise DataError(spec, "empty dataset spec; expected FORMAT:PATH, e.g. 300w:data/300w")
    text, options = _split_options(text)
    name, path = _format_and_path(spec, text)
    fmt = reader(name)
    path = path or fmt.default_path()
    if path is None:
        raise DataError(spec, f"missing path after '{name}:'")
    unknown = set(options) - fmt.options
    if unknown:
        allowed = ", ".join(sorted(fmt.options)) or "none"
        raise DataError(spec, f"unknown option(s) {', '.join(sorted(unknown))} for {name} (allowed: {allowed})")
    return DatasetSpec(name, path, options)


def _parsed(spec: str | DatasetSpec) -> DatasetSpec:
    return spec if isinstance(spec, DatasetSpec) else parse_spec(spec)


def load(spec: str | DatasetSpec, split: str | None = None, on_error: str = "raise", allow_partial: bool = False) -> SampleList:
    """Read the faces of a dataset split as Samples (0-based pixel-centre coordinates).

    spec: "FORMAT:PATH" (see the module doc). split: a split name of that format (see
    `splits`); None means every face. on_error: "raise" stops at the first bad face
    with a DataError naming the file (and line); "skip" leaves bad faces out and lists
    the problems in the result's `.skipped`. allow_partial: accept a standard split whose
    parts are partly missing (300W "full" without ibug). Images are checked here by the
    rules of the module doc (their size read from the header); they are decoded later
    (read_image). An empty result is a DataError.
    """
    check_on_error(on_error)
    parsed = _parsed(spec)
    return reader(parsed.format).load(parsed.path, split, on_error=on_error, allow_partial=allow_partial, options=parsed.options)


def splits(spec: str | DatasetSpec) -> dict[str, int]:
    """Faces per available split (annotations counted, not validated)."""
    parsed = _parsed(spec)
    return reader(parsed.format).splits(parsed.path, options=parsed.options)


def unavailable_splits(spec: str | DatasetSpec) -> dict[str, str]:
    """Standard splits of the format that cannot be formed here, with the reason."""
    parsed = _parsed(spec)
    return reader(parsed.format).unavailable(parsed.path, options=parsed.options)


def default_splits(spec: str | DatasetSpec) -> tuple[str, str | None, str]:
    """(train, validation, test) split names to use when the dataset comes without a
    config, e.g. ("train", None, "common") for 300W; validation None means: hold a
    fraction of the training faces out. Reads no files (nothing is rendered)."""
    return reader(_parsed(spec).format).default_splits
