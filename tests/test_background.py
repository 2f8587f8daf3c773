"""Background replacement (facemarks.data.background): the face mask from the landmarks,
the procedural textures, the augmentation option (no draw or image changes at probability
0) and the "background" perturbation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facemarks import schemes
from facemarks.data import background
from facemarks.data.augment import AugmentConfig, augment_sample, background_partner, sample_augmentation
from facemarks.data.sample import landmark_box
from facemarks.data.synthetic.renderer import generate_face
from facemarks.engine import stability
from facemarks.registry import PERTURBATIONS


def value_at(mask, point) -> float:
    x, y = np.round(point).astype(int)
    return float(mask[y, x])


def check_mask(mask, points68, scheme_points=None):
    """Every landmark inside (>= 0.9: a rounded pixel may sit just outside the hull, in the
    soft edge), a forehead point above the brows inside, the four corners outside."""
    chin, brows = points68[8], points68[17:27].mean(axis=0)
    for point in points68 if scheme_points is None else scheme_points:
        assert value_at(mask, point) >= 0.9, point
    # halfway up the forehead: brows + 0.35 (brows - chin), on the face's own up direction
    assert value_at(mask, brows + 0.35 * (brows - chin)) == 1.0
    h, w = mask.shape
    assert mask[0, 0] == mask[0, w - 1] == mask[h - 1, 0] == mask[h - 1, w - 1] == 0.0


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_mask_of_synthetic_faces(index):
    image, points = padded(*generate_face(0, index)[:2])
    mask = background.face_mask(points, "300w", image.shape)
    check_mask(mask, points)
    assert 0.05 < (mask == 1).mean() < 0.5  # the face, not the whole picture


def padded(image, points, pad=80):
    """The image in a grey frame `pad` px wide (so the corners are background)."""
    frame = np.full((image.shape[0] + 2 * pad, image.shape[1] + 2 * pad, 3), 128, np.uint8)
    frame[pad:pad + image.shape[0], pad:pad + image.shape[1]] = image
    return frame, np.asarray(points) + pad


def test_mask_of_real_300w_and_wflw_faces(data_300w, data_wflw):
    from facemarks.data import formats
    from facemarks.data.sample import read_image

    faces = list(formats.load(f"300w:{data_300w}", "common"))[:6] + list(formats.load(f"wflw:{data_wflw}", "test"))[:6]
    for sample in faces:
        image, points = padded(read_image(sample.image_path), sample.landmarks)
        mask = background.face_mask(points, sample.scheme, image.shape)
        points68 = schemes.to_68(points, sample.scheme)
        # wflw: the 98 points, the 33-point jaw included (its in-between points may fall in the soft edge)
        check_mask(mask, points68)
        if schemes.get(sample.scheme).name == "wflw":
            assert all(value_at(mask, p) > 0.5 for p in points), sample.image_path


def test_a_tilted_face_gets_a_tilted_forehead():
    """Rotating the points (and the image) by 90 degrees rotates the mask with them: the
    forehead is along the face's up direction, not the image's."""
    image, points, _ = generate_face(0, 0)
    mask = background.face_mask(points, "300w", image.shape)
    size = image.shape[0]
    turned = np.stack([points[:, 1], size - 1 - points[:, 0]], axis=1)  # (x, y) -> (y, S-1-x): np.rot90
    turned_mask = background.face_mask(turned, "300w", image.shape)
    assert np.abs(np.rot90(mask) - turned_mask).mean() < 0.01


def test_face_pixels_unchanged_background_replaced():
    image, points, _ = generate_face(0, 2)
    mask = background.face_mask(points, "300w", image.shape)
    for kind in background.SOURCES:
        out = background.replace_background(image, points, "300w", seed=5, kind=kind)
        inside, outside = mask == 1, mask == 0
        np.testing.assert_array_equal(out[inside], image[inside])
        changed = np.any(out != image, axis=-1)
        assert changed[outside].mean() > 0.9, kind
        texture = background.texture(5, image.shape, kind)
        np.testing.assert_array_equal(out[outside], texture[outside])


def test_textures_are_a_function_of_the_seed():
    shape = (64, 80, 3)
    for kind in background.SOURCES:
        first, again = background.texture(3, shape, kind), background.texture(3, shape, kind)
        np.testing.assert_array_equal(first, again)
        assert first.shape == shape and first.dtype == np.uint8
        assert np.any(first != background.texture(4, shape, kind))
        assert first.std() > 2  # a picture, not one flat colour
    drawn = {background.texture(seed, shape).tobytes() for seed in range(12)}
    assert len(drawn) == 12
    with pytest.raises(ValueError, match="background texture"):
        background.texture(0, shape, "plaid")


def test_probability_zero_leaves_draws_and_images_unchanged():
    """With background_prob 0 (any source) every parameter and every augmented image is
    the one of the configuration without the option, and the generator ends in the same
    state; with probability 1 the face's pixels stay and the background is a texture."""
    image, points, _ = generate_face(0, 1)
    box = landmark_box(points)
    plain = AugmentConfig()
    off = AugmentConfig(background_prob=0.0, background_source="stripes")
    permutation = schemes.get("300w").flip_permutation
    for seed in range(6):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        pa, pb = sample_augmentation(a, plain), sample_augmentation(b, off)
        assert pa == pb and pb.background is None
        # the option's uniforms come after the others: the rotation is still the first uniform's
        assert pa.rotation == pytest.approx(-plain.rotation + 2 * plain.rotation * np.random.default_rng(seed).random())
        assert a.bit_generator.state == b.bit_generator.state
        ia, _, _ = augment_sample(image, points, box, pa, 96, flip_permutation=permutation)
        ib, _, _ = augment_sample(image, points, box, pb, 96, flip_permutation=permutation)
        np.testing.assert_array_equal(ia, ib)
    always = dataclasses.replace(AugmentConfig.none(), background_prob=1.0)
    params = sample_augmentation(np.random.default_rng(0), always)
    assert params.background is not None
    still, input_points, _ = augment_sample(image, points, box, sample_augmentation(np.random.default_rng(0),
                                                                                    AugmentConfig.none()), 96)
    replaced, _, _ = augment_sample(image, points, box, params, 96)
    mask = background.face_mask(input_points, "300w", still.shape)
    np.testing.assert_array_equal(replaced[mask == 1], still[mask == 1])
    assert np.any(replaced != still, axis=-1)[mask == 0].mean() > 0.9


