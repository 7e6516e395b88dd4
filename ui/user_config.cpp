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

}  // namespace ui
