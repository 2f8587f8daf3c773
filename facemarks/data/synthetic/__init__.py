"""A procedural synthetic face dataset: facemarks' built-in default data.

Every face is drawn from a small parametric 3-D head model and rendered with numpy and
OpenCV only, so `facemarks train` runs on a fresh machine with nothing to download.

Model
    A head is a stack of horizontal rings (an elliptic front half from the left jaw
    rim to the right one, and an elliptic back half for the upper head), with bumps for
    the brow ridge, eye sockets, cheekbones, lips and chin, plus a separate nose mesh.
    The 68 points follow the iBUG/300W order and live on that surface, so they have
    plausible depths. Identity (face width, jaw, face length, nose length/width, eye size
    and spacing, mouth width, lip thickness, brow height, mild asymmetry) and expression
    (mouth opening by a jaw rotation, smile, brow raise/frown, eye closing) are smooth 3-D
    warps applied to the whole surface, so the points stay on the drawn structure.

Pose and camera (degrees; all in the attributes of each face)
    yaw   in [-45, 45]: positive turns the face towards image-right (the nose moves right).
    pitch in [-25, 25]: positive tilts the face up (the nose moves up).
    roll  in [-30, 30]: in-plane rotation, positive counter-clockwise as seen in the image.
    Perspective projection from 0.4 to 2.5 m, then scale and position in the image.

Annotations (like 300W)
    Jaw points 0-16 are on the face contour: on the far side of a turned face they slide
    along their ring to the silhouette (landmark marching), on the near side they stay on
    the jaw rim in front of the ear. Occluded points (hands, objects) keep their positions.
    Points are exact 0-based pixel-centre coordinates of the drawn structure. Eyes, brows,
    lips, nose and the head's outline are drawn at 4x with OpenCV's sub-pixel `shift` and
    reduced with INTER_AREA, coordinates mapped exactly by u4 = (u + 0.5) * 4 - 0.5, and
    outlines filled anti-aliased and moved in by the measured growth of OpenCV's fill
    (0.68 pixel at 4x), so the coverage of every pixel is right to ~0.02 pixel on average.
    The outline is the exact silhouette the jaw points were found on.
    The smooth skin and hair shading under them is splatted from the mesh at 1x.

Rendering
    Background (gradients, smooth noise, random shapes, texture), long hair, shoulders and
    neck, the head (lit by a random directional light with ambient and specular terms,
    skin tone, hair colour and hairline, beard, eye sockets, sclera, iris and pupil, lash
    line, brows, lips, teeth when open, nostrils, ears), glasses, then an occluder (hand,
    rectangle, ellipse or bar) for about a quarter of the faces, and camera degradations
    (low resolution, blur, motion blur, tone curve, noise, JPEG).

Parameters
    `sample_params(rng)` draws a `FaceParams` (frozen dataclasses: pose, `FaceShape`,
    `Expression`, `Look`, `Light`, `Occluder` or None, `Degradation`); `render_face`
    depends on nothing else. Change one with `dataclasses.replace`.

Determinism
    Face i of seed s depends only on np.random.default_rng([s, i]): not on other faces or
    on how many are rendered. Output is identical across runs on one platform, and pinned
    by tests/test_synthetic.py: a change must bump VERSION.

Files (`render`)
    DIR/images/000000.jpg ... (JPEG quality 95), DIR/faces.jsonl (one JSON object per
    face, see `render`), DIR/render.json (parameters and version; a later call with the
    same parameters reuses the folder).

Layout (this package)
    params      the parameters and their random draws
    template    the neutral template head's tables (points, rings, profile, nose)
    head        HeadModel: the template surface (rings, relief, hairline, nose)
    warp        identity and expression warps; face_points_3d
    mesh        the warped geometry of one face (HeadGeometry)
    camera      pose, projection and placement in the image
    silhouette  the outline of the lower head and the jaw points on it
    forehead    the 9 forehead (hairline) points of the 77-point scheme ("300w77")
    raster      drawing primitives, pixel boxes, supersampled-canvas coordinates
    shading     lighting and the smooth-shaded 1x head layer
    features    eyes, brows, mouth, folds, nose, nostrils (4x)
    paint       the head: layer, features, ears, composited through the outline
    scene       background, body, glasses, camera degradations
    occluders   hands and objects over the face
    renderer    Renderer, render_face, generate_face
    dataset     render a dataset folder, default_directory, ensure_rendered
"""

from facemarks.data.synthetic.dataset import VERSION, default_directory, ensure_rendered, render, split_of
from facemarks.data.synthetic.params import (
    Degradation,
    Expression,
    FaceParams,
    FaceShape,
    Light,
    Look,
    Occluder,
    neutral_params,
    sample_params,
)
from facemarks.data.synthetic.renderer import Renderer, generate_face, render_face
from facemarks.data.synthetic.template import NUM_POINTS
from facemarks.data.synthetic.warp import face_points_3d

__all__ = [
    "VERSION",
    "NUM_POINTS",
    "render",
    "ensure_rendered",
    "default_directory",
    "generate_face",
    "sample_params",
    "neutral_params",
    "render_face",
    "face_points_3d",
    "split_of",
    "FaceParams",
    "FaceShape",
    "Expression",
    "Look",
    "Light",
    "Occluder",
    "Degradation",
    "Renderer",
]
