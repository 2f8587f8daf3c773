"""Landmark schemes: flip permutations against the published pairs, regions, boundaries,
to_5pt, custom scheme files, and mirroring real faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facemarks import schemes
from facemarks.data.formats import load, read_image
from facemarks.errors import DataError

# Flip pairs as published (typed here from the sources, in their own index base):
# HRNet-Facial-Landmark-Detection lib/utils/transforms.py MATCHED_PARTS, 1-based except WFLW.
HRNET_300W_1BASED = [
    [1, 17], [2, 16], [3, 15], [4, 14], [5, 13], [6, 12], [7, 11], [8, 10],
    [18, 27], [19, 26], [20, 25], [21, 24], [22, 23], [32, 36], [33, 35],
    [37, 46], [38, 45], [39, 44], [40, 43], [41, 48], [42, 47],
    [49, 55], [50, 54], [51, 53], [62, 64], [61, 65], [68, 66], [59, 57], [60, 56],
]
HRNET_AFLW_1BASED = [[1, 6], [2, 5], [3, 4], [7, 12], [8, 11], [9, 10], [13, 15], [16, 18]]
HRNET_COFW_1BASED = [[1, 2], [5, 7], [3, 4], [6, 8], [9, 10], [11, 12], [13, 15], [17, 18], [14, 16], [19, 20], [23, 24]]
HRNET_WFLW_0BASED = [
    [0, 32], [1, 31], [2, 30], [3, 29], [4, 28], [5, 27], [6, 26], [7, 25], [8, 24], [9, 23], [10, 22],
    [11, 21], [12, 20], [13, 19], [14, 18], [15, 17],
    [33, 46], [34, 45], [35, 44], [36, 43], [37, 42], [38, 50], [39, 49], [40, 48], [41, 47],
    [60, 72], [61, 71], [62, 70], [63, 69], [64, 68], [65, 75], [66, 74], [67, 73],
    [55, 59], [56, 58], [76, 82], [77, 81], [78, 80], [87, 83], [86, 84], [88, 92], [89, 91], [95, 93], [96, 97],
]


def permutation_from(pairs, n, base):
    perm = list(range(n))
    for a, b in pairs:
        a, b = a - base, b - base
        perm[a], perm[b] = b, a
    return tuple(perm)


@pytest.mark.parametrize(
    "name, pairs, n, base",
    [
        ("300w", HRNET_300W_1BASED, 68, 1),
        ("wflw", HRNET_WFLW_0BASED, 98, 0),
        ("cofw", HRNET_COFW_1BASED, 29, 1),
        ("aflw", HRNET_AFLW_1BASED, 19, 1),
    ],
)
def test_flip_permutation_matches_published_pairs(name, pairs, n, base):
    scheme = schemes.get(name)
    assert scheme.num_points == n
    assert scheme.flip_permutation == permutation_from(pairs, n, base)


def test_flip_spot_checks_and_midline_points():
    s68 = schemes.get("300w").flip_permutation
    assert (s68[0], s68[16], s68[36], s68[45], s68[39], s68[42], s68[48], s68[54]) == (16, 0, 45, 36, 42, 39, 54, 48)
    # points on the facial midline map to themselves: chin, nose bridge, nose tip, lip centres
    assert [i for i in range(68) if s68[i] == i] == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    s98 = schemes.get("wflw").flip_permutation
    assert (s98[96], s98[60], s98[64], s98[76], s98[88]) == (97, 72, 68, 82, 92)
    assert [i for i in range(98) if s98[i] == i] == [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]
    assert schemes.get("5pt").flip_permutation == (1, 0, 2, 4, 3)


@pytest.mark.parametrize("name", list(schemes.BUILTIN))
def test_builtin_schemes_are_consistent(name):
    scheme = schemes.get(name)
    perm = scheme.flip_permutation
    assert sorted(perm) == list(range(scheme.num_points))
    assert all(perm[perm[i]] == i for i in range(scheme.num_points))  # involution
    schemes.validate(scheme)
    # regions partition the points
    members = sorted(i for region in scheme.regions.values() for i in region)
    assert members == list(range(scheme.num_points))
    # mirroring turns image-left parts into image-right parts
    a, b = scheme.outer_eye_corners
    assert perm[a] == b
    assert sorted(perm[i] for i in scheme.left_eye) == sorted(scheme.right_eye)
    for region in [r for r in scheme.regions if r.startswith("left")]:
        assert sorted(perm[i] for i in scheme.regions[region]) == sorted(scheme.regions[region.replace("left", "right")])


@pytest.mark.parametrize("name", list(schemes.BUILTIN))
def test_boundaries_mirror_onto_their_partner(name):
    scheme = schemes.get(name)
    perm = scheme.flip_permutation
    for key, line in scheme.boundaries.items():
        partner = key.replace("left", "@").replace("right", "left").replace("@", "right")
        mirrored = tuple(perm[i] for i in line)
        target = scheme.boundaries[partner]
        if line[0] == line[-1]:  # closed loop: same cycle, any start, either direction
            assert target[0] == target[-1]
            cycle = target[:-1]
            rotations = {cycle[k:] + cycle[:k] for k in range(len(cycle))}
            rotations |= {r[::-1] for r in rotations}
            assert mirrored[:-1] in rotations, (key, mirrored, target)
        else:
            assert mirrored in (target, target[::-1]), (key, mirrored, target)


def test_boundary_counts():
    assert len(schemes.get("wflw").boundaries) == 15
    assert len(schemes.get("300w").boundaries) == 13
    assert schemes.get("wflw").boundaries["contour"] == tuple(range(33))
    assert schemes.get("300w").boundaries["lower_outer_lip"] == (48, 59, 58, 57, 56, 55, 54)


def test_for_num_points_and_get():
    assert {n: schemes.for_num_points(n).name for n in (68, 98, 29, 19, 5)} == {68: "300w", 98: "wflw", 29: "cofw", 19: "aflw", 5: "5pt"}
    with pytest.raises(DataError):
        schemes.for_num_points(42)
    with pytest.raises(DataError, match="unknown landmark scheme"):
        schemes.get("300x")
    assert schemes.get("WFLW") is schemes.get("wflw")
    assert schemes.get(schemes.get("cofw")) is schemes.get("cofw")
    assert len({schemes.get(name) for name in schemes.BUILTIN}) == 6  # hashable despite dict fields


def test_to_5pt_from_68_and_98_by_hand():
    pts68 = np.stack([np.arange(68.0), 2.0 * np.arange(68.0)], axis=1)
    five = schemes.to_5pt(pts68, "300w")
    # eye centres: means of 36..41 and 42..47 -> 38.5 and 44.5; nose tip 30; mouth 48, 54
    expected = np.array([[38.5, 77.0], [44.5, 89.0], [30.0, 60.0], [48.0, 96.0], [54.0, 108.0]])
    np.testing.assert_allclose(five, expected)
    pts98 = np.stack([np.arange(98.0), -np.arange(98.0)], axis=1)
    five = schemes.to_5pt(pts98[None].repeat(3, axis=0), "wflw")
    assert five.shape == (3, 5, 2)
    np.testing.assert_allclose(five[1], [[96, -96], [97, -97], [54, -54], [76, -76], [82, -82]])
    with pytest.raises(ValueError):
        schemes.to_5pt(pts98, "300w")


def test_mirror_points_by_hand():
    pts = np.array([[1.0, 5.0], [8.0, 6.0], [4.5, 2.0], [2.0, 9.0], [7.0, 9.5]])
    # width 10: x' = 9 - x, then index i takes the mirrored point perm[i]
    mirrored = schemes.mirror_points(pts, "5pt", width=10)
    np.testing.assert_allclose(mirrored, [[1.0, 6.0], [8.0, 5.0], [4.5, 2.0], [2.0, 9.5], [7.0, 9.0]])
    np.testing.assert_allclose(schemes.mirror_points(mirrored, "5pt", width=10), pts)


# ---------------------------------------------------------------------------------------
# Custom schemes

GOOD_YAML = """
name: seven
num_points: 7
flip_permutation: [1, 0, 2, 4, 3, 6, 5]
outer_eye_corners: [5, 6]
left_eye: [0, 5]
right_eye: [1, 6]
regions:
  nose_tip: [2]
  mouth_corners: [3, 4]
