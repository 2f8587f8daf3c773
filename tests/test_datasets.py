"""Dataset readers: real 300W / WFLW data, bad input, CSV / JSON-lines round trips,
COFW .mat files in both MATLAB layouts, spec parsing, and `facemarks data`."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemarks.data import formats as datasets
from facemarks.cli import main
from facemarks.data.formats import cofw, table, w300, wflw
from facemarks.data.info import inspect_dataset
from facemarks.data.sample import image_size
from facemarks.errors import DataError, FacemarksError, UnknownNameError
from facemarks.registry import FORMATS

RNG = np.random.default_rng(0)


def write_image(path: Path, height: int = 12, width: int = 9, seed: int = 0) -> np.ndarray:
    """Write a small random RGB PNG/JPEG and return the RGB array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def pts_text(points_1based, declared=None) -> str:
    rows = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points_1based)
    n = len(points_1based) if declared is None else declared
    return f"version: 1\nn_points:  {n}\n{{\n{rows}\n}}\n"


def make_300w_face(folder: Path, name: str, seed: int = 0, image: bool = True) -> np.ndarray:
    """A face with 68 points (1-based in the file); returns the expected 0-based points."""
    folder.mkdir(parents=True, exist_ok=True)
    pts = np.random.default_rng(seed).uniform(1, 9, (68, 2)).round(6)
    (folder / f"{name}.pts").write_text(pts_text(pts))
    if image:
        write_image(folder / f"{name}.jpg", seed=seed)
    return pts - 1


# ---------------------------------------------------------------------------------------
# 300W, real data


def test_300w_reads_all_real_faces_and_standard_splits(data_300w):
    spec = f"300w:{data_300w}"
    everything = datasets.load(spec)
    assert len(everything) == 2566 and everything.skipped == []
    assert len(datasets.load(spec, "train")) == 2012
    assert len(datasets.load(spec, "common")) == 554
    counts = datasets.splits(spec)
    assert counts == {
        "train": 2012, "common": 554, "afw": 337, "helen/trainset": 870,
        "helen/testset": 330, "lfpw/trainset": 805, "lfpw/testset": 224,
    }
    assert {s.subset for s in everything} == {"afw", "helen/trainset", "helen/testset", "lfpw/trainset", "lfpw/testset"}
    assert all(s.scheme == "300w" and s.landmarks.shape == (68, 2) for s in everything)
    assert all(Path(s.image_path).is_file() for s in everything[:50])
    assert len(datasets.load(spec, "helen/testset")) == 330


def test_300w_missing_and_partial_splits_are_errors(data_300w):
    spec = f"300w:{data_300w}"
    with pytest.raises(DataError, match="ibug"):
        datasets.load(spec, "challenge")
    with pytest.raises(DataError, match="incomplete.*ibug"):
        datasets.load(spec, "full")
    assert len(datasets.load(spec, "full", allow_partial=True)) == 554
    with pytest.raises(DataError, match="unknown 300W split"):
        datasets.load(spec, "nonsense")


def test_300w_pts_value_is_file_minus_one(data_300w):
    pts_file = data_300w / "afw" / "1051618982_1.pts"
    lines = pts_file.read_text().splitlines()
    first = [float(v) for v in lines[3].split()]
    last = [float(v) for v in lines[3 + 67].split()]
    np.testing.assert_array_equal(w300.read_pts(pts_file)[0], first)  # read as stored
    face = next(s for s in datasets.load(f"300w:{data_300w}", "afw") if s.image_path.endswith("1051618982_1.jpg"))
    np.testing.assert_allclose(face.landmarks[0], np.array(first) - 1, atol=0)
    np.testing.assert_allclose(face.landmarks[67], np.array(last) - 1, atol=0)
    np.testing.assert_allclose(face.box, [*face.landmarks.min(0), *face.landmarks.max(0)])
    assert face.subset == "afw"


# ---------------------------------------------------------------------------------------
# WFLW, real data

WFLW_SUBSET_COUNTS = {"largepose": 98, "expression": 112, "illumination": 214, "makeup": 65, "occlusion": 200, "blur": 205}


def test_wflw_reads_all_real_faces_and_subsets(data_wflw):
    spec = f"wflw:{data_wflw}"
    faces = datasets.load(spec, "test")
    assert len(faces) == 577
    for subset, count in WFLW_SUBSET_COUNTS.items():
        assert len(datasets.load(spec, subset)) == count
    assert datasets.splits(spec) == {"test": 577, **WFLW_SUBSET_COUNTS, "finetune": 400, "holdout": 177}
    assert len(datasets.load(spec, "pose")) == 98  # alias
    with pytest.raises(DataError, match="list_98pt_rect_attr_train.txt"):
        datasets.load(spec, "train")


def test_wflw_values_match_the_raw_line(data_wflw):
    raw = (data_wflw / wflw.RECT_ATTR / "list_98pt_rect_attr_test.txt").read_text().splitlines()[0].split()
    face = datasets.load(f"wflw:{data_wflw}", "test")[0]
    np.testing.assert_array_equal(face.landmarks[0], [float(raw[0]), float(raw[1])])  # 0-based: unchanged
    np.testing.assert_array_equal(face.landmarks[97], [float(raw[194]), float(raw[195])])
    np.testing.assert_array_equal(face.box, [float(v) for v in raw[196:200]])
    assert face.attributes == dict(zip(["pose", "expression", "illumination", "makeup", "occlusion", "blur"], map(int, raw[200:206])))
    assert face.image_path == str((data_wflw / "WFLW_images" / raw[206]).resolve())


def test_wflw_subset_lists_agree_with_flags(data_wflw):
    faces = datasets.load(f"wflw:{data_wflw}", "test")

    def key(sample):
        return sample.image_path, tuple(np.round(sample.landmarks.ravel(), 4))

    flag_of = {"largepose": "pose", "expression": "expression", "illumination": "illumination", "makeup": "makeup", "occlusion": "occlusion", "blur": "blur"}
    for subset, flag in flag_of.items():
        listed = wflw.read_subset_list(wflw.subset_list_file(data_wflw, subset), data_wflw)
        assert len(listed) == WFLW_SUBSET_COUNTS[subset]
        assert {key(s) for s in listed} == {key(s) for s in faces if s.attributes[flag] == 1}


# ---------------------------------------------------------------------------------------
# 300W, synthetic folders and bad input


def test_300w_small_tree_splits_and_subsets(tmp_path):
    expected = {}
    for folder in ("afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset"):
        expected[folder] = make_300w_face(tmp_path / folder, "face", seed=len(expected))
    train = datasets.load(f"300w:{tmp_path}", "train")
    assert [s.subset for s in train] == ["afw", "helen/trainset", "lfpw/trainset"]
    for sample in train:
        np.testing.assert_allclose(sample.landmarks, expected[sample.subset], atol=1e-9)
    assert datasets.splits(f"300w:{tmp_path}")["common"] == 2


