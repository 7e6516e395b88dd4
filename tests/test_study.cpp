// tests/test_study.cpp — the blind-study protocol (engine/study.h): planning, the portable RNG,
// blindness of the file name, resume after a crash, explicit id lists, and the exports checked
// against pandas/scipy (tests/python/study_check.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/ratings.h"
#include "engine/stats.h"
#include "engine/study.h"
#include "test_helpers.h"

using engine::StudyChoice;
using engine::StudyConfig;

namespace {

StudyConfig config(const std::string& rater, int n, uint64_t seed) {
  StudyConfig c;
  c.rater = rater;
  c.featuresPerKind = n;
  c.seed = seed;
  return c;
}

std::string errorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the study RNG is SplitMix64, fixed across platforms") {
  engine::StudyRng r(1234567);
  // Reference values of SplitMix64 (Vigna) for seed 1234567.
  CHECK(r.next() == 6457827717110365317ULL);
  CHECK(r.next() == 3203168211198807973ULL);
  engine::StudyRng a(7), b(7);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t n = 1 + static_cast<uint64_t>(i % 13);
    const uint64_t x = a.below(n);
    CHECK(x < n);
    CHECK(x == b.below(n));
  }
  // Roughly uniform: every bucket of 7 within 20% of its expectation over 70,000 draws.
  engine::StudyRng u(99);
  std::array<int, 7> h{};
  for (int i = 0; i < 70000; ++i) ++h[u.below(7)];
  for (int c : h) CHECK(std::abs(c - 10000) < 2000);
}

TEST_CASE("planStudy: one dense and one sparse trial per id, shuffled, reproducible") {
  const std::set<int64_t> seen = {0, 1, 2, 3, 10, 11};
  const auto p = engine::planStudy(config("alice", 16, 42), 64, 64, seen);
  REQUIRE(p.size() == 32);
  REQUIRE(p.features.size() == 16);
  CHECK(std::is_sorted(p.features.begin(), p.features.end()));
  std::map<int64_t, std::set<std::string>> kinds;
  for (int i = 0; i < p.size(); ++i) {
    CHECK(p.trials[i].trial == i);
    kinds[p.trials[i].feature].insert(p.trials[i].kind);
    CHECK(seen.count(p.trials[i].feature) == 0);  // never an id opened in the browser
  }
  CHECK(kinds.size() == 16);
  for (const auto& [id, ks] : kinds) CHECK(ks.size() == 2);
  CHECK(p.excluded == std::vector<int64_t>(seen.begin(), seen.end()));

  // Same inputs, same plan; another seed, another plan.
  const auto again = engine::planStudy(config("alice", 16, 42), 64, 64, seen);
  CHECK(engine::toJson(again) == engine::toJson(p));
  const auto other = engine::planStudy(config("alice", 16, 43), 64, 64, seen);
  CHECK(engine::toJson(other)["trials"] != engine::toJson(p)["trials"]);

  // Shuffled: neither the first half all one kind nor trials in id order.
  int denseFirstHalf = 0;
  for (int i = 0; i < 16; ++i) denseFirstHalf += p.trials[i].kind == "dense";
  CHECK(denseFirstHalf > 0);
  CHECK(denseFirstHalf < 16);
  bool ordered = true;
  for (int i = 1; i < p.size(); ++i)
    ordered = ordered && p.trials[i - 1].feature <= p.trials[i].feature;
  CHECK_FALSE(ordered);

  // Golden plan: the RNG and the procedure are part of the file format.
  const auto g = engine::planStudy(config("x", 3, 1), 10, 10, {});
  std::vector<std::string> got;
  for (const auto& t : g.trials) got.push_back(t.kind + std::to_string(t.feature));
  INFO(engine::toJson(g).dump());
  CHECK(got ==
        std::vector<std::string>{"sparse2", "dense2", "sparse4", "sparse8", "dense4", "dense8"});
  CHECK(engine::toJson(engine::planStudy(config("x", 3, 1), 10, 10, {})) == engine::toJson(g));

  // Ids valid for both kinds only.
  const auto q = engine::planStudy(config("bob", 8, 5), 8, 100, {});
  for (const auto& t : q.trials) CHECK(t.feature < 8);
}

TEST_CASE("planStudy errors name the field") {
  CHECK(errorOf([] { engine::planStudy(config("", 4, 1), 64, 64, {}); }).rfind("rater:", 0) == 0);
  CHECK(errorOf([] {
          engine::planStudy(config("a", 0, 1), 64, 64, {});
        }).rfind("features per kind:", 0) == 0);
  std::set<int64_t> seen;
  for (int i = 0; i < 60; ++i) seen.insert(i);
  const std::string tooMany = errorOf([&] { engine::planStudy(config("a", 5, 1), 64, 64, seen); });
  CHECK(tooMany.rfind("features per kind: only 4 of 64", 0) == 0);
  CHECK(errorOf([] { engine::planStudy(config("a", 4, 1), 64, 0, {}); }).rfind("sae:", 0) == 0);
}

