"""End-to-end evaluation: the predictor on the full images, with its own face boxes.

`facemarks evaluate --detector haar|whole|boxes:FILE` (see `evaluate_end_to_end`) runs the
predictor as users do (`facemarks.load(path).predict(image, boxes=...)`) on every image of
a dataset split, once per image with all the boxes found in it, and scores each annotated
face against the detection matched to it.

Box sources:
  * a detector registered in `facemarks.registry.DETECTORS` ("haar": OpenCV's cascade with
    its calibration to landmark boxes; "whole": the whole image is the face box);
  * "boxes:FILE": boxes listed per image in a file of the format `facemarks predict --boxes`
    reads (`facemarks.inference.detect.BoxesFile`), in the landmark-box convention. An image
    is looked up by its path as the dataset gives it, then relative to the dataset folder
    (the spec's path, or the folder of an annotation file), then by file name. Images the
    file does not list count as images without a detection (their number is reported); a
    file that lists none of them, and any bad box (not finite, degenerate, mostly outside
    its image), is refused before any prediction, naming the file and entry.

Match rule (per image; `match_detections`): a detection and an annotated face are a
candidate pair when the detection box's centre lies inside the face's landmark box (the
extent of its annotated points, edges included) and IoU(detection box, landmark box) >
MATCH_MIN_IOU (0.2). Pairs are taken greedily, highest IoU first (ties: lower detection
index, then lower face index), keeping a pair only when neither its detection nor its face
is taken: each face gets at most one detection and each detection at most one face.
Faces left without a detection are missed; detections left without a face are unmatched
(false detections, or faces that are not annotated, e.g. a neighbour cut by the crop).
Before the match, detections whose predicted points fail the shape check are dropped, as
`predict` drops them (facemarks.inference.shape_check; `check_shape=False`, or
`--no-shape-check`, keeps them); the result counts them and the faces they would have matched.

Figures (each NME normalisation of `facemarks.engine.evaluate`, FR@0.1 and AUC@0.1): the
model on the detections of the matched faces, and the same model on ground-truth boxes
(each face's annotated box, as the plain evaluation crops it) on the same matched faces
and on all faces. The ground-truth-box figures run through the same predictor code (one
warp from the full image; the plain evaluation reads crops from its crop cache, which
resamples in two steps), so the difference between the rows is the boxes' alone. The
"image" NME is the error in units of the side of the crop the model saw (the detection's
crop, or the ground-truth box's), as in the plain evaluation.

A cascade (`--first-stage`) is evaluated the same way: its first stage crops from the boxes,
its second from the first stage's points (`CascadePredictor`), and the ground-truth-box rows
start the first stage from the annotated boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facemarks.data import formats
from facemarks.data.sample import image_size, landmark_box, read_image
from facemarks.engine import evaluate
from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import CheckpointError, DataError, UnknownNameError
from facemarks.geometry.affine import apply_to_points
from facemarks.geometry.coords import to_normalized
from facemarks.inference.cascade import CascadePredictor
from facemarks.inference.detect import BoxesFile
from facemarks.inference.predictor import BATCH_SIZE, LandmarkPredictor, TorchRunner
from facemarks.registry import DETECTORS

MATCH_MIN_IOU = 0.2
MATCH_RULE = (f"a detection matches a face when its box centre lies inside the face's landmark box and "
              f"IoU(detection, landmark box) > {MATCH_MIN_IOU:g}; greedy, highest IoU first, one detection per face")
BOXES_PREFIX = "boxes:"
ROWS = (("detector_matched", "detector boxes, matched faces"),
        ("ground_truth_matched", "ground-truth boxes, same faces"),
        ("ground_truth_all", "ground-truth boxes, all faces"))


# ----------------------------------------------------------------------------- matching


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU (K, M) of every box of first (K, 4) with every box of second (M, 4)."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 1, 4)
    second = np.asarray(second, dtype=np.float64).reshape(1, -1, 4)
    lo = np.maximum(first[..., :2], second[..., :2])
    hi = np.minimum(first[..., 2:], second[..., 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / (area(first) + area(second) - inter)


def match_detections(detections: np.ndarray, face_boxes: np.ndarray,
                     min_iou: float = MATCH_MIN_IOU) -> tuple[np.ndarray, np.ndarray]:
    """The rule of the module docstring. detections (K, 4), face_boxes (M, 4) landmark boxes.
    Returns (index (M,) of each face's detection, -1 when missed; its IoU (M,), NaN when missed)."""
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    face_boxes = np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4)
    overlap = box_iou(detections, face_boxes)
    centres = (detections[:, None, :2] + detections[:, None, 2:]) / 2
    inside = np.all((centres >= face_boxes[None, :, :2]) & (centres <= face_boxes[None, :, 2:]), axis=-1)
    candidates = np.argwhere(inside & (overlap > min_iou))  # (det, face), row-major: ties by det, then face
    order = np.argsort(-overlap[candidates[:, 0], candidates[:, 1]], kind="stable")
    chosen = np.full(len(face_boxes), -1)
    taken = np.zeros(len(detections), dtype=bool)
    for det, face in candidates[order]:
        if not taken[det] and chosen[face] < 0:
            chosen[face], taken[det] = det, True
    ious = np.array([overlap[d, f] if d >= 0 else np.nan for f, d in enumerate(chosen)])
    return chosen, ious


