// tests/test_gui_desktop.cpp — what a desktop app owes its user across starts and screens: the UI
// scale follows the X server's Xft.dpi (HiDPI), the window size comes back (settings.json), and
// each workspace reopens on the view, feature and ranking rule it was left on (WS/ui_state.json).
// Runs the real app under `xvfb-run -a`; runs at a given Xft.dpi get their own nested X server,
// the resource set with xrdb (x11-xserver-utils).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

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

constexpr int kN = 40, kD = 32, kF = 20;

// A workspace imported from arrays written here (no training): 40 images of 24 px.
struct Fixture {
  testutil::TempDir dir{"gui-desktop"};
  std::string data, ws;
  Fixture() {
    data = dir.str("data");
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (int i = 0; i < kN; ++i) {
      engine::Image im;
      im.width = im.height = 24;
      for (int p = 0; p < 24 * 24; ++p) {
        im.pixels.push_back(static_cast<uint8_t>(i * 6));
        im.pixels.push_back(static_cast<uint8_t>(p % 256));
        im.pixels.push_back(static_cast<uint8_t>(240 - i * 6));
      }
      engine::writePng(data + "/c" + std::to_string(i % 2) + "/" + std::to_string(i) + ".png", im);
    }
    std::vector<float> e(kN * kD), we(kD * kF), wd(kF * kD), be(kF, 0.f), bd(kD, 0.f);
    for (auto* v : {&e, &we, &wd})
      for (auto& x : *v) x = nd(rng);
    const std::string emb = dir.str("files/emb.npy"), sae = dir.str("files/sae.pt");
    engine::writeNpy(emb, engine::TensorData::fromFloat({kN, kD}, e.data()));
    engine::writeTorchCheckpoint(
        sae, {{"weight_encoder", engine::TensorData::fromFloat({kD, kF}, we.data())},
              {"weight_decoder", engine::TensorData::fromFloat({kF, kD}, wd.data())},
              {"bias_encoder", engine::TensorData::fromFloat({kF}, be.data())},
              {"bias_decoder", engine::TensorData::fromFloat({kD}, bd.data())}});
    ws = workspace("ws", emb, sae);
  }
  std::string workspace(const std::string& name, const std::string& emb, const std::string& sae) {
    engine::ImportConfig c;
    c.data = data;
    c.workspace = dir.str(name);
    c.embeddings = emb;
    c.sae = sae;
    engine::JobContext ctx;
    engine::runImport(c, ctx);
    return c.workspace;
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// Runs the app on its own X server (a nested `xvfb-run -a`) whose Xft.dpi is `dpi`: GLFW reads
// that resource at start-up as the content scale (dpi / 96). -noreset keeps the resource once
// xrdb has disconnected (Xvfb otherwise resets when its last client leaves).
int runAtDpi(int dpi, const std::string& args, const std::string& log) {
  const std::string inner = "printf 'Xft.dpi: " + std::to_string(dpi) +
                            "\\n' | xrdb -nocpp -merge && exec " + SAESCOPE_GUI_DRIVER + " " + args;
  std::string quoted = "'";  // `inner` as one shell word: each ' becomes '\''
  for (const char c : inner) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  const std::string cmd = "timeout 300 xvfb-run -a -s '-noreset -screen 0 2600x1800x24' sh -c " +
                          quoted + " > " + q(log) + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A fresh settings folder for one test (XDG_CONFIG_HOME), never the user's ~/.config.
void useConfig(const std::string& dir) {
  setenv("XDG_CONFIG_HOME", dir.c_str(), 1);
}

// Rows of the rectangle [x0, x1) x [y0, y1) that hold bright text pixels; returns the extent
// (last - first + 1) and counts the bright pixels in `ink`.
int textRows(const engine::Image& img, int x0, int y0, int x1, int y1, int& ink) {
  int first = -1, last = -1;
  ink = 0;
  for (int y = std::max(0, y0); y < std::min(img.height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x1); ++x) {
      const uint8_t* p =
          img.pixels.data() + (static_cast<size_t>(y) * img.width + x) * img.channels;
      if (std::min({p[0], p[1], p[2]}) > 170) {
        ++ink;
        if (first < 0) first = y;
        last = y;
      }
    }
  return first < 0 ? 0 : last - first + 1;
}

struct Shot {
  json state;
  engine::Image img;
};

Shot shotAt(int dpi, const std::string& view, const testutil::TempDir& tmp) {
  const std::string tag = view + "-" + std::to_string(dpi);
  const std::string png = tmp.str(tag + ".png"), state = tmp.str(tag + ".json");
  const int rc = runAtDpi(dpi,
                          "--workspace " + q(fixture().ws) + " --view " + view +
                              " --feature 1 --size 720x450 --screenshot " + q(png) +
                              " --state-out " + q(state),
                          tmp.str(tag + ".log"));
  INFO(slurp(tmp.str(tag + ".log")));
  REQUIRE(rc == 0);
  return {json::parse(slurp(state)), engine::decodeImage(png)};
}

}  // namespace

TEST_SUITE("gui") {
  TEST_CASE("HiDPI: Xft.dpi 192 gives UI scale 2, a window twice as large and text twice as tall") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-hidpi");
    useConfig(tmp.str("config"));
    const Shot one = shotAt(96, "browser", tmp);
    const Shot two = shotAt(192, "browser", tmp);
    CHECK(one.state["scale"] == 1.0);
    CHECK(two.state["scale"] == 2.0);
    CHECK(two.state["window"]["content_scale"] == 2.0);
    // --size is at 100%: GLFW scales the window by the monitor's content scale.
    CHECK(one.img.width == 720);
    CHECK(two.img.width == 1440);
    CHECK(two.img.height == 900);
    CHECK(two.state["window"]["framebuffer_width"] == 1440);
    // Widgets and their text: the Open button is twice as tall, its label's ink twice as tall.
    const json a = one.state["widgets"]["ws_open"], b = two.state["widgets"]["ws_open"];
    REQUIRE(a.is_array());
    REQUIRE(b.is_array());
    const double ha = a[3].get<double>() - a[1].get<double>();
    const double hb = b[3].get<double>() - b[1].get<double>();
    CHECK(hb / ha == doctest::Approx(2.0).epsilon(0.1));
    int inkA = 0, inkB = 0;
    const int ta = textRows(one.img, a[0].get<int>() + 2, a[1].get<int>() + 2, a[2].get<int>() - 2,
                            a[3].get<int>() - 2, inkA);
    const int tb = textRows(two.img, b[0].get<int>() + 2, b[1].get<int>() + 2, b[2].get<int>() - 2,
                            b[3].get<int>() - 2, inkB);
    REQUIRE(ta > 4);
    CHECK(static_cast<double>(tb) / ta == doctest::Approx(2.0).epsilon(0.2));
    CHECK(static_cast<double>(inkB) / inkA > 2.5);  // area grows ~4x
    // The thumbnails scale with the UI: both grids loaded, decoded at twice the resolution.
    CHECK(two.state["browser"]["grid_loaded"]["sparse"] == true);
    CHECK(two.state["browser"]["cell_pixels"] ==
          2 * one.state["browser"]["cell_pixels"].get<int>());
  }

  TEST_CASE("the window size comes back on the next start, at any scale") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    testutil::TempDir tmp("gui-winsize");
    for (const int dpi : {96, 192}) {
      CAPTURE(dpi);
      const std::string config = tmp.str("config-" + std::to_string(dpi));
      useConfig(config);
      const std::string script = tmp.str("resize.script");
      engine::writeFileAtomic(
          script, "wait 3\nresize 1100 760\nwait 5\nstate " + tmp.str("resized.json") + "\nquit\n");
      // No --size: the first start uses the default, then the user resizes the window.
      int rc = runAtDpi(dpi, "--script " + q(script), tmp.str("first.log"));
      INFO(slurp(tmp.str("first.log")));
      REQUIRE(rc == 0);
      const json resized = json::parse(slurp(tmp.str("resized.json")));
      CHECK(resized["window"]["width"] == 1100);
      CHECK(resized["window"]["height"] == 760);
      // settings.json holds the size at 100% scale.
      const json settings = json::parse(slurp(config + "/saescope/settings.json"));
      CHECK(settings["window_width"] == 1100 * 96 / dpi);
      CHECK(settings["window_height"] == 760 * 96 / dpi);
      // The next start opens at that size (not scaled twice).
      rc = runAtDpi(dpi, "--frames 5 --state-out " + q(tmp.str("second.json")),
                    tmp.str("second.log"));
      INFO(slurp(tmp.str("second.log")));
      REQUIRE(rc == 0);
      const json second = json::parse(slurp(tmp.str("second.json")));
      CHECK(second["window"]["width"] == 1100);
      CHECK(second["window"]["height"] == 760);
      // An explicit --size wins over the saved size; a damaged settings file gives the default.
      rc = runAtDpi(dpi, "--size 800x600 --frames 3 --state-out " + q(tmp.str("sized.json")),
                    tmp.str("sized.log"));
      REQUIRE(rc == 0);
      CHECK(json::parse(slurp(tmp.str("sized.json")))["window"]["width"] == 800 * dpi / 96);
    }
    const std::string config = tmp.str("config-bad");
    useConfig(config);
    engine::writeFileAtomic(config + "/saescope/settings.json", "{\"window_width\": \"wide\"");
    const int rc = runGui("--frames 3 --state-out " + q(tmp.str("bad.json")), tmp.str("bad.log"));
    INFO(slurp(tmp.str("bad.log")));
    REQUIRE(rc == 0);
    CHECK(json::parse(slurp(tmp.str("bad.json")))["window"]["width"] == 1440);
  }

