"""The report of a loss/model comparison: report.md, results.json, ced.png, training.png.

`facemarks compare` trains one model per entry (a loss with its parameters, or a model)
for one or more seeds under identical conditions, evaluates every run on the same test
faces and passes everything to `write_report(results, out_dir)`. Every number in the
report is computed here from `results`; nothing else is read.

The results dict (JSON-serialisable; numpy arrays are accepted and written as lists)
----------------------------------------------------------------------------------
Required keys are marked *; the others are shown when present.

    {
      "title": str,                      # report heading (default "Loss comparison")
      "command": str,                    # the exact command line that produced the run
      "created": str,                    # ISO 8601 time
      "facemarks_version": str,
      "config": dict,                    # the exact run configuration (shown as YAML)
      "dataset": {"spec": str, "train_split": str, "test_split": str,
                  "num_test_faces": int,  # must equal len(test_faces) when given
                  "scheme": str},
      "test_faces": [str, ...],          # * face ids (image paths), in evaluation order
      "test_attributes": {subset: [0/1 per face]},   # e.g. WFLW "pose", "expression", ...
      "test_poses": [[yaw, pitch, roll], ...],       # degrees per face, from the ground-truth
                                         #   landmarks (facemarks.pose); older results lack it
      "runs": [                          # * at least one
        {"name": str,                    # * entry label, e.g. "wing:w=10,epsilon=2"; runs with
                                         #   the same name are seeds of one entry
         "loss": str, "model": str,
         "seed": int,                    # * unique within an entry
         "nme": {"image": [float],       # * per-face NME, same order as test_faces, as a
                 "inter_ocular": [float],#   fraction (0.05 = 5 %); "image" is the mean point
                 "inter_pupil": [float], #   error in input-normalised coordinates in [0, 1]
                 "box": [float]},
         "history": [{"epoch": int, "train_loss": float, "val_nme": float (fraction),
                      "lr": float, "seconds": float}],
         "train_seconds": float,
         "checkpoint": str,
         "stability": {"k", "seed", "perturbations",        # optional (compare's stability.jitter_k):
                       "jitter_pct": [float],               #   per test face, % inter-ocular
                       "nme_under_perturbation_pct": [float],
                       "video": {"faces": [str], "frames", "frame_size", "jitter_pct": [float],
                                 "nme_pct": [float], "lag_frames": [float]}}},   # per video, optional
      ],
    }

An optional NME kind (inter_pupil, box) is reported only if every run has it; other
kinds are checked and kept in results.json but not tabulated. Extra keys anywhere (e.g.
dataset "num_train_faces", run "batch_digests") are kept in results.json. FR and AUC are computed on the inter-ocular NME.

The summary (returned, and stored as results.json["summary"])
-------------------------------------------------------------
Units: NME and FR in percent (`*_pct`), AUC as a fraction in [0, 1], times in seconds.
Every statistic over seeds is {"mean", "std", "per_seed"}: the metric is computed per seed
(over all test faces), then averaged; std is the sample std (ddof=1) and None for a
single seed (the report then prints the mean alone).

    {"threshold": 0.1, "confidence": 0.95, "alpha": 0.05, "num_test_faces": int,
     "entries": [{"name", "loss", "model", "seeds": [int], "num_seeds", "num_test_faces",
                  "metrics": {"nme_image_pct", "nme_inter_ocular_pct", ["nme_inter_pupil_pct"], ["nme_box_pct"],
                              "fr_pct", "auc"},
                  "train_seconds": {"mean", "std", "per_seed", "total"} (None if not recorded),
                  "epochs": [int per seed],
                  "subsets": {name: {"num_faces": int, "nme_inter_ocular_pct": stat or None}}}],
     "ranking": [entry names, lowest mean inter-ocular NME first],
     "pairs": [{"a", "b", "num_faces", "mean_difference_pct" (A - B), "ci_low_pct",
                "ci_high_pct", "t_critical", "df", "wilcoxon_statistic", "wilcoxon_p",
                "wilcoxon_p_holm", "holm_family_size", "ranks_favour", "better", "significant",
                "seed_level": {"seeds", "num_seeds", "differences_pct" (one per seed),
                               "mean_difference_pct", "ci_low_pct", "ci_high_pct", "t_critical",
                               "df", "agree" (seeds favouring "better"; None for a tie)}}],
     "verdict": {"best", "runner_up", "lead_pct", "wilcoxon_p", "wilcoxon_p_holm", "significant",
                 ["seeds_agree", "num_seeds"], "text"},
     "pose": {"reference", "axes": {"yaw": [bin], "roll": [bin]}}   (only with test_poses;
             bin: {"label", "low", "high", "num_faces", "nme_inter_ocular_pct": {entry: stat},
                   "pairs": [reference vs each other entry, as "pairs" without "seed_level"]}),
     "stability": {"reference", "k", "seed", "perturbations", "num_videos",
                   "entries": {entry: {"jitter_pct", "nme_under_perturbation_pct", ["video_jitter_pct",
                               "video_nme_pct"]: stat}},
                   "pairs": [first entry vs each other, on per-face jitter, with "seed_level"]}
             (only when every run has "stability" with the same settings; experiments/tables.py),
     "ced": "pooled over seeds"}

Paired comparison: for every pair of entries (A ranked above B), each entry's per-face
inter-ocular NME is averaged over its seeds; d = A - B per face; the mean of d gets a
Student-t interval over faces, and `scipy.stats.wilcoxon(d)` (defaults: two-sided,
zeros dropped) gives the p-value, which Holm's step-down method adjusts over the family of
all pairs. "better" is the entry with the lower mean; a lead is "significant" when the
Holm-adjusted p < alpha and the signed ranks favour the same entry.

Seed-level comparison, beside the face-level one: per seed both entries ran (paired by seed
number), the difference of their mean NME over all faces; the mean of those, a t-interval
over seeds (two or more), and how many seeds favour the face-level "better" entry.

Head-pose breakdown (experiments/tables.py): |yaw| and |roll| bins (stats.POSE_BIN_EDGES),
per-bin NME per entry, and the best entry against each other one on each bin's faces, with
Holm's adjustment within each bin.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml

from facemarks import fileio
from facemarks.experiments import lr_sweep
from facemarks.errors import DataError
from facemarks.metrics import auc, ced, failure_rate
from facemarks.experiments.tables import (better_cell, face_pair, fmt_interval, fmt_p, fmt_stat, holm_family, nme_matrix,
                                          over_seeds, pose_section, regions_section, seed_level_pair, stability_section,
                                          subsets_section,
                                          summarise_pose, summarise_regions, summarise_stability, table)

REQUIRED_NME = ("image", "inter_ocular")
OPTIONAL_NME = ("inter_pupil", "box")
NME_TITLES = {"image": "NME image", "inter_ocular": "NME inter-ocular", "inter_pupil": "NME inter-pupil", "box": "NME box"}
CED_STEP = 1e-4

# ----------------------------------------------------------------------------- public API


def write_report(results: dict, out_dir, *, threshold: float = 0.1, confidence: float = 0.95, alpha: float = 0.05) -> dict:
    """Write report.md, results.json, ced.png and training.png into `out_dir`.

    results: the dict described in the module docstring (not modified).
    threshold: NME threshold of FR and AUC (fraction of the normalising distance).
    confidence: level of the paired t-intervals; alpha: significance level.
    Returns the summary (also stored under "summary" in results.json).
    Raises DataError naming "results" when the dict is malformed.
    """
    check_results(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, threshold=threshold, confidence=confidence, alpha=alpha)

    stored = _json_safe({**results, "summary": summary})
    fileio.write_text(out_dir / "results.json", json.dumps(stored, indent=2, allow_nan=False) + "\n")
    runs_by_entry = _group_runs(results["runs"])
    _plot_ced(runs_by_entry, summary, out_dir / "ced.png")
    _plot_training(runs_by_entry, out_dir / "training.png")
    fileio.write_text(out_dir / "report.md", render_markdown(results, summary))
    return summary


def load_results(path) -> dict:
    """Read a results.json (e.g. to render its report again); DataError names the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "results file not found")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})", getattr(exc, "lineno", None)) from exc
    check_results(results, source=path)
    return results