@pytest.mark.parametrize(
    "mutate, line, message",
    [
        (lambda lines: lines[:70] + lines[71:], 71, "found 67 points"),
        (lambda lines: [lines[0], "n_points:  67", *lines[2:]], 2, "expected 68"),
        (lambda lines: lines[:9] + ["12.5 abc"] + lines[10:], 10, "malformed"),
        (lambda lines: lines[:9] + ["12.5"] + lines[10:], 10, "malformed"),
        (lambda lines: lines[:4] + ["nan 3.0"] + lines[5:], 5, "not finite"),
        (lambda lines: lines[:71] + ["1.0 2.0"] + lines[71:], 72, "expected '}'"),
        (lambda lines: ["version: 2"] + lines[1:], 1, "version"),
        (lambda lines: lines + ["trailing"], 73, "unexpected text"),
    ],
)
def test_bad_pts_errors_name_file_and_line(tmp_path, mutate, line, message):
    make_300w_face(tmp_path / "afw", "bad")
    pts = tmp_path / "afw" / "bad.pts"
    pts.write_text("\n".join(mutate(pts.read_text().splitlines())) + "\n")
    with pytest.raises(DataError, match=message) as info:
        datasets.load(f"300w:{tmp_path}")
    assert str(info.value).startswith(f"{pts}:{line}:")


def test_missing_image_raises_or_is_skipped(tmp_path):
    make_300w_face(tmp_path / "afw", "good", seed=1)
    make_300w_face(tmp_path / "afw", "lonely", seed=2, image=False)
    with pytest.raises(DataError, match="no image next to it") as info:
        datasets.load(f"300w:{tmp_path}")
    assert str(info.value).startswith(str(tmp_path / "afw" / "lonely.pts"))
    faces = datasets.load(f"300w:{tmp_path}", on_error="skip")
    assert len(faces) == 1 and faces[0].image_path.endswith("good.jpg")
    assert len(faces.skipped) == 1 and "lonely.pts" in faces.skipped[0]


def test_png_images_and_empty_dataset(tmp_path):
    make_300w_face(tmp_path / "faces", "a", image=False)
    write_image(tmp_path / "faces" / "a.png")
    assert datasets.load(f"300w:{tmp_path / 'faces'}")[0].image_path.endswith("a.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no faces") as info:
        datasets.load(f"300w:{tmp_path / 'empty'}")
    assert str(info.value).startswith(str(tmp_path / "empty"))


def test_read_image_corrupt_and_missing(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match="not a readable image") as info:
        datasets.read_image(bad)
    assert str(info.value).startswith(str(bad))
    with pytest.raises(DataError, match="not found"):
        datasets.read_image(tmp_path / "none.png")
    with pytest.raises(DataError):
        image_size(bad)
    rgb = write_image(tmp_path / "ok.png", height=7, width=5)
    np.testing.assert_array_equal(datasets.read_image(tmp_path / "ok.png"), rgb)
    assert image_size(tmp_path / "ok.png") == (5, 7)
    write_image(tmp_path / "ok.jpg", height=13, width=21)
    assert image_size(tmp_path / "ok.jpg") == (21, 13)


# ---------------------------------------------------------------------------------------
# WFLW, bad input


def wflw_line(points, box=(0, 0, 5, 5), flags=(0, 0, 0, 0, 0, 0), image="e/a.jpg") -> str:
    return " ".join([*(f"{v:.6f}" for v in np.ravel(points)), *map(str, box), *map(str, flags), image])


def make_wflw(root: Path, lines: list[str]) -> Path:
    write_image(root / "WFLW_images" / "e" / "a.jpg")
    path = root / wflw.RECT_ATTR / "list_98pt_rect_attr_test.txt"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_wflw_small_file_and_bad_lines(tmp_path):
    pts = RNG.uniform(0, 8, (98, 2))
    path = make_wflw(tmp_path, [wflw_line(pts, flags=(1, 0, 0, 0, 0, 1)), wflw_line(pts[:97], image="e/a.jpg"), wflw_line(pts, image="../../outside.jpg"), wflw_line(pts, flags=(0, 2, 0, 0, 0, 0))])
    with pytest.raises(DataError, match="expected 207 tokens") as info:
        datasets.load(f"wflw:{tmp_path}", "test")
    assert str(info.value).startswith(f"{path}:2:")
    faces = datasets.load(f"wflw:{tmp_path}", "test", on_error="skip")
    assert len(faces) == 1 and len(faces.skipped) == 3
    assert "outside the dataset root" in faces.skipped[1] and f"{path}:3:" in faces.skipped[1]
    assert "flags must be 0 or 1" in faces.skipped[2]
    np.testing.assert_allclose(faces[0].landmarks, np.round(pts, 6))
    assert len(datasets.load(f"wflw:{tmp_path}", "blur", on_error="skip")) == 1
    with pytest.raises(DataError, match="no faces"):
        datasets.load(f"wflw:{tmp_path}", "makeup", on_error="skip")


def test_wflw_missing_image_is_an_error(tmp_path):
    pts = RNG.uniform(0, 8, (98, 2))
    path = make_wflw(tmp_path, [wflw_line(pts, image="e/missing.jpg")])
    with pytest.raises(DataError, match="image not found") as info:
        datasets.load(f"wflw:{tmp_path}")
    assert str(info.value).startswith(f"{path}:1:")


# ---------------------------------------------------------------------------------------
# CSV and JSON lines