TEST_CASE("explicit id lists: ranges, en dashes, and bad input") {
  CHECK(engine::parseFeatureIds("16-31, 40", 64).size() == 17);
  CHECK(engine::parseFeatureIds("16\xE2\x80\x93"
                                "18",
                                64) == std::vector<int64_t>{16, 17, 18});
  CHECK(engine::parseFeatureIds(" 5 ,3  1-2 ", 64) == std::vector<int64_t>{1, 2, 3, 5});
  CHECK(engine::parseFeatureIds("7 - 9", 64) == std::vector<int64_t>{7, 8, 9});
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "the list is empty"},         {" , ", "the list is empty"},
      {"abc", "'abc' is not an id"},     {"-3", "'-3' is not an id"},
      {"3-", "'3-' is not an id"},       {"1.5", "'1.5' is not an id"},
      {"31-16", "runs backwards"},       {"64", "64 is out of range"},
      {"0-99999999999", "out of range"}, {"3, 1-4", "3 is listed twice"},
  };
  for (const auto& [text, want] : bad) {
    CAPTURE(text);
    const std::string e = errorOf([&] { engine::parseFeatureIds(text, 64); });
    CHECK(e.rfind("feature ids: ", 0) == 0);
    CHECK(e.find(want) != std::string::npos);
  }
  StudyConfig c = config("carol", 99, 3);
  c.choice = StudyChoice::Explicit;
  c.ids = "16-31";
  const auto p = engine::planStudy(c, 64, 64, {16, 17, 50});
  CHECK(p.size() == 32);  // the list decides the count
  CHECK(p.features.front() == 16);
  CHECK(p.features.back() == 31);
  CHECK(p.chosenSeen == 2);  // the UI warns: those two are not blind
  c.ids = "60-70";
  CHECK(errorOf([&] { engine::planStudy(c, 64, 64, {}); }).rfind("feature ids: 70 is out", 0) == 0);
}

TEST_CASE("the study id and file names reveal no kind, feature or order") {
  testutil::TempDir tmp("study-names");
  const auto p = engine::createStudy(tmp.str(), config("Ann Lee/x", 4, 77), 32, 32, {},
                                     "2026-11-27T08:12:33Z");
  CHECK(p.id == "study-20261127-081233-Ann_Lee_x-77");
  CHECK(engine::fileExists(engine::studyPlanPath(tmp.str(), p.id)));
  for (const std::string& word : {"dense", "sparse", "feature"})
    CHECK(p.id.find(word) == std::string::npos);
  for (int64_t f : p.features) CHECK(p.id.find("-" + std::to_string(f) + "-") == std::string::npos);
  // A second study in the same second gets its own id.
  const auto q = engine::createStudy(tmp.str(), config("Ann Lee/x", 4, 77), 32, 32, {},
                                     "2026-11-27T08:12:33Z");
  CHECK(q.id == p.id + "-2");
  CHECK(engine::studyId("", 1, "2026-01-02T03:04:05Z") == "study-20260102-030405-rater-1");
}

TEST_CASE("the plan file reproduces; resume continues at the first unanswered trial") {
  testutil::TempDir tmp("study-resume");
  const std::string ws = tmp.str();
  const std::set<int64_t> seen = {1, 4, 9};
  const auto plan = engine::createStudy(ws, config("dana", 5, 2024), 40, 48, seen);
  bool reproducible = false;
  const auto loaded = engine::loadStudyPlan(engine::studyPlanPath(ws, plan.id), &reproducible);
  CHECK(reproducible);
  CHECK(engine::toJson(loaded) == engine::toJson(plan));
  CHECK(engine::toJson(loaded)["question"] == engine::kStudyQuestion);

  const std::string path = engine::studyRatingsPath(ws, plan.id);
  auto prog = engine::studyProgress(plan, path);
  CHECK(prog.next == 0);
  {
    engine::RatingsWriter w(path);
    w.append(engine::studyRating(plan, 0, 5, 1200.4, ""));
    w.append(engine::studyRating(plan, 1, std::nullopt, 800, ""));
    w.append(engine::studyRating(plan, 2, 7, 500, ""));
  }
  prog = engine::studyProgress(plan, path);
  CHECK(prog.next == 3);
  CHECK(prog.answered == 2);
  CHECK(prog.skipped == 1);
  CHECK(prog.ratings[0].extra["response_ms"] == 1200);
  CHECK(prog.ratings[0].kind == plan.trials[0].kind);

  // A crash mid-write leaves half a line: ignored on read, repaired by the next writer.
  {
    std::ofstream out(path, std::ios::app);
    out << R"({"session": ")" << plan.id << R"(", "rater": "da)";
  }
  prog = engine::studyProgress(plan, path);
  CHECK(prog.next == 3);
  CHECK(prog.warnings.size() == 1);
  {
    engine::RatingsWriter w(path);
    CHECK_FALSE(w.repairNote().empty());
    for (int t = prog.next; t < plan.size(); ++t)
      w.append(engine::studyRating(plan, t, 1 + t % 7, 10, ""));
  }
  prog = engine::studyProgress(plan, path);
  CHECK(prog.done(plan));
  CHECK(prog.ratings.size() == 10);
  CHECK(prog.warnings.empty());

  const auto list = engine::listStudies(ws);
  REQUIRE(list.size() == 1);
  CHECK(list[0].done());
  CHECK(list[0].rater == "dana");
  CHECK(list[0].total == 10);

  // A line that contradicts the plan is an error with the file named.
  engine::Rating wrong = engine::studyRating(plan, 0, 3, 0, "");
  wrong.kind = wrong.kind == "dense" ? "sparse" : "dense";
  engine::RatingsWriter(path).append(wrong);
  const std::string e = errorOf([&] { engine::studyProgress(plan, path); });
  CHECK(e.find(path) == 0);
  CHECK(e.find("does not match the study plan") != std::string::npos);

  // A plan edited by hand no longer reproduces from its seed.
  nlohmann::json j = engine::toJson(plan);
  std::swap(j["trials"][0]["kind"], j["trials"][1]["kind"]);
  std::swap(j["trials"][0]["feature"], j["trials"][1]["feature"]);
  if (j["trials"][0] == engine::toJson(plan)["trials"][0]) j["config"]["seed"] = 1;
  engine::writeFileAtomic(tmp.str("edited.plan.json"), j.dump());
  engine::loadStudyPlan(tmp.str("edited.plan.json"), &reproducible);
  CHECK_FALSE(reproducible);
  engine::writeFileAtomic(tmp.str("bad.plan.json"), "{\"format\": 1}");
  CHECK(errorOf([&] {
          engine::loadStudyPlan(tmp.str("bad.plan.json"));
        }).rfind(tmp.str("bad.plan.json") + ": missing field", 0) == 0);
}

