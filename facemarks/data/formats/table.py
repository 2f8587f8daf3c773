"""Users' own data as a table: CSV (`csv:FILE.csv`) or JSON lines (`jsonl:FILE.jsonl`).

Coordinates in both formats are **0-based pixel-centre** (the centre of the top-left
pixel is (0, 0)), exactly as inside facemarks: no conversion is applied.

Image paths: relative to the folder of the CSV/JSONL file, or absolute. Either way the
image must lie inside the dataset root, which is that folder unless the spec option
`?root=DIR` names another (e.g. `csv:faces.csv?root=/data/photos` for a table whose
absolute paths point there); see the containment rule in facemarks/data/formats/__init__.py.

CSV: a header row, then one face per row.
    image,x0,y0,x1,y1,...,x{N-1},y{N-1}[,box_x0,box_y0,box_x1,box_y1][,split][,scheme][,subset]
    The four box columns are optional (all four or none; default: landmark extent).

JSON lines: one JSON object per line (blank lines ignored):
    {"image": "faces/0001.jpg",
     "landmarks": [x0, y0, x1, y1, ...]  or  [[x0, y0], [x1, y1], ...],
     "box": [x_min, y_min, x_max, y_max],          optional (default: landmark extent)
     "split": "train",                             optional
     "scheme": "300w",                             optional
     "subset": "...", "attributes": {...}}         optional

Scheme of a face, in this order: the row's `scheme` column/field; else the spec option
`?scheme=NAME` (e.g. `jsonl:faces.jsonl?scheme=wflw`, `csv:faces.csv?scheme=my.yaml`);
else the built-in scheme with that many points (68 -> 300w, 98 -> wflw, 29 -> cofw,
19 -> aflw, 5 -> 5pt). A row scheme that contradicts the option is an error.

Splits: the values of the `split` column/field. "all" (or split=None) means every face,
including faces without a split. Without a config, training uses the splits named
train, val and test. A path ending in .csv, .jsonl or .ndjson is recognised without
the "csv:"/"jsonl:" prefix.

Writers (`write_csv`, `write_jsonl`) write atomically and are the readers' inverse
(images outside the file's folder are written as absolute paths: read such a file with
`?root=DIR`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from facemarks import fileio, schemes
from facemarks.data.formats.base import DatasetFormat
from facemarks.data.sample import (Sample, SampleList, add_face, check_inside_image, check_landmarks, check_on_error, image_inside,
                                   landmark_box, missing_message, require_nonempty)
from facemarks.errors import DataError
from facemarks.registry import FORMATS

BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
OPTIONAL_COLUMNS = ("split", "scheme", "subset")
_COORD = re.compile(r"^([xy])(\d+)$")


# ---------------------------------------------------------------------------------------
# Shared pieces


def _image_path(folder: Path, value, landmarks: np.ndarray, path, line: int, options: dict) -> str:
    """The image of a row: relative to the file's folder or absolute, inside the dataset
    root (the file's folder, or the spec option root=DIR), points not far outside it."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, "missing image path", line)
    root = Path(options["root"]).expanduser() if options.get("root") else folder
    hint = "" if options.get("root") else "; for images elsewhere give the spec option ?root=DIR"
    image = image_inside(root, value.strip(), path, line, base=folder, hint=hint)
    check_inside_image(landmarks, image, path, line)
    return str(image)


def _scheme_name(row_scheme, option_scheme, num_points: int, path, line: int) -> str:
    """Scheme for a face: row value, else spec option, else inferred from the point count."""
    row_scheme = (row_scheme or "").strip() or None
    if row_scheme and option_scheme and row_scheme != option_scheme:
        raise DataError(path, f"scheme {row_scheme!r} contradicts the spec option scheme={option_scheme!r}", line)
    name = row_scheme or option_scheme
    if name is None:
        try:
            return schemes.for_num_points(num_points).name
        except DataError:
            raise DataError(path, f"{num_points} points match no built-in scheme; give a scheme column/field or ?scheme=NAME", line) from None
    try:
        scheme = schemes.get(name)
    except DataError as exc:
        raise DataError(path, f"scheme {name!r}: {exc}", line) from None
    if scheme.num_points != num_points:
        raise DataError(path, f"scheme {name!r} has {scheme.num_points} points, the face has {num_points}", line)
    return name


def _box(values, landmarks: np.ndarray, path, line: int) -> np.ndarray:
    if values is None:
        return landmark_box(landmarks)
    try:
        box = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"box must be 4 numbers, got {values!r}", line) from None
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
        raise DataError(path, f"box must be x_min, y_min, x_max, y_max with max >= min, got {values!r}", line)
    return box


