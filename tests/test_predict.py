"""Prediction on photos: detector boxes, exact mapping back to the source image (box crops,
aligned crops, the two-stage cascade), the `facemarks predict` command (JSON, overlays,
no-face images, bad files, videos)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import facemarks
import facemarks.inference.predictor as api
from shapes import face_shaped
from facemarks import models, schemes
from facemarks.cli import main as cli_main
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.geometry.crop import AlignCrop, BoxCrop
from facemarks.inference import shape_check
from facemarks.inference.cascade import CascadePredictor
from facemarks.inference.detect import BoxesFile, HaarFaceDetector, map_boxes, whole_image_box
from facemarks.errors import CheckpointError, DataError, UnknownNameError
from facemarks.pose import HeadPose, head_pose, rotation_matrix
from facemarks.registry import MODELS

S = 64
MARGIN = 0.25
NUM_POINTS = 68
# Normalised points the test model always outputs (x, y in [0, 1] of the network input).
CONSTANT_POINTS = face_shaped(7)  # a face's shape: the shape check keeps its detections


class ConstantPoints(nn.Module):
    """Test model: ignores the image and outputs CONSTANT_POINTS (stored as weights)."""

    kind = "regression"

    def __init__(self, num_points: int, input_size: int = S):
        super().__init__()
        self.points = nn.Parameter(torch.zeros(num_points, 2, dtype=torch.float64))
        self.input_size = input_size

    def forward(self, images):
        return self.points.to(images.dtype).expand(images.shape[0], -1, -1)

    def decode(self, output, decoder=None):
        return output


class BrightCentroid(nn.Module):
    """Test model: every point at the intensity-weighted centroid of the input, in
    normalised coordinates (pixel centre u -> (u + 0.5) / S)."""

    kind = "regression"

    def __init__(self, num_points: int, input_size: int = S):
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size

    def weight(self, images):
        return images.sum(1)  # (B, S, S)

    def forward(self, images):
        weight = self.weight(images)
        size = images.shape[-1]
        centres = (torch.arange(size, dtype=images.dtype) + 0.5) / size
        total = weight.sum((1, 2))
        x = (weight.sum(1) * centres).sum(1) / total
        y = (weight.sum(2) * centres).sum(1) / total
        return torch.stack([x, y], dim=-1)[:, None, :].expand(-1, self.num_points, -1)

    def decode(self, output, decoder=None):
        return output


class RedCentroid(BrightCentroid):
    """Test model: every point at the centroid of the input's strongly red pixels (red channel
    above one half, weighted by the excess): sees a red square and ignores a blue one."""

    def weight(self, images):
        return (images[:, 0] - 0.5).clamp(min=0)


MODELS.register("test_constant_points")(ConstantPoints)
MODELS.register("test_bright_centroid")(BrightCentroid)
MODELS.register("test_red_centroid")(RedCentroid)


def save_checkpoint(path, name, model, input_size=S, crop=BoxCrop(MARGIN), scheme="300w"):
    Checkpoint(ModelSpec(name), schemes.get(scheme), crop, input_size, model.state_dict()).save(path)
    return path


def constant_model(points) -> ConstantPoints:
    model = ConstantPoints(len(points))
    with torch.no_grad():
        model.points.copy_(torch.from_numpy(points))
    return model


@pytest.fixture(scope="module")
def constant_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "constant.pt", "test_constant_points",
                           constant_model(CONSTANT_POINTS))


@pytest.fixture(scope="module")
def dsnet_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = models.create("dsnet", NUM_POINTS, input_size=S)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "dsnet.pt", "dsnet", model)


def expected_source_points(box, input_size, margin, points_norm):
    """Hand-written inverse of the crop: the square of side L = max(w, h)(1 + margin)
    centred on the box maps onto the input [-0.5, S - 0.5], so input pixel u (= p S - 0.5)
    lies at source x = c + (u - (S - 1) / 2) * L / S."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + margin)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    u = points_norm * input_size - 0.5
    return centre + (u - (input_size - 1) / 2) * side / input_size


# ---------------------------------------------------------------------------------
# mapping back to the source image
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("box", [(10.0, 20.0, 90.0, 70.0), (-30.5, 5.25, 40.0, 160.0), (100.0, 50.0, 101.0, 53.0)])
def test_points_map_back_exactly(constant_checkpoint, box):
    predictor = api.load(constant_checkpoint)
    image = np.zeros((120, 150, 3), np.uint8)
    faces = predictor.predict(image, boxes=[box])
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0]["landmarks"], expected_source_points(box, S, MARGIN, CONSTANT_POINTS),
                               rtol=0, atol=1e-4)
    assert faces[0]["box"] == list(box)
    assert faces[0]["scheme"] == "300w"


def test_several_faces_are_batched_and_each_mapped_back(constant_checkpoint):
    predictor = api.load(constant_checkpoint)
    boxes = np.array([[0, 0, 40, 40], [50, 10, 70, 60], [5, 80, 125, 90]], dtype=np.float64)
    faces = predictor.predict(np.zeros((100, 130, 3), np.uint8), boxes=boxes)
    assert [f["box"] for f in faces] == boxes.tolist()
    for face, box in zip(faces, boxes):
        np.testing.assert_allclose(face["landmarks"], expected_source_points(box, S, MARGIN, CONSTANT_POINTS), atol=1e-4)


