#include "gui_options.h"

#include <cstdio>
#include <stdexcept>

#include "engine/error.h"

namespace ui {

namespace {

int64_t parseInt(const std::string& flag, const std::string& v, int64_t lo, int64_t hi) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || x < lo || x > hi)
    throw engine::Error(flag + " expects a whole number from " + std::to_string(lo) + " to " +
                        std::to_string(hi) + ", got '" + v + "'");
  return x;
}

double parseDouble(const std::string& flag, const std::string& v, double lo, double hi) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || !(x >= lo && x <= hi))
    throw engine::Error(flag + " expects a number from " + std::to_string(lo) + " to " +
                        std::to_string(hi) + ", got '" + v + "'");
  return x;
}

}  // namespace

GuiOptions parseGuiOptions(const std::vector<std::string>& args) {
  GuiOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    bool hasInline = false;
    const size_t eq = flag.find('=');
    if (flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      hasInline = true;
    }
    auto next = [&]() -> std::string {
      if (hasInline) return value;
      if (i + 1 >= args.size())
        throw engine::Error(flag + " needs a value; see saescope gui --help");
      return args[++i];
    };
    if (flag == "--help" || flag == "-h") {
      o.help = true;
    } else if (flag == "--workspace") {
      o.workspace = next();
    } else if (flag == "--view") {
      o.view = next();
      if (o.view != "auto" && o.view != "pipeline" && o.view != "browser" && o.view != "rating" &&
          o.view != "results")
        throw engine::Error("--view must be pipeline, browser, rating or results, got '" + o.view +
                            "'");
    } else if (flag == "--feature") {
      o.feature = parseInt(flag, next(), 0, (int64_t(1) << 40));
      o.featureGiven = true;
    } else if (flag == "--rank") {
      o.rank = next();
      if (o.rank != "seed" && o.rank != "raw")
        throw engine::Error("--rank must be seed or raw, got '" + o.rank + "'");
      o.rankGiven = true;
    } else if (flag == "--screenshot") {
      o.screenshot = next();
      if (o.screenshot.empty()) throw engine::Error("--screenshot needs a file name (FILE.png)");
    } else if (flag == "--screenshot-timeout") {
      o.screenshotTimeout = parseDouble(flag, next(), 0, 3600);
    } else if (flag == "--script") {
      o.script = next();
    } else if (flag == "--state-out") {
      o.stateOut = next();
    } else if (flag == "--frames") {
      o.frames = static_cast<int>(parseInt(flag, next(), 0, 100000000));
    } else if (flag == "--size") {
      const std::string v = next();
      const size_t x = v.find('x');
      if (x == std::string::npos)
        throw engine::Error("--size expects WIDTHxHEIGHT such as 1440x900, got '" + v + "'");
      o.width = static_cast<int>(parseInt(flag, v.substr(0, x), 320, 16384));
      o.height = static_cast<int>(parseInt(flag, v.substr(x + 1), 240, 16384));
      o.sizeGiven = true;
    } else if (flag == "--scale") {
      o.scale = static_cast<float>(parseDouble(flag, next(), 0, 8));
    } else {
      throw engine::Error("unknown option '" + args[i] +
                          "' for saescope gui; see saescope gui --help");
    }
  }
  return o;
}

std::string guiUsage() {
  return R"(usage: saescope gui [options]      (a bare `saescope` opens the GUI too)

Opens the desktop workbench: run the pipeline, browse dense vs sparse features.

options:
  --workspace WS           workspace folder to open                  (default: none; pick one in the app)
  --view V                 pipeline | browser | rating | results     (default: the workspace's
                           last view, else browser when it has embeddings, else pipeline)
  --feature F              feature id shown in the browser          (default: the workspace's
                           last one, else 0)
  --rank R                 browser ranking rule: seed | raw          (default: the workspace's
                           last one, else seed)
  --screenshot FILE.png    render the view, wait until its images and feature index have loaded,
                           save the window as PNG and exit            (default: off)
  --screenshot-timeout S   longest wait for images before the shot   (default: 60)
  --size WxH               window size at 100% scale                 (default: the last size,
                           kept in settings.json, else 1440x900)
  --scale S                UI scale, 0 = monitor content scale       (default: 0; X11: Xft.dpi/96)
testing:
  --script FILE            run scripted input (see ui/script.h)      (default: off)
  --state-out FILE.json    write the app state as JSON at exit        (default: off)
  --frames N               exit after N frames, 0 = until closed     (default: 0)
  --help                   show this help
)";
}

}  // namespace ui
