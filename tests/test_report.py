"""Tests of facemarks.experiments.report: every figure is recomputed here by hand (plain Python,
the `statistics` module, an own Simpson rule, scipy's t quantile and Wilcoxon test) and
compared with the returned summary and with the numbers printed in report.md."""

from __future__ import annotations

import copy
import json
import math
import re
import statistics

import cv2
import pytest
from scipy import stats as scipy_stats

from facemarks.errors import DataError
from facemarks.experiments.report import load_results, write_report

THRESHOLD = 0.1

# Inter-ocular NMEs (fractions) of 2 entries x 2 seeds x 5 faces. Every value sits half a
# CED grid step (1e-4) off the grid, so the CED's "NME <= x" does not depend on the last bit
# of how an implementation builds the grid.
IO = {
    ("wing:w=10,epsilon=2", 0): [0.02005, 0.04005, 0.06005, 0.08005, 0.12005],
    ("wing:w=10,epsilon=2", 1): [0.03005, 0.05005, 0.05505, 0.09005, 0.11005],
    ("l2", 0): [0.03005, 0.05505, 0.08005, 0.09505, 0.15005],
    ("l2", 1): [0.04005, 0.06005, 0.07005, 0.12005, 0.14005],
}
TRAIN_SECONDS = {("wing:w=10,epsilon=2", 0): 100.0, ("wing:w=10,epsilon=2", 1): 120.0, ("l2", 0): 90.0, ("l2", 1): 110.0}
POSE = [1, 0, 1, 0, 0]
OCCLUSION = [0, 0, 0, 0, 0]


def make_run(name, seed, io, image=None, train_seconds=10.0, epochs=3):
    return {
        "name": name,
        "loss": name.split(":")[0],
        "model": "resnet18",
        "seed": seed,
        "nme": {
            "image": image if image is not None else [0.25 * v + 0.001 * seed for v in io],
            "inter_ocular": list(io),
            "inter_pupil": [1.4 * v for v in io],
            "box": [0.7 * v + 0.002 for v in io],
        },
        "history": [
            {"epoch": e, "train_loss": 2.0 / (e + 1) + seed, "val_nme": 0.1 / (e + 1), "lr": 1e-3, "seconds": 1.5}
            for e in range(epochs)
        ],
        "train_seconds": train_seconds,
        "checkpoint": f"runs/{name}/seed{seed}/best.pt",
    }


def make_results(runs, num_faces, attributes=None):
    results = {
        "title": "Test comparison",
        "command": "facemarks compare --data synthetic --losses wing:w=10,epsilon=2 l2 --seeds 0 1",
        "created": "2025-01-02T03:04:05",
        "facemarks_version": "0.1.0",
        "config": {"losses": ["wing:w=10,epsilon=2", "l2"], "model": "resnet18", "epochs": 3, "seeds": [0, 1]},
        "dataset": {"spec": "synthetic", "train_split": "train", "test_split": "test", "num_test_faces": num_faces, "scheme": "300w"},
        "test_faces": [f"faces/{i:03d}.png" for i in range(num_faces)],
        "runs": runs,
    }
    if attributes is not None:
        results["test_attributes"] = attributes
    return results


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    runs = [make_run(name, seed, io, train_seconds=TRAIN_SECONDS[name, seed]) for (name, seed), io in IO.items()]
    results = make_results(runs, 5, {"pose": POSE, "occlusion": OCCLUSION})
    original = copy.deepcopy(results)
    out = tmp_path_factory.mktemp("report")
    summary = write_report(results, out)
    return results, original, summary, out


# ------------------------------------------------------------------------ independent math


def simpson_auc(nmes, threshold=THRESHOLD, step=1e-4):
    """Composite Simpson 1/3 of the CED (share with NME <= x) on 0..threshold, / threshold."""
    m = round(threshold / step)
    ys = [sum(e <= k * step for e in nmes) / len(nmes) for k in range(m + 1)]
    total = ys[0] + ys[-1] + 4 * sum(ys[1:-1:2]) + 2 * sum(ys[2:-1:2])
    return total * step / 3 / threshold


def exact_auc(nmes, threshold=THRESHOLD):
    """The exact area of the step CED: each face contributes (threshold - e) / threshold."""
    return sum(max(0.0, 1 - e / threshold) for e in nmes) / len(nmes)


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def seed_average(name, table=IO):
    seeds = sorted(s for (n, s) in table if n == name)
    return [statistics.mean(table[name, s][i] for s in seeds) for i in range(len(table[name, seeds[0]]))]


# --------------------------------------------------------------------- report.md parsing


def section(md, heading):
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M)
    assert match, f"section {heading!r} missing from report.md"
    return match.group(1)


