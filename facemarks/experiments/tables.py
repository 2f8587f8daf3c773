"""Building blocks of the comparison report (experiments/report.py) and its breakdowns.

* Markdown primitives: `fmt_stat`, `fmt_p`, `table`.
* Statistics over seeds and pairs of entries: `over_seeds`, `nme_matrix`, `face_pair`
  (the face-level paired test of two entries) and `holm_family` (Holm's adjustment over a
  family of pairs, and the "significant" flag that follows from it).
* Breakdowns of the test faces: per subset (WFLW-style 0/1 flags) and per head-pose bin.

The head-pose breakdown (`summarise_pose`, `pose_section`) bins the test faces by |yaw|
and |roll| (stats.POSE_BIN_EDGES, poses estimated from the ground-truth landmarks). In each
bin it gives every entry's inter-ocular NME (mean ± std over seeds) and compares the
overall best entry (the first in the ranking) with each other entry on the faces of that
bin: the question a reader asks is whether the winner's lead holds on turned and tilted
faces. The k - 1 tests of one bin form one Holm family.

The per-region breakdown (`summarise_regions`, `regions_section`) gives every entry's
inter-ocular NME of each face region (jaw, brows, nose, eyes, mouth; runs' "nme_regions",
facemarks.engine.evaluate.region_errors) as mean ± std over seeds, and compares each entry
with the first entry of the config (the baseline a transfer or weighting experiment puts
first) on every test face: the k - 1 tests of one region form one Holm family. Results
written before runs had "nme_regions" have no such section.

The stability breakdown (`summarise_stability`, `stability_section`) gives every entry's
perturbation jitter (runs' "stability", facemarks.experiments.compare.run_stability: per
seed the mean over test faces, then mean ± std over seeds) and, when measured, its video
jitter and video NME (mean over the videos), and compares each entry with the first entry
of the config on the per-face jitter: each face's jitter averaged over the entry's seeds,
the paired test of `face_pair`, Holm over the k - 1 pairs, and beside it the seed-level
comparison of the per-seed mean jitter. Only when every run measured stability with the
same settings (k, seed, perturbations, videos); results without have no such section.
"""

from __future__ import annotations

import numpy as np

from facemarks.stats import holm_adjust, mean_std, paired_comparison, pose_bins, seed_level_comparison

# ------------------------------------------------------------------------- statistics


def nme_matrix(runs, kind: str = "inter_ocular") -> np.ndarray:
    """(seeds, faces) per-face NME fractions of one entry."""
    return np.array([np.asarray(run["nme"][kind], dtype=np.float64) for run in runs])


def over_seeds(per_seed) -> dict:
    """{"mean", "std" (ddof=1; None for one seed), "per_seed"} of one value per seed."""
    per_seed = [float(v) for v in per_seed]
    mean, std = mean_std(per_seed)
    return {"mean": mean, "std": std, "per_seed": per_seed}


def _pct(value):
    return None if value is None else 100.0 * value


def face_pair(name_a: str, name_b: str, errors_a: np.ndarray, errors_b: np.ndarray, confidence: float) -> dict:
    """The face-level paired test of entries A and B (stats.paired_comparison), in percent.

    errors_*: (seeds, faces) fractions on the same faces. "significant" is left to
    `holm_family`, which needs the whole family of pairs.
    """
    result = paired_comparison(errors_a, errors_b, confidence)
    diff = result["mean_difference"]
    return {
        "a": name_a,
        "b": name_b,
        "num_faces": result["num_faces"],
        "mean_difference_pct": 100.0 * diff,
        "ci_low_pct": _pct(result["ci_low"]),
        "ci_high_pct": _pct(result["ci_high"]),
        "confidence": confidence,
        "t_critical": result["t_critical"],
        "df": result["df"],
        "wilcoxon_statistic": result["wilcoxon_statistic"],
        "wilcoxon_p": result["wilcoxon_p"],
        "ranks_favour": {"a": name_a, "b": name_b, None: None}[result["ranks_favour"]],
        "better": name_a if diff < 0 else name_b if diff > 0 else None,
    }


