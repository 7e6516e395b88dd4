#!/usr/bin/python3
"""Reference values for tests/test_stats.cpp, computed with scipy 1.10 and pandas 1.5.

Usage (prints one JSON document on stdout):
  stats_oracle.py cases CASES.json     CASES = {"cases": [{"x": [...], "y": [...],
                                        "method": "auto"|"exact"|"asymptotic"}, ...]}
  stats_oracle.py alpha UNITS.json     UNITS = {"sets": [[[v, ...], ...], ...]}  (units of values)
  stats_oracle.py study RATINGS.jsonl...   the numbers of engine::studyStatistics, via pandas
  stats_oracle.py selftest             checks the textbook Krippendorff implementation by hand

Non-finite numbers are written as JSON null (NaN) or the strings "inf" / "-inf".
"""
import json
import math
import sys
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import _mannwhitneyu, _stats_py

warnings.simplefilter("ignore")  # scipy/numpy warn on the degenerate cases we test on purpose


def num(v):
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def describe(values):
    d = pd.Series(values, dtype=float).describe()
    return {k: (int(d[k]) if k == "count" else num(d[k]))
            for k in ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]}


def ttests(x, y):
    """scipy.stats.ttest_ind both ways; df from scipy's own helpers (1.10 does not return it)."""
    out = {}
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    for name, equal in (("student", True), ("welch", False)):
        r = stats.ttest_ind(x, y, equal_var=equal)
        if len(x) == 0 or len(y) == 0:
            df = float("nan")
        else:
            v1, v2 = np.var(x, ddof=1), np.var(y, ddof=1)
            helper = (_stats_py._equal_var_ttest_denom if equal
                      else _stats_py._unequal_var_ttest_denom)
            df, _ = helper(v1, len(x), v2, len(y))
        out[name] = {"t": num(r.statistic), "p": num(r.pvalue), "df": num(df)}
    return out


def mwu(x, y, method="auto"):
    if len(x) == 0 or len(y) == 0:
        return {"u": None, "p": None, "method": None}
    r = stats.mannwhitneyu(x, y, use_continuity=True, alternative="two-sided", method=method)
    chosen = method
    if method == "auto":
        xy = np.concatenate([np.asarray(x, float), np.asarray(y, float)])
        chosen = _mannwhitneyu._mwu_choose_method(len(x), len(y), xy, "auto")
    return {"u": num(r.statistic), "p": num(r.pvalue), "method": chosen}