# ----------------------------------------------------------------------------- box sources


class FileBoxes:
    """Boxes from a boxes file for the images of a dataset (lookup: see the module docstring)."""

    def __init__(self, path, data_root: Path):
        self.file = BoxesFile(path)
        self.data_root = Path(data_root).resolve()

    def entry(self, image_path) -> str | None:
        """The key of the file's entry for a dataset image, None when it is not listed."""
        candidates = [str(image_path)]
        try:
            candidates.append(Path(image_path).resolve().relative_to(self.data_root).as_posix())
        except ValueError:
            pass
        exact = next((key for key in candidates if key in self.file.boxes), None)
        if exact is not None:
            return exact
        return candidates[-1] if self.file.find(candidates[-1]) is not None else None

    def check(self, image_paths) -> int:
        """Before any prediction: DataError for a box that does not fit its image, or when
        no image is listed; returns how many images are not listed."""
        listed = 0
        for path in image_paths:
            key = self.entry(path)
            if key is not None:
                listed += 1
                self.file.check_fit(key, *image_size(path))
        if not listed:
            raise DataError(self.file.path, f"lists none of the {len(image_paths)} images of the split (looked up by "
                                            f"path, by path relative to {self.data_root}, and by file name)")
        return len(image_paths) - listed

    def __call__(self, image_path, image) -> np.ndarray | None:
        key = self.entry(image_path)
        return None if key is None else self.file.find(key)


def data_root(data_spec: str) -> Path:
    """The dataset folder: the spec's path, or the folder of an annotation file."""
    path = Path(formats.parse_spec(data_spec).path)
    return path if path.is_dir() else path.parent


def box_source(detector: str, predictor: LandmarkPredictor, data_spec: str):
    """A callable (image path, RGB image) -> boxes (K, 4), or None for an image a boxes file
    does not list: a registered detector's name or "boxes:FILE"."""
    if detector.startswith(BOXES_PREFIX):
        return FileBoxes(detector[len(BOXES_PREFIX):], data_root(data_spec))
    if detector not in DETECTORS.names():
        raise UnknownNameError("face detector", detector, [*DETECTORS.names(), f"{BOXES_PREFIX}FILE"])
    return lambda path, image: predictor.detect(image, detector)


# ----------------------------------------------------------------------------- evaluation


def load_predictor(path, decoder: str | None, device: str, threads: int | None, batch_size: int,
                   first_stage=None, check_shape: bool = True):
    """The predictor of a box-crop checkpoint, decoding heatmaps with `decoder` (None: the
    model's); with `first_stage` (a box-crop checkpoint), the cascade of that first stage and
    `path` (an aligned-crop checkpoint; facemarks.inference.cascade), decoding stage 2 with
    `decoder`."""
    if first_stage is None:
        return load_stage(path, decoder, device, threads, batch_size, "box", check_shape)
    first = load_stage(first_stage, None, device, threads, batch_size, "box", check_shape)
    return CascadePredictor(first, load_stage(path, decoder, device, threads, batch_size, "points", check_shape))


def load_stage(path, decoder: str | None, device: str, threads: int | None, batch_size: int, needs: str,
               check_shape: bool):
    checkpoint = Checkpoint.load(path)
    evaluate.check_decoder(checkpoint, path, decoder)
    if checkpoint.crop.needs != needs:
        wanted = {"box": "crops from face boxes (a single model, or the first stage of a cascade)",
                  "points": "crops from a first stage's points (the second stage of a cascade)"}[needs]
        raise CheckpointError(path, f"end-to-end evaluation (--detector) needs here a model that {wanted}; this one "
                                    f"crops from {checkpoint.crop.needs} ({checkpoint.crop!r})")
    runner = TorchRunner(checkpoint.build_model(device), device, decoder=decoder or checkpoint.decoder, threads=threads)
    return LandmarkPredictor(runner, checkpoint.scheme, checkpoint.input_size, checkpoint.crop, "torch", path,
                             batch_size, check_shape)


