"""`facemarks export`: a checkpoint -> an ONNX model, checked against PyTorch.

The exported graph is the model followed by its decoder (`model.decode`), so every model
kind exports to the same contract: input `images` float32 (B, 3, S, S) RGB in [0, 1],
output `points` float32 (B, N, 2) in normalised input coordinates (0 and 1 are the crop's
outer edges). Heatmap models therefore carry their heatmap decoding inside the ONNX graph.
The checkpoint's scheme, input size and crop margin travel as ONNX metadata, so the file
is a complete predictor (`facemarks.load("model.onnx")`).

Parity: the ONNX model (run by ONNX Runtime) and the PyTorch model must agree on real face
crops (the 300W common split of the shared data when available, else synthetic images) to
better than `PARITY_TOLERANCE` of the input size; otherwise nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facemarks.engine import checkpoint as ckpt
from facemarks import fileio
from facemarks.errors import FacemarksError

PARITY_TOLERANCE = 1e-4  # largest allowed point difference, as a fraction of the input size
DEFAULT_OPSET = 20


class ExportError(FacemarksError):
    """The export failed or the exported model disagrees with PyTorch."""


class PointsModel(nn.Module):
    """A landmark model with its decoder: images (B, 3, S, S) -> points (B, N, 2) normalised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model(images))


def shared_data_dir() -> Path:
    """Where the project's shared datasets live: $FACEMARKS_SHARED_DATA, else ../shared/data
    beside the repository (absent in an installed package)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("FACEMARKS_SHARED_DATA", default))


def real_face_crops(input_size: int, crop_margin: float, count: int, data: str | None = None,
                    split: str | None = "common"):
    """Up to `count` uint8 (B, S, S, 3) crops around annotated faces, spread over the split,
    or None when no dataset is available. `data` is a dataset spec ("300w:DIR", ...);
    default: the shared 300W data."""
    from facemarks.data import formats as datasets
    from facemarks.geometry.affine import warp_antialiased
    from facemarks.geometry.affine import crop_matrix

    if data is None:
        folder = shared_data_dir() / "300w"
        if not folder.is_dir():
            return None
        data = f"300w:{folder}"
    samples = datasets.load(data, split)
    if not samples:
        return None
    picks = np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int)
    crops = []
    for index in picks:
        sample = samples[index]
        matrix = crop_matrix(sample.box, input_size, margin=crop_margin)
        crops.append(warp_antialiased(datasets.read_image(sample.image_path), matrix, input_size))
    return np.stack(crops)


def synthetic_crops(input_size: int, count: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour images (B, S, S, 3) uint8: a face-free stand-in for parity checks."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 6, 6, 3), dtype=np.uint8)
    return np.stack([cv2.resize(c, (input_size, input_size), interpolation=cv2.INTER_CUBIC) for c in coarse])


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's chatter (progress lines, torchvision-not-installed notices)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                yield
    finally:
        logger.setLevel(level)


def onnx_model_proto(model: nn.Module, input_size: int, batch="dynamic", opset: int = DEFAULT_OPSET):
    """Export `model` plus its decoder with torch.onnx's dynamo exporter -> onnx.ModelProto.
    batch: "dynamic" (any batch size) or a fixed int."""
    wrapper = PointsModel(model).eval()
    example_batch = 2 if batch == "dynamic" else int(batch)  # 2, not 1: 1 would be specialised
    example = torch.rand(example_batch, 3, input_size, input_size)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if batch == "dynamic" else None
    try:
        with _quiet_exporter():
            program = torch.onnx.export(wrapper, (example,), None, input_names=["images"], output_names=["points"],
                                        dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True,
                                        verbose=False)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    proto = program.model_proto
    _strip_debug_info(proto.graph)
    return proto


def _strip_debug_info(graph) -> None:
    """Drop the exporter's per-node debug metadata (Python stack traces with local file
    paths, FX node text): a third of a small model's file, and nothing a runtime uses."""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                _strip_debug_info(subgraph)


def parity(model: nn.Module, onnx_bytes: bytes, crops: np.ndarray) -> dict:
    """Largest point difference between PyTorch and ONNX Runtime on `crops`
    (uint8 (B, S, S, 3)), in input pixels and as a fraction of the input size; run on the
    whole batch and on the first crop alone (the batch axis must really be dynamic)."""
    from facemarks.inference.predictor import crops_to_input
    from facemarks.inference.onnx_runtime import OnnxRunner

    images = crops_to_input(crops)
    size = images.shape[-1]
    runner = OnnxRunner(onnx_bytes, threads=1)
    wrapper = PointsModel(model).eval()
    with torch.inference_mode():
        expected = wrapper(torch.from_numpy(images)).numpy()
    fixed = _fixed_batch(runner)
    step = fixed or len(images)
    worst = 0.0
    for begin in range(0, len(images) - step + 1, step):
        got = runner(images[begin:begin + step])
        worst = max(worst, float(np.abs(got - expected[begin:begin + step]).max()))
    if not fixed:  # the batch axis is dynamic: a single face must work too
        worst = max(worst, float(np.abs(runner(images[:1]) - expected[:1]).max()))
    return {"faces": len(images), "max_diff_px": worst * size, "max_diff_fraction": worst,
            "tolerance_fraction": PARITY_TOLERANCE, "ok": worst < PARITY_TOLERANCE}


