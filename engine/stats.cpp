#include "stats.h"

#include <algorithm>
#include <array>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>

namespace engine {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean(const std::vector<double>& x) {
  if (x.empty()) return kNaN;
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

// Sample variance (ddof = 1); NaN below 2 values, as numpy/pandas give.
double sampleVariance(const std::vector<double>& x) {
  if (x.size() < 2) return kNaN;
  const double m = mean(x);
  double ss = 0;
  for (double v : x) ss += (v - m) * (v - m);
  return ss / static_cast<double>(x.size() - 1);
}

// numpy's linear-method percentile on sorted data, including its lerp (which is exact at t = 1
// and symmetric around t = 0.5).
double quantileSorted(const std::vector<double>& s, double q) {
  const double h = (static_cast<double>(s.size()) - 1) * q;
  const double lo = std::floor(h);
  const size_t i = static_cast<size_t>(lo);
  const size_t j = std::min(i + 1, s.size() - 1);
  const double t = h - lo;
  const double a = s[i], b = s[j];
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

// Two-sided p of Student's t with `df` degrees of freedom, as scipy's 2 * stdtr(df, -|t|).
double tTwoSidedP(double t, double df) {
  if (std::isnan(t) || std::isnan(df) || !(df > 0)) return kNaN;
  if (std::isinf(t)) return 0.0;
  if (std::isinf(df)) {
    const boost::math::normal_distribution<double> n;
    return 2 * boost::math::cdf(boost::math::complement(n, std::fabs(t)));
  }
  const boost::math::students_t_distribution<double> dist(df);
  return 2 * boost::math::cdf(boost::math::complement(dist, std::fabs(t)));
}

// Average ranks (1-based), ties get their mid-rank: scipy.stats.rankdata(method='average').
// Also returns Σ(t³ − t) over tie groups, and whether any tie exists.
std::vector<double> midRanks(const std::vector<double>& v, double* tieTerm, bool* anyTie) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  *tieTerm = 0;
  *anyTie = false;
  for (size_t i = 0; i < order.size();) {
    size_t j = i + 1;
    while (j < order.size() && v[order[j]] == v[order[i]]) ++j;
    const double r = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (size_t k = i; k < j; ++k) rank[order[k]] = r;
    const double t = static_cast<double>(j - i);
    if (j - i > 1) *anyTie = true;
    *tieTerm += t * t * t - t;
    i = j;
  }
  return rank;
}

// P(U <= k) for the Mann–Whitney U of samples of sizes m and n under H0 without ties.
// The counts of U are the coefficients of the Gaussian binomial [m+n choose m]_q
// = Π_{i=1..s} (1 − q^{l+i}) / (1 − q^i), s = min(m, n), l = max(m, n); after each factor
// the polynomial is [l+i choose i]_q, which is rescaled by i/(l+i) so that it holds
// probabilities (no overflow for large samples). Truncated at degree k, which is all we sum.
double mwuExactCdf(int64_t k, int64_t m, int64_t n) {
  if (k < 0) return 0.0;
  if (k >= m * n) return 1.0;
  const int64_t s = std::min(m, n), l = std::max(m, n);
  std::vector<double> p(static_cast<size_t>(k) + 1, 0.0);
  p[0] = 1.0;
  for (int64_t i = 1; i <= s; ++i) {
    const int64_t a = l + i;
    for (int64_t d = k; d >= a; --d) p[static_cast<size_t>(d)] -= p[static_cast<size_t>(d - a)];
    for (int64_t d = i; d <= k; ++d) p[static_cast<size_t>(d)] += p[static_cast<size_t>(d - i)];
    const double scale = static_cast<double>(i) / static_cast<double>(a);
    for (double& c : p) c *= scale;
  }
  double cdf = 0;
  for (double c : p) cdf += c;
  return cdf;
}

nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

}  // namespace

Describe describe(const std::vector<double>& x) {
  Describe d;
  d.count = static_cast<int64_t>(x.size());
  if (x.empty()) {
    d.mean = d.std = d.min = d.q25 = d.q50 = d.q75 = d.max = kNaN;
    return d;
  }
  std::vector<double> s = x;
  std::sort(s.begin(), s.end());
  d.mean = mean(x);
  d.std = std::sqrt(sampleVariance(x));
  d.min = s.front();
  d.max = s.back();
  d.q25 = quantileSorted(s, 0.25);
  d.q50 = quantileSorted(s, 0.50);
  d.q75 = quantileSorted(s, 0.75);
  return d;
}

TTest studentT(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.empty() || y.empty()) return {kNaN, kNaN, kNaN};
  const double n1 = static_cast<double>(x.size()), n2 = static_cast<double>(y.size());
  const double df = n1 + n2 - 2.0;
  const double svar = ((n1 - 1) * sampleVariance(x) + (n2 - 1) * sampleVariance(y)) / df;
  const double denom = std::sqrt(svar * (1.0 / n1 + 1.0 / n2));
  const double t = (mean(x) - mean(y)) / denom;
  return {t, tTwoSidedP(t, df), df};
}