def holm_family(pairs: list[dict], alpha: float) -> list[dict]:
    """Copies of `pairs` with "wilcoxon_p_holm" (Holm over these pairs), "holm_family_size"
    (the number of defined p-values) and "significant"."""
    adjusted = holm_adjust([p["wilcoxon_p"] for p in pairs])
    size = sum(p is not None for p in adjusted)
    out = []
    for pair, p_holm in zip(pairs, adjusted):
        # A lead counts only if the adjusted test rejects and the ranks point the same way as the means.
        significant = p_holm is not None and p_holm < alpha and pair["better"] is not None
        significant = bool(significant and pair["ranks_favour"] == pair["better"])
        out.append({**pair, "wilcoxon_p_holm": p_holm, "holm_family_size": size, "significant": significant})
    return out


# ---------------------------------------------------------------------- head-pose bins


def summarise_pose(poses, runs_by_entry: dict, ranking: list[str], confidence: float, alpha: float) -> dict:
    """The head-pose breakdown of the summary (see the module docstring).

    poses: (faces, 3) [yaw, pitch, roll] degrees of the test faces, in test_faces order.
    Returns {"reference": the entry compared with the others, "axes": {"yaw": [bin], "roll":
    [bin]}}, each bin {"label", "low", "high" (None: open), "num_faces", "nme_inter_ocular_pct":
    {entry: over_seeds stat, None for an empty bin}, "pairs": [reference vs each other entry]}.
    """
    matrices = {name: nme_matrix(runs_by_entry[name]) for name in ranking}
    axes = {}
    for axis, bins in pose_bins(poses).items():
        axes[axis] = [_pose_bin(b, matrices, ranking, confidence, alpha) for b in bins]
    return {"reference": ranking[0], "axes": axes}


def _pose_bin(pose_bin: dict, matrices: dict, ranking: list[str], confidence: float, alpha: float) -> dict:
    mask = pose_bin["mask"]
    num_faces = int(mask.sum())
    nme = {name: over_seeds(100.0 * m[:, mask].mean(axis=1)) if num_faces else None for name, m in matrices.items()}
    pairs = []
    if num_faces:
        reference = ranking[0]
        pairs = [face_pair(reference, other, matrices[reference][:, mask], matrices[other][:, mask], confidence)
                 for other in ranking[1:]]
    return {"label": pose_bin["label"], "low": pose_bin["low"], "high": pose_bin["high"], "num_faces": num_faces,
            "nme_inter_ocular_pct": nme, "pairs": holm_family(pairs, alpha)}


# -------------------------------------------------------------------------- face regions


def summarise_regions(runs_by_entry: dict, confidence: float, alpha: float) -> dict | None:
    """The per-region breakdown (see the module docstring), or None unless every run has the
    same regions. Returns {"reference": the first entry, "regions": {region: {"nme_pct":
    {entry: over_seeds stat}, "pairs": [reference vs each other entry, Holm within the region]}}}."""
    runs = [run for group in runs_by_entry.values() for run in group]
    names = list((runs[0].get("nme_regions") or {}))
    if not names or any(list(run.get("nme_regions") or {}) != names for run in runs):
        return None
    entries = list(runs_by_entry)
    reference = entries[0]
    regions = {}
    for region in names:
        matrices = {name: np.array([run["nme_regions"][region] for run in group], dtype=np.float64)
                    for name, group in runs_by_entry.items()}
        pairs = [face_pair(reference, other, matrices[reference], matrices[other], confidence) for other in entries[1:]]
        regions[region] = {"nme_pct": {name: over_seeds(100.0 * m.mean(axis=1)) for name, m in matrices.items()},
                           "pairs": holm_family(pairs, alpha)}
    return {"reference": reference, "regions": regions}


