"""Statistics for comparing landmark models on the same test faces.

Two models evaluated on the same faces give paired errors: the fair question is not
"whose mean is lower" but "is one lower on the same faces by more than chance would
give". `paired_comparison` answers it twice, with a t-interval for the mean per-face
difference and with the Wilcoxon signed-rank test (which does not assume the
differences are normal; per-face NME differences are heavy-tailed).

Comparing k entries makes k(k-1)/2 such tests: `holm_adjust` controls the chance of any
false "significant" among them. `seed_level_comparison` asks the other question, whether
the ranking holds seed by seed (training randomness, which the face-level test averages
away). `abs_bins` / `pose_bins` cut the test faces by |yaw| and |roll|.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1) of `values`.

    The std is None for a single value: one seed says nothing about the spread.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_std needs at least one value")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else None
    return mean, std


def t_interval(values, confidence: float = 0.95) -> dict:
    """Two-sided Student-t confidence interval for the mean of `values`.

    Returns {"mean", "low", "high", "t_critical", "df"}; low/high/t_critical are None when
    there are fewer than two values (no spread to estimate).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "t_critical": None, "df": 0}
    df = n - 1
    t_critical = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df))
    half_width = t_critical * float(values.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half_width, "high": mean + half_width, "t_critical": t_critical, "df": df}


def wilcoxon_p(differences) -> tuple[float | None, float | None]:
    """(statistic, two-sided p) of `scipy.stats.wilcoxon(differences)` with scipy's defaults.

    Returns (None, None) where the test is undefined: every difference is zero (the two
    models agree on every face) or too few non-zero differences remain.
    """
    differences = np.asarray(differences, dtype=np.float64).ravel()
    if np.count_nonzero(differences) == 0:
        return None, None
    try:
        result = scipy_stats.wilcoxon(differences)
    except ValueError:
        return None, None
    statistic, p = float(result.statistic), float(result.pvalue)
    if not math.isfinite(p):
        return None, None
    return statistic, p


def signed_rank_sums(differences) -> tuple[float, float]:
    """(R+, R-): sums of the ranks of |d| over positive and negative differences.

    Zeros are dropped first, as scipy's default ``zero_method="wilcox"`` does. The
    two-sided p-value alone does not say which side the test favours; these sums do.
    """
    differences = np.asarray(differences, dtype=np.float64).ravel()
    nonzero = differences[differences != 0]
    ranks = scipy_stats.rankdata(np.abs(nonzero))
    return float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())


def paired_comparison(errors_a, errors_b, confidence: float = 0.95) -> dict:
    """Compare two entries' per-face errors on the same faces.

    errors_a, errors_b: (faces,) or (seeds, faces) arrays, the same faces in the same order
    (the seed counts may differ). Each entry's errors are first averaged over its seeds, so
    every face gives one difference d = mean_a - mean_b; negative d means A errs less.

    Returns, in the units of the inputs:
      num_faces, mean_difference, ci_low, ci_high (t-interval over faces, None for one face),
      confidence, t_critical, df, wilcoxon_statistic, wilcoxon_p (None where undefined),
      rank_sum_positive, rank_sum_negative (R+, R-) and ranks_favour: "a" when R- > R+
      (A errs less on the faces that weigh most in the signed-rank test), "b", or None.
    The interval reflects face-to-face variation with the training randomness averaged
    over the seeds given; it does not include seed-to-seed variation.
    """
    a = np.atleast_2d(np.asarray(errors_a, dtype=np.float64)).mean(axis=0)
    b = np.atleast_2d(np.asarray(errors_b, dtype=np.float64)).mean(axis=0)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same faces: {a.size} vs {b.size} errors")
    differences = a - b
    interval = t_interval(differences, confidence)
    statistic, p = wilcoxon_p(differences)
    rank_sum_positive, rank_sum_negative = signed_rank_sums(differences)
    if rank_sum_negative > rank_sum_positive:
        ranks_favour = "a"
    elif rank_sum_positive > rank_sum_negative:
        ranks_favour = "b"
    else:
        ranks_favour = None
    return {
        "num_faces": int(differences.size),
        "mean_difference": interval["mean"],
        "ci_low": interval["low"],
        "ci_high": interval["high"],
        "confidence": confidence,
        "t_critical": interval["t_critical"],
        "df": interval["df"],
        "wilcoxon_statistic": statistic,
        "wilcoxon_p": p,
        "rank_sum_positive": rank_sum_positive,
        "rank_sum_negative": rank_sum_negative,
        "ranks_favour": ranks_favour,
    }


