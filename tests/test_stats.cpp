// tests/test_stats.cpp — ratings files and study statistics, checked against scipy 1.10 and
// pandas 1.5 themselves (tests/python/stats_oracle.py run by Debian's /usr/bin/python3).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/ratings.h"
#include "engine/stats.h"
#include "test_helpers.h"

using nlohmann::json;

namespace {

void writeText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

json runOracle(const std::string& args) {
  std::string out;
  const int rc = testutil::runPython(testutil::pyScript("stats_oracle.py"), args, &out);
  REQUIRE_MESSAGE(rc == 0, "stats_oracle.py " << args << " failed");
  return json::parse(out);
}

// The oracle writes NaN as null and ±Inf as "inf"/"-inf".
double fromOracle(const json& v) {
  if (v.is_null()) return std::nan("");
  if (v.is_string()) return v.get<std::string>() == "inf" ? INFINITY : -INFINITY;
  return v.get<double>();
}

// |got - want| <= tol·max(1, |want|), with NaN and ±Inf required to match exactly.
bool closeTo(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want));
}

// A p-value: absolute tolerance, and relative where it is tiny (to 1e-300; below, both ~0).
bool pCloseTo(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (want < 1e-300) return got >= 0 && got < 1e-290;
  if (std::fabs(got - want) > tol) return false;
  return want >= 1e-3 || std::fabs(got - want) <= tol * want;
}

#define CHECK_CLOSE(got, want, tol, what)                \
  CHECK_MESSAGE(closeTo((got), fromOracle(want), (tol)), \
                what << ": got " << (got) << " want " << (want))
#define CHECK_P(got, want, tol, what)                     \
  CHECK_MESSAGE(pCloseTo((got), fromOracle(want), (tol)), \
                what << ": got " << (got) << " want " << (want))

std::string show(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < 12; ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + (v.size() > 12 ? ",...]" : "]");
}

// Ratings 1..7 from a fixed-seed generator, with a per-sample bias so tests see real effects.
std::vector<double> ratings(std::mt19937_64& rng, size_t n, int lo, int hi) {
  std::vector<double> v(n);
  for (auto& x : v) x = lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1));
  return v;
}

// Distinct continuous values (no ties: the exact Mann–Whitney path).
std::vector<double> continuous(std::mt19937_64& rng, size_t n, double shift) {
  std::vector<double> v(n);
  for (auto& x : v) x = shift + static_cast<double>(rng() >> 11) * 0x1.0p-53 * 10;
  return v;
}

struct Case {
  std::vector<double> x, y;
  std::string method = "auto";
};

