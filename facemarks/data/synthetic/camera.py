"""Pose and projection: head frame -> image pixels (0-based pixel-centre)."""

from __future__ import annotations

import math

import numpy as np


class Camera:
    """Head frame -> image pixels: rotation (yaw, then pitch), perspective from `distance`,
    then roll, scale and shift in the image."""

    def __init__(self, yaw, pitch, roll, distance):
        cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
        r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
        r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        self.rotation = r_pitch @ r_yaw
        self.distance = float(distance)
        cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        self.roll = np.array([[cr, sr], [-sr, cr]])  # counter-clockwise in a y-down image
        self.scale = 1.0
        self.shift = np.zeros(2)
        # The camera in head coordinates (for visibility and silhouettes).
        self.eye_head = self.rotation.T @ np.array([0.0, 0.0, self.distance])

    def to_camera(self, p):
        """Head-frame points or normals (..., 3) -> camera frame (rotation only)."""
        return p @ self.rotation.T

    def project(self, p):
        """Head-frame points (..., 3) -> image pixels (..., 2)."""
        q = self.to_camera(p)
        depth = self.distance - q[..., 2]
        uv = self.distance * q[..., :2] / depth[..., None]
        return self.scale * (uv @ self.roll.T) + self.shift

    def facing(self, p, normal):
        """> 0 where a surface with outward `normal` (head frame) at p faces the camera."""
        return np.sum(normal * (self.eye_head - p), axis=-1)

    def place(self, points, face_px, face_width, position, size, margin=3.0):
        """Choose scale and shift: a frontal jaw (144 mm template width times face_width)
        spans face_px pixels, and the points' box sits at `position` (0..1 per axis) in
        the free room of a size x size image, `margin` pixels from the border (centred
        when it does not fit)."""
        self.scale = face_px / (2.0 * 72.0 * face_width)
        uv = self.project(points)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        room = (size - 1 - 2 * margin) - (hi - lo)
        start = margin + np.maximum(room, 0.0) * np.asarray(position) + np.minimum(room, 0.0) * 0.5
        self.shift = start - lo
