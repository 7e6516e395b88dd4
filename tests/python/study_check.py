"""Checks a study's exports against pandas/scipy (tests/test_study.cpp runs it).

usage: study_check.py RATINGS.jsonl TRIALS.csv STATS.json

The CSV must hold the JSONL's lines one to one; the statistics JSON must equal pandas'
describe() and scipy's tests on the last answer of each (session, rater, trial), skipped
trials left out. Prints "ok" and exits 0, or prints what differs and exits 1.
"""
import json
import math
import sys

import pandas as pd
from scipy import stats

jsonl, csv_path, stats_path = sys.argv[1:4]
rows = [json.loads(line) for line in open(jsonl) if line.strip()]
csv = pd.read_csv(csv_path, dtype={"rater": str, "study": str, "time": str})
got = json.load(open(stats_path))
errors = []


def close(a, b, tol, what):
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        if not (a is None and (b is None or (isinstance(b, float) and not math.isfinite(b)))):
            errors.append(f"{what}: {a} vs {b}")
        return
    if abs(a - b) > tol * max(1.0, abs(b)):
        errors.append(f"{what}: {a} vs {b}")


# --- CSV ---
if len(csv) != len(rows):
    errors.append(f"csv has {len(csv)} rows, jsonl {len(rows)}")
for i, (r, c) in enumerate(zip(rows, csv.to_dict("records"))):
    for k, ck in (("session", "study"), ("rater", "rater"), ("trial", "trial"),
                  ("kind", "kind"), ("feature", "feature")):
        if str(r[k]) != str(c[ck]):
            errors.append(f"row {i}: {ck} {c[ck]!r} vs {r[k]!r}")
    if r["rating"] is None:
        if not (isinstance(c["rating"], float) and math.isnan(c["rating"])) or c["skipped"] is not True:
            errors.append(f"row {i}: a skipped trial must have an empty rating and skipped true")
    elif c["rating"] != r["rating"] or c["skipped"] is not False:
        errors.append(f"row {i}: rating {c['rating']} vs {r['rating']}")
    if "response_ms" in r and c["response_ms"] != r["response_ms"]:
        errors.append(f"row {i}: response_ms {c['response_ms']} vs {r['response_ms']}")

# --- statistics ---
last = {}
for r in rows:
    last[(r["session"], r["rater"], r["trial"])] = r
kept = [r for r in last.values() if r["rating"] is not None]
x = pd.Series([float(r["rating"]) for r in kept if r["kind"] == "sparse"], dtype=float)
y = pd.Series([float(r["rating"]) for r in kept if r["kind"] == "dense"], dtype=float)
for name, s in (("sparse", x), ("dense", y)):
    d = s.describe()
    close(got[name]["count"], float(d["count"]), 0, f"{name} count")
    for k in ("mean", "std", "min", "25%", "50%", "75%", "max"):
        close(got[name][k], float(d[k]) if len(s) else float("nan"), 1e-6, f"{name} {k}")
if len(x) >= 2 and len(y) >= 2 and (x.var() > 0 or y.var() > 0):
    st = stats.ttest_ind(x, y)
    close(got["student_t"]["t"], float(st.statistic), 1e-4, "student t")
    close(got["student_t"]["p"], float(st.pvalue), 1e-4, "student p")
    wt = stats.ttest_ind(x, y, equal_var=False)
    close(got["welch_t"]["t"], float(wt.statistic), 1e-4, "welch t")
    close(got["welch_t"]["p"], float(wt.pvalue), 1e-4, "welch p")
if len(x) and len(y):
    mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    if got["mann_whitney"]["u"] != float(mw.statistic):
        errors.append(f"U {got['mann_whitney']['u']} vs {mw.statistic}")
    close(got["mann_whitney"]["p"], float(mw.pvalue), 1e-4, "mann-whitney p")
for k, h in (("sparse", x), ("dense", y)):
    counts = [int((h == v).sum()) for v in range(1, 8)]
    if got["histogram"][k] != counts:
        errors.append(f"histogram {k}: {got['histogram'][k]} vs {counts}")
skipped = sum(1 for r in last.values() if r["rating"] is None)
if got["skipped"] != skipped:
    errors.append(f"skipped {got['skipped']} vs {skipped}")
if "NaN" in open(stats_path).read():
    errors.append("the statistics JSON contains NaN")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print("ok")
