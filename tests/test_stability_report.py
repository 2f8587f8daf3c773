"""Stability in `compare` (config `stability`, compare.run_stability) and its report section
(tables.summarise_stability / stability_section).

The per-run jitter is checked against stability.jitter_checkpoint, which loads the run's
checkpoint and cuts its own crops from the data spec (not compare's crop cache); the video
figures against a frame-by-frame prediction written out here; the paired table against a
hand computation (plain Python, scipy's t quantile and Wilcoxon test, Holm written out) on a
fake results dict whose config order differs from its NME ranking."""

from __future__ import annotations

import copy
import json
import math
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from facemarks.data.sample import landmark_box, read_image
from facemarks.engine import config as cfg
from facemarks.engine import stability
from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import ConfigError
from facemarks.experiments.compare import compare
from facemarks.experiments.report import write_report
from facemarks.geometry.affine import apply_to_points, crop_matrix, invert, warp_antialiased

K, STABILITY_SEED, PERTURBATIONS = 3, 7, ["noise", "shift", "background"]


# ------------------------------------------------------------------ a real comparison


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from facemarks.data.synthetic import render

    root = tmp_path_factory.mktemp("stability")
    spec = f"jsonl:{render(root / 'faces', num_faces=48, seed=5, image_size=96)}"
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, cache_dir=str(root / "cache"))
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    config.losses, config.seeds = ["mpd", "wing"], [0, 1]
    config.stability = cfg.StabilityConfig(jitter_k=K, perturbations=PERTURBATIONS, video_faces=2, seed=STABILITY_SEED)
    results = compare(config, root / "cmp", progress=False)
    return root, spec, results


