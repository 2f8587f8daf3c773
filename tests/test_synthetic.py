"""Tests of the procedural synthetic face dataset (facemarks.data.synthetic).

Every check renders a handful of faces (each takes ~10-20 ms), so the file runs in a few
seconds. Expected values come from the tests themselves: the iBUG 68-point mirror
permutation is written out here, image structure is sampled from the rendered pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from facemarks.data import synthetic
from facemarks.errors import DataError

S = 256

# iBUG/300W 68-point mirror permutation, written independently of the module: the point
# that a point becomes when the face is flipped left-right.
IBUG_FLIP = (
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # jaw
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # image-left eye -> image-right eye
    + [39, 38, 37, 36, 41, 40]  # image-right eye -> image-left eye
    + [54, 53, 52, 51, 50, 49, 48]  # outer upper lip
    + [59, 58, 57, 56, 55]  # outer lower lip
    + [64, 63, 62, 61, 60]  # inner upper lip
    + [67, 66, 65]  # inner lower lip
)


def clean_params(seed: int, index: int) -> synthetic.FaceParams:
    """A random face (pose, identity, expression, look) without occluder or degradation."""
    params = synthetic.sample_params(np.random.default_rng([seed, index]), S)
    return replace(params, occluder=None, degrade=synthetic.Degradation())


def sample(image: np.ndarray, points) -> np.ndarray:
    """Bilinear RGB values (K, 3) at 0-based pixel-centre points (K, 2)."""
    img = image.astype(np.float32)
    return np.array([cv2.getRectSubPix(img, (1, 1), (float(x), float(y)))[0, 0] for x, y in np.atleast_2d(points)])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two renders of seed 3: 8 faces and 5 faces."""
    root = tmp_path_factory.mktemp("synthetic")
    big = synthetic.render(root / "eight", num_faces=8, seed=3)
    small = synthetic.render(root / "five", num_faces=5, seed=3)
    return big, small


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- determinism -------------------------------------------------------------------------

def test_same_seed_same_face_and_different_seed_different_face():
    a_img, a_pts, a_attr = synthetic.generate_face(5, 2)
    b_img, b_pts, b_attr = synthetic.generate_face(5, 2)
    assert np.array_equal(a_img, b_img)
    assert np.array_equal(a_pts, b_pts)
    assert a_attr == b_attr
    c_img, c_pts, _ = synthetic.generate_face(6, 2)
    assert not np.array_equal(a_img, c_img)
    assert np.abs(a_pts - c_pts).max() > 1.0


def test_face_does_not_depend_on_the_number_of_faces(rendered):
    big, small = rendered
    big_rows, small_rows = read_jsonl(big), read_jsonl(small)
    assert len(big_rows) == 8 and len(small_rows) == 5
    for i in range(5):
        assert small_rows[i] == big_rows[i]
        name = small_rows[i]["image"]
        assert (small.parent / name).read_bytes() == (big.parent / name).read_bytes()
    # And the files hold what generate_face makes (JPEG quality 95 of the same pixels).
    image, points, attributes = synthetic.generate_face(3, 4)
    stored = cv2.cvtColor(cv2.imread(str(big.parent / big_rows[4]["image"])), cv2.COLOR_BGR2RGB)
    assert np.abs(stored.astype(int) - image.astype(int)).mean() < 3.0
    assert np.allclose(np.reshape(big_rows[4]["landmarks"], (68, 2)), points, atol=1e-3)
    assert big_rows[4]["attributes"] == attributes



