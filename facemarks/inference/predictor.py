"""Python API: load a checkpoint once, then find landmarks in photos.

    import facemarks
    predictor = facemarks.load("dsnet_heatmap_300w.pt")           # or backend="onnx"
    faces = predictor.predict("photo.jpg")                 # Haar face detector
    faces[0]["landmarks"]                                  # (68, 2) source-image pixels

Every face is cut out with one affine warp: `crop_matrix(box, S, margin)` maps the source
image to the S x S network input around the face's landmark box (the model's training
crop). When that warp shrinks by more than 1.5x (a large face in a big photo), the image is
first reduced with area averaging, as the training crops were (`cache.warp_antialiased`),
so the network sees the same kind of pixels and no aliasing. The model's points (normalised input coordinates) go back through the inverse of
that same matrix, so predictions are in the source image's 0-based pixel-centre
coordinates, whatever the face's position, size or the image's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from facemarks.engine import checkpoint as ckpt
from facemarks import schemes
from facemarks.geometry.affine import warp_antialiased
from facemarks.data.sample import read_image
from facemarks.inference.detect import HaarFaceDetector, whole_image_box
from facemarks.errors import CheckpointError
from facemarks.geometry.affine import apply_to_points, crop_matrix, invert
from facemarks.geometry.coords import from_normalized

BATCH_SIZE = 64  # faces per forward pass: bounds memory on crowded photos
DEFAULT_WEIGHTS = "dsnet_heatmap_300w.pt"  # the pretrained 68-point model shipped in facemarks/weights/


def default_checkpoint() -> Path:
    """The shipped pretrained checkpoint (facemarks/weights/DEFAULT_WEIGHTS), or
    CheckpointError saying it is absent and how to pass one."""
    from importlib import resources

    path = Path(str(resources.files("facemarks") / "weights" / DEFAULT_WEIGHTS))
    if not path.is_file():
        raise CheckpointError(path, "the pretrained model is not installed with this copy of facemarks; "
                                    "pass a checkpoint explicitly (--checkpoint PATH, or facemarks.load(PATH)), "
                                    "e.g. one written by `facemarks train`")
    return path


def build_model(checkpoint: dict, path) -> torch.nn.Module:
    """The checkpoint's model with its weights, in eval mode (CheckpointError naming `path`)."""
    from facemarks import models  # deferred: importing every model file is slow-ish

    spec = checkpoint["model"]
    if not isinstance(spec, dict) or "name" not in spec:
        raise CheckpointError(path, "the 'model' entry must be {'name': ..., 'kwargs': {...}}")
    kwargs = dict(spec.get("kwargs") or {})
    kwargs.setdefault("input_size", checkpoint["input_size"])
    try:
        num_points = kwargs.pop("num_points", None) or schemes.get(checkpoint["scheme"]).num_points
        model = models.create(spec["name"], num_points, **kwargs)
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as exc:  # unknown name, wrong kwargs, weights of another shape
        raise CheckpointError(path, f"cannot rebuild model {spec['name']!r} from it ({type(exc).__name__}: {exc})") from exc
    return model.eval()


class TorchRunner:
    """Runs a PyTorch landmark model: float (B, 3, S, S) in [0, 1] -> (B, N, 2) normalised."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", channels_last: bool = False):
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        x = x.contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            points = self.model.decode(self.model(x))
        return points.float().cpu().numpy()


def crops_to_input(crops) -> np.ndarray:
    """Crops as the model input: uint8 (B, S, S, 3) RGB -> float32 (B, 3, S, S) in [0, 1];
    float (B, 3, S, S) arrays or tensors (already in [0, 1]) pass through."""
    if isinstance(crops, torch.Tensor):
        crops = crops.detach().cpu().numpy()
    crops = np.asarray(crops)
    if crops.dtype == np.uint8:
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"uint8 crops must be (B, S, S, 3) RGB, got shape {crops.shape}")
        return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"float crops must be (B, 3, S, S) in [0, 1], got shape {crops.shape}")
    return crops.astype(np.float32, copy=False)


def as_rgb_image(image) -> np.ndarray:
    """A path (read as RGB) or an array: uint8 (H, W, 3) RGB, or (H, W) grey."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB arrays, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"images must be (H, W, 3) RGB, got shape {image.shape}")
    return image


