"""Python API: load a model once, then find landmarks in photos.

    import facemarks
    predictor = facemarks.load("dsnet_heatmap_300w.pt")   # or "model.onnx", backend="onnx"
    faces = predictor.predict("photo.jpg")                 # Haar face detector
    faces[0]["landmarks"]                                  # (68, 2) source-image pixels

    cascade = facemarks.load("stage2_align.pt", first_stage="stage1.pt")
    faces = cascade.predict("photo.jpg")                   # boxes -> stage 1 -> aligned crop -> stage 2

Every face is cut out with one affine warp, the matrix of the model's own crop policy
(`facemarks.geometry.crop`, stored in the checkpoint or ONNX file): a box crop frames the
face's landmark box (given, or found by a detector), an aligned crop maps five points of
the face (eye centres, nose tip, mouth corners; e.g. a first stage's output) onto a
template. When the warp shrinks by more than 1.5x, the image is first reduced with area
averaging, as the training crops were. The model's points (normalised input coordinates)
go back through the inverse of that same matrix (`geometry.coords.to_source`), so
predictions are in the source image's 0-based pixel-centre coordinates.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from facemarks import schemes
from facemarks.data.sample import landmark_box
from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import CheckpointError, DataError
from facemarks.geometry.coords import to_source
from facemarks.geometry.crop import CropPolicy
from facemarks.inference.cascade import CascadePredictor
from facemarks.inference.preprocess import as_rgb_image, crops_to_input, cut_crops
from facemarks.inference.shape_check import check_of, keep_faces
from facemarks.pose import head_pose
from facemarks.registry import DETECTORS

BATCH_SIZE = 64  # faces per forward pass: bounds memory on crowded photos
DEFAULT_WEIGHTS = "dsnet_heatmap_300w.pt"  # the pretrained 68-point model shipped in facemarks/weights/

__all__ = ["BATCH_SIZE", "CascadePredictor", "LandmarkPredictor", "TorchRunner", "crops_to_input",
           "default_checkpoint", "face_pose", "load"]


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


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run a block with `threads` PyTorch intra-op threads (None: leave the setting alone)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TorchRunner:
    """Runs a PyTorch landmark model: float (B, 3, S, S) in [0, 1] -> (B, N, 2) normalised,
    decoded with `decoder` (heatmap models; None: the model's default)."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", channels_last: bool = False,
                 decoder: str | None = None, threads: int | None = None):
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        self.decoder = decoder
        self.threads = threads

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        x = x.contiguous(memory_format=self.memory_format)
        with torch_threads(self.threads), torch.inference_mode():
            points = self.model.decode(self.model(x), decoder=self.decoder)
        return points.float().cpu().numpy()