  TEST_CASE("a workspace reopens on its last view, feature and ranking rule") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-uistate");
    useConfig(tmp.str("config"));
    const std::string ws =
        f.workspace("ws-uistate", f.dir.str("files/emb.npy"), f.dir.str("files/sae.pt"));
    // First start: the user goes to the browser, steps to feature 3 and ranks by raw activation.
    const std::string script = tmp.str("browse.script");
    engine::writeFileAtomic(script,
                            "wait-settled 60\nclick tab_browser\nwait-settled 60\nkey Right\n"
                            "wait 2\nkey Right\nwait 2\nkey Right\nwait-settled 60\nset rank raw\n"
                            "wait-settled 60\nquit\n");
    int rc = runGui("--workspace " + q(ws) + " --view pipeline --size 1280x800 --script " +
                        q(script) + " --state-out " + q(tmp.str("first.json")),
                    tmp.str("first.log"));
    INFO(slurp(tmp.str("first.log")));
    REQUIRE(rc == 0);
    const json first = json::parse(slurp(tmp.str("first.json")));
    CHECK(first["script_error"] == "");
    CHECK(first["browser"]["feature"] == 3);
    REQUIRE(engine::fileExists(ws + "/ui_state.json"));
    const json saved = json::parse(slurp(ws + "/ui_state.json"));
    CHECK(saved["view"] == "browser");
    CHECK(saved["feature"] == 3);
    CHECK(saved["rank"] == "raw");

