"""The neutral template head: the 68 points and the ring, profile and nose tables.

Millimetres. Head frame: x towards image-right of a frontal face (the subject's left),
y down, z towards the camera; origin between the inner eye corners.
"""

from __future__ import annotations

import numpy as np

from facemarks import schemes

SCHEME = "300w"  # the points follow the iBUG/300W order
NUM_POINTS = 68

# Left half and midline of the 68 points (x, y); the right half is the mirror image.
LEFT_XY = {
    0: (-72.0, 1.0), 1: (-70.8, 19.7), 2: (-68.2, 38.3), 3: (-64.8, 56.8), 4: (-58.2, 74.1),
    5: (-47.3, 89.3), 6: (-33.4, 101.9), 7: (-17.8, 112.0), 8: (0.0, 115.0),
    17: (-60.2, -12.4), 18: (-51.0, -20.4), 19: (-38.4, -22.9), 20: (-25.3, -21.4), 21: (-12.7, -16.9),
    27: (0.0, -2.1), 28: (0.0, 10.5), 29: (0.0, 22.9), 30: (0.0, 35.5),
    31: (-14.3, 43.3), 32: (-7.4, 45.5), 33: (0.0, 47.7),
    36: (-45.0, 0.0), 37: (-37.1, -4.5), 38: (-27.5, -4.3), 39: (-19.5, 1.9), 40: (-28.3, 3.5), 41: (-37.7, 3.4),
    48: (-27.0, 66.0), 49: (-17.5, 61.5), 50: (-7.5, 59.6), 51: (0.0, 61.2),
    57: (0.0, 76.5), 58: (-8.0, 75.8), 59: (-17.5, 72.5),
    60: (-23.5, 66.2), 61: (-8.0, 65.8), 62: (0.0, 66.2), 66: (0.0, 66.8), 67: (-8.0, 66.6),
}

# Depth of the jaw rim (points 0..8): from in front of the ear down to the chin.
JAW_Z = np.array([-73.0, -67.0, -59.0, -49.0, -36.0, -22.0, -9.0, 0.0, 3.0])

# Upper head rings (crown to above the jaw): y, half-width a, rim depth zc, front depth zf,
# back depth bb (the back half is an ellipse of half-depth bb behind the rim).
UPPER_ROWS = np.array([
    [-124.0, 3.0, -86.0, -82.0, 4.0],
    [-119.0, 30.0, -84.0, -60.0, 40.0],
    [-112.0, 44.0, -82.0, -44.0, 62.0],
    [-104.0, 54.0, -80.0, -30.0, 78.0],
    [-95.0, 61.0, -78.0, -19.0, 90.0],
    [-85.0, 65.5, -77.0, -10.0, 98.0],
    [-74.0, 68.0, -76.0, -4.0, 103.0],
    [-62.0, 69.5, -75.0, 0.5, 106.0],
    [-50.0, 70.5, -75.0, 3.5, 108.0],
    [-38.0, 71.0, -74.0, 5.0, 109.0],
    [-26.0, 71.0, -74.0, 6.0, 110.0],
    [-13.0, 71.5, -73.5, 5.5, 110.0],
])
N_UPPER = len(UPPER_ROWS)

# Midline front depth of the lower face (without nose, lips and chin bumps).
PROFILE_Y = np.array([1.0, 20.0, 40.0, 55.0, 70.0, 85.0, 100.0, 110.0, 115.0])
PROFILE_Z = np.array([5.0, 4.5, 7.0, 9.5, 9.5, 8.5, 7.5, 6.0, 3.0])

# Back depth of the jaw rings by jaw parameter t (0 = point 0 level); no back half below.
BACK_T = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
BACK_BB = np.array([108.0, 104.0, 98.0, 88.0, 72.0, 48.0, 20.0, 0.5])
T_BACK_MAX = 3.5

# Nose: parameter tau runs from above the nasion (0) to the nose base (1); u across (-1..1).
NOSE_TAU = np.array([0.0, 0.1, 0.33, 0.55, 0.78, 0.9, 1.0])
NOSE_Y = np.array([-8.0, -2.1, 10.5, 22.9, 35.5, 42.0, 47.7])
NOSE_W = np.array([6.0, 6.5, 7.5, 8.5, 11.0, 14.5, 15.1])
NOSE_H = np.array([1.5, 4.0, 10.0, 15.5, 21.5])  # at tau 0 .. 0.78 (the tip)
TAU_TIP = 0.78
NOSE_POINTS = {27: (0.1, 0.0), 28: (0.33, 0.0), 29: (0.55, 0.0), 30: (TAU_TIP, 0.0),
                31: (1.0, -14.3 / 15.1), 32: (1.0, -7.4 / 15.1), 33: (1.0, 0.0),
                34: (1.0, 7.4 / 15.1), 35: (1.0, 14.3 / 15.1)}

# Mesh resolution.
JAW_ROWS_PER_POINT = 2
FRONT_STEPS = 22  # quads across the front half (even: a column at the midline)
BACK_STEPS = 4  # quads across each side of the back half
NOSE_ROWS, NOSE_COLS = 14, 8


def _template_xy() -> np.ndarray:
    """(68, 2) template x, y (mm), the right half mirrored from the left through the
    scheme's flip permutation (the index of every point's mirror partner)."""
    mirror = schemes.get(SCHEME).flip_permutation
    xy = np.full((NUM_POINTS, 2), np.nan)
    for index, value in LEFT_XY.items():
        xy[index] = value
        xy[mirror[index]] = (-value[0], value[1])
    return xy


TEMPLATE_XY = _template_xy()
