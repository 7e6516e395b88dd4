// ui/view_workspace.cpp — the workspace bar, the Import… dialog and the in-app folder browser.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "app.h"
#include "engine/checkpoint.h"
#include "engine/dataset.h"
#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/import.h"

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
  const float buttons = ImGui::CalcTextSize("OpenCreateBrowse…RecentImport…").x +
                        ImGui::GetStyle().FramePadding.x * 10 + ImGui::GetStyle().ItemSpacing.x * 5;
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
  ImGui::SameLine();
  if (ImGui::Button("Import…")) openImportDialog();
  app.hook("ws_import");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "Build or update a workspace from embeddings, an SAE or a backbone made "
        "elsewhere (Ctrl+I)");
  ImGui::EndDisabled();
  if (busy && ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
    ImGui::SetTooltip("Cancel the run to switch workspaces or import");

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

// [SECTION] Import… dialog

namespace {

const char* const kImportLabels[] = {"Workspace", "Image folder", "Embeddings", "SAE", "Backbone"};
const char* const kImportKeys[] = {"workspace", "data", "embeddings", "sae", "backbone"};
const char* const kImportHooks[] = {"import_workspace", "import_data", "import_embeddings",
                                    "import_sae", "import_backbone"};
const char* const kImportHints[] = {
    "folder to import into; created when missing",
    "the images the files belong to (row i = image i, ImageFolder order)",
    "optional: [N, D] float tensor (.npy, .pt, .safetensors)",
    "optional: reference SAE state_dict (weight_encoder [D, F], ...)",
    "optional: torchvision resnet18 state_dict (.pth, .safetensors)"};

// `checked` of a field not checked yet (InputText never yields a newline).
const char* const kUnchecked = "\n";

// A typed path as the engine gets it: surrounding blanks dropped, a leading ~/ expanded.
std::string importPath(const std::string& typed) {
  const size_t b = typed.find_first_not_of(" \t"), e = typed.find_last_not_of(" \t");
  std::string p = b == std::string::npos ? "" : typed.substr(b, e - b + 1);
  if (p == "~" || p.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    if (home) p = home + p.substr(1);
  }
  return p;
}

engine::ArtifactKind slotKind(int slot) {
  return slot == WorkspaceBar::kImportEmbeddings ? engine::ArtifactKind::Embeddings
         : slot == WorkspaceBar::kImportSae      ? engine::ArtifactKind::Sae
                                                 : engine::ArtifactKind::Backbone;
}

const char* slotFor(engine::ArtifactKind k) {
  switch (k) {
    case engine::ArtifactKind::Embeddings:
      return "Embeddings";
    case engine::ArtifactKind::Sae:
      return "SAE";
    case engine::ArtifactKind::Backbone:
      return "Backbone";
    default:
      return "";
  }
}

// The background part of a field's check: what the folder or file holds. Any thread.
struct DeepResult {
  std::string status;
  bool ok = false;
  int64_t rows = -1, dims = -1;
  int belongs = -1;  // the slot of a file of another kind
};

int slotOf(engine::ArtifactKind k) {
  return k == engine::ArtifactKind::Embeddings ? WorkspaceBar::kImportEmbeddings
         : k == engine::ArtifactKind::Sae      ? WorkspaceBar::kImportSae
         : k == engine::ArtifactKind::Backbone ? WorkspaceBar::kImportBackbone
                                               : -1;
}

DeepResult deepCheck(int slot, const std::string& path) {
  DeepResult r;
  try {
    if (slot == WorkspaceBar::kImportData) {
      const engine::Dataset d = engine::scanDataset(path);
      r.rows = d.size();
      r.status = std::to_string(r.rows) + " images";
      r.ok = true;
      return r;
    }
    const engine::ArtifactKind want = slotKind(slot);
    const engine::ArtifactKind got = engine::classifyArtifact(path);
    if (got == engine::ArtifactKind::Unknown) {
      r.status = "holds neither embeddings [N, D], an SAE state_dict nor a resnet18 state_dict";
      return r;
    }
    if (got != want) {
      r.belongs = slotOf(got);
      r.status = std::string("holds ") + engine::artifactKindName(got) + ", not " +
                 engine::artifactKindName(want) + ": put it in the " + slotFor(got) + " field";
      return r;
    }
    const engine::StateDict sd = engine::readTensorFile(path);
    if (want == engine::ArtifactKind::Embeddings) {
      const engine::TensorData t = engine::embeddingsFrom(sd, path);
      r.rows = t.shape[0];
      r.dims = t.shape[1];
      r.status = "embeddings of " + std::to_string(r.rows) + " images × " + std::to_string(r.dims) +
                 " dims";
    } else if (want == engine::ArtifactKind::Sae) {
      const engine::StateDict s = engine::saeFrom(sd, path, 0);
      for (const auto& kv : s)
        if (kv.first == "weight_encoder" && kv.second.shape.size() == 2) {
          r.rows = kv.second.shape[0];
          r.dims = kv.second.shape[1];
        }
      r.status =
          "SAE: " + std::to_string(r.rows) + " dims → " + std::to_string(r.dims) + " features";
    } else {
      engine::backboneFrom(sd, path);
      r.status = "ResNet18 backbone";
    }
    r.ok = true;
  } catch (const std::exception& e) {
    r.status = e.what();
  }
  return r;
}

}  // namespace

void WorkspaceBar::openImportDialog() {
  App& app = m_app;
  ImportField& w = importFields[kImportWorkspace];
  w.value = app.ws ? app.ws->dir() : pathInput;
  ImportField& d = importFields[kImportData];
  if (app.ws && !app.ws->dataRoot().empty())
    d.value = app.ws->dataRoot();
  else if (d.value.empty())
    d.value = !app.train.data.empty() ? app.train.data : app.config.lastDataFolder;
  // The artifact fields keep what was typed last time (a dialog closed by mistake loses nothing);
  // every field is checked afresh (the files may have changed meanwhile).
  for (auto& f : importFields) {
    f.checked = kUnchecked;
    f.pending = false;
  }
  m_importOpenRequest = true;
}

void WorkspaceBar::importDrop(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      // A workspace folder is the target; any other folder holds the images.
      const int slot = engine::fileExists(p + "/manifest.json") ? kImportWorkspace : kImportData;
      importFields[slot].value = p;
      continue;
    }
    // A file goes to the first empty file field; its check moves it to its own field.
    int slot = -1;
    for (int i : {kImportEmbeddings, kImportSae, kImportBackbone})
      if (slot < 0 && importPath(importFields[i].value).empty()) slot = i;
    importFields[slot < 0 ? kImportEmbeddings : slot].value = p;
  }
}

