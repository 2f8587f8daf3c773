"""ONNX export: the exported graph (model + decoder) matches PyTorch, carries its metadata,
accepts any batch size, and the ONNX backend predicts what the PyTorch backend does."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import facemarks.inference.predictor as api
import facemarks.inference.onnx as export
from facemarks import models
from facemarks.engine import checkpoint
from facemarks.cli import main as cli_main
from facemarks.inference.onnx import ExportError, export_onnx

S = 64
NUM_POINTS = 68


def make_checkpoint(path, name="dsnet", seed=0, **kwargs):
    torch.manual_seed(seed)
    model = models.create(name, NUM_POINTS, input_size=S, **kwargs)
    checkpoint.save({"model": {"name": name, "kwargs": {"input_size": S, **kwargs}}, "scheme": "300w",
                     "input_size": S, "crop_margin": 0.25, "state_dict": model.state_dict()}, path)
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
    assert parity["ok"] and parity["faces"] == 32
    assert parity["max_diff_fraction"] < 1e-4
    assert parity["max_diff_px"] == pytest.approx(parity["max_diff_fraction"] * S)
    expected_crops = "face crops" if (export.shared_data_dir() / "300w").is_dir() else "synthetic crops"
    assert parity["crops"] == expected_crops
    assert report["num_points"] == NUM_POINTS and onnx_path.stat().st_size == report["size_bytes"]


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
    assert meta["scheme"] == "300w" and meta["input_size"] == "64" and float(meta["crop_margin"]) == 0.25
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
        assert (predictor.scheme, predictor.input_size, predictor.crop_margin) == ("300w", S, 0.25)
        got = predictor.predict(image, boxes=boxes)
        for face, reference in zip(got, expected):
            crop_side = 150 * 1.25  # source pixels spanned by the input
            assert np.abs(face["landmarks"] - reference["landmarks"]).max() < 1e-4 * crop_side


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


def test_heatmap_model_exports_with_its_decoder(tmp_path, capsys):
    ckpt_path, model = make_checkpoint(tmp_path / "hm.pt", name="dsnet_heatmap", width=16)
    out = tmp_path / "hm.onnx"
    assert cli_main(["export", str(ckpt_path), "--out", str(out), "--parity-faces", "8"]) == 0
    printed = capsys.readouterr().out
    assert "parity" in printed and "OK" in printed and "of the input size" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(3).random((2, 3, S, S), dtype=np.float32)
    with torch.no_grad():
        expected = model.decode(model(torch.from_numpy(images))).numpy()
    got = session.run(None, {"images": images})[0]
    assert got.shape == (2, NUM_POINTS, 2) and np.abs(got - expected).max() < 1e-4