boundaries:
  mouth: [3, 4]
"""


def test_custom_scheme_yaml_and_json(tmp_path):
    path = tmp_path / "seven.yaml"
    path.write_text(GOOD_YAML)
    scheme = schemes.get(str(path))
    assert scheme.name == "seven" and scheme.num_points == 7
    assert scheme.flip_permutation == (1, 0, 2, 4, 3, 6, 5)
    assert scheme.regions["mouth_corners"] == (3, 4)
    pts = np.arange(14.0).reshape(7, 2)
    np.testing.assert_allclose(schemes.to_5pt(pts, scheme)[0], (pts[0] + pts[5]) / 2)

    as_json = {"num_points": 3, "flip_pairs": [[0, 2]], "outer_eye_corners": [0, 2], "left_eye": [0], "right_eye": [2]}
    json_path = tmp_path / "three.json"
    json_path.write_text(json.dumps(as_json))
    scheme = schemes.load_custom(json_path)
    assert scheme.name == "three" and scheme.flip_permutation == (2, 1, 0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"flip_permutation": [1, 2, 0, 3, 4, 5, 6]}, "involution"),
        ({"flip_permutation": [1, 1, 2, 4, 3, 6, 5]}, "not a permutation"),
        ({"flip_permutation": [1, 0, 2, 4, 3, 6]}, "6 entries"),
        ({"left_eye": [0, 9]}, "index 9"),
        ({"right_eye": [1, 5]}, "left_eye onto right_eye"),
        ({"regions": {"nose": [2, 70]}}, "index 70"),
        ({"num_points": "seven"}, "positive integer"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_bad_custom_scheme_is_rejected_naming_the_file(tmp_path, change, message):
    import yaml

    data = yaml.safe_load(GOOD_YAML)
    data.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match=message) as info:
        schemes.load_custom(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_custom_scheme_files(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("num_points: [1, 2\n")
    with pytest.raises(DataError, match="YAML") as info:
        schemes.load_custom(bad)
    assert str(info.value).startswith(str(bad))
    with pytest.raises(DataError, match="not found"):
        schemes.load_custom(tmp_path / "missing.yaml")
    missing_field = tmp_path / "partial.json"
    missing_field.write_text(json.dumps({"num_points": 2, "flip_permutation": [1, 0]}))
    with pytest.raises(DataError, match="missing field"):
        schemes.load_custom(missing_field)


# ---------------------------------------------------------------------------------------
# Mirroring real faces


def similarity_align(target: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama, no reflection) of moving onto target."""
    t0, m0 = target - target.mean(0), moving - moving.mean(0)
    u, s, vt = np.linalg.svd(m0.T @ t0)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = (s * np.diag(d)).sum() / (m0**2).sum()
    return scale * m0 @ rotation + target.mean(0)


