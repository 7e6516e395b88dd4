// tests/test_gui_units.cpp — the pieces of the desktop app that need no window: the job runner
// (start, cancel, restart, snapshot while running, failure), `saescope gui` flags, scripts, notes.
#include <doctest/doctest.h>
#include <imgui.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/job_runner.h"
#include "test_helpers.h"
#include "ui/feature_notes.h"
#include "ui/gui_options.h"
#include "ui/script.h"

using engine::JobRunner;
using namespace std::chrono_literals;

namespace {

// A job that advances one step per ms until stopped or `steps` are done.
JobRunner::JobFn stepper(int steps, std::atomic<int>* done = nullptr) {
  return [steps, done](engine::JobContext& ctx) {
    ctx.beginStage("count", steps, "steps");
    for (int i = 0; i < steps; ++i) {
      ctx.checkStop();
      std::this_thread::sleep_for(1ms);
      ctx.advance(1, {{"loss", 1.0 / (i + 1)}}, i);
      if (done) ++*done;
    }
  };
}

bool waitFor(const std::function<bool()>& pred, double seconds = 20) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

}  // namespace

TEST_SUITE("gui") {
  TEST_CASE("JobRunner runs jobs in order and reports each outcome") {
    JobRunner r;
    std::vector<int> order;
    std::mutex m;
    const auto a = r.submit("a", [&](engine::JobContext&) {
      std::lock_guard<std::mutex> l(m);
      order.push_back(1);
    });
    const auto b = r.submit("b", [&](engine::JobContext&) {
      std::lock_guard<std::mutex> l(m);
      order.push_back(2);
    });
    REQUIRE(r.waitIdle(20));
    CHECK(order == std::vector<int>{1, 2});
    CHECK(r.stateOf(a) == JobRunner::State::Done);
    CHECK(r.stateOf(b) == JobRunner::State::Done);
    CHECK(r.lastOutcome().name == "b");
    CHECK_FALSE(r.isBusy());
  }

  TEST_CASE("JobRunner snapshot is readable while the job runs; cancel stops it; restart works") {
    JobRunner r;
    std::atomic<int> steps{0};
    const auto id = r.submit("long", stepper(1000000, &steps));
    const auto queued = r.submit("queued", stepper(10));
    REQUIRE(waitFor([&] { return r.snapshot().done >= 20; }));
    CHECK(r.isBusy());
    CHECK(r.currentName() == "long");
    const auto snap = r.snapshot();
    CHECK(snap.stage == "count");
    CHECK(snap.total == 1000000);
    CHECK_FALSE(snap.curve.empty());
    CHECK(r.stateOf(queued) == JobRunner::State::Queued);

    r.cancel();
    REQUIRE(r.waitIdle(20));
    CHECK(r.stateOf(id) == JobRunner::State::Cancelled);
    CHECK(r.stateOf(queued) == JobRunner::State::Cancelled);  // dropped, never ran
    CHECK(r.lastCancelled());
    CHECK(steps.load() < 1000000);

    // A job submitted after a cancel runs to the end.
    const auto again = r.submit("again", stepper(5));
    REQUIRE(r.waitIdle(20));
    CHECK(r.stateOf(again) == JobRunner::State::Done);
    CHECK(r.snapshot().done == 5);
    CHECK_FALSE(r.lastCancelled());
  }

  TEST_CASE("JobRunner: a failed job reports its message and drops the jobs behind it") {
    JobRunner r;
    std::atomic<bool> ran{false};
    // "bad" fails only once "after" is queued behind it (else "after" would simply run next).
    std::promise<void> queued;
    std::shared_future<void> isQueued = queued.get_future().share();
    const auto bad = r.submit("bad", [isQueued](engine::JobContext&) {
      isQueued.wait();
      throw engine::Error("data: no images in /x");
    });
    const auto after = r.submit("after", [&](engine::JobContext&) { ran = true; });
    queued.set_value();
    REQUIRE(r.waitIdle(20));
    CHECK(r.stateOf(bad) == JobRunner::State::Failed);
    CHECK(r.stateOf(after) == JobRunner::State::Cancelled);
    CHECK_FALSE(ran.load());
    CHECK(r.lastError() == "data: no images in /x");
    CHECK(r.lastOutcome().state == JobRunner::State::Failed);
  }

  TEST_CASE("JobRunner's destructor stops a running job and joins") {
    std::atomic<int> steps{0};
    const auto t0 = std::chrono::steady_clock::now();
    {
      JobRunner r;
      r.submit("long", stepper(1000000, &steps));
      REQUIRE(waitFor([&] { return steps.load() > 3; }));
    }
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
    const int after = steps.load();
    std::this_thread::sleep_for(20ms);
    CHECK(steps.load() == after);  // the worker is gone, not detached
  }

  TEST_CASE("saescope gui flags") {
    auto o = ui::parseGuiOptions({});
    CHECK(o.view == "auto");
    CHECK(o.width == 1440);
    o = ui::parseGuiOptions({"--workspace", "ws", "--view", "browser", "--feature", "7",
                             "--screenshot", "a.png", "--size", "800x600", "--frames=3"});
    CHECK(o.workspace == "ws");
    CHECK(o.view == "browser");
    CHECK(o.feature == 7);
    CHECK(o.screenshot == "a.png");
    CHECK(o.width == 800);
    CHECK(o.height == 600);
    CHECK(o.frames == 3);
    CHECK_THROWS_AS(ui::parseGuiOptions({"--view", "nope"}), engine::Error);
    CHECK_THROWS_AS(ui::parseGuiOptions({"--feature", "-1"}), engine::Error);
    CHECK_THROWS_AS(ui::parseGuiOptions({"--size", "big"}), engine::Error);
    CHECK_THROWS_AS(ui::parseGuiOptions({"--bogus"}), engine::Error);
    CHECK_THROWS_AS(ui::parseGuiOptions({"--workspace"}), engine::Error);
    const std::string help = ui::guiUsage();
    for (const char* f : {"--workspace", "--view", "--feature", "--screenshot", "--size",
                          "--script", "--state-out", "--frames", "--rank", "--scale"})
      CHECK(help.find(f) != std::string::npos);
  }

  TEST_CASE("scripts parse and report bad lines with their line number") {
    const auto cmds = ui::parseScript(
        "# a test\nwait 3\nkey Right\nclick next\n\nset sae.epochs 5\ntype hello world\nquit\n",
        "t.script");
    REQUIRE(cmds.size() == 6);
    CHECK(cmds[0].op == "wait");
    CHECK(cmds[1].args[0] == "Right");
    CHECK(cmds[3].args == std::vector<std::string>{"sae.epochs", "5"});
    CHECK(cmds[4].args[0] == "hello world");
    CHECK(cmds[5].line == 8);
    try {
      ui::parseScript("wait 1\njump 3\n", "t.script");
      FAIL("no error");
    } catch (const engine::Error& e) {
      CHECK(std::string(e.what()).find("t.script:2") != std::string::npos);
    }
    CHECK_THROWS_AS(ui::parseScript("key Hyper\n", "t"), engine::Error);
    CHECK_THROWS_AS(ui::parseScript("wait\n", "t"), engine::Error);
  }

  TEST_CASE("a script's click follows its widget; a timed-out wait says what it waited for") {
    // A host whose button moves down 40 px on every frame (a layout still filling in) and whose
    // job never makes progress.
    struct Host : ui::ScriptHost {
      int frame = 0;
      bool scriptSettled() override { return true; }
      bool scriptJobBusy() override { return false; }
      bool scriptJobProgressed() override { return false; }
      std::string scriptWaitReport() override {
        return "no job running; last job 'sae' failed: boom";
      }
      bool scriptWidget(const std::string& name, float fx, float fy, float& x, float& y) override {
        if (name != "go") return false;
        x = 100 + 20 * fx;
        y = 40.0f * frame + 10 * fy;
        return true;
      }
      void scriptSet(const std::string&, const std::string&) override {}
      void scriptView(const std::string&) override {}
      void scriptScreenshot(const std::string&) override {}
      void scriptState(const std::string&) override {}
      void scriptQuit() override {}
    } host;
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    ui::ScriptRunner run(ui::parseScript("click go\nwait-progress 0.05\n", "t.script"), "t.script",
                         host);
    std::vector<std::pair<ImVec2, bool>> mouse;  // position and button of each frame
    while (!run.done() && host.frame < 10000) {
      run.beforeFrame(io);
      mouse.emplace_back(io.MousePos, io.MouseDown[0]);
      ++host.frame;
      std::this_thread::sleep_for(1ms);
    }
    ImGui::DestroyContext();
    REQUIRE(mouse.size() >= 3);
    // Found on frame 0; pressed on frame 1 and released on frame 2, each where the button is then.
    CHECK(mouse[0].first.y == doctest::Approx(5));
    CHECK(mouse[1].second);
    CHECK(mouse[1].first.y == doctest::Approx(45));
    CHECK_FALSE(mouse[2].second);
    CHECK(mouse[2].first.y == doctest::Approx(85));
    CHECK(mouse[2].first.x == doctest::Approx(110));
    CHECK(run.error() ==
          "t.script:2 (wait-progress): timed out (no job running; last job 'sae' "
          "failed: boom)");
  }

  TEST_CASE("feature notes and the seen list round-trip through the workspace files") {
    testutil::TempDir dir("notes");
    ui::FeatureNotes n;
    n.notes["sparse/12"] = "smiling";
    n.updated["sparse/12"] = "2026-01-01T00:00:00Z";
    n.seenDense = {0, 1, 12};
    n.seenSparse = {12};
    engine::writeFileAtomic(dir.str("notes.json"), n.notesJson());
    engine::writeFileAtomic(dir.str("seen.json"), n.seenJson());
    const auto m = ui::FeatureNotes::load(dir.str());
    CHECK(m.notes.at("sparse/12") == "smiling");
    CHECK(m.seenDense == std::set<int64_t>{0, 1, 12});
    CHECK(m.seenSparse == std::set<int64_t>{12});
    engine::writeFileAtomic(dir.str("seen.json"), std::string("{broken"));
    CHECK_THROWS_AS(ui::FeatureNotes::load(dir.str()), engine::Error);
  }
}