def _select(samples: SampleList, split: str | None, path, what: str) -> SampleList:
    if split in (None, "all"):
        return require_nonempty(samples, path, what)
    chosen = SampleList([s for s in samples if s.attributes.get("split") == split], samples.skipped)
    if not chosen:
        available = sorted({s.attributes["split"] for s in samples if "split" in s.attributes})
        raise DataError(path, f"no faces in split {split!r} (available: {', '.join(available) or 'none; every face is in split all'})")
    return chosen


def _split_counts(samples_splits: list[str | None]) -> dict[str, int]:
    counts = {"all": len(samples_splits)}
    for value in samples_splits:
        if value:
            counts[value] = counts.get(value, 0) + 1
    return counts


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, missing_message(path, "annotation file")) from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not an annotation file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(path, f"not a UTF-8 text file (byte 0x{data[exc.start]:02x}); save it as UTF-8", line) from None


def _csv_rows(path: Path):
    """(line number, cells) of every row; a malformed CSV is a DataError naming the line."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(path, f"malformed CSV: {exc}", reader.line_num) from None
        yield reader.line_num, cells


def _relative(image_path: str, folder: Path) -> str:
    """Image path as written by the writers: relative to the file's folder when inside it."""
    image = Path(image_path).resolve()
    folder = folder.resolve()
    return image.relative_to(folder).as_posix() if folder in image.parents else str(image)


# The split of a face read from a table is kept in attributes["split"] so it survives
# selection and round trips; readers of other formats do not set it.


# ---------------------------------------------------------------------------------------
# CSV


