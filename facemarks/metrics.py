"""Landmark accuracy metrics: NME, failure rate, CED / AUC, per-landmark and per-subset summaries.

Conventions
-----------
* Points are (N, 2) or (B, N, 2) arrays, x then y, in any one unit (pixels of the source image,
  pixels of the crop, or normalised coordinates); the NME is unit-free because the error and the
  normaliser are measured in the same unit. Torch tensors are accepted and converted to numpy.
* ``nme`` returns one value per image. The benchmark numbers (mean NME, FR, AUC) are computed
  from that per-image array, as in the published evaluation code.
* Normalisers (all measured on the ground truth):

  ``inter_ocular``  distance between the outer eye corners of the scheme
                    (300W 36/45, WFLW 60/72, COFW 8/9; ``Scheme.outer_eye_corners``);
  ``inter_pupil``   distance between the eye centres, each the mean of the scheme's
                    ``left_eye`` / ``right_eye`` points (the pupils where the scheme annotates them);
  ``box``           sqrt(w * h) of the ground-truth landmark bounding box;
  ``image``         ``image_size`` given by the caller (scalar or one value per image). With
                    coordinates normalised to [0, 1] of the network input, ``image_size=1``: this is
                    the reference experiment's "NME normalised by the image size".

* CED / AUC / FR reproduce the benchmarks' ``compute_fr_and_auc`` (LAB/WFLW, AWing, HRNet,
  PIPNet evaluation code)::

      xs = np.arange(0, thres + step, step)
      ys = np.array([np.count_nonzero(nmes <= x) for x in xs]) / float(num_data)
      fr = 1.0 - ys[-1]
      auc = simps(ys, x=xs) / thres

  ``simps`` was scipy's Simpson rule before scipy 1.11, whose default for an even number of
  samples was ``even="avg"``; scipy >= 1.11 changed that default and later renamed ``simps`` to
  ``simpson``. ``auc`` therefore uses its own copy of the old rule (``_simpson_avg``) so that
  published numbers are reproduced whatever scipy is installed. Note the grid's float quirk, kept on
  purpose: for ``thres=0.05`` ``np.arange`` yields 502 samples ending at 0.0501, so the benchmarks'
  AUC@0.05 integrates slightly past 0.05 (and divides by 0.05).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

NORMS = ("inter_ocular", "inter_pupil", "box", "image")


def _as_numpy(array) -> np.ndarray:
    """numpy float64 view of a numpy array, list or torch tensor (without importing torch)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _as_batch(pred, gt) -> tuple[np.ndarray, np.ndarray, bool]:
    """(B, N, 2) float64 copies of pred and gt, and whether the input was a single (N, 2) face."""
    pred, gt = _as_numpy(pred), _as_numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    single = pred.ndim == 2
    if single:
        pred, gt = pred[None], gt[None]
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"points must be (N, 2) or (B, N, 2), got {pred.shape}")
    return pred, gt, single


def _resolve_scheme(scheme, num_points: int):
    """A Scheme object from None (inferred from the number of points), a name, or a Scheme."""
    from facemarks import schemes  # imported here: metrics need it only for the eye-based norms

    if scheme is None:
        return schemes.for_num_points(num_points)
    if isinstance(scheme, str):
        scheme = schemes.get(scheme)
    if scheme.num_points != num_points:
        raise ValueError(f"scheme {scheme.name!r} has {scheme.num_points} points, the arrays have {num_points}")
    return scheme


def normalizer(gt, norm: str = "inter_ocular", scheme=None, image_size=None) -> np.ndarray:
    """Per-image normalising distance (B,) measured on the ground truth gt (B, N, 2) or (N, 2).

    See the module docstring for the definitions of the four norms.
    """
    gt = _as_numpy(gt)
    if gt.ndim == 2:
        gt = gt[None]
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if norm == "image":
        if image_size is None:
            raise ValueError("norm='image' needs image_size (1 for coordinates normalised to [0, 1])")
        return np.broadcast_to(_as_numpy(image_size), (gt.shape[0],)).copy()
    if norm == "box":
        extent = gt.max(axis=1) - gt.min(axis=1)  # (B, 2): width, height
        return np.sqrt(extent[:, 0] * extent[:, 1])
    scheme = _resolve_scheme(scheme, gt.shape[1])
    if norm == "inter_ocular":
        first, second = scheme.outer_eye_corners
        return np.linalg.norm(gt[:, first] - gt[:, second], axis=-1)
    left_centre = gt[:, list(scheme.left_eye)].mean(axis=1)
    right_centre = gt[:, list(scheme.right_eye)].mean(axis=1)
    return np.linalg.norm(left_centre - right_centre, axis=-1)


