// tests/test_gui_import.cpp — drag and drop onto the real window (through GLFW's drop callback,
// via the script's `drop` command) and the browser's Export menu. Run under `xvfb-run -a`.
//
// The workspace is made by `engine::runImport` from arrays written here (64-d embeddings, a
// 24-feature SAE): no training, so the suite is quick, and the browser works on D != 512.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/import.h"
#include "engine/npy.h"
#include "gui/gui_test_util.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using guitest::haveDisplay;
using guitest::q;
using guitest::runGui;
using guitest::slurp;

constexpr int kN = 48, kD = 64, kF = 24;


struct Fixture {
  testutil::TempDir dir{"gui-import"};
  std::string data, emb, sae, config;
  Fixture() {
    data = dir.str("data");
    emb = dir.str("files/emb.npy");
    sae = dir.str("files/sae.pt");
    config = dir.str("config");
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    for (int i = 0; i < kN; ++i) {
      engine::Image im;
      im.width = im.height = 16;
      for (int p = 0; p < 16 * 16; ++p) {
        im.pixels.push_back(static_cast<uint8_t>(i * 5));
        im.pixels.push_back(static_cast<uint8_t>(p));
        im.pixels.push_back(static_cast<uint8_t>(255 - i * 5));
      }
      engine::writePng(data + "/c" + std::to_string(i % 2) + "/" + std::to_string(i) + ".png", im);
    }
    std::vector<float> e(kN * kD), we(kD * kF), wd(kF * kD), be(kF, 0.f), bd(kD, 0.f);
    for (auto* v : {&e, &we, &wd})
      for (auto& x : *v) x = nd(rng);
    engine::writeNpy(emb, engine::TensorData::fromFloat({kN, kD}, e.data()));
    engine::writeTorchCheckpoint(
        sae, {{"weight_encoder", engine::TensorData::fromFloat({kD, kF}, we.data())},
              {"weight_decoder", engine::TensorData::fromFloat({kF, kD}, wd.data())},
              {"bias_encoder", engine::TensorData::fromFloat({kF}, be.data())},
              {"bias_decoder", engine::TensorData::fromFloat({kD}, bd.data())}});
    setenv("XDG_CONFIG_HOME", config.c_str(), 1);  // never the user's settings
  }
  // A workspace with embeddings only (the SAE comes by drop in one test).
  std::string workspace(const std::string& name, bool withSae) {
    engine::ImportConfig c;
    c.data = data;
    c.workspace = dir.str(name);
    c.embeddings = emb;
    if (withSae) c.sae = sae;
    engine::JobContext ctx;
    engine::runImport(c, ctx);
    return c.workspace;
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}




std::string stage(const json& state, const std::string& name) {
  for (const auto& s : state["stages"])
    if (s["name"] == name) return s["status"];
  return "";
}

}  // namespace

TEST_SUITE("gui") {
  TEST_CASE("dropping a workspace folder onto the window opens it") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    const std::string ws = f.workspace("ws-drop", true);
    testutil::TempDir tmp("gui-drop");
    const std::string script = tmp.str("drop.script");
    engine::writeFileAtomic(script, "wait-settled 60\nstate " + tmp.str("before.json") + "\ndrop " +
                                        ws +
                                        "\nwait 2\nview browser\n"
                                        "wait-settled 120\nquit\n");
    const std::string state = tmp.str("state.json");
    const int rc = runGui("--size 1280x800 --script " + q(script) + " --state-out " + q(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json before = json::parse(slurp(tmp.str("before.json")));
    CHECK(before["workspace"].is_null());
    const json s = json::parse(slurp(state));
    CHECK(s["script_error"] == "");
    CHECK(s["workspace"] == fs::path(ws).lexically_normal().string());
    CHECK(s["index"] == "ready");
    CHECK(s["view"] == "browser");
    CHECK(s["browser"]["grid_loaded"]["dense"] == true);
    CHECK(s["browser"]["grid_loaded"]["sparse"] == true);
  }

  TEST_CASE("dropping an SAE file imports it into the open workspace") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    const std::string ws = f.workspace("ws-drop-sae", false);
    testutil::TempDir tmp("gui-drop-sae");
    const std::string script = tmp.str("drop.script");
    engine::writeFileAtomic(script, "wait-settled 60\ndrop " + f.sae +
                                        "\nwait 2\nwait-idle 120\nwait 5\nwait-settled 120\n"
                                        "view browser\nwait-settled 120\nquit\n");
    const std::string state = tmp.str("state.json");
    const int rc = runGui("--workspace " + q(ws) + " --size 1280x800 --script " + q(script) +
                              " --state-out " + q(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json s = json::parse(slurp(state));
    CHECK(s["script_error"] == "");
    CHECK(s["job"]["last"]["name"] == "import");
    CHECK(s["job"]["last"]["state"] == "done");
    CHECK(stage(s, "sae") == "done");
    CHECK(s["index"] == "ready");
    CHECK(s["browser"]["grid_loaded"]["sparse"] == true);
    CHECK(engine::fileExists(ws + "/sae.pt"));
    const json m = json::parse(slurp(ws + "/manifest.json"));
    CHECK(m["stages"]["sae"]["status"] == "imported");
  }

  TEST_CASE("the browser's Export menu writes a captioned grid PNG") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    const std::string ws = f.workspace("ws-export", true);
    testutil::TempDir tmp("gui-export");
    const std::string script = tmp.str("export.script");
    engine::writeFileAtomic(script,
                            "wait-settled 120\nclick export\nwait 3\nclick export_grid_sparse\n"
                            "wait-settled 60\nclick export\nwait 3\nclick export_csv\nwait 3\n"
                            "wait-settled 60\nquit\n");
    const std::string state = tmp.str("state.json");
    const int rc = runGui("--workspace " + q(ws) + " --view browser --feature 2 --size 1280x800 " +
                              "--script " + q(script) + " --state-out " + q(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);
    const json s = json::parse(slurp(state));
    CHECK(s["script_error"] == "");
    const std::string png = ws + "/exports/sparse-2-seed.png";
    REQUIRE(engine::fileExists(png));
    const engine::Image img = engine::decodeImage(png);
    CHECK(img.width > 4 * 64);
    const std::string csv = slurp(ws + "/exports/features-seed.csv");
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 1 + kD + kF);
  }
}
