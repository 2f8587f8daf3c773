"""Face regions: static region weights in the point and heatmap losses (computed here by hand),
their validation, per-region NME (by hand), and the per-region table of the compare report."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from facemarks import losses, schemes
from facemarks.data.sample import Sample
from facemarks.engine import config as cfg
from facemarks.engine.evaluate import format_summary, region_errors, summarize
from facemarks.engine.trainer import entry_point_weights
from facemarks.errors import ConfigError
from facemarks.experiments.report import write_report
from facemarks.losses.regions import region_point_weights

# 300W's 68 points, written out from the iBUG layout (not from facemarks.schemes).
JAW, BROWS, NOSE, EYES, MOUTH = range(0, 17), range(17, 27), range(27, 36), range(36, 48), range(48, 68)


def test_region_weights_give_the_points_of_their_regions_in_300w():
    weights = region_point_weights({"eyes": 2, "mouth": 1.5, "right_brow": 0.5}, "300w")
    expected = [2.0 if i in EYES else 1.5 if i in MOUTH else 0.5 if 22 <= i <= 26 else 1.0 for i in range(68)]
    assert weights.tolist() == expected


def test_region_weights_change_a_point_loss_as_computed_by_hand():
    # 5-point scheme: 0, 1 eyes, 2 nose, 3, 4 mouth corners; input 10 px.
    weights = region_point_weights({"eyes": 2, "mouth": 0.5}, "5pt")
    criterion = losses.build_loss("l1", 10, point_weights=weights)
    target = torch.zeros(1, 5, 2)
    pred = torch.tensor([[[0.1, 0.0], [0.0, 0.2], [0.3, 0.1], [0.0, 0.0], [0.4, 0.4]]])
    per_point = [1.0, 2.0, 4.0, 0.0, 8.0]  # |dx| + |dy| in pixels of the 10 px input
    w = [2, 2, 1, 0.5, 0.5]
    expected = sum(a * b for a, b in zip(w, per_point)) / sum(w)  # (2 + 4 + 4 + 0 + 4) / 6
    assert float(criterion(pred, target)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.build_loss("l1", 10)(pred, target)) == pytest.approx(sum(per_point) / 5, rel=1e-6)


def test_region_weights_change_a_heatmap_loss_as_computed_by_hand():
    weights = region_point_weights({"nose": 3}, "5pt")  # channel 2
    criterion = losses.build_loss("heatmap_mse", 8, point_weights=weights)
    pred = torch.zeros(1, 5, 2, 2)
    truth = torch.zeros(1, 5, 2, 2)
    pred[0, 2, 0, 0] = 2.0  # channel 2: mean of squares over 4 pixels = 1
    pred[0, 4] = 1.0  # channel 4: 1
    expected = (3 * 1.0 + 1 * 1.0) / (1 + 1 + 3 + 1 + 1)
    value = criterion(pred, {"points": torch.zeros(1, 5, 2), "heatmaps": truth})
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_region_names_are_checked_naming_the_key():
    entry = cfg.parse_entry({"name": "w", "loss": "wing", "region_weights": {"eyes": 2, "cheeks": 1}},
                            cfg.Config(), "c.yaml", "losses[0]")
    with pytest.raises(ConfigError, match=r"losses\[0\]\.region_weights\.cheeks.*valid: jaw, brows"):
        entry_point_weights(entry, schemes.get("300w"), "losses[0].region_weights")
    with pytest.raises(ValueError, match="left_eye: shares points with eyes"):
        region_point_weights({"eyes": 2, "left_eye": 3}, "300w")
    with pytest.raises(ValueError, match="jaw: unknown region of scheme '5pt'"):
        region_point_weights({"jaw": 2}, "5pt")

    def invalid(entry: dict) -> str:
        with pytest.raises(ConfigError) as error:
            cfg.validate(cfg.Config(losses=[entry]), "c.yaml")
        return str(error.value)

    assert "losses[0].region_weights.eyes" in invalid({"name": "w", "loss": "wing", "region_weights": {"eyes": -1}})
    assert "losses[0].name" in invalid({"loss": "wing", "region_weights": {"eyes": 2}})
    assert "losses[0].region_weights" in invalid({"name": "w", "loss": "wing", "region_weights": [2]})


def a_face() -> np.ndarray:
    rng = np.random.default_rng(0)
    points = rng.uniform(20, 80, size=(68, 2))
    points[36], points[45] = (30.0, 40.0), (70.0, 40.0)  # inter-ocular distance 40
    return points


def test_per_region_nme_against_a_hand_computation():
    truth = a_face()
    pred = truth.copy()
    # Offsets on the points at the regions' edges, so a region one index off counts other points.
    offsets = {16: (3.0, 4.0), 17: (0.0, 2.0), 35: (6.0, 8.0), 36: (1.0, 0.0), 47: (0.0, 3.0), 48: (4.0, 0.0)}
    for i, d in offsets.items():
        pred[i] += d
    sample = Sample(image_path="face.png", landmarks=truth, box=np.array([0.0, 0.0, 100.0, 100.0]), scheme="300w")
    regions = region_errors({"source": pred[None]}, [sample], schemes.get("300w"))
    iod = 40.0
    expected = {"jaw": 5.0 / 17 / iod, "brows": 2.0 / 10 / iod, "nose": 10.0 / 9 / iod, "eyes": 4.0 / 12 / iod,
                "mouth": 4.0 / 20 / iod}
    assert list(regions) == list(expected)
    for name, value in expected.items():
        assert regions[name][0] == pytest.approx(value, rel=1e-12), name
    summary = summarize({"inter_ocular": np.array([0.01])}, [sample], regions)
    assert summary["regions"]["eyes"]["mean"] == pytest.approx(expected["eyes"])
    result = {"data": "d", "split": "s", "faces": 1, "checkpoint": "c.pt", "flip_test": False, "decoder": None,
              "crop_reference": "box", "summary": {**{n: summary["inter_ocular"] for n in
                                                      ("image", "inter_ocular", "inter_pupil", "box")},
                                                   "regions": summary["regions"]}}
    row = next(line for line in format_summary(result).splitlines() if line.startswith("| region eyes"))
    assert f"| {100 * expected['eyes']:.2f} |" in row


# Per-region errors of 3 entries x 2 seeds x 6 faces (fractions), for the report.
FACES = 6
BASE = {"jaw": [0.05, 0.06, 0.07, 0.08, 0.09, 0.10], "eyes": [0.02, 0.025, 0.03, 0.035, 0.04, 0.045]}
STEP = {"A": 0.0, "B": -0.004, "C": 0.003}  # B errs less than A everywhere, C more
WOBBLE = [0.0005, -0.0003, 0.0002, -0.0004, 0.0001, 0.0006]


def region_run(name: str, seed: int, with_regions: bool = True) -> dict:
    regions = {r: [b + STEP[name] * (1 + i / 10) + 0.001 * seed + (WOBBLE[i] if name == "C" else 0.0)
                   for i, b in enumerate(base)] for r, base in BASE.items()}
    run = {"name": name, "loss": "awing", "model": "dsnet_heatmap", "seed": seed,
           "nme": {"image": [0.01] * FACES, "inter_ocular": regions["jaw"]}, "history": [], "train_seconds": 1.0,
           "checkpoint": f"runs/{name}/seed{seed}/best.pt"}
    if with_regions:
        run["nme_regions"] = regions
    return run


def results(runs: list) -> dict:
    return {"title": "t", "dataset": {"num_test_faces": FACES}, "test_faces": [f"f{i}" for i in range(FACES)],
            "runs": runs}


def section(md: str, heading: str) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}.*?\n(.*?)(?=^#+ |\Z)", md, flags=re.S | re.M)
    assert match, heading
    return match.group(1)


def rows(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip().strip("|").split(" | ")))) for line in lines[2:]]


def test_the_report_has_a_region_table_and_paired_tests_against_the_first_entry(tmp_path):
    runs = [region_run(name, seed) for name in ("A", "B", "C") for seed in (0, 1)]
    summary = write_report(results(runs), tmp_path)
    md = (tmp_path / "report.md").read_text()
    table = {r["Entry"]: r for r in rows(section(md, "Results by face region"))}
    for name in ("A", "B", "C"):
        for region in BASE:
            per_seed = [100 * statistics.mean(region_run(name, s)["nme_regions"][region]) for s in (0, 1)]
            mean, std = (float(x) for x in table[name][region].split(" ± "))
            assert abs(mean - statistics.mean(per_seed)) <= 5e-4 and abs(std - statistics.stdev(per_seed)) <= 5e-4
    pairs = rows(section(md, "Paired comparisons per region"))
    assert [(p["Region"], p["A"], p["B"]) for p in pairs] == [(r, "A", o) for r in BASE for o in ("B", "C")]
    for region in BASE:
        raw = []
        for other in ("B", "C"):
            a = [statistics.mean(region_run("A", s)["nme_regions"][region][i] for s in (0, 1)) for i in range(FACES)]
            b = [statistics.mean(region_run(other, s)["nme_regions"][region][i] for s in (0, 1)) for i in range(FACES)]
            raw.append(scipy_stats.wilcoxon([x - y for x, y in zip(a, b)]).pvalue)
        low, high = sorted(raw)  # Holm over the region's two tests
        holm = {low: min(1.0, 2 * low), high: max(min(1.0, 2 * low), high)}
        got = summary["regions"]["regions"][region]["pairs"]
        for pair, p in zip(got, raw):
            assert pair["wilcoxon_p"] == pytest.approx(p, rel=1e-9)
            assert pair["wilcoxon_p_holm"] == pytest.approx(holm[p], rel=1e-9) and pair["holm_family_size"] == 2
    assert not math.isnan(summary["regions"]["regions"]["eyes"]["pairs"][0]["mean_difference_pct"])


def test_results_without_region_errors_still_render(tmp_path):
    runs = [region_run(name, seed, with_regions=False) for name in ("A", "B") for seed in (0, 1)]
    summary = write_report(results(runs), tmp_path)
    assert "regions" not in summary and "face region" not in (tmp_path / "report.md").read_text()
