"""The command line on bad input: exit status 2 (1 for `data info` listing problems),
exactly one line on stderr naming the file or key, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemarks.cli import main


# --- data
# Bad data inputs of issue 9, through `facemarks data info` and `facemarks train`.


def _data_image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8))


def _data_points(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(8, 40, (68, 2)).round(3)


def _data_csv(folder: Path, edit=None) -> Path:
    """A clean 68-point CSV (3 faces per split train/val/test, one image each);
    edit(rows) may change the rows (rows[0] is the header, rows[k] the face on line k + 1)."""
    rows = ["image," + ",".join(f"x{i},y{i}" for i in range(68)) + ",split"]
    for k in range(9):
        _data_image(folder / f"{k}.png", seed=k)
        rows.append(_data_row(f"{k}.png", _data_points(k), ("train", "val", "test")[k % 3]))
    if edit:
        edit(rows)
    path = folder / "faces.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _data_row(image: str, points: np.ndarray, split: str) -> str:
    return ",".join([image, *(f"{v:.3f}" for v in points.ravel()), split])


def _data_far_outside(tmp_path):
    def edit(rows):
        points = _data_points(4)
        points[10] = 50000, -40000
        rows[5] = _data_row("4.png", points, "val")
    path = _data_csv(tmp_path / "d", edit)
    return f"csv:{path}", f"{path}:6:"


def _data_outside_root(tmp_path):
    _data_image(tmp_path / "elsewhere.png")
    path = _data_csv(tmp_path / "d", lambda rows: rows.__setitem__(2, _data_row(str(tmp_path / "elsewhere.png"), _data_points(1), "val")))
    return f"csv:{path}", f"{path}:3:"


def _data_300w_symlink(tmp_path):
    root = tmp_path / "300w"
    for k, folder in enumerate(("afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset")):
        for j in range(2):
            stem = root / folder / f"face{j}"
            _data_image(stem.with_suffix(".jpg"), seed=10 * k + j)
            rows = "\n".join(f"{x + 1:.6f} {y + 1:.6f}" for x, y in _data_points(10 * k + j))
            stem.with_suffix(".pts").write_text(f"version: 1\nn_points:  68\n{{\n{rows}\n}}\n")
    _data_image(tmp_path / "outside.jpg")
    (root / "afw" / "face1.jpg").unlink()
    (root / "afw" / "face1.jpg").symlink_to(tmp_path / "outside.jpg")
    return f"300w:{root}", f"{root / 'afw' / 'face1.pts'}:"


def _data_duplicate(tmp_path):
    path = _data_csv(tmp_path / "d", lambda rows: rows.append(rows[1]))
    return f"csv:{path}", str(path)


def _data_overlap(tmp_path):
    path = _data_csv(tmp_path / "d", lambda rows: rows.append(rows[1].replace(",train", ",test")))
    return f"csv:{path}", f"csv:{path}:"


def _data_missing_folder(tmp_path):
    path = _data_csv(tmp_path / "d", lambda rows: rows.__setitem__(3, rows[3].replace("2.png", "gone/2.png")))
    return f"csv:{path}", f"{path}:4: image folder not found: {tmp_path / 'd' / 'gone'}"


def _data_missing_dataset_folder(tmp_path):
    return f"csv:{tmp_path / 'nowhere' / 'faces.csv'}", f"folder not found: {tmp_path / 'nowhere'}"


def _data_not_utf8(tmp_path):
    path = _data_csv(tmp_path / "d")
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"2.png", b"\xe9.png")
    path.write_bytes(b"\n".join(lines))
    return f"csv:{path}", f"{path}:4: not a UTF-8 text file"


def _data_jsonl_not_utf8(tmp_path):
    _data_image(tmp_path / "d" / "a.png")
    path = tmp_path / "d" / "faces.jsonl"
    path.write_bytes(json.dumps({"image": "a.png", "landmarks": _data_points(0).tolist()}).encode() + b"\n{\"image\": \"\xff\"}\n")
    return f"jsonl:{path}", f"{path}:2: not a UTF-8 text file"


_DATA_INFO, _TRAIN = "info", "train"
_DATA_CASES = [  # (id, dataset builder, command, exit status)
    ("far-outside", _data_far_outside, _DATA_INFO, 1),
    ("far-outside", _data_far_outside, _TRAIN, 2),
    ("outside-root", _data_outside_root, _DATA_INFO, 1),
    ("outside-root", _data_outside_root, _TRAIN, 2),
    ("300w-symlink", _data_300w_symlink, _DATA_INFO, 1),
    ("300w-symlink", _data_300w_symlink, _TRAIN, 2),
    ("duplicate", _data_duplicate, _DATA_INFO, 1),
    ("train-test-overlap", _data_overlap, _TRAIN, 2),
    ("missing-image-folder", _data_missing_folder, _DATA_INFO, 1),
    ("missing-image-folder", _data_missing_folder, _TRAIN, 2),
    ("missing-dataset-folder", _data_missing_dataset_folder, _DATA_INFO, 2),
    ("missing-dataset-folder", _data_missing_dataset_folder, _TRAIN, 2),
    ("csv-not-utf8", _data_not_utf8, _DATA_INFO, 2),
    ("csv-not-utf8", _data_not_utf8, _TRAIN, 2),
    ("jsonl-not-utf8", _data_jsonl_not_utf8, _DATA_INFO, 2),
]


def _data_argv(command: str, spec: str, tmp_path: Path, cache_dir: str | None = None) -> list[str]:
    if command == _DATA_INFO:
        return ["data", "info", spec]
    argv = ["train", "--data", spec, "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "out"), "--no-progress"]
    return argv + ["--cache-dir", cache_dir or str(tmp_path / "cache")]


def _data_expect_one_line(capsys, code: int, status: int, *named: str) -> None:
    captured = capsys.readouterr()
    assert code == status, captured.err
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    for text in named:
        assert text in captured.err, (text, captured.err)


@pytest.mark.parametrize("name, build, command, status", _DATA_CASES, ids=[f"{c[0]}-{c[2]}" for c in _DATA_CASES])
def test_bad_data_is_one_line_and_an_exit_status(tmp_path, capsys, name, build, command, status):
    spec, where = build(tmp_path)
    code = main(_data_argv(command, spec, tmp_path))
    # `data info` lists the problems on stdout; its one stderr line names the dataset.
    _data_expect_one_line(capsys, code, status, *((spec,) if status == 1 else (where,)))


@pytest.mark.parametrize("how", ["FACEMARKS_CACHE", "--cache-dir"])
def test_unwritable_crop_cache_is_one_line_naming_the_folder_and_the_way_out(tmp_path, capsys, monkeypatch, how):
    spec = f"csv:{_data_csv(tmp_path / 'd')}"
    (tmp_path / "file").write_text("a file where the cache folder should be")
    blocked = tmp_path / "file" / "cache"
    if how == "FACEMARKS_CACHE":
        monkeypatch.setenv("FACEMARKS_CACHE", str(blocked))
        argv = [a for a in _data_argv(_TRAIN, spec, tmp_path)][:-2]  # no --cache-dir: the default, $FACEMARKS_CACHE
    else:
        argv = _data_argv(_TRAIN, spec, tmp_path, cache_dir=str(blocked))
    _data_expect_one_line(capsys, main(argv), 2, f"{blocked}: cannot write the crop cache here", "--cache-dir DIR or FACEMARKS_CACHE=DIR")


# --- inference
# Bad inputs of issue 9 to `facemarks predict`, `export` and `bench`: boxes files, crafted ONNX
# files, output folders that cannot be written. Each stops before any prediction, export or timing.


def _inf_onnx(path: Path, metadata: dict | None = None, out_shape=(68, 2)) -> Path:
    """A hand-built ONNX landmark model (mean colour @ W, reshaped to (B, *out_shape)) for
    64 px inputs, with valid facemarks metadata for the 300w scheme updated by `metadata`
    (a None value removes the key)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from facemarks import schemes

    size = int(np.prod(out_shape))
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["mixed"]), helper.make_node("Reshape", ["mixed", "shape"], ["points"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", *out_shape])],
        [numpy_helper.from_array(np.full((3, size), 0.5, np.float32), "w"),
         numpy_helper.from_array(np.array([-1, *out_shape], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    values = {"format": "facemarks-onnx-v2", "scheme": json.dumps(schemes.to_dict(schemes.get("300w"))),
              "crop": json.dumps({"policy": "box", "margin": 0.25}), "input_size": "64", "num_points": "68"}
    for key, value in {**values, **(metadata or {})}.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _inf_checkpoint(path: Path) -> Path:
    import torch

    from facemarks import models, schemes
    from facemarks.engine.checkpoint import Checkpoint, ModelSpec
    from facemarks.geometry.crop import BoxCrop

    torch.manual_seed(0)
    model = models.create("cnn6", 68, input_size=64)
    Checkpoint(ModelSpec("cnn6"), schemes.get("300w"), BoxCrop(0.25), 64, model.state_dict()).save(path)
    return path


def _inf_predict_boxes(content, no_overlay=False):
    """predict on a 320 x 240 image with a boxes file holding `content` (JSON)."""
    def build(tmp_path):
        image = tmp_path / "img.png"
        cv2.imwrite(str(image), np.zeros((240, 320, 3), np.uint8))
        boxes = tmp_path / "boxes.json"
        boxes.write_text(json.dumps(content))
        argv = ["predict", str(image), "--checkpoint", str(_inf_onnx(tmp_path / "tiny.onnx")), "--boxes", str(boxes),
                "--out", str(tmp_path / "out")]
        return argv + ["--no-overlay"] * no_overlay, str(boxes)
    return build


def _inf_predict_onnx(metadata=None, out_shape=(68, 2)):
    def build(tmp_path):
        image = tmp_path / "img.png"
        cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
        model = _inf_onnx(tmp_path / "crafted.onnx", metadata, out_shape)
        return ["predict", str(image), "--checkpoint", str(model), "--detector", "whole", "--out", str(tmp_path / "out")], \
            f"{model}: "
    return build


def _inf_blocked_out(command: str, where: str):
    """`command` with --out on an existing file, under a regular file, or in /proc (no file
    can be created in any of them, even as root)."""
    def build(tmp_path):
        (tmp_path / "taken").write_text("a file, not a folder")
        out = {"file": tmp_path / "taken", "under-file": tmp_path / "taken" / "sub", "proc": Path("/proc/facemarks_out")}[where]
        if command == "predict":
            image = tmp_path / "img.png"
            cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
            argv = ["predict", str(image), "--checkpoint", str(_inf_onnx(tmp_path / "tiny.onnx"))]
        elif command == "export":
            argv = ["export", "--checkpoint", str(_inf_checkpoint(tmp_path / "m.pt"))]
        else:
            argv = ["bench", "--checkpoint", str(_inf_checkpoint(tmp_path / "m.pt")), "--backend", "torch",
                    "--min-time", "0.01", "--repeats", "1"]
        return argv + ["--out", str(out)], str(out)
    return build


_INF_CASES = [  # (id, builder: tmp_path -> (argv, text the error line must contain))
    ("boxes-nan", _inf_predict_boxes({"img.png": [0, 0, float("nan"), 10]})),
    ("boxes-degenerate", _inf_predict_boxes({"img.png": [10, 10, 10.5, 30]})),
    ("boxes-outside", _inf_predict_boxes({"img.png": [4900, 10, 5100, 200]})),
    ("boxes-1e9", _inf_predict_boxes({"img.png": [-1e9, -1e9, 1e9, 1e9]}, no_overlay=True)),
    ("boxes-face-without-box", _inf_predict_boxes([{"file": "img.png", "faces": [{"landmarks": []}]}])),
    ("boxes-faces-5", _inf_predict_boxes([{"file": "img.png", "faces": 5}])),
    ("onnx-unparsable-json", _inf_predict_onnx({"scheme": "{oops"})),
    ("onnx-wrong-type", _inf_predict_onnx({"crop": "5"})),
    ("onnx-missing-key", _inf_predict_onnx({"input_size": None})),
    ("onnx-num-points", _inf_predict_onnx({"num_points": "98"})),
    ("onnx-output-rank", _inf_predict_onnx(out_shape=(136,))),
    ("onnx-output-points", _inf_predict_onnx(out_shape=(5, 2))),
    *((f"{command}-out-{where}", _inf_blocked_out(command, where))
      for command in ("predict", "export", "bench") for where in ("file", "under-file", "proc")),
]


@pytest.mark.parametrize("name, build", _INF_CASES, ids=[case[0] for case in _INF_CASES])
def test_bad_inference_input_is_one_line_and_exit_2(tmp_path, capsys, name, build):
    argv, named = build(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n") and named in captured.err, captured.err
    assert not (tmp_path / "out" / "predictions.json").exists()  # stopped before any prediction