def parse_table(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    assert set(lines[1].replace("|", "")) == {"-"}
    return [dict(zip(header, (c.strip() for c in line.strip().strip("|").split(" | ")))) for line in lines[2:]]


def parse_stat(cell):
    """'m ± s' -> (m, s); 'm' -> (m, None); '—' -> None."""
    if cell == "—":
        return None
    parts = cell.split(" ± ")
    return float(parts[0]), (float(parts[1]) if len(parts) > 1 else None)


def close(printed, expected, decimals):
    """The printed number is `expected` rounded to `decimals`."""
    return abs(printed - expected) <= 0.5 * 10 ** (-decimals) + 1e-9


def assert_stat(cell, expected_mean, expected_std, decimals):
    mean, std = parse_stat(cell)
    assert close(mean, expected_mean, decimals), (cell, expected_mean)
    if expected_std is None:
        assert std is None, cell
    else:
        assert close(std, expected_std, decimals), (cell, expected_std)


# ---------------------------------------------------------------------------------- tests


def test_main_table_summary_and_markdown(two_by_two):
    results, _, summary, out = two_by_two
    md = (out / "report.md").read_text()
    rows = {r["Entry"]: r for r in parse_table(section(md, "Results on the test faces"))}
    entries = {e["name"]: e for e in summary["entries"]}
    assert set(rows) == set(entries) == {"wing:w=10,epsilon=2", "l2"}

    for name in entries:
        seeds = [0, 1]
        runs = [r for r in results["runs"] if r["name"] == name]
        io_pct = [100 * statistics.mean(IO[name, s]) for s in seeds]
        image_pct = [100 * statistics.mean(r["nme"]["image"]) for r in runs]
        pupil_pct = [100 * statistics.mean(r["nme"]["inter_pupil"]) for r in runs]
        box_pct = [100 * statistics.mean(r["nme"]["box"]) for r in runs]
        fr_pct = [100 * sum(e > THRESHOLD for e in IO[name, s]) / 5 for s in seeds]
        aucs = [simpson_auc(IO[name, s]) for s in seeds]
        m = entries[name]["metrics"]
        for key, per_seed, column, decimals in (
            ("nme_inter_ocular_pct", io_pct, "NME inter-ocular (%)", 3),
            ("nme_image_pct", image_pct, "NME image (%)", 3),
            ("nme_inter_pupil_pct", pupil_pct, "NME inter-pupil (%)", 3),
            ("nme_box_pct", box_pct, "NME box (%)", 3),
            ("fr_pct", fr_pct, "FR@0.1 (%)", 2),
            ("auc", aucs, "AUC@0.1", 4),
        ):
            mean, std = mean_std(per_seed)
            assert m[key]["per_seed"] == pytest.approx(per_seed, abs=1e-9)
            assert m[key]["mean"] == pytest.approx(mean, abs=1e-9)
            assert m[key]["std"] == pytest.approx(std, abs=1e-9)
            assert_stat(rows[name][column], mean, std, decimals)
        assert rows[name]["Seeds"] == "2" and rows[name]["Test faces"] == "5"

    # Hand figures: one failure in each wing seed and in l2 seed 0, two in l2 seed 1.
    assert entries["wing:w=10,epsilon=2"]["metrics"]["fr_pct"]["per_seed"] == pytest.approx([20.0, 20.0])
    assert entries["l2"]["metrics"]["fr_pct"]["per_seed"] == pytest.approx([20.0, 40.0])
    # The Simpson AUC of a step CED is within a grid step of its exact area.
    for (name, seed), io in IO.items():
        assert simpson_auc(io) == pytest.approx(exact_auc(io), abs=1e-3)
    # Ranked by mean inter-ocular NME: wing first.
    assert summary["ranking"] == ["wing:w=10,epsilon=2", "l2"]
    assert [r["Entry"] for r in parse_table(section(md, "Results on the test faces"))] == summary["ranking"]


def test_paired_comparison_and_verdict(two_by_two):
    _, _, summary, out = two_by_two
    md = (out / "report.md").read_text()
    a, b = seed_average("wing:w=10,epsilon=2"), seed_average("l2")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean_d = statistics.mean(d)
    half = scipy_stats.t.ppf(0.975, n - 1) * statistics.stdev(d) / math.sqrt(n)
    p_expected = scipy_stats.wilcoxon(d).pvalue
    # All five differences are negative: the exact two-sided p is 2 / 2**5.
    assert all(x < 0 for x in d) and p_expected == pytest.approx(2 / 32)

    (pair,) = summary["pairs"]
    assert (pair["a"], pair["b"], pair["num_faces"]) == ("wing:w=10,epsilon=2", "l2", 5)
    assert pair["mean_difference_pct"] == pytest.approx(100 * mean_d, abs=1e-9)
    assert pair["ci_low_pct"] == pytest.approx(100 * (mean_d - half), abs=1e-9)
    assert pair["ci_high_pct"] == pytest.approx(100 * (mean_d + half), abs=1e-9)
    assert pair["wilcoxon_p"] == pytest.approx(p_expected, rel=1e-9)
    assert pair["better"] == "wing:w=10,epsilon=2"
    assert pair["significant"] is False  # 0.0625 >= 0.05

    (row,) = parse_table(section(md, "Paired comparisons (inter-ocular NME, same test faces)"))
    assert close(float(row["Mean Δ A − B (% points)"]), 100 * mean_d, 3)
    low, high = (float(v) for v in row["95% CI"].strip("[]").split(", "))
    assert close(low, 100 * (mean_d - half), 3) and close(high, 100 * (mean_d + half), 3)
    assert close(float(row["Wilcoxon p"]), p_expected, 4)
    assert row["Better"] == "wing:w=10,epsilon=2 (n.s.)"

    # The verdict comes first and names the best entry, the lead and the p-value.
    verdict = summary["verdict"]
    assert verdict["best"] == "wing:w=10,epsilon=2" and verdict["runner_up"] == "l2"
    assert verdict["significant"] is False
    mean_a, mean_b = 100 * statistics.mean(a), 100 * statistics.mean(b)
    assert verdict["lead_pct"] == pytest.approx(mean_b - mean_a, abs=1e-9)
    first = next(line for line in md.splitlines() if line.startswith("**Verdict:**"))
    assert md.index(first) < md.index("## Results")
    m = re.match(r"\*\*Verdict:\*\* \*\*(.+?)\*\* has the lowest mean inter-ocular NME \(([\d.]+) %\), ([\d.]+) points below the runner-up \*\*(.+?)\*\* \(([\d.]+) %\); the lead is not significant at 0.05 \(Wilcoxon p = ([\d.]+)\)", first)
    assert m, first
    assert m.group(1) == "wing:w=10,epsilon=2" and m.group(4) == "l2"
    assert close(float(m.group(2)), mean_a, 3) and close(float(m.group(5)), mean_b, 3)
    assert close(float(m.group(3)), mean_b - mean_a, 3) and close(float(m.group(6)), p_expected, 4)


def test_subsets_training_runs_and_reproduce_sections(two_by_two):
    results, _, summary, out = two_by_two
    md = (out / "report.md").read_text()
    entries = {e["name"]: e for e in summary["entries"]}

    rows = {r["Entry"]: r for r in parse_table(section(md, "Subsets (inter-ocular NME %)"))}
    for name in entries:
        pose = [100 * statistics.mean(v for v, f in zip(IO[name, s], POSE) if f) for s in (0, 1)]
        mean, std = mean_std(pose)
        stat = entries[name]["subsets"]["pose"]
        assert stat["num_faces"] == 2
        assert stat["nme_inter_ocular_pct"]["mean"] == pytest.approx(mean, abs=1e-9)
        assert stat["nme_inter_ocular_pct"]["std"] == pytest.approx(std, abs=1e-9)
        assert_stat(rows[name]["pose (2)"], mean, std, 3)
        # An empty subset has no NME, printed as a dash.
        assert entries[name]["subsets"]["occlusion"] == {"num_faces": 0, "nme_inter_ocular_pct": None}
        assert rows[name]["occlusion (0)"] == "—"

    rows = {r["Entry"]: r for r in parse_table(section(md, "Training"))}
    for name in entries:
        seconds = [TRAIN_SECONDS[name, s] for s in (0, 1)]
        mean, std = mean_std(seconds)
        assert entries[name]["train_seconds"]["total"] == pytest.approx(sum(seconds))
        assert_stat(rows[name]["Time per run (s)"], mean, std, 1)
        assert float(rows[name]["Total time (s)"]) == pytest.approx(sum(seconds))
        assert rows[name]["Epochs"] == "3"
    assert rows["wing:w=10,epsilon=2"]["Time per run (s)"] == "110.0 ± 14.1"

    runs = parse_table(section(md, "Runs"))
    assert len(runs) == 4
    for row in runs:
        name, seed = row["Entry"], int(row["Seed"])
        assert close(float(row["NME inter-ocular (%)"]), 100 * statistics.mean(IO[name, seed]), 3)
        assert close(float(row["AUC@0.1"]), simpson_auc(IO[name, seed]), 4)
        assert row["Checkpoint"] == f"`runs/{name}/seed{seed}/best.pt`"

    reproduce = section(md, "Reproduce")
    assert f"```sh\n{results['command']}\n```" in reproduce
    config_text = re.search(r"```yaml\n(.*?)```", reproduce, flags=re.S).group(1)
    import yaml

    assert yaml.safe_load(config_text) == results["config"]
    assert "trained on split `train`, tested on split `test`" in md and "5 test faces" in md


def test_results_json_round_trips_and_input_untouched(two_by_two):
    results, original, summary, out = two_by_two
    assert results == original  # write_report does not modify its input
    stored = json.loads((out / "results.json").read_text())
    assert stored["summary"] == json.loads(json.dumps(summary))
    del stored["summary"]
    assert stored == original
    # A stored results.json reads back and renders the same summary.
    again = write_report(load_results(out / "results.json"), out / "again")
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(summary))


