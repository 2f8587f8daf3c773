"""Prediction on photos: detector boxes, exact mapping back to the source image (box crops,
aligned crops, the two-stage cascade), the `facemarks predict` command (JSON, overlays,
no-face images, bad files, videos)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import facemarks
import facemarks.inference.predictor as api
from facemarks import models, schemes
from facemarks.cli import main as cli_main
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.geometry.crop import AlignCrop, BoxCrop
from facemarks.inference.cascade import CascadePredictor
from facemarks.inference.detect import BoxesFile, HaarFaceDetector, map_boxes, whole_image_box
from facemarks.errors import CheckpointError, DataError, UnknownNameError
from facemarks.registry import MODELS

S = 64
MARGIN = 0.25
NUM_POINTS = 68
# Normalised points the test model always outputs (x, y in [0, 1] of the network input).
CONSTANT_POINTS = np.random.default_rng(7).uniform(0.05, 0.95, size=(NUM_POINTS, 2))


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

    def forward(self, images):
        weight = images.sum(1)  # (B, S, S)
        size = images.shape[-1]
        centres = (torch.arange(size, dtype=images.dtype) + 0.5) / size
        total = weight.sum((1, 2))
        x = (weight.sum(1) * centres).sum(1) / total
        y = (weight.sum(2) * centres).sum(1) / total
        return torch.stack([x, y], dim=-1)[:, None, :].expand(-1, self.num_points, -1)

    def decode(self, output, decoder=None):
        return output


MODELS.register("test_constant_points")(ConstantPoints)
MODELS.register("test_bright_centroid")(BrightCentroid)


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
STAGE2_POINTS = np.random.default_rng(11).uniform(0.05, 0.95, size=(NUM_POINTS, 2))
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
    assert set(record) == {"box", "landmarks", "scheme"} and record["scheme"] == "300w"
    assert len(record["box"]) == 4
    landmarks = np.array(record["landmarks"])
    assert landmarks.shape == (NUM_POINTS, 2)
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


def test_predict_video(tmp_path, dsnet_checkpoint, data_300w):
    frame = cv2.resize(cv2.imread(str(data_300w / "helen/testset/296814969_3.jpg")), (160, 160))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 160))
    assert writer.isOpened()
    for k in range(5):
        writer.write(np.roll(frame, 2 * k, axis=1))
    writer.release()
    out = tmp_path / "out"
    code = cli_main(["predict", str(video), "--checkpoint", str(dsnet_checkpoint), "--out", str(out), "--detector", "whole"])
    assert code == 0
    entry = json.loads((out / "predictions.json").read_text())["images"][0]
    assert entry["video"] is True and (entry["width"], entry["height"]) == (160, 160)
    assert [f["frame"] for f in entry["frames"]] == [0, 1, 2, 3, 4]
    assert all(len(f["faces"]) == 1 and np.array(f["faces"][0]["landmarks"]).shape == (NUM_POINTS, 2)
               for f in entry["frames"])
    assert sorted(p.name for p in out.iterdir()) == ["clip_landmarks.mp4", "predictions.json"]  # no temporary left
    capture = cv2.VideoCapture(entry["overlay"])
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 5


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


def test_predict_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    code = cli_main(["predict", str(image), "--checkpoint", "nosuch.pt", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nosuch.pt" in err and "Traceback" not in err


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
    assert np.mean(errors) < 0.15, errors


def test_cascade_boxes_in_pixel_centre_coordinates():
    """A detection covering pixel columns 10..39 and rows 20..49 spans [9.5, 39.5] x [19.5, 49.5]."""
    from facemarks.inference.detect import cascade_detections

    class FakeCascade:
        def detectMultiScale(self, gray, **kwargs):
            return np.array([[10, 20, 30, 30]])

    np.testing.assert_array_equal(cascade_detections(np.zeros((60, 60), np.uint8), FakeCascade()),
                                  [[9.5, 19.5, 39.5, 49.5]])