def _point_errors(pred, gt, norm, scheme, image_size) -> tuple[np.ndarray, bool]:
    """(B, N) point-to-point distances divided by each image's normaliser."""
    pred, gt, single = _as_batch(pred, gt)
    distances = np.linalg.norm(pred - gt, axis=-1)
    norms = normalizer(gt, norm, scheme, image_size)
    if np.any(norms <= 0) or not np.all(np.isfinite(norms)):
        raise ValueError(f"{norm} normaliser is zero or not finite for some images: {norms}")
    return distances / norms[:, None], single


def _visibility(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = _as_numpy(mask).astype(bool)
    if mask.ndim == 1:
        mask = mask[None]
    if mask.shape != shape:
        raise ValueError(f"mask must be (B, N) = {shape}, got {mask.shape}")
    return mask


def nme(pred, gt, norm: str = "inter_ocular", scheme=None, image_size=None, mask=None) -> np.ndarray:
    """Normalised mean error of each image, shape (B,) ((1,) for a single (N, 2) face).

    Per image: the mean over points of the Euclidean distance between predicted and true point,
    divided by the image's normaliser (see the module docstring; the scheme is inferred from N when
    not given). ``mask`` (B, N) marks the points to count (e.g. COFW's visible points); an image
    with no counted point gets NaN.
    """
    errors, _ = _point_errors(pred, gt, norm, scheme, image_size)
    visible = _visibility(mask, errors.shape)
    counts = visible.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(visible, errors, 0.0).sum(axis=1) / counts


def per_landmark_error(pred, gt, norm: str = "inter_ocular", scheme=None, image_size=None, mask=None) -> np.ndarray:
    """Mean normalised error of each point over the images, shape (N,).

    Same normalisation as ``nme``; with ``mask`` each point is averaged over the images where it is
    counted (NaN for a point counted nowhere).
    """
    errors, _ = _point_errors(pred, gt, norm, scheme, image_size)
    visible = _visibility(mask, errors.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(visible, errors, 0.0).sum(axis=0) / visible.sum(axis=0)


def failure_rate(nmes, threshold: float = 0.1) -> float:
    """Share of images whose NME is above ``threshold`` (strictly).

    The benchmarks compute FR as 1 - CED(xs[-1]); that is the same number except where the grid
    overshoots (thres=0.05 ends at 0.0501, so their FR@0.05 counts NME > 0.0501).
    """
    nmes = _as_numpy(nmes).ravel()
    if nmes.size == 0:
        return float("nan")
    return float(np.mean(nmes > threshold))


def ced(nmes, threshold: float = 0.1, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: xs = np.arange(0, threshold + step, step) and
    ys[i] = share of images with NME <= xs[i], exactly as the benchmarks' code samples it."""
    nmes = _as_numpy(nmes).ravel()
    xs = np.arange(0, threshold + step, step)
    # Sorting then counting gives count_nonzero(nmes <= x) for every x at once.
    ys = np.searchsorted(np.sort(nmes), xs, side="right") / float(nmes.size)
    return xs, ys


def _simpson_avg(y: np.ndarray, x: np.ndarray) -> float:
    """Composite Simpson rule on samples (x, y), as scipy.integrate.simps(y, x=x) did before
    scipy 1.11 (default even="avg"): with an even number of samples, the average of
    (Simpson on the first N-1 samples + trapezoid on the last interval) and
    (trapezoid on the first interval + Simpson on the last N-1 samples)."""

    def simpson_odd(ys: np.ndarray, xs: np.ndarray) -> float:
        # Simpson on an odd number of samples; the pair formula allows unequal spacing
        # (np.arange's grid is uniform only up to rounding).
        h = np.diff(xs)
        h0, h1 = h[0::2], h[1::2]
        hsum, hprod, ratio = h0 + h1, h0 * h1, h0 / h1
        terms = hsum / 6.0 * (
            ys[0:-2:2] * (2.0 - 1.0 / ratio) + ys[1:-1:2] * (hsum * hsum / hprod) + ys[2::2] * (2.0 - ratio)
        )
        return float(np.sum(terms))

    if y.size < 2:
        return 0.0
    if y.size % 2 == 1:
        return simpson_odd(y, x)
    if y.size == 2:
        return float(0.5 * (x[1] - x[0]) * (y[0] + y[1]))
    simpson_first = simpson_odd(y[:-1], x[:-1]) + 0.5 * (x[-1] - x[-2]) * (y[-1] + y[-2])
    simpson_last = 0.5 * (x[1] - x[0]) * (y[0] + y[1]) + simpson_odd(y[1:], x[1:])
    return float(0.5 * (simpson_first + simpson_last))


def auc(nmes, threshold: float = 0.1, step: float = 1e-4) -> float:
    """Area under the CED curve from 0 to ``threshold``, divided by ``threshold`` (1 = perfect).

    Simpson's rule on the benchmarks' 1e-4 grid, reproducing their ``compute_fr_and_auc``
    (see the module docstring for the grid and the scipy version caveat).
    """
    xs, ys = ced(nmes, threshold, step)
    if ys.size == 0 or not np.all(np.isfinite(ys)):
        return float("nan")
    return _simpson_avg(ys, xs) / threshold


def percentiles(nmes, q: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """{"p50": ..., "p90": ..., ...}: NME percentiles (numpy's default linear interpolation)."""
    nmes = _as_numpy(nmes).ravel()
    result = {}
    for value in q:
        key = f"p{value:g}"
        result[key] = float(np.percentile(nmes, value)) if nmes.size else float("nan")
    return result


def summarize(nmes, threshold: float = 0.1, step: float = 1e-4) -> dict[str, float]:
    """dict(mean, median, fr, auc, p50, p90, p99, n) of per-image NMEs; fr and auc at ``threshold``.

    NaN NMEs (images with no counted point) are left out.
    """
    nmes = _as_numpy(nmes).ravel()
    nmes = nmes[np.isfinite(nmes)]
    empty = nmes.size == 0
    summary = {
        "mean": float("nan") if empty else float(np.mean(nmes)),
        "median": float("nan") if empty else float(np.median(nmes)),
        "fr": failure_rate(nmes, threshold),
        "auc": float("nan") if empty else auc(nmes, threshold, step),
    }
    summary.update(percentiles(nmes, (50, 90, 99)))
    summary["n"] = int(nmes.size)
    return summary


def _subset_masks(attributes, num_images: int) -> dict[str, np.ndarray]:
    """Boolean image masks per subset from a list of per-image attribute dicts or a name -> mask dict."""
    if isinstance(attributes, Mapping):
        masks = {name: _as_numpy(mask).astype(bool).ravel() for name, mask in attributes.items()}
    else:
        attributes = list(attributes)
        if len(attributes) != num_images:
            raise ValueError(f"{len(attributes)} attribute dicts for {num_images} images")
        names: list[str] = []
        for attrs in attributes:
            for name, value in attrs.items():
                # Only scalar flags define subsets (COFW's per-point "occluded" tuple does not).
                if np.ndim(value) == 0 and name not in names:
                    names.append(name)
        masks = {}
        for name in names:
            flags = []
            for attrs in attributes:
                value = attrs.get(name, 0)
                flags.append(bool(value) if np.ndim(value) == 0 else False)
            masks[name] = np.array(flags, dtype=bool)
    for name, mask in masks.items():
        if mask.shape != (num_images,):
            raise ValueError(f"subset {name!r}: mask has {mask.size} entries for {num_images} images")
    return masks


def per_subset(nmes, attributes, threshold: float = 0.1, step: float = 1e-4) -> dict[str, dict]:
    """Summary (see ``summarize``) of the images in each subset.

    ``attributes`` is either a list with one dict per image (e.g. WFLW's
    {"pose": 1, "expression": 0, ...}; an image belongs to every subset whose flag is truthy) or a
    dict subset name -> boolean mask (B,).
    """
    nmes = _as_numpy(nmes).ravel()
    masks = _subset_masks(attributes, nmes.size)
    return {name: summarize(nmes[mask], threshold, step) for name, mask in masks.items()}
