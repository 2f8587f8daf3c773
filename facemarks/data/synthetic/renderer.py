"""Render one face: geometry, camera, the layers of the picture, then the camera's
degradations. What every face shares (the head model's lookup tables, the noise tiles)
lives in a `Renderer`, built once per dataset and passed along."""

from __future__ import annotations

import dataclasses

import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.forehead import forehead_points
from facemarks.data.synthetic.head import HeadModel
from facemarks.data.synthetic.mesh import build_geometry
from facemarks.data.synthetic.occluders import draw_occluder
from facemarks.data.synthetic.paint import draw_head
from facemarks.data.synthetic.params import FaceParams, sample_params
from facemarks.data.synthetic.scene import NoiseTiles, background, degrade, draw_body, draw_glasses
from facemarks.data.synthetic.shading import Lighting
from facemarks.data.synthetic.silhouette import silhouettes


SCHEMES = ("300w", "300w77")  # what the renderer annotates


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"the synthetic renderer annotates the schemes {', '.join(SCHEMES)}, not {scheme!r}")


class Renderer:
    """Draws faces; holds the tables that all faces share, so that none is kept at module
    level: the head model's ring tables and the camera-noise tiles (one per image size,
    made on first use)."""

    def __init__(self):
        self.head = HeadModel()
        self.noise = NoiseTiles()

    def render(self, params: FaceParams, scheme: str = "300w") -> tuple[np.ndarray, np.ndarray, dict]:
        """One face -> (RGB uint8 image (S, S, 3), landmarks (N, 2) float64 0-based
        pixel-centre, attributes {"yaw", "pitch", "roll", "occluded"}).

        scheme: "300w" (68 points) or "300w77" (the 68 and the 9 forehead points of
        facemarks.data.synthetic.forehead; the face is then placed in the image with all 77
        inside it, so its 68 points differ from the "300w" render of the same parameters).
        """
        check_scheme(scheme)
        camera = Camera(params.yaw, params.pitch, params.roll, params.distance)
        light = Lighting(params.light)
        tex_rng = np.random.default_rng(params.look.texture_seed)

        geo = build_geometry(self.head, params)
        pts3 = geo.points
        left, right, jaw = silhouettes(self.head, params, camera, geo.mesh)
        pts3[:17] = jaw
        extra = forehead_points(self.head, params, camera) if scheme == "300w77" else pts3[:0]
        camera.place(np.concatenate([pts3, extra]), params.face_px, params.shape.face_width, params.position,
                     params.image_size)
        landmarks = camera.project(pts3)

        image = background(params.background_seed, params.image_size)
        draw_body(image, params, camera, light)
        draw_head(image, params, camera, light, geo, left, right, landmarks, tex_rng)
        if params.look.glasses:
            draw_glasses(image, params.look, camera, pts3)
        occluded = draw_occluder(image, params.occluder, landmarks)
        image = degrade(image, params.degrade, params.noise_seed, self.noise)
        if len(extra):
            landmarks = np.concatenate([landmarks, camera.project(extra)])
        attributes = {"yaw": round(params.yaw, 3), "pitch": round(params.pitch, 3), "roll": round(params.roll, 3),
                      "occluded": int(occluded)}
        return image, landmarks, attributes


def render_face(params: FaceParams, renderer: Renderer | None = None,
                scheme: str = "300w") -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one face (see `Renderer.render`); pass a renderer when drawing many."""
    return (renderer or Renderer()).render(params, scheme)


def generate_face(seed: int, index: int, image_size: int = 256, renderer: Renderer | None = None,
                  abs_yaw: tuple[float, float] | None = None,
                  scheme: str = "300w") -> tuple[np.ndarray, np.ndarray, dict]:
    """Face `index` of dataset `seed`: (RGB uint8 image, (N, 2) landmarks of `scheme`
    (Renderer.render), attributes).

    Depends only on np.random.default_rng([seed, index]). With abs_yaw = (lo, hi) (thin
    poses for training, facemarks.data.mix): |yaw| uniform in [lo, hi] degrees, either side,
    drawn after the other parameters from np.random.default_rng([seed, index, 1]), a stream
    of its own, so such a face is never one of the plain dataset's (whose test faces it
    could otherwise repeat under another yaw).
    """
    if abs_yaw is None:
        return render_face(sample_params(np.random.default_rng([int(seed), int(index)]), image_size), renderer, scheme)
    rng = np.random.default_rng([int(seed), int(index), 1])
    params = sample_params(rng, image_size)
    yaw = rng.choice([-1.0, 1.0]) * rng.uniform(*abs_yaw)
    return render_face(dataclasses.replace(params, yaw=float(yaw)), renderer, scheme)