    // Second start without flags: all three come back.
    rc = runGui("--workspace " + q(ws) + " --size 1280x800 --frames 5 --state-out " +
                    q(tmp.str("second.json")),
                tmp.str("second.log"));
    REQUIRE(rc == 0);
    const json second = json::parse(slurp(tmp.str("second.json")));
    CHECK(second["view"] == "browser");
    CHECK(second["browser"]["feature"] == 3);
    CHECK(second["browser"]["rank"] == "raw");

    // Flags given on the command line win over the stored state.
    rc = runGui("--workspace " + q(ws) + " --view pipeline --feature 1 --rank seed --size " +
                    "1280x800 --frames 5 --state-out " + q(tmp.str("flags.json")),
                tmp.str("flags.log"));
    REQUIRE(rc == 0);
    const json flags = json::parse(slurp(tmp.str("flags.json")));
    CHECK(flags["view"] == "pipeline");
    CHECK(flags["browser"]["feature"] == 1);
    CHECK(flags["browser"]["rank"] == "seed");

    // Opening the workspace from the bar (another workspace open before) restores it too.
    const std::string open = tmp.str("open.script");
    engine::writeFileAtomic(open,
                            "wait-settled 60\nclick tab_results\nwait 3\nclick ws_path\n"
                            "key A ctrl\ntype " +
                                ws + "\nkey Enter\nwait 3\nwait-settled 60\nquit\n");
    rc = runGui("--workspace " + q(f.ws) + " --view pipeline --size 1280x800 --script " + q(open) +
                    " --state-out " + q(tmp.str("open.json")),
                tmp.str("open.log"));
    INFO(slurp(tmp.str("open.log")));
    REQUIRE(rc == 0);
    const json opened = json::parse(slurp(tmp.str("open.json")));
    CHECK(opened["workspace"] == fs::path(ws).lexically_normal().string());
    CHECK(opened["view"] == "browser");
    CHECK(opened["browser"]["feature"] == 3);
    CHECK(opened["browser"]["rank"] == "raw");
    // The workspace left behind keeps the view it was left on.
    REQUIRE(engine::fileExists(f.ws + "/ui_state.json"));
    CHECK(json::parse(slurp(f.ws + "/ui_state.json"))["view"] == "results");
  }

  TEST_CASE("a damaged or unwritable ui_state.json never stops the app") {
    REQUIRE_MESSAGE(haveDisplay(), "no DISPLAY: run under xvfb-run -a (ctest does)");
    Fixture& f = fixture();
    testutil::TempDir tmp("gui-uistate-bad");
    useConfig(tmp.str("config"));
    const std::string ws =
        f.workspace("ws-uistate-bad", f.dir.str("files/emb.npy"), f.dir.str("files/sae.pt"));
    engine::writeFileAtomic(ws + "/ui_state.json", "{\"view\": \"browser\", \"feature\": ");
    int rc = runGui("--workspace " + q(ws) + " --size 1280x800 --frames 5 --state-out " +
                        q(tmp.str("damaged.json")),
                    tmp.str("damaged.log"));
    INFO(slurp(tmp.str("damaged.log")));
    REQUIRE(rc == 0);
    const json damaged = json::parse(slurp(tmp.str("damaged.json")));
    CHECK(damaged["workspace"] == fs::path(ws).lexically_normal().string());
    CHECK(damaged["view"] == "browser");  // the default for a workspace with embeddings
    CHECK(damaged["browser"]["feature"] == 0);
    CHECK(damaged["messages"].empty());

    // A folder where the file should be: it cannot be read or replaced; one warning, exit 0.
    fs::remove(ws + "/ui_state.json");
    fs::create_directories(ws + "/ui_state.json/x");
    const std::string script = tmp.str("step.script");
    engine::writeFileAtomic(script,
                            "wait-settled 60\nkey Right\nwait-settled 60\nwait 90\n"
                            "wait-settled 60\nquit\n");
    rc = runGui("--workspace " + q(ws) + " --view browser --size 1280x800 --script " + q(script) +
                    " --state-out " + q(tmp.str("unwritable.json")),
                tmp.str("unwritable.log"));
    INFO(slurp(tmp.str("unwritable.log")));
    REQUIRE(rc == 0);
    const json s = json::parse(slurp(tmp.str("unwritable.json")));
    CHECK(s["script_error"] == "");
    CHECK(s["browser"]["feature"] == 1);
    REQUIRE(s["messages"].size() == 1);
    CHECK(s["messages"][0]["level"] == "warning");
    CHECK(s["messages"][0]["text"].get<std::string>().rfind("view state not saved: ", 0) == 0);
  }
}