def frontality(p: np.ndarray, name: str) -> float:
    """|distance nose tip - left outer eye corner - distance nose tip - right one| / IOD:
    0 for a frontal face."""
    scheme = schemes.get(name)
    a, b = scheme.outer_eye_corners
    nose = 30 if name == "300w" else 54
    return abs(np.linalg.norm(p[nose] - p[a]) - np.linalg.norm(p[nose] - p[b])) / np.linalg.norm(p[a] - p[b])


def check_plausible_face(pts: np.ndarray, name: str) -> None:
    scheme = schemes.get(name)
    left_eye, right_eye = schemes.eye_centres(pts, scheme)
    assert left_eye[0] < right_eye[0]
    jaw = pts[list(scheme.regions["jaw"])]
    n = len(jaw)
    quarter = [0, n // 4, n // 2, 3 * n // 4, n - 1]
    assert np.all(np.diff(jaw[quarter, 0]) > 0), "jaw must run image-left to image-right"
    assert jaw[0, 0] < pts[:, 0].mean() < jaw[-1, 0]
    for side in ("left", "right"):
        brow = pts[list(scheme.regions[f"{side}_brow"])].mean(0)
        eye = pts[list(scheme.regions[f"{side}_eye"])].mean(0)
        assert brow[1] < eye[1], f"{side} brow must be above the {side} eye"
    nose_tip = schemes.to_5pt(pts, scheme)[2]
    mouth = pts[list(scheme.regions["mouth"])].mean(0)
    assert mouth[1] > nose_tip[1]
    assert pts[list(scheme.outer_eye_corners)][0, 0] < left_eye[0] < right_eye[0] < pts[list(scheme.outer_eye_corners)][1, 0]


@pytest.mark.parametrize("which", ["300w", "wflw"])
def test_mirrored_real_face_is_plausible(which, data_300w, data_wflw):
    if which == "300w":
        faces = load(f"300w:{data_300w}", "afw")
        face = next(f for f in faces if f.image_path.endswith("1051618982_1.jpg"))
    else:
        faces = load(f"wflw:{data_wflw}", "test")
        face = min(faces, key=lambda f: frontality(f.landmarks, "wflw"))
    width = read_image(face.image_path).shape[1]
    check_plausible_face(face.landmarks, which)
    mirrored = schemes.mirror_points(face.landmarks, which, width)
    check_plausible_face(mirrored, which)
    # Without the permutation the mirrored face is implausible (point 0 would end on the right).
    unpermuted = face.landmarks.copy()
    unpermuted[:, 0] = width - 1 - unpermuted[:, 0]
    with pytest.raises(AssertionError):
        check_plausible_face(unpermuted, which)


@pytest.mark.parametrize("which", ["300w", "wflw"])
def test_flip_permutation_is_the_mirror_matching_of_the_mean_face(which, data_300w, data_wflw):
    """On the mean shape of all real faces, every point's mirror image lands nearest to its
    published partner: the permutation is recovered from the data."""
    root = data_300w if which == "300w" else data_wflw
    scheme = schemes.get(which)
    shapes = [f.landmarks for f in load(f"{which}:{root}")]
    mean = shapes[0] - shapes[0].mean(0)
    for _ in range(4):  # generalised Procrustes
        mean = np.mean([similarity_align(mean, s) for s in shapes], axis=0)
    a, b = scheme.outer_eye_corners
    iod = np.linalg.norm(mean[a] - mean[b])
    perm = np.array(scheme.flip_permutation)
    reflected = mean * [-1.0, 1.0]
    aligned = similarity_align(mean, reflected[perm])  # aligned[i] ~ mean[i]
    residual = np.linalg.norm(aligned - mean, axis=1) / iod
    assert residual.max() < 0.04
    # Nearest mirrored point to each point, over all candidates (aligned as above).
    candidates = np.empty_like(aligned)
    candidates[perm] = aligned  # candidates[k] = mirror image of point k
    distances = np.linalg.norm(mean[:, None] - candidates[None], axis=2)
    assert np.array_equal(distances.argmin(axis=1), perm)
    # A wrong permutation does not match: reflection without re-indexing is far off.
    assert (np.linalg.norm(similarity_align(mean, reflected) - mean, axis=1) / iod).mean() > 0.3


@pytest.mark.parametrize("which", ["300w", "wflw"])
def test_near_frontal_faces_are_mirror_symmetric(which, data_300w, data_wflw):
    root = data_300w if which == "300w" else data_wflw
    scheme = schemes.get(which)
    a, b = scheme.outer_eye_corners
    errors = []
    for face in load(f"{which}:{root}"):
        p = face.landmarks
        iod = np.linalg.norm(p[a] - p[b])
        if frontality(p, which) > 0.05:
            continue  # not near-frontal
        mirrored = schemes.mirror_points(p, scheme, width=1000)
        errors.append(np.sqrt(np.mean(np.sum((similarity_align(p, mirrored) - p) ** 2, axis=1))) / iod)
    assert len(errors) > 50
    assert np.median(errors) < 0.06