def test_bad_background_options_are_refused():
    with pytest.raises(ValueError, match="background_prob"):
        AugmentConfig(background_prob=1.5)
    with pytest.raises(ValueError, match="background_source"):
        AugmentConfig(background_source="photo")


def test_background_perturbation_keeps_the_face():
    """The registered perturbation replaces the background of the network input, leaves
    the face's pixels, and draws its texture from its own generator (deterministic)."""
    assert PERTURBATIONS.info("background")["kind"] == "photometric"
    image, points, _ = generate_face(0, 3)
    changes = [stability.draw_changes(["background"], 0, 7, v, image.shape[0])[0] for v in (0, 0, 1)]
    np.testing.assert_array_equal(changes[0].matrix, np.eye(2, 3))
    outs = [change.image(image, points) for change in changes]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.any(outs[0] != outs[2])
    mask = background.face_mask(points, "300w", image.shape)
    np.testing.assert_array_equal(outs[0][mask == 1], image[mask == 1])
    assert np.any(outs[0] != image, axis=-1)[mask == 0].mean() > 0.9


@pytest.fixture(scope="module")
def small_crops(tmp_path_factory):
    from facemarks.data import cache as crop_cache
    from facemarks.data import formats
    from facemarks.data.synthetic import render
    from facemarks.geometry.crop import BoxCrop

    spec = f"jsonl:{render(tmp_path_factory.mktemp('faces'), num_faces=6, seed=3, image_size=96, progress=False)}"
    samples = list(formats.load(spec, "train"))
    return crop_cache.build(samples, 48, BoxCrop(0.25), root=tmp_path_factory.mktemp("cache"))


def test_background_from_another_training_crop(small_crops):
    """background_source crop: FaceCrops gives each face the surroundings of another face's
    crop (background_partner, never itself), cut by the same warp: outside the mask the
    pixels are that crop's (no colour change configured), inside the face's own."""
    from facemarks.data.dataset import FaceCrops
    from facemarks.geometry.affine import warp_image

    cfg = dataclasses.replace(AugmentConfig.none(), background_prob=1.0, background_source="crop")
    crops = FaceCrops(small_crops, 48, cfg, seed=1)
    plain = FaceCrops(small_crops, 48, None)
    partners = set()
    for index in range(len(small_crops)):
        item, still = crops[index], plain[index]
        params = sample_augmentation(np.random.default_rng([1, 0, index]), cfg)
        partner = background_partner(params, index, len(small_crops))
        assert partner is not None and partner != index
        partners.add(partner)
        image = item["image"].numpy().transpose(1, 2, 0)
        own = still["image"].numpy().transpose(1, 2, 0)
        other = warp_image(np.asarray(small_crops.images[partner]), item["matrix"].numpy(), 48)
        points = still["points"].numpy() * 48 - 0.5
        mask = background.face_mask(points, "300w", image.shape)
        np.testing.assert_array_equal(image[mask == 1], own[mask == 1])
        np.testing.assert_array_equal(image[mask == 0], other[mask == 0])
    assert len(partners) > 1
    with pytest.raises(ValueError, match="background_image"):
        augment_sample(own, points, landmark_box(points), params, 48)