def check_results(results, source="results") -> None:
    """Raise DataError(source, ...) unless `results` has the documented structure."""
    if not isinstance(results, dict):
        raise DataError(source, "results must be a dict")
    faces = results.get("test_faces")
    if not isinstance(faces, (list, tuple)) or not faces:
        raise DataError(source, "'test_faces' must be a non-empty list of face ids")
    num_faces = len(faces)
    declared = (results.get("dataset") or {}).get("num_test_faces")
    if declared is not None and int(declared) != num_faces:
        raise DataError(source, f"dataset.num_test_faces is {declared} but test_faces lists {num_faces} faces")
    for subset, flags in (results.get("test_attributes") or {}).items():
        flags = np.asarray(flags)
        if flags.shape != (num_faces,) or not np.all((flags == 0) | (flags == 1)):
            raise DataError(source, f"test_attributes[{subset!r}] must be {num_faces} flags of 0 or 1")
    runs = results.get("runs")
    if not isinstance(runs, (list, tuple)) or not runs:
        raise DataError(source, "'runs' must be a non-empty list")
    seen = set()
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(run, dict) or not isinstance(run.get("name"), str) or not run["name"]:
            raise DataError(source, f"{where} needs a non-empty 'name'")
        if "seed" not in run:
            raise DataError(source, f"{where} ({run['name']}) needs a 'seed'")
        key = (run["name"], run["seed"])
        if key in seen:
            raise DataError(source, f"{where}: entry {run['name']!r} has seed {run['seed']} twice")
        seen.add(key)
        nme = run.get("nme")
        if not isinstance(nme, dict):
            raise DataError(source, f"{where} ({run['name']}) needs an 'nme' dict")
        for kind in REQUIRED_NME:
            if kind not in nme:
                raise DataError(source, f"{where} ({run['name']}) lacks nme[{kind!r}]")
        for kind, values in nme.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (num_faces,):
                raise DataError(source, f"{where}.nme[{kind!r}] has shape {values.shape}, expected ({num_faces},) (one per test face)")
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise DataError(source, f"{where}.nme[{kind!r}] must be finite and non-negative")
        for region, values in (run.get("nme_regions") or {}).items():  # optional: older results have none
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (num_faces,) or not np.all(np.isfinite(values)) or np.any(values < 0):
                raise DataError(source, f"{where}.nme_regions[{region!r}] must be {num_faces} finite, non-negative "
                                        f"errors (one per test face)")
        _check_stability(run.get("stability"), num_faces, source, where)
        if not isinstance(run.get("history", []), (list, tuple)):
            raise DataError(source, f"{where}.history must be a list of per-epoch records")
    _check_poses(results.get("test_poses"), num_faces, source)