class LandmarkPredictor:
    """A loaded landmark model with its crop policy (from `facemarks.load`).

    Attributes: scheme (the landmark `Scheme`), num_points, input_size (S, pixels), crop (the
    `CropPolicy`), backend ("torch" or "onnx"), source (the checkpoint or ONNX file),
    batch_size (faces per forward pass), check_shape (drop detected faces whose points are
    not shaped like a face: facemarks.inference.shape_check).
    """

    def __init__(self, runner: Callable[[np.ndarray], np.ndarray], scheme: schemes.Scheme, input_size: int,
                 crop: CropPolicy, backend: str, source, batch_size: int = BATCH_SIZE, check_shape: bool = True):
        self.runner = runner
        self.scheme = schemes.get(scheme)
        self.input_size = int(input_size)
        self.crop = crop
        self.backend = backend
        self.source = str(source)
        self.batch_size = int(batch_size)
        self.check_shape = bool(check_shape)
        self._detectors: dict[str, Callable] = {}

    @property
    def num_points(self) -> int:
        return self.scheme.num_points

    def __repr__(self) -> str:
        return (f"LandmarkPredictor({self.source!r}, backend={self.backend!r}, scheme={self.scheme.name!r}, "
                f"input_size={self.input_size}, crop={self.crop!r})")

    def detect(self, image: np.ndarray, detector="haar") -> np.ndarray:
        """Landmark boxes (K, 4) of the faces in an RGB image: a detector registered in
        `facemarks.registry.DETECTORS` ("haar": OpenCV's cascade, mapped to landmark boxes;
        "whole": the image is one tight face crop), or a callable image -> (K, 4) boxes.
        An unknown name raises UnknownNameError listing the valid ones."""
        if not callable(detector):
            if detector not in self._detectors:
                self._detectors[detector] = DETECTORS.get(detector)()
            detector = self._detectors[detector]
        return np.asarray(detector(image), dtype=np.float64).reshape(-1, 4)

    def predict(self, image, boxes=None, points=None, detector="haar", points_scheme=None) -> list[dict]:
        """Landmarks of every face in an image.

        image:   a file path, or an RGB uint8 array (H, W, 3).
        boxes:   for a box-crop model: face boxes (K, 4) x_min, y_min, x_max, y_max in the
                 landmark-box convention (the extent of the face's landmarks, 0-based
                 pixel-centre); None: found with `detector` (see `detect`).
        points:  for an aligned-crop model: points of each face (K, M, 2) (or (M, 2) for one
                 face) in source pixels, e.g. a first stage's output: 5 points (eye centres,
                 nose tip, mouth corners) or the points of `points_scheme` (a Scheme or name;
                 None: the built-in scheme with M points), reduced with `schemes.to_5pt`.
        Detected faces whose points are not shaped like a face are dropped (`keep_plausible`);
        faces in given boxes or from given points are all kept.
        Returns one dict per face: {"box": [4 floats] (the given or detected box; for
        aligned crops the extent of the given points), "landmarks": (N, 2) float64 in source
        image pixels (0-based pixel-centre), "scheme": name, "pose": the head pose of the
        predicted points (see `face_pose`), and for a scheme with a shape reference
        "shape_distance": the points' Procrustes distance from its mean face}. No face: an
        empty list.
        """
        image = as_rgb_image(image)
        detected = boxes is None and self.crop.needs != "points"
        if self.crop.needs == "points":
            boxes, matrices = self._matrices_from_points(points, points_scheme)
        else:
            if points is not None:
                raise ValueError(f"{self.source}: this model crops from face boxes ({self.crop!r}); "
                                 "pass boxes= (or none, to detect faces), not points=")
            boxes = self.detect(image, detector) if detected else checked_boxes(boxes)
            matrices = np.stack([self.crop.matrix(self.input_size, box=box) for box in boxes]) if len(boxes) else None
        if len(boxes) == 0:
            return []
        landmarks = self.landmarks(image, matrices)
        size = (image.shape[1], image.shape[0])
        faces = [{"box": [float(v) for v in box], "landmarks": face, "scheme": self.scheme.name,
                  "pose": face_pose(face, self.scheme, size)} for box, face in zip(boxes, landmarks)]
        check = check_of(self.scheme)
        if check is not None:
            for face, distance in zip(faces, check.distances(landmarks)):
                face["shape_distance"] = float(distance)
        return self.keep_plausible(faces) if detected else faces

    def keep_plausible(self, faces: list[dict]) -> list[dict]:
        """The faces that pass the shape check (all of them with check_shape off)."""
        return keep_faces(faces) if self.check_shape else faces

    def _matrices_from_points(self, points, points_scheme) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (K, 4), matrices (K, 2, 3)) of an aligned crop from each face's points."""
        if points is None:
            raise ValueError(f"{self.source}: this model crops from face points ({self.crop!r}); pass points= "
                             "(e.g. a first stage's landmarks), or load it with first_stage=")
        points = np.asarray(points, dtype=np.float64)
        points = points[None] if points.ndim == 2 else points
        if points.ndim != 3 or points.shape[-1] != 2:
            raise ValueError(f"points must be (K, M, 2) or (M, 2), got shape {points.shape}")
        count = points.shape[1]
        scheme = None if count == 5 and points_scheme is None else schemes.get(points_scheme or schemes.for_num_points(count))
        boxes = np.stack([landmark_box(face) for face in points]) if len(points) else np.zeros((0, 4))
        matrices = np.stack([self.crop.matrix(self.input_size, points=face, scheme=scheme) for face in points]) \
            if len(points) else None
        return boxes, matrices

    def landmarks(self, image: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """Points (K, N, 2) in source pixels of the faces cut from an RGB image by the
        source->input matrices (K, 2, 3)."""
        crops = cut_crops(image, matrices, self.input_size)
        return to_source(self.predict_crops(crops), matrices, self.input_size)

    def predict_crops(self, crops) -> np.ndarray:
        """Points (B, N, 2) in normalised input coordinates of ready-made network inputs:
        uint8 (B, S, S, 3) RGB crops or float (B, 3, S, S) in [0, 1]."""
        images = crops_to_input(crops)
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"crops must be {self.input_size} x {self.input_size}, got {images.shape[-2:]}")
        fixed = getattr(self.runner, "fixed_batch", None)  # an ONNX model exported for one batch size
        step = fixed or self.batch_size
        chunks = []
        for begin in range(0, len(images), step):
            chunk = images[begin:begin + step]
            if fixed and len(chunk) < fixed:
                padding = np.zeros((fixed - len(chunk), *chunk.shape[1:]), np.float32)
                chunks.append(self.runner(np.concatenate([chunk, padding]))[:len(chunk)])
            else:
                chunks.append(self.runner(chunk))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_points, 2), np.float32)


