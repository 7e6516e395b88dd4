// ui/user_config.h — per-user settings: recent workspaces, last data folder, window size; and
// the per-workspace UI state (last view, browser feature and ranking rule).
// Settings are stored in $XDG_CONFIG_HOME/saescope/settings.json (default ~/.config/saescope/),
// the UI state in WS/ui_state.json; both written atomically. A missing or unreadable file gives
// the defaults; a failed write is reported as a one-line message, never thrown.
// Thread-safety: free functions without shared state; the app calls them on the UI thread and
// writes ui_state.json on its writer thread.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ui {

struct UserConfig {
  std::vector<std::string> recentWorkspaces;  // most recent first, at most kMaxRecent
  std::string lastDataFolder;
  // Window size in screen coordinates at 100% content scale (the app multiplies by the monitor's
  // scale, as GLFW does for --size); 0: default.
  int windowWidth = 0, windowHeight = 0;

  static constexpr size_t kMaxRecent = 10;
  // Moves `dir` to the front of recentWorkspaces.
  void addRecent(const std::string& dir);
};

std::string userConfigDir();  // "" when neither XDG_CONFIG_HOME nor HOME is set
UserConfig loadUserConfig();
// Returns "" on success, else a one-line message.
std::string saveUserConfig(const UserConfig& c);

// What the user last looked at in one workspace (WS/ui_state.json). Empty / -1: not stored.
struct WorkspaceUiState {
  std::string view;      // pipeline | browser | rating | results
  int64_t feature = -1;  // browser feature id
  std::string rank;      // browser ranking rule: seed | raw
  bool operator==(const WorkspaceUiState& o) const {
    return view == o.view && feature == o.feature && rank == o.rank;
  }
  bool operator!=(const WorkspaceUiState& o) const { return !(*this == o); }
};

// Reads WS/ui_state.json; missing, unreadable or damaged (or a value out of range) gives the
// empty state for that field. Never throws.
WorkspaceUiState loadWorkspaceUiState(const std::string& workspaceDir);
// The file's text (JSON).
std::string workspaceUiStateJson(const WorkspaceUiState& s);
// Writes WS/ui_state.json atomically. Returns "" on success, else a one-line message.
std::string saveWorkspaceUiState(const std::string& workspaceDir, const WorkspaceUiState& s);

}  // namespace ui
