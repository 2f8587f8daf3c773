"""Peer benchmark: facemarks' shipped 68-point model against dlib's official 68-point
shape predictor (shape_predictor_68_face_landmarks.dat), on the same faces.

    FACEMARKS_CACHE=/tmp/fmcache /tmp/venv_peer/bin/python benchmarks/peer_dlib.py --json /tmp/peer_dlib.json

(FACEMARKS_CACHE: where the ONNX file for the ONNX Runtime timing is exported once.)

dlib is never a dependency of facemarks: install it in a separate environment
(`pip install dlib-bin face-recognition-models`, the model file is
`face_recognition_models.pose_predictor_model_location()`). Without dlib the script prints
one line and exits 0.

Datasets: 300W common (HELEN test + LFPW test, 554 faces) and the WFLW test faces (577) with
their 98 points mapped to 68 (`facemarks.schemes.WFLW_TO_68`). NME is normalised by the
inter-ocular distance (outer eye corners 36/45 of the ground truth, WFLW 60/72), FR and AUC
at 0.1 (`facemarks.metrics`).

(a) End to end, each tool with its own detector: facemarks `load().predict(image)` (Haar,
    mapped to landmark boxes); dlib `get_frontal_face_detector()(image, 1)` then the shape
    predictor on each rectangle. A face is detected when a detection matches it under
    `facemarks.inference.end_to_end.match_detections` (box centre inside the ground-truth
    landmark box, IoU > 0.2, greedy); dlib's rectangles are matched after mapping them to
    the landmark-box convention (below), as facemarks' Haar boxes are. Figures and paired
    tests on the faces both tools detect.
(b) The same box per face, given to each tool in its own convention:
    * "dlib box" (faces dlib detects): dlib gets its detector's rectangle as is; facemarks
      gets that rectangle mapped to the landmark-box convention.
    * "ground-truth box" (all faces): facemarks gets the ground-truth landmark box (the
      extent of the 68 points) as is; dlib gets it mapped back to its detector's convention
      (the inverse mapping, made square as dlib's detections are, rounded to whole pixels:
      dlib.rectangle is integer; `dlib_rects_for`).
    * the ground-truth box again, on the faces dlib's detector finds: this row leaves out
      the faces where dlib's predictor never runs in normal use.
    The mapping is fitted like the Haar one (benchmarks/calibrate_detector.py): medians of
    landmark centre = rect centre + offset * rect size, landmark size = scale * rect size,
    over the dlib detections matched to faces of the 300W *training* split (all, or the
    first --calibration-faces), so it is not fitted on the test faces.
(c) Speed of the landmark stage alone with a given box (the ground-truth box, converted as
    in (b)), batch 1, one thread, cropping included, pose not computed: facemarks
    `predictor.landmarks(image, crop matrix)` (PyTorch with torch.set_num_threads(1), and
    ONNX Runtime with 1 thread), dlib `shape_predictor(image, rect)` (single-threaded). The
    tools alternate face by face (which goes first alternates too) over --speed-faces
    faces of 300W common after a warm-up; medians in ms.

dlib returns whole-pixel points (its parts are integers): a rounding of at most 0.5 px per
coordinate, included in its figures.

Measured with the command above (full run, 215 s; shared 2-core CPU "AMD EPYC" with a
training run going, load average 3.3-3.9), NME inter-ocular %, facemarks / dlib:
300W common: detection 95.49 / 98.01 %; faces both detect (523) 4.03 / 2.57; dlib's box
(543) 3.89 / 2.58; ground-truth box (554) 3.48 / 3.76 (medians 3.24 / 2.48, signed ranks
favour dlib). WFLW -> 68: detection 59.62 / 67.42 %; both detect (307) 8.11 / 6.77; dlib's
box (389) 7.99 / 7.65; ground-truth box (577) 9.31 / 21.80. Landmark stage, median ms per
face (200 faces): torch 8.75 / 2.62 (x3.34), ONNX Runtime 4.04 / 2.55 (x1.58). Mapping
fitted on 1911 of 2012 train faces: offset (+0.0065, +0.1144), scale (1.0056, 0.9642).

Caveat: dlib's 68-point model was trained on iBUG 300-W, very likely including the images
of the 300W common subset (HELEN and LFPW test), so its 300W figures are optimistic. The
WFLW faces were seen by neither model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import facemarks
from facemarks import metrics, schemes, stats
from facemarks.data import formats
from facemarks.data.sample import landmark_box, read_image
from facemarks.errors import FacemarksError
from facemarks.fileio import write_text
from facemarks.inference.detect import map_boxes
from facemarks.inference.end_to_end import image_groups, match_detections

REPO = Path(__file__).resolve().parents[1]
DATASETS = (("300W common", "300w", "300w", "common"), ("WFLW test, 98 -> 68", "wflw", "wflw", "test"))
CALIBRATION = ("300w", "300w", "train")
DLIB_UPSAMPLE = 1
THRESHOLD = 0.1
CAVEAT = ("Caveat: dlib's 68-point model was very likely trained on the 300W common images (HELEN and LFPW "
          "test are part of iBUG 300-W's training data), so its 300W figures are optimistic; the WFLW faces "
          "were seen by neither model.")
# (key, table label, the NME condition of the per-face records, only faces dlib's detector finds)
CONDITIONS = (("end_to_end", "own detectors, faces both detect", "end_to_end", False),
              ("dlib_box", "same box: dlib's detector box", "dlib_box", False),
              ("truth_box", "same box: ground-truth landmark box", "truth_box", False),
              ("truth_box_dlib_found", "same box: ground-truth box, faces dlib detects", "truth_box", True))


# ----------------------------------------------------------------------------- pure parts


def rect_to_box(rect) -> np.ndarray:
    """A dlib rectangle as a box (x_min, y_min, x_max, y_max), 0-based pixel-centre: dlib's
    corners are the inclusive first and last pixels (right = left + width - 1), and its
    shape predictor maps exactly those corner pixel centres onto its unit square."""
    return np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)


def box_to_rect_corners(box) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) whole pixels for dlib.rectangle of a box: the nearest pixels."""
    return tuple(int(v) for v in np.round(np.asarray(box, dtype=np.float64)))


