"""Everything around the head at 1x: background, long hair, shoulders and neck, glasses,
and the camera's degradations of the finished picture."""

from __future__ import annotations

import cv2
import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.params import Degradation, FaceParams, Look
from facemarks.data.synthetic.raster import SHIFT, blend, cv_colour, pixel_box, to_fixed
from facemarks.data.synthetic.shading import Lighting


def background(seed: int, size: int) -> np.ndarray:
    """A size x size RGB background from its seed (< 0: flat grey): a gradient, smooth
    noise or vignette, random shapes, sometimes a fine texture."""
    if seed < 0:
        return np.full((size, size, 3), 128, np.uint8)
    rng = np.random.default_rng(seed)
    kind = rng.integers(3)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # linear gradient (drawn small, then enlarged)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.linspace(-1, 1, 16)
        g = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) * 0.5 + 0.5
        small = (c0 + (c1 - c0) * g[..., None]).astype(np.float32)
    elif kind == 1:  # smooth noise
        cells = int(rng.integers(2, 9))
        small = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    else:  # vignette
        yy, xx = np.mgrid[0:16, 0:16] / 15.0 - 0.5
        small = (c0 + (c1 - c0) * np.clip(np.hypot(xx, yy) * 1.4, 0, 1)[..., None]).astype(np.float32)
    small = np.clip(small + 0.5, 0, 255).astype(np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC if kind == 1 else cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, 12))):  # random shapes
        col = rng.uniform(0, 255, 3).tolist()
        shape_kind = rng.integers(3)
        cx, cy = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.03, 0.3) * size
        if shape_kind == 0:
            box = cv2.boxPoints(((cx, cy), (r * 2, r * rng.uniform(0.2, 2)), rng.uniform(0, 180)))
            cv2.fillConvexPoly(img, to_fixed(box), col, cv2.LINE_AA, SHIFT)
        elif shape_kind == 1:
            axes = (int(r), int(r * rng.uniform(0.3, 1)))
            cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, col, -1, cv2.LINE_AA)
        else:
            p2 = (int(cx + rng.uniform(-1, 1) * size), int(cy + rng.uniform(-1, 1) * size))
            cv2.line(img, (int(cx), int(cy)), p2, col, int(rng.integers(1, 8)), cv2.LINE_AA)
    if rng.random() < 0.5:  # fine texture
        noise = rng.normal(0.0, rng.uniform(3, 15), (size // 4 + 1, size // 4 + 1)).astype(np.float32)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)
        img = cv2.add(img, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
    return img


def draw_body(image, params: FaceParams, camera: Camera, light: Lighting):
    """Long hair behind the head, shoulders and neck (behind the head; 1x, anti-aliased)."""
    look = params.look
    fw = params.shape.face_width
    hair = np.asarray(look.hair)
    if look.long_hair > 0:
        length = look.long_hair
        phi = np.linspace(0, np.pi, 15)
        top = np.stack([-np.cos(phi) * 88 * fw, -40 - 80 * np.sin(phi), np.full_like(phi, -95.0)], axis=1)
        bottom = np.array([[95 * fw, length, -100.0], [60 * fw, length + 15, -100.0],
                           [-60 * fw, length + 15, -100.0], [-95 * fw, length, -100.0]])
        poly = camera.project(np.concatenate([top, bottom]))
        cv2.fillPoly(image, [to_fixed(poly)], cv_colour(hair * 0.6 * light.tint), cv2.LINE_AA, SHIFT)
    # Shoulders.
    clothes = np.asarray(look.clothes) * light.tint
    sh = np.array([[-60, 170, -70], [-150, 205, -70], [-210, 260, -70], [-230, 420, -70], [230, 420, -70],
                   [210, 260, -70], [150, 205, -70], [60, 170, -70]], dtype=np.float64)
    sh[:, 0] *= fw
    cv2.fillPoly(image, [to_fixed(camera.project(sh))], cv_colour(clothes * 0.8), cv2.LINE_AA, SHIFT)
    _draw_neck(image, look, fw, camera, light)


def _draw_neck(image, look: Look, fw, camera: Camera, light: Lighting):
    """The neck: a cylinder, in the jaw's shadow at the top and lighter further down."""
    size = image.shape[0]
    phi = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    ring = np.stack([47 * fw * np.sin(phi), np.zeros_like(phi), -55.0 + 45.0 * np.cos(phi)], axis=1)
    neck = np.concatenate([ring + [0.0, 45.0, 0.0], ring + [0.0, 240.0, 0.0]])
    hull = cv2.convexHull(camera.project(neck).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    box = pixel_box(hull, size, size)
    if box is not None:
        x0, y0, x1, y1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [to_fixed(hull - [x0, y0])], 255, cv2.LINE_AA, SHIFT)
        top, bottom = camera.project(np.array([[0.0, 100.0, -10.0], [0.0, 175.0, -10.0]]))
        axis = bottom - top
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        t = np.clip(((xx - top[0]) * axis[0] + (yy - top[1]) * axis[1]) / float(axis @ axis), 0.0, 1.0)
        shade = (0.42 + 0.4 * t) * (light.ambient + 0.6 * light.diffuse)
        skin = (np.asarray(look.skin) * light.tint).astype(np.float32)
        colour = np.clip(shade[..., None] * skin + 0.5, 0, 255).astype(np.uint8)
        blend(box.of(image), colour, mask)


def draw_glasses(image, look: Look, camera: Camera, pts3):
    """Frames in front of the eyes and a bridge (1x, anti-aliased)."""
    colour = cv_colour(look.glasses_colour)
    thick = max(1, int(round(camera.scale * 1.6)))
    phi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    centres = []
    for idx in ([36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47]):
        c = pts3[idx].mean(axis=0)
        c[2] = pts3[idx, 2].max() + 12.0
        # A rounded rectangle (a squashed superellipse) in front of the eye.
        cos, sin = np.cos(phi), np.sin(phi)
        ring = c + np.stack([23.0 * np.sign(cos) * np.abs(cos) ** 0.7, 15.0 * np.sign(sin) * np.abs(sin) ** 0.7 + 2.0,
                             np.zeros_like(phi)], axis=1)
        cv2.polylines(image, [to_fixed(camera.project(ring))], True, colour, thick, cv2.LINE_AA, SHIFT)
        centres.append(c)
    bridge = np.array([centres[0] + [14.0, -3.0, 0.0], centres[1] + [-14.0, -3.0, 0.0]])
    cv2.polylines(image, [to_fixed(camera.project(bridge))], False, colour, thick, cv2.LINE_AA, SHIFT)


class NoiseTiles:
    """Fixed tiles of unit Gaussian noise, (2 size, 2 size, 3) per image size, made on
    first use; every face takes a random crop (a fresh full frame of noise per face would
    cost about as much as the face). Keep one per render and pass it along."""

    SEED = 20240607

    def __init__(self):
        self._tiles: dict[int, np.ndarray] = {}

    def get(self, size: int) -> np.ndarray:
        if size not in self._tiles:
            rng = np.random.default_rng(self.SEED)
            self._tiles[size] = rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)
        return self._tiles[size]


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line kernel of about `length` pixels at `angle` degrees."""
    k = length | 1  # odd length keeps the kernel centred
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((k - 1) / 2.0, (k - 1) / 2.0), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return kernel / max(kernel.sum(), 1e-6)


def degrade(image, d: Degradation, noise_seed: int, noise_tiles: NoiseTiles) -> np.ndarray:
    """Camera and file degradations: low resolution, blur, motion blur, tone curve, sensor
    noise, JPEG. The blurs are centred, so they do not move the structure."""
    size = image.shape[0]
    img = image
    if d.lowres > 1.0:
        small = max(8, int(round(size / d.lowres)))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_LINEAR)
    if d.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), d.blur)
    if d.motion > 0:
        img = cv2.filter2D(img, -1, _motion_kernel(d.motion, d.motion_angle))
    levels = np.arange(256, dtype=np.float64) / 255.0
    curve = (levels ** d.gamma * 255.0 - 128.0) * d.contrast + 128.0 + d.brightness
    img = cv2.LUT(img, np.clip(curve + 0.5, 0, 255).astype(np.uint8))
    if d.noise > 0:
        rng = np.random.default_rng(noise_seed)
        tile = noise_tiles.get(size)
        ox, oy = rng.integers(0, size, 2)
        noise = tile[oy:oy + size, ox:ox + size] * np.float32(d.noise)
        img = cv2.add(img, noise, dtype=cv2.CV_8U)
    if d.jpeg:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(d.jpeg)])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(img)
