"""Pose and projection: head frame -> image pixels."""

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
