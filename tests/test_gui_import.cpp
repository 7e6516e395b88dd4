// tests/test_gui_import.cpp — drag and drop onto the real window (through GLFW's drop callback,
// via the script's `drop` command), the Import… dialog (typed paths, checks, import on the worker)
// and the browser's Export menu. Run under `xvfb-run -a`.
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

// Runs the app on `ws` (1280x800) with the script `text` and returns the state it wrote at exit;
// the app's log (tmp/log.txt) is shown when it fails.
json runScripted(const std::string& ws, const std::string& text, testutil::TempDir& tmp) {
  const std::string script = tmp.str("run.script"), state = tmp.str("state.json");
  engine::writeFileAtomic(script, text);
  const int rc = runGui("--workspace " + q(ws) + " --size 1280x800 --script " + q(script) +
                            " --state-out " + q(state),
                        tmp.str("log.txt"));
  INFO(slurp(tmp.str("log.txt")));
  REQUIRE(rc == 0);
  return json::parse(slurp(state));
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
    const json s = runScripted(ws,
                               "wait-settled 60\ndrop " + f.sae +
                                   "\nwait 2\nwait-idle 120\nwait 5\nwait-settled 120\n"
                                   "view browser\nwait-settled 120\nquit\n",
                               tmp);
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

  TEST_CASE("the Import dialog checks typed paths and imports into a new workspace") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-import-dialog");
    const std::string ws = tmp.str("new-ws");
    // Typed as a user types: click the field, select all (Ctrl+A), type over it.
    auto typeInto = [](const std::string& field, const std::string& text) {
      return "click " + field + "\nkey A ctrl\ntype " + text + "\nwait 2\n";
    };
    const std::string script = tmp.str("import.script");
    engine::writeFileAtomic(
        script, "wait-settled 60\nkey I ctrl\nwait 3\n" + typeInto("import_workspace", ws) +
                    typeInto("import_data", f.data) +
                    typeInto("import_embeddings", tmp.str("missing.npy")) +
                    "wait-settled 60\nstate " + tmp.str("missing.json") + "\n" +
                    typeInto("import_embeddings", f.emb) + typeInto("import_sae", f.emb) +
                    "wait-settled 60\nstate " + tmp.str("wrong-kind.json") + "\n" +
                    typeInto("import_sae", f.sae) + "wait-settled 60\nstate " +
                    tmp.str("ready.json") + "\nscreenshot " + tmp.str("dialog.png") +
                    "\nwait 2\nclick import_run\nwait 2\nwait-idle 120\nwait 5\n"
                    "wait-settled 120\nscreenshot " +
                    tmp.str("after.png") + "\nwait 2\nquit\n");
    const std::string state = tmp.str("state.json");
    const int rc = runGui("--size 1280x800 --script " + q(script) + " --state-out " + q(state),
                          tmp.str("log.txt"));
    INFO(slurp(tmp.str("log.txt")));
    REQUIRE(rc == 0);

    // A missing file is named at once and keeps the Import button disabled.
    const json missing = json::parse(slurp(tmp.str("missing.json")));
    CHECK(missing["import"]["open"] == true);
    CHECK(missing["import"]["fields"]["embeddings"]["ok"] == false);
    CHECK(missing["import"]["fields"]["embeddings"]["status"] == "not found");
    CHECK(missing["import"]["fields"]["workspace"]["status"] ==
          "new folder: a workspace is made there");
    CHECK(missing["import"]["fields"]["data"]["status"] == std::to_string(kN) + " images");
    CHECK(missing["import"]["blocker"] == "Embeddings: not found");
    // A file of the wrong kind says what it holds and where it belongs.
    const json wrong = json::parse(slurp(tmp.str("wrong-kind.json")));
    CHECK(wrong["import"]["fields"]["embeddings"]["ok"] == true);
    CHECK(wrong["import"]["fields"]["embeddings"]["status"] ==
          "embeddings of " + std::to_string(kN) + " images × " + std::to_string(kD) + " dims");
    CHECK(wrong["import"]["fields"]["sae"]["ok"] == false);
    CHECK(wrong["import"]["fields"]["sae"]["status"] ==
          "holds embeddings, not sae: put it in the Embeddings field");
    const json ready = json::parse(slurp(tmp.str("ready.json")));
    CHECK(ready["import"]["blocker"] == "");
    CHECK(ready["import"]["fields"]["sae"]["status"] ==
          "SAE: " + std::to_string(kD) + " dims → " + std::to_string(kF) + " features");
    CHECK(ready["import"]["fields"]["backbone"]["status"] == "");
    CHECK(ready["workspace"].is_null());  // nothing opened or imported before Import is pressed

    // After Import: the new workspace is on disk, opened, and its features browse.
    const json s = json::parse(slurp(state));
    CHECK(s["script_error"] == "");
    CHECK(s["import"]["open"] == false);
    CHECK(s["job"]["last"]["name"] == "import");
    CHECK(s["job"]["last"]["state"] == "done");
    CHECK(s["workspace"] == fs::path(ws).lexically_normal().string());
    CHECK(s["view"] == "browser");
    CHECK(s["index"] == "ready");
    CHECK(s["browser"]["grid_loaded"]["sparse"] == true);
    CHECK(stage(s, "embed") == "done");
    const json m = json::parse(slurp(ws + "/manifest.json"));
    CHECK(m["stages"]["embed"]["status"] == "imported");
    CHECK(m["stages"]["sae"]["status"] == "imported");
    CHECK(engine::fileExists(ws + "/embeddings.npy"));
    CHECK(engine::fileExists(ws + "/sae.pt"));
    CHECK(slurp(ws + "/images.txt").find(".png") != std::string::npos);

    // The dialog was on screen: its rectangle differs from the plain window behind it.
    const engine::Image dlg = engine::decodeImage(tmp.str("dialog.png"));
    REQUIRE(dlg.width == 1280);
    const json wr = ready["widgets"]["import_embeddings"];
    REQUIRE(wr.is_array());
    const engine::Image after = engine::decodeImage(tmp.str("after.png"));
    REQUIRE(after.width == dlg.width);
    int differing = 0;
    const int y = static_cast<int>((wr[1].get<float>() + wr[3].get<float>()) / 2);
    for (int x = static_cast<int>(wr[0].get<float>()); x < static_cast<int>(wr[2].get<float>());
         ++x) {
      const size_t i = (static_cast<size_t>(y) * dlg.width + x) * dlg.channels;
      differing += dlg.pixels[i] != after.pixels[i] || dlg.pixels[i + 1] != after.pixels[i + 1];
    }
    CHECK(differing > 50);
  }

  TEST_CASE("the Import dialog reports a failed import in the message line") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-import-fail");
    // The workspace holds 64-d embeddings; an SAE made for 32-d inputs passes the dialog's own
    // checks (no embeddings typed) and fails in the import: one line, the app goes on.
    const std::string ws = f.workspace("ws-dialog-mismatch", false);
    const std::string sae32 = tmp.str("sae32.pt");
    std::vector<float> we(32 * kF, 0.5f), wd(kF * 32, 0.5f), be(kF, 0.f), bd(32, 0.f);
    engine::writeTorchCheckpoint(
        sae32, {{"weight_encoder", engine::TensorData::fromFloat({32, kF}, we.data())},
                {"weight_decoder", engine::TensorData::fromFloat({kF, 32}, wd.data())},
                {"bias_encoder", engine::TensorData::fromFloat({kF}, be.data())},
                {"bias_decoder", engine::TensorData::fromFloat({32}, bd.data())}});
    const json s = runScripted(ws,
                               "wait-settled 60\nclick ws_import\nwait 3\nset import.sae " + sae32 +
                                   "\nwait 2\nwait-settled 60\nclick import_run\nwait 2\n"
                                   "wait-idle 60\nwait 3\nquit\n",
                               tmp);
    CHECK(s["script_error"] == "");
    // Prefilled from the open workspace.
    CHECK(s["import"]["fields"]["workspace"]["value"] == fs::path(ws).lexically_normal().string());
    CHECK(s["import"]["fields"]["data"]["value"] == fs::path(f.data).lexically_normal().string());
    CHECK(s["job"]["last"]["state"] == "failed");
    REQUIRE(!s["messages"].empty());
    const json& last = s["messages"].back();
    CHECK(last["level"] == "error");
    const std::string text = last["text"];
    CHECK(text.rfind("Import failed: ", 0) == 0);
    CHECK(text.find('\n') == std::string::npos);
    CHECK_FALSE(engine::fileExists(ws + "/sae.pt"));
  }

  TEST_CASE("files dropped onto the Import dialog go to their own fields") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    const std::string ws = f.workspace("ws-dialog-drop", false);
    testutil::TempDir tmp("gui-import-drop");
    // The SAE lands in the first empty field (Embeddings), the embeddings in the next (SAE):
    // their checks swap them.
    const json s = runScripted(ws,
                               "wait-settled 60\nclick ws_import\nwait 3\ndrop " + f.sae + " " +
                                   f.emb + "\nwait 3\nwait-settled 60\nstate " +
                                   tmp.str("filled.json") + "\nkey Escape\nwait 3\nquit\n",
                               tmp);
    const json filled = json::parse(slurp(tmp.str("filled.json")));
    CHECK(filled["import"]["fields"]["embeddings"]["value"] == f.emb);
    CHECK(filled["import"]["fields"]["sae"]["value"] == f.sae);
    CHECK(filled["import"]["fields"]["embeddings"]["ok"] == true);
    CHECK(filled["import"]["fields"]["sae"]["ok"] == true);
    CHECK(filled["import"]["blocker"] == "");
    // Nothing was imported: a drop onto the dialog only fills it; Escape closes it.
    CHECK(s["script_error"] == "");
    CHECK(s["import"]["open"] == false);
    CHECK(s["job"]["last"]["id"] == 0);
    CHECK_FALSE(engine::fileExists(ws + "/sae.pt"));
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
