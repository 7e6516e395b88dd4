// tests/test_gui.cpp — the real desktop app in a real window (run under `xvfb-run -a`; ctest does).
//
// A tiny workspace is built once with the engine (demo data, fine-tune, embed, SAE); every case
// then starts the app (saescope_gui_driver = `saescope gui`) as a child process, lets it take a
// screenshot or play a script, and checks the PNG and the app state it writes (--state-out).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "engine/demo_data.h"
#include "engine/error.h"
#include "engine/features.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/pipeline.h"
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

constexpr int kW = 1280, kH = 800;


// The shared tiny workspace: 64 demo faces at 32 px, one epoch, a 64-feature SAE.
struct Fixture {
  testutil::TempDir dir{"gui"};
  std::string data, ws, config;
  Fixture() {
    data = dir.str("data");
    ws = dir.str("ws");
    config = dir.str("config");
    guitest::buildTinyWorkspace(data, ws);
    // Settings go to a private folder, never the user's ~/.config.
    setenv("XDG_CONFIG_HOME", config.c_str(), 1);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// A copy of the shared workspace in tmp/ws, for a test that changes it; returns its path.
std::string fixtureCopy(testutil::TempDir& tmp) {
  const std::string ws = tmp.str("ws");
  fs::copy(fixture().ws, ws, fs::copy_options::recursive);
  return ws;
}

// Distinct RGB colours inside [x0, x1) x [y0, y1).
size_t distinctColours(const engine::Image& img, int x0, int y0, int x1, int y1) {
  std::set<uint32_t> c;
  for (int y = std::max(0, y0); y < std::min(img.height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x1); ++x) {
      const uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * img.channels];
      c.insert(uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]);
    }
  return c.size();
}

size_t widgetColours(const engine::Image& img, const json& state, const std::string& name) {
  const auto& r = state.at("widgets").at(name);
  return distinctColours(img, static_cast<int>(r[0].get<double>()),
                         static_cast<int>(r[1].get<double>()), static_cast<int>(r[2].get<double>()),
                         static_cast<int>(r[3].get<double>()));
}

std::string writeScript(const std::string& path, const std::string& text) {
  engine::writeFileAtomic(path, text);
  return path;
}

std::string common(const std::string& stateOut) {
  return "--size " + std::to_string(kW) + "x" + std::to_string(kH) + " --state-out " + q(stateOut);
}

// Plays `scriptText` in the pipeline view of workspace `ws` (more flags in `extra`); returns the
// app's final state.
json playPipeline(testutil::TempDir& tmp, const std::string& ws, const std::string& scriptText,
                  const std::string& extra = "") {
  const std::string script = writeScript(tmp.str("pipeline.script"), scriptText);
  const std::string state = tmp.str("state.json");
  const int rc = runGui("--workspace " + q(ws) + " --view pipeline --script " + q(script) + " " +
                            common(state) + extra,
                        tmp.str("log.txt"));
  INFO(slurp(tmp.str("log.txt")));
  REQUIRE(rc == 0);
  return readJson(state);
}

// A small topk SAE run for the fixture's workspace copy `ws` (one thread).
engine::SaeConfig smallTopk(const std::string& ws, int64_t steps) {
  engine::SaeConfig c = engine::saeDefaults("topk");
  c.workspace = ws;
  c.features = 32;
  c.k = 4;
  c.batch = 16;
  c.steps = steps;
  c.run.threads = 1;
  return c;
}

}  // namespace