TTest welchT(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.empty() || y.empty()) return {kNaN, kNaN, kNaN};
  const double n1 = static_cast<double>(x.size()), n2 = static_cast<double>(y.size());
  const double vn1 = sampleVariance(x) / n1, vn2 = sampleVariance(y) / n2;
  double df = (vn1 + vn2) * (vn1 + vn2) / (vn1 * vn1 / (n1 - 1) + vn2 * vn2 / (n2 - 1));
  if (std::isnan(df)) df = 1;  // scipy: both variances 0 (or undefined); df then does not matter
  const double t = (mean(x) - mean(y)) / std::sqrt(vn1 + vn2);
  return {t, tTwoSidedP(t, df), df};
}

MannWhitney mannWhitneyU(const std::vector<double>& x, const std::vector<double>& y,
                         MannWhitneyMethod method) {
  if (x.empty() || y.empty()) return {kNaN, kNaN, ""};
  const int64_t n1 = static_cast<int64_t>(x.size()), n2 = static_cast<int64_t>(y.size());
  std::vector<double> xy = x;
  xy.insert(xy.end(), y.begin(), y.end());
  double tieTerm = 0;
  bool anyTie = false;
  const std::vector<double> rank = midRanks(xy, &tieTerm, &anyTie);

  if (method == MannWhitneyMethod::Auto)
    method =
        (n1 > 8 && n2 > 8) || anyTie ? MannWhitneyMethod::Asymptotic : MannWhitneyMethod::Exact;

  double r1 = 0;
  for (int64_t i = 0; i < n1; ++i) r1 += rank[static_cast<size_t>(i)];
  const double u1 = r1 - static_cast<double>(n1) * static_cast<double>(n1 + 1) / 2;
  const double u2 = static_cast<double>(n1) * static_cast<double>(n2) - u1;
  const double u = std::max(u1, u2);

  MannWhitney r;
  r.u = u1;
  double p;
  if (method == MannWhitneyMethod::Exact) {
    r.method = "exact";
    // scipy: sf(int(U)) = cdf(m·n − int(U)), the mass at and beyond U.
    p = mwuExactCdf(n1 * n2 - static_cast<int64_t>(u), n1, n2);
  } else {
    r.method = "asymptotic";
    const double n = static_cast<double>(n1 + n2);
    const double mu = static_cast<double>(n1) * static_cast<double>(n2) / 2;
    const double s = std::sqrt(static_cast<double>(n1) * static_cast<double>(n2) / 12 *
                               ((n + 1) - tieTerm / (n * (n - 1))));
    // s = 0 (all values tied): z = −0.5/0 = −Inf and p = 1, as scipy.
    const double z = (u - mu - 0.5) / s;
    if (std::isnan(z)) {
      p = kNaN;
    } else if (std::isinf(z)) {
      p = z > 0 ? 0.0 : 1.0;
    } else {
      const boost::math::normal_distribution<double> nd;
      p = boost::math::cdf(boost::math::complement(nd, z));
    }
  }
  p *= 2;
  r.p = std::isnan(p) ? p : std::clamp(p, 0.0, 1.0);
  return r;
}

