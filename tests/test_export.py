"""ONNX export: the exported graph (model + decoder) matches PyTorch, carries its metadata
(the full scheme and crop policy: an .onnx file alone is a predictor, custom schemes and
aligned crops included), accepts any batch size, and the ONNX backend predicts what the
PyTorch backend does."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import facemarks
import facemarks.inference.onnx as export
import facemarks.inference.predictor as api
from facemarks import models, schemes
from facemarks.cli import main as cli_main
from facemarks.data import formats
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.errors import CheckpointError
from facemarks.geometry.crop import AlignCrop, BoxCrop
from facemarks.inference.onnx import ExportError, export_onnx
from facemarks.inference.preprocess import cut_crops

S = 64
NUM_POINTS = 68

# A custom (non-built-in) scheme: eyes, nose tip, mouth corners, chin, forehead.
CUSTOM = schemes.Scheme(name="seven", num_points=7, flip_permutation=(1, 0, 2, 4, 3, 5, 6), outer_eye_corners=(0, 1),
                        left_eye=(0,), right_eye=(1,), regions={"nose_tip": (2,), "mouth_corners": (3, 4)})
TEMPLATE = ((0.32, 0.3), (0.68, 0.3), (0.5, 0.5), (0.36, 0.68), (0.64, 0.68))


def make_checkpoint(path, name="dsnet", seed=0, scheme="300w", crop=BoxCrop(0.25), **kwargs):
    torch.manual_seed(seed)
    scheme = schemes.get(scheme)
    model = models.create(name, scheme.num_points, input_size=S, **kwargs)
    kind = models.kind(name)
    Checkpoint(ModelSpec(name, {"input_size": S, **kwargs}), scheme, crop, S, model.state_dict(), kind=kind,
               decoder="dark" if kind == "heatmap" else None).save(path)
    return path, model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    ckpt_path, model = make_checkpoint(folder / "dsnet.pt")
    onnx_path = folder / "dsnet.onnx"  # beside the checkpoint: the ONNX backend reuses it
    report = export_onnx(ckpt_path, onnx_path)
    return ckpt_path, model, onnx_path, report


def test_parity_report_within_tolerance(exported):
    _, _, onnx_path, report = exported
    parity = report["parity"]
    assert parity["ok"] and parity["faces"] == 32 and parity["crops"] == "synthetic crops"  # no data given
    assert parity["max_diff_fraction"] < 1e-4
    assert parity["max_diff_px"] == pytest.approx(parity["max_diff_fraction"] * S)
    assert report["num_points"] == NUM_POINTS and onnx_path.stat().st_size == report["size_bytes"]


def test_parity_on_the_face_crops_of_a_given_split(tmp_path, data_300w):
    ckpt_path, _ = make_checkpoint(tmp_path / "dsnet.pt")
    report = export_onnx(ckpt_path, tmp_path / "dsnet.onnx", parity_faces=4, parity_data=f"300w:{data_300w}",
                         parity_split="common")
    assert report["parity"]["crops"] == "face crops" and report["parity"]["faces"] == 4 and report["parity"]["ok"]
    # The crops are the checkpoint's own crop policy applied to the annotated faces.
    sample = formats.load(f"300w:{data_300w}", "common")[0]
    crops = export.real_face_crops(BoxCrop(0.25), S, 1, f"300w:{data_300w}", "common")
    matrix = BoxCrop(0.25).matrix(S, box=sample.box)
    np.testing.assert_array_equal(crops[0], cut_crops(formats.read_image(sample.image_path), matrix[None], S)[0])


def test_onnx_matches_pytorch_for_any_batch(exported):
    """Independent check with a plain ONNX Runtime session against the PyTorch model + decode."""
    _, model, onnx_path, _ = exported
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        images = np.random.default_rng(batch).random((batch, 3, S, S), dtype=np.float32)
        got = session.run(None, {"images": images})[0]
        with torch.no_grad():
            expected = model.decode(model(torch.from_numpy(images))).numpy()
        assert got.shape == (batch, NUM_POINTS, 2)
        assert np.abs(got - expected).max() < 1e-4


def test_metadata_describes_the_predictor(exported):
    ckpt_path, _, onnx_path, _ = exported
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["format"] == "facemarks-onnx-v2" and meta["input_size"] == "64"
    assert json.loads(meta["scheme"]) == schemes.to_dict(schemes.get("300w"))
    assert json.loads(meta["crop"]) == {"policy": "box", "margin": 0.25}
    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    assert meta["model_name"] == "dsnet" and meta["num_points"] == "68"


def test_onnx_backend_predicts_like_torch(exported, data_300w):
    ckpt_path, _, onnx_path, _ = exported
    torch_predictor = api.load(ckpt_path)
    image = data_300w / "helen/testset/296814969_3.jpg"
    boxes = [[100, 90, 250, 230], [20, 30, 140, 150]]
    expected = torch_predictor.predict(image, boxes=boxes)
    for predictor in (api.load(onnx_path), api.load(ckpt_path, backend="onnx")):
        assert predictor.backend == "onnx" and predictor.source == str(onnx_path)  # the sibling file is reused
        assert (predictor.scheme, predictor.input_size, predictor.crop) == (schemes.get("300w"), S, BoxCrop(0.25))
        got = predictor.predict(image, boxes=boxes)
        for face, reference in zip(got, expected):
            crop_side = 150 * 1.25  # source pixels spanned by the input
            assert np.abs(face["landmarks"] - reference["landmarks"]).max() < 1e-4 * crop_side


def test_custom_scheme_and_aligned_crop_round_trip_through_onnx(tmp_path):
    """An .onnx file alone rebuilds a predictor of a non-built-in scheme with an aligned crop,
    and predicts what the PyTorch backend predicts."""
    ckpt_path, _ = make_checkpoint(tmp_path / "seven.pt", scheme=CUSTOM, crop=AlignCrop(TEMPLATE), seed=3)
    onnx_path = tmp_path / "elsewhere" / "seven.onnx"
    export_onnx(ckpt_path, onnx_path, parity_faces=4)
    ckpt_path.unlink()  # nothing but the ONNX file is left
    predictor = facemarks.load(str(onnx_path))
    assert predictor.backend == "onnx" and predictor.scheme == CUSTOM and predictor.scheme.name == "seven"
    assert predictor.crop == AlignCrop(TEMPLATE)

    torch_path, _ = make_checkpoint(tmp_path / "again.pt", scheme=CUSTOM, crop=AlignCrop(TEMPLATE), seed=3)
    reference = api.load(torch_path)
    image = np.random.default_rng(0).integers(0, 256, (120, 110, 3), dtype=np.uint8)
    points = np.array([[[35, 40], [75, 42], [55, 62], [40, 85], [72, 84], [56, 105], [55, 15]]], np.float64)
    got = predictor.predict(image, points=points, points_scheme=CUSTOM)
    expected = reference.predict(image, points=points, points_scheme=CUSTOM)
    assert got[0]["scheme"] == "seven" and got[0]["landmarks"].shape == (7, 2)
    np.testing.assert_allclose(got[0]["landmarks"], expected[0]["landmarks"], rtol=0, atol=1e-3)


def test_files_of_the_first_metadata_format_still_load(exported, tmp_path):
    _, _, onnx_path, _ = exported
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    for key, value in {"format": "facemarks-onnx-v1", "scheme": "300w", "input_size": "64", "crop_margin": "0.4",
                       "num_points": "68", "model_name": "dsnet"}.items():
        proto.metadata_props.add(key=key, value=value)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    predictor = api.load(old)
    assert (predictor.scheme, predictor.crop, predictor.input_size) == (schemes.get("300w"), BoxCrop(0.4), S)


def test_onnx_backend_exports_into_the_cache_when_no_current_sibling(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEMARKS_CACHE", str(tmp_path / "cache"))
    ckpt_path, _ = make_checkpoint(tmp_path / "other.pt", seed=1)
    (tmp_path / "other.onnx").write_bytes(b"stale")  # not this checkpoint's export: ignored
    predictor = api.load(ckpt_path, backend="onnx")
    assert predictor.source.startswith(str(tmp_path / "cache" / "onnx"))
    crops = np.random.default_rng(0).integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    np.testing.assert_allclose(predictor.predict_crops(crops), api.load(ckpt_path).predict_crops(crops), atol=1e-4)


def test_disagreement_is_detected_and_nothing_written(exported, tmp_path, monkeypatch):
    ckpt_path, model, onnx_path, _ = exported
    _, other = make_checkpoint(tmp_path / "other.pt", seed=2)
    crops = export.synthetic_crops(S, 4)
    check = export.parity(other, onnx_path.read_bytes(), crops)
    assert not check["ok"] and check["max_diff_fraction"] > 1e-3
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(ckpt_path, tmp_path / "never.onnx", parity_faces=2)
    assert not (tmp_path / "never.onnx").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_heatmap_model_exports_with_its_decoder_into_the_out_folder(tmp_path, capsys):
    ckpt_path, model = make_checkpoint(tmp_path / "hm.pt", name="dsnet_heatmap", width=16)
    out_dir = tmp_path / "models"
    assert cli_main(["export", "--checkpoint", str(ckpt_path), "--out", str(out_dir), "--parity-faces", "8"]) == 0
    printed = capsys.readouterr().out
    assert "parity" in printed and "OK" in printed and "of the input size" in printed
    out = out_dir / "hm.onnx"  # --out is the folder; the file is named after the checkpoint
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(3).random((2, 3, S, S), dtype=np.float32)
    with torch.no_grad():
        expected = model.decode(model(torch.from_numpy(images)), decoder="dark").numpy()
    got = session.run(None, {"images": images})[0]
    assert got.shape == (2, NUM_POINTS, 2) and np.abs(got - expected).max() < 1e-4


def test_fixed_batch_export_beside_the_checkpoint(tmp_path, capsys):
    ckpt_path, _ = make_checkpoint(tmp_path / "fixed.pt", seed=4)
    assert cli_main(["export", "--checkpoint", str(ckpt_path), "--batch-size", "2", "--parity-faces", "2"]) == 0
    out = tmp_path / "fixed.onnx"  # default folder: the checkpoint's
    assert ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[0] == 2
    crops = np.random.default_rng(1).integers(0, 256, (3, S, S, 3), dtype=np.uint8)  # 3 faces: padded to 2 + 2
    np.testing.assert_allclose(api.load(out).predict_crops(crops), api.load(ckpt_path).predict_crops(crops), atol=1e-4)
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and exit status 2
        cli_main(["export", "--checkpoint", str(ckpt_path), "--batch-size", "none"])
    assert exit_info.value.code == 2 and "'dynamic' or a positive integer" in capsys.readouterr().err


def test_export_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    code = cli_main(["export", "--checkpoint", str(tmp_path / "nosuch.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nosuch.pt" in err and "Traceback" not in err


def test_export_out_folder_is_checked_before_the_export(tmp_path, capsys, monkeypatch):
    ckpt_path, _ = make_checkpoint(tmp_path / "m.pt")
    monkeypatch.setattr(export, "onnx_model_proto", lambda *a, **k: pytest.fail("exported before --out was checked"))
    (tmp_path / "taken").write_text("a file, not a folder")
    for folder in (tmp_path / "taken", tmp_path / "taken" / "sub", "/proc/facemarks_out"):
        code = cli_main(["export", "--checkpoint", str(ckpt_path), "--out", str(folder)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(folder) in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------
# crafted ONNX files: hand-built graphs (no exporter) with chosen metadata and shapes
# ---------------------------------------------------------------------------------

TINY_WEIGHTS = np.random.default_rng(5).random((3, NUM_POINTS * 2), dtype=np.float32)


def valid_metadata() -> dict:
    return {"format": "facemarks-onnx-v2", "scheme": json.dumps(schemes.to_dict(schemes.get("300w"))),
            "crop": json.dumps({"policy": "box", "margin": 0.25}), "input_size": str(S), "num_points": str(NUM_POINTS)}


def tiny_onnx(path, metadata=None, out_shape=(NUM_POINTS, 2), declared=None):
    """images (B, 3, S, S) -> mean colour (B, 3) @ W (3, P) -> reshape (B, *out_shape), P the
    product of out_shape (W: TINY_WEIGHTS resized). With `declared` (strings: symbolic
    dimensions) the output is declared (batch, *declared) and the reshape's target is computed
    from the image (+ 0 * max pixel), so no shape inference can see the real shape."""
    from onnx import TensorProto, helper, numpy_helper

    size = int(np.prod(out_shape))
    weights = np.resize(TINY_WEIGHTS, (3, size))
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "weights"], ["mixed"])]
    if declared:
        nodes += [helper.make_node("ReduceMax", ["images"], ["top"], keepdims=0),
                  helper.make_node("Cast", ["top"], ["top_int"], to=TensorProto.INT64),
                  helper.make_node("Mul", ["top_int", "zero"], ["nothing"]),
                  helper.make_node("Add", ["shape", "nothing"], ["target"]),
                  helper.make_node("Reshape", ["mixed", "target"], ["points"])]
    else:
        nodes.append(helper.make_node("Reshape", ["mixed", "shape"], ["points"]))
    initializers = [numpy_helper.from_array(weights, "weights"),
                    numpy_helper.from_array(np.array([-1, *out_shape], np.int64), "shape"),
                    numpy_helper.from_array(np.array(0, np.int64), "zero")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, S, S])],
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", *(declared or out_shape)])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (valid_metadata() if metadata is None else metadata).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_a_hand_built_onnx_model_predicts_what_its_graph_computes(tmp_path):
    """The control for the crafted files below: valid metadata and shapes load, and a crop of
    one colour c gives c @ W (hand computed) as its points."""
    predictor = api.load(tiny_onnx(tmp_path / "tiny.onnx"))
    assert (predictor.scheme, predictor.input_size, predictor.crop) == (schemes.get("300w"), S, BoxCrop(0.25))
    crops = np.zeros((2, S, S, 3), np.uint8)
    crops[0], crops[1] = (51, 102, 153), (255, 0, 0)
    expected = (crops[:, 0, 0].astype(np.float32) / 255) @ TINY_WEIGHTS
    np.testing.assert_allclose(predictor.predict_crops(crops), expected.reshape(2, NUM_POINTS, 2), rtol=1e-5)


def mutated(**changes) -> dict:
    return {k: v for k, v in {**valid_metadata(), **changes}.items() if v is not None}


@pytest.mark.parametrize("metadata, message", [
    (mutated(scheme="{not json"), r"malformed facemarks ONNX metadata 'scheme'.*JSONDecodeError"),
    (mutated(scheme="[68]"), r"'scheme'.*must be a JSON object"),
    (mutated(crop="null"), r"'crop'.*must be a JSON object"),
    (mutated(crop='{"policy": "box", "margin": "wide"}'), r"'crop'"),
    (mutated(input_size="sixty-four"), r"'input_size'"),
    (mutated(input_size="-3"), r"'input_size'.*must be 1 to"),
    (mutated(input_size=None), r"lack the key 'input_size'"),
    (mutated(crop=None), r"lack the key 'crop'"),
    (mutated(num_points="5"), r"num_points is 5, the scheme '300w' has 68"),
    (mutated(input_size="32"), r"input has shape \(batch, 3, 64, 64\), not \(B, 3, 32, 32\)"),
    (mutated(format="facemarks-onnx-v1", scheme="../../etc/passwd", crop_margin="0.2"), r"'scheme'.*not a built-in"),
    ({}, r"not a facemarks ONNX model"),
])
def test_bad_onnx_metadata_is_one_checkpoint_error_naming_the_file(tmp_path, metadata, message):
    path = tiny_onnx(tmp_path / "crafted.onnx", metadata)
    with pytest.raises(CheckpointError, match=r"crafted\.onnx: .*" + message):
        api.load(path)


@pytest.mark.parametrize("out_shape, declared, message", [
    ((NUM_POINTS, 3), None, r"the model's output has shape \(batch, 68, 3\), not \(B, 68, 2\)"),
    ((5, 2), None, r"the model's output has shape \(batch, 5, 2\), not \(B, 68, 2\)"),
    ((NUM_POINTS * 2,), None, r"the model's output has shape \(batch, 136\)"),
    ((NUM_POINTS, 3), ("n", "k"), r"the model returned float32 points of shape \(1, 68, 3\), not float \(B, N, 2\) = \(1, 68, 2\)"),
    ((4, 2), ("n", 2), r"the model returned float32 points of shape \(1, 4, 2\)"),
])
def test_onnx_output_not_matching_the_metadata_is_refused(tmp_path, out_shape, declared, message):
    """Declared shapes are checked; symbolic ones (strings) by one run of a blank batch."""
    path = tiny_onnx(tmp_path / "crafted.onnx", out_shape=out_shape, declared=declared)
    with pytest.raises(CheckpointError, match=r"crafted\.onnx: " + message):
        api.load(path)