def test_plots_are_valid_images(two_by_two):
    *_, out = two_by_two
    for name in ("ced.png", "training.png"):
        image = cv2.imread(str(out / name))
        assert image is not None, name
        assert image.shape[0] > 200 and image.shape[1] > 200 and image.shape[2] == 3
        assert image.std() > 10  # something is drawn, not a blank canvas
    md = (out / "report.md").read_text()
    assert "](ced.png)" in md and "](training.png)" in md


def test_single_seed_three_entries_significant_lead(tmp_path):
    # 12 faces, one seed: wing is below l1 on every face by distinct amounts, l2 is worst.
    base = [0.03 + 0.004 * i + 0.00005 for i in range(12)]
    io = {
        "l2": [v + 0.03 for v in base],
        "l1": [v - 0.001 for v in base],
        "wing": [v - 0.001 - 0.0003 * (i + 1) for i, v in enumerate(base)],
    }
    runs = [make_run(name, 7, values, train_seconds=5.0) for name, values in io.items()]
    summary = write_report(make_results(runs, 12), tmp_path)
    md = (tmp_path / "report.md").read_text()

    assert summary["ranking"] == ["wing", "l1", "l2"]
    rows = {r["Entry"]: r for r in parse_table(section(md, "Results on the test faces"))}
    for name, values in io.items():
        m = {e["name"]: e for e in summary["entries"]}[name]["metrics"]
        assert m["nme_inter_ocular_pct"]["std"] is None  # one seed: no spread
        assert_stat(rows[name]["NME inter-ocular (%)"], 100 * statistics.mean(values), None, 3)
        assert_stat(rows[name]["FR@0.1 (%)"], 100 * sum(v > THRESHOLD for v in values) / 12, None, 2)
        assert_stat(rows[name]["AUC@0.1"], simpson_auc(values), None, 4)
        assert rows[name]["Seeds"] == "1"
    assert {e["name"]: e for e in summary["entries"]}["l2"]["metrics"]["fr_pct"]["mean"] == pytest.approx(100 * 2 / 12)

    # Three entries give three pairs, each A ranked above B.
    assert [(p["a"], p["b"]) for p in summary["pairs"]] == [("wing", "l1"), ("wing", "l2"), ("l1", "l2")]
    for pair in summary["pairs"]:
        d = [x - y for x, y in zip(io[pair["a"]], io[pair["b"]])]
        assert pair["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(d).pvalue, rel=1e-9)
        assert pair["mean_difference_pct"] == pytest.approx(100 * statistics.mean(d), abs=1e-9)
    # All 12 differences negative and distinct: exact two-sided p = 2 / 2**12.
    assert summary["pairs"][0]["wilcoxon_p"] == pytest.approx(2 / 4096)
    assert summary["verdict"]["significant"] is True
    assert "the lead is significant at 0.05 (Wilcoxon p = 0.0005)" in md.splitlines()[2]
    pair_rows = parse_table(section(md, "Paired comparisons (inter-ocular NME, same test faces)"))
    assert pair_rows[0]["Better"] == "wing (p < 0.05)"


def test_lead_by_mean_against_significant_ranks_is_not_called_significant(tmp_path):
    # B is slightly better on 19 faces, A far better on one: A's mean is lower, but the
    # signed ranks favour B with p < 0.05. The report must not call A's lead significant.
    n = 20
    b = [0.05] * (n - 1) + [1.05]
    a = [0.05 + 0.001 * (i + 1) for i in range(n - 1)] + [0.05]
    runs = [make_run("A", 0, a), make_run("B", 0, b)]
    summary = write_report(make_results(runs, n), tmp_path)
    d = [x - y for x, y in zip(a, b)]
    assert statistics.mean(d) < 0 and scipy_stats.wilcoxon(d).pvalue < 0.05
    (pair,) = summary["pairs"]
    assert pair["better"] == "A" and pair["ranks_favour"] == "B"
    assert pair["significant"] is False and summary["verdict"]["significant"] is False
    assert "disagree" in summary["verdict"]["text"]


def test_failure_rate_counts_only_errors_above_threshold(tmp_path):
    io = [0.05, 0.1, 0.1 + 1e-9, 0.2]  # 0.1 itself is not a failure
    summary = write_report(make_results([make_run("only", 0, io)], 4), tmp_path)
    assert summary["entries"][0]["metrics"]["fr_pct"]["mean"] == pytest.approx(50.0)
    assert summary["pairs"] == [] and summary["verdict"]["runner_up"] is None
    assert "only one entry" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda r: r["runs"][1]["nme"]["inter_ocular"].pop(), r"runs\[1\]\.nme\['inter_ocular'\]"),
        (lambda r: r["runs"][1].update(seed=0), "seed 0 twice"),
        (lambda r: r["dataset"].update(num_test_faces=6), "num_test_faces is 6"),
        (lambda r: r["runs"][0]["nme"].pop("image"), "lacks nme\\['image'\\]"),
        (lambda r: r["runs"][2]["nme"]["image"].__setitem__(0, float("nan")), "finite"),
        (lambda r: r.__setitem__("test_attributes", {"pose": [1, 0]}), "test_attributes"),
    ],
)
def test_malformed_results_raise_data_error(tmp_path, corrupt, message):
    runs = [make_run(name, seed, io) for (name, seed), io in IO.items()]
    results = make_results(runs, 5)
    corrupt(results)
    with pytest.raises(DataError, match=message):
        write_report(results, tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_load_results_names_the_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_results(path)
    with pytest.raises(DataError, match="not found"):
        load_results(tmp_path / "missing.json")


# ------------------------------------------------- Holm, seed-level tests and pose bins


def holm_by_procedure(p_values):
    """Holm-adjusted p-values from the definition of the procedure itself: the smallest
    level at which Holm's sequential test (reject p_(k) while p_(k) <= level / (m - k + 1))
    rejects the hypothesis; the candidate levels are the (m - k + 1) p_(k)."""
    defined = [i for i, p in enumerate(p_values) if p is not None]
    m = len(defined)

    def rejected(level):
        out = set()
        for k, i in enumerate(sorted(defined, key=lambda i: p_values[i])):
            if p_values[i] > level / (m - k):
                break
            out.add(i)
        return out

    ranked = sorted(p_values[i] for i in defined)
    candidates = sorted({min(1.0, (m - k) * p) for k, p in enumerate(ranked)})
    adjusted = [None] * len(p_values)
    for i in defined:  # not rejected at any level up to 1: the adjusted p is 1
        adjusted[i] = next((level for level in candidates if i in rejected(level)), 1.0)
    return adjusted


def test_holm_adjust_against_hand_values():
    from facemarks.stats import holm_adjust

    # m = 4, sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(2*0.03, 1*0.04):
    # the last is raised from 0.04 to 0.06 (step-down is monotone).
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # m = 3: 3*0.01 = 0.03; 2*0.6 = 1.2 capped at 1; 1*0.7 raised to 1.
    assert holm_adjust([0.6, 0.01, 0.7]) == pytest.approx([1.0, 0.03, 1.0])
    # Undefined tests stay None and do not count in m; ties get equal adjusted values.
    assert holm_adjust([None, 0.02, 0.02]) == [None, pytest.approx(0.04), pytest.approx(0.04)]
    assert holm_adjust([0.2]) == [0.2] and holm_adjust([]) == []
    for ps in ([0.01, 0.04, 0.03, 0.005], [0.6, 0.01, 0.7], [0.001, 0.2, 0.012, 0.04, 0.9, 0.013]):
        assert holm_adjust(ps) == pytest.approx(holm_by_procedure(ps))


def test_abs_bins_edges_belong_to_the_upper_bin():
    from facemarks.stats import abs_bins

    values = [0.0, -14.99, 15.0, -29.9, 30.0, -45.0, 45.1, 7.5]
    bins = abs_bins(values, (0, 15, 30, 45))
    assert [b["label"] for b in bins] == ["0–15°", "15–30°", "30–45°", "≥ 45°"]
    assert [b["high"] for b in bins] == [15.0, 30.0, 45.0, None]
    assert [list(map(int, b["mask"])) for b in bins] == [
        [1, 1, 0, 0, 0, 0, 0, 1],
        [0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 1, 0],
    ]


# Three entries on 6 faces. B's seeds shift all faces; A = B + c[seed] + E[face] with sum(E) = 0,
# so A's per-seed mean is B's plus c[seed] exactly: A - B per seed = -1.0, -0.5, +0.3 points
# (2 of 3 seeds agree with A's lead). C (seeds 0, 1, 3) shares seeds 0 and 1 with A and B.
BASE = [0.030, 0.045, 0.052, 0.061, 0.074, 0.093]
SHIFT_A = {0: -0.010, 1: -0.005, 2: 0.003}
E_A = [0.003, -0.002, 0.001, -0.003, 0.002, -0.001]
SHIFT_C = {0: 0.012, 1: 0.008, 3: 0.015}
H_C = [-0.015, -0.001, 0.0025, -0.0025, 0.0005, -0.0004]  # C errs less than A and B on face 0
THREE = {}
for _s in (0, 1, 2):
    THREE["B", _s] = [b + 0.002 * _s for b in BASE]
    THREE["A", _s] = [b + 0.002 * _s + SHIFT_A[_s] + e for b, e in zip(BASE, E_A)]
for _s in (0, 1, 3):
    THREE["C", _s] = [b + 0.002 * _s + SHIFT_C[_s] + h for b, h in zip(BASE, H_C)]
# |yaw| bins 0-15: faces 0, 1; 15-30: 2, 3 (15 itself is in the upper bin); 30-45: 4; >= 45: 5.
# |roll| bins 0-10: faces 0, 2, 4; 10-20: 1 (-10); >= 20: 3 (20), 5.
POSES = [[0.0, 5.0, 0.0], [14.99, -3.0, -10.0], [15.0, 0.0, 9.99], [-29.0, 2.0, 20.0], [30.0, 1.0, -5.0], [-50.0, 0.0, 25.0]]
YAW_BINS = {"0–15°": [0, 1], "15–30°": [2, 3], "30–45°": [4], "≥ 45°": [5]}
ROLL_BINS = {"0–10°": [0, 2, 4], "10–20°": [1], "≥ 20°": [3, 5]}


@pytest.fixture(scope="module")
def three_entries(tmp_path_factory):
    runs = [make_run(name, seed, io) for (name, seed), io in THREE.items()]
    results = make_results(runs, 6)
    results["test_poses"] = POSES
    out = tmp_path_factory.mktemp("three")
    return results, write_report(results, out), (out / "report.md").read_text()


def wilcoxon_or_none(d):
    try:
        p = scipy_stats.wilcoxon(d).pvalue
    except ValueError:
        return None
    return None if math.isnan(p) else p


def face_level(name_a, name_b, faces=range(6)):
    """Per-face differences of the seed-averaged NMEs and their Wilcoxon p."""
    a, b = seed_average(name_a, THREE), seed_average(name_b, THREE)
    d = [a[i] - b[i] for i in faces]
    return d, wilcoxon_or_none(d)


def test_pairs_carry_holm_adjusted_p_and_significance(three_entries):
    _, summary, md = three_entries
    assert summary["ranking"] == ["A", "B", "C"]
    pairs = {(p["a"], p["b"]): p for p in summary["pairs"]}
    assert list(pairs) == [("A", "B"), ("A", "C"), ("B", "C")]
    raw = [face_level(a, b)[1] for a, b in pairs]
    # A - B per face is negative on all 6 faces with distinct sizes: exact p = 2 / 2**6.
    assert raw[0] == pytest.approx(2 / 64)
    expected = holm_by_procedure(raw)
    rows = {(r["A"], r["B"]): r for r in parse_table(section(md, "Paired comparisons (inter-ocular NME, same test faces)"))}
    for (key, pair), p_raw, p_holm in zip(pairs.items(), raw, expected):
        assert pair["wilcoxon_p"] == pytest.approx(p_raw, rel=1e-9)
        assert pair["wilcoxon_p_holm"] == pytest.approx(p_holm, rel=1e-9)
        assert pair["holm_family_size"] == 3
        assert pair["significant"] is bool(p_holm < 0.05)
        assert close(float(rows[key]["Wilcoxon p"]), p_raw, 4) and close(float(rows[key]["Holm p"]), p_holm, 4)
    # Face 0 is C's: A - C and B - C have one positive difference of the smallest size, exact
    # p = 2 * 2 / 2**6. Holm: 3 x 0.03125, then 2 x 0.0625, then 0.0625 raised to 0.125.
    assert raw[1:] == pytest.approx([4 / 64, 4 / 64])
    assert expected == pytest.approx([0.09375, 0.125, 0.125])
    # 3 x 0.03125 > 0.05: the raw p would call A's lead over B significant, Holm does not.
    assert pairs["A", "B"]["significant"] is False
    assert rows["A", "B"]["Better"] == "A (n.s.)"
    assert summary["verdict"]["wilcoxon_p_holm"] == pytest.approx(expected[0])
    assert summary["verdict"]["significant"] is False
    assert "after Holm's adjustment over 3 pairs (adjusted p = 0.0938)" in summary["verdict"]["text"]
    assert "Holm-adjusted p < 0.05" in md and "not adjusted" not in md


def test_seed_level_differences_interval_and_agreement(three_entries):
    _, summary, md = three_entries
    pairs = {(p["a"], p["b"]): p for p in summary["pairs"]}
    rows = {(r["A"], r["B"]): r for r in parse_table(section(md, "Seed-level comparisons (inter-ocular NME)"))}
    # By construction: A - B per seed is exactly the shift c[seed].
    assert pairs["A", "B"]["seed_level"]["differences_pct"] == pytest.approx([-1.0, -0.5, 0.3], abs=1e-9)
    for (a, b), pair in pairs.items():
        seeds = [s for s in (0, 1, 2, 3) if (a, s) in THREE and (b, s) in THREE]
        diffs = [100 * (statistics.mean(THREE[a, s]) - statistics.mean(THREE[b, s])) for s in seeds]
        mean = statistics.mean(diffs)
        half = scipy_stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        seed = pair["seed_level"]
        assert seed["seeds"] == seeds and seed["num_seeds"] == len(seeds)
        assert seed["differences_pct"] == pytest.approx(diffs, abs=1e-9)
        assert seed["mean_difference_pct"] == pytest.approx(mean, abs=1e-9)
        assert seed["ci_low_pct"] == pytest.approx(mean - half, abs=1e-9)
        assert seed["ci_high_pct"] == pytest.approx(mean + half, abs=1e-9)
        assert seed["agree"] == sum(d < 0 for d in diffs)  # A is the better entry of every pair
        row = rows[a, b]
        assert row["Seeds agreeing"] == f"{seed['agree']} of {len(seeds)}"
        assert close(float(row["Mean Δ"]), mean, 3)
        low, high = (float(v) for v in row["95% t-interval over seeds"].strip("[]").split(", "))
        assert close(low, mean - half, 3) and close(high, mean + half, 3)
    assert pairs["A", "B"]["seed_level"]["agree"] == 2 and pairs["A", "C"]["seed_level"]["seeds"] == [0, 1]
    assert rows["A", "B"]["Δ A − B per seed (% points)"] == "0: -1.000, 1: -0.500, 2: +0.300"
    # With the same seeds on both sides the seed-level mean is the face-level mean.
    assert pairs["A", "B"]["seed_level"]["mean_difference_pct"] == pytest.approx(pairs["A", "B"]["mean_difference_pct"])
    assert "**A** errs less in 2 of 3 seeds" in summary["verdict"]["text"]


def test_pose_bins_in_summary_and_report(three_entries):
    _, summary, md = three_entries
    pose = summary["pose"]
    assert pose["reference"] == "A"
    body = section(md, "Results by head pose (inter-ocular NME %)")
    tables = [parse_table(t) for t in re.split(r"\n\n(?=\|)", body) if t.lstrip().startswith("|")]
    pair_rows = {(r["Bin"], r["B"]): r for r in tables[2]}
    for axis, expected_bins, printed in (("yaw", YAW_BINS, tables[0]), ("roll", ROLL_BINS, tables[1])):
        bins = pose["axes"][axis]
        assert [b["label"] for b in bins] == list(expected_bins)
        printed = {r["Entry"]: r for r in printed}
        for b, (label, faces) in zip(bins, expected_bins.items()):
            assert b["num_faces"] == len(faces)
            for name in ("A", "B", "C"):
                seeds = [s for (n, s) in THREE if n == name]
                per_seed = [100 * statistics.mean(THREE[name, s][i] for i in faces) for s in seeds]
                mean, std = mean_std(per_seed)
                assert b["nme_inter_ocular_pct"][name]["mean"] == pytest.approx(mean, abs=1e-9)
                assert b["nme_inter_ocular_pct"][name]["std"] == pytest.approx(std, abs=1e-9)
                assert_stat(printed[name][f"{axis} {label} ({len(faces)})"], mean, std, 3)
            raw = [face_level("A", other, faces)[1] for other in ("B", "C")]
            holm = holm_by_procedure(raw)
            assert [(p["a"], p["b"]) for p in b["pairs"]] == [("A", "B"), ("A", "C")]
            for pair, other, p_raw, p_holm in zip(b["pairs"], ("B", "C"), raw, holm):
                d, _ = face_level("A", other, faces)
                assert pair["num_faces"] == len(faces)
                assert pair["mean_difference_pct"] == pytest.approx(100 * statistics.mean(d), abs=1e-9)
                assert pair["wilcoxon_p"] == (None if p_raw is None else pytest.approx(p_raw, rel=1e-9))
                assert pair["wilcoxon_p_holm"] == (None if p_holm is None else pytest.approx(p_holm, rel=1e-9))
                row = pair_rows[f"{axis} {label}", other]
                assert close(float(row["Mean Δ A − B (% points)"]), 100 * statistics.mean(d), 3)
                assert row["Holm p"] == ("—" if p_holm is None else row["Holm p"])
                if p_holm is not None:
                    assert close(float(row["Holm p"]), p_holm, 4)
    # Four faces' yaw bins have more than one face, so some bin tests are defined and adjusted.
    assert any(p["wilcoxon_p_holm"] is not None and p["holm_family_size"] == 2
               for b in pose["axes"]["yaw"] for p in b["pairs"])


def test_old_results_without_poses_render_without_pose_section(two_by_two, tmp_path):
    results, _, summary, out = two_by_two
    md = (out / "report.md").read_text()
    assert "pose" not in summary and "head pose" not in md
    # A results.json from before the Holm and seed-level keys renders again with them.
    old = json.loads((out / "results.json").read_text())
    for pair in old["summary"]["pairs"]:
        del pair["seed_level"], pair["wilcoxon_p_holm"]
    (tmp_path / "results.json").write_text(json.dumps(old))
    again = write_report(load_results(tmp_path / "results.json"), tmp_path / "again")
    assert again["pairs"][0]["seed_level"]["num_seeds"] == 2


def test_one_seed_says_no_seed_level_test(tmp_path):
    runs = [make_run("A", 3, [0.02, 0.03, 0.04]), make_run("B", 3, [0.03, 0.05, 0.045])]
    summary = write_report(make_results(runs, 3), tmp_path)
    md = (tmp_path / "report.md").read_text()
    seed = summary["pairs"][0]["seed_level"]
    assert seed["num_seeds"] == 1 and seed["ci_low_pct"] is None and seed["agree"] == 1
    assert seed["differences_pct"] == pytest.approx([100 * (0.03 - 0.125 / 3)])
    assert section(md, "Seed-level comparisons (inter-ocular NME)").strip() == "One seed: no seed-level test."
    assert summary["verdict"]["text"].endswith("One seed: no seed-level test.")


@pytest.mark.parametrize(
    "poses, message",
    [
        ([[0.0, 0.0, 0.0]] * 4, r"test_poses' has shape \(4, 3\), expected \(5, 3\)"),
        ([[0.0, 0.0]] * 5, r"shape \(5, 2\)"),
        ([[0.0, 0.0, float("nan")]] * 5, "finite"),
        ([["a", 0, 0]] * 5, "yaw, pitch, roll"),
    ],
)
def test_malformed_poses_raise_data_error(tmp_path, poses, message):
    results = make_results([make_run(name, seed, io) for (name, seed), io in IO.items()], 5)
    results["test_poses"] = poses
    with pytest.raises(DataError, match=message):
        write_report(results, tmp_path)


def test_evaluate_summary_per_pose_bin():
    import numpy as np

    from facemarks.engine.evaluate import format_summary, pose_summary

    nmes = np.array([0.02, 0.04, 0.06, 0.08, 0.15, 0.05])
    summary = pose_summary(nmes, POSES)
    for axis, expected_bins in (("yaw", YAW_BINS), ("roll", ROLL_BINS)):
        assert [b["label"] for b in summary[axis]] == list(expected_bins)
        for b, faces in zip(summary[axis], expected_bins.values()):
            values = [nmes[i] for i in faces]
            assert b["n"] == len(faces)
            assert b["mean"] == pytest.approx(statistics.mean(values))
            assert b["fr"] == pytest.approx(sum(v > 0.1 for v in values) / len(values))
    # A bin without faces has a count and no figures (no NaN in evaluation.json).
    empty = pose_summary(nmes[:2], [[0.0, 0.0, 0.0], [3.0, 0.0, -2.0]])
    assert empty["yaw"][3] == {"label": "≥ 45°", "low": 45.0, "high": None, "n": 0}
    json.dumps(empty, allow_nan=False)

    figures = {"mean": 0.05, "median": 0.05, "fr": 0.0, "auc": 0.5}
    result = {"data": "300w:x", "split": "common", "faces": 6, "checkpoint": "m.pt", "flip_test": False,
              "decoder": None, "crop_reference": "box", "summary": {norm: figures for norm in ("image", "inter_ocular", "inter_pupil", "box")}}
    result["summary"]["pose"] = summary
    text = format_summary(result)
    # Faces 2, 3 (0.06, 0.08); face 4 alone (0.15, a failure); faces 3, 5 (0.08, 0.05).
    assert "| yaw 15–30° (inter-ocular, 2 faces) | 7.00 | 7.00 | 0.00 | " in text
    assert "| yaw 30–45° (inter-ocular, 1 faces) | 15.00 | 15.00 | 100.00 | " in text
    assert "| roll ≥ 20° (inter-ocular, 2 faces) | 6.50 | 6.50 | 0.00 | " in text
    assert "| yaw ≥ 45° (inter-ocular, 0 faces) | — | — | — | — |" in format_summary(
        {**result, "summary": {**result["summary"], "pose": empty}})