def test_crop_and_inverse_agree_to_the_pixel_centre(tmp_path):
    """A bright 3x3 square whose centre is pixel (70, 41): the model finds the centroid in
    the crop, and the pipeline must return exactly (70, 41) in the source image. The box
    is chosen so the crop is an integer shift (scale 1): any half-pixel slip shows."""
    path = save_checkpoint(tmp_path / "centroid.pt", "test_bright_centroid", BrightCentroid(NUM_POINTS))
    predictor = api.load(path)
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:43, 69:72] = 255
    side = S / (1 + MARGIN)  # crop side L = S: one source pixel per input pixel
    centre = np.array([60.5, 50.5])  # box centre at a pixel edge -> integer translation
    box = np.concatenate([centre - side / 2, centre + side / 2])
    faces = predictor.predict(image, boxes=[box])
    np.testing.assert_allclose(faces[0]["landmarks"], np.tile([70.0, 41.0], (NUM_POINTS, 1)), atol=1e-3)
    # Zoomed crop (scale != 1): bilinear sampling moves the centroid by well under a pixel.
    faces = predictor.predict(image, boxes=[[50, 30, 90, 60]])
    np.testing.assert_allclose(faces[0]["landmarks"], np.tile([70.0, 41.0], (NUM_POINTS, 1)), atol=0.25)


def test_large_faces_are_shrunk_without_losing_the_mapping(tmp_path):
    """A 160-px face to a 64-px input (3x shrink: area pre-reduction, then the warp): the
    centroid of a bright 20x20 square still comes back to within half a source pixel
    (resampling moves it by about 0.25 px; a half-pixel slip in the pre-reduction's
    coordinates would move it by about 1 px)."""
    path = save_checkpoint(tmp_path / "centroid.pt", "test_bright_centroid", BrightCentroid(NUM_POINTS))
    predictor = api.load(path)
    image = np.zeros((240, 260, 3), np.uint8)
    image[80:100, 120:140] = 255  # pixels 120..139: centroid x = 129.5, y = 89.5
    faces = predictor.predict(image, boxes=[[50, 10, 210, 170]])
    np.testing.assert_allclose(faces[0]["landmarks"], np.tile([129.5, 89.5], (NUM_POINTS, 1)), atol=0.5)


def test_whole_image_option_uses_the_image_as_landmark_box(constant_checkpoint):
    predictor = api.load(constant_checkpoint)
    image = np.zeros((50, 80, 3), np.uint8)
    faces = predictor.predict(image, detector="whole")
    box = (-0.5, -0.5, 79.5, 49.5)
    assert faces[0]["box"] == list(box)
    np.testing.assert_allclose(faces[0]["landmarks"], expected_source_points(box, S, MARGIN, CONSTANT_POINTS), atol=1e-4)
    np.testing.assert_array_equal(whole_image_box(image), [box])


def test_predict_crops_takes_uint8_or_float(constant_checkpoint):
    predictor = api.load(constant_checkpoint)
    crops = np.zeros((3, S, S, 3), np.uint8)
    np.testing.assert_allclose(predictor.predict_crops(crops), np.broadcast_to(CONSTANT_POINTS, (3, NUM_POINTS, 2)), atol=1e-6)
    floats = torch.zeros(2, 3, S, S)
    assert predictor.predict_crops(floats).shape == (2, NUM_POINTS, 2)
    with pytest.raises(ValueError, match="64 x 64"):
        predictor.predict_crops(np.zeros((1, 32, 32, 3), np.uint8))


def test_bad_checkpoints_raise_checkpoint_error_naming_the_file(tmp_path, dsnet_checkpoint):
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match="missing.pt"):
        api.load(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        api.load(garbage)
    # Valid file, weights of another model.
    wrong = tmp_path / "wrong.pt"
    loaded = Checkpoint.load(dsnet_checkpoint)
    loaded.model = ModelSpec("cnn6")
    loaded.save(wrong)
    with pytest.raises(CheckpointError, match="wrong.pt"):
        api.load(wrong)


def test_default_checkpoint_absent_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "DEFAULT_WEIGHTS", "no_such_model.pt")
    with pytest.raises(CheckpointError, match="--checkpoint"):
        api.load()


# ---------------------------------------------------------------------------------
# aligned crops and the two-stage cascade
# ---------------------------------------------------------------------------------

# Stage 2's constant output and its alignment template (not symmetric, so the similarity
# has a rotation), both in normalised input coordinates.
STAGE2_POINTS = face_shaped(11, jitter=0.03)
TEMPLATE = ((0.30, 0.28), (0.70, 0.33), (0.52, 0.50), (0.36, 0.71), (0.65, 0.74))


def five_points_300w(points):
    """Eye centres (means of 0-based points 36-41 and 42-47), nose tip 30, mouth corners 48, 54."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def expected_aligned_points(five, template, input_size, points_norm):
    """Hand-written inverse of an aligned crop: the least-squares similarity u = A x + t,
    A = [[a, -b], [b, a]], from the five source points onto the template's input pixels
    (v * S - 0.5), solved as a linear system; then x = A^-1 (u - t) for the model's points."""
    target = np.asarray(template) * input_size - 0.5
    rows, rhs = [], []
    for (x, y), (u, v) in zip(five, target):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    linear = np.array([[a, -b], [b, a]])
    u = points_norm * input_size - 0.5
    return np.linalg.solve(linear, (u - [tx, ty]).T).T


@pytest.fixture(scope="module")
def aligned_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "aligned.pt", "test_constant_points",
                           constant_model(STAGE2_POINTS), crop=AlignCrop(TEMPLATE))


def test_aligned_crop_model_predicts_from_five_points(aligned_checkpoint):
    predictor = api.load(aligned_checkpoint)
    assert predictor.crop == AlignCrop(TEMPLATE)
    five = np.array([[40.0, 50.0], [80.0, 46.0], [61.0, 72.0], [45.0, 95.0], [78.0, 92.0]])
    faces = predictor.predict(np.zeros((140, 130, 3), np.uint8), points=five)
    np.testing.assert_allclose(faces[0]["landmarks"], expected_aligned_points(five, TEMPLATE, S, STAGE2_POINTS),
                               rtol=0, atol=1e-4)
    assert faces[0]["box"] == [40.0, 46.0, 80.0, 95.0]  # the extent of the given points
    with pytest.raises(ValueError, match="crops from face points"):
        predictor.predict(np.zeros((140, 130, 3), np.uint8))


