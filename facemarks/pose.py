"""Head pose (yaw, pitch, roll in degrees) from 2-D facial landmarks.

Convention: exactly that of the synthetic renderer (facemarks/data/synthetic/camera.py),
so a rendered face's attributes are the ground truth of what this module returns.

Head frame (millimetres, facemarks/data/synthetic/template.py): x towards image-right of
a frontal face, y down, z towards the camera; origin between the inner eye corners.

Rotation, in this order: yaw about the head's y axis, then pitch about the x axis, then
roll in the image plane:

    R_yaw   = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]     (yaw > 0: the nose moves image-right)
    R_pitch = [[1, 0, 0], [0, cp, -sp], [0, sp, cp]]     (pitch > 0: the face tilts up)
    q = R_pitch @ R_yaw @ p
    roll: (u, v) -> (cr u + sr v, -sr u + cr v)          (roll > 0: counter-clockwise as
                                                          seen in the y-down image)

Camera model: a pinhole camera looking along -z of the head frame, with square pixels,
focal length f pixels and the principal point at the midpoint of the inner eye corners
(the head frame's origin: like the renderer, which keeps the head on the optical axis and
then places the picture in the image, so the pose is relative to the line of sight and
does not change when the face moves in the image or the image is cropped). f = max(W, H)
of the image when `image_size` is given (a 53-degree field of view across the longer
side), else 4 x the longer side of the landmark box (a face about 0.6 m from such a
camera). On the synthetic faces the choice of f moves the mean absolute errors by at
most 1.6 degrees (pitch of near-frontal faces; benchmarks/pose_accuracy.py).

Method: a scaled-orthographic least-squares fit (a linear 2 x 3 map, made a rotation) of
the 3-D mean face (the renderer's neutral template head) to the points gives a first
pose; one cv2.solvePnP (SOLVEPNP_ITERATIVE, Levenberg-Marquardt) started from it refines
it under perspective. The orthographic fit is also the fallback for near-profile faces:
it cannot fail on non-degenerate points and has no local minima, so when PnP fails or
gives an implausible answer (non-finite, behind the camera, a reprojection error above a
tenth of the face size, or an angle more than 25 degrees from the orthographic pose),
the orthographic pose is returned. Which points enter the fits: the inner points (brows,
eyes, nose, mouth) always; the jaw points of both sides when the face is within 10
degrees of frontal (from a first fit on the inner points), else those of the near side
only. A far-side jaw point slides along the contour with the pose (landmark marching, as
in 300W annotations and the renderer), so it sits on no fixed 3-D point of the face.

98-point (WFLW) input is reduced to 68 points by `schemes.to_68` first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facemarks import schemes
from facemarks.data.synthetic.head import HeadModel
from facemarks.errors import DataError

# The renderer's neutral template head (68, 3), millimetres, head frame.
MEAN_FACE = HeadModel().template_points()
_INNER = np.arange(17, 68)  # brows, nose, eyes, mouth: fixed points of the face
_NEAR_JAW = (np.arange(0, 8), np.arange(9, 17))  # image-left, image-right jaw (no chin)
_FLIP_Z = np.diag([1.0, 1.0, -1.0])  # head frame (z to the camera) <-> OpenCV (z away)
_BOTH_JAWS_YAW = 10.0  # degrees: within it both jaw contours are near the rim
_MAX_REPROJECTION = 0.1  # of the landmark-box diagonal: beyond it PnP's answer is implausible
_MAX_PNP_CHANGE = 25.0  # degrees from the orthographic pose: beyond it PnP found another minimum


@dataclass(frozen=True)
class HeadPose:
    """Head pose in degrees, in the renderer's convention (see the module doc)."""

    yaw: float
    pitch: float
    roll: float

    def as_dict(self) -> dict:
        """{"yaw", "pitch", "roll"} rounded to 0.1 degree (far below the method's error)."""
        return {"yaw": round(float(self.yaw), 1), "pitch": round(float(self.pitch), 1),
                "roll": round(float(self.roll), 1)}


