#include "user_config.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>

#include "engine/fsutil.h"

namespace ui {

void UserConfig::addRecent(const std::string& dir) {
  recentWorkspaces.erase(std::remove(recentWorkspaces.begin(), recentWorkspaces.end(), dir),
                         recentWorkspaces.end());
  recentWorkspaces.insert(recentWorkspaces.begin(), dir);
  if (recentWorkspaces.size() > kMaxRecent) recentWorkspaces.resize(kMaxRecent);
}

std::string userConfigDir() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/saescope";
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.config/saescope";
  return "";
}

UserConfig loadUserConfig() {
  UserConfig c;
  const std::string dir = userConfigDir();
  if (dir.empty() || !engine::fileExists(dir + "/settings.json")) return c;
  try {
    const auto j = nlohmann::json::parse(engine::readFileText(dir + "/settings.json"));
    for (const auto& r : j.value("recent_workspaces", nlohmann::json::array()))
      if (r.is_string()) c.recentWorkspaces.push_back(r.get<std::string>());
    c.lastDataFolder = j.value("last_data_folder", std::string());
    c.windowWidth = j.value("window_width", 0);
    c.windowHeight = j.value("window_height", 0);
  } catch (const std::exception&) {
    // A damaged settings file must not keep the app from starting: use the defaults.
  }
  return c;
}

std::string saveUserConfig(const UserConfig& c) {
  const std::string dir = userConfigDir();
  if (dir.empty()) return "cannot save settings: neither XDG_CONFIG_HOME nor HOME is set";
  nlohmann::json j;
  j["format"] = 1;
  j["recent_workspaces"] = c.recentWorkspaces;
  j["last_data_folder"] = c.lastDataFolder;
  j["window_width"] = c.windowWidth;
  j["window_height"] = c.windowHeight;
  try {
    engine::writeFileAtomic(dir + "/settings.json", j.dump(2) + "\n");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

WorkspaceUiState loadWorkspaceUiState(const std::string& workspaceDir) {
  WorkspaceUiState s;
  const std::string path = workspaceDir + "/ui_state.json";
  try {
    if (!engine::fileExists(path)) return s;
    const auto j = nlohmann::json::parse(engine::readFileText(path), nullptr, false);
    if (!j.is_object()) return s;
    const auto view = j.find("view");
    if (view != j.end() && view->is_string()) {
      const std::string v = view->get<std::string>();
      if (v == "pipeline" || v == "browser" || v == "rating" || v == "results") s.view = v;
    }
    const auto feature = j.find("feature");
    if (feature != j.end() && feature->is_number_integer() && feature->get<int64_t>() >= 0)
      s.feature = feature->get<int64_t>();
    const auto rank = j.find("rank");
    if (rank != j.end() && rank->is_string()) {
      const std::string r = rank->get<std::string>();
      if (r == "seed" || r == "raw") s.rank = r;
    }
  } catch (const std::exception&) {
    // Unreadable (permissions, a folder by that name): the defaults; the app still opens.
  }
  return s;
}

std::string workspaceUiStateJson(const WorkspaceUiState& s) {
  nlohmann::json j;
  j["format"] = 1;
  if (!s.view.empty()) j["view"] = s.view;
  if (s.feature >= 0) j["feature"] = s.feature;
  if (!s.rank.empty()) j["rank"] = s.rank;
  return j.dump(2) + "\n";
}

std::string saveWorkspaceUiState(const std::string& workspaceDir, const WorkspaceUiState& s) {
  try {
    engine::writeFileAtomic(workspaceDir + "/ui_state.json", workspaceUiStateJson(s));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace ui