def image_groups(samples: list) -> dict[str, list[int]]:
    """Sample indices per image path, in the order the images first appear."""
    groups: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(sample.image_path, []).append(index)
    return groups


def predict_image(predictor: LandmarkPredictor, samples: list, path: str, indices: list[int], source) -> dict:
    """One image: its boxes, the match, and the points predicted on the detections and on
    the ground-truth boxes of its faces (one predictor call for all of them). Detections
    whose points fail the shape check are dropped before the match, as `predict` drops them
    (facemarks.inference.shape_check); "rejected" counts them, and the faces they cost."""
    image = read_image(path)
    found = source(path, image)
    detections = np.zeros((0, 4)) if found is None else np.asarray(found, dtype=np.float64).reshape(-1, 4)
    faces = [samples[i] for i in indices]
    face_boxes = np.stack([landmark_box(s.landmarks) for s in faces])
    truth_boxes = np.stack([np.asarray(s.box, dtype=np.float64) for s in faces])
    predicted = predictor.predict(image, boxes=np.concatenate([detections, truth_boxes]))
    points = np.stack([face["landmarks"] for face in predicted])
    kept = np.array([bool(predictor.keep_plausible([face])) for face in predicted[:len(detections)]], dtype=bool)
    unchecked, _ = match_detections(detections, face_boxes)
    chosen, ious = match_detections(detections[kept], face_boxes)
    lost = int(np.sum((unchecked >= 0) & (chosen < 0)))
    return {"detections": detections[kept], "chosen": chosen, "iou": ious,
            "detected_points": points[:len(detections)][kept], "truth_boxes": truth_boxes,
            "truth_points": points[len(detections):], "rejected": (int((~kept).sum()), lost)}


def crop_errors(predictor, points: np.ndarray, boxes: np.ndarray, samples: list) -> dict:
    """Per-face NME under every normalisation of points predicted on the crops of `boxes`
    (the "image" norm in units of each crop's side, as `evaluate.face_errors` measures it;
    for a cascade, the side of its first stage's box crop)."""
    if not samples:
        return {norm: np.zeros(0) for norm in evaluate.NORMS}
    boxed = getattr(predictor, "first", predictor)  # the stage that crops from the boxes
    size = boxed.input_size
    matrices = np.stack([boxed.crop.matrix(size, box=box) for box in boxes])
    truth = np.stack([s.landmarks for s in samples])
    predictions = {"input": to_normalized(apply_to_points(matrices, points), size),
                   "gt_input": to_normalized(apply_to_points(matrices, truth), size), "source": points}
    return evaluate.face_errors(predictions, samples, predictor.scheme)


def evaluate_end_to_end(path, data_spec: str, split: str, detector: str = "haar", batch_size: int = BATCH_SIZE,
                        decoder: str | None = None, device: str = "cpu", threads: int | None = None,
                        first_stage=None, check_shape: bool = True) -> dict:
    """Evaluate checkpoint `path` (with `first_stage`: the cascade of that box-crop model and
    the aligned-crop `path`) on the full images of `data_spec` [split] with the boxes of
    `detector` (a registered detector or "boxes:FILE"); see the module docstring."""
    predictor = load_predictor(path, decoder, device, threads, batch_size, first_stage, check_shape)
    source = box_source(detector, predictor, data_spec)
    samples, ground_truth = evaluate.ground_truth_for(predictor.scheme, formats.load(data_spec, split), data_spec)
    groups = image_groups(samples)
    not_listed = source.check(list(groups)) if isinstance(source, FileBoxes) else None
    detected_box = np.full((len(samples), 4), np.nan)
    detected_points = np.full((len(samples), predictor.num_points, 2), np.nan)
    truth_boxes, truth_points = np.zeros((len(samples), 4)), np.zeros_like(detected_points)
    iou, unmatched, rejected = np.full(len(samples), np.nan), [], np.zeros(2, dtype=int)
    for image_path, indices in groups.items():
        found = predict_image(predictor, samples, image_path, indices, source)
        rejected += found["rejected"]
        for k, index in enumerate(indices):
            truth_boxes[index], truth_points[index] = found["truth_boxes"][k], found["truth_points"][k]
            if found["chosen"][k] >= 0:
                detected_box[index] = found["detections"][found["chosen"][k]]
                detected_points[index] = found["detected_points"][found["chosen"][k]]
                iou[index] = found["iou"][k]
        unmatched += [{"image_path": image_path, "box": box.tolist()}
                      for d, box in enumerate(found["detections"]) if d not in found["chosen"]]
    matched = ~np.isnan(iou)
    faces = {"matched": matched, "iou": iou, "detected_box": detected_box, "truth_box": truth_boxes,
             "detected": crop_errors(predictor, detected_points[matched], detected_box[matched],
                                     [s for s, m in zip(samples, matched) if m]),
             "truth": crop_errors(predictor, truth_points, truth_boxes, samples)}
    result = {"checkpoint": str(path), "first_stage": None if first_stage is None else str(first_stage),
              "data": data_spec, "split": split, "detector": detector, "match_rule": MATCH_RULE,
              "ground_truth": ground_truth, "images": len(groups), "images_not_in_boxes_file": not_listed,
              "shape_check": check_shape, "rejected_detections": int(rejected[0]),
              "faces_lost_to_check": int(rejected[1])}
    return {**result, **tally(samples, faces, unmatched)}