def test_cascade_crops_stage_two_from_stage_one_points(constant_checkpoint, aligned_checkpoint):
    box = (20.0, 30.0, 110.0, 100.0)
    image = np.zeros((150, 160, 3), np.uint8)
    stage1 = expected_source_points(box, S, MARGIN, CONSTANT_POINTS)
    expected = expected_aligned_points(five_points_300w(stage1), TEMPLATE, S, STAGE2_POINTS)
    cascade = facemarks.load(aligned_checkpoint, first_stage=constant_checkpoint)
    assert isinstance(cascade, CascadePredictor) and cascade.first_stage == str(constant_checkpoint)
    for predictor in (cascade, CascadePredictor(api.load(constant_checkpoint), api.load(aligned_checkpoint))):
        faces = predictor.predict(image, boxes=[box])
        assert len(faces) == 1 and faces[0]["box"] == list(box) and faces[0]["scheme"] == "300w"
        np.testing.assert_allclose(faces[0]["landmarks"], expected, rtol=0, atol=1e-4)
    # Detected boxes go to the first stage too.
    assert cascade.predict(image, detector="whole")[0]["box"] == [-0.5, -0.5, 159.5, 149.5]


def test_cascade_needs_an_aligned_second_stage(constant_checkpoint):
    with pytest.raises(CheckpointError, match="second stage"):
        facemarks.load(constant_checkpoint, first_stage=constant_checkpoint)


def test_cascade_first_stage_needs_the_five_alignment_points(aligned_checkpoint):
    eyes_only = schemes.Scheme("eyes", 2, (1, 0), (0, 1), (0,), (1,))  # no nose tip, no mouth corners
    first = SimpleNamespace(scheme=eyes_only, source="eyes.pt")
    with pytest.raises(CheckpointError, match="eyes.pt: cannot be the first stage"):
        CascadePredictor(first, api.load(aligned_checkpoint))


def test_detectors_are_looked_up_in_the_registry(constant_checkpoint):
    predictor = api.load(constant_checkpoint)
    image = np.zeros((50, 80, 3), np.uint8)
    np.testing.assert_array_equal(predictor.detect(image, "whole"), whole_image_box(image))
    with pytest.raises(UnknownNameError, match=r"nosuch.*haar, whole"):
        predictor.detect(image, "nosuch")
    faces = predictor.predict(image, detector=lambda im: [[1, 2, 30, 40]])  # a callable still works
    assert faces[0]["box"] == [1, 2, 30, 40]


# ---------------------------------------------------------------------------------
# detector and boxes files
# ---------------------------------------------------------------------------------


def test_map_boxes_by_hand():
    detections = np.array([[10.0, 20.0, 110.0, 120.0], [0.0, 0.0, 50.0, 40.0]])
    mapped = map_boxes(detections, center_offset=(0.1, -0.2), size_scale=(0.5, 2.0))
    # box 1: centre (60, 70) + (10, -20) = (70, 50); size (50, 200)
    # box 2: centre (25, 20) + (5, -8) = (30, 12); size (25, 80)
    np.testing.assert_allclose(mapped, [[45, -50, 95, 150], [17.5, -28, 42.5, 52]])


