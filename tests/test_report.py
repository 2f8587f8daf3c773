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