def test_each_runs_jitter_is_perturbation_jitter_of_its_checkpoint_with_the_stability_seed(comparison):
    root, spec, results = comparison
    assert len(results["runs"]) == 4
    for run in results["runs"]:
        found = stability.jitter_checkpoint(root / "cmp" / run["checkpoint"], spec, "test", K, STABILITY_SEED,
                                            cache_dir=root / "cache", perturbations=PERTURBATIONS)
        record = run["stability"]
        assert (record["k"], record["seed"], record["perturbations"]) == (K, STABILITY_SEED, PERTURBATIONS)
        assert len(record["jitter_pct"]) == len(results["test_faces"])
        np.testing.assert_allclose(record["jitter_pct"], found["per_face"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(record["nme_under_perturbation_pct"], found["nme"], rtol=1e-6, atol=1e-9)
    assert min(np.mean(run["stability"]["jitter_pct"]) for run in results["runs"]) > 0  # perturbations do move points


def test_each_runs_video_figures_follow_a_frame_by_frame_prediction(comparison):
    root, spec, results = comparison
    run = results["runs"][1]
    checkpoint = Checkpoint.load(root / "cmp" / run["checkpoint"])
    model = checkpoint.build_model()
    faces = run["stability"]["video"]["faces"]
    assert faces == results["test_faces"][:2]
    for i, face in enumerate(faces):
        image = read_image(face)
        video = stability.moving_face_video(image, _landmarks_of(spec, face))
        points = []
        for frame, truth in zip(video.frames, video.points):  # one frame at a time, cut from its true box
            matrix = crop_matrix(landmark_box(truth), checkpoint.input_size, margin=checkpoint.crop.margin)
            crop = warp_antialiased(frame, matrix, checkpoint.input_size)
            found = stability.predict_images(model, crop[None])[0] * checkpoint.input_size - 0.5
            points.append(apply_to_points(invert(matrix), found))
        expected = stability.video_jitter(np.stack(points), checkpoint.scheme, truth=video.points)
        # A batch of frames and single frames differ in float32 rounding only; an untrained model
        # moves its points nearly rigidly with the face, hence the absolute tolerance of the jitter.
        assert run["stability"]["video"]["jitter_pct"][i] == pytest.approx(expected["jitter"], rel=1e-4, abs=1e-6)
        assert run["stability"]["video"]["nme_pct"][i] == pytest.approx(expected["nme"], rel=1e-5)
        assert expected["nme"] > 1.0


def _landmarks_of(spec: str, image_path: str) -> np.ndarray:
    from facemarks.data import formats

    return next(s.landmarks for s in formats.load(spec, "test") if s.image_path == image_path)


def test_the_report_has_the_stability_section_of_the_runs(comparison):
    root, _, results = comparison
    summary = json.loads((root / "cmp" / "results.json").read_text())["summary"]["stability"]
    assert summary["reference"] == "mpd" and summary["num_videos"] == 2
    jitter = summary["entries"]["wing"]["jitter_pct"]["per_seed"]
    runs = [r for r in results["runs"] if r["name"] == "wing"]
    assert jitter == pytest.approx([np.mean(r["stability"]["jitter_pct"]) for r in runs])
    report = (root / "cmp" / "report.md").read_text()
    assert "## Stability" in report and "Video jitter (% IOD)" in report and "| mpd | wing |" in report


def test_a_retest_on_other_faces_carries_no_stability_of_the_comparisons_faces(comparison, tmp_path):
    from facemarks.experiments.retest import retest

    root, spec, _ = comparison
    found = retest(root / "cmp", spec, "val", tmp_path / "again", cache_dir=root / "cache")
    assert all("stability" not in run for run in found["runs"])
    assert all(len(run["nme_regions"]["jaw"]) == len(found["test_faces"]) != 4 for run in found["runs"])
    assert "## Stability" not in (tmp_path / "again" / "report.md").read_text()


def test_more_videos_than_test_faces_is_refused_naming_the_key(comparison, tmp_path):
    root, spec, results = comparison
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, cache_dir=str(root / "cache"))
    config.input_size, config.epochs, config.losses = 32, 1, ["mpd"]
    config.stability = cfg.StabilityConfig(jitter_k=2, video_faces=len(results["test_faces"]) + 1)
    with pytest.raises(ConfigError, match=r"stability\.video_faces.*test split has"):
        compare(config, tmp_path / "out", progress=False)


# --------------------------------------------------------------------- config errors


@pytest.mark.parametrize("values, key", [
    ({"jitter_k": 1}, "stability.jitter_k"),
    ({"jitter_k": 4, "perturbations": ["noise", "nope"]}, "stability.perturbations"),
    ({"jitter_k": 4, "perturbations": ["noise", "noise"]}, "stability.perturbations"),
    ({"perturbations": ["noise"]}, "stability.perturbations"),
    ({"jitter_k": 4, "video_faces": -1}, "stability.video_faces"),
    ({"video_faces": 3}, "stability.video_faces"),
    ({"jitter_k": 4, "seed": -2}, "stability.seed"),
    ({"jitter_k": "eight"}, "stability.jitter_k"),
    ({"jitter": 8}, "stability.jitter"),
])
def test_config_errors_name_the_key(values, key):
    with pytest.raises(ConfigError) as caught:
        cfg.validate(cfg.from_dict({"stability": values}, "c.yaml"), "c.yaml")
    assert f"c.yaml: {key}:" in str(caught.value) or str(caught.value).startswith(f"c.yaml: {key}"), str(caught.value)


def test_the_shipped_background_config_validates():
    config = cfg.load("configs/cpu_300w_background.yaml")
    assert config.stability.jitter_k == 8 and config.stability.video_faces == 5
    assert config.stability.perturbations == [*stability.DEFAULT_PERTURBATIONS, "background"]
    assert [e["name"] for e in config.losses] == ["plain", "background"]


# ------------------------------------------------------------------- the paired table

FACES = 6
# Per-face jitter (%) of 3 entries x 2 seeds; config order base, small, large. The NME ranks
# "large" first, so a reference taken from the ranking would pair the wrong entries.
JITTER = {
    ("base", 0): [0.50, 0.62, 0.41, 0.77, 0.58, 0.66], ("base", 1): [0.54, 0.60, 0.45, 0.71, 0.61, 0.69],
    ("small", 0): [0.41, 0.55, 0.40, 0.60, 0.49, 0.52], ("small", 1): [0.44, 0.53, 0.36, 0.66, 0.47, 0.57],
    ("large", 0): [0.71, 0.60, 0.55, 0.90, 0.62, 0.80], ("large", 1): [0.52, 0.69, 0.50, 0.86, 0.70, 0.74],
}
NME = {"base": 0.05, "small": 0.06, "large": 0.04}


def fake_run(name, seed, with_stability=True):
    run = {"name": name, "seed": seed, "nme": {"image": [0.01] * FACES,
                                               "inter_ocular": [NME[name] + 0.001 * (i + seed) for i in range(FACES)]}}
    if with_stability:
        run["stability"] = {"k": 8, "seed": 0, "perturbations": ["noise"], "jitter_pct": JITTER[name, seed],
                            "nme_under_perturbation_pct": [3.0 + seed] * FACES,
                            "video": {"faces": ["f0", "f1"], "jitter_pct": [0.2 + seed, 0.4], "nme_pct": [4.0, 5.0]}}
    return run


def fake_results(runs):
    return {"title": "t", "test_faces": [f"f{i}" for i in range(FACES)], "runs": runs}


def hand_pair(a: str, b: str) -> dict:
    d = [statistics.mean(JITTER[a, s][i] for s in (0, 1)) - statistics.mean(JITTER[b, s][i] for s in (0, 1))
         for i in range(FACES)]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    half = scipy_stats.t.ppf(0.975, FACES - 1) * sd / math.sqrt(FACES)
    seed_d = [statistics.mean(JITTER[a, s]) - statistics.mean(JITTER[b, s]) for s in (0, 1)]
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": scipy_stats.wilcoxon(d).pvalue,
            "seed_d": seed_d}


