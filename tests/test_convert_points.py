"""Faces with another scheme's points (`data.points`; facemarks.data.convert): values against
indices written out from the 300W and WFLW layouts, boxes, errors, and a five-point model
trained on 68-point faces and scored on them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facemarks.data import convert
from facemarks.data.sample import Sample, landmark_box
from facemarks.data.splits import load_splits
from facemarks.engine import config as cfg
from facemarks.engine import trainer as train
from facemarks.engine.evaluate import evaluate_checkpoint
from facemarks.errors import ConfigError, DataError


def face(points, scheme, box=None):
    points = np.asarray(points, dtype=np.float64)
    return Sample(image_path="x.png", landmarks=points, scheme=scheme,
                  box=landmark_box(points) if box is None else np.asarray(box, dtype=np.float64))


def test_300w_to_five_points_by_hand_and_the_box_is_kept():
    points = np.random.default_rng(0).uniform(0, 200, (68, 2))
    box = [10.0, 20.0, 190.0, 210.0]  # not the extent: the annotated box must travel unchanged
    (out,), _ = convert.convert_samples([face(points, "300w", box)], "5pt", "spec")
    # image-left eye 36-41, image-right eye 42-47 (eye contour means), nose tip 30, mouth corners 48, 54
    expected = [points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]]
    np.testing.assert_allclose(out.landmarks, expected)
    np.testing.assert_array_equal(out.box, box)
    assert out.scheme == "5pt"


def test_wflw_to_five_points_uses_the_pupils_and_the_box_of_the_mapped_68():
    points = np.random.default_rng(1).uniform(0, 300, (98, 2))
    (out,), description = convert.convert_samples([face(points, "wflw")], "5pt", "spec")
    np.testing.assert_allclose(out.landmarks, points[[96, 97, 54, 76, 82]])
    sixty_eight = points[list(range(0, 33, 2)) + list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60))
                         + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75] + list(range(76, 96))]
    np.testing.assert_allclose(out.box, landmark_box(sixty_eight))
    assert description.startswith("WFLW 98 points reduced to 5")
    (mapped,), _ = convert.convert_samples([face(points, "wflw")], "300w", "spec")
    np.testing.assert_allclose(mapped.landmarks, sixty_eight)


def test_schemes_that_do_not_map_are_refused_naming_the_data():
    five = face(np.zeros((5, 2)) + np.arange(5)[:, None], "5pt")
    with pytest.raises(DataError, match="spec.*do not map onto '300w'"):
        convert.convert_samples([five], "300w", "spec")
    with pytest.raises(ConfigError, match="data.points.*valid: null"):
        cfg.validate(cfg.from_dict({"data": {"points": "98pt"}}), "c.yaml")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('synthetic'), num_faces=40, seed=3, image_size=96, progress=False)}"


def test_a_five_point_model_trains_on_68_point_faces_and_is_scored_on_their_five_points(faces, tmp_path):
    data = cfg.DataConfig(spec=faces, train_split="train", val_split="val", test_split="test", points="5pt",
                          cache_dir=str(tmp_path / "cache"))
    splits = load_splits(data)
    annotated = load_splits(dataclasses.replace(data, points=None))
    assert {s.scheme for split in splits.values() for s in split} == {"5pt"}
    np.testing.assert_array_equal(splits["test"][0].box, annotated["test"][0].box)
    config = cfg.Config()
    config.data, config.model = data, cfg.ModelConfig(name="dsnet")
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    entry = cfg.parse_entry("wing", config, "t", "losses[0]")
    train.fit(config, entry, seed=0, out_dir=tmp_path / "run", progress=False)
    result = evaluate_checkpoint(tmp_path / "run" / "best.pt", faces, "test", cache_dir=tmp_path / "cache")
    assert result["ground_truth"].startswith("300W 68 points reduced to 5")
    assert result["faces"] == len(annotated["test"]) == len(result["per_face"]["image_path"])