std::vector<Case> makeCases() {
  std::vector<Case> cases;
  std::mt19937_64 rng(20240611);
  const std::pair<size_t, size_t> sizes[] = {
      {1, 1}, {1, 2}, {2, 1},   {2, 2},   {1, 3},   {3, 1},     {2, 3},     {3, 3},
      {4, 5}, {7, 7}, {7, 8},   {8, 7},   {8, 8},   {8, 9},     {9, 8},     {9, 9},
      {7, 9}, {9, 7}, {16, 16}, {30, 25}, {50, 50}, {200, 200}, {200, 180}, {3, 200}};
  for (const auto& [n1, n2] : sizes) {
    for (int rep = 0; rep < 6; ++rep) {
      Case c;
      // Vary the ranges: both uniform, sparse higher, narrow ranges (many ties), disjoint.
      const int lo1[] = {1, 3, 4, 1, 6, 2}, hi1[] = {7, 7, 5, 7, 7, 2};
      const int lo2[] = {1, 1, 4, 2, 1, 2}, hi2[] = {7, 5, 5, 3, 2, 2};
      c.x = ratings(rng, n1, lo1[rep], hi1[rep]);
      c.y = ratings(rng, n2, lo2[rep], hi2[rep]);
      cases.push_back(c);
    }
    // No ties: exact when min(n1, n2) <= 8, also forced both ways.
    for (int rep = 0; rep < 3; ++rep) {
      Case c;
      c.x = continuous(rng, n1, rep * 2.0);
      c.y = continuous(rng, n2, 0.0);
      cases.push_back(c);
      if (std::min(n1, n2) <= 30) {
        c.method = "exact";
        cases.push_back(c);
      }
      c.method = "asymptotic";
      cases.push_back(c);
    }
  }
  // Degenerate and extreme sets.
  cases.push_back({{5, 5, 5}, {5, 5}});  // no variation at all
  cases.push_back({{7, 7, 7}, {1, 1}});  // zero variances, means differ
  cases.push_back({{7, 7, 7}, {1, 2}});  // one zero variance
  cases.push_back({{4}, {4}});           // single tied pair
  cases.push_back({std::vector<double>(200, 7), std::vector<double>(200, 1)});
  {
    std::vector<double> y(199, 1);
    y.push_back(2);
    cases.push_back({std::vector<double>(200, 7), y});  // p underflows to 0
  }
  {
    std::vector<double> x(40, 6), y(40, 2);
    x[0] = 7, y[0] = 1, x[1] = 5, y[1] = 3;
    cases.push_back({x, y});  // tiny but representable p
  }
  cases.push_back({{1, 2, 3, 4, 5, 6, 7, 8, 9}, {10.5, 11, 12, 13, 14, 15, 16, 17, 18}});
  cases.push_back({{1, 2, 3}, {4, 5, 6}, "exact"});
  cases.push_back({{1, 2, 2, 3}, {2, 3, 4}, "exact"});  // exact with ties: U truncated like scipy
  cases.push_back({{}, {1, 2, 3}});
  return cases;
}

void checkDescribe(const engine::Describe& d, const json& want, const std::string& what) {
  CHECK_MESSAGE(d.count == want["count"].get<int64_t>(), what << " count");
  CHECK_CLOSE(d.mean, want["mean"], 1e-9, what << " mean");
  CHECK_CLOSE(d.std, want["std"], 1e-9, what << " std");
  CHECK_CLOSE(d.min, want["min"], 1e-12, what << " min");
  CHECK_CLOSE(d.q25, want["25%"], 1e-9, what << " 25%");
  CHECK_CLOSE(d.q50, want["50%"], 1e-9, what << " 50%");
  CHECK_CLOSE(d.q75, want["75%"], 1e-9, what << " 75%");
  CHECK_CLOSE(d.max, want["max"], 1e-12, what << " max");
}

engine::MannWhitneyMethod methodOf(const std::string& m) {
  if (m == "exact") return engine::MannWhitneyMethod::Exact;
  if (m == "asymptotic") return engine::MannWhitneyMethod::Asymptotic;
  return engine::MannWhitneyMethod::Auto;
}

engine::Rating rating(const std::string& rater, int trial, const std::string& kind, int64_t feature,
                      std::optional<int> value, const std::string& session = "s1") {
  engine::Rating r;
  r.session = session;
  r.rater = rater;
  r.trial = trial;
  r.kind = kind;
  r.feature = feature;
  r.rating = value;
  return r;
}

// Every number anywhere in `j` is finite (nlohmann would dump NaN/Inf as null anyway, so check
// the values themselves).
bool allFinite(const json& j) {
  if (j.is_number_float()) return std::isfinite(j.get<double>());
  if (j.is_structured())
    for (const auto& v : j)
      if (!allFinite(v)) return false;
  return true;
}

}  // namespace

