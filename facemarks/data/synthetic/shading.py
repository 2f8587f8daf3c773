"""Lighting and the smooth-shaded 1x layer of the head mesh."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.head import bumps
from facemarks.data.synthetic.numeric import gauss, smoothstep, unit
from facemarks.data.synthetic.params import Light, Look
from facemarks.data.synthetic.raster import SHIFT, to_fixed


class Lighting:
    """A directional light with ambient, diffuse and specular terms, in camera coordinates
    (the viewer looks along -z)."""

    def __init__(self, light: Light):
        az, el = math.radians(light.azimuth), math.radians(light.elevation)
        self.direction = np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)])
        self.half = self.direction + np.array([0.0, 0.0, 1.0])
        self.half /= np.linalg.norm(self.half)
        self.ambient = light.ambient
        self.diffuse = light.diffuse
        self.specular = light.specular
        self.tint = np.asarray(light.tint)

    def shade(self, normals_cam):
        """Brightness factor (...) for unit normals in camera coordinates."""
        lambert = np.clip(normals_cam @ self.direction, 0.0, None)
        return self.ambient + self.diffuse * lambert

    def highlight(self, normals_cam, power=18.0):
        """Specular term (Blinn-Phong) for unit normals in camera coordinates."""
        return self.specular * np.clip(normals_cam @ self.half, 0.0, None) ** power


def draw_quads(canvas, uv4, pts_cam, colours):
    """Painter's algorithm over a grid mesh: cull back faces, draw far to near."""
    p00, p01, p10, p11 = uv4[:-1, :-1], uv4[:-1, 1:], uv4[1:, :-1], uv4[1:, 1:]
    # Screen-space winding (y down) of front faces.
    d1 = p11 - p00
    d2 = p10 - p01
    cross = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    depth = pts_cam[:-1, :-1, 2] + pts_cam[:-1, 1:, 2] + pts_cam[1:, :-1, 2] + pts_cam[1:, 1:, 2]
    idx = np.flatnonzero((cross > 0).ravel())
    order = idx[np.argsort(depth.ravel()[idx], kind="stable")]
    quads = np.stack([p00, p01, p11, p10], axis=-2).reshape(-1, 4, 2)[order]
    cols = np.clip(colours.reshape(-1, 3)[order], 0, 255).tolist()
    for poly, col in zip(to_fixed(quads), cols):
        cv2.fillConvexPoly(canvas, poly, col, cv2.LINE_8, SHIFT)


def quad_normals(pts_cam):
    """Unit normals (R - 1, C - 1, 3) of the quads of a grid mesh (R, C, 3)."""
    d1 = pts_cam[1:, 1:] - pts_cam[:-1, :-1]
    d2 = pts_cam[1:, :-1] - pts_cam[:-1, 1:]
    return unit(np.cross(d1, d2))


def skin_texture(shape, rng, strength):
    """Multiplicative albedo noise around 1."""
    return 1.0 + strength * rng.standard_normal(shape)


def shading_layer(look: Look, camera: Camera, light: Lighting, geo, origin, shape, tex_rng, spacing=2.5, sigma=1.1):
    """Smooth-shaded head colours (h, w, 3) uint8 at 1x.

    Each visible quad of the head mesh is sampled every ~spacing pixels, coloured from
    bilinearly interpolated vertex normals (Gouraud-like), hair or skin by the hairline;
    the nearest sample wins each pixel and a normalised Gaussian blur fills the gaps.
    Its silhouette does not matter: the exact outline mask cuts the head out later.
    The layer's top-left pixel is image pixel `origin`; shape is its (h, w).
    """
    skin = np.asarray(look.skin) * light.tint
    hair_col = np.asarray(look.hair) * light.tint
    mesh, valid, tmpl, hair_d = geo.mesh, geo.valid, geo.mesh_template, geo.hair
    cam = camera.to_camera(mesh)
    normals = unit(np.cross(np.gradient(cam, axis=1), np.gradient(cam, axis=0)))
    uv = camera.project(mesh) - origin
    # Visible quads: valid and wound as front faces on screen.
    d1 = uv[1:, 1:] - uv[:-1, :-1]
    d2 = uv[1:, :-1] - uv[:-1, 1:]
    front = valid & (d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0] > 0)
    qi, qj = np.nonzero(front)
    # Every per-vertex quantity in one array, interpolated at the sample points at once.
    ao = 1.0 - 0.12 * np.clip(-bumps(tmpl[..., 0], tmpl[..., 1]) / 5.0, 0.0, 1.0)
    beard = _beard_weight(tmpl) * look.beard if look.beard > 0 else np.zeros_like(ao)
    fields = np.concatenate([uv, cam[..., 2:3], normals, hair_d[..., None], ao[..., None], beard[..., None]], axis=-1)
    corners = np.stack([fields[qi, qj], fields[qi, qj + 1], fields[qi + 1, qj], fields[qi + 1, qj + 1]], axis=1)
    # Samples per quad side: enough for about `spacing` pixels between samples.
    extent = np.maximum(np.hypot(*d1[qi, qj].T), np.hypot(*d2[qi, qj].T)) / np.sqrt(2.0)
    subs = np.clip(np.ceil(extent / spacing), 1, 8).astype(int)
    samples = []
    for sub in np.unique(subs):
        offsets = (np.arange(sub) + 0.5) / sub
        fu, fv = (a.ravel() for a in np.meshgrid(offsets, offsets))  # along columns, along rows
        weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)  # (sub^2, 4)
        samples.append(np.matmul(weights[None], corners[subs == sub]).reshape(-1, fields.shape[-1]))
    samples = np.concatenate(samples)
    pos, depth, n = samples[:, 0:2], samples[:, 2], unit(samples[:, 3:6])
    hair = smoothstep(1.5, -1.5, samples[:, 6])  # 1 under hair, a soft hairline
    ao, beard = samples[:, 7], samples[:, 8] * (1.0 - hair)
    shade = light.shade(n)
    spec = light.highlight(n) * 255.0
    albedo = skin + hair[:, None] * (hair_col - skin)
    albedo = albedo * (1.0 + (0.015 + 0.02 * hair) * tex_rng.standard_normal(len(hair)))[:, None]
    if look.beard > 0:
        albedo = albedo + beard[:, None] * (hair_col * 0.8 - albedo)
    colours = albedo * (shade * (ao + hair * (1.0 - ao)))[:, None] + (spec * (1.0 - 0.7 * hair))[:, None]
    return _splat(shape, pos, -depth, colours, sigma)