def fit_box_mapping(rects: np.ndarray, landmark_boxes: np.ndarray) -> tuple[tuple, tuple]:
    """(centre offset, size scale), medians per axis, with landmark centre = rect centre +
    offset * rect size and landmark size = scale * rect size (`detect.map_boxes`'s form)."""
    rects, landmark_boxes = np.asarray(rects, np.float64), np.asarray(landmark_boxes, np.float64)
    size = rects[:, 2:] - rects[:, :2]
    offset = ((landmark_boxes[:, :2] + landmark_boxes[:, 2:]) - (rects[:, :2] + rects[:, 2:])) / 2 / size
    scale = (landmark_boxes[:, 2:] - landmark_boxes[:, :2]) / size
    return tuple(np.median(offset, axis=0).tolist()), tuple(np.median(scale, axis=0).tolist())


def unmap_boxes(landmark_boxes, offset, scale) -> np.ndarray:
    """The inverse of `map_boxes`: the detector boxes (K, 4) that map to these landmark boxes."""
    landmark_boxes = np.asarray(landmark_boxes, dtype=np.float64).reshape(-1, 4)
    size = (landmark_boxes[:, 2:] - landmark_boxes[:, :2]) / np.asarray(scale)
    centre = (landmark_boxes[:, :2] + landmark_boxes[:, 2:]) / 2 - np.asarray(offset) * size
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def dlib_rects_for(landmark_boxes, offset, scale) -> np.ndarray:
    """The dlib rectangles (K, 4) of landmark boxes: `unmap_boxes`, then made square (side the
    geometric mean of its sides, same centre), as dlib's detector's rectangles always are."""
    rects = unmap_boxes(landmark_boxes, offset, scale)
    centre = (rects[:, :2] + rects[:, 2:]) / 2
    half = np.sqrt(np.prod(rects[:, 2:] - rects[:, :2], axis=1, keepdims=True)) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def both_detected(nmes_a, nmes_b) -> np.ndarray:
    """Indices, in face order, of the faces both tools have an NME for, given each tool's
    per-face NMEs with None (or NaN) where it missed the face."""
    def found(values):
        return np.array([v is not None and np.isfinite(v) for v in values], dtype=bool)

    return np.flatnonzero(found(nmes_a) & found(nmes_b))