TEST_SUITE("stats") {
  TEST_CASE("describe, t-tests, Mann-Whitney U, d and CI equal scipy/pandas on random sets") {
    testutil::TempDir dir("stats-cases");
    const std::vector<Case> cases = makeCases();
    json in;
    in["cases"] = json::array();
    for (const auto& c : cases)
      in["cases"].push_back({{"x", c.x}, {"y", c.y}, {"method", c.method}});
    writeText(dir.str("cases.json"), in.dump());
    const json want = runOracle("cases " + dir.str("cases.json"));
    REQUIRE(want["results"].size() == cases.size());

    int exactSeen = 0, asymptoticSeen = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const json& w = want["results"][i];
      const std::string what = "case " + std::to_string(i) + " x=" + show(c.x) + " y=" + show(c.y);
      checkDescribe(engine::describe(c.x), w["x"], what + " describe x");
      checkDescribe(engine::describe(c.y), w["y"], what + " describe y");

      const engine::TTest st = engine::studentT(c.x, c.y);
      CHECK_CLOSE(st.t, w["student"]["t"], 1e-9, what << " student t");
      CHECK_P(st.p, w["student"]["p"], 1e-9, what << " student p");
      CHECK_CLOSE(st.df, w["student"]["df"], 1e-12, what << " student df");
      const engine::TTest wt = engine::welchT(c.x, c.y);
      CHECK_CLOSE(wt.t, w["welch"]["t"], 1e-9, what << " welch t");
      CHECK_P(wt.p, w["welch"]["p"], 1e-9, what << " welch p");
      CHECK_CLOSE(wt.df, w["welch"]["df"], 1e-9, what << " welch df");

      const engine::MannWhitney mw = engine::mannWhitneyU(c.x, c.y, methodOf(c.method));
      if (w["mwu"]["u"].is_null()) {
        CHECK(std::isnan(mw.u));
        CHECK(std::isnan(mw.p));
      } else {
        CHECK_MESSAGE(mw.u == w["mwu"]["u"].get<double>(), what << " U " << mw.u);
        CHECK_MESSAGE(mw.method == w["mwu"]["method"].get<std::string>(), what << " method");
        CHECK_P(mw.p, w["mwu"]["p"], 1e-9, what << " MW p (" << mw.method << ")");
        (mw.method == "exact" ? exactSeen : asymptoticSeen) += 1;
      }

      CHECK_CLOSE(engine::cohensD(c.x, c.y), w["cohens_d"], 1e-9, what << " cohen's d");
      const engine::MeanDifference md = engine::meanDifference(c.x, c.y);
      CHECK_CLOSE(md.estimate, w["mean_difference"]["estimate"], 1e-12, what << " mean diff");
      // scipy 1.10's t.ppf (cephes stdtrit) is off by up to ~1e-9 relative (df=5: 2.5705818366
      // vs the true 2.5705818356 that Boost gives), hence 1e-7 on the interval.
      CHECK_CLOSE(md.low, w["mean_difference"]["low"], 1e-7, what << " ci low");
      CHECK_CLOSE(md.high, w["mean_difference"]["high"], 1e-7, what << " ci high");
    }
    // The suite must really exercise both p-value paths.
    CHECK(exactSeen > 40);
    CHECK(asymptoticSeen > 100);
  }

  TEST_CASE("Mann-Whitney U on scipy's documented example (no Python needed)") {
    const std::vector<double> males = {19, 22, 16, 29, 24}, females = {20, 11, 17, 12};
    const engine::MannWhitney e = engine::mannWhitneyU(males, females);
    CHECK(e.method == "exact");
    CHECK(e.u == 17.0);
    CHECK(e.p == doctest::Approx(0.1111111111111111).epsilon(1e-12));
    const engine::MannWhitney a =
        engine::mannWhitneyU(males, females, engine::MannWhitneyMethod::Asymptotic);
    CHECK(a.p == doctest::Approx(0.11134688653314041).epsilon(1e-12));
    // Auto: both samples > 8 -> asymptotic even without ties; one sample <= 8 -> exact.
    std::vector<double> x9, y9, y1 = {10.5};
    for (int i = 1; i <= 9; ++i) x9.push_back(i), y9.push_back(i + 9.5);
    CHECK(engine::mannWhitneyU(x9, y9).method == "asymptotic");
    CHECK(engine::mannWhitneyU(x9, y1).method == "exact");
    CHECK(engine::mannWhitneyU(x9, y1).p == doctest::Approx(0.2));
    // All tied: asymptotic, p clipped to 1.
    const engine::MannWhitney t = engine::mannWhitneyU({3, 3}, {3, 3, 3});
    CHECK(t.method == "asymptotic");
    CHECK(t.u == 3.0);
    CHECK(t.p == 1.0);
  }

  TEST_CASE("t-tests on scipy's documented example (no Python needed)") {
    const std::vector<double> females = {20, 11, 17, 12}, males = {19, 22, 16, 29, 24};
    const engine::TTest t = engine::studentT(females, males);
    CHECK(t.t == doctest::Approx(-2.239334696520584).epsilon(1e-12));
    // The documented one-sided p is 0.030068441095757924; two-sided is twice it.
    CHECK(t.p == doctest::Approx(2 * 0.030068441095757924).epsilon(1e-10));
    CHECK(t.df == 7);
  }

  TEST_CASE("Krippendorff's alpha (ordinal): hand-checked, published and textbook oracle") {
    // Hand-checked (see stats.h): 4/9.
    CHECK(engine::krippendorffAlphaOrdinal({{1, 1}, {1, 2}, {2, 2}}).alpha ==
          doctest::Approx(4.0 / 9).epsilon(1e-14));
    // Krippendorff (2011) 4 observers x 12 units with missing values: ordinal alpha = 0.815.
    const std::vector<std::vector<double>> k2011 = {
        {1, 1, 1},    {2, 2, 3, 2}, {3, 3, 3, 3}, {3, 3, 3, 3}, {2, 2, 2, 2}, {1, 2, 3, 4},
        {4, 4, 4, 4}, {1, 1, 2, 1}, {2, 2, 2, 2}, {5, 5, 5},    {1, 1},       {3}};
    const engine::Agreement a = engine::krippendorffAlphaOrdinal(k2011);
    CHECK(a.alpha == doctest::Approx(0.815).epsilon(6e-4));
    CHECK(a.units == 11);
    CHECK(a.values == 40);
    // Undefined cases.
    CHECK(std::isnan(engine::krippendorffAlphaOrdinal({{3, 3}, {3, 3, 3}}).alpha));
    CHECK(std::isnan(engine::krippendorffAlphaOrdinal({{1}, {2}}).alpha));
    CHECK(std::isnan(engine::krippendorffAlphaOrdinal({}).alpha));

    // Random sets against the oracle's exact-fraction textbook implementation.
    testutil::TempDir dir("stats-alpha");
    std::mt19937_64 rng(77);
    std::vector<std::vector<std::vector<double>>> sets = {k2011, {{1, 1}, {1, 2}, {2, 2}}};
    for (int s = 0; s < 25; ++s) {
      std::vector<std::vector<double>> units(2 + rng() % 30);
      const int raters = 2 + static_cast<int>(rng() % 4);
      for (auto& u : units) {
        const int truth = 1 + static_cast<int>(rng() % 7);
        for (int r = 0; r < raters; ++r) {
          if (rng() % 5 == 0) continue;  // missing
          const int noise = static_cast<int>(rng() % (s % 3 == 0 ? 7 : 3)) - (s % 3 == 0 ? 3 : 1);
          u.push_back(std::clamp(truth + noise, 1, 7));
        }
      }
      sets.push_back(units);
    }
    writeText(dir.str("alpha.json"), json{{"sets", sets}}.dump());
    const json want = runOracle("alpha " + dir.str("alpha.json"));
    REQUIRE(want["alpha"].size() == sets.size());
    CHECK(runOracle("selftest")["ok"] == true);
    for (size_t i = 0; i < sets.size(); ++i)
      CHECK_CLOSE(engine::krippendorffAlphaOrdinal(sets[i]).alpha, want["alpha"][i], 1e-12,
                  "alpha set " << i);
  }

  TEST_CASE("studyStatistics equals pandas/scipy on a multi-rater study with skips") {
    testutil::TempDir dir("stats-study");
    std::mt19937_64 rng(4242);
    std::vector<engine::Rating> rs;
    const char* raters[] = {"ann", "bo", "cy"};
    for (int ri = 0; ri < 3; ++ri) {
      int trial = 0;
      for (int64_t f = 0; f < 12 + ri * 4; ++f) {
        for (const char* kind : {"sparse", "dense"}) {
          std::optional<int> v;
          if (rng() % 9 != 0) {
            const bool sparse = std::string(kind) == "sparse";
            v = std::clamp(static_cast<int>(rng() % 5) + (sparse ? 3 : 1) - ri % 2, 1, 7);
          }
          auto r = rating(raters[ri], trial++, kind, f, v, "sess-" + std::to_string(ri));
          r.extra = {{"seed", 7}, {"elapsed_ms", 1234 + trial}};
          rs.push_back(r);
        }
      }
    }
    // A repeated record (same session, rater, trial): the last one counts.
    auto again = rs[3];
    again.rating = 7;
    rs.push_back(again);

    {
      engine::RatingsWriter w(dir.str("ratings/study.jsonl"));
      for (const auto& r : rs) w.append(r);
    }
    const auto back = engine::readRatingsFile(dir.str("ratings/study.jsonl"));
    REQUIRE(back.size() == rs.size());
    const json got = engine::studyStatistics(back);
    const json want = runOracle("study " + dir.str("ratings/study.jsonl"));

    auto compareBlock = [](const json& g, const json& w, const std::string& who) {
      for (const char* kind : {"sparse", "dense"}) {
        for (auto it = w[kind].begin(); it != w[kind].end(); ++it) {
          const json& gv = g[kind][it.key()];
          if (it.value().is_null()) {
            CHECK_MESSAGE(gv.is_null(), who << " " << kind << " " << it.key());
          } else {
            REQUIRE_MESSAGE(gv.is_number(), who << " " << kind << " " << it.key());
            CHECK_CLOSE(gv.get<double>(), it.value(), 1e-9, who << " " << kind << " " << it.key());
          }
        }
        CHECK_MESSAGE(g["histogram"][kind] == w["histogram"][kind], who << " histogram " << kind);
      }
      CHECK_MESSAGE(g["skipped"] == w["skipped"], who << " skipped");
      for (const char* test : {"student_t", "welch_t"}) {
        for (const char* k : {"t", "p", "df"}) {
          const json& wv = w[test][k];
          const json& gv = g[test][k];
          if (!wv.is_number()) {
            CHECK_MESSAGE(gv.is_null(), who << " " << test << " " << k);
            continue;
          }
          REQUIRE_MESSAGE(gv.is_number(), who << " " << test << " " << k);
          if (std::string(k) == "p")
            CHECK_P(gv.get<double>(), wv, 1e-9, who << " " << test << " p");
          else
            CHECK_CLOSE(gv.get<double>(), wv, 1e-9, who << " " << test << " " << k);
        }
      }
      CHECK_MESSAGE(g["mann_whitney"]["u"] == w["mann_whitney"]["u"], who << " U");
      CHECK_MESSAGE(g["mann_whitney"]["method"] == w["mann_whitney"]["method"], who << " method");
      CHECK_P(g["mann_whitney"]["p"].get<double>(), w["mann_whitney"]["p"], 1e-9, who << " MW p");
      CHECK_CLOSE(g["cohens_d"].get<double>(), w["cohens_d"], 1e-9, who << " d");
      for (const char* k : {"estimate", "ci95_low", "ci95_high"})
        CHECK_CLOSE(g["mean_difference"][k].get<double>(), w["mean_difference"][k], 1e-7,
                    who << " " << k);
    };
    compareBlock(got, want, "pooled");
    REQUIRE(got["raters"].size() == 3);
    for (const char* r : raters) compareBlock(got["raters"][r], want["raters"][r], r);
    REQUIRE(got["krippendorff_alpha_ordinal"].is_number());
    CHECK_CLOSE(got["krippendorff_alpha_ordinal"].get<double>(), want["krippendorff_alpha_ordinal"],
                1e-12, "alpha");
    CHECK(got["agreement"]["raters"] == 3);
    CHECK(allFinite(got));
    bool repeatNoted = false;
    for (const auto& m : got["messages"])
      repeatNoted = repeatNoted || m.get<std::string>().find("repeat") != std::string::npos;
    CHECK(repeatNoted);
    const std::string text = engine::formatStudyStatistics(got);
    CHECK(text.find("Student's t") != std::string::npos);
    CHECK(text.find("Rater bo") != std::string::npos);
    CHECK(text.find("nan") == std::string::npos);
  }

  TEST_CASE("studyStatistics: one kind only, tiny samples and no variation give null + message") {
    auto hasMessage = [](const json& j, const std::string& part) {
      for (const auto& m : j["messages"])
        if (m.get<std::string>().find(part) != std::string::npos) return true;
      return false;
    };
    SUBCASE("no ratings at all") {
      const json j = engine::studyStatistics({});
      CHECK(j["sparse"]["count"] == 0);
      CHECK(j["sparse"]["mean"].is_null());
      CHECK(j["student_t"]["t"].is_null());
      CHECK(j["krippendorff_alpha_ordinal"].is_null());
      CHECK(hasMessage(j, "no ratings yet"));
      CHECK(allFinite(j));
    }
    SUBCASE("one kind only") {
      std::vector<engine::Rating> rs = {rating("a", 0, "sparse", 1, 5),
                                        rating("a", 1, "sparse", 2, 6),
                                        rating("a", 2, "dense", 1, std::nullopt)};
      const json j = engine::studyStatistics(rs);
      CHECK(j["sparse"]["count"] == 2);
      CHECK(j["sparse"]["mean"] == 5.5);
      CHECK(j["dense"]["count"] == 0);
      CHECK(j["dense"]["std"].is_null());
      CHECK(j["student_t"]["t"].is_null());
      CHECK(j["student_t"]["p"].is_null());
      CHECK(j["welch_t"]["p"].is_null());
      CHECK(j["mann_whitney"]["u"].is_null());
      CHECK(j["cohens_d"].is_null());
      CHECK(j["mean_difference"]["estimate"].is_null());
      CHECK(j["skipped"] == 1);
      CHECK(hasMessage(j, "no dense ratings yet: the tests"));
      CHECK(allFinite(j));
      const std::string text = engine::formatStudyStatistics(j);
      CHECK(text.find("no dense ratings yet") != std::string::npos);
      CHECK(text.find("nan") == std::string::npos);
      CHECK(text.find("inf") == std::string::npos);
    }
    SUBCASE("one rating of a kind") {
      std::vector<engine::Rating> rs = {rating("a", 0, "sparse", 1, 5),
                                        rating("a", 1, "dense", 1, 3),
                                        rating("a", 2, "dense", 2, 4)};
      const json j = engine::studyStatistics(rs);
      CHECK(j["sparse"]["std"].is_null());
      CHECK(j["dense"]["std"].is_number());
      CHECK(j["student_t"]["t"].is_null());
      CHECK(j["cohens_d"].is_null());
      CHECK(j["mann_whitney"]["u"] == 2.0);  // defined for any sizes
      CHECK(j["mean_difference"]["estimate"] == 1.5);
      CHECK(j["mean_difference"]["ci95_low"].is_null());
      CHECK(hasMessage(j, "only 1 sparse rating"));
      CHECK(allFinite(j));
    }
    SUBCASE("no variation within either kind") {
      std::vector<engine::Rating> rs;
      for (int i = 0; i < 3; ++i) rs.push_back(rating("a", i, "sparse", i, 7));
      for (int i = 0; i < 3; ++i) rs.push_back(rating("a", 3 + i, "dense", i, 1));
      const json j = engine::studyStatistics(rs);
      CHECK(j["student_t"]["t"].is_null());  // scipy: +inf
      CHECK(j["student_t"]["p"] == 0.0);     // scipy: 0.0
      CHECK(j["cohens_d"].is_null());
      CHECK(j["mean_difference"]["ci95_low"].is_null());
      CHECK(hasMessage(j, "do not vary"));
      CHECK(allFinite(j));
    }
    SUBCASE("agreement needs two raters who rated the same feature") {
      std::vector<engine::Rating> rs = {rating("a", 0, "sparse", 1, 5),
                                        rating("a", 1, "dense", 1, 3)};
      CHECK(hasMessage(engine::studyStatistics(rs), "one rater"));
      rs.push_back(rating("b", 0, "sparse", 2, 5, "s2"));
      const json j = engine::studyStatistics(rs);
      CHECK(j["krippendorff_alpha_ordinal"].is_null());
      CHECK(hasMessage(j, "no feature has been rated by two raters"));
      rs.push_back(rating("b", 1, "sparse", 1, 4, "s2"));
      rs.push_back(rating("b", 2, "dense", 1, 3, "s2"));
      CHECK(engine::studyStatistics(rs)["krippendorff_alpha_ordinal"].is_number());
    }
  }
}