def _splat(shape, pos, distance, colours, sigma, hidden=15.0):
    """Splat coloured points into a (h, w, 3) uint8 layer: the nearest point wins each
    pixel, points more than `hidden` mm behind the nearest surface around them are
    dropped (they would show through the gaps between points), and a normalised
    Gaussian blur fills the gaps."""
    h, w = shape
    ix = np.rint(pos[:, 0]).astype(np.int64)
    iy = np.rint(pos[:, 1]).astype(np.int64)
    inside = np.flatnonzero((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h))
    if len(inside) == 0:
        return np.zeros((h, w, 3), np.uint8)
    pix = iy[inside] * w + ix[inside]
    dist = distance[inside].astype(np.float32)
    # The nearest point of every pixel: group by pixel, keep the first of the group minimum.
    order = np.argsort(pix, kind="stable")
    pix_sorted, dist_sorted = pix[order], dist[order]
    starts = np.flatnonzero(np.concatenate([[True], pix_sorted[1:] != pix_sorted[:-1]]))
    group = np.cumsum(np.concatenate([[False], pix_sorted[1:] != pix_sorted[:-1]]))
    lowest = np.minimum.reduceat(dist_sorted, starts)
    candidate = np.flatnonzero(dist_sorted == lowest[group])
    candidate = candidate[np.concatenate([[True], group[candidate][1:] != group[candidate][:-1]])]
    nearest, near_pix, near_dist = order[candidate], pix_sorted[candidate], dist_sorted[candidate]
    # Nearest distance around every pixel (min filter over the gaps between points).
    zbuf = np.full(h * w, np.float32(1e9))
    zbuf[near_pix] = near_dist
    around = cv2.erode(zbuf.reshape(h, w), np.ones((5, 5), np.uint8)).ravel()
    keep = near_dist <= around[near_pix] + hidden
    chosen, chosen_pix = inside[nearest[keep]], near_pix[keep]
    num = np.zeros((h * w, 4), np.float32)  # colour sums and weight, blurred together
    num[chosen_pix, :3] = colours[chosen]
    num[chosen_pix, 3] = 1.0
    num = cv2.GaussianBlur(num.reshape(h, w, 4), (0, 0), sigma)
    # Far from every sample the layer fades to the mean colour instead of to black.
    eps = np.float32(1e-4)
    base = colours[chosen].mean(axis=0).astype(np.float32)
    layer = (num[..., :3] + eps * base) / (num[..., 3:] + eps)
    return cv2.convertScaleAbs(layer)  # rounds and saturates to uint8


def _beard_weight(tmpl):
    x, y = tmpl[..., 0], tmpl[..., 1]
    chin = smoothstep(52.0, 64.0, y) * (1.0 - gauss(x, y, 0.0, 66.0, 26.0, 8.0))
    cheeks = smoothstep(30.0, 50.0, y) * smoothstep(35.0, 55.0, np.abs(x))
    moustache = gauss(x, y, 0.0, 55.0, 24.0, 4.0)
    return np.clip(np.maximum(np.maximum(chin, cheeks), moustache), 0.0, 1.0) * (tmpl[..., 2] > -75)