class LandmarkPredictor:
    """A loaded landmark model with its crop geometry (from `facemarks.load`).

    Attributes: scheme (name of the landmark scheme), num_points, input_size (S, pixels),
    crop_margin, backend ("torch" or "onnx"), source (the checkpoint or ONNX file).
    """

    def __init__(self, runner: Callable[[np.ndarray], np.ndarray], scheme: str, input_size: int,
                 crop_margin: float, backend: str, source):
        self.runner = runner
        self.scheme = scheme
        self.input_size = int(input_size)
        self.crop_margin = float(crop_margin)
        self.backend = backend
        self.source = str(source)
        self._haar = None

    @property
    def num_points(self) -> int:
        return schemes.get(self.scheme).num_points

    def __repr__(self) -> str:
        return (f"LandmarkPredictor({self.source!r}, backend={self.backend!r}, scheme={self.scheme!r}, "
                f"input_size={self.input_size}, crop_margin={self.crop_margin})")

    def detect(self, image: np.ndarray, detector="haar") -> np.ndarray:
        """Landmark boxes (K, 4) of the faces in an RGB image: detector "haar" (OpenCV's
        cascade, mapped to landmark boxes), "whole" (the image is one tight face crop), or a
        callable image -> (K, 4) landmark boxes."""
        if callable(detector):
            return np.asarray(detector(image), dtype=np.float64).reshape(-1, 4)
        if detector == "haar":
            if self._haar is None:
                self._haar = HaarFaceDetector()
            return self._haar(image)
        if detector == "whole":
            return whole_image_box(image)
        raise ValueError(f"detector must be 'haar', 'whole' or a callable, got {detector!r}")

    def predict(self, image, boxes=None, detector="haar") -> list[dict]:
        """Landmarks of every face in an image.

        image:    a file path, or an RGB uint8 array (H, W, 3).
        boxes:    face boxes (K, 4) x_min, y_min, x_max, y_max in the landmark-box
                  convention (the extent of the face's landmarks, 0-based pixel-centre);
                  when None, found with `detector` (see `detect`).
        Returns one dict per face: {"box": [4 floats], "landmarks": (N, 2) float64 in source
        image pixels (0-based pixel-centre), "scheme": name}. No face: an empty list.
        """
        image = as_rgb_image(image)
        boxes = self.detect(image, detector) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        matrices = np.stack([crop_matrix(box, self.input_size, margin=self.crop_margin) for box in boxes])
        crops = np.stack([warp_antialiased(image, matrix, self.input_size) for matrix in matrices])
        points_input = from_normalized(self.predict_crops(crops).astype(np.float64), self.input_size)
        landmarks = apply_to_points(invert(matrices), points_input)
        return [{"box": [float(v) for v in box], "landmarks": points, "scheme": self.scheme}
                for box, points in zip(boxes, landmarks)]

    def predict_crops(self, crops) -> np.ndarray:
        """Points (B, N, 2) in normalised input coordinates of ready-made network inputs:
        uint8 (B, S, S, 3) RGB crops or float (B, 3, S, S) in [0, 1]."""
        images = crops_to_input(crops)
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"crops must be {self.input_size} x {self.input_size}, got {images.shape[-2:]}")
        chunks = [self.runner(images[i:i + BATCH_SIZE]) for i in range(0, len(images), BATCH_SIZE)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_points, 2), np.float32)


def load(checkpoint_path=None, backend: str = "torch", device: str = "cpu", threads: int | None = None) -> LandmarkPredictor:
    """Load a landmark model for prediction.

    checkpoint_path: a facemarks checkpoint (.pt) or an ONNX file written by
        `facemarks export` (which carries the scheme and crop geometry as metadata);
        None: the pretrained 68-point model shipped in facemarks/weights/.
    backend: "torch", or "onnx" (ONNX Runtime on the CPU; a .pt checkpoint is exported once
        to `CHECKPOINT.onnx` beside it if that file is current, else to the cache folder).
    device: PyTorch device for backend "torch".
    threads: ONNX Runtime intra-op threads (None: its default).
    Raises CheckpointError naming the file when it is missing or not a usable checkpoint.
    """
    path = default_checkpoint() if checkpoint_path is None else Path(checkpoint_path)
    if path.suffix.lower() == ".onnx":
        backend = "onnx"
    if backend == "onnx":
        from facemarks.inference import onnx_runtime as onnx_backend

        onnx_path = path if path.suffix.lower() == ".onnx" else onnx_backend.onnx_for_checkpoint(path)
        runner = onnx_backend.OnnxRunner(onnx_path, threads=threads)
        meta = runner.metadata
        return LandmarkPredictor(runner, meta["scheme"], meta["input_size"], meta["crop_margin"], "onnx", onnx_path)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    checkpoint = ckpt.load(path)
    model = build_model(checkpoint, path)
    return LandmarkPredictor(TorchRunner(model, device), checkpoint["scheme"], checkpoint["input_size"],
                             checkpoint.get("crop_margin", 0.25), "torch", path)
