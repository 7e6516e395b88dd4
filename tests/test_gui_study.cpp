// tests/test_gui_study.cpp — the blind study in the real app under `xvfb-run -a` (ctest does).
//
// A short study (3 features per kind = 6 trials) is rated by scripted keys and clicks; the app
// is killed with SIGKILL after 3 answers, reopened, resumed and finished; then the results view,
// the JSONL, the exports and `saescope stats --json` are checked against each other.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "engine/demo_data.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/pipeline.h"
#include "engine/ratings.h"
#include "engine/study.h"
#include "engine/workspace.h"
#include "gui/gui_test_util.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using guitest::haveDisplay;
using guitest::q;
using guitest::runGui;
using guitest::readJson;
using guitest::slurp;


// A tiny workspace: 64 demo faces at 32 px, one epoch, a 64-feature SAE.
struct Fixture {
  testutil::TempDir dir{"gui-study"};
  std::string data, ws, config;
  Fixture() {
    data = dir.str("data");
    ws = dir.str("ws");
    config = dir.str("config");
    guitest::buildTinyWorkspace(data, ws);
    setenv("XDG_CONFIG_HOME", config.c_str(), 1);  // never the user's ~/.config
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}




std::string common(const std::string& stateOut) {
  return "--size 1280x800 --state-out " + q(stateOut);
}


// Starts the app in the background; the pid is the app's own (the shell execs it).
pid_t spawnGui(const std::string& args, const std::string& log) {
  const std::string cmd =
      std::string("exec ") + SAESCOPE_GUI_DRIVER + " " + args + " > " + q(log) + " 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

size_t lineCount(const std::string& path) {
  const std::string t = slurp(path);
  return static_cast<size_t>(std::count(t.begin(), t.end(), '\n'));
}

std::string onlyStudy(const std::string& ws) {
  std::vector<std::string> plans;
  for (const auto& e : fs::directory_iterator(ws + "/ratings")) {
    const std::string n = e.path().filename().string();
    if (n.size() > 10 && n.substr(n.size() - 10) == ".plan.json")
      plans.push_back(n.substr(0, n.size() - 10));
  }
  REQUIRE(plans.size() == 1);
  return plans[0];
}

// Pixels of exactly colour (r, g, b) inside a widget's rectangle.
size_t colourCount(const engine::Image& img, const json& rect, int r, int g, int b) {
  size_t n = 0;
  const int x0 = static_cast<int>(rect[0].get<double>()),
            y0 = static_cast<int>(rect[1].get<double>());
  const int x1 = static_cast<int>(rect[2].get<double>()),
            y1 = static_cast<int>(rect[3].get<double>());
  for (int y = std::max(0, y0); y < std::min(img.height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x1); ++x) {
      const uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * img.channels];
      n += p[0] == r && p[1] == g && p[2] == b;
    }
  return n;
}

void keep(const std::string& png, const std::string& name) {
  if (!std::getenv("SAESCOPE_KEEP_SHOTS")) return;
  fs::copy_file(png, std::string(SAESCOPE_BINARY_DIR) + "/gui-study-" + name + ".png",
                fs::copy_options::overwrite_existing);
}

}  // namespace