# The renderer's output is pinned: the README's published numbers come from it. These are
# the sha256 of faces.jsonl and of the raw RGB pixels of faces 0-2 of seed 5 at 128 pixels
# (an occluder, noise, JPEG, an open mouth, a smile, long hair, a beard, blur, closed
# eyes among them), recorded with the single-module renderer this package was split from
# (the same output). A change of the output must be deliberate: then bump synthetic.VERSION (renders
# on disk are redone and the default folder's name changes) and record the new hashes.
# The annotations are rounded to 4 decimals and should match on any platform; the pixels
# go through numpy's and OpenCV's SIMD code paths, so a new CPU or library version alone
# could change them: check it with a before/after render there before updating the pin.
PINNED_JSONL = "306dc5102e28216629a014a3f09dd9f1d609db994023e4797b83066325ee28a6"
PINNED_PIXELS = "85797b6f94c2fab0bcef7ff0fade07efe58cefdd85aeaad84250b78d615dcd03"


def test_rendered_output_is_pinned(tmp_path):
    jsonl = synthetic.render(tmp_path / "pinned", num_faces=3, seed=5, image_size=128, progress=False)
    assert hashlib.sha256(jsonl.read_bytes()).hexdigest() == PINNED_JSONL, "annotations changed: bump VERSION"
    pixels = hashlib.sha256()
    renderer = synthetic.Renderer()  # shared by the faces, as in render(): no state leaks between them
    for index in range(3):
        image, points, _ = synthetic.generate_face(5, index, 128)
        shared_image, shared_points, _ = synthetic.generate_face(5, index, 128, renderer)
        assert np.array_equal(image, shared_image) and np.array_equal(points, shared_points)
        pixels.update(image.tobytes())
    assert pixels.hexdigest() == PINNED_PIXELS, "pixels changed: bump VERSION (or see the comment above)"


def test_parameters_are_typed_and_neutral_by_default():
    params = synthetic.sample_params(np.random.default_rng([1, 2]), S)
    assert isinstance(params, synthetic.FaceParams) and isinstance(params.shape, synthetic.FaceShape)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.yaw = 0.0  # type: ignore[misc]
    neutral = synthetic.neutral_params(S)
    assert neutral.shape == synthetic.FaceShape() and neutral.expression == synthetic.Expression()
    assert neutral.light == synthetic.Light() and neutral.degrade == synthetic.Degradation() and neutral.occluder is None

# --- files ---------------------------------------------------------------------------------