def test_haar_box_matches_landmark_box_on_real_faces(data_300w):
    """The calibrated mapping puts the box on the landmarks (IoU > 0.5) on held-out faces."""
    detector = HaarFaceDetector()
    names = ["helen/testset/296814969_3", "lfpw/testset/image_0001", "lfpw/testset/image_0011"]
    for name in names:
        image = cv2.cvtColor(cv2.imread(str(data_300w / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        points = read_pts(data_300w / f"{name}.pts")
        truth = np.concatenate([points.min(0), points.max(0)])
        boxes = detector(image)
        assert len(boxes) >= 1, name
        assert max(iou(b, truth) for b in boxes) > 0.5, name


def test_no_face_gives_no_box():
    assert HaarFaceDetector()(np.full((120, 160, 3), 128, np.uint8)).shape == (0, 4)


def test_boxes_file_json_csv_and_predict_output(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"dir/one.jpg": [[1, 2, 30, 40], [5, 5, 9, 9]], "two.png": [0, 0, 10, 10]}))
    boxes = BoxesFile(tmp_path / "a.json")
    np.testing.assert_array_equal(boxes.lookup("dir/one.jpg"), [[1, 2, 30, 40], [5, 5, 9, 9]])
    np.testing.assert_array_equal(boxes.lookup("elsewhere/two.png"), [[0, 0, 10, 10]])  # by file name
    assert boxes.lookup("three.jpg").shape == (0, 4)

    (tmp_path / "b.csv").write_text("file,x_min,y_min,x_max,y_max\none.jpg,1,2,3,4\none.jpg,5,6,7,8\nclip.mp4#2,0,0,4,4\n")
    boxes = BoxesFile(tmp_path / "b.csv")
    np.testing.assert_array_equal(boxes.lookup("x/one.jpg"), [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(boxes.lookup("clip.mp4", frame=2), [[0, 0, 4, 4]])
    assert boxes.lookup("clip.mp4", frame=3).shape == (0, 4)

    (tmp_path / "c.json").write_text(json.dumps([{"file": "p.jpg", "faces": [{"box": [1, 1, 2, 2], "landmarks": []}]}]))
    np.testing.assert_array_equal(BoxesFile(tmp_path / "c.json").lookup("p.jpg"), [[1, 1, 2, 2]])


def test_bad_boxes_files_name_file_and_line(tmp_path):
    (tmp_path / "bad.csv").write_text("file,x_min,y_min,x_max,y_max\none.jpg,1,2,3,4\ntwo.jpg,1,x,3,4\n")
    with pytest.raises(DataError, match=r"bad.csv:3"):
        BoxesFile(tmp_path / "bad.csv")
    (tmp_path / "inverted.json").write_text(json.dumps({"a.jpg": [10, 10, 5, 20]}))
    with pytest.raises(DataError, match="inverted.json"):
        BoxesFile(tmp_path / "inverted.json")
    with pytest.raises(DataError, match="nothere.json"):
        BoxesFile(tmp_path / "nothere.json")


@pytest.mark.parametrize("content, message", [
    ([{"file": "a.jpg", "faces": [{"landmarks": []}]}], r"bad.json: record 0, face 0: needs a 'box'"),
    ([{"file": "a.jpg", "faces": 5}], r"bad.json: record 0: 'faces' must be a list"),
    ([{"file": "a.jpg", "box": [1, 2, 30, 40]}, {"file": 7, "box": [1, 2, 30, 40]}], r"bad.json: record 1: 'file' must be"),
    ({"a.jpg": [1, 2, 30]}, r"bad.json: entry 'a.jpg': a box must be 4 numbers"),
    ({"a.jpg": [1, 2, 30, 40, 50, 60, 70, 80]}, r"bad.json: entry 'a.jpg': a box must be 4 numbers"),
    ({"a.jpg": [True, 2, 30, 40]}, r"bad.json: entry 'a.jpg': a box must be 4 numbers"),
    ({"a.jpg": "1 2 30 40"}, r"bad.json: entry 'a.jpg': a box must be a list"),
    ({"a.jpg": [[1, 2, 30, 40], [0, 0, float("nan"), 9]]}, r"bad.json: entry 'a.jpg': box \[0, 0, nan, 9\] .* not finite"),
    ({"a.jpg": [0, 0, 1e999, 9]}, r"bad.json: entry 'a.jpg': box .* not finite"),
    ({"a.jpg": [10, 10, 10.5, 30]}, r"bad.json: entry 'a.jpg': box \[10, 10, 10.5, 30\] .* degenerate"),
])
def test_bad_boxes_records_name_the_file_and_entry(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=message):
        BoxesFile(tmp_path / "bad.json")


def test_boxes_file_tells_unlisted_from_listed_without_faces(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps([{"file": "none.jpg", "faces": []}, {"file": "a/x.jpg", "box": [0, 0, 9, 9]},
                                                 {"file": "b/x.jpg", "box": [1, 1, 9, 9]}]))
    boxes = BoxesFile(tmp_path / "b.json")
    assert boxes.find("none.jpg").shape == (0, 4) and boxes.find("other.jpg") is None
    np.testing.assert_array_equal(boxes.find("a/x.jpg"), [[0, 0, 9, 9]])  # the path as written wins
    with pytest.raises(DataError, match=r"b.json: 'c/x.jpg' .* matches several entries \('a/x.jpg', 'b/x.jpg'\)"):
        boxes.find("c/x.jpg")


def test_predictor_refuses_non_finite_or_inverted_boxes(constant_checkpoint):
    predictor = api.load(constant_checkpoint)
    for box in ([0, 0, np.nan, 10], [0, 0, np.inf, 10], [10, 0, 5, 10]):
        with pytest.raises(ValueError, match="finite with x_max > x_min"):
            predictor.predict(np.zeros((20, 20, 3), np.uint8), boxes=[box])


def photo_320(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.zeros((240, 320, 3), np.uint8))
    return path


@pytest.mark.parametrize("box, where", [([4900, 10, 5100, 200], "outside"), ([-1e9, -1e9, 1e9, 1e9], "mostly outside"),
                                        ([250, 100, 450, 200], "mostly outside")])
def test_boxes_outside_the_image_stop_before_any_prediction(tmp_path, constant_checkpoint, capsys, box, where):
    image = photo_320(tmp_path)
    (tmp_path / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\nphoto.png,10,10,100,100\nphoto.png," +
                                        ",".join(str(v) for v in box) + "\n")
    out = tmp_path / "out"
    code = cli_main(["predict", str(image), "--checkpoint", str(constant_checkpoint), "--boxes", str(tmp_path / "boxes.csv"),
                     "--out", str(out), "--no-overlay"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"boxes.csv:3: row for 'photo.png': box [" in captured.err
    assert f"lies {where} the 320 x 240 image {image}" in captured.err
    assert not (out / "predictions.json").exists() and "face(s)" not in captured.out  # nothing predicted


def test_boxes_cut_by_the_image_edge_are_kept(tmp_path, constant_checkpoint):
    """A face box half in the image (the fraction MIN_INSIDE_FRACTION allows) is predicted."""
    image = photo_320(tmp_path)
    box = [-80.5, 20, 79.5, 200]  # 80 of 160 px wide inside
    (tmp_path / "boxes.json").write_text(json.dumps({"photo.png": box}))
    out = tmp_path / "out"
    assert cli_main(["predict", str(image), "--checkpoint", str(constant_checkpoint), "--boxes",
                     str(tmp_path / "boxes.json"), "--out", str(out), "--no-overlay"]) == 0
    (face,) = json.loads((out / "predictions.json").read_text())["images"][0]["faces"]
    np.testing.assert_allclose(face["landmarks"], expected_source_points(box, S, MARGIN, CONSTANT_POINTS), atol=2e-3)


def test_video_frame_boxes_are_checked_against_the_video(tmp_path, constant_checkpoint, capsys):
    video = write_video(tmp_path / "clip.mp4", [np.zeros((48, 64, 3), np.uint8)] * 3)
    (tmp_path / "boxes.json").write_text(json.dumps({"clip.mp4#0": [1, 1, 30, 30], "clip.mp4#2": [100, 1, 130, 30]}))
    code = cli_main(["predict", str(video), "--checkpoint", str(constant_checkpoint), "--boxes",
                     str(tmp_path / "boxes.json"), "--out", str(tmp_path / "out"), "--no-overlay"])
    err = capsys.readouterr().err
    assert code == 2 and "boxes.json: entry 'clip.mp4#2': box [100, 1, 130, 30]" in err and "64 x 48 image" in err


def test_images_missing_from_the_boxes_file_are_not_reported_as_faceless(tmp_path, constant_checkpoint, capsys):
    """With --boxes no detector runs: an image the file does not list is "not in the boxes
    file", one it lists without a box has "no box in the boxes file", never "no face found"."""
    for name in ("listed.png", "empty.png", "unlisted.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((60, 60, 3), np.uint8))
    (tmp_path / "boxes.json").write_text(json.dumps({"listed.png": [10, 12, 40, 50], "empty.png": []}))
    out = tmp_path / "out"
    code = cli_main(["predict", *(str(tmp_path / n) for n in ("listed.png", "empty.png", "unlisted.png")),
                     "--checkpoint", str(constant_checkpoint), "--boxes", str(tmp_path / "boxes.json"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    listed, empty, unlisted = json.loads((out / "predictions.json").read_text())["images"]
    assert len(listed["faces"]) == 1 and "note" not in listed
    assert (empty["faces"], empty["note"]) == ([], "no box in the boxes file")
    assert (unlisted["faces"], unlisted["note"]) == ([], "not in the boxes file")
    assert f"{tmp_path / 'unlisted.png'}: 0 face(s) (not in the boxes file)" in printed
    assert "no face found" not in printed


def test_image_size_is_read_as_the_image_will_be_decoded(tmp_path):
    """The boxes check reads image sizes from headers: with EXIF rotations applied, as OpenCV does."""
    from PIL import Image

    from facemarks.inference.files import media_size

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "rotated.jpg", exif=exif)
    decoded = cv2.imread(str(tmp_path / "rotated.jpg"))
    assert decoded.shape[:2] == (50, 30) and media_size(tmp_path / "rotated.jpg") == (30, 50)


# ---------------------------------------------------------------------------------
# the predict command
# ---------------------------------------------------------------------------------


def test_predict_folder_json_no_face_and_bad_file(tmp_path, constant_checkpoint, data_300w, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    face = cv2.imread(str(data_300w / "helen/testset/296814969_3.jpg"))
    cv2.imwrite(str(photos / "face.jpg"), face)
    cv2.imwrite(str(photos / "blank.png"), np.full((100, 140, 3), 128, np.uint8))
    (photos / "broken.jpg").write_text("this is not a JPEG")
    (photos / "notes.txt").write_text("not an image, skipped")
    out = tmp_path / "out"

    code = cli_main(["predict", str(photos), "--checkpoint", str(constant_checkpoint), "--out", str(out)])
    assert code == 1  # one input failed
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.out + captured.err

    document = json.loads((out / "predictions.json").read_text())
    by_name = {entry["file"].rsplit("/", 1)[-1]: entry for entry in document["images"]}
    assert set(by_name) == {"face.jpg", "blank.png", "broken.jpg"}
    assert document["failed"] == 1 and document["skipped"] == [str(photos / "notes.txt")]
    assert document["scheme"] == "300w" and document["backend"] == "torch"

    broken = by_name["broken.jpg"]
    assert str(photos / "broken.jpg") in broken["error"] and "faces" not in broken

    blank = by_name["blank.png"]
    assert blank["faces"] == [] and blank["note"] == "no face found"
    assert (blank["width"], blank["height"]) == (140, 100)

    faced = by_name["face.jpg"]
    assert len(faced["faces"]) == 1
    record = faced["faces"][0]
    assert set(record) == {"box", "landmarks", "scheme", "pose", "shape_distance"} and record["scheme"] == "300w"
    assert len(record["box"]) == 4
    landmarks = np.array(record["landmarks"])
    check = shape_check.for_scheme("300w")
    assert record["shape_distance"] == pytest.approx(check.distances(landmarks)[0], abs=2e-4)
    assert record["shape_distance"] < check.threshold
    assert landmarks.shape == (NUM_POINTS, 2)
    # The pose is that of the predicted points, with the image's size (JSON rounds both).
    expected_pose = head_pose(landmarks, "300w", (face.shape[1], face.shape[0])).as_dict()
    assert set(record["pose"]) == {"yaw", "pitch", "roll"}
    assert record["pose"] == pytest.approx(expected_pose, abs=0.11)
    # The points are the constant model's output mapped through the reported box.
    np.testing.assert_allclose(landmarks, expected_source_points(record["box"], S, MARGIN, CONSTANT_POINTS), atol=2e-3)
    overlay = cv2.imread(faced["overlay"])
    assert overlay.shape == face.shape
    assert sorted(p.name for p in out.iterdir()) == ["blank_landmarks.jpg", "face_landmarks.jpg", "predictions.json"]
    assert cv2.imread(blank["overlay"]).shape == (100, 140, 3)


def test_predict_with_boxes_file_and_no_overlay(tmp_path, constant_checkpoint):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((60, 60, 3), np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,x_min,y_min,x_max,y_max\nimg.png,10,12,40,50\n")
    out = tmp_path / "out"
    code = cli_main(["predict", str(image), "--checkpoint", str(constant_checkpoint), "--boxes", str(boxes),
                     "--out", str(out), "--no-overlay"])
    assert code == 0
    document = json.loads((out / "predictions.json").read_text())
    entry = document["images"][0]
    assert entry["faces"][0]["box"] == [10, 12, 40, 50] and "overlay" not in entry
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json"]
    np.testing.assert_allclose(entry["faces"][0]["landmarks"],
                               expected_source_points((10, 12, 40, 50), S, MARGIN, CONSTANT_POINTS), atol=2e-3)


def write_video(path, frames_rgb, fps=10, fourcc="mp4v"):
    """Write RGB frames as a video (OpenCV takes BGR)."""
    height, width = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened()
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def count_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.isOpened() and capture.read()[0]:
        count += 1
    capture.release()
    return count


# Frame k of the colour video: a red square at RED_AT[k] and a blue one at BLUE_AT[k]
# (top-left pixels, 20 x 20) on black, 160 x 120: a mirrored frame moves the red square,
# a frame left in BGR swaps the two, frames out of order swap positions.
RED_AT = [(20, 30), (60, 50), (100, 20), (35, 80), (120, 70)]
BLUE_AT = [(110, 80), (10, 10), (30, 70), (115, 15), (40, 30)]


def colour_frame(k: int) -> np.ndarray:
    frame = np.zeros((120, 160, 3), np.uint8)
    (rx, ry), (bx, by) = RED_AT[k], BLUE_AT[k]
    frame[ry:ry + 20, rx:rx + 20] = (255, 0, 0)
    frame[by:by + 20, bx:bx + 20] = (0, 0, 255)
    return frame


def test_predict_video_frames_in_order_and_rgb(tmp_path):
    """Every frame's points land on that frame's red square, whose centre is known by
    construction (pixels x .. x+19: centre x + 9.5): a mirrored frame (by >= 30 px), one left
    in BGR (the blue square, >= 60 px away) or frames out of order (>= 25 px) would miss it."""
    checkpoint = save_checkpoint(tmp_path / "red.pt", "test_red_centroid", RedCentroid(NUM_POINTS))
    video = write_video(tmp_path / "clip.mp4", [colour_frame(k) for k in range(5)])
    out = tmp_path / "out"
    code = cli_main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--detector", "whole",
                     "--no-shape-check"])  # the centroid model's points are no face's shape
    assert code == 0
    entry = json.loads((out / "predictions.json").read_text())["images"][0]
    assert entry["video"] is True and (entry["width"], entry["height"]) == (160, 120)
    assert [f["frame"] for f in entry["frames"]] == [0, 1, 2, 3, 4]
    for k, frame in enumerate(entry["frames"]):
        (face,) = frame["faces"]
        assert face["box"] == [-0.5, -0.5, 159.5, 119.5]
        centre = np.array(RED_AT[k]) + 9.5
        # Lossy mp4v blurs the square's edges: its centroid moved by up to 0.48 px when measured.
        np.testing.assert_allclose(face["landmarks"], np.tile(centre, (NUM_POINTS, 1)), atol=1.5, err_msg=f"frame {k}")
    assert (entry["frames_expected"], entry["frames_read"], entry["truncated"]) == (5, 5, False)
    assert sorted(p.name for p in out.iterdir()) == ["clip_landmarks.mp4", "predictions.json"]  # no temporary left
    assert count_frames(entry["overlay"]) == 5


def padded_face(path, offset=(6, 10), size=(480, 340)):
    """A 300W crop pasted at `offset` (x, y) into a black frame of `size` (w, h), its face
    well left of the frame's centre (so a mirrored frame puts it elsewhere), and its
    0-based points moved with it."""
    image = read_image_rgb(path)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    x, y = offset
    frame[y:y + image.shape[0], x:x + image.shape[1]] = image
    return frame, read_pts(path.with_suffix(".pts")) + offset


def read_image_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def nme(points, truth) -> float:
    """Mean point error over the outer-eye-corner distance (0-based points 36 and 45)."""
    return float(np.linalg.norm(np.asarray(points) - truth, axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))


def test_predict_video_of_real_faces_matches_annotations_and_stills(tmp_path, data_300w):
    """A lossless (FFV1) video of four annotated 300W faces, with each frame's landmark box in
    a boxes file (`clip.avi#k`): every frame's points lie on its annotation (mean error 2.0-4.9%
    of the eye distance when measured; mirrored frames give 25-44%) and match those predicted
    on the same frame as a still image (measured: equal; a frame left in BGR moves them by
    1.5-6.9 px, which its annotation error barely shows)."""
    try:
        checkpoint = api.default_checkpoint()
    except CheckpointError as exc:
        pytest.skip(f"no shipped pretrained model yet: {exc}")
    names = ["helen/testset/296814969_3", "lfpw/testset/image_0001", "lfpw/testset/image_0021",
             "helen/testset/2968560214_1"]
    frames, truths = zip(*(padded_face(data_300w / f"{name}.jpg") for name in names))
    video = write_video(tmp_path / "clip.avi", frames, fourcc="FFV1")
    boxes = {f"clip.avi#{k}": np.concatenate([t.min(0), t.max(0)]).tolist() for k, t in enumerate(truths)}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    assert cli_main(["predict", str(video), "--checkpoint", str(checkpoint), "--boxes", str(tmp_path / "boxes.json"),
                     "--out", str(out), "--no-overlay"]) == 0
    entry = json.loads((out / "predictions.json").read_text())["images"][0]
    assert [f["frame"] for f in entry["frames"]] == [0, 1, 2, 3]
    predictor = api.load(checkpoint)
    for k, frame in enumerate(entry["frames"]):
        (face,) = frame["faces"]
        assert face["box"] == pytest.approx(boxes[f"clip.avi#{k}"], abs=1e-3)
        assert nme(face["landmarks"], truths[k]) < 0.06, (names[k], nme(face["landmarks"], truths[k]))
        still = predictor.predict(frames[k], boxes=[boxes[f"clip.avi#{k}"]])[0]["landmarks"]
        assert np.abs(np.array(face["landmarks"]) - still).max() < 0.01, names[k]  # JSON rounds to 1/1000 px


def test_truncated_video_is_processed_to_its_cut_and_flagged(tmp_path, constant_checkpoint, capsys):
    """A Motion-JPEG AVI cut to half its bytes: OpenCV still opens it and its header still
    announces 10 frames; the frames before the cut are predicted, and the output says how
    many were expected and read, and that the video is truncated (exit status 0)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(10)]
    whole = write_video(tmp_path / "whole.avi", frames, fourcc="MJPG")
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    readable = count_frames(cut)  # what OpenCV itself decodes of the cut file
    assert 0 < readable < 10

    out = tmp_path / "out"
    code = cli_main(["predict", str(whole), str(cut), "--checkpoint", str(constant_checkpoint), "--detector", "whole",
                     "--out", str(out), "--no-overlay"])
    assert code == 0
    printed = capsys.readouterr().out
    document = json.loads((out / "predictions.json").read_text())
    complete, partial = document["images"]
    assert (complete["frames_expected"], complete["frames_read"], complete["truncated"]) == (10, 10, False)
    assert (partial["frames_expected"], partial["frames_read"], partial["truncated"]) == (10, readable, True)
    assert [f["frame"] for f in partial["frames"]] == list(range(readable))
    assert document["truncated"] == 1 and document["failed"] == 0
    assert f"{cut}: {readable} of 10 frames read (TRUNCATED" in printed
    assert f"{whole}: 10 of 10 frames read, faces" in printed
    assert "1 video(s) truncated" in printed

    # Cut before its first frame: an error naming the file (the other inputs still run).
    stub = tmp_path / "stub.avi"
    stub.write_bytes(data[:600])
    assert cli_main(["predict", str(stub), "--checkpoint", str(constant_checkpoint), "--out", str(out)]) == 1
    (entry,) = json.loads((out / "predictions.json").read_text())["images"]
    assert str(stub) in entry["error"] and "frames" not in entry


def test_predict_cascade_command(tmp_path, constant_checkpoint, aligned_checkpoint):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((150, 160, 3), np.uint8))
    out = tmp_path / "out"
    code = cli_main(["predict", str(image), "--checkpoint", str(aligned_checkpoint), "--first-stage",
                     str(constant_checkpoint), "--detector", "whole", "--out", str(out), "--no-overlay"])
    assert code == 0
    document = json.loads((out / "predictions.json").read_text())
    assert document["first_stage"] == str(constant_checkpoint) and document["checkpoint"] == str(aligned_checkpoint)
    box = (-0.5, -0.5, 159.5, 149.5)
    stage1 = expected_source_points(box, S, MARGIN, CONSTANT_POINTS)
    np.testing.assert_allclose(document["images"][0]["faces"][0]["landmarks"],
                               expected_aligned_points(five_points_300w(stage1), TEMPLATE, S, STAGE2_POINTS), atol=2e-3)


# ---------------------------------------------------------------------------------
# head pose of the predicted faces
# ---------------------------------------------------------------------------------


def turned_synthetic_face(yaw: float):
    """A synthetic face (seed 1, face 3, as drawn but for its yaw): RGB image, landmarks."""
    from dataclasses import replace

    from facemarks.data.synthetic import Renderer, sample_params

    params = replace(sample_params(np.random.default_rng([1, 3]), 256), yaw=float(yaw))
    image, landmarks, attributes = Renderer().render(params)
    assert attributes["yaw"] == yaw
    return image, landmarks


@pytest.mark.parametrize("yaw", [-30.0, 30.0])
def test_pose_of_a_turned_synthetic_face(yaw):
    """The shipped model's points on a face turned one way give a yaw of that sign
    (measured: -24.5 for -25, 27.4 for 25, -37.8 for -40 and 38.9 for 40)."""
    try:
        predictor = api.load(api.default_checkpoint())
    except CheckpointError as exc:
        pytest.skip(f"no shipped pretrained model yet: {exc}")
    image, truth = turned_synthetic_face(yaw)
    (face,) = predictor.predict(image, boxes=[np.concatenate([truth.min(0), truth.max(0)])])
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert np.sign(face["pose"]["yaw"]) == np.sign(yaw) and abs(face["pose"]["yaw"] - yaw) < 10.0, face["pose"]
    assert face["pose"] == head_pose(face["landmarks"], "300w", (256, 256)).as_dict()


def test_predict_command_pose_and_axes_overlay(tmp_path):
    """predictions.json carries each face's pose; --draw-pose adds the head axes to the
    overlay: the overlays differ only within the axes' reach of the nose tip."""
    try:
        checkpoint = api.default_checkpoint()
    except CheckpointError as exc:
        pytest.skip(f"no shipped pretrained model yet: {exc}")
    image, truth = turned_synthetic_face(35.0)
    path = tmp_path / "turned.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    box = np.concatenate([truth.min(0), truth.max(0)])
    (tmp_path / "boxes.json").write_text(json.dumps({"turned.png": box.tolist()}))
    overlays = {}
    for flags in ([], ["--draw-pose"]):
        out = tmp_path / ("axes" if flags else "plain")
        assert cli_main(["predict", str(path), "--checkpoint", str(checkpoint), "--boxes", str(tmp_path / "boxes.json"),
                         "--out", str(out), *flags]) == 0
        (face,) = json.loads((out / "predictions.json").read_text())["images"][0]["faces"]
        assert face["pose"]["yaw"] > 25.0, face["pose"]
        overlays[bool(flags)] = cv2.imread(str(out / "turned_landmarks.jpg")).astype(int)
    changed = np.abs(overlays[True] - overlays[False]).max(axis=2) > 40
    assert changed.sum() > 50
    nose, length = np.array(face["landmarks"][30]), 0.5 * max(np.ptp(np.array([face["box"][::2], face["box"][1::2]]), axis=1))
    rows, cols = np.nonzero(changed)
    assert np.hypot(cols - nose[0], rows - nose[1]).max() < length + 12  # the axis, its arrow head, JPEG ringing
    # The red x axis ends where the pose's rotation sends the head's x axis.
    b, g, r = (overlays[True][..., k] for k in range(3))
    rows, cols = np.nonzero(changed & (r > 150) & (g < 110) & (b < 110))
    tip = nose + length * rotation_matrix(HeadPose(**face["pose"]))[:2, 0]
    assert np.hypot(cols - tip[0], rows - tip[1]).min() < 2.0
    assert np.hypot(cols - nose[0], rows - nose[1]).max() == pytest.approx(np.linalg.norm(tip - nose), abs=3.0)


def test_scheme_without_pose_gives_null(tmp_path):
    """A 29-point (COFW) model: its faces carry "pose": None (JSON null), nothing fails."""
    points = np.random.default_rng(3).uniform(0.1, 0.9, size=(29, 2))
    checkpoint = save_checkpoint(tmp_path / "cofw.pt", "test_constant_points", constant_model(points), scheme="cofw")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((60, 60, 3), np.uint8))
    (face,) = api.load(checkpoint).predict(str(image), boxes=[[10, 12, 40, 50]])
    assert face["pose"] is None
    assert cli_main(["predict", str(image), "--checkpoint", str(checkpoint), "--boxes", str(image.with_suffix(".csv")),
                     "--out", str(tmp_path / "out"), "--draw-pose"]) == 2  # the boxes file is missing
    image.with_suffix(".csv").write_text("file,x_min,y_min,x_max,y_max\nimg.png,10,12,40,50\n")
    assert cli_main(["predict", str(image), "--checkpoint", str(checkpoint), "--boxes", str(image.with_suffix(".csv")),
                     "--out", str(tmp_path / "out"), "--draw-pose"]) == 0
    document = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert document["images"][0]["faces"][0]["pose"] is None


def test_draw_pose_without_overlays_is_refused(tmp_path, constant_checkpoint, capsys):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    code = cli_main(["predict", str(image), "--checkpoint", str(constant_checkpoint), "--out", str(tmp_path / "out"),
                     "--draw-pose", "--no-overlay"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--draw-pose" in err and not (tmp_path / "out").exists()


def test_predict_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    code = cli_main(["predict", str(image), "--checkpoint", "nosuch.pt", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nosuch.pt" in err and "Traceback" not in err


def unwritable_folders(tmp_path) -> list:
    """Output folders no file can be created in, even as root: an existing file, a path under
    a regular file, and a path in /proc (a pseudo-filesystem)."""
    (tmp_path / "taken").write_text("a file, not a folder")
    folders = [tmp_path / "taken", tmp_path / "taken" / "sub"]
    return folders + ([Path("/proc/facemarks_out")] if Path("/proc").is_dir() else [])


def test_predict_out_folder_is_checked_before_any_work(tmp_path, capsys):
    """The checkpoint is missing too: an error naming the folder (not the checkpoint) shows
    that the folder was checked first; nothing is created or left beside it."""
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    for folder in unwritable_folders(tmp_path):
        code = cli_main(["predict", str(image), "--checkpoint", str(tmp_path / "nosuch.pt"), "--out", str(folder)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(folder) in err and "nosuch.pt" not in err, err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "taken"]


def test_predict_outputs_get_the_usual_permissions(tmp_path, constant_checkpoint):
    """predictions.json, image overlays and video overlays: 0666 & ~umask, as other programs'
    files (the atomic writer's temporary files are created 0600)."""
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    video = write_video(tmp_path / "clip.mp4", [np.zeros((40, 40, 3), np.uint8)] * 2)
    out = tmp_path / "out"
    previous = os.umask(0o027)  # neither 0600 nor the common 0644
    try:
        assert cli_main(["predict", str(image), str(video), "--checkpoint", str(constant_checkpoint),
                         "--detector", "whole", "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {"predictions.json": 0o640, "img_landmarks.jpg": 0o640, "clip_landmarks.mp4": 0o640}


def test_unreadable_video_is_an_error_for_that_file(tmp_path, constant_checkpoint):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    assert cli_main(["predict", str(bad), "--checkpoint", str(constant_checkpoint), "--out", str(out)]) == 1
    entry = json.loads((out / "predictions.json").read_text())["images"][0]
    assert "bad.mp4" in entry["error"]


# ---------------------------------------------------------------------------------
# the shipped pretrained model on a real photo
# ---------------------------------------------------------------------------------


def read_pts(path):
    lines = path.read_text().split("{")[1].split("}")[0].split()
    return np.array(lines, dtype=np.float64).reshape(-1, 2) - 1.0  # 300W .pts are 1-based


def iou(a, b):
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(hi - lo, 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


def test_pretrained_model_on_real_photos(data_300w):
    try:
        path = api.default_checkpoint()
    except CheckpointError as exc:
        pytest.skip(f"no shipped pretrained model yet: {exc}")
    predictor = api.load(path)
    names = ["helen/testset/296814969_3", "lfpw/testset/image_0001", "lfpw/testset/image_0011",
             "lfpw/testset/image_0021", "helen/testset/2968560214_1"]
    errors = []
    for name in names:
        truth = read_pts(data_300w / f"{name}.pts")
        faces = predictor.predict(data_300w / f"{name}.jpg")
        assert faces, f"no face found in {name}"
        box = np.concatenate([truth.min(0), truth.max(0)])
        face = max(faces, key=lambda f: iou(np.array(f["box"]), box))
        inter_ocular = np.linalg.norm(truth[36] - truth[45])  # outer eye corners (0-based 36, 45)
        errors.append(np.linalg.norm(face["landmarks"] - truth, axis=1).mean() / inter_ocular)
    # Measured: mean 0.0292 (0.019-0.046 per photo) with the shipped dsnet_heatmap_300w.pt,
    # Haar boxes, torch 2.13 on the CPU (the numbers are deterministic). Moving every point by
    # 1 px in x and y gives 0.0311; mirrored photos give 0.24. The bound sits just above the
    # measured value, so a worse model or a 1-px slip of the mapping back to the photo crosses
    # it (box changes of 10-20% do not: the model was trained on jittered boxes).
    assert np.mean(errors) < 0.0305, errors


def test_cascade_boxes_in_pixel_centre_coordinates():
    """A detection covering pixel columns 10..39 and rows 20..49 spans [9.5, 39.5] x [19.5, 49.5]."""
    from facemarks.inference.detect import cascade_detections

    class FakeCascade:
        def detectMultiScale(self, gray, **kwargs):
            return np.array([[10, 20, 30, 30]])

    np.testing.assert_array_equal(cascade_detections(np.zeros((60, 60), np.uint8), FakeCascade()),
                                  [[9.5, 19.5, 39.5, 49.5]])
