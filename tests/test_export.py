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