double cohensD(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() < 2 || y.size() < 2) return kNaN;
  const double n1 = static_cast<double>(x.size()), n2 = static_cast<double>(y.size());
  const double sp =
      std::sqrt(((n1 - 1) * sampleVariance(x) + (n2 - 1) * sampleVariance(y)) / (n1 + n2 - 2));
  return (mean(x) - mean(y)) / sp;
}

MeanDifference meanDifference(const std::vector<double>& x, const std::vector<double>& y,
                              double level) {
  MeanDifference r{kNaN, kNaN, kNaN};
  if (x.empty() || y.empty()) return r;
  r.estimate = mean(x) - mean(y);
  if (x.size() < 2 || y.size() < 2 || !(level > 0 && level < 1)) return r;
  const double n1 = static_cast<double>(x.size()), n2 = static_cast<double>(y.size());
  const double df = n1 + n2 - 2;
  const double sp = std::sqrt(((n1 - 1) * sampleVariance(x) + (n2 - 1) * sampleVariance(y)) / df);
  const boost::math::students_t_distribution<double> dist(df);
  const double tcrit = boost::math::quantile(dist, (1 + level) / 2);
  const double half = tcrit * sp * std::sqrt(1 / n1 + 1 / n2);
  r.low = r.estimate - half;
  r.high = r.estimate + half;
  return r;
}

Agreement krippendorffAlphaOrdinal(const std::vector<std::vector<double>>& units) {
  Agreement a{kNaN, 0, 0};
  std::set<double> valueSet;
  for (const auto& u : units)
    if (u.size() >= 2) valueSet.insert(u.begin(), u.end());
  const std::vector<double> values(valueSet.begin(), valueSet.end());
  const size_t c = values.size();
  auto index = [&](double v) {
    return static_cast<size_t>(std::lower_bound(values.begin(), values.end(), v) - values.begin());
  };

  // Coincidence matrix: each unit contributes its ordered pairs of values weighted 1/(m_u − 1).
  std::vector<double> o(c * c, 0.0);
  for (const auto& u : units) {
    if (u.size() < 2) continue;
    ++a.units;
    a.values += static_cast<int64_t>(u.size());
    std::map<size_t, double> counts;
    for (double v : u) counts[index(v)] += 1;
    const double w = 1.0 / static_cast<double>(u.size() - 1);
    for (const auto& [ci, nc] : counts)
      for (const auto& [ki, nk] : counts)
        o[ci * c + ki] += w * (ci == ki ? nc * (nc - 1) : nc * nk);
  }
  if (a.units == 0) return a;

  std::vector<double> nmarg(c, 0.0);
  for (size_t i = 0; i < c; ++i)
    for (size_t k = 0; k < c; ++k) nmarg[i] += o[i * c + k];
  const double n = std::accumulate(nmarg.begin(), nmarg.end(), 0.0);

  // Ordinal metric: δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)².
  std::vector<double> cum(c + 1, 0.0);
  for (size_t i = 0; i < c; ++i) cum[i + 1] = cum[i] + nmarg[i];
  double observed = 0, expected = 0;
  for (size_t i = 0; i < c; ++i) {
    for (size_t k = 0; k < c; ++k) {
      const size_t lo = std::min(i, k), hi = std::max(i, k);
      const double d = cum[hi + 1] - cum[lo] - (nmarg[i] + nmarg[k]) / 2;
      observed += o[i * c + k] * d * d;
      expected += nmarg[i] * nmarg[k] * d * d;
    }
  }
  if (!(expected > 0)) return a;
  a.alpha = 1 - (n - 1) * observed / expected;
  return a;
}

