// ui/view_workspace.cpp — the workspace bar and the in-app folder browser.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <filesystem>

#include "app.h"
#include "engine/fsutil.h"

namespace fs = std::filesystem;

namespace ui {

void WorkspaceBar::draw() {
  App& app = m_app;
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::AlignTextToFramePadding();
  ImGui::TextColored(ImVec4(0.55f, 0.75f, 1.0f, 1), "saescope");
  if (app.fontLarge) ImGui::PopFont();
  ImGui::SameLine(0, 18 * app.scale);

  const bool busy = app.pipeline.isBusy();
  ImGui::BeginDisabled(busy);
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("Workspace");
  ImGui::SameLine();
  const float buttons = ImGui::CalcTextSize("OpenCreateBrowse…Recent").x +
                        ImGui::GetStyle().FramePadding.x * 8 + ImGui::GetStyle().ItemSpacing.x * 4;
  ImGui::SetNextItemWidth(
      std::max(200.0f * app.scale,
               std::min(620.0f * app.scale, ImGui::GetContentRegionAvail().x * 0.55f - buttons)));
  if (ImGui::InputTextWithHint("##wspath", "folder of a workspace, e.g. ~/celeba-ws", &pathInput,
                               ImGuiInputTextFlags_EnterReturnsTrue))
    app.openWorkspace(pathInput, false);
  app.hook("ws_path");
  ImGui::SameLine();
  if (ImGui::Button("Open")) app.openWorkspace(pathInput, false);
  app.hook("ws_open");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Open the workspace folder typed at the left");
  ImGui::SameLine();
  if (ImGui::Button("Create")) app.openWorkspace(pathInput, true);
  app.hook("ws_create");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("Make a new, empty workspace in the folder typed at the left");
  ImGui::SameLine();
  if (ImGui::Button("Browse…"))
    openFolderBrowser("Open or create a workspace", pathInput, [&app](const std::string& d) {
      app.openWorkspace(d, !engine::fileExists(d + "/manifest.json"));
    });
  app.hook("ws_browse");
  ImGui::SameLine();
  if (ImGui::Button("Recent")) ImGui::OpenPopup("recent");
  if (ImGui::BeginPopup("recent")) {
    if (app.config.recentWorkspaces.empty()) ImGui::TextDisabled("No recent workspaces");
    for (const auto& r : app.config.recentWorkspaces) {
      if (ImGui::Selectable(r.c_str())) {
        const std::string dir = r;  // openWorkspace reorders the list
        app.openWorkspace(dir, false);
        break;
      }
    }
    ImGui::EndPopup();
  }
  ImGui::EndDisabled();
  if (busy && ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
    ImGui::SetTooltip("Cancel the run to switch workspaces");

  // Right: what the workspace holds.
  if (app.ws) {
    std::string info;
    if (app.data && !app.data->images.empty())
      info = std::to_string(app.data->images.size()) + " images";
    const std::string root = app.data ? app.data->dataRoot : "";
    if (!root.empty()) info += (info.empty() ? "" : " · ") + std::string("data: ") + root;
    if (!info.empty()) {
      const float w = ImGui::CalcTextSize(info.c_str()).x;
      ImGui::SameLine();
      const float x = ImGui::GetWindowContentRegionMax().x - w;
      if (x > ImGui::GetCursorPosX() + 10) {
        ImGui::SetCursorPosX(x);
        ImGui::AlignTextToFramePadding();
        ImGui::TextDisabled("%s", info.c_str());
      }
    }
  }
}

void WorkspaceBar::openFolderBrowser(const std::string& title, const std::string& start,
                                     std::function<void(const std::string&)> onPick) {
  m_browserTitle = title;
  std::string dir = start;
  std::error_code ec;
  while (!dir.empty() && !fs::is_directory(dir, ec)) dir = fs::path(dir).parent_path().string();
  if (dir.empty()) {
    const char* home = std::getenv("HOME");
    dir = home ? home : "/";
  }
  m_onPick = std::move(onPick);
  m_newFolder.clear();
  listFolder(dir);
  m_browserOpenRequest = true;
}

void WorkspaceBar::listFolder(const std::string& dirIn) {
  std::error_code ec;
  fs::path p = fs::absolute(dirIn, ec).lexically_normal();
  std::string dir = p.string();
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::vector<std::string> entries;
  m_browserError.clear();
  fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) {
    m_browserError = dir + ": " + ec.message();
  } else {
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) break;
      std::error_code ec2;
      const std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      if (it->is_directory(ec2)) entries.push_back(name);
    }
  }
  std::sort(entries.begin(), entries.end());
  m_browserDir = dir;
  m_browserEntries = std::move(entries);
}