def face_pose(landmarks, scheme, image_size) -> dict | None:
    """{"yaw", "pitch", "roll"} in degrees (`facemarks.pose.head_pose`: one PnP fit, the
    focal length from the image size) of a face's predicted points; None when the scheme
    has no pose (only the 68-point 300w and 98-point wflw schemes have one) or the points
    give none (non-finite or degenerate)."""
    try:
        return head_pose(landmarks, scheme, image_size).as_dict()
    except DataError:
        return None


def checked_boxes(boxes) -> np.ndarray:
    """Given face boxes as (K, 4) float64; ValueError unless each is finite with x_max > x_min
    and y_max > y_min (such a box would give non-finite or meaningless points)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    bad = ~np.isfinite(boxes).all(axis=1) | np.any(boxes[:, 2:] <= boxes[:, :2], axis=1)
    if bad.any():
        raise ValueError(f"boxes must be finite with x_max > x_min and y_max > y_min, got {boxes[bad][0].tolist()}")
    return boxes


def load(path=None, backend: str = "torch", device: str = "cpu", threads: int | None = None,
         first_stage=None, batch_size: int = BATCH_SIZE, check_shape: bool = True):
    """Load a landmark model for prediction.

    path: a facemarks checkpoint (.pt) or an ONNX file written by `facemarks export`
        (which carries the scheme and crop policy as metadata); None: the pretrained
        68-point model shipped in facemarks/weights/.
    backend: "torch", or "onnx" (ONNX Runtime on the CPU; a .pt checkpoint is exported once
        to `CHECKPOINT.onnx` beside it if that file is current, else to the cache folder).
    device: PyTorch device for backend "torch". threads: CPU threads of PyTorch or ONNX
        Runtime (None: their default). batch_size: faces per forward pass.
    first_stage: a second model file (same backend): returns a `CascadePredictor` that runs
        it on face boxes and then `path` (an aligned-crop model) on crops aligned to its points.
    check_shape: drop detected faces whose points are not shaped like a face
        (facemarks.inference.shape_check); False keeps every detection.
    Raises CheckpointError naming the file when it is missing or not a usable model.
    """
    if first_stage is not None:
        options = {"backend": backend, "device": device, "threads": threads, "batch_size": batch_size,
                   "check_shape": check_shape}
        return CascadePredictor(load(first_stage, **options), load(path, **options))
    path = default_checkpoint() if path is None else Path(path)
    if path.suffix.lower() == ".onnx":
        backend = "onnx"
    if backend == "onnx":
        from facemarks.inference import onnx  # deferred: onnxruntime is only needed here

        onnx_path = path if path.suffix.lower() == ".onnx" else onnx.onnx_for_checkpoint(path)
        runner = onnx.OnnxRunner(onnx_path, threads=threads)
        meta = runner.metadata
        runner.check_signature(meta["scheme"].num_points, meta["input_size"])
        return LandmarkPredictor(runner, meta["scheme"], meta["input_size"], meta["crop"], "onnx", onnx_path,
                                 batch_size, check_shape)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    checkpoint = Checkpoint.load(path)
    runner = TorchRunner(checkpoint.build_model(), device, decoder=checkpoint.decoder, threads=threads)
    return LandmarkPredictor(runner, checkpoint.scheme, checkpoint.input_size, checkpoint.crop, "torch", path,
                             batch_size, check_shape)
