// ui/view_browser_detail.cpp — one image large: path, scores, strongest sparse features,
// attributes.
#include <imgui.h>

#include <algorithm>
#include <cmath>

#include "app.h"

namespace ui {

void BrowserView::drawDetail() {
  App& app = m_app;
  if (m_detailOpenRequest) {
    ImGui::OpenPopup("Image");
    m_detailOpenRequest = false;
  }
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowSize(ImVec2(std::min(1060 * app.scale, vp->WorkSize.x * 0.92f),
                                  std::min(700 * app.scale, vp->WorkSize.y * 0.9f)),
                           ImGuiCond_Appearing);
  ImGui::SetNextWindowPos(
      ImVec2(vp->WorkPos.x + vp->WorkSize.x / 2, vp->WorkPos.y + vp->WorkSize.y / 2),
      ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
  bool open = true;
  if (!ImGui::BeginPopupModal("Image", &open, ImGuiWindowFlags_NoSavedSettings)) {
    if (m_detailRow >= 0 && !ImGui::IsPopupOpen("Image")) m_detailRow = -1;
    return;
  }
  auto d = app.data;
  const int64_t row = m_detailRow;
  if (!d || !d->index || row < 0 || row >= static_cast<int64_t>(d->images.size()) ||
      ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) {
    ImGui::CloseCurrentPopup();
    ImGui::EndPopup();
    m_detailRow = -1;
    return;
  }
  const float s = app.scale;
  const int maxSide = static_cast<int>(std::lround(560 * s));
  const std::string key = "large/" + std::to_string(row) + "/" + std::to_string(maxSide);
  const Texture* tex = app.images.request(key, [d, row, maxSide]() {
    engine::Image img = engine::decodeImage(d->absolutePath(row));
    const float k = std::min(1.0f, static_cast<float>(maxSide) / std::max(img.width, img.height));
    const int w = std::max(1, static_cast<int>(std::lround(img.width * k)));
    const int h = std::max(1, static_cast<int>(std::lround(img.height * k)));
    return k < 1 ? engine::resizeBilinear(img, w, h) : img;
  });

  // Left: the image, as large as the window allows.
  const float availH = ImGui::GetContentRegionAvail().y - ImGui::GetFrameHeightWithSpacing();
  const float boxW = std::min(ImGui::GetContentRegionAvail().x * 0.55f, availH);
  ImGui::BeginChild("img", ImVec2(boxW, availH), false);
  if (tex && tex->valid()) {
    const float k = std::min(boxW / tex->width(), availH / tex->height());
    ImGui::Image(tex->imguiId(), ImVec2(tex->width() * k, tex->height() * k));
  } else {
    const std::string err = app.images.error(key);
    ImGui::TextDisabled("%s", err.empty() ? "loading…" : err.c_str());
  }
  ImGui::EndChild();
  ImGui::SameLine();

  // Right: facts.
  ImGui::BeginChild("facts", ImVec2(0, availH), false);
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::Text("Image %lld", static_cast<long long>(row));
  if (app.fontLarge) ImGui::PopFont();
  std::string path;
  try {
    path = d->absolutePath(row);
  } catch (const std::exception& e) {
    path = e.what();
  }
  ImGui::PushTextWrapPos(0);
  ImGui::TextUnformatted(path.c_str());
  ImGui::PopTextWrapPos();
  if (ImGui::SmallButton("Copy path")) ImGui::SetClipboardText(path.c_str());

  // Where this image stands in the feature it was opened from.
  for (auto kind : {engine::FeatureKind::Dense, engine::FeatureKind::Sparse}) {
    if (m_feature >= d->index->numFeatures(kind)) continue;
    const auto& top = d->index->top(kind, rule, m_feature);
    for (size_t i = 0; i < top.size(); ++i)
      if (top[i].index == row) {
        ImGui::Text("%s %lld: rank %zu, activation %.4g, score %.4g",
                    kind == engine::FeatureKind::Dense ? "dense" : "sparse",
                    static_cast<long long>(m_feature), i + 1, top[i].activation, top[i].score);
        break;
      }
  }

  ImGui::Spacing();
  ImGui::Separator();
  ImGui::TextUnformatted("Strongest sparse features");
  if (!d->index->hasSparse()) {
    ImGui::TextDisabled("no SAE in this workspace");
  } else {
    if (m_strongRow != row) {
      m_strong = d->index->strongestSparse(row, 10);
      m_strongRow = row;
    }
    if (m_strong.empty()) ImGui::TextDisabled("none active");
    for (const auto& [f, a] : m_strong) {
      ImGui::PushID(static_cast<int>(f));
      char label[64];
      std::snprintf(label, sizeof label, "#%lld", static_cast<long long>(f));
      if (ImGui::Button(label, ImVec2(80 * s, 0))) {
        setFeature(f);
        ImGui::CloseCurrentPopup();
      }
      if (ImGui::IsItemHovered())
        ImGui::SetTooltip("show sparse feature %lld", static_cast<long long>(f));
      ImGui::SameLine();
      ImGui::Text("%.4g", a);
      auto note = app.notes.notes.find(FeatureNotes::key(true, f));
      if (note != app.notes.notes.end() && !note->second.empty()) {
        ImGui::SameLine();
        ImGui::TextDisabled("%s", note->second.c_str());
      }
      ImGui::PopID();
    }
  }

  ImGui::Spacing();
  ImGui::Separator();
  ImGui::TextUnformatted("Attributes");
  if (d->attributes.empty()) {
    ImGui::TextDisabled("the data set has no attribute file");
  } else {
    const int64_t arow = d->attributes.rowForPath(d->images[static_cast<size_t>(row)]);
    if (arow < 0) {
      ImGui::TextDisabled("this image is not in %s", d->attributesFile.c_str());
    } else {
      std::string yes;
      for (size_t c = 0; c < d->attributes.names.size(); ++c)
        if (d->attributes.binary[c] && d->attributes.value(arow, c) > 0)
          yes += (yes.empty() ? "" : " · ") + d->attributes.names[c];
      ImGui::PushTextWrapPos(0);
      ImGui::TextUnformatted(yes.empty() ? "(no attribute set)" : yes.c_str());
      ImGui::PopTextWrapPos();
      for (size_t c = 0; c < d->attributes.names.size(); ++c)
        if (!d->attributes.binary[c])
          ImGui::Text("%s: %.4g", d->attributes.names[c].c_str(), d->attributes.value(arow, c));
    }
  }
  ImGui::EndChild();
  if (ImGui::Button("Close")) {
    ImGui::CloseCurrentPopup();
    m_detailRow = -1;
  }
  app.hook("detail_close");
  ImGui::EndPopup();
  if (!open) m_detailRow = -1;
}

}  // namespace ui
