"""The head surface in template space: rings of the head, face relief, hairline, nose.

The head is a stack of rings indexed by a row coordinate rho (0 .. 11 the upper head,
12 + t for jaw point t in 0..8) and a ring angle theta; `HeadModel` evaluates it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from facemarks.data.synthetic.numeric import catmull_rom, smoothstep
from facemarks.data.synthetic.template import (
    BACK_BB,
    BACK_T,
    JAW_Z,
    LEFT_XY,
    N_UPPER,
    NOSE_H,
    NOSE_POINTS,
    NOSE_TAU,
    NOSE_W,
    NOSE_Y,
    NUM_POINTS,
    PROFILE_Y,
    PROFILE_Z,
    T_BACK_MAX,
    TAU_TIP,
    TEMPLATE_XY,
    UPPER_ROWS,
)


def bumps(x, y):
    """Relief of the face front (mm towards the camera) in template coordinates."""
    ax = np.abs(x)
    x2 = x * x
    eye_x2 = (ax - 32.0) ** 2
    eye_y2 = (y - 0.5) ** 2
    z = 3.0 * np.exp(-((y + 17.0) ** 2) * (1.0 / 64.0) - (x2 * x2) * (1.0 / 48.0**4))  # brow ridge
    z -= 5.5 * np.exp(-eye_x2 * (1.0 / 17.0**2) - eye_y2 * (1.0 / 12.0**2))  # eye sockets
    z += 3.0 * np.exp(-eye_x2 * (1.0 / 11.0**2) - eye_y2 * (1.0 / 5.5**2))  # eyeballs
    z += 4.0 * np.exp(-((ax - 45.0) ** 2 + (y - 28.0) ** 2) * (1.0 / 14.0**2))  # cheekbones
    z += 4.5 * np.exp(-x2 * (1.0 / 19.0**2) - (y - 62.5) ** 2 * (1.0 / 4.5**2))  # upper lip
    z += 4.5 * np.exp(-x2 * (1.0 / 17.0**2) - (y - 71.0) ** 2 * (1.0 / 5.0**2))  # lower lip
    z += 2.0 * np.exp(-x2 * (1.0 / 11.0**2) - (y - 53.0) ** 2 * (1.0 / 6.0**2))  # philtrum
    z += 4.0 * np.exp(-x2 * (1.0 / 18.0**2) - (y - 100.0) ** 2 * (1.0 / 10.0**2))  # chin
    return z


def _row_params_exact(rho):
    """Ring parameters at row coordinate rho (see `HeadModel.row_params`), from the tables."""
    rho = np.asarray(rho, dtype=np.float64)
    upper = rho < N_UPPER
    knots = np.arange(N_UPPER + 1, dtype=np.float64)
    jaw0 = np.array([LEFT_XY[0][1], -LEFT_XY[0][0], JAW_Z[0], PROFILE_Z[0], BACK_BB[0]])
    table = np.vstack([UPPER_ROWS[:, [0, 1, 2, 3, 4]], jaw0])
    up = [np.interp(np.minimum(rho, N_UPPER), knots, table[:, k]) for k in range(5)]
    t = np.clip(rho - N_UPPER, 0.0, 8.0)
    jaw = np.array([[LEFT_XY[j][0], LEFT_XY[j][1], JAW_Z[j]] for j in range(9)])
    rim = catmull_rom(jaw, t)
    y_jaw = rim[..., 1]
    zf_jaw = np.interp(y_jaw, PROFILE_Y, PROFILE_Z)
    zf_jaw = np.where(t > 7.0, zf_jaw + (rim[..., 2] - zf_jaw) * smoothstep(7.0, 8.0, t), zf_jaw)
    bb_jaw = np.where(t <= T_BACK_MAX, np.interp(t, BACK_T, BACK_BB), 0.0)
    y = np.where(upper, up[0], y_jaw)
    a = np.where(upper, up[1], -rim[..., 0])
    zc = np.where(upper, up[2], rim[..., 2])
    zf = np.where(upper, up[3], zf_jaw)
    bb = np.where(upper, up[4], bb_jaw)
    return y, a, zc, zf, bb


def _fade(c):
    """Bumps fade out towards the rim (c = cos(theta) of the ring angle)."""
    return smoothstep(0.0, 0.45, c)


def _hairline(theta, look):
    """Template y of the hairline at ring angle theta (radians): the forehead line, down
    the temples to the sideburns, up over the ears, down to the nape at the back."""
    deg = np.abs(np.degrees(theta))
    front = look.hairline + 8.0 * (np.minimum(deg, 55.0) / 55.0) ** 2
    side = look.hair_sides
    limit = np.interp(deg, [0.0, 55.0, 92.0], [0.0, 0.0, 1.0])
    line = front + (side - front) * limit
    line = line - np.exp(-(((deg - 120.0) / 14.0) ** 2)) * max(0.0, side + 8.0)  # above the ear
    return np.where(deg > 150.0, np.maximum(line, side + 25.0 * smoothstep(150.0, 170.0, deg)), line)


def hairline_y(theta, look, forehead_y: float | None = None):
    """Template y of the hairline at ring angle theta (radians); forehead_y: that of a head
    whose forehead hairline is at forehead_y instead of look.hairline (same sides)."""
    if forehead_y is not None:
        look = dataclasses.replace(look, hairline=float(forehead_y))
    return _hairline(np.asarray(theta, dtype=np.float64), look)


def hair_distance(y, theta, look):
    """Signed template distance (mm) below the hairline: negative where there is hair."""
    return y - _hairline(theta, look)


class HeadModel:
    """The template head's surface. Its ring parameters are read from a fine lookup table
    (exact evaluation is a spline per call); the table is built with the model, so build
    one model per render and pass it along."""

    ROW_STEP = 1.0 / 192.0

    def __init__(self):
        self._row_grid = np.arange(0.0, N_UPPER + 8.0 + self.ROW_STEP / 2, self.ROW_STEP)
        self._row_table = np.stack(_row_params_exact(self._row_grid))
        # Rows of the face front by height, for depth lookups at a template (x, y).
        self._front_rows = self.row_params(np.linspace(0.0, N_UPPER + 8.0, 400))[:4]

    def row_params(self, rho):
        """Ring parameters at row coordinate rho: y, half-width a, rim depth zc, front
        depth zf, back depth bb (0: no back half), interpolated linearly in the table."""
        index = np.clip(np.asarray(rho, dtype=np.float64) / self.ROW_STEP, 0.0, len(self._row_grid) - 1.000001)
        i = index.astype(np.int64)
        frac = index - i
        lo, hi = self._row_table[:, i], self._row_table[:, i + 1]
        values = lo + (hi - lo) * frac
        return values[0], values[1], values[2], values[3], values[4]

    def head_surface(self, rho, theta, look):
        """Template-space head surface points (..., 3) at row coordinates rho and ring angles
        theta (radians; |theta| <= pi/2 is the front half). Hair volume included."""
        rho, theta = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(theta, dtype=np.float64))
        y, a, zc, zf, bb = self.row_params(rho)
        s, c = np.sin(theta), np.cos(theta)
        front = np.abs(theta) <= np.pi / 2
        # The back half narrows with its depth, so towards the jaw it closes onto the rim.
        narrow = np.where(front, 0.0, 1.0 - np.minimum(bb / 60.0, 1.0))
        x = a * (s - narrow * (s - np.sign(theta)))
        z_front = zc + (zf - zc) * c + bumps(x, y) * _fade(c)
        z_back = zc + bb * c
        z = np.where(front, z_front, z_back)
        return _add_hair_volume(np.stack([x, y, z], axis=-1), y, theta, look)

    def surface_z(self, x, y):
        """Template-space depth of the face front at (x, y) (same formula as the ring mesh)."""
        ry, ra, rzc, rzf = self._front_rows
        a = np.interp(y, ry, ra)
        zc = np.interp(y, ry, rzc)
        zf = np.interp(y, ry, rzf)
        c = np.sqrt(np.clip(1.0 - (x / np.maximum(a, 1e-6)) ** 2, 0.0, 1.0))
        return zc + (zf - zc) * c + bumps(x, y) * _fade(c)

    def nose_surface(self, tau, u, nose_height=1.0):
        """Template-space nose surface points (..., 3) at (tau, u): tau from above the
        nasion (0) to the nose base (1), u across (-1..1)."""
        tau, u = np.broadcast_arrays(np.asarray(tau, dtype=np.float64), np.asarray(u, dtype=np.float64))
        w = np.interp(tau, NOSE_TAU, NOSE_W)
        y_ridge = np.interp(tau, NOSE_TAU, NOSE_Y)
        # The lower edge curves up towards the alae (31 and 35 sit higher than 33).
        bend = smoothstep(TAU_TIP, 1.0, tau) * (NOSE_Y[-1] - 43.3) * (np.abs(u) / (14.3 / 15.1)) ** 1.1
        y = y_ridge - bend
        x = u * w
        h_ridge = np.interp(tau, NOSE_TAU[:5], NOSE_H)
        under = np.clip((tau - TAU_TIP) / (1.0 - TAU_TIP), 0.0, 1.0)
        h = np.where(tau <= TAU_TIP, h_ridge, NOSE_H[-1] * np.sqrt(np.clip(1.0 - under**2, 0.0, 1.0)))
        h = h * nose_height
        au = np.abs(u)
        cross = np.where(tau < 0.7, (1.0 - np.minimum(au, 1.0) ** 2.2) ** 0.75, (1.0 - np.minimum(au, 1.0) ** 3.0) ** 0.8)
        alae = 5.0 * smoothstep(0.72, 0.9, tau) * np.exp(-(((au - 0.72) / 0.22) ** 2))
        z = self.surface_z(x, y) + h * cross + alae * (1.0 - au**8)
        return np.stack([x, y, z], axis=-1)

    def template_points(self, nose_height: float = 1.0) -> np.ndarray:
        """(68, 3) template points on the surface (jaw points on the rim)."""
        pts = np.zeros((NUM_POINTS, 3))
        pts[:, :2] = TEMPLATE_XY
        pts[:, 2] = self.surface_z(pts[:, 0], pts[:, 1])
        pts[:17, 2] = JAW_Z[np.minimum(np.arange(17), 16 - np.arange(17))]
        nose = np.array([NOSE_POINTS[i] for i in range(27, 36)])
        pts[27:36] = self.nose_surface(nose[:, 0], nose[:, 1], float(nose_height))
        return pts


def _add_hair_volume(p, y, theta, look):
    """Head points p (..., 3) pushed outwards where the hair is, by up to look.hair_volume."""
    volume = look.hair_volume
    if volume > 0:
        # Thickens over 20 mm above the hairline; thin at ear level, where the contour
        # search of the lower head runs.
        w = smoothstep(0.0, -20.0, hair_distance(y, theta, look)) * smoothstep(0.0, -30.0, y)
        direction = p - np.array([0.0, -25.0, -85.0])
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True) + 1e-9
        p = p + (volume * w)[..., None] * direction
    return p