bool WorkspaceBar::importChecksPending() const {
  if (!m_importOpen) return false;
  for (const auto& f : importFields)
    if (f.pending || f.checked != f.value) return true;
  return false;
}

void WorkspaceBar::checkImportFields() {
  bool changed = false;
  for (int i = 0; i < kImportSlots; ++i) {
    ImportField& f = importFields[i];
    if (f.checked == f.value) continue;
    changed = true;
    f.checked = f.value;
    f.rows = f.dims = -1;
    f.belongs = -1;
    f.pending = false;
    f.ok = false;
    const std::string p = importPath(f.value);
    std::error_code ec;
    const bool exists = !p.empty() && fs::exists(p, ec);
    const bool dir = exists && fs::is_directory(p, ec);
    if (i == kImportWorkspace) {
      if (p.empty()) {
        f.status = "required: the workspace folder to import into";
      } else if (exists && !dir) {
        f.status = "not a folder";
      } else if (engine::fileExists(p + "/manifest.json")) {
        f.ok = true;
        f.status = "existing workspace: the imported files replace its own";
      } else if (dir) {
        f.ok = true;
        f.status = "folder without a workspace: one is made there";
      } else {
        f.ok = true;
        f.status = "new folder: a workspace is made there";
      }
    } else if (i == kImportData) {
      if (p.empty())
        f.status = "required: the image folder the files belong to";
      else if (!exists)
        f.status = "not found";
      else if (!dir)
        f.status = "not a folder";
      else
        f.pending = true;
    } else {
      if (p.empty()) {
        f.ok = true;
        f.status = "";
      } else if (!exists) {
        f.status = "not found";
      } else if (dir) {
        f.status = "a folder, not a file";
      } else {
        f.pending = true;
      }
    }
    if (f.pending) f.status = i == kImportData ? "scanning…" : "reading…";
  }
  if (!changed) return;
  // One background check for every field still waiting; a newer request replaces older ones.
  std::vector<std::pair<int, std::string>> todo;
  for (int i = 0; i < kImportSlots; ++i)
    if (importFields[i].pending) todo.emplace_back(i, importFields[i].value);
  App& app = m_app;
  app.checker.cancel();
  if (todo.empty()) return;
  app.checker.submit("import-check", [this, &app, todo](engine::JobContext& ctx) {
    for (const auto& [slot, typed] : todo) {
      ctx.checkStop();
      const DeepResult r = deepCheck(slot, importPath(typed));
      const int s = slot;
      const std::string value = typed;
      app.queue.post([this, s, value, r] {
        ImportField& f = importFields[s];
        if (f.checked != value || !f.pending) return;  // typed over meanwhile
        f.pending = false;
        f.ok = r.ok;
        f.status = r.status;
        f.rows = r.rows;
        f.dims = r.dims;
        f.belongs = r.belongs;
        if (r.belongs < 0) return;
        // A file in the wrong field (a drop, a slip) moves to its own field when that one is
        // empty, or swaps with it when that holds a file for this one; both are checked again.
        ImportField& t = importFields[r.belongs];
        if (importPath(t.value).empty()) {
          t.value = value;
          f.value.clear();
        } else if (!t.pending && t.checked == t.value && t.belongs == s) {
          std::swap(t.value, f.value);
        }
      });
    }
  });
}