def test_the_paired_jitter_table_matches_a_hand_computation(tmp_path):
    runs = [fake_run(name, seed) for name in ("base", "small", "large") for seed in (0, 1)]
    summary = write_report(fake_results(runs), tmp_path)["stability"]
    assert summary["reference"] == "base"
    assert [(p["a"], p["b"]) for p in summary["pairs"]] == [("base", "small"), ("base", "large")]
    hand = [hand_pair("base", "small"), hand_pair("base", "large")]
    low, high = sorted(range(2), key=lambda i: hand[i]["p"])  # Holm over the two pairs, written out
    holm = {low: min(1.0, 2 * hand[low]["p"])}
    holm[high] = min(1.0, max(holm[low], hand[high]["p"]))
    for i, (pair, expect) in enumerate(zip(summary["pairs"], hand)):
        assert pair["mean_difference_pct"] == pytest.approx(expect["mean"], abs=1e-12)
        assert pair["ci_low_pct"] == pytest.approx(expect["low"], abs=1e-12)
        assert pair["ci_high_pct"] == pytest.approx(expect["high"], abs=1e-12)
        assert pair["wilcoxon_p"] == pytest.approx(expect["p"], rel=1e-12)
        assert pair["wilcoxon_p_holm"] == pytest.approx(holm[i], rel=1e-12)
        assert pair["seed_level"]["differences_pct"] == pytest.approx(expect["seed_d"], abs=1e-12)
    assert summary["pairs"][0]["better"] == "small" and summary["pairs"][1]["better"] == "base"
    entry = summary["entries"]["large"]
    assert entry["jitter_pct"]["per_seed"] == pytest.approx([statistics.mean(JITTER["large", s]) for s in (0, 1)])
    assert entry["jitter_pct"]["std"] == pytest.approx(statistics.stdev(entry["jitter_pct"]["per_seed"]))
    assert entry["video_jitter_pct"]["per_seed"] == pytest.approx([0.3, 0.8])
    report = (tmp_path / "report.md").read_text()
    m = entry["jitter_pct"]
    assert f"| large | {m['mean']:.3f} ± {m['std']:.3f} |" in report
    assert f"| base | small | {FACES} | {hand[0]['mean']:+.3f} |" in report
    assert f"0: {hand[1]['seed_d'][0]:+.3f}, 1: {hand[1]['seed_d'][1]:+.3f}" in report


def test_old_results_without_stability_render_unchanged(tmp_path):
    runs = [fake_run(name, seed, with_stability=False) for name in ("base", "small") for seed in (0, 1)]
    old = fake_results(runs)
    summary = write_report(copy.deepcopy(old), tmp_path / "old")
    assert "stability" not in summary
    report = (tmp_path / "old" / "report.md").read_text()
    assert "Stability" not in report and "jitter" not in report.lower()
    # One run with stability among runs without: no section either, and the rest unchanged.
    mixed = copy.deepcopy(old)
    mixed["runs"][0]["stability"] = fake_run("base", 0)["stability"]
    write_report(mixed, tmp_path / "mixed")
    assert (tmp_path / "mixed" / "report.md").read_text() == report
