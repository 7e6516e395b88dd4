// ui/gui_options.h — the `saescope gui` command line. No window needed (unit-testable).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ui {

struct GuiOptions {
  std::string workspace;      // "" = none (the last one is NOT reopened implicitly)
  std::string view = "auto";  // auto | pipeline | browser | rating | results
  int64_t feature = 0;
  std::string rank = "seed";  // seed | raw
  // Whether --feature, --rank, --size were given: given flags win over what the workspace's
  // ui_state.json and settings.json restore.
  bool featureGiven = false, rankGiven = false, sizeGiven = false;
  std::string screenshot;          // PNG to write once the view has settled; then exit
  double screenshotTimeout = 60;   // seconds to wait for thumbnails / the index before the shot
  std::string script;              // scripted input file (tests)
  std::string stateOut;            // JSON dump of the app state at exit (tests)
  int frames = 0;                  // exit after N frames (0 = run until closed)
  int width = 1440, height = 900;  // window size in screen coordinates
  float scale = 0;                 // UI scale; 0 = the monitor's content scale
  bool help = false;
};

// Parses the words after `saescope gui`. Throws engine::Error with the one-line message for a
// bad flag or value (the caller prints `saescope: error: <message>` and exits 2).
GuiOptions parseGuiOptions(const std::vector<std::string>& args);
// The --help text: every flag with its default.
std::string guiUsage();

}  // namespace ui