TEST_CASE("exports: trials CSV and statistics JSON equal pandas/scipy; histogram PNG") {
  testutil::TempDir tmp("study-export");
  const std::string ws = tmp.str();
  engine::StudyRng rng(5);
  for (int round = 0; round < 6; ++round) {
    CAPTURE(round);
    // Round 0: tiny; round 1: one kind only; others: random with ties, skips and two raters.
    StudyConfig c = config(round % 2 ? "bob, \"the second\"" : "alice", round == 0 ? 1 : 6, round);
    const auto plan = engine::createStudy(ws, c, 20, 20, {}, "");
    const std::string path = engine::studyRatingsPath(ws, plan.id);
    {
      engine::RatingsWriter w(path);
      for (int t = 0; t < plan.size(); ++t) {
        if (round == 1 && plan.trials[t].kind == "dense") continue;
        std::optional<int> r = 1 + static_cast<int>(rng.below(round > 3 ? 3 : 7));
        if (round > 1 && rng.below(8) == 0) r.reset();
        w.append(engine::studyRating(plan, t, r, static_cast<double>(rng.below(5000)), ""));
      }
    }
    const auto ratings = engine::readRatingsFile(path);
    const nlohmann::json stats = engine::studyStatistics(ratings);
    engine::writeTrialsCsv(tmp.str("t.csv"), ratings);
    engine::writeStatisticsJson(tmp.str("s.json"), stats);
    std::string out;
    const int rc = testutil::runPython(
        testutil::pyScript("study_check.py"),
        "'" + path + "' '" + tmp.str("t.csv") + "' '" + tmp.str("s.json") + "'", &out);
    INFO(out);
    CHECK(rc == 0);
    CHECK(out == "ok\n");
  }
  // All studies pooled (several raters: agreement computed).
  const auto all = engine::readRatingsFiles(engine::ratingFiles(ws));
  CHECK(engine::ratingFiles(ws).size() == 6);
  const nlohmann::json stats = engine::studyStatistics(all);
  CHECK(stats["raters"].size() == 2);

  const engine::Image img = engine::renderHistogram(stats);
  CHECK(img.width == 800);
  CHECK(img.height == 480);
  engine::writePng(tmp.str("h.png"), img);
  const engine::Image back = engine::decodeImage(tmp.str("h.png"));
  CHECK(back.width == 800);
  // Both bar colours are present (sparse orange, dense blue), plus text ink.
  size_t orange = 0, blue = 0, ink = 0;
  for (size_t i = 0; i < back.pixels.size(); i += 3) {
    const uint8_t* p = &back.pixels[i];
    orange += p[0] == 230 && p[1] == 130 && p[2] == 40;
    blue += p[0] == 60 && p[1] == 110 && p[2] == 190;
    ink += p[0] == 40 && p[1] == 40 && p[2] == 48;
  }
  CHECK(orange > 2000);
  CHECK(blue > 2000);
  CHECK(ink > 500);
  // An empty study still renders (axes, no bars).
  const engine::Image empty = engine::renderHistogram(engine::studyStatistics({}), 400, 240);
  CHECK(empty.width == 400);
}
