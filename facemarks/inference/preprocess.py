"""Preprocessing shared by every backend: images in, network inputs out.

The model contract (facemarks.models.base) is float32 (B, 3, S, S) RGB in [0, 1]; the
ImageNet normalisation happens inside the model (and inside the exported ONNX graph), so
this module only cuts crops and converts their layout. It imports no backend, so the
PyTorch predictor and the ONNX module can both use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facemarks.data.sample import read_image
from facemarks.geometry.affine import warp_antialiased


def crops_to_input(crops) -> np.ndarray:
    """Crops as the model input: uint8 (B, S, S, 3) RGB -> float32 (B, 3, S, S) in [0, 1];
    float (B, 3, S, S) arrays or tensors (already in [0, 1]) pass through."""
    if hasattr(crops, "detach"):  # a torch tensor (without importing torch here)
        crops = crops.detach().cpu().numpy()
    crops = np.asarray(crops)
    if crops.dtype == np.uint8:
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"uint8 crops must be (B, S, S, 3) RGB, got shape {crops.shape}")
        return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"float crops must be (B, 3, S, S) in [0, 1], got shape {crops.shape}")
    return crops.astype(np.float32, copy=False)


def cut_crops(image: np.ndarray, matrices: np.ndarray, input_size: int) -> np.ndarray:
    """uint8 (K, S, S, 3) crops of an RGB image, one per source->input matrix (K, 2, 3),
    shrunk with area averaging first where a crop reduces strongly (as the training crops)."""
    return np.stack([warp_antialiased(image, matrix, input_size) for matrix in matrices])


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