std::string WorkspaceBar::importBlocker() const {
  for (int i = 0; i < kImportSlots; ++i) {
    const ImportField& f = importFields[i];
    if (f.pending || f.checked != f.value) return "checking…";
    if (!f.ok) return std::string(kImportLabels[i]) + ": " + f.status;
  }
  const ImportField &d = importFields[kImportData], &e = importFields[kImportEmbeddings],
                    &s = importFields[kImportSae];
  if (e.rows >= 0 && d.rows >= 0 && e.rows != d.rows)
    return "Embeddings: " + std::to_string(e.rows) + " rows, but the image folder has " +
           std::to_string(d.rows) + " images (row i must be image i)";
  if (e.dims >= 0 && s.rows >= 0 && e.dims != s.rows)
    return "SAE: made for " + std::to_string(s.rows) + "-d inputs, but the embeddings have " +
           std::to_string(e.dims) + " dims";
  if (importPath(importFields[kImportEmbeddings].value).empty() &&
      importPath(importFields[kImportSae].value).empty() &&
      importPath(importFields[kImportBackbone].value).empty())
    return "give at least one file: embeddings, SAE or backbone";
  if (m_app.pipeline.isBusy()) return "a run is in progress: wait for it or cancel it";
  return "";
}

nlohmann::json WorkspaceBar::importStateJson() const {
  nlohmann::json j;
  j["open"] = m_importOpen;
  j["fields"] = nlohmann::json::object();
  for (int i = 0; i < kImportSlots; ++i) {
    const ImportField& f = importFields[i];
    j["fields"][kImportKeys[i]] = {
        {"value", f.value}, {"status", f.status}, {"ok", f.ok}, {"pending", f.pending}};
  }
  j["blocker"] = importBlocker();
  return j;
}