void WorkspaceBar::drawFolderBrowser() {
  App& app = m_app;
  if (m_browserOpenRequest) {
    ImGui::OpenPopup("Choose a folder");
    m_browserOpenRequest = false;
  }
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowSize(ImVec2(std::min(720 * app.scale, vp->WorkSize.x * 0.9f),
                                  std::min(520 * app.scale, vp->WorkSize.y * 0.85f)),
                           ImGuiCond_Appearing);
  ImGui::SetNextWindowPos(
      ImVec2(vp->WorkPos.x + vp->WorkSize.x / 2, vp->WorkPos.y + vp->WorkSize.y / 2),
      ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
  if (!ImGui::BeginPopupModal("Choose a folder", nullptr, ImGuiWindowFlags_NoSavedSettings)) return;
  ImGui::TextUnformatted(m_browserTitle.c_str());
  if (ImGui::Button("Up")) listFolder(fs::path(m_browserDir).parent_path().string());
  ImGui::SameLine();
  if (ImGui::Button("Home")) {
    const char* home = std::getenv("HOME");
    listFolder(home ? home : "/");
  }
  ImGui::SameLine();
  std::string typed = m_browserDir;
  ImGui::SetNextItemWidth(-1);
  if (ImGui::InputText("##dir", &typed, ImGuiInputTextFlags_EnterReturnsTrue)) listFolder(typed);

  const float footer = ImGui::GetFrameHeightWithSpacing() * 2 + ImGui::GetStyle().ItemSpacing.y;
  ImGui::BeginChild("entries", ImVec2(0, -footer), true);
  if (!m_browserError.empty())
    ImGui::TextColored(ImVec4(1, 0.5f, 0.5f, 1), "%s", m_browserError.c_str());
  std::string go;
  ImGuiListClipper clip;
  clip.Begin(static_cast<int>(m_browserEntries.size()));
  while (clip.Step()) {
    for (int i = clip.DisplayStart; i < clip.DisplayEnd; ++i) {
      const std::string& e = m_browserEntries[static_cast<size_t>(i)];
      const bool isWs = engine::fileExists(m_browserDir + "/" + e + "/manifest.json");
      const std::string label =
          std::string(isWs ? "■ " : "□ ") + e + (isWs ? "   (workspace)" : "");
      if (ImGui::Selectable(label.c_str(), false, ImGuiSelectableFlags_DontClosePopups))
        go = m_browserDir + "/" + e;
    }
  }
  if (m_browserEntries.empty() && m_browserError.empty()) ImGui::TextDisabled("(no sub-folders)");
  ImGui::EndChild();
  if (!go.empty()) listFolder(go);

  ImGui::SetNextItemWidth(260 * app.scale);
  ImGui::InputTextWithHint("##newfolder", "new folder name", &m_newFolder);
  ImGui::SameLine();
  ImGui::BeginDisabled(m_newFolder.empty());
  if (ImGui::Button("Make folder")) {
    std::error_code ec;
    const std::string p = m_browserDir + "/" + m_newFolder;
    fs::create_directories(p, ec);
    if (ec)
      m_browserError = p + ": " + ec.message();
    else {
      m_newFolder.clear();
      listFolder(p);
    }
  }
  ImGui::EndDisabled();
  if (ImGui::Button("Choose this folder")) {
    auto pick = m_onPick;
    const std::string dir = m_browserDir;
    ImGui::CloseCurrentPopup();
    if (pick) pick(dir);
  }
  app.hook("folder_choose");
  ImGui::SameLine();
  if (ImGui::Button("Cancel") || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape)))
    ImGui::CloseCurrentPopup();
  ImGui::SameLine();
  ImGui::TextDisabled("%s", m_browserDir.c_str());
  ImGui::EndPopup();
}

}  // namespace ui