def regions_section(summary: dict) -> list[str]:
    """The per-region NME table and each entry's paired test against the first; [] without regions."""
    regions = summary.get("regions")
    if not regions:
        return []
    names = list(regions["regions"])
    entries = list(next(iter(regions["regions"].values()))["nme_pct"])
    rows = [[entry] + [fmt_stat(regions["regions"][r]["nme_pct"][entry], 3) for r in names] for entry in entries]
    lines = ["## Results by face region (inter-ocular NME %)", "",
             "Each region's NME is the mean error of its points divided by the same inter-ocular distance as the "
             "whole-face NME; mean ± std over seeds, entries in config order.", ""]
    lines += table(["Entry"] + names, rows) + [""]
    if len(entries) < 2:
        return lines
    conf, alpha = f"{100 * summary['confidence']:g}", summary["alpha"]
    header = ["Region", "A", "B", "Faces", "Mean Δ A − B (% points)", f"{conf}% CI", "Wilcoxon p", "Holm p", "Better"]
    pair_rows = [[region, p["a"], p["b"], str(p["num_faces"]), f"{p['mean_difference_pct']:+.3f}",
                  fmt_interval(p["ci_low_pct"], p["ci_high_pct"]), fmt_p(p["wilcoxon_p"]), fmt_p(p["wilcoxon_p_holm"]),
                  better_cell(p, alpha)]
                 for region in names for p in regions["regions"][region]["pairs"]]
    return lines + [f"### Paired comparisons per region (**{regions['reference']}**, the first entry, against each "
                    f"other entry)", ""] + table(header, pair_rows) + [
        "", "Computed as the paired comparisons above, on each region's errors. Holm's adjustment is applied within "
            "each region, over that region's comparisons.", ""]


# ----------------------------------------------------------------------------- stability

STABILITY_SETTINGS = ("k", "seed", "perturbations")


def summarise_stability(runs_by_entry: dict, confidence: float, alpha: float) -> dict | None:
    """The stability breakdown (see the module docstring), or None unless every run has the
    same stability settings. Returns {"reference", "k", "seed", "perturbations", "num_videos",
    "entries": {entry: {"jitter_pct", "nme_under_perturbation_pct", ["video_jitter_pct",
    "video_nme_pct"]: over_seeds stat}}, "pairs": [reference vs each other entry, with
    "seed_level"]}."""
    runs = [run for group in runs_by_entry.values() for run in group]
    records = [run.get("stability") for run in runs]
    if not all(records):
        return None
    settings = [([r[key] for key in STABILITY_SETTINGS], (r.get("video") or {}).get("faces")) for r in records]
    if any(s != settings[0] for s in settings):
        return None
    videos = "video" in records[0]
    entries = {}
    for name, group in runs_by_entry.items():
        stats = {"jitter_pct": over_seeds([np.mean(r["stability"]["jitter_pct"]) for r in group]),
                 "nme_under_perturbation_pct": over_seeds([np.mean(r["stability"]["nme_under_perturbation_pct"])
                                                           for r in group])}
        if videos:
            stats["video_jitter_pct"] = over_seeds([np.mean(r["stability"]["video"]["jitter_pct"]) for r in group])
            stats["video_nme_pct"] = over_seeds([np.mean(r["stability"]["video"]["nme_pct"]) for r in group])
        entries[name] = stats
    names = list(runs_by_entry)
    reference = names[0]
    # face_pair works in fractions and reports percent: the per-face jitter (in %) goes in / 100.
    jitter = {name: np.array([r["stability"]["jitter_pct"] for r in group], dtype=np.float64) / 100.0
              for name, group in runs_by_entry.items()}
    pairs = holm_family([face_pair(reference, other, jitter[reference], jitter[other], confidence)
                         for other in names[1:]], alpha)
    for pair in pairs:
        pair["seed_level"] = _stability_seed_level(pair, runs_by_entry[pair["a"]], runs_by_entry[pair["b"]],
                                                   confidence)
    first = records[0]
    return {"reference": reference, **{key: first[key] for key in STABILITY_SETTINGS},
            "num_videos": len(first["video"]["jitter_pct"]) if videos else 0, "entries": entries, "pairs": pairs}


