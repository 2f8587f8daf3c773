"""Statistics for comparing landmark models on the same test faces.

Two models evaluated on the same faces give paired errors: the fair question is not
"whose mean is lower" but "is one lower on the same faces by more than chance would
give". `paired_comparison` answers it twice, with a t-interval for the mean per-face
difference and with the Wilcoxon signed-rank test (which does not assume the
differences are normal; per-face NME differences are heavy-tailed).
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