void WorkspaceBar::drawImportDialog() {
  App& app = m_app;
  if (m_importOpenRequest) {
    ImGui::OpenPopup("Import");
    m_importOpenRequest = false;
  }
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowSize(ImVec2(std::min(860 * app.scale, vp->WorkSize.x * 0.95f), 0),
                           ImGuiCond_Appearing);
  ImGui::SetNextWindowPos(
      ImVec2(vp->WorkPos.x + vp->WorkSize.x / 2, vp->WorkPos.y + vp->WorkSize.y / 2),
      ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
  m_importOpen = ImGui::BeginPopupModal("Import", nullptr, ImGuiWindowFlags_NoSavedSettings);
  if (!m_importOpen) return;
  checkImportFields();
  ImGui::PushTextWrapPos(0);
  ImGui::TextUnformatted(
      "Build or update a workspace from files made elsewhere: embeddings of any model, the "
      "reference SAE and/or a torchvision ResNet18. Empty file fields are skipped.");
  ImGui::PopTextWrapPos();
  ImGui::Spacing();
  const float s = app.scale;
  if (ImGui::BeginTable("import_fields", 2, ImGuiTableFlags_SizingStretchProp)) {
    ImGui::TableSetupColumn("label", ImGuiTableColumnFlags_WidthFixed, 120 * s);
    ImGui::TableSetupColumn("value", ImGuiTableColumnFlags_WidthStretch);
    for (int i = 0; i < kImportSlots; ++i) {
      ImportField& f = importFields[i];
      ImGui::PushID(i);
      ImGui::TableNextRow();
      ImGui::TableSetColumnIndex(0);
      ImGui::AlignTextToFramePadding();
      ImGui::TextUnformatted(kImportLabels[i]);
      ImGui::TableSetColumnIndex(1);
      ImGui::SetNextItemWidth(-1);
      ImGui::InputTextWithHint("##path", kImportHints[i], &f.value);
      app.hook(kImportHooks[i]);
      // The status line under the field: green when fine, red when not, grey while checking.
      const bool empty = importPath(f.value).empty();
      if (f.pending || f.checked != f.value)
        ImGui::TextDisabled("%s", f.pending ? f.status.c_str() : "…");
      else if (!f.ok)
        ImGui::TextColored(ImVec4(1, 0.5f, 0.5f, 1), "✗ %s", f.status.c_str());
      else if (empty)
        ImGui::TextDisabled("empty: skipped");
      else
        ImGui::TextColored(ImVec4(0.55f, 0.85f, 0.55f, 1), "✓ %s", f.status.c_str());
      if (ImGui::IsItemHovered() && !f.status.empty()) ImGui::SetTooltip("%s", f.status.c_str());
      ImGui::Dummy(ImVec2(0, 2 * s));  // the status belongs to the field above, not the next
      ImGui::PopID();
    }
    ImGui::EndTable();
  }
  ImGui::Separator();
  const std::string blocker = importBlocker();
  ImGui::BeginDisabled(!blocker.empty());
  bool run = ImGui::Button("Import");
  app.hook("import_run");
  ImGui::EndDisabled();
  ImGui::SameLine();
  bool close = ImGui::Button("Cancel") || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape));
  app.hook("import_cancel");
  if (!blocker.empty()) {
    ImGui::SameLine();
    ImGui::AlignTextToFramePadding();
    ImGui::TextDisabled("%s", blocker.c_str());
  }
  if (run && blocker.empty()) {
    engine::ImportConfig cfg;
    cfg.workspace = importPath(importFields[kImportWorkspace].value);
    cfg.data = importPath(importFields[kImportData].value);
    cfg.embeddings = importPath(importFields[kImportEmbeddings].value);
    cfg.sae = importPath(importFields[kImportSae].value);
    cfg.backbone = importPath(importFields[kImportBackbone].value);
    app.startImport(cfg, {});
    close = true;
  }
  if (close) {
    app.checker.cancel();
    for (auto& f : importFields) f.pending = false;
    ImGui::CloseCurrentPopup();
    m_importOpen = false;
  }
  ImGui::EndPopup();
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