def summary(nmes) -> dict:
    """Mean NME, FR and AUC at THRESHOLD of per-face NMEs."""
    s = metrics.summarize(np.asarray(nmes, dtype=np.float64), THRESHOLD)
    return {"n": s["n"], "mean": s["mean"], "median": s["median"], "fr": s["fr"], "auc": s["auc"]}


FAVOUR = {"a": "facemarks", "b": "dlib", None: "-"}  # stats.paired_comparison's ranks_favour, a = facemarks


def _pct(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def _p(value) -> str:
    return "-" if value is None else (f"{value:.1e}" if value < 1e-3 else f"{value:.3f}")


def markdown_table(name: str, result: dict) -> str:
    """The README table of one dataset's result (figures in %, AUC as a fraction)."""
    det = result["detection"]
    lines = [f"**{name}** ({result['faces']} faces). Detection rate: facemarks (Haar) "
             f"{_pct(det['facemarks']['rate'])} %, dlib (HOG, upsample {DLIB_UPSAMPLE}) {_pct(det['dlib']['rate'])} %, "
             f"both {_pct(det['both_rate'])} %; unmatched detections: facemarks {det['facemarks']['unmatched']}, "
             f"dlib {det['dlib']['unmatched']}. NME on all the faces each detects: facemarks "
             f"{_pct(det['facemarks']['summary']['mean'])} %, dlib {_pct(det['dlib']['summary']['mean'])} %.", "",
             "| boxes | faces | facemarks NME % | FR@0.1 % | AUC@0.1 | dlib NME % | FR@0.1 % | AUC@0.1 "
             "| facemarks - dlib, % [95% CI] | Wilcoxon p (Holm), ranks favour |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, label, _, _ in CONDITIONS:
        row = result["conditions"][key]
        a, b, test = row["facemarks"], row["dlib"], row["paired"]
        interval = (f"{100 * test['mean_difference']:+.2f} [{100 * test['ci_low']:+.2f}, {100 * test['ci_high']:+.2f}]"
                    if test["ci_low"] is not None else "-")
        lines.append(f"| {label} | {a['n']} | {_pct(a['mean'])} | {_pct(a['fr'])} | {a['auc']:.4f} | "
                     f"{_pct(b['mean'])} | {_pct(b['fr'])} | {b['auc']:.4f} | {interval} | "
                     f"{_p(test['wilcoxon_p'])} ({_p(test.get('wilcoxon_p_holm'))}), "
                     f"{FAVOUR[test.get('ranks_favour')]} |")
    return "\n".join(lines)


def speed_table(speed: dict) -> str:
    """The README table of the landmark-stage timings."""
    lines = [f"Landmark stage with a given box, batch 1, 1 thread, cropping included, {speed['faces']} faces "
             f"interleaved, median ms per face; CPU: {speed['cpu']}.", "",
             "| facemarks backend | facemarks ms | dlib ms | facemarks / dlib |", "|---|---|---|---|"]
    for backend, row in speed["backends"].items():
        lines.append(f"| {backend} | {row['facemarks_ms']:.2f} | {row['dlib_ms']:.2f} | {row['ratio']:.2f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the two tools


def load_dlib():
    """(dlib module, detector, shape predictor), or None when dlib or its model is missing."""
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    model = face_recognition_models.pose_predictor_model_location()
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(model)


class Dlib:
    """dlib's detector and 68-point predictor on RGB uint8 images."""

    def __init__(self, loaded):
        self.dlib, self.detector, self.predictor = loaded

    def detect(self, image: np.ndarray) -> np.ndarray:
        return np.array([rect_to_box(r) for r in self.detector(image, DLIB_UPSAMPLE)]).reshape(-1, 4)

    def landmarks(self, image: np.ndarray, rect_box) -> np.ndarray:
        shape = self.predictor(image, self.dlib.rectangle(*box_to_rect_corners(rect_box)))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # dlib parts: 0-based pixels


def facemarks_landmarks(predictor, image: np.ndarray, box) -> np.ndarray:
    """facemarks' 68 points for a landmark-convention box: the crop and the model, no pose."""
    matrix = predictor.crop.matrix(predictor.input_size, box=np.asarray(box, dtype=np.float64))
    return predictor.landmarks(image, matrix[None])[0]


def read_faces(data_root: Path, folder: str, fmt: str, split: str, limit: int | None) -> list[dict]:
    """The faces of a split as {"path", "truth" (68, 2), "box" (landmark box of those 68)}."""
    samples = formats.load(f"{fmt}:{data_root / folder}", split)[:limit]
    faces = []
    for sample in samples:
        truth = schemes.to_68(sample.landmarks, sample.scheme)
        faces.append({"path": sample.image_path, "truth": truth, "box": landmark_box(truth)})
    return faces


def calibrate(tool: Dlib, faces: list[dict]) -> dict:
    """dlib rectangle -> landmark box mapping fitted on `faces` (see the module docstring)."""
    rects, boxes = [], []
    for path, indices in image_groups([_Face(f["path"]) for f in faces]).items():
        found = tool.detect(read_image(path))
        chosen, _ = match_detections(found, np.stack([faces[i]["box"] for i in indices]))
        rects += [found[d] for d in chosen if d >= 0]
        boxes += [faces[i]["box"] for i, d in zip(indices, chosen) if d >= 0]
    offset, scale = fit_box_mapping(np.array(rects), np.array(boxes))
    return {"offset": offset, "scale": scale, "faces": len(faces), "matched": len(rects)}


class _Face:
    """What `image_groups` reads of a sample."""

    def __init__(self, image_path: str):
        self.image_path = image_path


# ----------------------------------------------------------------------------- accuracy


def nme_68(points, truth) -> float:
    return float(metrics.nme(np.asarray(points)[None], np.asarray(truth)[None], "inter_ocular", scheme="300w")[0])


def image_record(predictor, tool: Dlib, mapping: dict, path: str, faces: list[dict]) -> tuple[list[dict], dict]:
    """Per-face records of one image (detections, matches and the NME of every condition,
    None where a tool did not detect the face) and each tool's unmatched detections."""
    image = read_image(path)
    truth_boxes = np.stack([f["box"] for f in faces])
    found = predictor.predict(image)
    own_boxes = np.array([f["box"] for f in found]).reshape(-1, 4)
    own_chosen, _ = match_detections(own_boxes, truth_boxes)
    rects = tool.detect(image)
    mapped = map_boxes(rects, mapping["offset"], mapping["scale"])
    dlib_chosen, _ = match_detections(mapped, truth_boxes)
    records = []
    for face, own, theirs in zip(faces, own_chosen, dlib_chosen):
        truth = face["truth"]
        dlib_rect = dlib_rects_for(face["box"], mapping["offset"], mapping["scale"])[0]
        record = {"image_path": path, "truth_box": face["box"].tolist(), "dlib_rect_for_truth_box":
                  list(box_to_rect_corners(dlib_rect)),
                  "facemarks_detection": own_boxes[own].tolist() if own >= 0 else None,
                  "dlib_detection": rects[theirs].tolist() if theirs >= 0 else None,
                  "nme": {"truth_box": {"facemarks": nme_68(facemarks_landmarks(predictor, image, face["box"]), truth),
                                        "dlib": nme_68(tool.landmarks(image, dlib_rect), truth)}}}
        own_nme = nme_68(found[own]["landmarks"], truth) if own >= 0 else None
        dlib_nme = nme_68(tool.landmarks(image, rects[theirs]), truth) if theirs >= 0 else None
        record["nme"]["end_to_end"] = {"facemarks": own_nme, "dlib": dlib_nme}
        record["nme"]["dlib_box"] = None if theirs < 0 else {
            "facemarks": nme_68(facemarks_landmarks(predictor, image, mapped[theirs]), truth), "dlib": dlib_nme}
        records.append(record)
    unmatched = {"facemarks": int(len(own_boxes) - (own_chosen >= 0).sum()),
                 "dlib": int(len(rects) - (dlib_chosen >= 0).sum())}
    return records, unmatched


def compare(records: list[dict], key: str, dlib_found: bool = False) -> dict:
    """Both tools' figures and the paired test (facemarks minus dlib) on the faces that
    have both NMEs under condition `key` (and, with dlib_found, that dlib's detector finds)."""
    records = [r for r in records if r["dlib_detection"] is not None] if dlib_found else records
    ours, theirs = tool_nmes(records, key)
    keep = both_detected(ours, theirs)
    ours, theirs = np.array([ours[i] for i in keep]), np.array([theirs[i] for i in keep])
    return {"facemarks": summary(ours), "dlib": summary(theirs),
            "paired": stats.paired_comparison(ours, theirs) if len(keep) >= 2 else
            {"num_faces": len(keep), "mean_difference": None, "ci_low": None, "ci_high": None, "wilcoxon_p": None}}


def tool_nmes(records: list[dict], key: str) -> tuple[list, list]:
    """(facemarks, dlib) per-face NMEs of condition `key`, None where there is none."""
    pairs = [r["nme"][key] or {"facemarks": None, "dlib": None} for r in records]
    return [p["facemarks"] for p in pairs], [p["dlib"] for p in pairs]


def detection_counts(records: list[dict], unmatched: dict) -> dict:
    """Faces each tool detects (and their share), both detect, and unmatched detections,
    with each tool's figures on all the faces it detects."""
    faces = max(len(records), 1)
    own = dict(zip(("facemarks", "dlib"), tool_nmes(records, "end_to_end")))
    counts = {}
    for tool, nmes in own.items():
        detected = [v for v in nmes if v is not None]
        counts[tool] = {"detected": len(detected), "rate": len(detected) / faces, "unmatched": unmatched[tool],
                        "summary": summary(detected)}
    both = len(both_detected(own["facemarks"], own["dlib"]))
    return {**counts, "both": both, "both_rate": both / faces}


def run_dataset(predictor, tool: Dlib, mapping: dict, faces: list[dict]) -> dict:
    """All figures of one dataset, per-face records included."""
    records, unmatched = [], {"facemarks": 0, "dlib": 0}
    groups = image_groups([_Face(f["path"]) for f in faces])
    for path, indices in groups.items():
        found, extra = image_record(predictor, tool, mapping, path, [faces[i] for i in indices])
        records += found
        unmatched = {tool_name: unmatched[tool_name] + extra[tool_name] for tool_name in unmatched}
    return {"faces": len(records), "detection": detection_counts(records, unmatched),
            "conditions": {key: compare(records, nme_key, dlib_found) for key, _, nme_key, dlib_found in CONDITIONS},
            "per_face": records}


# ----------------------------------------------------------------------------- speed


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_ms(call) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def interleaved_speed(predictor, tool: Dlib, mapping: dict, faces: list[dict], warmup: int = 10) -> dict:
    """Median ms per face of each tool's landmark stage, alternating the tools face by face
    (and which goes first), images decoded beforehand."""
    images = {f["path"]: read_image(f["path"]) for f in faces}
    rects = dlib_rects_for(np.stack([f["box"] for f in faces]), mapping["offset"], mapping["scale"])
    pairs = list(zip(faces, rects))
    warmup = len(pairs[:warmup])  # fewer faces than the warm-up: each is run twice, timed once
    ours, theirs = [], []
    for index, (face, rect) in enumerate([*pairs[:warmup], *pairs]):
        image = images[face["path"]]
        calls = [lambda: facemarks_landmarks(predictor, image, face["box"]), lambda: tool.landmarks(image, rect)]
        order = (0, 1) if index % 2 == 0 else (1, 0)
        took = {which: time_ms(calls[which]) for which in order}
        if index >= warmup:
            ours.append(took[0])
            theirs.append(took[1])
    ours_ms, theirs_ms = float(np.median(ours)), float(np.median(theirs))
    return {"facemarks_ms": ours_ms, "dlib_ms": theirs_ms, "ratio": ours_ms / theirs_ms,
            "facemarks_ms_per_face": ours, "dlib_ms_per_face": theirs}


def speed(checkpoint, tool: Dlib, mapping: dict, faces: list[dict]) -> dict:
    """Interleaved timings with facemarks on PyTorch (1 thread) and on ONNX Runtime (1 thread)."""
    backends = {}
    torch.set_num_threads(1)
    backends["torch, 1 thread"] = interleaved_speed(facemarks.load(checkpoint, threads=1), tool, mapping, faces)
    try:
        onnx_predictor = facemarks.load(checkpoint, backend="onnx", threads=1)
    except (FacemarksError, ImportError) as exc:
        print(f"ONNX Runtime timing skipped: {exc}", file=sys.stderr)
    else:
        backends["onnx runtime, 1 thread"] = interleaved_speed(onnx_predictor, tool, mapping, faces)
    return {"faces": len(faces), "cpu": cpu_model(), "backends": backends}


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    shared = Path(os.environ.get("FACEMARKS_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=shared, help="folder with 300w/ and wflw/")
    parser.add_argument("--checkpoint", default=None, help="facemarks model (default: the shipped one)")
    parser.add_argument("--faces", type=int, default=None, help="first N faces of each dataset (quick run)")
    parser.add_argument("--calibration-faces", type=int, default=None,
                        help="first N 300W train faces for the box mapping (default: all)")
    parser.add_argument("--speed-faces", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="write every figure and per-face record here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    loaded = load_dlib()
    if loaded is None:
        print("peer benchmark skipped: dlib or face_recognition_models is not installed "
              "(pip install dlib-bin face-recognition-models, in a separate environment)")
        return
    torch.set_num_threads(1)
    tool = Dlib(loaded)
    predictor = facemarks.load(args.checkpoint, threads=1)
    start = time.perf_counter()
    mapping = calibrate(tool, read_faces(args.data_root, *CALIBRATION, args.calibration_faces))
    print(f"dlib rectangle -> landmark box mapping (fitted on {mapping['matched']} of {mapping['faces']} "
          f"300W train faces): centre offset {mapping['offset'][0]:+.4f}, {mapping['offset'][1]:+.4f}; "
          f"size scale {mapping['scale'][0]:.4f}, {mapping['scale'][1]:.4f}")
    results = {}
    for name, folder, fmt, split in DATASETS:
        faces = read_faces(args.data_root, folder, fmt, split, args.faces)
        results[name] = run_dataset(predictor, tool, mapping, faces)
    tests = [results[n]["conditions"][k]["paired"] for n in results for k, *_ in CONDITIONS]
    for test, adjusted in zip(tests, stats.holm_adjust([t["wilcoxon_p"] for t in tests])):
        test["wilcoxon_p_holm"] = adjusted
    timing = speed(args.checkpoint, tool, mapping,
                   read_faces(args.data_root, *DATASETS[0][1:], args.speed_faces))
    print(f"command: {' '.join(sys.argv)}")
    print(f"dlib {tool.dlib.__version__}, facemarks {predictor.source}; match rule: box centre inside the "
          f"landmark box, IoU > 0.2; NME inter-ocular; paired differences facemarks minus dlib (negative: "
          f"facemarks errs less); Holm over the {len(tests)} tests; {time.perf_counter() - start:.0f} s\n")
    for name, result in results.items():
        print(markdown_table(name, result) + "\n")
    print(speed_table(timing) + "\n")
    print(CAVEAT)
    if args.json:
        record = {"command": " ".join(sys.argv), "dlib_version": tool.dlib.__version__, "facemarks_model":
                  predictor.source, "mapping": mapping, "datasets": results, "speed": timing, "caveat": CAVEAT}
        write_text(args.json, json.dumps(record, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