def seed_level_pair(pair: dict, means_a: dict, means_b: dict, confidence: float, scale: float = 1.0) -> dict:
    """A pair's seed-level test: per seed both entries ran (seed -> mean over the faces), the
    difference A - B times `scale` (to % points), its mean and t-interval over seeds, and
    "agree": the seeds whose difference favours the face-level "better"."""
    result = seed_level_comparison(means_a, means_b, confidence)
    agree = None
    if pair["better"] is not None:
        agree = result["negative"] if pair["better"] == pair["a"] else result["positive"]
    scaled = {key: None if result[key] is None else scale * result[key] for key in ("mean_difference", "ci_low", "ci_high")}
    return {"seeds": result["seeds"], "num_seeds": len(result["seeds"]),
            "differences_pct": [scale * d for d in result["differences"]],
            "mean_difference_pct": scaled["mean_difference"], "ci_low_pct": scaled["ci_low"],
            "ci_high_pct": scaled["ci_high"], "t_critical": result["t_critical"], "df": result["df"], "agree": agree}


def _stability_seed_level(pair: dict, runs_a: list[dict], runs_b: list[dict], confidence: float) -> dict:
    """Per seed both entries ran, the difference of their mean jitter over the faces (% points)."""
    return seed_level_pair(pair, {run["seed"]: float(np.mean(run["stability"]["jitter_pct"])) for run in runs_a},
                           {run["seed"]: float(np.mean(run["stability"]["jitter_pct"])) for run in runs_b}, confidence)


def stability_section(summary: dict) -> list[str]:
    """The stability table and each entry's paired test against the first; [] without stability."""
    found = summary.get("stability")
    if not found:
        return []
    videos = found["num_videos"] > 0
    header = ["Entry", "Jitter (% IOD)", "NME under perturbation (%)"]
    header += ["Video jitter (% IOD)", "Video NME (%)"] if videos else []
    keys = ["jitter_pct", "nme_under_perturbation_pct"] + (["video_jitter_pct", "video_nme_pct"] if videos else [])
    rows = [[name] + [fmt_stat(stats[key], 3) for key in keys] for name, stats in found["entries"].items()]
    video_text = (f" Video: the first {found['num_videos']} test faces moved along a known path "
                  f"(facemarks.engine.stability.FacePath), predicted frame by frame from the true box; video "
                  f"jitter is the frame-to-frame motion the face's own motion does not explain." if videos else "")
    lines = ["## Stability (how much the points move when the face does not)", "",
             f"Jitter: each test crop in {found['k']} perturbed versions ({', '.join(found['perturbations'])}; "
             f"stability seed {found['seed']}, the same draws for every run), the per-coordinate standard deviation "
             f"of the predictions in % of the inter-ocular distance, mean over faces; mean ± std over seeds, entries "
             f"in config order." + video_text, ""]
    lines += table(header, rows) + [""]
    if not found["pairs"]:
        return lines
    conf, alpha = f"{100 * summary['confidence']:g}", summary["alpha"]
    header = ["A", "B", "Faces", "Mean Δ jitter A − B (% points)", f"{conf}% CI", "Wilcoxon p", "Holm p", "Better",
              "Seeds: Δ per seed", "Seeds agreeing"]
    pair_rows = []
    for p in found["pairs"]:
        seed = p["seed_level"]
        per_seed = ", ".join(f"{s}: {d:+.3f}" for s, d in zip(seed["seeds"], seed["differences_pct"])) or "—"
        agree = "—" if seed["agree"] is None else f"{seed['agree']} of {seed['num_seeds']}"
        pair_rows.append([p["a"], p["b"], str(p["num_faces"]), f"{p['mean_difference_pct']:+.3f}",
                          fmt_interval(p["ci_low_pct"], p["ci_high_pct"]), fmt_p(p["wilcoxon_p"]),
                          fmt_p(p["wilcoxon_p_holm"]), better_cell(p, alpha), per_seed, agree])
    return lines + [f"### Paired comparisons of jitter (**{found['reference']}**, the first entry, against each "
                    f"other entry)", ""] + table(header, pair_rows) + [
        "", "Each face's jitter is averaged over the entry's seeds; Δ, the interval and the Wilcoxon test are over "
            "faces as in the NME comparisons (lower jitter is better), Holm's adjustment over these comparisons. "
            "Seeds: per seed both entries ran, the difference of the mean jitter over faces; agreeing: seeds "
            "favouring the better entry.", ""]


