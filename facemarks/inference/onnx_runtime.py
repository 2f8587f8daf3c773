"""ONNX Runtime backend: run exported landmark models without PyTorch in the loop.

An ONNX file written by `facemarks.inference.onnx.export_onnx` takes `images` float32 (B, 3, S, S)
RGB in [0, 1] and returns `points` float32 (B, N, 2) in normalised input coordinates. It
carries the checkpoint's scheme and crop geometry as metadata (`METADATA_KEYS`), so it is
usable on its own: `facemarks.load("model.onnx")`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from facemarks.errors import CheckpointError

ONNX_FORMAT = "facemarks-onnx-v1"
# metadata key -> type; written by export_onnx, read back by OnnxRunner.metadata
METADATA_KEYS = {"format": str, "scheme": str, "input_size": int, "crop_margin": float, "num_points": int,
                 "model_name": str, "checkpoint_sha256": str}


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
            raise CheckpointError(self.source, f"not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        self.input_name = self.session.get_inputs()[0].name

    @property
    def metadata(self) -> dict:
        """The facemarks metadata of the model (CheckpointError if it has none)."""
        raw = self.session.get_modelmeta().custom_metadata_map
        if raw.get("format") != ONNX_FORMAT:
            raise CheckpointError(self.source, f"not a facemarks ONNX model (metadata format is not {ONNX_FORMAT!r}); "
                                               "export it with `facemarks export`")
        return {key: kind(raw[key]) for key, kind in METADATA_KEYS.items() if key in raw}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        return self.session.run(None, {self.input_name: images})[0]


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
    except Exception:
        return {}
    return {p.key: p.value for p in model.metadata_props}


def onnx_for_checkpoint(checkpoint_path, cache_root=None) -> Path:
    """The ONNX file of a checkpoint, exported on first use.

    Uses `CHECKPOINT.onnx` beside the checkpoint when its metadata names this checkpoint's
    SHA-256 (e.g. written by `facemarks export`); otherwise exports once (with the parity
    check) to `CACHE/onnx/NAME-SHA.onnx`, CACHE being $FACEMARKS_CACHE or ~/.cache/facemarks.
    """
    from facemarks.data.cache import default_cache_root
    from facemarks.inference.onnx import export_onnx

    path = Path(checkpoint_path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    sha = file_sha256(path)
    sibling = path.with_suffix(".onnx")
    if sibling.is_file() and _metadata_of(sibling).get("checkpoint_sha256") == sha:
        return sibling
    cached = Path(cache_root or default_cache_root()) / "onnx" / f"{path.stem}-{sha[:16]}.onnx"
    if not cached.is_file():
        export_onnx(path, cached, parity_faces=8)
    return cached
