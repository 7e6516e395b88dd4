// engine/stats.h — the statistics of a blind rating study (sparse vs dense features).
//
// Every number matches scipy 1.10 / pandas 1.5 (Debian 12) on the same data; tests/test_stats.cpp
// checks that against tests/python/stats_oracle.py. Distributions come from Boost.Math.
// The two-sample functions follow scipy's conventions: a non-finite result (NaN, ±Inf) is
// returned where scipy returns one, and never thrown. studyStatistics() turns those into JSON
// null plus a sentence in "messages".
//
// Thread-safety: pure functions of their arguments; call from any thread.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ratings.h"

namespace engine {

// pandas Series.describe(): sample std (ddof=1, NaN for count < 2), quantiles by linear
// interpolation between order statistics. Everything but count is NaN for an empty sample.
struct Describe {
  int64_t count = 0;
  double mean, std, min, q25, q50, q75, max;
};
Describe describe(const std::vector<double>& x);

// Two-sided two-sample t-tests on x vs y (t > 0 when mean(x) > mean(y)).
// studentT = scipy.stats.ttest_ind(x, y) (equal variances, df = n1 + n2 - 2);
// welchT  = ttest_ind(x, y, equal_var=False) (Welch–Satterthwaite df; scipy's df = 1 when both
// variances are 0). NaN t and p when either sample has fewer than 2 values or the denominator
// is 0/0; t = ±Inf, p = 0 when both variances are 0 and the means differ.
struct TTest {
  double t, p, df;
};
TTest studentT(const std::vector<double>& x, const std::vector<double>& y);
TTest welchT(const std::vector<double>& x, const std::vector<double>& y);

// scipy.stats.mannwhitneyu(x, y, use_continuity=True, alternative='two-sided', method=...).
// u is U1, the statistic of x (sum of x's mid-ranks − n1(n1+1)/2). Auto picks "exact" when
// min(n1, n2) <= 8 and the pooled sample has no ties, "asymptotic" otherwise (scipy 1.10's
// _mwu_choose_method). Exact: the null distribution of U counted without tie correction;
// asymptotic: normal approximation with tie and continuity correction. p is clipped to <= 1.
// NaN u and p when a sample is empty (scipy raises there).
enum class MannWhitneyMethod { Auto, Exact, Asymptotic };
struct MannWhitney {
  double u, p;
  std::string method;  // "exact" or "asymptotic"; empty when a sample is empty
};
MannWhitney mannWhitneyU(const std::vector<double>& x, const std::vector<double>& y,
                         MannWhitneyMethod method = MannWhitneyMethod::Auto);

// Cohen's d = (mean(x) − mean(y)) / s_pooled, s_pooled² = ((n1−1)s1² + (n2−1)s2²)/(n1+n2−2).
// NaN when either sample has fewer than 2 values; ±Inf or NaN when s_pooled is 0.
double cohensD(const std::vector<double>& x, const std::vector<double>& y);

// mean(x) − mean(y) with its two-sided `level` confidence interval from Student's t with the
// pooled variance (the interval that matches studentT): estimate ± t_{(1+level)/2, n1+n2−2} ·
// s_pooled·sqrt(1/n1 + 1/n2). Bounds are NaN when either sample has fewer than 2 values;
// the estimate is NaN only when a sample is empty.
struct MeanDifference {
  double estimate, low, high;
};
MeanDifference meanDifference(const std::vector<double>& x, const std::vector<double>& y,
                              double level = 0.95);

// Krippendorff's alpha with the ordinal difference metric.
// units[u] holds the values that different raters gave unit u (one value per rater; raters who
// did not rate the unit are simply absent). Only pairable values count: units with fewer than
// 2 values are dropped. Values are ordered categories (any distinct doubles; ratings 1..7 here).
//   o_ck = Σ_u (number of ordered c–k pairs of values in u) / (m_u − 1),  n_c = Σ_k o_ck,
//   δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)²,
//   alpha = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck.
// Example: two raters, units {1,1}, {1,2}, {2,2} → alpha = 4/9.
// NaN when no unit has 2 values or all pairable values are equal (expected disagreement 0).
struct Agreement {
  double alpha;
  int64_t units;   // units with >= 2 values
  int64_t values;  // pairable values n
};
Agreement krippendorffAlphaOrdinal(const std::vector<std::vector<double>>& units);

// The whole study, x = sparse, y = dense (t > 0: sparse rated higher):
// {"sparse": {"count","mean","std","min","25%","50%","75%","max"}, "dense": {...},
//  "student_t": {"t","p","df"}, "welch_t": {"t","p","df"}, "mann_whitney": {"u","p","method"},
//  "cohens_d": d, "mean_difference": {"estimate","ci95_low","ci95_high"},
//  "histogram": {"sparse": [counts of 1..7], "dense": [...]}, "skipped": n,
//  "raters": {name: {the same blocks for that rater's ratings alone}},
//  "krippendorff_alpha_ordinal": alpha, "agreement": {"raters","units","values"},
//  "messages": ["plain sentences: why a value is null, what was dropped"]}
// Skipped trials are counted in "skipped" and excluded from every number. When the same
// (session, rater, trial) appears more than once (a file passed twice, a re-recorded trial),
// the last one counts and a message says so. Agreement uses units (kind, feature), each rater's
// last rating of a unit, and is computed when at least two raters rated something.
// Every undefined value (NaN, ±Inf) is null; "messages" says why.
nlohmann::json studyStatistics(const std::vector<Rating>& ratings);

// studyStatistics()'s JSON as a plain-text report for a terminal: the summary table as pandas
// prints describe() for both kinds, the histogram, the tests, d, the CI, agreement, the per-rater
// lines and the messages. Undefined values print as "-". Ends with a newline.
std::string formatStudyStatistics(const nlohmann::json& stats);

}  // namespace engine