def cohen_and_ci(x, y):
    """Cohen's d (pooled sample SD) and the Student-t 95% CI of mean(x) - mean(y)."""
    n1, n2 = len(x), len(y)
    est = float(np.mean(x) - np.mean(y)) if n1 and n2 else float("nan")
    if n1 < 2 or n2 < 2:
        return float("nan"), {"estimate": num(est), "low": None, "high": None}
    df = n1 + n2 - 2
    sp = math.sqrt(((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(y, ddof=1)) / df)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.float64(est) / np.float64(sp)
    half = stats.t.ppf(0.975, df) * sp * math.sqrt(1 / n1 + 1 / n2)
    return float(d), {"estimate": num(est), "low": num(est - half), "high": num(est + half)}


# ---- Krippendorff's alpha, ordinal, from the textbook definition ------------------------------
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": values in units, pairable
# values only (units with m_u >= 2); coincidences o_ck = sum_u (#ordered pairs (c,k) of values
# from different raters in u) / (m_u - 1); n_c = sum_k o_ck; ordinal
# delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2; alpha = 1 - D_o / D_e with
# D_o = sum o_ck delta^2 / n and D_e = sum n_c n_k delta^2 / (n (n - 1)).
def kripp_alpha_ordinal(units):
    units = [[Fraction(v) for v in u] for u in units if len(u) >= 2]
    if not units:
        return None
    cats = sorted({v for u in units for v in u})
    o = {(c, k): Fraction(0) for c in cats for k in cats}
    for u in units:
        m = len(u)
        for i in range(m):            # every ordered pair of two different raters' values
            for j in range(m):
                if i != j:
                    o[(u[i], u[j])] += Fraction(1, m - 1)
    n_c = {c: sum(o[(c, k)] for k in cats) for c in cats}
    n = sum(n_c.values())

    def delta2(c, k):
        lo, hi = min(c, k), max(c, k)
        s = sum(n_c[g] for g in cats if lo <= g <= hi)
        return (s - (n_c[c] + n_c[k]) / 2) ** 2

    d_o = sum(o[(c, k)] * delta2(c, k) for c in cats for k in cats) / n
    d_e = sum(n_c[c] * n_c[k] * delta2(c, k) for c in cats for k in cats) / (n * (n - 1))
    if d_e == 0:
        return None
    return 1 - d_o / d_e


def selftest():
    # Hand-checked: two raters, units (1,1), (1,2), (2,2).
    # o = [[2,1],[1,2]], n_1 = n_2 = 3, n = 6, delta^2_12 = (6 - 3)^2 = 9,
    # D_o = 2*9/6 = 3, D_e = 2*3*3*9/30 = 5.4, alpha = 1 - 3/5.4 = 4/9.
    a = kripp_alpha_ordinal([[1, 1], [1, 2], [2, 2]])
    assert a == Fraction(4, 9), a
    # Krippendorff (2011), section "C. Nominal data, any number of observers, missing values",
    # 4 observers x 12 units; the paper reports ordinal alpha = 0.815.
    data = [[1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2],
            [1, 2, 3, 4], [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5],
            [None, None, 1, 1], [None, 3, None, None]]
    units = [[v for v in u if v is not None] for u in data]
    a = kripp_alpha_ordinal(units)
    assert abs(float(a) - 0.815) < 5e-4, float(a)
    assert kripp_alpha_ordinal([[3, 3], [3, 3, 3]]) is None
    assert kripp_alpha_ordinal([[1], [2]]) is None
    return {"ok": True, "hand": float(Fraction(4, 9)), "krippendorff2011": float(a)}


# ---- a whole study, the way a pandas user would compute it -------------------------------------
def block(df):
    rated = df[~df["skipped"]]
    x = rated[rated["kind"] == "sparse"]["rating"].astype(float).to_numpy()
    y = rated[rated["kind"] == "dense"]["rating"].astype(float).to_numpy()
    out = {"sparse": describe(x), "dense": describe(y)}
    t = ttests(x, y)
    for name, key in (("student", "student_t"), ("welch", "welch_t")):
        r = dict(t[name])
        if not isinstance(r["t"], float):  # the engine's rule: df is shown only with a finite t
            r["df"] = None
        out[key] = r
    out["mann_whitney"] = mwu(x, y)
    d, ci = cohen_and_ci(x, y)
    if len(x) >= 2 and len(y) >= 2 and np.var(x) == 0 and np.var(y) == 0:
        ci["low"] = ci["high"] = None  # the engine's rule: no zero-width interval
    out["cohens_d"] = num(d)
    out["mean_difference"] = {"estimate": ci["estimate"], "ci95_low": ci["low"],
                              "ci95_high": ci["high"]}
    out["histogram"] = {
        k: [int(((rated["kind"] == k) & (rated["rating"] == v)).sum()) for v in range(1, 8)]
        for k in ("sparse", "dense")}
    out["skipped"] = int(df["skipped"].sum())
    return out


def study(paths):
    frames = [pd.read_json(p, lines=True, dtype=False) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    if "skipped" not in df.columns:
        df["skipped"] = df["rating"].isna()
    df["skipped"] = df["skipped"].astype(bool)
    df = df.drop_duplicates(subset=["session", "rater", "trial"], keep="last")
    out = block(df)
    out["raters"] = {name: block(g) for name, g in df.groupby("rater", sort=True)}
    rated = df[~df["skipped"]]
    if rated["rater"].nunique() >= 2:
        last = rated.drop_duplicates(subset=["kind", "feature", "rater"], keep="last")
        units = [list(g["rating"].astype(float)) for _, g in last.groupby(["kind", "feature"])]
        a = kripp_alpha_ordinal(units)
        out["krippendorff_alpha_ordinal"] = None if a is None else float(a)
    else:
        out["krippendorff_alpha_ordinal"] = None
    return out


def main():
    mode = sys.argv[1]
    if mode == "cases":
        with open(sys.argv[2]) as f:
            cases = json.load(f)["cases"]
        results = []
        for c in cases:
            x, y = c["x"], c["y"]
            r = {"x": describe(x), "y": describe(y)}
            r.update(ttests(x, y))
            r["mwu"] = mwu(x, y, c.get("method", "auto"))
            d, ci = cohen_and_ci(x, y)
            r["cohens_d"] = num(d)
            r["mean_difference"] = ci
            results.append(r)
        print(json.dumps({"results": results}))
    elif mode == "alpha":
        with open(sys.argv[2]) as f:
            sets = json.load(f)["sets"]
        out = []
        for units in sets:
            a = kripp_alpha_ordinal(units)
            out.append(None if a is None else float(a))
        print(json.dumps({"alpha": out}))
    elif mode == "study":
        print(json.dumps(study(sys.argv[2:])))
    elif mode == "selftest":
        print(json.dumps(selftest()))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