def test_hand_written_csv(tmp_path):
    write_image(tmp_path / "img" / "a.png")
    write_image(tmp_path / "img" / "b.png")
    header = "image," + ",".join(f"x{i},y{i}" for i in range(5)) + ",box_x0,box_y0,box_x1,box_y1,split"
    rows = [
        "img/a.png,1,2,3,4,5,6,7,8,9,10,0,0,9,11,train",
        "img/b.png,1.5,2.5,3.5,4.5,5.5,6.5,7.5,8.5,9.5,10.5,1,1,8,8,test",
    ]
    (tmp_path / "faces.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    faces = datasets.load(f"csv:{tmp_path / 'faces.csv'}")
    assert [f.scheme for f in faces] == ["5pt", "5pt"]  # inferred from 5 points
    np.testing.assert_array_equal(faces[0].landmarks, [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])
    np.testing.assert_array_equal(faces[1].box, [1, 1, 8, 8])
    assert faces[0].image_path == str((tmp_path / "img" / "a.png").resolve())
    assert [f.image_path for f in datasets.load(f"csv:{tmp_path / 'faces.csv'}", "test")] == [faces[1].image_path]
    assert datasets.splits(f"csv:{tmp_path / 'faces.csv'}") == {"all": 2, "train": 1, "test": 1}
    # a bare path is recognised by its extension
    assert len(datasets.load(str(tmp_path / "faces.csv"))) == 2


@pytest.mark.parametrize(
    "header_or_row, message",
    [
        ("image,x0,y0,x1\nimg.png,1,2,3\n", "x0,y0"),
        ("image,x0,y0,x1,y1,colour\nimg.png,1,2,3,4,red\n", "unknown column"),
        ("image,x0,y0,x1,y1,box_x0\nimg.png,1,2,3,4,0\n", "all four box columns"),
        ("image,x0,y0,x1,y1\nimg.png,1,2,3,oops\n", "not a number"),
        ("image,x0,y0,x1,y1\nimg.png,1,2,3,nan\n", "NaN"),
        ("image,x0,y0,x1,y1\n../img.png,1,2,3,4\n", "outside"),
        ("image,x0,y0,x1,y1\nmissing.png,1,2,3,4\n", "image not found"),
        ("image,x0,y0,x1,y1\n", "no faces"),
    ],
)
def test_bad_csv(tmp_path, header_or_row, message):
    write_image(tmp_path / "img.png")
    path = tmp_path / "faces.csv"
    path.write_text(header_or_row)
    with pytest.raises(DataError, match=message) as info:
        datasets.load(f"csv:{path}")
    assert str(info.value).startswith(str(path))


def two_point_scheme(tmp_path: Path) -> Path:
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"num_points": 2, "flip_permutation": [1, 0], "outer_eye_corners": [0, 1], "left_eye": [0], "right_eye": [1]}))
    return path


def test_csv_scheme_option_and_conflicts(tmp_path):
    write_image(tmp_path / "img.png")
    scheme_file = two_point_scheme(tmp_path)
    path = tmp_path / "faces.csv"
    path.write_text("image,x0,y0,x1,y1\nimg.png,1,2,3,4\n")
    with pytest.raises(DataError, match="no built-in scheme"):
        datasets.load(f"csv:{path}")
    faces = datasets.load(f"csv:{path}?scheme={scheme_file}")
    assert faces[0].scheme == str(scheme_file)
    with pytest.raises(DataError, match="has 5 points"):
        datasets.load(f"csv:{path}?scheme=5pt")
    path.write_text("image,x0,y0,x1,y1,scheme\nimg.png,1,2,3,4,5pt\n")
    with pytest.raises(DataError, match="contradicts"):
        datasets.load(f"csv:{path}?scheme={scheme_file}")


def make_samples(tmp_path: Path) -> list[datasets.Sample]:
    samples = []
    for i, (n, scheme) in enumerate([(68, "300w"), (68, "300w"), (5, "5pt"), (98, "wflw")]):
        image = tmp_path / "images" / f"{i}.png"
        write_image(image, seed=i)
        pts = RNG.uniform(-0.5, 11.5, (n, 2))
        attributes = {"split": ["train", "train", "val", "test"][i]}
        if i == 3:
            attributes.update({"pose": 1, "blur": 0, "occluded": tuple([0, 1] * 49)})
        samples.append(datasets.Sample(str(image.resolve()), pts, np.array([0.25, 0.5, 8.0, 11.0]), scheme, attributes, f"part{i}"))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    write_image(outside)
    samples.append(datasets.Sample(str(outside.resolve()), RNG.uniform(0, 8, (68, 2)), np.array([0.0, 0, 8, 8]), "300w", {}, ""))
    return samples


def assert_same(a: datasets.Sample, b: datasets.Sample) -> None:
    assert a.image_path == b.image_path and a.scheme == b.scheme and a.subset == b.subset
    assert a.attributes == b.attributes
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.box, b.box)


