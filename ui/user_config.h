// ui/user_config.h — per-user settings: recent workspaces, last data folder, window size.
// Stored in $XDG_CONFIG_HOME/saescope/settings.json (default ~/.config/saescope/), written
// atomically. Thread-safety: UI thread only. A missing or unreadable file gives the defaults;
// a failed write is reported by save() as a message, never thrown.
#pragma once
#include <string>
#include <vector>

namespace ui {

struct UserConfig {
  std::vector<std::string> recentWorkspaces;  // most recent first, at most kMaxRecent
  std::string lastDataFolder;
  int windowWidth = 0, windowHeight = 0;  // 0: default

  static constexpr size_t kMaxRecent = 10;
  // Moves `dir` to the front of recentWorkspaces.
  void addRecent(const std::string& dir);
};

std::string userConfigDir();  // "" when neither XDG_CONFIG_HOME nor HOME is set
UserConfig loadUserConfig();
// Returns "" on success, else a one-line message.
std::string saveUserConfig(const UserConfig& c);

}  // namespace ui