# ---------------------------------------------------------------------------- markdown


def fmt_stat(stat: dict | None, digits: int) -> str:
    """'mean ± std' with `digits` decimals; the mean alone for one seed; '—' for no data."""
    if stat is None:
        return "—"
    if stat["std"] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def fmt_interval(low: float | None, high: float | None) -> str:
    return "—" if low is None else f"[{low:.3f}, {high:.3f}]"


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def better_cell(pair: dict, alpha: float) -> str:
    """Who errs less in a pair, and whether the Holm-adjusted test backs it."""
    if pair["better"] is None:
        return "tie"
    if pair["significant"]:
        return f"{pair['better']} (p < {alpha:g})"
    p_holm = pair["wilcoxon_p_holm"]
    if p_holm is not None and p_holm < alpha:
        return f"unclear (mean: {pair['better']}, ranks: {pair['ranks_favour']})"
    return f"{pair['better']} (n.s.)"


def subsets_section(summary: dict) -> list[str]:
    entries = summary["entries"]
    subsets = list(entries[0]["subsets"])
    if not subsets:
        return []
    header = ["Entry"] + [f"{s} ({entries[0]['subsets'][s]['num_faces']})" for s in subsets]
    rows = []
    for name in summary["ranking"]:
        e = next(x for x in entries if x["name"] == name)
        rows.append([name] + [fmt_stat(e["subsets"][s]["nme_inter_ocular_pct"], 3) for s in subsets])
    return (
        ["## Subsets (inter-ocular NME %)", ""]
        + table(header, rows)
        + ["", "Column headers give the number of test faces in the subset; mean ± std over seeds as above.", ""]
    )


def pose_section(summary: dict) -> list[str]:
    """Per-bin NME tables (one per axis) and the per-bin paired tests; [] without poses."""
    pose = summary.get("pose")
    if not pose:
        return []
    lines = ["## Results by head pose (inter-ocular NME %)", "",
             "Head pose of each test face is estimated from its ground-truth landmarks; faces are binned by "
             "the absolute yaw (turn left/right) and the absolute roll (in-plane tilt), lower edge included. "
             "Column headers give the number of test faces in the bin; mean ± std over seeds as above.", ""]
    for axis, bins in pose["axes"].items():
        header = ["Entry"] + [f"{axis} {b['label']} ({b['num_faces']})" for b in bins]
        rows = [[name] + [fmt_stat(b["nme_inter_ocular_pct"][name], 3) for b in bins] for name in summary["ranking"]]
        lines += table(header, rows) + [""]
    lines += _pose_pairs_lines(summary)
    return lines


def _pose_pairs_lines(summary: dict) -> list[str]:
    pose = summary["pose"]
    if len(summary["ranking"]) < 2:
        return []
    conf, alpha = f"{100 * summary['confidence']:g}", summary["alpha"]
    header = ["Bin", "A", "B", "Faces", "Mean Δ A − B (% points)", f"{conf}% CI", "Wilcoxon p", "Holm p", "Better"]
    rows = []
    for axis, bins in pose["axes"].items():
        for b in bins:
            for p in b["pairs"]:
                rows.append([f"{axis} {b['label']}", p["a"], p["b"], str(p["num_faces"]), f"{p['mean_difference_pct']:+.3f}",
                             fmt_interval(p["ci_low_pct"], p["ci_high_pct"]), fmt_p(p["wilcoxon_p"]),
                             fmt_p(p["wilcoxon_p_holm"]), better_cell(p, alpha)])
    return (
        [f"### Paired comparisons per pose bin (**{pose['reference']}**, the best overall, against each other entry)", ""]
        + table(header, rows)
        + ["", "Computed as in the paired comparisons above, on the faces of each bin only. Holm's adjustment is "
               "applied within each bin, over that bin's comparisons; empty bins have none.", ""]
    )