def _check_stability(record, num_faces: int, source, where: str) -> None:
    """A run's "stability" is optional (older results have none); when given, one finite,
    non-negative jitter per test face (and per video)."""
    if record is None:
        return
    lists = [("jitter_pct", (record or {}).get("jitter_pct"), num_faces)]
    video = record.get("video") if isinstance(record, dict) else None
    if video is not None:
        lists += [(f"video.{key}", video.get(key), len(video.get("faces") or [])) for key in ("jitter_pct", "nme_pct")]
    for key, values, count in lists:
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            values = np.array([np.nan])
        if values.shape != (count,) or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise DataError(source, f"{where}.stability.{key} must be {count} finite, non-negative values")


def _check_poses(poses, num_faces: int, source) -> None:
    """test_poses is optional (older results have none); when given, one finite [yaw, pitch, roll] per face."""
    if poses is None:
        return
    try:
        poses = np.asarray(poses, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(source, "'test_poses' must be a list of [yaw, pitch, roll] numbers") from None
    if poses.shape != (num_faces, 3):
        raise DataError(source, f"'test_poses' has shape {poses.shape}, expected ({num_faces}, 3): "
                                "one [yaw, pitch, roll] per test face")
    if not np.all(np.isfinite(poses)):
        raise DataError(source, "'test_poses' must be finite degrees")


def summarise(results: dict, *, threshold: float = 0.1, confidence: float = 0.95, alpha: float = 0.05) -> dict:
    """Compute the summary (see the module docstring) from a checked results dict."""
    runs_by_entry = _group_runs(results["runs"])
    attributes = results.get("test_attributes") or {}
    entries = [_summarise_entry(name, runs, threshold, attributes) for name, runs in runs_by_entry.items()]
    order = sorted(range(len(entries)), key=lambda i: (entries[i]["metrics"]["nme_inter_ocular_pct"]["mean"], i))
    ranking = [entries[i]["name"] for i in order]

    pairs = _pairs(ranking, runs_by_entry, confidence, alpha)
    summary = {
        "threshold": threshold,
        "confidence": confidence,
        "alpha": alpha,
        "num_test_faces": len(results["test_faces"]),
        "entries": entries,
        "ranking": ranking,
        "pairs": pairs,
        "verdict": _verdict(entries, ranking, pairs, alpha, confidence),
        "ced": "pooled over seeds (equal to the average of the per-seed CED curves, since every seed has the same faces)",
    }
    if results.get("test_poses") is not None:
        summary["pose"] = summarise_pose(results["test_poses"], runs_by_entry, ranking, confidence, alpha)
    regions = summarise_regions(runs_by_entry, confidence, alpha)
    if regions:
        summary["regions"] = regions
    found = summarise_stability(runs_by_entry, confidence, alpha)
    if found:
        summary["stability"] = found
    return summary


# ------------------------------------------------------------------------- computations


def _group_runs(runs) -> dict[str, list[dict]]:
    """Runs grouped by entry name, entries in order of first appearance, seeds in order."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["name"], []).append(run)
    return groups


def _nme_kinds(runs) -> list[str]:
    return list(REQUIRED_NME) + [k for k in OPTIONAL_NME if all(k in run["nme"] for run in runs)]


def _summarise_entry(name: str, runs: list[dict], threshold: float, attributes: dict) -> dict:
    inter_ocular = nme_matrix(runs)
    metrics = {}
    for kind in _nme_kinds(runs):
        metrics[f"nme_{kind}_pct"] = over_seeds(100.0 * nme_matrix(runs, kind).mean(axis=1))
    metrics["fr_pct"] = over_seeds([100.0 * failure_rate(nmes, threshold) for nmes in inter_ocular])
    metrics["auc"] = over_seeds([auc(nmes, threshold) for nmes in inter_ocular])

    seconds = [run.get("train_seconds") for run in runs]
    train_seconds = None
    if all(isinstance(s, (int, float)) for s in seconds):
        train_seconds = {**over_seeds(seconds), "total": float(sum(seconds))}

    subsets = {}
    for subset, flags in attributes.items():
        mask = np.asarray(flags).astype(bool)
        stat = over_seeds(100.0 * inter_ocular[:, mask].mean(axis=1)) if mask.any() else None
        subsets[subset] = {"num_faces": int(mask.sum()), "nme_inter_ocular_pct": stat}

    return {
        "name": name,
        "loss": runs[0].get("loss", ""),
        "model": runs[0].get("model", ""),
        "seeds": [run["seed"] for run in runs],
        "num_seeds": len(runs),
        "num_test_faces": int(inter_ocular.shape[1]),
        "metrics": metrics,
        "train_seconds": train_seconds,
        "epochs": [len(run.get("history") or []) for run in runs],
        "subsets": subsets,
    }


def _pairs(ranking: list[str], runs_by_entry: dict, confidence: float, alpha: float) -> list[dict]:
    """Every pair (A ranked above B): the face-level test, Holm over all pairs, the seed-level test."""
    raw = []
    for i, name_a in enumerate(ranking):
        for name_b in ranking[i + 1 :]:
            runs_a, runs_b = runs_by_entry[name_a], runs_by_entry[name_b]
            raw.append(face_pair(name_a, name_b, nme_matrix(runs_a), nme_matrix(runs_b), confidence))
    pairs = holm_family(raw, alpha)
    for pair in pairs:
        pair["seed_level"] = _seed_level(pair, runs_by_entry[pair["a"]], runs_by_entry[pair["b"]], confidence)
    return pairs


def _seed_level(pair: dict, runs_a: list[dict], runs_b: list[dict], confidence: float) -> dict:
    """Per-seed differences of the mean inter-ocular NME over all faces, in % points."""
    return seed_level_pair(pair, {run["seed"]: float(np.mean(run["nme"]["inter_ocular"])) for run in runs_a},
                           {run["seed"]: float(np.mean(run["nme"]["inter_ocular"])) for run in runs_b}, confidence,
                           scale=100.0)


def _p_text(pair: dict) -> str:
    """'(Wilcoxon p = ...)', followed by the Holm-adjusted p when the family has several pairs."""
    text = f"(Wilcoxon p = {fmt_p(pair['wilcoxon_p'])})"
    if pair["holm_family_size"] > 1:
        text += f" after Holm's adjustment over {pair['holm_family_size']} pairs (adjusted p = {fmt_p(pair['wilcoxon_p_holm'])})"
    return text


def _seed_text(pair: dict, confidence: float) -> str:
    seed = pair["seed_level"]
    if seed["num_seeds"] == 0:
        return "The two share no seed: no seed-level test."
    if seed["num_seeds"] == 1:
        return "One seed: no seed-level test."
    text = "Seed by seed, "
    if seed["agree"] is not None:
        text += f"**{pair['better']}** errs less in {seed['agree']} of {seed['num_seeds']} seeds; "
    interval = fmt_interval(seed["ci_low_pct"], seed["ci_high_pct"])
    return text + (f"the mean per-seed Δ is {seed['mean_difference_pct']:+.3f} points, "
                   f"{100 * confidence:g}% t-interval over seeds {interval}.")


def _verdict(entries: list[dict], ranking: list[str], pairs: list[dict], alpha: float, confidence: float) -> dict:
    means = {e["name"]: e["metrics"]["nme_inter_ocular_pct"]["mean"] for e in entries}
    best = ranking[0]
    verdict = {"best": best, "runner_up": None, "lead_pct": None, "wilcoxon_p": None, "wilcoxon_p_holm": None,
               "significant": False}
    if len(ranking) == 1:
        text = f"only one entry, **{best}** (mean inter-ocular NME {means[best]:.3f} %); nothing to compare."
        return {**verdict, "text": text}

    runner_up = ranking[1]
    pair = next(p for p in pairs if p["a"] == best and p["b"] == runner_up)
    lead = means[runner_up] - means[best]
    p, p_holm = pair["wilcoxon_p"], pair["wilcoxon_p_holm"]
    if pair["better"] is None:
        text = f"**{best}** and **{runner_up}** tie on mean inter-ocular NME ({means[best]:.3f} %)."
    else:
        text = (
            f"**{best}** has the lowest mean inter-ocular NME ({means[best]:.3f} %), "
            f"{lead:.3f} points below the runner-up **{runner_up}** ({means[runner_up]:.3f} %); "
        )
        if p is None:
            text += "the two agree on every face, so there is nothing to test."
        elif pair["significant"]:
            text += f"the lead is significant at {alpha:g} {_p_text(pair)}."
        elif p_holm < alpha:
            holm = "" if pair["holm_family_size"] == 1 else f", Holm-adjusted p = {fmt_p(p_holm)},"
            text += (
                f"the means and the signed-rank test disagree (Wilcoxon p = {fmt_p(p)}{holm} but the ranks favour "
                f"{pair['ranks_favour']}), so the lead is not established."
            )
        else:
            text += f"the lead is not significant at {alpha:g} {_p_text(pair)}."
    text += " " + _seed_text(pair, confidence)
    return {**verdict, "runner_up": runner_up, "lead_pct": lead, "wilcoxon_p": p, "wilcoxon_p_holm": p_holm,
            "significant": pair["significant"], "seeds_agree": pair["seed_level"]["agree"],
            "num_seeds": pair["seed_level"]["num_seeds"], "text": text}


# ---------------------------------------------------------------------------- markdown


def render_markdown(results: dict, summary: dict) -> str:
    """The text of report.md for `results` and its `summary`."""
    thr = f"{summary['threshold']:g}"
    lines = [f"# {results.get('title') or 'Loss comparison'}", "", f"**Verdict:** {summary['verdict']['text']}", ""]
    lines += _about_section(results, summary)
    lines += _results_section(summary)
    lines += _pairs_section(summary)
    lines += subsets_section(summary)
    lines += pose_section(summary)
    lines += regions_section(summary)
    lines += stability_section(summary)
    lines += _training_section(summary)
    lines += lr_sweep.report_section(results, summary)
    lines += ["## Curves", "", "![CED curves](ced.png)", "", f"CED of the inter-ocular NME up to {thr}, {summary['ced']}.", ""]
    lines += ["![Training curves](training.png)", "", "Training loss and validation NME per epoch; thin lines are single seeds, thick lines the mean over seeds.", ""]
    lines += _runs_section(results, summary)
    lines += _reproduce_section(results)
    return "\n".join(lines)


def _about_section(results: dict, summary: dict) -> list[str]:
    """One line: when, which version, which data and how many faces."""
    dataset = results.get("dataset") or {}
    about = []
    if results.get("created"):
        about.append(f"Created {results['created']}")
    if results.get("facemarks_version"):
        about.append(f"facemarks {results['facemarks_version']}")
    if dataset:
        about.append(
            f"dataset `{dataset.get('spec', '?')}`, trained on split `{dataset.get('train_split', '?')}`, "
            f"tested on split `{dataset.get('test_split', '?')}` (scheme {dataset.get('scheme', '?')})"
        )
    counts = [f"{summary['num_test_faces']} test faces"]
    for key, label in (("num_train_faces", "training"), ("num_val_faces", "validation")):
        if isinstance(dataset.get(key), int):
            counts.append(f"{dataset[key]} {label} faces")
    if dataset.get("val_split"):
        counts.append(f"validation split `{dataset['val_split']}`")
    about.append(", ".join(counts))
    return ["; ".join(about) + ".", ""]


def _results_section(summary: dict) -> list[str]:
    """The main table, in the manner of the reference paper's Table 2, and how to read it."""
    thr = f"{summary['threshold']:g}"
    entries = summary["entries"]
    kinds = [k for k in list(REQUIRED_NME) + list(OPTIONAL_NME) if all(f"nme_{k}_pct" in e["metrics"] for e in entries)]
    header = ["Entry"] + [f"{NME_TITLES[k]} (%)" for k in kinds] + [f"FR@{thr} (%)", f"AUC@{thr}", "Seeds", "Test faces"]
    rows = []
    for name in summary["ranking"]:
        e = next(x for x in entries if x["name"] == name)
        m = e["metrics"]
        rows.append(
            [e["name"]]
            + [fmt_stat(m[f"nme_{k}_pct"], 3) for k in kinds]
            + [fmt_stat(m["fr_pct"], 2), fmt_stat(m["auc"], 4), str(e["num_seeds"]), str(e["num_test_faces"])]
        )
    lines = ["## Results on the test faces", ""] + table(header, rows) + [""]
    lines += [
        "Rows are ranked by mean inter-ocular NME. Each metric is computed per seed over all test faces, "
        "then given as mean ± sample standard deviation (ddof=1) over seeds; with a single seed only the mean is shown. "
        "NME image: mean point-to-point error in coordinates normalised to [0, 1] by the network input size, in %. "
        "NME inter-ocular / inter-pupil / box: mean point-to-point error divided by the outer-eye-corner distance / "
        "the eye-centre distance / sqrt(w·h) of the ground-truth landmark box, in %. "
        f"FR@{thr}: share of faces with inter-ocular NME > {thr}. "
        f"AUC@{thr}: area under the inter-ocular CED curve from 0 to {thr}, divided by {thr}.",
        "",
    ]
    seed_counts = sorted({e["num_seeds"] for e in entries})
    if len(seed_counts) > 1:
        lines += [f"Note: entries have different numbers of seeds ({', '.join(map(str, seed_counts))}).", ""]
    return lines


def _pairs_section(summary: dict) -> list[str]:
    if len(summary["entries"]) < 2:
        return []
    conf = f"{100 * summary['confidence']:g}"
    alpha = f"{summary['alpha']:g}"
    header = ["A", "B", "Faces", "Mean Δ A − B (% points)", f"{conf}% CI", "Wilcoxon p", "Holm p", "Better"]
    rows = []
    for p in summary["pairs"]:
        rows.append([p["a"], p["b"], str(p["num_faces"]), f"{p['mean_difference_pct']:+.3f}",
                     fmt_interval(p["ci_low_pct"], p["ci_high_pct"]), fmt_p(p["wilcoxon_p"]),
                     fmt_p(p["wilcoxon_p_holm"]), better_cell(p, summary["alpha"])])
    return (
        ["## Paired comparisons (inter-ocular NME, same test faces)", ""]
        + table(header, rows)
        + [
            "",
            "Each entry's per-face NME is first averaged over its seeds; Δ is the per-face difference A − B "
            f"(negative: A errs less). The {conf}% interval is a Student-t interval of the mean Δ over faces; it reflects "
            "face-to-face variation, not seed-to-seed variation (see the seed-level comparisons). Wilcoxon p is the "
            "two-sided Wilcoxon signed-rank test on the per-face Δ (scipy.stats.wilcoxon, zero differences dropped); "
            "Holm p is that p adjusted by Holm's step-down method over the family of all pairs "
            f"({_family_size(summary['pairs'])} with a defined p). A lead is significant when the Holm-adjusted p < {alpha} and the "
            "signed ranks favour the entry with the lower mean; the verdict uses the same rule.",
            "",
        ]
        + _seed_section(summary)
    )


def _family_size(pairs: list[dict]) -> int:
    return pairs[0]["holm_family_size"] if pairs else 0


def _seed_section(summary: dict) -> list[str]:
    lines = ["## Seed-level comparisons (inter-ocular NME)", ""]
    if max(p["seed_level"]["num_seeds"] for p in summary["pairs"]) < 2:
        return lines + ["One seed: no seed-level test.", ""]
    conf = f"{100 * summary['confidence']:g}"
    header = ["A", "B", "Seeds", "Δ A − B per seed (% points)", "Mean Δ", f"{conf}% t-interval over seeds",
              "Seeds agreeing"]
    rows = []
    for p in summary["pairs"]:
        seed = p["seed_level"]
        per_seed = ", ".join(f"{s}: {d:+.3f}" for s, d in zip(seed["seeds"], seed["differences_pct"])) or "—"
        mean = "—" if seed["mean_difference_pct"] is None else f"{seed['mean_difference_pct']:+.3f}"
        agree = "—" if seed["agree"] is None else f"{seed['agree']} of {seed['num_seeds']}"
        rows.append([p["a"], p["b"], str(seed["num_seeds"]), per_seed, mean,
                     fmt_interval(seed["ci_low_pct"], seed["ci_high_pct"]), agree])
    return lines + table(header, rows) + [
        "",
        "Each seed's mean inter-ocular NME over all test faces, A minus B, for the seeds both entries ran (a seed "
        "gives every entry the same batches). The mean of these equals the face-level mean Δ when both entries ran "
        f"the same seeds; the {conf}% Student-t interval over seeds reflects seed-to-seed variation, and needs two "
        "or more seeds. Seeds agreeing: how many seeds favour the entry that is better over the faces. A ranking "
        "that holds in every seed agrees in all of them.",
        "",
    ]


def _training_section(summary: dict) -> list[str]:
    header = ["Entry", "Seeds", "Epochs", "Time per run (s)", "Total time (s)"]
    rows = []
    for e in summary["entries"]:
        epochs = sorted(set(e["epochs"]))
        epochs_text = str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"
        t = e["train_seconds"]
        rows.append([e["name"], str(e["num_seeds"]), epochs_text, fmt_stat(t, 1), "—" if t is None else f"{t['total']:.1f}"])
    return ["## Training", ""] + table(header, rows) + [""]


def _runs_section(results: dict, summary: dict) -> list[str]:
    threshold = summary["threshold"]
    header = ["Entry", "Seed", "NME inter-ocular (%)", f"FR@{threshold:g} (%)", f"AUC@{threshold:g}", "Train time (s)", "Checkpoint"]
    rows = []
    for e in summary["entries"]:
        m = e["metrics"]
        runs = [r for r in results["runs"] if r["name"] == e["name"]]
        for i, run in enumerate(runs):
            seconds = run.get("train_seconds")
            rows.append(
                [
                    e["name"],
                    str(run["seed"]),
                    f"{m['nme_inter_ocular_pct']['per_seed'][i]:.3f}",
                    f"{m['fr_pct']['per_seed'][i]:.2f}",
                    f"{m['auc']['per_seed'][i]:.4f}",
                    "—" if seconds is None else f"{float(seconds):.1f}",
                    f"`{run['checkpoint']}`" if run.get("checkpoint") else "—",
                ]
            )
    return ["## Runs", ""] + table(header, rows) + [""]


def _reproduce_section(results: dict) -> list[str]:
    lines = ["## Reproduce", ""]
    if results.get("command"):
        lines += ["Command:", "", "```sh", results["command"], "```", ""]
    if results.get("config") is not None:
        # Through JSON first: YAML's safe dumper refuses tuples and numpy scalars.
        config = json.loads(json.dumps(_json_safe(results["config"])))
        lines += ["Configuration:", "", "```yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return lines


# ------------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    # The object-oriented API with the Agg canvas: no pyplot, no global backend change.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _plot_ced(runs_by_entry: dict, summary: dict, path: Path) -> None:
    threshold = summary["threshold"]
    figure = _figure(6.4, 4.8)
    ax = figure.add_subplot()
    by_name = {e["name"]: e for e in summary["entries"]}
    names = summary["ranking"]
    for name, color in zip(names, _colors(len(names))):
        pooled = nme_matrix(runs_by_entry[name]).ravel()
        x, y = ced(pooled, threshold, CED_STEP)
        auc_mean = by_name[name]["metrics"]["auc"]["mean"]
        ax.plot(100.0 * np.asarray(x), y, color=color, linewidth=1.6, label=f"{name} (AUC {auc_mean:.4f})")
    ax.set_xlim(0.0, 100.0 * threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("inter-ocular NME (%)")
    ax.set_ylabel("proportion of test faces")
    ax.set_title(f"CED, {summary['num_test_faces']} test faces, seeds pooled")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    _save_figure(figure, path)


def _history_series(run: dict, key: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one history key, skipping missing or non-finite values."""
    epochs, values = [], []
    for record in run.get("history") or []:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and "epoch" in record:
            epochs.append(record["epoch"])
            values.append(scale * value)
    return np.asarray(epochs, dtype=np.float64), np.asarray(values, dtype=np.float64)


def _plot_training(runs_by_entry: dict, path: Path) -> None:
    figure = _figure(11.0, 4.4)
    ax_loss, ax_nme = figure.subplots(1, 2)
    panels = ((ax_loss, "train_loss", 1.0, "training loss"), (ax_nme, "val_nme", 100.0, "validation NME (%)"))
    names = list(runs_by_entry)
    for name, color in zip(names, _colors(len(names))):
        runs = runs_by_entry[name]
        for ax, key, scale, _ in panels:
            series = [_history_series(run, key, scale) for run in runs]
            series = [(x, y) for x, y in series if x.size]
            for x, y in series:
                ax.plot(x, y, color=color, linewidth=0.8, alpha=0.45)
            if not series:
                continue
            same_epochs = all(np.array_equal(series[0][0], x) for x, _ in series)
            if len(series) > 1 and same_epochs:
                ax.plot(series[0][0], np.mean([y for _, y in series], axis=0), color=color, linewidth=2.0, label=name)
            else:
                ax.plot([], [], color=color, linewidth=2.0, label=name)
    from matplotlib.ticker import MaxNLocator

    for ax, key, _, label in panels:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {label} recorded", ha="center", va="center", transform=ax.transAxes)
    # Losses of different kinds differ by orders of magnitude: a log axis keeps all readable.
    positive = [line.get_ydata() for line in ax_loss.lines if len(line.get_ydata())]
    if positive and all(np.all(np.asarray(y) > 0) for y in positive):
        ax_loss.set_yscale("log")
    ax_loss.set_title("training loss (each loss on its own scale)")
    ax_nme.set_title("validation NME")
    figure.tight_layout()
    _save_figure(figure, path)


# ---------------------------------------------------------------------------- writing


def _json_safe(value):
    """A copy of `value` with numpy arrays/scalars as Python lists/numbers, tuples as lists,
    and non-finite floats as None (results.json is strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _save_figure(figure, path: Path) -> None:
    with fileio.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