def holm_adjust(p_values) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values, in the order given.

    With the m defined p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value
    of p_(i) is max over j <= i of min(1, (m - j + 1) p_(j)): each is at least the one
    before it (monotone) and none exceeds 1. Rejecting where the adjusted p < alpha keeps
    the chance of any false rejection in the family at most alpha. None entries (tests
    that are undefined, e.g. two models agreeing on every face) stay None and do not
    count in m.
    """
    defined = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(defined)
    adjusted: list[float | None] = [None] * len(p_values)
    running_max = 0.0
    for rank, (p, i) in enumerate(sorted(defined)):
        running_max = max(running_max, min(1.0, (m - rank) * float(p)))
        adjusted[i] = running_max
    return adjusted


def seed_level_comparison(seed_means_a: dict, seed_means_b: dict, confidence: float = 0.95) -> dict:
    """Compare two entries seed by seed: one difference per seed both entries ran.

    seed_means_*: {seed: the entry's mean error over all test faces for that seed}. Seeds
    pair by number because a seed gives every entry the same batches (and the same initial
    weights where the models match). d_s = mean_a(s) - mean_b(s); the t-interval over seeds
    needs two or more (None otherwise). "direction": "a" when the mean d_s < 0, "b" when > 0.
    Returns {"seeds", "differences", "mean_difference" (None without a common seed),
    "ci_low", "ci_high", "t_critical", "df", "negative", "positive"} (seed counts by sign).
    """
    seeds = [s for s in seed_means_a if s in seed_means_b]
    differences = [float(seed_means_a[s]) - float(seed_means_b[s]) for s in seeds]
    result = {"seeds": seeds, "differences": differences, "mean_difference": None, "ci_low": None,
              "ci_high": None, "t_critical": None, "df": 0,
              "negative": sum(d < 0 for d in differences), "positive": sum(d > 0 for d in differences)}
    if differences:
        interval = t_interval(differences, confidence)
        result.update(mean_difference=interval["mean"], ci_low=interval["low"], ci_high=interval["high"],
                      t_critical=interval["t_critical"], df=interval["df"])
    return result


def abs_bins(values, edges) -> list[dict]:
    """Bins of |values| with lower edges `edges` (ascending, the first 0), the last one open.

    Bin k holds edges[k] <= |v| < edges[k + 1] (the last: |v| >= edges[-1]), so every value
    falls in exactly one bin. Returns [{"label", "low", "high" (None: open), "mask"}].
    """
    magnitudes = np.abs(np.asarray(values, dtype=np.float64).ravel())
    bins = []
    for k, low in enumerate(edges):
        high = edges[k + 1] if k + 1 < len(edges) else None
        mask = magnitudes >= low if high is None else (magnitudes >= low) & (magnitudes < high)
        label = f"{low:g}–{high:g}°" if high is not None else f"≥ {low:g}°"
        bins.append({"label": label, "low": float(low), "high": None if high is None else float(high), "mask": mask})
    return bins


# Head-pose bins of the reports: lower edges in degrees of |yaw| and |roll| (the last bin
# open). Yaw follows the usual profile breakdown (frontal, slight, strong, near-profile);
# roll is rarely large in face datasets, hence the narrower bins.
POSE_AXES = {"yaw": 0, "roll": 2}  # columns of a [yaw, pitch, roll] pose array
POSE_BIN_EDGES = {"yaw": (0.0, 15.0, 30.0, 45.0), "roll": (0.0, 10.0, 20.0)}


def pose_bins(poses) -> dict[str, list[dict]]:
    """{"yaw": abs_bins of |yaw|, "roll": abs_bins of |roll|} of (N, 3) [yaw, pitch, roll] degrees."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 3:
        raise ValueError(f"poses must be (N, 3) [yaw, pitch, roll], got shape {poses.shape}")
    return {axis: abs_bins(poses[:, column], POSE_BIN_EDGES[axis]) for axis, column in POSE_AXES.items()}