def tally(samples: list, faces: dict, unmatched: list) -> dict:
    """Counts, summaries (detector on matched faces; ground truth on those and on all faces)
    and the per-face records of the result."""
    matched = faces["matched"]
    chosen = [s for s, m in zip(samples, matched) if m]
    truth_matched = {norm: values[matched] for norm, values in faces["truth"].items()}
    summary = {"detector_matched": evaluate.summarize(faces["detected"], chosen),
               "ground_truth_matched": evaluate.summarize(truth_matched, chosen),
               "ground_truth_all": evaluate.summarize(faces["truth"], samples)}
    position = np.cumsum(matched) - 1  # a matched face's row in faces["detected"]
    per_face = []
    for index, sample in enumerate(samples):
        nme = {norm: float(v[position[index]]) for norm, v in faces["detected"].items()} if matched[index] else None
        per_face.append({"image_path": sample.image_path, "matched": bool(matched[index]),
                         "box": faces["detected_box"][index].tolist() if matched[index] else None,
                         "iou": float(faces["iou"][index]) if matched[index] else None, "nme": nme,
                         "ground_truth_box": faces["truth_box"][index].tolist(),
                         "ground_truth_box_nme": {norm: float(v[index]) for norm, v in faces["truth"].items()}})
    failed = int(np.sum(faces["detected"]["inter_ocular"] > 0.1))
    return {"faces": len(samples), "detected": int(matched.sum()), "detected_fraction": float(matched.mean()),
            "unmatched_detections": len(unmatched),
            "missed_or_failed_fraction": (len(samples) - int(matched.sum()) + failed) / len(samples),
            "summary": summary, "per_face": per_face, "unmatched": unmatched}


def format_end_to_end(result: dict) -> str:
    """The printed report: counts, the match rule, then one row per box source."""
    not_listed = result["images_not_in_boxes_file"]
    cascade = f" (cascade: {result['first_stage']} -> {result['checkpoint']})" if result.get("first_stage") else ""
    lines = [f"end to end{cascade}, boxes from {result['detector']}: {result['faces']} faces in {result['images']} images; "
             f"detected {result['detected']} ({100 * result['detected_fraction']:.1f} %); unmatched detections "
             f"{result['unmatched_detections']}"
             + (f"; {not_listed} images not in the boxes file" if not_listed else "")
             + (f"; the shape check rejected {result['rejected_detections']} detections ("
                f"{result['faces_lost_to_check']} of them matched a face)" if result.get("shape_check") else
                "; no shape check"),
             f"match rule: {result['match_rule']}",
             f"ground truth: {result['ground_truth']}; missed, or inter-ocular NME > 0.1: "
             f"{100 * result['missed_or_failed_fraction']:.2f} % of all faces",
             "| boxes | faces | NME inter-ocular % | median % | FR@0.1 % | AUC@0.1 | NME inter-pupil % | NME box % "
             "| NME image % |", "|---|---|---|---|---|---|---|---|---|"]
    for key, label in ROWS:
        s = result["summary"][key]
        io = s["inter_ocular"]
        lines.append(f"| {label} | {io['n']} | {100 * io['mean']:.2f} | {100 * io['median']:.2f} | "
                     f"{100 * io['fr']:.2f} | {io['auc']:.4f} | {100 * s['inter_pupil']['mean']:.2f} | "
                     f"{100 * s['box']['mean']:.2f} | {100 * s['image']['mean']:.2f} |")
    return "\n".join(lines)