namespace {

// ---- studyStatistics ------------------------------------------------------------------------

nlohmann::json describeJson(const Describe& d) {
  return {{"count", d.count},  {"mean", num(d.mean)}, {"std", num(d.std)}, {"min", num(d.min)},
          {"25%", num(d.q25)}, {"50%", num(d.q50)},   {"75%", num(d.q75)}, {"max", num(d.max)}};
}

std::string fmtValue(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string ratingsWord(size_t n) {
  return n == 1 ? "rating" : "ratings";
}

// Statistics of one set of ratings (the pooled study or one rater), with its own messages.
nlohmann::json ratingsBlock(const std::vector<const Rating*>& rs) {
  std::vector<double> x, y;  // x = sparse, y = dense
  std::array<int64_t, 7> hx{}, hy{};
  int64_t skipped = 0;
  for (const Rating* r : rs) {
    if (!r->rating) {
      ++skipped;
      continue;
    }
    const bool sparse = r->kind == "sparse";
    (sparse ? x : y).push_back(*r->rating);
    (sparse ? hx : hy)[static_cast<size_t>(*r->rating - 1)] += 1;
  }
  std::vector<std::string> messages;

  nlohmann::json j;
  j["sparse"] = describeJson(describe(x));
  j["dense"] = describeJson(describe(y));
  j["histogram"] = {{"sparse", hx}, {"dense", hy}};
  j["skipped"] = skipped;

  const TTest st = studentT(x, y), wt = welchT(x, y);
  const MannWhitney mw = mannWhitneyU(x, y);
  const double d = cohensD(x, y);
  MeanDifference md = meanDifference(x, y);
  const double vx = sampleVariance(x), vy = sampleVariance(y);
  const bool noVariation = x.size() >= 2 && y.size() >= 2 && vx == 0 && vy == 0;
  if (noVariation) md.low = md.high = kNaN;  // a zero-width interval would claim certainty

  auto tJson = [](const TTest& t) -> nlohmann::json {
    if (!std::isfinite(t.t)) return {{"t", nullptr}, {"p", num(t.p)}, {"df", nullptr}};
    return {{"t", t.t}, {"p", num(t.p)}, {"df", num(t.df)}};
  };
  j["student_t"] = tJson(st);
  j["welch_t"] = tJson(wt);
  j["mann_whitney"] = {
      {"u", num(mw.u)},
      {"p", num(mw.p)},
      {"method", mw.method.empty() ? nlohmann::json() : nlohmann::json(mw.method)}};
  j["cohens_d"] = num(d);
  j["mean_difference"] = {
      {"estimate", num(md.estimate)}, {"ci95_low", num(md.low)}, {"ci95_high", num(md.high)}};

  const std::string skippedNote =
      skipped > 0
          ? " (" + std::to_string(skipped) +
                (skipped == 1 ? " skipped trial is" : " skipped trials are") + " not counted)"
          : "";
  if (x.empty() && y.empty()) {
    messages.push_back("no ratings yet" + skippedNote + ": nothing to summarise");
  } else if (y.empty()) {
    messages.push_back(
        "no dense ratings yet: the tests, Cohen's d and the confidence interval need both kinds");
  } else if (x.empty()) {
    messages.push_back(
        "no sparse ratings yet: the tests, Cohen's d and the confidence interval need both kinds");
  }
  std::vector<std::string> single;
  if (x.size() == 1) single.push_back("sparse");
  if (y.size() == 1) single.push_back("dense");
  if (!single.empty()) {
    const bool both = !x.empty() && !y.empty();
    std::string who = "only 1 " + single[0] + " rating";
    if (single.size() == 2) who = "only 1 rating of each kind";
    messages.push_back(
        who + ": the standard deviation" +
        (both ? ", the t-tests, Cohen's d and the confidence interval need" : " needs") +
        " at least 2 ratings" + (both ? " of each kind" : ""));
  }
  if (noVariation) {
    const double a = x.front(), b = y.front();
    if (a == b) {
      messages.push_back("every rating is " + fmtValue(a) +
                         ", in both kinds: with no variation at all the t-tests, Cohen's d and "
                         "the confidence interval are undefined");
    } else {
      messages.push_back("ratings do not vary within either kind (every sparse rating is " +
                         fmtValue(a) + ", every dense rating is " + fmtValue(b) +
                         "): t and Cohen's d are infinite and shown as empty, p is 0, and the "
                         "confidence interval is undefined");
    }
  }
  j["messages"] = messages;
  return j;
}

}  // namespace

nlohmann::json studyStatistics(const std::vector<Rating>& ratings) {
  // The last record of each (session, rater, trial) counts.
  std::map<std::tuple<std::string, std::string, int>, size_t> lastOf;
  for (size_t i = 0; i < ratings.size(); ++i)
    lastOf[{ratings[i].session, ratings[i].rater, ratings[i].trial}] = i;
  std::vector<const Rating*> kept;
  for (size_t i = 0; i < ratings.size(); ++i)
    if (lastOf[{ratings[i].session, ratings[i].rater, ratings[i].trial}] == i)
      kept.push_back(&ratings[i]);
  const size_t repeats = ratings.size() - kept.size();

  nlohmann::json j = ratingsBlock(kept);
  std::vector<std::string> messages = j["messages"].get<std::vector<std::string>>();
  if (repeats > 0)
    messages.insert(messages.begin(),
                    std::to_string(repeats) + " " + ratingsWord(repeats) +
                        " repeat an earlier (session, rater, trial); only the last of each is "
                        "counted");

  std::map<std::string, std::vector<const Rating*>> byRater;
  for (const Rating* r : kept) byRater[r->rater].push_back(r);
  nlohmann::json raters = nlohmann::json::object();
  for (const auto& [name, rs] : byRater) raters[name] = ratingsBlock(rs);
  j["raters"] = raters;

  // Agreement: unit = (kind, feature); each rater's last rating of it.
  std::map<std::pair<std::string, int64_t>, std::map<std::string, double>> unitValues;
  std::set<std::string> activeRaters;
  size_t reRated = 0;
  for (const Rating* r : kept) {
    if (!r->rating) continue;
    activeRaters.insert(r->rater);
    auto& byWho = unitValues[{r->kind, r->feature}];
    if (byWho.count(r->rater)) ++reRated;
    byWho[r->rater] = *r->rating;
  }
  std::vector<std::vector<double>> units;
  for (const auto& [key, byWho] : unitValues) {
    std::vector<double> vs;
    for (const auto& [who, v] : byWho) vs.push_back(v);
    units.push_back(std::move(vs));
  }
  const Agreement ag = krippendorffAlphaOrdinal(units);
  j["agreement"] = {{"raters", activeRaters.size()}, {"units", ag.units}, {"values", ag.values}};
  if (activeRaters.size() < 2) {
    j["krippendorff_alpha_ordinal"] = nullptr;
    if (!activeRaters.empty())
      messages.push_back(
          "one rater so far: agreement between raters (Krippendorff's alpha) "
          "needs at least two");
  } else {
    j["krippendorff_alpha_ordinal"] = num(ag.alpha);
    if (ag.units == 0)
      messages.push_back(
          "no feature has been rated by two raters yet: agreement between raters "
          "(Krippendorff's alpha) is undefined");
    else if (!std::isfinite(ag.alpha))
      messages.push_back(
          "every rating of the features rated by several raters is the same: "
          "agreement between raters (Krippendorff's alpha) is undefined");
    if (reRated > 0)
      messages.push_back(std::to_string(reRated) + " " + ratingsWord(reRated) +
                         " re-rate a feature the same rater had already rated: agreement uses "
                         "each rater's last rating of a feature");
  }
  j["messages"] = messages;
  return j;
}

// ---- formatStudyStatistics ------------------------------------------------------------------

namespace {

std::string fmt(const nlohmann::json& v, const char* f) {
  if (!v.is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v.get<double>());
  return buf;
}

std::string pad(const std::string& s, size_t w, bool right) {
  if (s.size() >= w) return s;
  return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

const nlohmann::json& at(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

void formatBlock(std::ostringstream& out, const nlohmann::json& b, const std::string& indent) {
  // Summary table as pandas prints DataFrame({"sparse": ..., "dense": ...}).describe().
  const char* rows[] = {"count", "mean", "std", "min", "25%", "50%", "75%", "max"};
  const char* kinds[] = {"sparse", "dense"};
  std::vector<std::vector<std::string>> cells(2);
  size_t width[2] = {6, 5};
  for (int k = 0; k < 2; ++k) {
    for (const char* r : rows) {
      cells[k].push_back(fmt(at(at(b, kinds[k]), r), "%.6f"));
      width[k] = std::max(width[k], cells[k].back().size());
    }
  }
  out << indent << pad("", 5, false);
  for (int k = 0; k < 2; ++k) out << "  " << pad(kinds[k], width[k], true);
  out << "\n";
  for (size_t r = 0; r < 8; ++r) {
    out << indent << pad(rows[r], 5, false);
    for (int k = 0; k < 2; ++k) out << "  " << pad(cells[k][r], width[k], true);
    out << "\n";
  }

  out << "\n" << indent << "rating     1    2    3    4    5    6    7\n";
  for (const char* k : kinds) {
    out << indent << pad(k, 7, false);
    const auto& h = at(at(b, "histogram"), k);
    for (size_t i = 0; i < 7; ++i)
      out << pad(h.is_array() && i < h.size() ? h[i].dump() : "-", 5, true);
    out << "\n";
  }
  out << indent << "skipped: " << (at(b, "skipped").is_number() ? at(b, "skipped").dump() : "0")
      << "\n\n";

  const auto& st = at(b, "student_t");
  const auto& wt = at(b, "welch_t");
  const auto& mw = at(b, "mann_whitney");
  const auto& md = at(b, "mean_difference");
  const std::string mwLabel =
      "Mann-Whitney U (two-sided" +
      (at(mw, "method").is_string() ? ", " + at(mw, "method").get<std::string>() : "") + ")";
  auto label = [&](const std::string& l) { return indent + pad(l, 40, false); };
  out << label("Student's t (equal variances)") << "t = " << fmt(at(st, "t"), "%.4f")
      << "  df = " << fmt(at(st, "df"), "%.4g") << "  p = " << fmt(at(st, "p"), "%.4g") << "\n";
  out << label("Welch's t") << "t = " << fmt(at(wt, "t"), "%.4f")
      << "  df = " << fmt(at(wt, "df"), "%.4g") << "  p = " << fmt(at(wt, "p"), "%.4g") << "\n";
  out << label(mwLabel) << "U = " << fmt(at(mw, "u"), "%g") << "  p = " << fmt(at(mw, "p"), "%.4g")
      << "\n";
  out << label("Cohen's d") << fmt(at(b, "cohens_d"), "%.4f") << "\n";
  out << label("mean difference (sparse - dense)") << fmt(at(md, "estimate"), "%.4f")
      << "  95% CI [" << fmt(at(md, "ci95_low"), "%.4f") << ", " << fmt(at(md, "ci95_high"), "%.4f")
      << "]\n";
}

}  // namespace

std::string formatStudyStatistics(const nlohmann::json& stats) {
  std::ostringstream out;
  out << "Ratings: sparse vs dense (x = sparse, y = dense; t > 0 means sparse rated higher)\n\n";
  formatBlock(out, stats, "");

  const auto& raters = at(stats, "raters");
  const auto& ag = at(stats, "agreement");
  if (at(ag, "raters").is_number() && at(ag, "raters").get<double>() >= 2) {
    out << "\n"
        << pad("Krippendorff's alpha (ordinal)", 40, false)
        << fmt(at(stats, "krippendorff_alpha_ordinal"), "%.4f") << "  over "
        << at(ag, "units").dump() << " features rated by several raters\n";
  }
  if (raters.is_object() && raters.size() > 1) {
    for (auto it = raters.begin(); it != raters.end(); ++it) {
      out << "\nRater " << it.key() << "\n";
      formatBlock(out, it.value(), "  ");
    }
  }
  const auto& messages = at(stats, "messages");
  if (messages.is_array() && !messages.empty()) {
    out << "\nNotes\n";
    for (const auto& m : messages)
      if (m.is_string()) out << "  - " << m.get<std::string>() << "\n";
  }
  if (raters.is_object() && raters.size() > 1) {
    for (auto it = raters.begin(); it != raters.end(); ++it) {
      const auto& ms = at(it.value(), "messages");
      if (!ms.is_array()) continue;
      for (const auto& m : ms)
        if (m.is_string()) out << "  - " << it.key() << ": " << m.get<std::string>() << "\n";
    }
  }
  return out.str();
}

}  // namespace engine
