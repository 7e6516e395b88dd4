// tests/gui/gui_test_util.h — what every GUI test needs: running the app (saescope_gui_driver =
// `saescope gui`) as a child process, reading what it writes, and a tiny real workspace.
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/demo_data.h"
#include "engine/pipeline.h"

namespace guitest {

inline bool haveDisplay() {
  const char* d = std::getenv("DISPLAY");
  return d && *d;
}

// Single-quotes a path for the shell.
inline std::string q(const std::string& s) {
  return "'" + s + "'";
}

inline std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json readJson(const std::string& p) {
  return nlohmann::json::parse(slurp(p));
}

// Runs the app with `args` (time-limited); returns its exit code; its output goes to `log`.
inline int runGui(const std::string& args, const std::string& log) {
  const std::string cmd =
      std::string("timeout 300 ") + SAESCOPE_GUI_DRIVER + " " + args + " > " + q(log) + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Builds a tiny real workspace with the engine: 64 demo faces at 32 px in `data`, one epoch of
// fine-tuning, embeddings and a 64-feature SAE in `ws`.
inline void buildTinyWorkspace(const std::string& data, const std::string& ws) {
  engine::JobContext ctx;
  engine::DemoDataConfig d;
  d.out = data;
  d.count = 64;
  d.size = 32;
  engine::generateDemoData(d, ctx);
  engine::TrainConfig t;
  t.data = data;
  t.workspace = ws;
  t.batch = 16;
  t.imageSize = 32;
  t.run.device = "cpu";
  engine::runTrain(t, ctx);
  engine::EmbedConfig e;
  e.workspace = ws;
  e.batch = 32;
  e.run.device = "cpu";
  engine::runEmbed(e, ctx);
  engine::SaeConfig s;
  s.workspace = ws;
  s.features = 64;
  s.epochs = 3;
  s.batch = 16;
  s.run.device = "cpu";
  engine::runSae(s, ctx);
}

}  // namespace guitest