def rotation_matrix(pose: HeadPose) -> np.ndarray:
    """(3, 3) rotation head frame -> camera frame (x image-right, y down, z towards the
    viewer) of a pose: the roll about z after R_pitch @ R_yaw."""
    cy, sy = math.cos(math.radians(pose.yaw)), math.sin(math.radians(pose.yaw))
    cp, sp = math.cos(math.radians(pose.pitch)), math.sin(math.radians(pose.pitch))
    cr, sr = math.cos(math.radians(pose.roll)), math.sin(math.radians(pose.roll))
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    r_roll = np.array([[cr, sr, 0.0], [-sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return r_roll @ r_pitch @ r_yaw


def pose_from_rotation(rotation) -> HeadPose:
    """The inverse of `rotation_matrix`: the third row of R_roll @ R_pitch @ R_yaw is
    (-cp sy, sp, cp cy) whatever the roll, and its second column is cp (sr, cr, .)."""
    r = np.asarray(rotation, dtype=np.float64)
    pitch = math.degrees(math.asin(float(np.clip(r[2, 1], -1.0, 1.0))))
    yaw = math.degrees(math.atan2(-r[2, 0], r[2, 2]))
    roll = math.degrees(math.atan2(r[0, 1], r[1, 1]))
    return HeadPose(yaw, pitch, roll)


def head_pose(points, scheme, image_size=None, *, where="landmarks") -> HeadPose:
    """Head pose of one face from its landmarks.

    points: (N, 2) 0-based pixel-centre coordinates; scheme: a 68-point ("300w") or
    98-point ("wflw") scheme name or Scheme; image_size: (W, H) of the image, or None
    (see the module doc for the focal length then). Raises DataError naming `where` on
    a wrong point count, non-finite or degenerate points, or another scheme.
    """
    pts = _points_68(points, scheme, where)
    focal = _focal_length(pts, image_size, where)
    indices = _fit_indices(_orthographic_pose(pts, _INNER, where))
    coarse = _orthographic_pose(pts, indices, where)
    refined = _perspective_pose(pts, indices, coarse, focal)
    return refined if refined is not None else coarse


def head_poses(samples) -> np.ndarray:
    """(len(samples), 3) float64 [yaw, pitch, roll] degrees of facemarks.data.sample.Sample
    records, from their landmarks and scheme (no image is read: f as for image_size=None)."""
    out = np.zeros((len(samples), 3))
    for i, sample in enumerate(samples):
        where = sample.origin or sample.image_path
        pose = head_pose(sample.landmarks, sample.scheme, where=where)
        out[i] = (pose.yaw, pose.pitch, pose.roll)
    return out


def axis_endpoints(pose: HeadPose, origin, length: float) -> np.ndarray:
    """(3, 2) image points at the ends of the head's x (image-right of a frontal face),
    y (down) and z (towards the camera) axes, `length` pixels long, drawn from `origin`
    (e.g. the nose tip) under the scaled-orthographic projection."""
    rotation = rotation_matrix(pose)
    return np.asarray(origin, dtype=np.float64)[None, :] + length * rotation[:2].T


def _points_68(points, scheme, where) -> np.ndarray:
    scheme = schemes.get(scheme)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(where, f"head pose: landmarks must be (N, 2), got shape {pts.shape}")
    if pts.shape[0] != scheme.num_points or scheme.num_points not in (68, 98):
        raise DataError(where, f"head pose: needs 68 (300w) or 98 (wflw) points, got {pts.shape[0]} "
                               f"points of scheme {scheme.name!r} ({scheme.num_points})")
    if not np.all(np.isfinite(pts)):
        raise DataError(where, "head pose: landmark coordinates contain NaN or infinity")
    return schemes.to_68(pts, scheme)


def _fit_indices(first: HeadPose) -> np.ndarray:
    """The inner points, and the jaw points of both sides near frontal, else of the near
    side (a face turned image-right, yaw > 0, shows its image-left cheek)."""
    if abs(first.yaw) < _BOTH_JAWS_YAW:
        return np.arange(68)
    near = _NEAR_JAW[0] if first.yaw > 0 else _NEAR_JAW[1]
    return np.concatenate([near, _INNER])


def _orthographic_pose(pts, indices, where) -> HeadPose:
    """Least-squares scaled-orthographic camera (a 2 x 3 linear map plus a shift) from
    the mean face to the points, its rows made orthonormal (the nearest rotation rows)."""
    model = MEAN_FACE[indices] - MEAN_FACE[indices].mean(axis=0)
    image = pts[indices] - pts[indices].mean(axis=0)
    linear = np.linalg.lstsq(model, image, rcond=None)[0]  # image = model @ linear
    u, scales, vt = np.linalg.svd(linear.T, full_matrices=False)  # (2, 3) = u s vt
    if not scales[1] > 1e-6 * scales[0] > 0:  # the image of the face is flat: no rotation to find
        raise DataError(where, "head pose: the landmarks are degenerate (all on one line or point)")
    rows = u @ vt
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    return pose_from_rotation(rotation)


def _focal_length(pts, image_size, where) -> float:
    if image_size is None:
        return 4.0 * float(np.max(np.ptp(pts, axis=0)))
    size = np.asarray(image_size, dtype=np.float64).reshape(-1)
    if size.shape != (2,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise DataError(where, f"head pose: image_size must be (width, height) > 0, got {image_size!r}")
    return float(size.max())


def _perspective_pose(pts, indices, guess: HeadPose, focal: float) -> HeadPose | None:
    """One cv2.solvePnP from `guess` under a pinhole camera with the principal point at
    the midpoint of the inner eye corners; None when it fails or is implausible."""
    centre = 0.5 * (pts[39] + pts[42])
    camera = np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])
    model = MEAN_FACE[indices] @ _FLIP_Z  # OpenCV's object frame: z away from the camera
    image = pts[indices]
    rotation = _FLIP_Z @ rotation_matrix(guess) @ _FLIP_Z
    # The distance from the sizes (the mean face's extent over the points', times f), the
    # shift so that the model's centre projects onto the points' centre.
    depth = focal * np.linalg.norm(np.ptp(model[:, :2], axis=0)) / np.linalg.norm(np.ptp(image, axis=0))
    rotated = rotation @ model.mean(axis=0)
    offset = (image.mean(axis=0) - centre) * depth / focal
    tvec = np.array([[offset[0] - rotated[0]], [offset[1] - rotated[1]], [depth - rotated[2]]])
    rvec, _ = cv2.Rodrigues(rotation)
    try:
        ok, rvec, tvec = cv2.solvePnP(model, image, camera, None, rvec, tvec,
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    except cv2.error:
        return None
    if not ok or not (np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec))) or tvec[2, 0] <= 0:
        return None
    projected, _ = cv2.projectPoints(model, rvec, tvec, camera, None)
    error = np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - image) ** 2, axis=1)))
    if not error <= _MAX_REPROJECTION * np.linalg.norm(np.ptp(image, axis=0)):
        return None
    pose = pose_from_rotation(_FLIP_Z @ cv2.Rodrigues(rvec)[0] @ _FLIP_Z)
    change = max(abs(_wrap(pose.yaw - guess.yaw)), abs(pose.pitch - guess.pitch), abs(_wrap(pose.roll - guess.roll)))
    return pose if change <= _MAX_PNP_CHANGE else None


def _wrap(degrees: float) -> float:
    """An angle difference in [-180, 180)."""
    return (degrees + 180.0) % 360.0 - 180.0