def _csv_layout(header: list[str], path) -> tuple[int, bool]:
    """Validate the header; return (number of points, has box columns)."""
    if not header or header[0].strip() != "image":
        raise DataError(path, "the first column must be 'image'", 1)
    coords = []
    others = []
    for name in (h.strip() for h in header[1:]):
        match = _COORD.match(name)
        if match:
            coords.append((match.group(1), int(match.group(2))))
        else:
            others.append(name)
    if not coords or len(coords) % 2:
        raise DataError(path, "expected coordinate columns x0,y0,x1,y1,...", 1)
    n = len(coords) // 2
    expected = [(axis, i) for i in range(n) for axis in ("x", "y")]
    if [h.strip() for h in header[1 : 1 + 2 * n]] != [f"{a}{i}" for a, i in expected]:
        raise DataError(path, f"coordinate columns must be x0,y0,...,x{n - 1},y{n - 1} in this order, right after 'image'", 1)
    unknown = [c for c in others if c not in BOX_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise DataError(path, f"unknown column(s) {', '.join(unknown)}; optional columns: {', '.join(BOX_COLUMNS + OPTIONAL_COLUMNS)}", 1)
    if len(set(others)) != len(others):
        raise DataError(path, "a column name repeats", 1)
    box_present = [c in others for c in BOX_COLUMNS]
    if any(box_present) and not all(box_present):
        raise DataError(path, f"give all four box columns ({', '.join(BOX_COLUMNS)}) or none", 1)
    return n, all(box_present)


def _csv_face(row: dict, n: int, has_box: bool, folder: Path, path, line: int, options: dict) -> Sample:
    values = []
    for i in range(n):
        for axis in ("x", "y"):
            cell = (row.get(f"{axis}{i}") or "").strip()
            try:
                values.append(float(cell))
            except ValueError:
                raise DataError(path, f"column {axis}{i}: {cell!r} is not a number", line) from None
    landmarks = check_landmarks(np.array(values).reshape(n, 2), n, path, line)
    box = _box([row.get(c) for c in BOX_COLUMNS] if has_box else None, landmarks, path, line)
    attributes = {}
    if (row.get("split") or "").strip():
        attributes["split"] = row["split"].strip()
    return Sample(
        image_path=_image_path(folder, row.get("image"), landmarks, path, line, options),
        origin=f"{path}:{line}",
        landmarks=landmarks,
        box=box,
        scheme=_scheme_name(row.get("scheme"), options.get("scheme"), n, path, line),
        attributes=attributes,
        subset=(row.get("subset") or "").strip() or attributes.get("split", ""),
    )


def _read_csv_all(path: Path, on_error: str, options: dict) -> SampleList:
    rows = _csv_rows(path)
    header = next(rows, (1, None))[1]
    n, has_box = _csv_layout(header or [], path)
    names = [h.strip() for h in header]
    out = SampleList()
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue

        def make(cells=cells, line=line):
            if len(cells) != len(names):
                raise DataError(path, f"expected {len(names)} columns, found {len(cells)}", line)
            return _csv_face(dict(zip(names, cells)), n, has_box, path.parent, path, line, options)

        add_face(out, on_error, make)
    return out


@FORMATS.register("csv")
class CSVFormat(DatasetFormat):
    """A CSV table, 0-based (see the module doc)."""

    name = "csv"
    options = frozenset({"scheme", "root"})

    def guess(self, path: Path) -> bool:
        return path.suffix.lower() == ".csv"

    def load(self, path, split: str | None = None, on_error: str = "raise", allow_partial: bool = False, options=None) -> SampleList:
        check_on_error(on_error)
        path = Path(path)
        return _select(_read_csv_all(path, on_error, options or {}), split, path, "CSV file")

    def splits(self, path, options=None) -> dict[str, int]:
        path = Path(path)
        rows = [cells for _, cells in _csv_rows(path)]
        header = [h.strip() for h in (rows[0] if rows else [])]
        _csv_layout(header, path)
        column = header.index("split") if "split" in header else None
        values = []
        for cells in rows[1:]:
            if any(c.strip() for c in cells):
                values.append(cells[column].strip() or None if column is not None and column < len(cells) else None)
        return _split_counts(values)


def write_csv(samples, path) -> Path:
    """Write samples (all with the same number of points) as a facemarks CSV file;
    image paths inside the file's folder are written relative to it."""
    path = Path(path)
    samples = list(samples)
    if not samples:
        raise ValueError("write_csv: no samples")
    n = len(samples[0].landmarks)
    header = ["image"] + [f"{a}{i}" for i in range(n) for a in ("x", "y")] + list(BOX_COLUMNS) + ["split", "scheme", "subset"]
    path.parent.mkdir(parents=True, exist_ok=True)  # before _relative resolves the folder
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for s in samples:
            if len(s.landmarks) != n:
                raise ValueError("write_csv: every sample must have the same number of points")
            coords = [repr(float(v)) for v in np.asarray(s.landmarks, dtype=np.float64).reshape(-1)]
            box = [repr(float(v)) for v in np.asarray(s.box, dtype=np.float64)]
            writer.writerow([_relative(s.image_path, path.parent), *coords, *box, s.attributes.get("split", ""), s.scheme, s.subset])
    return path


# ---------------------------------------------------------------------------------------
# JSON lines


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _jsonl_landmarks(value, path, line: int) -> np.ndarray:
    """[x0, y0, x1, y1, ...] or [[x0, y0], [x1, y1], ...] -> (N, 2)."""
    if not isinstance(value, list) or not value:
        raise DataError(path, "'landmarks' must be a non-empty list", line)
    if all(isinstance(v, list) for v in value):
        if not all(len(v) == 2 and all(_is_number(c) for c in v) for v in value):
            raise DataError(path, "'landmarks' as [[x, y], ...] must hold pairs of numbers", line)
        pts = np.array(value, dtype=np.float64)
    else:
        if not all(_is_number(v) for v in value):
            raise DataError(path, "'landmarks' must hold numbers", line)
        if len(value) % 2:
            raise DataError(path, f"'landmarks' as a flat list needs an even count, found {len(value)}", line)
        pts = np.array(value, dtype=np.float64).reshape(-1, 2)
    return check_landmarks(pts, len(pts), path, line)


def _reject_constant(name: str):
    # NaN and Infinity are not JSON; Python's parser would accept them silently.
    raise ValueError(f"{name} is not allowed")


def _freeze(value):
    """JSON lists -> tuples, so attributes look the same as those of the other readers."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _jsonl_face(text: str, folder: Path, path, line: int, options: dict) -> Sample:
    try:
        # NaN is not JSON: refuse it rather than letting Python's parser accept it.
        record = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise DataError(path, f"not a valid JSON object: {exc}", line) from None
    if not isinstance(record, dict):
        raise DataError(path, "each line must be a JSON object", line)
    for key in ("image", "landmarks"):
        if key not in record:
            raise DataError(path, f"missing field {key!r}", line)
    landmarks = _jsonl_landmarks(record["landmarks"], path, line)
    attributes = record.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise DataError(path, "'attributes' must be an object", line)
    attributes = _freeze(attributes)
    split = record.get("split")
    if split is not None:
        if not isinstance(split, str) or not split:
            raise DataError(path, "'split' must be a non-empty string", line)
        attributes["split"] = split
    subset = record.get("subset") or split or ""
    return Sample(
        image_path=_image_path(folder, record["image"], landmarks, path, line, options),
        origin=f"{path}:{line}",
        landmarks=landmarks,
        box=_box(record.get("box"), landmarks, path, line),
        scheme=_scheme_name(record.get("scheme"), options.get("scheme"), len(landmarks), path, line),
        attributes=attributes,
        subset=str(subset),
    )


def _jsonl_lines(path: Path):
    for number, text in enumerate(_read_text(path).splitlines(), start=1):
        if text.strip():
            yield number, text


@FORMATS.register("jsonl")
class JSONLinesFormat(DatasetFormat):
    """JSON lines, 0-based (see the module doc)."""

    name = "jsonl"
    options = frozenset({"scheme", "root"})

    def guess(self, path: Path) -> bool:
        return path.suffix.lower() in (".jsonl", ".ndjson")

    def load(self, path, split: str | None = None, on_error: str = "raise", allow_partial: bool = False, options=None) -> SampleList:
        check_on_error(on_error)
        path = Path(path)
        out = SampleList()
        for number, text in _jsonl_lines(path):
            add_face(out, on_error, lambda t=text, n=number: _jsonl_face(t, path.parent, path, n, options or {}))
        return _select(out, split, path, "JSON-lines file")

    def splits(self, path, options=None) -> dict[str, int]:
        """Records per split value (lines are counted, not validated)."""
        path = Path(path)
        values = []
        for _, text in _jsonl_lines(path):
            try:
                record = json.loads(text)
            except ValueError:
                record = None  # counted under "all"; load() reports the line
            split = record.get("split") if isinstance(record, dict) else None
            values.append(split if isinstance(split, str) and split else None)
        return _split_counts(values)


def write_jsonl(samples, path, *, flat: bool = False, decimals: int | None = None) -> Path:
    """Write samples as a facemarks JSON-lines file; image paths inside the file's folder
    are written relative to it. Landmarks as [[x, y], ...], or with flat=True as
    [x0, y0, x1, y1, ...]; decimals: landmarks and box rounded to that many decimals
    (None: exact). Fields in the order of the module doc."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # before _relative resolves the folder

    def coordinates(values, pairs: bool) -> list:
        numbers = np.asarray(values, dtype=np.float64).ravel().tolist()
        if decimals is not None:
            numbers = [round(v, decimals) for v in numbers]
        return [numbers[i:i + 2] for i in range(0, len(numbers), 2)] if pairs else numbers

    lines = []
    for s in samples:
        attributes = {k: v for k, v in s.attributes.items() if k != "split"}
        record = {
            "image": _relative(s.image_path, path.parent),
            "landmarks": coordinates(s.landmarks, pairs=not flat),
            "box": coordinates(s.box, pairs=False),
        }
        if "split" in s.attributes:
            record["split"] = s.attributes["split"]
        record["scheme"] = s.scheme
        if s.subset:
            record["subset"] = s.subset
        if attributes:
            record["attributes"] = attributes
        lines.append(json.dumps(record))
    fileio.write_text(path, "\n".join(lines) + "\n")
    return path