def test_jsonl_records(rendered):
    big, _ = rendered
    rows = read_jsonl(big)
    for index, row in enumerate(rows):
        assert set(row) == {"image", "landmarks", "box", "split", "scheme", "attributes"}
        assert row["image"] == f"images/{index:06d}.jpg"
        image = cv2.imread(str(big.parent / row["image"]))
        assert image is not None and image.shape == (S, S, 3)
        pts = np.asarray(row["landmarks"], dtype=np.float64).reshape(-1, 2)
        assert pts.shape == (68, 2)
        assert np.allclose(row["box"], [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
        assert row["split"] in ("train", "val", "test")
        assert row["scheme"] == "300w"
        attrs = row["attributes"]
        assert set(attrs) == {"yaw", "pitch", "roll", "occluded"}
        assert attrs["occluded"] in (0, 1)
    manifest = json.loads((big.parent / "render.json").read_text())
    assert manifest["num_faces"] == 8 and manifest["seed"] == 3 and manifest["image_size"] == S
    assert manifest["version"] == synthetic.VERSION


def test_render_reuses_and_replaces(tmp_path):
    target = tmp_path / "data"
    jsonl = synthetic.render(target, num_faces=3, seed=1)
    first = jsonl.stat().st_mtime_ns
    assert synthetic.render(target, num_faces=3, seed=1) == jsonl
    assert jsonl.stat().st_mtime_ns == first  # reused, not rendered again
    # Other parameters replace the render; no temporary folders are left behind.
    synthetic.render(target, num_faces=4, seed=1)
    assert len(read_jsonl(jsonl)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    # An outdated version is rendered again.
    manifest = json.loads((target / "render.json").read_text())
    manifest["version"] = -1
    (target / "render.json").write_text(json.dumps(manifest))
    synthetic.render(target, num_faces=4, seed=1)
    assert json.loads((target / "render.json").read_text())["version"] == synthetic.VERSION


def test_render_refuses_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError) as info:
        synthetic.render(foreign, num_faces=2)
    assert str(foreign) in str(info.value)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_ensure_rendered_default_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEMARKS_CACHE", str(tmp_path))
    jsonl = synthetic.ensure_rendered(num_faces=2, seed=4)
    assert jsonl == tmp_path / "synthetic-v1-s4-n2" / "faces.jsonl"
    assert len(read_jsonl(jsonl)) == 2
    again = synthetic.ensure_rendered(tmp_path / "synthetic-v1-s4-n2", num_faces=2, seed=4)
    assert again == jsonl


def test_the_jsonl_reader_accepts_the_render(rendered):
    from facemarks.data import formats as datasets

    big, _ = rendered
    faces = datasets.load(f"jsonl:{big}")
    assert len(faces) == 8
    assert faces[0].landmarks.shape == (68, 2)
    assert faces[0].scheme == "300w"


def test_split_proportions():
    names = [synthetic.split_of(i) for i in range(1000)]
    counts = {name: names.count(name) for name in ("train", "val", "test")}
    assert abs(counts["train"] - 800) <= 5 and abs(counts["val"] - 100) <= 5 and abs(counts["test"] - 100) <= 5
    # Every prefix is close to the proportions too (low-discrepancy sequence).
    first20 = names[:20]
    assert 14 <= first20.count("train") <= 18 and first20.count("val") >= 1 and first20.count("test") >= 1
    other = [synthetic.split_of(i, (0.5, 0.5, 0.0)) for i in range(200)]
    assert other.count("test") == 0 and abs(other.count("train") - 100) <= 3


# --- geometry -------------------------------------------------------------------------------

def test_points_in_image_and_plausible_faces():
    for index in range(12):
        image, pts, attrs = synthetic.generate_face(0, index)
        assert image.shape == (S, S, 3) and image.dtype == np.uint8
        assert pts.shape == (68, 2) and np.all(np.isfinite(pts))
        assert np.all(pts >= -0.5) and np.all(pts <= S - 0.5)
        width = pts[:, 0].max() - pts[:, 0].min()
        assert 55 < width < 160  # faces about 100-140 px across (narrower when turned)
        # Left/right order of a face that is not turned far: eye corners and mouth corners.
        if abs(attrs["yaw"]) < 30 and abs(attrs["roll"]) < 20:
            assert pts[36, 0] < pts[39, 0] < pts[42, 0] < pts[45, 0]
            assert pts[48, 0] < pts[54, 0]
            assert pts[27, 1] < pts[30, 1] < pts[33, 1] < pts[57, 1] < pts[8, 1]


def test_pose_ranges_and_distribution():
    yaws, pitches, rolls = [], [], []
    for index in range(400):
        params = synthetic.sample_params(np.random.default_rng([11, index]))
        yaws.append(params.yaw)
        pitches.append(params.pitch)
        rolls.append(params.roll)
    for values, limit in ((yaws, 45.0), (pitches, 25.0), (rolls, 30.0)):
        values = np.abs(values)
        assert values.max() <= limit
        assert values.max() > 0.75 * limit  # the range is used
        assert np.median(values) < 0.45 * limit  # but mostly moderate poses


def test_roll_yaw_pitch_move_the_points_as_documented():
    base = synthetic.neutral_params(S)
    _, frontal, _ = synthetic.render_face(base)
    # Roll: counter-clockwise in the image; the eye line turns by exactly the roll.
    rolled = replace(base, roll=20.0)
    _, pts, attrs = synthetic.render_face(rolled)
    angle = math.degrees(math.atan2(-(pts[45, 1] - pts[36, 1]), pts[45, 0] - pts[36, 0]))
    assert angle == pytest.approx(20.0, abs=0.05) and attrs["roll"] == 20.0
    # Yaw > 0: the nose tip moves towards image-right of the eye-corner midpoint.
    _, pts, _ = synthetic.render_face(replace(base, yaw=30.0))
    assert pts[30, 0] - 0.5 * (pts[36, 0] + pts[45, 0]) > 5.0
    assert abs(frontal[30, 0] - 0.5 * (frontal[36, 0] + frontal[45, 0])) < 0.05
    # The far side (image-right) is foreshortened more than the near side.
    assert (pts[16, 0] - pts[30, 0]) < (pts[30, 0] - pts[0, 0])
    # Pitch > 0 (face up): the nose tip rises towards the eyes relative to the chin.
    _, up, _ = synthetic.render_face(replace(base, pitch=20.0))

    def nose_height(p):
        eyes = 0.5 * (p[36, 1] + p[45, 1])
        return (p[30, 1] - eyes) / (p[8, 1] - eyes)

    assert nose_height(up) < nose_height(frontal) - 0.05


def best_mirror_line(grey: np.ndarray, guess: float, vertical: bool) -> float:
    """The line x = c (vertical) or y = c about which the image is most nearly mirror
    symmetric, searched within 1 pixel of guess in 0.05 pixel steps."""
    size = grey.shape[0]

    def mismatch(c):
        if vertical:
            flip = np.float32([[-1.0, 0.0, 2.0 * c], [0.0, 1.0, 0.0]])
        else:
            flip = np.float32([[1.0, 0.0, 0.0], [0.0, -1.0, 2.0 * c]])
        flipped = cv2.warpAffine(grey, flip, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return float(((flipped - grey)[16:-16, 16:-16] ** 2).mean())

    candidates = guess + np.arange(-1.0, 1.0001, 0.05)
    return float(candidates[int(np.argmin([mismatch(c) for c in candidates]))])


def test_neutral_face_is_mirror_symmetric():
    image, pts, _ = synthetic.render_face(synthetic.neutral_params(S))
    mirrored = pts[IBUG_FLIP] * [-1.0, 1.0]
    # Mirrored about its own midline the shape is unchanged.
    shift = np.mean(pts[:, 0] - mirrored[:, 0])
    assert np.abs(mirrored + [shift, 0.0] - pts).max() < 0.02
    # The image is symmetric about the same vertical line, to a fraction of a pixel: the
    # drawing puts structure exactly where the 0-based pixel-centre points say.
    axis = shift / 2.0
    assert abs(best_mirror_line(image.astype(np.float32).mean(axis=2), axis, vertical=True) - axis) <= 0.05 + 1e-9


def test_rolled_face_is_symmetric_about_its_midline_in_y():
    """The same check for the other image axis: rolled by 90 degrees (frontal light) the
    face's midline is horizontal."""
    params = synthetic.neutral_params(S)
    params = replace(params, roll=90.0, position=(0.37, 0.61), light=replace(params.light, elevation=0.0))
    image, pts, _ = synthetic.render_face(params)
    assert np.abs(pts[:, 0] - pts[IBUG_FLIP, 0]).max() < 0.02  # mirror pairs share x now
    midline = float(np.mean(pts[:, 1] + pts[IBUG_FLIP, 1]) / 2.0)
    assert abs(best_mirror_line(image.astype(np.float32).mean(axis=2), midline, vertical=False) - midline) <= 0.05 + 1e-9


def test_structure_moves_with_the_points():
    """Moving the face by a fraction of a pixel moves the picture by the same amount."""
    first_image, first, _ = synthetic.render_face(synthetic.neutral_params(S))
    params = replace(synthetic.neutral_params(S), position=(0.5 - 0.004, 0.5 + 0.003))
    second_image, second, _ = synthetic.render_face(params)
    shift = (second - first).mean(axis=0)
    assert np.abs(second - first - shift).max() < 1e-6 and np.abs(shift).min() > 0.2
    a = cv2.GaussianBlur(first_image.astype(np.float32).mean(axis=2), (0, 0), 0.7)
    b = cv2.GaussianBlur(second_image.astype(np.float32).mean(axis=2), (0, 0), 0.7)
    steps = np.arange(-0.3, 0.3001, 0.02)
    best = None
    for dx in steps:
        for dy in steps:
            move = np.float32([[1.0, 0.0, shift[0] + dx], [0.0, 1.0, shift[1] + dy]])
            moved = cv2.warpAffine(a, move, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            error = float(((moved - b)[20:-20, 20:-20] ** 2).mean())
            if best is None or error < best[0]:
                best = (error, dx, dy)
    assert abs(best[1]) <= 0.04 and abs(best[2]) <= 0.04


def test_points_3d_have_plausible_depths():
    pts = synthetic.face_points_3d(synthetic.neutral_params(S))
    z = pts[:, 2]
    assert int(np.argmax(z)) == 30  # the nose tip is the closest point
    assert z[36] < z[39] and z[45] < z[42]  # outer eye corners lie behind the inner ones
    assert z[30] - z[0] > 80 and z[30] - z[16] > 80  # jaw ends far back, near the ears
    assert z[8] > z[4] > z[2]  # the jaw comes forward towards the chin
    assert z[17] < z[21] and z[26] < z[22]  # brows: outer ends further back
    # Symmetric in depth too.
    assert np.allclose(z, z[IBUG_FLIP], atol=1e-6)


def test_expressions_move_the_right_points():
    base = synthetic.neutral_params(S)
    _, neutral, _ = synthetic.render_face(base)
    open_mouth = replace(base, expression=replace(base.expression, mouth_open=20.0))
    _, opened, _ = synthetic.render_face(open_mouth)
    gap = lambda p: p[66, 1] - p[62, 1]  # noqa: E731
    assert gap(neutral) < 1.0 < 8.0 < gap(opened)
    # In the head frame (mm): the chin drops, the eyes and nose stay.
    head_neutral = synthetic.face_points_3d(base)
    head_open = synthetic.face_points_3d(open_mouth)
    assert head_open[8, 1] - head_neutral[8, 1] > 10.0
    assert head_open[57, 1] - head_neutral[57, 1] > 10.0
    assert np.abs(head_open[17:48] - head_neutral[17:48]).max() < 1e-3
    closed = replace(base, expression=replace(base.expression, eye_close=(1.0, 0.0)))
    _, shut, _ = synthetic.render_face(closed)
    assert np.abs(shut[[37, 38], 1] - shut[[41, 40], 1]).max() < 0.6  # left lids meet
    assert (shut[[46, 47], 1] - shut[[44, 43], 1]).min() > 2.0  # right eye still open
    smile = replace(base, expression=replace(base.expression, smile=1.0))
    _, smiling, _ = synthetic.render_face(smile)
    assert smiling[48, 1] < neutral[48, 1] - 2.0 and smiling[54, 1] < neutral[54, 1] - 2.0
    assert smiling[54, 0] - smiling[48, 0] > neutral[54, 0] - neutral[48, 0]


# --- image structure at the points ---------------------------------------------------------

def test_eyes_and_lips_are_where_the_points_are():
    for index in range(8):
        params = clean_params(21, index)
        image, pts, _ = synthetic.render_face(params)
        cheeks = np.array([0.5 * (pts[31] + pts[3]), 0.5 * (pts[35] + pts[13])])
        cheek = sample(image, cheeks)
        eyes = sample(image, pts[36:48])
        assert eyes.mean() < cheek.mean() - 15.0  # lid lines and lashes are dark
        # Lips: half-way between the outer and inner lip lines, redder than the cheeks.
        lips = np.concatenate([0.5 * (pts[[50, 51, 52]] + pts[[61, 62, 63]]), 0.5 * (pts[[56, 57, 58]] + pts[[65, 66, 67]])])
        lip = sample(image, lips)
        assert (lip[:, 0] - lip[:, 1]).mean() > (cheek[:, 0] - cheek[:, 1]).mean() + 5.0
        # Mouth corners: a colour change across the corner along the mouth line.
        for corner, other in ((48, 54), (54, 48)):
            direction = (pts[other] - pts[corner]) / np.linalg.norm(pts[other] - pts[corner])
            inside = sample(image, pts[corner] + 2.0 * direction)[0]
            outside = sample(image, pts[corner] - 2.0 * direction)[0]
            assert np.abs(inside - outside).sum() > 12.0


def edge_offset(image: np.ndarray, point: np.ndarray, normal: np.ndarray) -> float:
    """Signed distance (pixels, along the outward normal) from point to where the image
    profile crosses half-way between its inside (2-3 px in) and outside (2-3 px out)."""
    ts = np.linspace(-3.0, 3.0, 121)
    xy = (point[None] + ts[:, None] * normal[None]).astype(np.float32)
    profile = cv2.remap(image.astype(np.float32), xy[None, :, 0], xy[None, :, 1], cv2.INTER_LINEAR)[0]
    outside, inside = profile[ts >= 2.0].mean(axis=0), profile[ts <= -2.0].mean(axis=0)
    span = inside - outside
    level = (profile - outside) @ span / (span @ span)  # 1 inside, 0 outside
    k = np.flatnonzero((level[:-1] >= 0.5) & (level[1:] < 0.5))
    k = k[np.argmin(np.abs(ts[k]))]
    return float(ts[k] + (level[k] - 0.5) / (level[k] - level[k + 1]) * (ts[k + 1] - ts[k]))


def test_contour_points_lie_on_the_drawn_silhouette():
    """Under flat light, the face's outline (against the background on the far side of a
    turned face, against the neck under the chin) passes through the contour points."""
    offsets = []
    cases = (  # yaw, pitch, contour points, against the background (else the neck)
        (40.0, 0.0, range(10, 16), True),
        (-30.0, 5.0, range(1, 7), True),
        (0.0, 0.0, range(6, 11), False),
        (10.0, -10.0, range(6, 11), False),
    )
    for yaw, pitch, points, on_background in cases:
        params = synthetic.neutral_params(S)
        flat_light = replace(params.light, ambient=1.0, diffuse=0.0, specular=0.0)
        params = replace(params, yaw=yaw, pitch=pitch, light=flat_light)
        image, pts, _ = synthetic.render_face(params)
        centre = pts[27:36].mean(axis=0)
        for j in points:
            tangent = pts[j + 1] - pts[j - 1]
            normal = np.array([tangent[1], -tangent[0]]) / np.linalg.norm(tangent)
            if np.dot(normal, pts[j] - centre) < 0:
                normal = -normal
            if on_background:  # far side: plain background just outside
                assert np.abs(sample(image, pts[j] + 2.0 * normal)[0] - 128.0).max() <= 1.0
            offsets.append(edge_offset(image, pts[j], normal))
    offsets = np.array(offsets)
    assert np.abs(offsets).max() < 0.3
    assert np.abs(offsets).mean() < 0.12


def test_occluders_are_flagged():
    flagged = 0
    for index in range(40):
        params = synthetic.sample_params(np.random.default_rng([5, index]))
        if params.occluder is None:
            continue
        params = replace(params, degrade=synthetic.Degradation())
        with_occluder, pts, attrs = synthetic.render_face(params)
        without, _, plain = synthetic.render_face(replace(params, occluder=None))
        assert plain["occluded"] == 0
        changed = np.abs(with_occluder.astype(int) - without.astype(int)).sum(axis=2) > 30
        ix = np.clip(np.round(pts).astype(int), 0, S - 1)
        covered = changed[ix[:, 1], ix[:, 0]].any()
        if covered:  # a point under the occluder always flags the face
            assert attrs["occluded"] == 1
        flagged += attrs["occluded"]
    assert flagged >= 3