TEST_SUITE("ratings") {
  const std::string kGood =
      R"({"session":"s1","rater":"ann","trial":0,"kind":"sparse","feature":17,"rating":5,"skipped":false,"seed":3,"time":"2024-06-11T10:00:00Z"})"
      "\n"
      "\n"
      R"({"session":"s1","rater":"ann","trial":1,"kind":"dense","feature":17,"rating":null,"skipped":true})"
      "\n"
      "   \n"
      R"({"session":"s1","rater":"ann","trial":2,"kind":"dense","feature":4,"rating":7})"
      "\n";

  TEST_CASE("a good file with blank lines and a skipped trial") {
    testutil::TempDir dir("ratings-good");
    writeText(dir.str("r.jsonl"), kGood);
    std::vector<std::string> warnings;
    const auto rs = engine::readRatingsFile(dir.str("r.jsonl"), &warnings);
    REQUIRE(rs.size() == 3);
    CHECK(warnings.empty());
    CHECK(rs[0].session == "s1");
    CHECK(rs[0].rater == "ann");
    CHECK(rs[0].trial == 0);
    CHECK(rs[0].kind == "sparse");
    CHECK(rs[0].feature == 17);
    CHECK(rs[0].rating == 5);
    CHECK(rs[0].extra["seed"] == 3);
    CHECK(rs[0].extra.contains("time"));
    CHECK_FALSE(rs[0].extra.contains("kind"));
    CHECK(rs[1].skipped());
    CHECK_FALSE(rs[1].rating.has_value());
    CHECK(rs[2].rating == 7);  // "skipped" is optional
    // Round trip through toJson.
    const json j = engine::toJson(rs[0]);
    CHECK(j["seed"] == 3);
    CHECK(j["skipped"] == false);
    CHECK(engine::ratingFromJson(j).rating == 5);
    CHECK(engine::toJson(rs[1])["rating"].is_null());
    CHECK(engine::toJson(rs[1])["skipped"] == true);
    // Two files read in order.
    writeText(dir.str("r2.jsonl"), kGood);
    CHECK(engine::readRatingsFiles({dir.str("r.jsonl"), dir.str("r2.jsonl")}).size() == 6);
  }

  TEST_CASE("malformed lines are reported as path:line: what") {
    testutil::TempDir dir("ratings-bad");
    const std::string path = dir.str("bad.jsonl");
    const std::string first =
        R"({"session":"s","rater":"r","trial":0,"kind":"dense","feature":1,"rating":2})";
    struct Bad {
      std::string line, expect;
    };
    const Bad bads[] = {
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":8})",
         "rating"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":0})",
         "rating"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":4.5})",
         "rating"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"spars","feature":1,"rating":4})",
         "\"sparse\" or \"dense\""},
        {R"({"session":"s","rater":"r","trial":1,"feature":1,"rating":4})",
         "missing field \"kind\""},
        {R"({"session":"s","rater":"r","trial":"1","kind":"dense","feature":1,"rating":4})",
         "\"trial\" must be an integer"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":-3,"rating":4})",
         "feature"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":"4"})",
         "rating"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":null,"skipped":false})",
         "skipped"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":3,"skipped":true})",
         "skipped"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1})",
         "missing field \"rating\""},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":3)",
         "not valid JSON"},
        {R"([1,2,3])", "JSON object"},
        {R"({"session":"s","rater":"r","trial":1,"kind":"dense","feature":1,"rating":3,"x":1e999})",
         "out of range"},  // nlohmann's out_of_range, found by tests/fuzz/fuzz_ratings
    };
    for (const auto& b : bads) {
      // Line 3 (after a blank line), followed by a good line so it is not the last line.
      writeText(path, first + "\n\n" + b.line + "\n" + first + "\n");
      std::string msg;
      try {
        engine::readRatingsFile(path);
      } catch (const engine::Error& e) {
        msg = e.what();
      }
      CHECK_MESSAGE(msg.find(path + ":3: ") == 0, b.line << " -> " << msg);
      CHECK_MESSAGE(msg.find(b.expect) != std::string::npos, b.line << " -> " << msg);
      CHECK_MESSAGE(msg.find('\n') == std::string::npos, msg);
    }
    // A missing file is an engine::Error naming it.
    CHECK_THROWS_AS(engine::readRatingsFile(dir.str("missing.jsonl")), engine::Error);
  }

  TEST_CASE("a truncated last line (crash mid-write) is ignored with a warning") {
    testutil::TempDir dir("ratings-trunc");
    const std::string path = dir.str("t.jsonl");
    writeText(path, kGood + R"({"session":"s1","rater":"ann","tri)");
    std::vector<std::string> warnings;
    const auto rs = engine::readRatingsFile(path, &warnings);
    CHECK(rs.size() == 3);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find(path + ":6:") == 0);
    // Without a warnings sink it is still not an error.
    CHECK(engine::readRatingsFile(path).size() == 3);
    // The same fragment followed by a newline is a malformed middle line: an error.
    writeText(path, kGood + R"({"session":"s1","rater":"ann","tri)" + "\n" + kGood);
    CHECK_THROWS_AS(engine::readRatingsFile(path), engine::Error);
    // A complete last line without a newline counts.
    writeText(
        path,
        kGood +
            R"({"session":"s1","rater":"ann","trial":9,"kind":"sparse","feature":2,"rating":1})");
    CHECK(engine::readRatingsFile(path).size() == 4);
  }

  TEST_CASE("RatingsWriter appends whole lines and repairs a crashed tail before appending") {
    testutil::TempDir dir("ratings-writer");
    const std::string path = dir.str("ratings/s.jsonl");
    {
      engine::RatingsWriter w(path);
      CHECK(w.repairNote().empty());
      auto r = rating("ann", 0, "sparse", 3, 6);
      r.extra = {{"sae", "sae.pt"}, {"elapsed_ms", 812}};
      w.append(r);
      w.append(rating("ann", 1, "dense", 3, std::nullopt));
      CHECK_THROWS_AS(w.append(rating("ann", 2, "dense", 3, 9)), engine::Error);
      CHECK_THROWS_AS(w.append(rating("ann", 2, "both", 3, 2)), engine::Error);
      // Written and flushed before append() returned: visible to a reader now.
      CHECK(engine::readRatingsFile(path).size() == 2);
    }
    const std::string before = readText(path);
    CHECK(before.back() == '\n');
    // Simulate a crash in the middle of the third line.
    writeText(path, before + R"({"session":"s1","rater":"ann","trial":2,"ki)");
    {
      engine::RatingsWriter w(path);
      CHECK(w.repairNote().find("incomplete") != std::string::npos);
      CHECK(readText(path) == before);
      w.append(rating("ann", 2, "dense", 4, 3));
    }
    std::vector<std::string> warnings;
    const auto rs = engine::readRatingsFile(path, &warnings);
    CHECK(warnings.empty());
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].extra["sae"] == "sae.pt");
    CHECK(rs[0].extra["elapsed_ms"] == 812);
    CHECK(rs[1].skipped());
    CHECK(rs[2].rating == 3);
    // A complete last line without its newline gets the newline, not removed.
    writeText(path, readText(path) + engine::toJson(rating("ann", 3, "sparse", 4, 2)).dump());
    {
      engine::RatingsWriter w(path);
      CHECK(w.repairNote().find("newline") != std::string::npos);
      w.append(rating("ann", 4, "sparse", 5, 1));
    }
    CHECK(engine::readRatingsFile(path).size() == 5);
  }
}