def test_jsonl_round_trip(tmp_path):
    samples = make_samples(tmp_path)
    path = table.write_jsonl(samples, tmp_path / "faces.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["image"] == "images/0.png"  # relative to the file's folder
    assert Path(json.loads(path.read_text().splitlines()[-1])["image"]).is_absolute()
    # The last image lies outside the file's folder: refused, unless the spec names a root holding it.
    with pytest.raises(DataError, match="leads outside the dataset root.*root=DIR") as info:
        datasets.load(f"jsonl:{path}")
    assert str(info.value).startswith(f"{path}:5:")
    back = datasets.load(f"jsonl:{path}?root={tmp_path.parent}")
    assert len(back) == len(samples)
    for a, b in zip(samples, back):
        assert_same(a, b)
    assert [s.subset for s in datasets.load(f"jsonl:{path}?root={tmp_path.parent}", "train")] == ["part0", "part1"]
    assert datasets.splits(f"jsonl:{path}") == {"all": 5, "train": 2, "val": 1, "test": 1}


def test_csv_round_trip(tmp_path):
    samples = [s for s in make_samples(tmp_path) if s.scheme == "300w"]
    path = table.write_csv(samples, tmp_path / "faces.csv")
    back = datasets.load(f"csv:{path}?root={tmp_path.parent}")  # one image lies outside the file's folder
    assert len(back) == len(samples)
    for a, b in zip(samples, back):
        assert_same(a, b)


def test_jsonl_forms_and_bad_records(tmp_path):
    write_image(tmp_path / "a.png")
    path = tmp_path / "faces.jsonl"
    good = [
        {"image": "a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]},
        {"image": str(tmp_path / "a.png"), "landmarks": [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], "box": [0, 0, 9, 9]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in good) + "\n\n")
    flat, nested = datasets.load(f"jsonl:{path}")
    np.testing.assert_array_equal(flat.landmarks, nested.landmarks)
    assert flat.scheme == "5pt" and flat.image_path == nested.image_path
    np.testing.assert_array_equal(flat.box, [1, 2, 9, 10])  # landmark extent

    bad_lines = [
        '{"image": "a.png", "landmarks": [1, 2, NaN, 4, 5, 6, 7, 8, 9, 10]}',
        '{"image": "a.png", "landmarks": [1, 2, 3]}',
        '{"image": "../a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}',
        '{"landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}',
        '{"image": "a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "scheme": "300w"}',
        "[1, 2]",
        "{not json",
    ]
    path.write_text(json.dumps(good[0]) + "\n" + "\n".join(bad_lines) + "\n")
    faces = datasets.load(f"jsonl:{path}", on_error="skip")
    assert len(faces) == 1 and len(faces.skipped) == len(bad_lines)
    for line, message in enumerate(faces.skipped, start=2):
        assert message.startswith(f"{path}:{line}:")
    for expected, message in zip(["NaN", "even count", "outside", "missing field 'image'", "68 points", "JSON object", "not a valid JSON"], faces.skipped):
        assert expected in message
    with pytest.raises(DataError, match="NaN"):
        datasets.load(f"jsonl:{path}")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no faces") as info:
        datasets.load(f"jsonl:{tmp_path / 'empty.jsonl'}")
    assert str(info.value).startswith(str(tmp_path / "empty.jsonl"))
    with pytest.raises(DataError, match="no faces in split 'train'"):
        datasets.load(f"jsonl:{path}", "train", on_error="skip")


# ---------------------------------------------------------------------------------------
# COFW .mat files

PHIS_N = 3


def cofw_values():
    """Known annotations for 3 faces: x = 10 + i + k, y = 20 + 2i + k (1-based), flags."""
    images = [  # large enough to hold the points (x up to 40, y up to 78)
        RNG.integers(0, 256, (82, 45, 3), dtype=np.uint8),
        RNG.integers(0, 256, (80, 41), dtype=np.uint8),  # grayscale
        RNG.integers(0, 256, (84, 44, 3), dtype=np.uint8),
    ]
    phis = np.zeros((PHIS_N, 87))
    for k in range(PHIS_N):
        phis[k, :29] = 10 + np.arange(29) + k
        phis[k, 29:58] = 20 + 2 * np.arange(29) + k
        phis[k, 58:] = (np.arange(29) + k) % 3 == 0
    boxes = np.array([[5, 6, 30, 40], [1, 1, 10, 12], [2.5, 3.5, 7, 8]], dtype=np.float64)
    return images, phis, boxes


def write_mat_v5(path: Path, suffix: str, images, phis, boxes) -> None:
    import scipy.io

    cell = np.empty((len(images), 1), dtype=object)
    for i, image in enumerate(images):
        cell[i, 0] = image
    scipy.io.savemat(str(path), {f"Is{suffix}": cell, f"phis{suffix}": phis, f"bboxes{suffix}": boxes})


def write_mat_v73(path: Path, suffix: str, images, phis, boxes) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: a 512-byte header (HDF5 user block), arrays
    column-major (h5py sees every shape reversed), the cell array as object references."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = np.empty((1, len(images)), dtype=h5py.ref_dtype)  # MATLAB n x 1 cell -> 1 x n
        group = f.create_group("#refs#")
        for i, image in enumerate(images):
            data = np.transpose(image, (2, 1, 0)) if image.ndim == 3 else image.T  # H x W x 3 -> 3 x W x H
            dataset = group.create_dataset(f"image{i}", data=data)
            dataset.attrs["MATLAB_class"] = np.bytes_("uint8")
            refs[0, i] = dataset.ref
        f.create_dataset(f"Is{suffix}", data=refs).attrs["MATLAB_class"] = np.bytes_("cell")
        f.create_dataset(f"phis{suffix}", data=phis.T).attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset(f"bboxes{suffix}", data=boxes.T).attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".ljust(128))


@pytest.mark.parametrize("layout", ["v5", "v73"])
def test_cofw_mat_layouts(tmp_path, layout):
    images, phis, boxes = cofw_values()
    path = tmp_path / "COFW_test_color.mat"
    (write_mat_v5 if layout == "v5" else write_mat_v73)(path, "T", images, phis, boxes)
    assert cofw.is_hdf5(path) == (layout == "v73")
    faces = datasets.load(f"cofw:{path}")
    assert len(faces) == 3 and all(f.scheme == "cofw" and f.subset == "test" for f in faces)
    for k, face in enumerate(faces):
        expected = np.stack([9 + np.arange(29) + k, 19 + 2 * np.arange(29) + k], axis=1)  # 1-based -> 0-based
        np.testing.assert_array_equal(face.landmarks, expected)
        assert face.attributes["occluded"] == tuple(int((i + k) % 3 == 0) for i in range(29))
        x, y, w, h = boxes[k]
        np.testing.assert_array_equal(face.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
        rgb = datasets.read_image(face.image_path)
        want = images[k] if images[k].ndim == 3 else np.repeat(images[k][:, :, None], 3, axis=2)
        np.testing.assert_array_equal(rgb, want)
        assert Path(face.image_path).parent == tmp_path / "COFW_test_color_images" / "test"
    assert datasets.splits(f"cofw:{path}") == {"test": 3}
    with pytest.raises(DataError, match="split 'train' not found"):
        datasets.load(f"cofw:{path}", "train")


def test_cofw_cache_written_once_and_directory_spec(tmp_path):
    images, phis, boxes = cofw_values()
    write_mat_v5(tmp_path / "COFW_train_color.mat", "Tr", images[:2], phis[:2], boxes[:2])
    write_mat_v5(tmp_path / "COFW_test_color.mat", "T", images, phis, boxes)
    cache = tmp_path / "cache"
    faces = datasets.load(f"cofw:{tmp_path}?cache={cache}")
    assert [f.subset for f in faces] == ["train", "train", "test", "test", "test"]
    first = Path(faces[0].image_path)
    assert first == cache / "train" / "000001.png"
    stamp = first.stat().st_mtime_ns
    again = datasets.load(f"cofw:{tmp_path}?cache={cache}", "train")
    assert [f.image_path for f in again] == [f.image_path for f in faces[:2]]
    assert first.stat().st_mtime_ns == stamp  # not rewritten
    assert datasets.splits(f"cofw:{tmp_path}") == {"train": 2, "test": 3}


def test_cofw_cache_falls_back_to_user_cache(tmp_path, monkeypatch):
    images, phis, boxes = cofw_values()
    path = tmp_path / "data" / "COFW_test_color.mat"
    path.parent.mkdir()
    write_mat_v5(path, "T", images, phis, boxes)
    # The folder beside the .mat cannot be made: a plain file has its name (works as root too).
    (path.parent / "COFW_test_color_images").write_text("in the way")
    monkeypatch.setenv("FACEMARKS_CACHE", str(tmp_path / "user-cache"))
    face = datasets.load(f"cofw:{path}")[0]
    assert (tmp_path / "user-cache" / "cofw") in Path(face.image_path).parents
    np.testing.assert_array_equal(datasets.read_image(face.image_path), images[0])
    left = [p.name for p in Path(face.image_path).parent.iterdir()]
    assert sorted(left) == ["000001.png", "000002.png", "000003.png", "source.json"]  # no probes, no temporaries
    # An explicit cache folder that cannot be written is an error naming it; no fallback.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    with pytest.raises(DataError, match="cannot write the COFW image cache here") as info:
        datasets.load(f"cofw:{path}?cache={blocked}")
    assert str(info.value).startswith(str(blocked / "test"))


def test_cofw_bad_files(tmp_path):
    images, phis, boxes = cofw_values()
    path = tmp_path / "COFW_test_color.mat"
    bad = phis.copy()
    bad[1, 3] = np.nan
    write_mat_v5(path, "T", images, bad, boxes)
    with pytest.raises(DataError, match="NaN"):
        datasets.load(f"cofw:{path}")
    assert len(datasets.load(f"cofw:{path}", on_error="skip")) == 2
    write_mat_v5(path, "T", images, phis[:, :50], boxes)
    with pytest.raises(DataError, match="n x 87") as info:
        datasets.load(f"cofw:{path}")
    assert str(info.value).startswith(str(path))
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError) as info:
        datasets.load(f"cofw:{junk}")
    assert str(info.value).startswith(str(junk))


# ---------------------------------------------------------------------------------------
# The format registry: names, unknown names, standard splits, guessing, writers


def test_registry_lists_exactly_the_formats():
    assert FORMATS.names() == ["300w", "cofw", "csv", "jsonl", "synthetic", "synthetic77", "wflw"]
    for name in FORMATS.names():
        reader = datasets.reader(name)
        assert isinstance(reader, datasets.DatasetFormat) and reader.name == name
        assert len(reader.default_splits) == 3 and isinstance(reader.options, frozenset)


def test_unknown_format_name_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(UnknownNameError) as info:
        datasets.load("nosuch:x")
    assert isinstance(info.value, FacemarksError)
    assert str(info.value) == "unknown dataset format 'nosuch'; valid: 300w, cofw, csv, jsonl, synthetic, synthetic77, wflw"
    assert main(["data", "info", "nosuch:x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid: 300w, cofw, csv, jsonl, synthetic, synthetic77, wflw" in err


def test_default_splits_per_format(tmp_path):
    assert datasets.default_splits("300w:/nowhere") == ("train", None, "common")
    assert datasets.default_splits("wflw:/nowhere") == ("train", None, "test")
    assert datasets.default_splits("cofw:/nowhere/COFW_test_color.mat") == ("train", None, "test")
    assert datasets.default_splits("csv:/nowhere/faces.csv") == ("train", "val", "test")
    assert datasets.default_splits(str(tmp_path / "faces.jsonl")) == ("train", "val", "test")  # guessed format
    assert not (tmp_path / "faces.jsonl").exists()  # nothing is read or written


def test_guess_format_of_small_folders(tmp_path):
    make_300w_face(tmp_path / "w300" / "afw", "face")
    make_wflw(tmp_path / "wflw", [wflw_line(RNG.uniform(0, 8, (98, 2)))])
    assert datasets.guess_format(tmp_path / "w300") == "300w"
    assert datasets.guess_format(tmp_path / "wflw") == "wflw"
    assert datasets.guess_format(tmp_path / "faces.csv") == "csv" and datasets.guess_format(tmp_path / "x.mat") == "cofw"
    assert datasets.guess_format(tmp_path / "w300" / "afw" / "face.jpg") is None
    assert len(datasets.load(str(tmp_path / "w300"))) == 1 and len(datasets.load(str(tmp_path / "wflw"))) == 1
    make_300w_face(tmp_path / "wflw" / "extra", "face")  # now both readers claim the folder
    with pytest.raises(DataError, match="ambiguous dataset: looks like 300w and wflw"):
        datasets.parse_spec(str(tmp_path / "wflw"))


def test_guess_format_of_real_folders(data_300w, data_wflw):
    assert datasets.guess_format(data_300w) == "300w" and datasets.guess_format(data_wflw) == "wflw"
    assert not datasets.reader("wflw").guess(data_300w) and not datasets.reader("300w").guess(data_wflw)
    assert len(datasets.load(str(data_300w), "common")) == 554
    assert len(datasets.load(str(data_wflw), "test")) == 577


def test_writers_are_atomic(tmp_path):
    samples = [s for s in make_samples(tmp_path) if s.scheme == "300w"]
    path = table.write_csv(samples, tmp_path / "out" / "faces.csv")
    before = path.read_bytes()
    bad = samples[:1] + [datasets.Sample(samples[0].image_path, np.zeros((5, 2)), np.zeros(4), "5pt")]
    with pytest.raises(ValueError, match="same number of points"):
        table.write_csv(bad, path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["faces.csv"]
    pts = tmp_path / "face.pts"
    w300.write_pts(pts, samples[0].landmarks)
    np.testing.assert_allclose(w300.read_pts(pts) - 1.0, samples[0].landmarks, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("face.pts")) == ["face.pts"]


def test_inspect_dataset_counts_without_printing(tmp_path, capsys):
    write_image(tmp_path / "a.png", height=10, width=10)
    lines = [json.dumps({"image": "a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 12, 9], "split": "train"}), "{broken"]
    (tmp_path / "faces.jsonl").write_text("\n".join(lines) + "\n")
    info = inspect_dataset(f"jsonl:{tmp_path / 'faces.jsonl'}")
    assert capsys.readouterr().out == ""
    assert (info.faces, len(info.skipped), info.splits) == (1, 1, {"all": 2, "train": 1})
    assert dict(info.problem_counts) == {"faces with points outside the image": 1, "points outside the image": 1, "bad annotations": 1}
    assert info.problems[0].startswith(f"{tmp_path / 'faces.jsonl'}:2:")


# ---------------------------------------------------------------------------------------
# Specs, synthetic data, and the `facemarks data` command


def test_parse_spec():
    spec = datasets.parse_spec("cofw:/data/COFW_test_color.mat?cache=/tmp/c")
    assert (spec.format, spec.path, spec.options) == ("cofw", Path("/data/COFW_test_color.mat"), {"cache": "/tmp/c"})
    assert datasets.parse_spec("jsonl:a/b.jsonl?scheme=wflw").options == {"scheme": "wflw"}
    with pytest.raises(DataError, match="unknown option"):
        datasets.parse_spec("300w:/x?scheme=wflw")
    with pytest.raises(DataError, match="unknown dataset format; expected FORMAT:PATH"):
        datasets.parse_spec("/nowhere")  # no format given and none recognises the path
    with pytest.raises(DataError, match="missing path"):
        datasets.parse_spec("wflw:")
    with pytest.raises(ValueError):
        datasets.load("300w:/x", on_error="ignore")


@pytest.fixture
def fake_synthetic(monkeypatch):
    """Stand-in for facemarks.data.synthetic (owned elsewhere): renders 3 faces."""
    calls = []

    def ensure_rendered(directory, scheme="300w"):
        directory = Path(directory)
        calls.append(directory)
        samples = []
        for i, split in enumerate(["train", "val", "test"]):
            write_image(directory / f"{i}.png", seed=i)
            samples.append(datasets.Sample(str((directory / f"{i}.png").resolve()), RNG.uniform(0, 8, (68, 2)), np.array([0.0, 0, 8, 8]), "300w", {"split": split}, split))
        return table.write_jsonl(samples, directory / "faces.jsonl")

    def render(directory, num_faces=3000, seed=0, image_size=256):
        calls.append((Path(directory), num_faces, seed, image_size))
        return ensure_rendered(directory)

    def default_directory(num_faces=3000, seed=0, scheme="300w"):
        return Path(os.environ["FACEMARKS_CACHE"]) / f"synthetic-test-s{seed}-n{num_faces}"

    module = types.ModuleType("facemarks.data.synthetic")
    module.ensure_rendered, module.render, module.default_directory = ensure_rendered, render, default_directory
    monkeypatch.setitem(sys.modules, "facemarks.data.synthetic", module)
    return calls


def test_synthetic_spec(tmp_path, monkeypatch, fake_synthetic):
    faces = datasets.load(f"synthetic:{tmp_path / 'syn'}", "train")
    assert len(faces) == 1 and fake_synthetic == [tmp_path / "syn"]
    monkeypatch.setenv("FACEMARKS_CACHE", str(tmp_path / "cache"))
    assert datasets.splits("synthetic") == {"all": 3, "train": 1, "val": 1, "test": 1}
    assert fake_synthetic[-1] == tmp_path / "cache" / "synthetic-test-s0-n3000"
    # a finished render in a given folder is read as it is, whatever its parameters
    (tmp_path / "syn" / "render.json").write_text("{}")
    calls = len(fake_synthetic)
    assert len(datasets.load(f"synthetic:{tmp_path / 'syn'}", "test")) == 1 and len(fake_synthetic) == calls


def test_data_synth_command(tmp_path, fake_synthetic, capsys):
    assert main(["data", "synth", str(tmp_path / "s"), "--num", "5", "--seed", "3"]) == 0
    assert fake_synthetic[0] == (tmp_path / "s", 5, 3, 256)
    assert "faces.jsonl" in capsys.readouterr().out


def test_data_info_real(data_300w, data_wflw, capsys):
    assert main(["data", "info", f"300w:{data_300w}"]) == 0
    out = capsys.readouterr().out
    assert "faces:   2566" in out and "problems: none" in out
    assert any(line.split() == ["train", "2,012"] for line in out.splitlines())
    assert any(line.split() == ["common", "554"] for line in out.splitlines())
    assert "challenge" in out and "not available (missing ibug)" in out
    assert main(["data", "info", f"300w:{data_300w}", "--split", "full"]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert main(["data", "info", f"300w:{data_300w}", "--split", "full", "--allow-partial"]) == 0
    assert "faces:   554 (split full)" in capsys.readouterr().out
    assert main(["data", "info", f"wflw:{data_wflw}"]) == 1  # problems listed: exit status 1
    out = capsys.readouterr().out
    # The README: 71 points of 10 faces lie outside their images.
    assert "faces:   577" in out and "10 faces with points outside the image" in out and "71 points outside" in out


def test_data_info_lists_problems(tmp_path, capsys):
    write_image(tmp_path / "a.png", height=10, width=10)
    records = [
        {"image": "a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 9]},
        {"image": "a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 12, 9]},  # x = 12 > 9.5: outside
        {"image": "gone.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 9]},
    ]
    path = tmp_path / "faces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + '\n{"image": "a.png", "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, NaN]}\n{broken\n')
    assert main(["data", "info", f"jsonl:{path}"]) == 1
    out = capsys.readouterr().out
    assert "faces:   2, 3 skipped" in out and "1 bad annotations" in out and "scheme:  5pt" in out and "5 per face" in out
    assert "1 missing images" in out and "1 NaN/infinite coordinates" in out and "1 faces with points outside the image" in out
    assert "1 point(s) outside the 10x10 image: [4]" in out
    assert main(["data", "info", f"300w:{tmp_path / 'nowhere'}"]) == 2
    assert "300W folder not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Nothing lost, nothing silent (issue 9): points far outside, containment, duplicates and
# split overlap, missing folders, non-UTF-8 tables, crop cache folders


def csv_file(folder: Path, rows: list[str], n: int = 5, name: str = "faces.csv", split: bool = False) -> Path:
    header = "image," + ",".join(f"x{i},y{i}" for i in range(n)) + (",split" if split else "")
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def csv_row(image: str, points, split: str | None = None) -> str:
    return ",".join([image, *(repr(float(v)) for v in np.ravel(points))] + ([split] if split else []))


FIVE = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [8.0, 9.0]])


def far_outside_dataset(root: Path, fmt: str) -> tuple[str, str]:
    """A dataset of two faces whose second has one point at (50000, -40000); returns
    (spec, the start of the error: annotation file and line, or the face for COFW)."""
    if fmt == "300w":
        make_300w_face(root / "afw", "a", seed=1)
        make_300w_face(root / "afw", "b", seed=2)
        pts = w300.read_pts(root / "afw" / "b.pts")
        pts[30] = 50001, -39999  # 1-based in the file
        (root / "afw" / "b.pts").write_text(pts_text(pts))
        return f"300w:{root}", f"{root / 'afw' / 'b.pts'}:"
    if fmt == "wflw":
        pts = RNG.uniform(0, 8, (98, 2))
        far = pts.copy()
        far[30] = 50000, -40000
        path = make_wflw(root, [wflw_line(pts), wflw_line(far)])
        return f"wflw:{root}", f"{path}:2:"
    if fmt in ("csv", "jsonl"):
        write_image(root / "a.png")
        far = FIVE.copy()
        far[3] = 50000, -40000
        if fmt == "csv":
            return f"csv:{csv_file(root, [csv_row('a.png', FIVE), csv_row('a.png', far)])}", f"{root / 'faces.csv'}:3:"
        path = root / "faces.jsonl"
        path.write_text("\n".join(json.dumps({"image": "a.png", "landmarks": p.ravel().tolist()}) for p in (FIVE, far)) + "\n")
        return f"jsonl:{path}", f"{path}:2:"
    images, phis, boxes = cofw_values()
    phis[1, 3], phis[1, 29 + 3] = 50001, -39999  # 1-based
    path = root / "COFW_test_color.mat"
    write_mat_v5(path, "T", images, phis, boxes)
    return f"cofw:{path}", f"{path} (face 2 of test):"


@pytest.mark.parametrize("fmt", ["300w", "wflw", "csv", "jsonl", "cofw"])
def test_points_far_outside_the_image_stop_every_reader(tmp_path, fmt):
    spec, where = far_outside_dataset(tmp_path, fmt)
    with pytest.raises(DataError, match="far outside the") as info:
        datasets.load(spec)
    assert str(info.value).startswith(where)
    faces = datasets.load(spec, on_error="skip")
    assert len(faces) == (2 if fmt == "cofw" else 1) and len(faces.skipped) == 1
    assert faces.skipped[0].startswith(where) and "far outside" in faces.skipped[0]


def test_points_outside_tolerance_is_half_the_image_side(tmp_path):
    # A 10 x 20 image spans x in [-0.5, 9.5], y in [-0.5, 19.5]; half its sides: 5 and 10.
    write_image(tmp_path / "a.png", height=20, width=10)
    cases = [((14.499, 5.0), True), ((14.501, 5.0), False), ((5.0, -10.499), True), ((5.0, -10.501), False),
             ((-5.499, 29.499), True), ((5.0, 29.501), False)]
    rows = []
    for (x, y), _ in cases:
        pts = FIVE.copy()
        pts[2] = x, y
        rows.append(csv_row("a.png", pts))
    path = csv_file(tmp_path, rows)
    faces = datasets.load(f"csv:{path}", on_error="skip")
    assert [f.landmarks[2].tolist() for f in faces] == [list(xy) for xy, ok in cases if ok]
    assert [m.split(":")[1] for m in faces.skipped] == [str(k + 2) for k, (_, ok) in enumerate(cases) if not ok]


def test_far_outside_faces_are_reported_by_data_info(tmp_path, capsys):
    spec, where = far_outside_dataset(tmp_path, "csv")
    info = inspect_dataset(spec)
    assert info.faces == 1 and info.problem_counts["faces with points far outside the image"] == 1
    assert info.problems[0].startswith(where)


def test_containment_rule_csv_and_jsonl(tmp_path):
    data = tmp_path / "data"
    write_image(data / "in.png")
    write_image(tmp_path / "elsewhere" / "out.png")
    outside = str(tmp_path / "elsewhere" / "out.png")
    path = csv_file(data, [csv_row(str(data / "in.png"), FIVE), csv_row(outside, FIVE)])
    with pytest.raises(DataError, match="leads outside the dataset root") as info:
        datasets.load(f"csv:{path}")
    assert str(info.value).startswith(f"{path}:3:") and "?root=DIR" in str(info.value)
    assert len(datasets.load(f"csv:{path}?root={tmp_path}")) == 2
    with pytest.raises(DataError, match="leads outside the dataset root"):  # the root is a root for absolute paths too
        datasets.load(f"csv:{path}?root={data}")
    # a symlink inside the folder that leads out of it
    (data / "link.png").symlink_to(tmp_path / "elsewhere" / "out.png")
    jsonl = data / "faces.jsonl"
    jsonl.write_text(json.dumps({"image": "link.png", "landmarks": FIVE.ravel().tolist()}) + "\n")
    with pytest.raises(DataError, match="symlink to") as info:
        datasets.load(f"jsonl:{jsonl}")
    assert str(info.value).startswith(f"{jsonl}:1:")


def test_containment_rule_300w_and_wflw_follow_symlinks(tmp_path):
    root = tmp_path / "300w"
    make_300w_face(root / "afw", "a", seed=1)
    make_300w_face(root / "afw", "b", seed=2, image=False)
    write_image(tmp_path / "outside.jpg")
    (root / "afw" / "b.jpg").symlink_to(tmp_path / "outside.jpg")
    with pytest.raises(DataError, match="leads outside the dataset root.*symlink") as info:
        datasets.load(f"300w:{root}")
    assert str(info.value).startswith(f"{root / 'afw' / 'b.pts'}:")
    # a symlink to an image inside the root is fine; the sample names the real file
    (root / "afw" / "b.jpg").unlink()
    (root / "afw" / "b.jpg").symlink_to(root / "afw" / "a.jpg")
    assert [Path(s.image_path).name for s in datasets.load(f"300w:{root}")] == ["a.jpg", "a.jpg"]

    path = make_wflw(tmp_path / "wflw", [wflw_line(RNG.uniform(0, 8, (98, 2)), image="e/b.jpg")])
    (tmp_path / "wflw" / "WFLW_images" / "e" / "b.jpg").symlink_to(tmp_path / "outside.jpg")
    with pytest.raises(DataError, match="leads outside the dataset root.*symlink") as info:
        datasets.load(f"wflw:{tmp_path / 'wflw'}")
    assert str(info.value).startswith(f"{path}:1:")


def overlap_csv(folder: Path) -> Path:
    """Rows 2-8: a duplicate (3 repeats 2), a train/test overlap within 1e-6 (4, 5), a
    val/test overlap through a byte-identical copy of the image (6, 7), and a face 2e-6
    away from row 4 (8: a different face)."""
    write_image(folder / "a.png", seed=1)
    write_image(folder / "b.png", seed=2)
    write_image(folder / "c.png", seed=3)
    (folder / "c_copy.png").write_bytes((folder / "c.png").read_bytes())
    rows = [csv_row("a.png", FIVE, "train"), csv_row("a.png", FIVE, "train"), csv_row("b.png", FIVE + 1, "train"),
            csv_row("b.png", FIVE + 1 + 5e-7, "test"), csv_row("c.png", FIVE + 2, "val"),
            csv_row("c_copy.png", FIVE + 2, "test"), csv_row("b.png", FIVE + 1 + 2e-6, "val")]
    return csv_file(folder, rows, split=True)


def test_data_info_reports_duplicates_and_split_overlap(tmp_path, capsys):
    path = overlap_csv(tmp_path)
    info = inspect_dataset(f"csv:{path}")
    assert info.faces == 7
    # rows 3, 5 and 7 repeat an earlier row of the file
    assert info.problem_counts["duplicate faces"] == 3
    assert info.problem_counts["faces in both train and test"] == 1 and info.problem_counts["faces in both val and test"] == 1
    assert "faces in both train and val" not in info.problem_counts
    assert f"duplicate face: {path}:3 repeats {path}:2" in "\n".join(info.problems)
    assert f"face in both splits train and test: {path}:4 and {path}:5" in "\n".join(info.problems)
    assert main(["data", "info", f"csv:{path}"]) == 1
    out = capsys.readouterr().out
    assert "3 duplicate faces" in out and "1 faces in both train and test" in out


def test_load_splits_refuses_a_face_in_two_splits(tmp_path):
    from facemarks.data.splits import load_splits

    path = overlap_csv(tmp_path)
    config = types.SimpleNamespace(spec=f"csv:{path}", train_split="train", val_split="val", test_split="test", val_fraction=0.2,
                                   points=None)
    with pytest.raises(DataError) as info:
        load_splits(config)
    message = str(info.value)
    assert message.startswith(f"csv:{path}:") and "'train'" in message and "'test'" in message
    assert f"{path}:4 and {path}:5" in message
    # train / val (val a split of its own): row 8 moved 1e-7 from row 4 is the same face
    rows = path.read_text().splitlines()
    rows[7] = csv_row("b.png", FIVE + 1 + 1e-7, "val")
    del rows[4]  # no train/test overlap left
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"also in split 'val', e\.g\. .*faces\.csv:4 and .*faces\.csv:7"):
        load_splits(config)
    # val / test (val a split of its own): the byte-identical copy of c.png (rows 6 and 7)
    del rows[-1]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"split 'val' are also in split 'test', e\.g\. .*faces\.csv:5 and .*faces\.csv:6"):
        load_splits(config)
    # held-out validation, no overlap: accepted
    config.val_split = None
    path.write_text("\n".join(rows) + "\n")
    splits = load_splits(config)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [2, 1, 1]


def test_data_info_exit_status_and_help(tmp_path, capsys):
    write_image(tmp_path / "a.png")
    clean = csv_file(tmp_path, [csv_row("a.png", FIVE)], name="clean.csv")
    assert main(["data", "info", f"csv:{clean}"]) == 0
    captured = capsys.readouterr()
    assert "problems: none" in captured.out and captured.err == ""
    twice = csv_file(tmp_path, [csv_row("a.png", FIVE)] * 2, name="twice.csv")
    assert main(["data", "info", f"csv:{twice}"]) == 1
    captured = capsys.readouterr()
    assert "1 duplicate faces" in captured.out and captured.err.count("\n") == 1 and str(twice) in captured.err
    with pytest.raises(SystemExit):
        main(["data", "info", "--help"])
    assert "exit status: 0 when no problems are found, 1 when problems are listed" in " ".join(capsys.readouterr().out.split())


def test_missing_folders_are_named(tmp_path):
    write_image(tmp_path / "a.png")
    path = csv_file(tmp_path, [csv_row("a.png", FIVE), csv_row("nodir/sub/b.png", FIVE), csv_row("b.png", FIVE)])
    faces = datasets.load(f"csv:{path}", on_error="skip")
    assert faces.skipped[0] == f"{path}:3: image folder not found: {tmp_path / 'nodir'}"
    assert faces.skipped[1] == f"{path}:4: image not found: {tmp_path / 'b.png'}"
    for read in (datasets.read_image, image_size):
        with pytest.raises(DataError) as info:
            read(tmp_path / "nodir" / "a.png")
        assert str(info.value) == f"{tmp_path / 'nodir' / 'a.png'}: folder not found: {tmp_path / 'nodir'}"
    with pytest.raises(DataError) as info:
        datasets.load(f"csv:{tmp_path / 'nowhere' / 'deeper' / 'faces.csv'}")
    assert str(info.value).endswith(f": folder not found: {tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="annotation file not found"):
        datasets.load(f"csv:{tmp_path / 'faces2.csv'}")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_non_utf8_tables_name_file_and_line(tmp_path, fmt):
    write_image(tmp_path / "a.png")
    if fmt == "csv":
        path = csv_file(tmp_path, [csv_row("a.png", FIVE), csv_row("a.png", FIVE)])
    else:
        path = tmp_path / "faces.jsonl"
        path.write_text("\n".join(json.dumps({"image": "a.png", "landmarks": FIVE.ravel().tolist()}) for _ in range(2)) + "\n")
    lines = path.read_bytes().split(b"\n")
    lines[2 if fmt == "csv" else 1] = lines[2 if fmt == "csv" else 1].replace(b"a.png", b"\xe9t\xe9.png")  # Latin-1
    path.write_bytes(b"\n".join(lines))
    for call in (lambda: datasets.load(f"{fmt}:{path}"), lambda: datasets.splits(f"{fmt}:{path}")):
        with pytest.raises(DataError, match="not a UTF-8 text file") as info:
            call()
        assert str(info.value).startswith(f"{path}:{3 if fmt == 'csv' else 2}:")


def test_malformed_csv_is_a_data_error_with_its_line(tmp_path):
    write_image(tmp_path / "a.png")
    path = csv_file(tmp_path, [csv_row("a.png", FIVE), '"' + "x" * 200_000 + '",' + ",".join(["1"] * 10)])
    for call in (lambda: datasets.load(f"csv:{path}"), lambda: datasets.splits(f"csv:{path}")):
        with pytest.raises(DataError, match="malformed CSV: field larger than field limit") as info:
            call()
        assert str(info.value).startswith(f"{path}:3:")


def cache_samples(tmp_path: Path) -> list:
    write_image(tmp_path / "faces" / "a.png", height=20, width=20)
    return list(datasets.load(f"csv:{csv_file(tmp_path / 'faces', [csv_row('a.png', FIVE)])}"))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_crop_cache_folders_get_the_usual_permissions(tmp_path, umask):
    from facemarks.data import cache
    from facemarks.geometry.crop import BoxCrop

    samples = cache_samples(tmp_path)
    old = os.umask(umask)
    try:
        built = cache.build(samples, 16, BoxCrop(0.25), root=tmp_path / "cache")
    finally:
        os.umask(old)
    assert built.directory.parent == tmp_path / "cache"
    assert built.directory.stat().st_mode & 0o777 == 0o777 & ~umask  # mkdtemp alone gives 0o700


def test_crop_cache_unwritable_or_foreign_folder_is_one_clear_error(tmp_path, monkeypatch):
    from facemarks.data import cache
    from facemarks.geometry.crop import BoxCrop

    samples = cache_samples(tmp_path)
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("FACEMARKS_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(FacemarksError) as info:
        cache.build(samples, 16, BoxCrop(0.25))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'file' / 'cache'}: cannot write the crop cache here")
    assert "--cache-dir DIR or FACEMARKS_CACHE=DIR" in message and "\n" not in message
    # A cache folder another user made with mkdtemp's 0700 (simulated: the tests may run as root).
    built = cache.build(samples, 16, BoxCrop(0.25), root=tmp_path / "shared")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == built.directory else real_access(p, mode, **kw))
    with pytest.raises(FacemarksError, match="crop cache folder not readable .*--cache-dir DIR or FACEMARKS_CACHE=DIR") as info:
        cache.build(samples, 16, BoxCrop(0.25), root=tmp_path / "shared")
    assert str(info.value).startswith(f"{built.directory}:")
