"""ONNX: export a checkpoint (checked against PyTorch) and run exported models.

The exported graph is the model followed by its decoder (`model.decode` with the
checkpoint's decoder), so every model kind exports to the same contract: input `images`
float32 (B, 3, S, S) RGB in [0, 1], output `points` float32 (B, N, 2) in normalised input
coordinates (0 and 1 are the crop's outer edges). Heatmap models therefore carry their
heatmap decoding inside the ONNX graph.

Metadata (`metadata_props`, format `facemarks-onnx-v2`): the full landmark scheme (JSON of
`schemes.to_dict`) and the crop policy (JSON of `CropPolicy.to_dict`), the input size, the
number of points, the model name and the SHA-256 of the checkpoint file. So an .onnx file
alone is a complete predictor (`facemarks.load("model.onnx")`), custom schemes and aligned
crops included. Files of the first format (`facemarks-onnx-v1`: the scheme by name and a
`crop_margin`) still load.

Parity: ONNX Runtime and PyTorch must agree on face crops to better than
`PARITY_TOLERANCE` of the input size, otherwise nothing is written. The crops come from the
dataset split the caller names (`parity_data`, `parity_split`), cut with the checkpoint's
own crop policy; without one, smooth synthetic images stand in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facemarks import fileio, schemes
from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import CheckpointError, FacemarksError
from facemarks.geometry.crop import CropPolicy, crop_policy, BoxCrop
from facemarks.inference.preprocess import crops_to_input, cut_crops

PARITY_TOLERANCE = 1e-4  # largest allowed point difference, as a fraction of the input size
DEFAULT_OPSET = 20
ONNX_FORMAT = "facemarks-onnx-v2"
ONNX_FORMAT_V1 = "facemarks-onnx-v1"  # scheme by name, crop as crop_margin: read only
MAX_INPUT_SIZE = 4096  # largest input side a model's metadata may declare


class ExportError(FacemarksError):
    """The export failed or the exported model disagrees with PyTorch."""


# ---------------------------------------------------------------------------------------
# Export


class PointsModel(nn.Module):
    """A landmark model with its decoder: images (B, 3, S, S) -> points (B, N, 2) normalised."""

    def __init__(self, model: nn.Module, decoder: str | None = None):
        super().__init__()
        self.model = model
        self.decoder = decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model(images), decoder=self.decoder)


def real_face_crops(crop: CropPolicy, input_size: int, count: int, data: str, split: str | None = None) -> np.ndarray:
    """Up to `count` uint8 (B, S, S, 3) crops, cut with `crop`, of annotated faces spread over
    the split `split` (None: every face) of the dataset spec `data` ("300w:DIR", ...)."""
    from facemarks.data import formats

    samples = formats.load(data, split)
    picks = np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int)
    crops = []
    for index in picks:
        sample = samples[index]
        matrix = crop.matrix(input_size, box=sample.box, points=sample.landmarks, scheme=schemes.get(sample.scheme))
        crops.append(cut_crops(formats.read_image(sample.image_path), matrix[None], input_size)[0])
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


def onnx_model_proto(model: nn.Module, input_size: int, batch="dynamic", opset: int = DEFAULT_OPSET,
                     decoder: str | None = None):
    """Export `model` plus its decoder with torch.onnx's dynamo exporter -> onnx.ModelProto.
    batch: "dynamic" (any batch size) or a fixed int."""
    wrapper = PointsModel(model, decoder).eval()
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


def parity(model: nn.Module, onnx_bytes: bytes, crops: np.ndarray, decoder: str | None = None) -> dict:
    """Largest point difference between PyTorch and ONNX Runtime on `crops`
    (uint8 (B, S, S, 3)), in input pixels and as a fraction of the input size; run on the
    whole batch and on the first crop alone (the batch axis must really be dynamic)."""
    images = crops_to_input(crops)
    size = images.shape[-1]
    runner = OnnxRunner(onnx_bytes, threads=1)
    wrapper = PointsModel(model, decoder).eval()
    with torch.inference_mode():
        expected = wrapper(torch.from_numpy(images)).numpy()
    fixed = runner.fixed_batch
    step = fixed or len(images)
    worst = 0.0
    for begin in range(0, len(images) - step + 1, step):
        got = runner(images[begin:begin + step])
        worst = max(worst, float(np.abs(got - expected[begin:begin + step]).max()))
    if not fixed:  # the batch axis is dynamic: a single face must work too
        worst = max(worst, float(np.abs(runner(images[:1]) - expected[:1]).max()))
    return {"faces": len(images), "max_diff_px": worst * size, "max_diff_fraction": worst,
            "tolerance_fraction": PARITY_TOLERANCE, "ok": worst < PARITY_TOLERANCE}


def metadata_for(checkpoint: Checkpoint, num_points: int | None, sha256: str) -> dict[str, str]:
    """The ONNX metadata of an exported checkpoint (all values strings)."""
    values = {"format": ONNX_FORMAT, "scheme": json.dumps(schemes.to_dict(checkpoint.scheme)),
              "crop": json.dumps(checkpoint.crop.to_dict()), "input_size": int(checkpoint.input_size),
              "num_points": num_points, "model_name": checkpoint.model.name, "kind": checkpoint.kind,
              "checkpoint_sha256": sha256}
    return {key: str(value) for key, value in values.items() if value is not None}


def export_onnx(checkpoint, out_path, batch="dynamic", opset: int = DEFAULT_OPSET, parity_faces: int = 32,
                parity_data: str | None = None, parity_split: str | None = None) -> dict:
    """Export a checkpoint (a path, or a `Checkpoint`) to ONNX at `out_path`.

    batch: "dynamic" or a fixed batch size. opset: ONNX opset version.
    The model is checked against PyTorch on `parity_faces` face crops of the split
    `parity_split` of the dataset spec `parity_data` (None: synthetic crops); the file is
    written (atomically) only if the largest difference is below PARITY_TOLERANCE of the
    input size. Returns a report: out, checkpoint, input_size, num_points, opset, batch,
    size_bytes, parity {...}.
    """
    import onnx

    if isinstance(checkpoint, Checkpoint):
        loaded, sha = checkpoint, ""
    else:
        loaded, sha = Checkpoint.load(checkpoint), file_sha256(checkpoint)
    model = loaded.build_model()
    size = int(loaded.input_size)

    proto = onnx_model_proto(model, size, batch=batch, opset=opset, decoder=loaded.decoder)
    num_points = int(proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value) or None
    for key, value in metadata_for(loaded, num_points, sha).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    if parity_data and parity_faces:
        crops, crops_kind = real_face_crops(loaded.crop, size, parity_faces, parity_data, parity_split), "face crops"
    else:
        crops, crops_kind = synthetic_crops(size, max(parity_faces, 2)), "synthetic crops"
    if batch != "dynamic" and len(crops) < int(batch):  # a fixed batch needs that many crops
        crops = np.concatenate([crops] * (int(batch) // len(crops) + 1))[: int(batch)]
    check = parity(model, data, crops, loaded.decoder)
    check["crops"] = crops_kind
    if not check["ok"]:
        raise ExportError(f"{loaded.source}: ONNX and PyTorch disagree by {check['max_diff_px']:.3g} input px "
                          f"({check['max_diff_fraction']:.2e} of the input size, tolerance {PARITY_TOLERANCE:.0e}); "
                          f"nothing written to {out_path}")
    fileio.write_bytes(out_path, data)
    return {"out": str(out_path), "checkpoint": loaded.source, "input_size": size, "num_points": num_points,
            "opset": opset, "batch": batch, "size_bytes": len(data), "parity": check}


# ---------------------------------------------------------------------------------------
# Runtime


def session_options(threads: int | None = None):
    """ONNX Runtime options for low-latency CPU inference: all graph optimisations,
    sequential execution (landmark models are chains: no parallel branches to overlap),
    `threads` intra-op threads (None: ONNX Runtime's default, one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


class OnnxRunner:
    """An ONNX Runtime session on the CPU: float (B, 3, S, S) in [0, 1] -> (B, N, 2).

    model: path of an .onnx file, or its serialized bytes.
    """

    def __init__(self, model, threads: int | None = None):
        import onnxruntime as ort

        self.source = "<bytes>" if isinstance(model, (bytes, bytearray)) else str(model)
        if not isinstance(model, (bytes, bytearray)):
            if not Path(model).is_file():
                raise CheckpointError(model, "ONNX file not found")
            model = str(model)
        try:
            self.session = ort.InferenceSession(model, sess_options=session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(self.source, f"not a loadable ONNX model ({type(exc).__name__}: "
                                               f"{' '.join(str(exc).split())[:300]})") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.points_shape: tuple[int, int] | None = None  # (N, 2), once check_signature has passed

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model was exported for, or None when the batch axis is dynamic."""
        dim = self.session.get_inputs()[0].shape[0]
        return dim if isinstance(dim, int) else None

    @property
    def metadata(self) -> dict:
        """The facemarks metadata, parsed (see `read_metadata`)."""
        return read_metadata(self.session.get_modelmeta().custom_metadata_map, self.source)

    def check_signature(self, num_points: int, input_size: int) -> None:
        """CheckpointError naming the file unless the model maps float32 images (B, 3, S, S)
        (S = input_size) to points (B, N, 2) (N = num_points): checked on the declared shapes,
        then on one run of a blank batch (dimensions may be symbolic); later calls check the
        shape of every result."""
        want_in, want_out = ("B", 3, input_size, input_size), ("B", num_points, 2)
        declared_in, declared_out = self.session.get_inputs()[0].shape, self.session.get_outputs()[0].shape
        for what, declared, want in (("input", declared_in, want_in), ("output", declared_out, want_out)):
            if len(declared) != len(want) or any(isinstance(d, int) and d != w for d, w in zip(declared[1:], want[1:])):
                raise CheckpointError(self.source, f"the model's {what} has shape {_shape(declared)}, not "
                                                   f"{_shape(want)} as its facemarks metadata say")
        batch = self.fixed_batch or 1
        try:
            points = self(np.zeros((batch, 3, input_size, input_size), np.float32))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(self.source, f"the model does not run on a {_shape((batch, 3, input_size, input_size))} "
                                               f"batch ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
        self.points_shape = (num_points, 2)
        self._check_points(points, batch)

    def _check_points(self, points: np.ndarray, batch: int) -> None:
        if points.shape != (batch, *self.points_shape) or not np.issubdtype(points.dtype, np.floating):
            raise CheckpointError(self.source, f"the model returned {points.dtype} points of shape {_shape(points.shape)}, "
                                               f"not float (B, N, 2) = {_shape((batch, *self.points_shape))} as its "
                                               "facemarks metadata say")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        points = self.session.run(None, {self.input_name: images})[0]
        if self.points_shape is not None:
            self._check_points(points, len(images))
        return points


def _shape(dims) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def read_metadata(raw: dict, source) -> dict:
    """The facemarks metadata of an ONNX model (its string map) as
    {"format", "scheme": Scheme, "crop": CropPolicy, "input_size": int, "num_points",
    "model_name", "checkpoint_sha256"} (the last three may be absent). Reads both formats;
    CheckpointError naming `source` and the key for anything else (a missing key, a value
    that does not parse or has the wrong type, a point count other than the scheme's)."""
    fmt = raw.get("format")
    if fmt not in (ONNX_FORMAT, ONNX_FORMAT_V1):
        raise CheckpointError(source, f"not a facemarks ONNX model (metadata format is not {ONNX_FORMAT!r}); "
                                      "export it with `facemarks export`")
    if fmt == ONNX_FORMAT:
        scheme = _meta_value(raw, "scheme", source, lambda v: schemes.from_dict(_json_object(v), "scheme"))
        crop = _meta_value(raw, "crop", source, lambda v: crop_policy(_json_object(v)))
    else:
        scheme = _meta_value(raw, "scheme", source, _builtin_scheme)
        crop = _meta_value(raw, "crop_margin", source, lambda v: BoxCrop(float(v)))
    meta = {"format": fmt, "scheme": scheme, "crop": crop,
            "input_size": _meta_value(raw, "input_size", source, _input_size)}
    if "num_points" in raw:
        meta["num_points"] = _meta_value(raw, "num_points", source, int)
        if meta["num_points"] != scheme.num_points:
            raise CheckpointError(source, f"facemarks ONNX metadata disagree: num_points is {meta['num_points']}, "
                                          f"the scheme {scheme.name!r} has {scheme.num_points} points")
    meta.update({key: raw[key] for key in ("model_name", "checkpoint_sha256") if key in raw})
    return meta


def _meta_value(raw: dict, key: str, source, parse):
    """parse(raw[key]), or CheckpointError naming the file and the key."""
    if key not in raw:
        raise CheckpointError(source, f"facemarks ONNX metadata lack the key {key!r}; re-export the model")
    try:
        return parse(raw[key])
    except (KeyError, ValueError, TypeError, AttributeError, FacemarksError) as exc:
        shown = raw[key] if len(raw[key]) <= 60 else raw[key][:57] + "..."
        reason = " ".join(str(exc).split())  # one line
        raise CheckpointError(source, f"malformed facemarks ONNX metadata {key!r} = {shown!r} "
                                      f"({type(exc).__name__}: {reason})") from None


def _json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"must be a JSON object, not {type(value).__name__}")
    return value


def _builtin_scheme(name: str) -> schemes.Scheme:
    if name not in schemes.BUILTIN:  # never a path: metadata must not make us read other files
        raise ValueError(f"not a built-in scheme ({', '.join(schemes.BUILTIN)})")
    return schemes.BUILTIN[name]


def _input_size(text: str) -> int:
    size = int(text)
    if not 1 <= size <= MAX_INPUT_SIZE:
        raise ValueError(f"must be 1 to {MAX_INPUT_SIZE} pixels")
    return size


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _metadata_of(path) -> dict:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # any unreadable file is simply not a current export
        return {}
    return {p.key: p.value for p in model.metadata_props}


def onnx_for_checkpoint(checkpoint_path, cache_root=None) -> Path:
    """The ONNX file of a checkpoint, exported on first use.

    Uses `CHECKPOINT.onnx` beside the checkpoint when its metadata is current (this format,
    this checkpoint's SHA-256; e.g. written by `facemarks export`); otherwise exports once
    (parity on synthetic crops) to `CACHE/onnx/NAME-SHA.onnx`, CACHE being
    `fileio.cache_root()`.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    sha = file_sha256(path)
    sibling = path.with_suffix(".onnx")
    meta = _metadata_of(sibling) if sibling.is_file() else {}
    if meta.get("format") == ONNX_FORMAT and meta.get("checkpoint_sha256") == sha:
        return sibling
    cached = Path(cache_root or fileio.cache_root()) / "onnx" / f"{path.stem}-{sha[:16]}.onnx"
    if not cached.is_file() or _metadata_of(cached).get("format") != ONNX_FORMAT:
        export_onnx(path, cached, parity_faces=8)
    return cached