def _fixed_batch(runner) -> int | None:
    dim = runner.session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def export_onnx(checkpoint, out_path, batch="dynamic", opset: int = DEFAULT_OPSET, parity_faces: int = 32,
                parity_data: str | None = None, parity_split: str | None = "common") -> dict:
    """Export a checkpoint (path, or a loaded checkpoint dict) to ONNX at `out_path`.

    batch: "dynamic" or a fixed batch size. opset: ONNX opset version.
    The model is checked against PyTorch on `parity_faces` face crops (`parity_data` spec,
    default the shared 300W common split, else synthetic crops); the file is written
    (atomically) only if the largest difference is below PARITY_TOLERANCE of the input size.
    Returns a report: out, checkpoint, input_size, num_points, opset, batch, parity {...}.
    """
    import onnx

    from facemarks.inference.predictor import build_model
    from facemarks.inference.onnx_runtime import ONNX_FORMAT, file_sha256

    if isinstance(checkpoint, dict):
        source, loaded, sha = "<checkpoint dict>", checkpoint, ""
    else:
        source, loaded, sha = str(checkpoint), ckpt.load(checkpoint), file_sha256(checkpoint)
    model = build_model(loaded, source)
    size, margin = int(loaded["input_size"]), float(loaded.get("crop_margin", 0.25))

    proto = onnx_model_proto(model, size, batch=batch, opset=opset)
    num_points = int(proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value) or None
    metadata = {"format": ONNX_FORMAT, "scheme": str(loaded["scheme"]), "input_size": size, "crop_margin": margin,
                "num_points": num_points, "model_name": loaded["model"]["name"], "checkpoint_sha256": sha}
    for key, value in metadata.items():
        if value is not None:
            proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    crops = real_face_crops(size, margin, parity_faces, parity_data, parity_split) if parity_faces else None
    crops_kind = "face crops" if crops is not None else "synthetic crops"
    if crops is None:
        crops = synthetic_crops(size, max(parity_faces, 2))
    if batch != "dynamic" and len(crops) < int(batch):  # a fixed batch needs that many crops
        crops = np.concatenate([crops] * (int(batch) // len(crops) + 1))[: int(batch)]
    check = parity(model, data, crops)
    check["crops"] = crops_kind
    if not check["ok"]:
        raise ExportError(f"{source}: ONNX and PyTorch disagree by {check['max_diff_px']:.3g} input px "
                          f"({check['max_diff_fraction']:.2e} of the input size, tolerance {PARITY_TOLERANCE:.0e}); "
                          f"nothing written to {out_path}")
    fileio.write_bytes(out_path, data)
    return {"out": str(out_path), "checkpoint": source, "input_size": size, "num_points": num_points,
            "opset": opset, "batch": batch, "size_bytes": len(data), "parity": check}


def format_report(report: dict) -> str:
    p = report["parity"]
    return (f"wrote {report['out']} ({report['size_bytes'] / 1024:.1f} KB, opset {report['opset']}, batch {report['batch']})\n"
            f"input images float32 (B, 3, {report['input_size']}, {report['input_size']}) RGB in [0, 1]; "
            f"output points float32 (B, {report['num_points']}, 2) normalised\n"
            f"parity vs PyTorch on {p['faces']} {p['crops']}: largest difference {p['max_diff_px']:.2e} input px "
            f"= {p['max_diff_fraction']:.2e} of the input size (tolerance {p['tolerance_fraction']:.0e}): "
            f"{'OK' if p['ok'] else 'FAILED'}")


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="facemarks checkpoint (.pt)")
    parser.add_argument("--out", help="ONNX file to write (default: the checkpoint's name with .onnx)")
    parser.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--parity-faces", type=int, default=32, help="face crops for the parity check (default 32)")
    parser.add_argument("--parity-data", help="dataset spec for the parity crops (default: shared 300W data)")
    parser.add_argument("--parity-split", default="common", help="split of --parity-data (default common)")


def run(args) -> int:
    batch = args.batch if args.batch == "dynamic" else int(args.batch)
    out = args.out or str(Path(args.checkpoint).with_suffix(".onnx"))
    report = export_onnx(args.checkpoint, out, batch=batch, opset=args.opset, parity_faces=args.parity_faces,
                         parity_data=args.parity_data, parity_split=args.parity_split)
    print(format_report(report))
    return 0
