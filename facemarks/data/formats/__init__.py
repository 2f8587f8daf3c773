"""Dataset readers. Every reader converts its format's coordinate convention once and
returns `Sample` records in 0-based pixel-centre coordinates (see base.py).

A dataset is named by a spec "FORMAT:PATH[?key=value&...]":
    300w:DIR          300W folders of images + 1-based .pts      (datasets/w300.py)
    wflw:DIR          WFLW annotation lists, 0-based             (datasets/wflw.py)
    cofw:FILE|DIR     COFW .mat files (v7.3 or v5), 1-based      (datasets/cofw.py)
                      option cache=DIR: where decoded images go
    csv:FILE          CSV table, 0-based                         (datasets/table.py)
    jsonl:FILE        JSON lines, 0-based                        (datasets/table.py)
                      csv/jsonl option scheme=NAME: scheme of faces without a scheme field
    synthetic[:DIR]   rendered once to DIR (default $FACEMARKS_CACHE/synthetic-v1-s0-n3000, else
                      ~/.cache/facemarks/...) as JSON lines, then read as jsonl
A spec without "FORMAT:" is recognised from the path when unambiguous (.csv, .jsonl,
.mat, a folder with WFLW_annotations, a folder with .pts files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facemarks.data.sample import Sample, SampleList, check_on_error, read_image
from facemarks.errors import DataError

__all__ = ["Sample", "SampleList", "DataError", "DatasetSpec", "FORMATS", "load", "splits", "unavailable_splits", "parse_spec", "read_image", "synthetic_dir"]

FORMATS = ("300w", "wflw", "cofw", "csv", "jsonl", "synthetic")
_OPTIONS = {"cofw": {"cache"}, "csv": {"scheme"}, "jsonl": {"scheme"}, "synthetic": {"scheme"}}


@dataclass
class DatasetSpec:
    format: str
    path: Path
    options: dict = field(default_factory=dict)


def synthetic_dir() -> Path:
    """Default folder of the synthetic dataset (named after its generator version and size)."""
    from facemarks.data.synthetic import default_directory

    return default_directory()


def _guess_format(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".mat":
        return "cofw"
    if path.is_dir():
        if (path / "WFLW_annotations").is_dir():
            return "wflw"
        if any(path.rglob("*.pts")):
            return "300w"
        if any(path.glob("COFW_*.mat")):
            return "cofw"
    return None


def parse_spec(spec: str) -> DatasetSpec:
    """Split "FORMAT:PATH?key=value&..." into its parts (see the module doc)."""
    text = str(spec).strip()
    if not text:
        raise DataError(spec, "empty dataset spec; expected FORMAT:PATH, e.g. 300w:data/300w")
    options: dict[str, str] = {}
    if "?" in text:
        head, _, query = text.rpartition("?")
        pairs = [p for p in query.split("&") if p]
        if pairs and all("=" in p for p in pairs):
            text = head
            for pair in pairs:
                key, _, value = pair.partition("=")
                options[key.strip()] = value.strip()
    fmt, sep, rest = text.partition(":")
    fmt = fmt.strip().lower()
    if sep and fmt in FORMATS:
        path = Path(rest).expanduser() if rest else None
    elif fmt == "synthetic" and not sep:
        path = None
    else:
        path = Path(text).expanduser()
        fmt = _guess_format(path)
        if fmt is None:
            raise DataError(spec, f"unknown dataset format; expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    if fmt == "synthetic":
        path = path or synthetic_dir()
    elif path is None:
        raise DataError(spec, f"missing path after '{fmt}:'")
    unknown = set(options) - _OPTIONS.get(fmt, set())
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS.get(fmt, set()))) or "none"
        raise DataError(spec, f"unknown option(s) {', '.join(sorted(unknown))} for {fmt} (allowed: {allowed})")
    return DatasetSpec(fmt, path, options)


def _reader(fmt: str):
    """(load, splits, unavailable) functions of a format; modules are imported on use."""
    if fmt == "300w":
        from facemarks.data.formats import w300 as module

        return module.load, module.splits, module.unavailable
    if fmt == "wflw":
        from facemarks.data.formats import wflw as module

        return module.load, module.splits, module.unavailable
    if fmt == "cofw":
        from facemarks.data.formats import cofw as module

        return module.load, module.splits, module.unavailable
    from facemarks.data.formats import table

    if fmt == "csv":
        return table.load_csv, table.splits_csv, lambda path, options=None: {}
    return table.load_jsonl, table.splits_jsonl, lambda path, options=None: {}


def _resolve(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse the spec; for synthetic data, render it if needed and point at its jsonl file."""
    parsed = spec if isinstance(spec, DatasetSpec) else parse_spec(spec)
    if parsed.format != "synthetic":
        return parsed
    try:
        from facemarks.data.synthetic import ensure_rendered
    except ImportError as exc:
        raise DataError(parsed.path, f"synthetic data is not available: {exc}") from None
    rendered = parsed.path / "faces.jsonl"
    if (parsed.path / "render.json").is_file() and rendered.is_file():
        return DatasetSpec("jsonl", rendered, parsed.options)  # a finished render, e.g. by `data synth`
    return DatasetSpec("jsonl", Path(ensure_rendered(parsed.path)), parsed.options)


def load(spec: str | DatasetSpec, split: str | None = None, on_error: str = "raise", allow_partial: bool = False) -> SampleList:
    """Read the faces of a dataset split as Samples (0-based pixel-centre coordinates).

    spec: "FORMAT:PATH" (see the module doc). split: a split name of that format (see
    `splits`); None means every face. on_error: "raise" stops at the first bad face
    with a DataError naming the file (and line); "skip" leaves bad faces out and lists
    the problems in the result's `.skipped`. allow_partial: accept a standard split whose
    parts are partly missing (300W "full" without ibug). Images are only checked for
    existence here; they are decoded later (read_image). An empty result is a DataError.
    """
    check_on_error(on_error)
    parsed = _resolve(spec)
    load_fn, _, _ = _reader(parsed.format)
    return load_fn(parsed.path, split, on_error=on_error, allow_partial=allow_partial, options=parsed.options)


def splits(spec: str | DatasetSpec) -> dict[str, int]:
    """Faces per available split (annotations counted, not validated)."""
    parsed = _resolve(spec)
    return _reader(parsed.format)[1](parsed.path, options=parsed.options)


def unavailable_splits(spec: str | DatasetSpec) -> dict[str, str]:
    """Standard splits of the format that cannot be formed here, with the reason."""
    parsed = _resolve(spec)
    return _reader(parsed.format)[2](parsed.path, options=parsed.options)