TEST_SUITE("gui") {
  TEST_CASE("saescope gui --help and a bad flag") {
    testutil::TempDir tmp("gui-flags");
    CHECK(runGui("--help", tmp.str("help.txt")) == 0);
    const std::string help = slurp(tmp.str("help.txt"));
    CHECK(help.find("--screenshot") != std::string::npos);
    CHECK(help.find("(default:") != std::string::npos);
    CHECK(runGui("--view sideways", tmp.str("bad.txt")) == 2);
    const std::string bad = slurp(tmp.str("bad.txt"));
    CHECK(bad.rfind("saescope: error: --view", 0) == 0);
    CHECK(std::count(bad.begin(), bad.end(), '\n') == 1);
  }

  TEST_CASE("screenshots of every view") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-shots");
    for (const std::string view : {"pipeline", "browser", "rating", "results"}) {
      CAPTURE(view);
      const std::string png = tmp.str(view + ".png"), state = tmp.str(view + ".json");
      const int rc = runGui("--workspace " + q(f.ws) + " --view " + view +
                                " --feature 2 --screenshot " + q(png) + " " + common(state),
                            tmp.str(view + ".log"));
      INFO(slurp(tmp.str(view + ".log")));
      REQUIRE(rc == 0);
      const engine::Image img = engine::decodeImage(png);
      CHECK(img.width == kW);
      CHECK(img.height == kH);
      CHECK(distinctColours(img, 0, 0, img.width, img.height) > 40);  // text, widgets: not blank
      const json s = readJson(state);
      CHECK(s["view"] == view);
      CHECK(s["index"] == "ready");
      if (view == "browser") {
        CHECK(s["browser"]["feature"] == 2);
        CHECK(s["browser"]["grid_loaded"]["dense"] == true);
        CHECK(s["browser"]["grid_loaded"]["sparse"] == true);
        // Both 4x4 grids hold real thumbnails: many colours in each grid's rectangle.
        CHECK(widgetColours(img, s, "grid_dense") > 300);
        CHECK(widgetColours(img, s, "grid_sparse") > 300);
        // The extras: a strip of quantile thumbnails per kind, the sparse feature's neighbours.
        CHECK(widgetColours(img, s, "quantiles_dense") > 100);
        CHECK(widgetColours(img, s, "quantiles_sparse") > 100);
        CHECK(s["widgets"].contains("near_first"));
        const json seen = readJson(f.ws + "/seen.json");
        CHECK(seen["seen"]["dense"].size() >= 1);
      }
      if (!std::getenv("SAESCOPE_KEEP_SHOTS")) continue;
      fs::copy_file(png, std::string(SAESCOPE_BINARY_DIR) + "/gui-" + view + ".png",
                    fs::copy_options::overwrite_existing);
    }
  }

  TEST_CASE("keyboard and clicks navigate the browser; a click opens the image; notes are saved") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-nav");
    const std::string script = writeScript(tmp.str("nav.script"), R"(
wait-settled 60
key Right
wait 2
key Right
wait 2
click next
wait 2
key PageDown
wait 2
key Left
wait-settled 60
state )" + tmp.str("mid.json") + R"(
click note_sparse
type eyes closed
click next 0.5 0.5
wait 2
click prev
wait-settled 60
click grid_dense 0.12 0.12
wait-settled 60
)");
    const std::string state = tmp.str("state.json");
    const int rc = runGui("--workspace " + q(f.ws) + " --view browser --feature 3 --script " +
                              q(script) + " " + common(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json mid = readJson(tmp.str("mid.json"));
    CHECK(mid["browser"]["feature"] == 3 + 1 + 1 + 1 + 16 - 1);
    const json s = readJson(state);
    CHECK(s["script_error"] == "");
    CHECK(s["browser"]["feature"] == 21);
    CHECK(s["browser"]["selected_image"].get<int64_t>() >= 0);  // the image detail is open
    const json notes = readJson(f.ws + "/notes.json");
    CHECK(notes["notes"]["sparse/21"]["text"] == "eyes closed");
    const json seen = readJson(f.ws + "/seen.json");
    std::set<int64_t> dense(seen["seen"]["dense"].begin(), seen["seen"]["dense"].end());
    for (int id : {3, 4, 5, 6, 22, 21}) CHECK(dense.count(id) == 1);
  }

  TEST_CASE("a nearest-feature button shows that feature; Details off gives larger grids") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-near");
    engine::JobContext ctx;
    const auto near = engine::FeatureIndex::loadOrBuild(f.ws, ctx)->nearestByDecoder(7, 1);
    REQUIRE(near.size() == 1);
    const std::string script = writeScript(tmp.str("near.script"), R"(
wait-settled 60
click near_first
wait-settled 60
state )" + tmp.str("near.json") + R"(
click details
wait-settled 60
screenshot )" + tmp.str("no-details.png") + R"(
wait 2
)");
    const std::string state = tmp.str("state.json"), png = tmp.str("no-details.png");
    const int rc = runGui("--workspace " + q(f.ws) + " --view browser --feature 7 --script " +
                              q(script) + " " + common(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json mid = readJson(tmp.str("near.json"));
    CHECK(mid["script_error"] == "");
    CHECK(mid["browser"]["feature"] == near[0].feature);
    const json s = readJson(state);
    CHECK(s["script_error"] == "");
    CHECK_FALSE(s["widgets"].contains("quantiles_sparse"));
    auto gridWidth = [](const json& st) {
      const auto& r = st["widgets"]["grid_sparse"];
      return r[2].get<double>() - r[0].get<double>();
    };
    CHECK(gridWidth(s) > gridWidth(mid) * 1.2);
    if (std::getenv("SAESCOPE_KEEP_SHOTS"))
      fs::copy_file(png, std::string(SAESCOPE_BINARY_DIR) + "/gui-browser-no-details.png",
                    fs::copy_options::overwrite_existing);
  }

  TEST_CASE("start a run, cancel it: the app says cancelled and the workspace is unchanged") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-cancel");
    const std::vector<std::string> artifacts = {"backbone.pt", "embeddings.npy", "sae.pt",
                                                "images.txt"};
    std::map<std::string, std::string> before;
    for (const auto& a : artifacts) before[a] = slurp(f.ws + "/" + a);
    const json s = playPipeline(tmp, f.ws, R"(
wait-settled 60
set data )" + f.data + R"(
set train.epochs 500
set train.batch 16
set train.image_size 32
set device cpu
click run_train
wait-progress 120
state )" + tmp.str("running.json") + R"(
click cancel
wait-idle 120
wait 3
)",
                                " --screenshot " + q(tmp.str("cancel.png")));
    const json running = readJson(tmp.str("running.json"));
    CHECK(running["job"]["busy"] == true);
    CHECK(running["job"]["current"] == "train");
    CHECK(s["job"]["busy"] == false);
    CHECK(s["job"]["last"]["name"] == "train");
    CHECK(s["job"]["last"]["state"] == "cancelled");
    for (const auto& a : artifacts) CHECK_MESSAGE(slurp(f.ws + "/" + a) == before[a], a);
    for (const auto& e : fs::directory_iterator(f.ws))  // no temporary files left behind
      CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  }

  TEST_CASE("Resume SAE training continues an interrupted SAE run; Cancel saves it again") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-resume");
    const std::string ws = fixtureCopy(tmp);
    const std::string saeBefore = slurp(ws + "/sae.pt");
    // An SAE run stopped after 20 steps leaves its checkpoint (as Ctrl-C would).
    const engine::SaeConfig c = smallTopk(ws, 1000000);
    engine::JobContext ctx;
    std::atomic<bool> ended{false};
    std::thread watcher([&] {
      while (!ended && !(ctx.snapshot().stage == "sae" && ctx.snapshot().done >= 20))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ctx.requestStop();
    });
    CHECK_THROWS_AS(engine::runSae(c, ctx), engine::Cancelled);
    ended = true;
    watcher.join();
    const json before = readJson(ws + "/checkpoints/sae.json");
    const int64_t saved = before["step"];
    CHECK(saved >= 20);

    const json s = playPipeline(tmp, ws, R"(
wait-settled 60
click resume_sae
wait-progress 120
state )" + tmp.str("running.json") + R"(
wait 30
click cancel
wait-idle 120
wait 3
)");
    const json running = readJson(tmp.str("running.json"));
    CHECK(running["job"]["current"] == "sae");
    CHECK(s["job"]["last"]["name"] == "sae");
    CHECK(s["job"]["last"]["state"] == "cancelled");
    // It went on from the checkpoint with the saved settings, and saved again further on.
    const json after = readJson(ws + "/checkpoints/sae.json");
    CHECK(after["settings"] == before["settings"]);
    CHECK(after["step"].get<int64_t>() > saved);
    std::ifstream log(ws + "/logs/sae.jsonl");
    std::string line;
    int64_t prev = -1;
    while (std::getline(log, line)) {
      const int64_t step = json::parse(line)["step"];
      CHECK(step > prev);  // each step logged once, in order
      prev = step;
    }
    CHECK(prev >= saved);
    CHECK(slurp(ws + "/sae.pt") == saeBefore);  // an unfinished run writes no SAE
  }

  TEST_CASE(
      "fp16 and tf32 on the CPU: a hint under the precision, and Run stops with one clear error") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-fp16");
    const std::string ws = fixtureCopy(tmp);
    const std::string manifest = slurp(ws + "/manifest.json");
    const std::string backbone = slurp(ws + "/backbone.pt");
    const json s = playPipeline(tmp, ws, R"(
wait-settled 60
set device cpu
wait 3
screenshot )" + tmp.str("plain.png") + R"(
set train.precision fp16
set embed.precision tf32
set sae.precision tf32
wait 3
screenshot )" + tmp.str("hint.png") + R"(
click run_embed
wait-idle 60
wait 3
click run_train
wait-idle 60
wait 3
)");
    CHECK(s["job"]["last"]["state"] == "failed");
    CHECK(s["job"]["last"]["error"].get<std::string>().find("--precision fp16 runs on CUDA only") !=
          std::string::npos);
    bool tf32Error = false;  // the embedding's run, before: its error stays among the messages
    for (const auto& m : s["messages"])
      tf32Error |= m["level"] == "error" &&
                   m["text"].get<std::string>().find("--precision tf32 runs on CUDA only") !=
                       std::string::npos;
    CHECK_MESSAGE(tf32Error, s["messages"].dump());
    CHECK(s["sae_settings"]["precision"] == "tf32");
    CHECK(slurp(ws + "/backbone.pt") == backbone);  // nothing written
    CHECK(slurp(ws + "/manifest.json") == manifest);
    // The hint is drawn in amber under each of the two precision combos: amber text appears.
    auto amber = [](const std::string& png) {
      const engine::Image shot = engine::decodeImage(png);
      int64_t n = 0;
      for (size_t i = 0; i + 2 < shot.pixels.size(); i += shot.channels) {
        const int r = shot.pixels[i], g = shot.pixels[i + 1], b = shot.pixels[i + 2];
        n += r > 200 && g > 150 && g < 210 && b < 110;
      }
      return n;
    };
    const int64_t plain = amber(tmp.str("plain.png")), hinted = amber(tmp.str("hint.png"));
    CHECK(hinted > plain + 200);  // two lines of amber text: about 650 pixels at 100 %
  }

  TEST_CASE("the pipeline view starts from the last SAE run's variant and settings") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-sae-settings");
    const std::string ws = fixtureCopy(tmp);
    // The last SAE run: a bf16 topk one (before, the view took its numbers but kept the seed
    // variant, so Run failed on "--epochs 0").
    engine::SaeConfig c = smallTopk(ws, 30);
    c.precision = "bf16";
    engine::JobContext ctx;
    engine::runSae(c, ctx);
    const std::string name = "topk-f32-k4-s0-bf16";
    const std::string created = readJson(ws + "/manifest.json")["sae_runs"][name]["created"];

    const json s = playPipeline(tmp, ws, R"(
wait-settled 60
state )" + tmp.str("before.json") + R"(
click run_all
wait-progress 120
wait-idle 300
wait 3
)");
    const json before = readJson(tmp.str("before.json"))["sae_settings"];
    CHECK(before["variant"] == "topk");
    CHECK(before["features"] == 32);
    CHECK(before["k"] == 4);
    CHECK(before["steps"] == 30);
    CHECK(before["precision"] == "bf16");
    CHECK(s["job"]["last"]["state"] == "done");
    CHECK(s["job"]["last"]["error"] == "");
    // Run all trained the same SAE again, with those settings.
    const json m = readJson(ws + "/manifest.json");
    CHECK(m["current_sae"] == name);
    CHECK(m["sae_runs"][name]["created"] != created);
    CHECK(m["sae_runs"][name]["config"]["k"] == 4);
    CHECK(m["sae_runs"][name]["config"]["precision"] == "bf16");
  }

  TEST_CASE("a workspace without embeddings shows what is missing and the buttons that make it") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-missing");
    engine::Workspace::open(tmp.str("empty-ws"), true);
    const std::string state = tmp.str("state.json"), png = tmp.str("missing.png");
    const int rc = runGui("--workspace " + q(tmp.str("empty-ws")) +
                              " --view browser --screenshot " + q(png) + " " + common(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json s = readJson(state);
    CHECK(s["index"] == "missing");
    CHECK(s["widgets"].contains("need_train"));
    CHECK(s["widgets"].contains("need_embed"));
    CHECK(s["widgets"].contains("need_sae"));
    CHECK(engine::decodeImage(png).width == kW);
  }

  TEST_CASE("a workspace that does not exist is an in-app error, not a crash") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-nows");
    const std::string state = tmp.str("state.json");
    const int rc = runGui("--workspace " + q(tmp.str("nope")) + " --frames 5 " + common(state),
                          tmp.str("log.txt"));
    REQUIRE(rc == 0);
    const json s = readJson(state);
    CHECK(s["workspace"].is_null());
    REQUIRE(s["messages"].size() >= 1);
    CHECK(s["messages"].back()["level"] == "error");
  }
}