TEST_SUITE("gui") {
  TEST_CASE("a blind study survives SIGKILL, resumes at the next trial, and its results match") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-study-run");
    engine::removeTree(f.ws + "/ratings");
    engine::removeTree(f.ws + "/exports");

    // 1. Start a study, answer 3 trials (key, click, skip key), then idle until killed.
    const std::string midPng = tmp.str("mid.png"), midJson = tmp.str("mid.json");
    engine::writeFileAtomic(tmp.str("a.script"), R"(
wait-settled 60
click study_rater
type alice
set study.per_kind 3
set study.seed 11
click study_start
wait-settled 60
state )" + tmp.str("first.json") + R"(
key 5
wait-settled 60
click rate_2
wait-settled 60
key S
wait-settled 60
screenshot )" + midPng + R"(
wait 2
state )" + midJson + R"(
wait 1000000
)");
    const pid_t pid = spawnGui("--workspace " + q(f.ws) + " --view rating --script " +
                                   q(tmp.str("a.script")) + " " + common(tmp.str("a-exit.json")),
                               tmp.str("a.log"));
    REQUIRE(pid > 0);
    std::string jsonl;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    bool ready = false;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(f.ws + "/ratings")) {
        for (const auto& e : fs::directory_iterator(f.ws + "/ratings"))
          if (e.path().extension() == ".jsonl") jsonl = e.path().string();
      }
      if (!jsonl.empty() && lineCount(jsonl) == 3 && fs::exists(midJson)) {
        ready = true;
        break;
      }
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == pid) break;  // exited early: fail below with its log
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    INFO(slurp(tmp.str("a.log")));
    REQUIRE(ready);
    CHECK(WIFSIGNALED(status));
    CHECK_FALSE(fs::exists(tmp.str("a-exit.json")));  // it really died mid-study

    const std::string id = onlyStudy(f.ws);
    CHECK(jsonl == engine::studyRatingsPath(f.ws, id));
    for (const std::string& w : {"dense", "sparse", "feature"})
      CHECK(id.find(w) == std::string::npos);
    const json first = readJson(tmp.str("first.json"));
    CHECK(first["study"]["active"] == true);
    CHECK(first["study"]["total"] == 6);
    CHECK(first["study"]["grid_loaded"] == true);
    const json mid = readJson(midJson);
    CHECK(mid["script_error"] == "");
    CHECK(mid["study"]["trial"] == 3);
    CHECK(mid["study"]["answered"] == 2);
    CHECK(mid["study"]["skipped"] == 1);
    // Blind: the state of the trial view carries no kind and no feature.
    CHECK_FALSE(mid["study"].contains("kind"));
    CHECK_FALSE(mid["study"].contains("feature"));
    CHECK(mid["widgets"].contains("study_grid"));
    CHECK(mid["widgets"].contains("rate_7"));
    CHECK(mid["widgets"].contains("rate_skip"));
    const engine::Image midImg = engine::decodeImage(midPng);
    CHECK(midImg.width == 1280);
    keep(midPng, "trial");

    // 2. Reopen: the study is listed unfinished; Resume continues at trial 4 of 6.
    engine::writeFileAtomic(tmp.str("b.script"), R"(
wait-settled 60
state )" + tmp.str("list.json") + R"(
click study_resume_0
wait-settled 60
state )" + tmp.str("resumed.json") + R"(
key 7
wait-settled 60
click rate_1
wait-settled 60
key 4
wait-settled 60
state )" + tmp.str("finished.json") + R"(
click study_show_results
wait-settled 60
wait 5
screenshot )" + tmp.str("results.png") + R"(
wait 2
state )" + tmp.str("results.json") + R"(
click export_all
wait 3
)");
    const int rc = runGui("--workspace " + q(f.ws) + " --view rating --script " +
                              q(tmp.str("b.script")) + " " + common(tmp.str("b-exit.json")),
                          tmp.str("b.log"));
    INFO(slurp(tmp.str("b.log")));
    REQUIRE(rc == 0);
    const json list = readJson(tmp.str("list.json"));
    REQUIRE(list["study"]["studies"].size() == 1);
    CHECK(list["study"]["studies"][0]["id"] == id);
    CHECK(list["study"]["studies"][0]["answered"] == 2);
    CHECK(list["study"]["studies"][0]["skipped"] == 1);
    CHECK(list["study"]["studies"][0]["done"] == false);
    const json resumed = readJson(tmp.str("resumed.json"));
    CHECK(resumed["study"]["id"] == id);
    CHECK(resumed["study"]["trial"] == 3);
    CHECK(resumed["study"]["reproducible"] == true);
    const json finished = readJson(tmp.str("finished.json"));
    CHECK(finished["study"]["active"] == false);
    CHECK(finished["study"]["answered"] == 5);
    CHECK(finished["study"]["skipped"] == 1);

    // 3. The JSONL: 6 lines, trials in order, kinds balanced, the ratings as given.
    const auto ratings = engine::readRatingsFile(jsonl);
    REQUIRE(ratings.size() == 6);
    std::map<std::string, int> kinds;
    std::map<int64_t, std::set<std::string>> perFeature;
    const std::vector<std::optional<int>> given = {5, 2, std::nullopt, 7, 1, 4};
    const auto plan = engine::loadStudyPlan(engine::studyPlanPath(f.ws, id));
    for (int i = 0; i < 6; ++i) {
      CAPTURE(i);
      CHECK(ratings[i].trial == i);
      CHECK(ratings[i].session == id);
      CHECK(ratings[i].rater == "alice");
      CHECK(ratings[i].rating == given[i]);
      CHECK(ratings[i].kind == plan.trials[i].kind);
      CHECK(ratings[i].feature == plan.trials[i].feature);
      kinds[ratings[i].kind] += 1;
      perFeature[ratings[i].feature].insert(ratings[i].kind);
    }
    CHECK(kinds["dense"] == 3);
    CHECK(kinds["sparse"] == 3);
    CHECK(perFeature.size() == 3);
    for (const auto& [feat, ks] : perFeature) CHECK(ks.size() == 2);
    CHECK(plan.config.seed == 11);
    const json seen = json::parse(slurp(f.ws + "/seen.json"), nullptr, false);
    if (seen.is_object())  // unseen features only (the browser may have been opened before)
      for (const auto& v : seen["seen"]["dense"]) CHECK(perFeature.count(v.get<int64_t>()) == 0);

    // 4. The results view: its statistics are `saescope stats --json` on the file.
    const json res = readJson(tmp.str("results.json"));
    CHECK(res["view"] == "results");
    CHECK(res["results"]["source"] == id);
    const json& stats = res["results"]["stats"];
    CHECK(stats["sparse"]["count"].get<int>() + stats["dense"]["count"].get<int>() == 5);
    CHECK(stats["skipped"] == 1);
    std::string cli;
    {
      const std::string out = tmp.str("cli.json");
      REQUIRE(std::system((std::string(SAESCOPE_CLI) + " stats " + q(jsonl) + " --json > " + q(out))
                              .c_str()) == 0);
      cli = slurp(out);
    }
    CHECK(json::parse(cli) == stats);
    const engine::Image img = engine::decodeImage(tmp.str("results.png"));
    REQUIRE(res["widgets"].contains("results_histogram_pooled"));
    const json& h = res["widgets"]["results_histogram_pooled"];
    CHECK(colourCount(img, h, 230, 130, 40) > 200);  // sparse bars
    CHECK(colourCount(img, h, 60, 110, 190) > 200);  // dense bars
    CHECK(res["widgets"].contains("results_describe_pooled"));
    CHECK(res["widgets"].contains("results_tests_pooled"));
    keep(tmp.str("results.png"), "results");

    // 5. Exports: CSV of the 6 trials, the same statistics, a histogram PNG.
    const std::string base = f.ws + "/exports/" + id;
    CHECK(lineCount(base + "-trials.csv") == 7);
    CHECK(readJson(base + "-statistics.json") == stats);
    CHECK(engine::decodeImage(base + "-histogram.png").width == 800);
  }

  TEST_CASE("results of a one-kind-only study: a clear message, no NaN") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-study-onekind");
    const std::string ws = tmp.str("ws");
    engine::Workspace::open(ws, true);
    {
      engine::RatingsWriter w(ws + "/ratings/hand.jsonl");
      for (int i = 0; i < 3; ++i) {
        engine::Rating r;
        r.session = "s";
        r.rater = "bob";
        r.trial = i;
        r.kind = "sparse";
        r.feature = i;
        r.rating = 3 + i;
        w.append(r);
      }
    }
    const std::string state = tmp.str("state.json"), png = tmp.str("onekind.png");
    const int rc = runGui(
        "--workspace " + q(ws) + " --view results --screenshot " + q(png) + " " + common(state),
        tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json s = readJson(state);
    CHECK(s["results"]["ratings"] == 3);
    const json& st = s["results"]["stats"];
    CHECK(st["student_t"]["t"].is_null());
    CHECK(st["dense"]["count"] == 0);
    bool said = false;
    for (const auto& m : st["messages"])
      said = said || m.get<std::string>().find("no dense ratings yet") != std::string::npos;
    CHECK(said);
    CHECK(slurp(state).find("NaN") == std::string::npos);
    keep(png, "onekind");
  }

  TEST_CASE("a bad id list is refused with the field named; nothing is written") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-study-bad");
    const std::string before = fs::exists(f.ws + "/ratings") ? onlyStudy(f.ws) : "";
    engine::writeFileAtomic(tmp.str("c.script"), R"(
wait-settled 60
set study.rater carol
set study.choice explicit
set study.ids 40-10
click study_start
wait 3
)");
    const int rc = runGui("--workspace " + q(f.ws) + " --view rating --script " +
                              q(tmp.str("c.script")) + " " + common(tmp.str("state.json")),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json s = readJson(tmp.str("state.json"));
    CHECK(s["study"]["active"] == false);
    CHECK(s["study"]["form_error"].get<std::string>().rfind("feature ids: ", 0) == 0);
    if (!before.empty()) CHECK(onlyStudy(f.ws) == before);
  }
}
