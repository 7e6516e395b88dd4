// ui/view_browser_extras.cpp — a feature's extras under its grid: images sampled across its
// activation quantiles (one composed strip texture, like the grid), the attributes most correlated
// with it, and (sparse) its nearest features by decoder cosine. Everything here reads the
// immutable FeatureIndex: the samples and correlations were computed in the index pass; the
// neighbours cost F x D multiply-adds once per shown feature. Thumbnails decode on the cache's
// loader threads.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "app.h"

namespace ui {

namespace {
constexpr int kAttrRows = 8;  // at most, as many as fit beside the grid
constexpr int kNear = 8;      // nearest features listed

// Side of one quantile thumbnail on screen, for a panel content width `w`.
float stripCell(float w, float scale, int cellPx, int padPx) {
  const float n = engine::FeatureIndex::kQuantiles;
  return std::min(88 * scale, w / (n + (n + 1) * static_cast<float>(padPx) / cellPx));
}

int stripCellPixels(float scale) {
  return static_cast<int>(std::lround(88 * std::min(scale, 2.0f)));
}

std::string percentLabel(float q) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "p%d", static_cast<int>(std::lround(q * 100)));
  return buf;
}
}  // namespace

std::string BrowserView::stripKey(engine::FeatureKind k, int64_t id) const {
  return std::string("quant/") + engine::kindName(k) + "/" + std::to_string(id) + "/" +
         std::to_string(stripCellPixels(m_app.scale));
}

const Texture* BrowserView::requestStrip(engine::FeatureKind k, int64_t id, bool prefetchOnly) {
  auto d = m_app.data;
  if (!d || !d->index || id < 0 || id >= d->index->numFeatures(k)) return nullptr;
  if (d->index->quantiles(k, id).empty()) return nullptr;
  const int cell = stripCellPixels(m_app.scale);
  const int pad = padPixels();
  auto produce = [d, k, id, cell, pad]() {
    const auto& qs = d->index->quantiles(k, id);
    std::vector<engine::Image> thumbs;
    for (const auto& q : qs) {
      try {
        thumbs.push_back(engine::loadThumbnail(d->absolutePath(q.index), cell));
      } catch (const std::exception&) {
        thumbs.emplace_back();  // a grey cell: the image is missing or unreadable
      }
    }
    return engine::composeGrid(thumbs, static_cast<int>(thumbs.size()), cell, pad);
  };
  const std::string key = stripKey(k, id);
  if (prefetchOnly) {
    m_app.images.prefetch(key, produce);
    return nullptr;
  }
  return m_app.images.request(key, produce);
}

// Header line + strip + two label lines + the nearest-features block (two frame lines).
float BrowserView::extrasHeight(float width) const {
  const ImGuiStyle& st = ImGui::GetStyle();
  const int cellPx = stripCellPixels(m_app.scale), padPx = padPixels();
  const float side = stripCell(width, m_app.scale, cellPx, padPx);
  const float stripH = side * (cellPx + 2.0f * padPx) / cellPx;
  return ImGui::GetTextLineHeightWithSpacing() + stripH + st.ItemSpacing.y +
         2 * ImGui::GetTextLineHeight() + st.ItemSpacing.y + 2 * ImGui::GetFrameHeightWithSpacing();
}

void BrowserView::drawCorrelations(engine::FeatureKind kind, float width, float height) {
  const auto& index = *m_app.data->index;
  ImGui::BeginChild(kind == engine::FeatureKind::Sparse ? "corr_sparse" : "corr_dense",
                    ImVec2(width, height), false, ImGuiWindowFlags_NoScrollbar);
  ImGui::TextDisabled("Correlated attributes");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "Pearson r between this %s's activation and each binary attribute (±1),\n"
        "over the %lld images that have attributes (the manifest's attributes_file)",
        kind == engine::FeatureKind::Sparse ? "feature" : "dimension",
        static_cast<long long>(index.attributeImages()));
  if (index.attributeNames().empty()) {
    ImGui::PushTextWrapPos(0);
    ImGui::TextDisabled("none: the data set has no binary attributes");
    ImGui::PopTextWrapPos();
    ImGui::EndChild();
    return;
  }
  const float lineH = ImGui::GetTextLineHeightWithSpacing();
  const int rows =
      std::clamp(static_cast<int>(ImGui::GetContentRegionAvail().y / lineH), 1, kAttrRows);
  const auto corr = index.correlatedAttributes(kind, m_feature, rows);
  if (corr.empty()) ImGui::TextDisabled("none: the activation is constant");
  const float s = m_app.scale;
  const float barW = std::min(70 * s, width * 0.3f);
  const float valueW = ImGui::CalcTextSize("+0.00").x;
  ImDrawList* dl = ImGui::GetWindowDrawList();
  for (const auto& c : corr) {
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    const float nameW = std::max(10.0f, width - barW - valueW - 12 * s);
    ImGui::PushClipRect(p0, ImVec2(p0.x + nameW, p0.y + ImGui::GetTextLineHeight()), true);
    ImGui::TextUnformatted(c.name.c_str());
    ImGui::PopClipRect();
    if (ImGui::IsItemHovered())
      ImGui::SetTooltip("%s: r = %+.4f", c.name.c_str(), static_cast<double>(c.r));
    char val[16];
    std::snprintf(val, sizeof val, "%+.2f", static_cast<double>(c.r));
    const float x1 = p0.x + width - barW;
    const ImU32 col = c.r >= 0 ? IM_COL32(110, 200, 130, 255) : IM_COL32(235, 120, 110, 255);
    dl->AddText(ImVec2(x1 - valueW - 6 * s, p0.y), col, val);
    const float h = ImGui::GetTextLineHeight();
    dl->AddRectFilled(ImVec2(x1, p0.y + h * 0.25f), ImVec2(x1 + barW, p0.y + h * 0.75f),
                      ImGui::GetColorU32(ImGuiCol_FrameBg));
    dl->AddRectFilled(ImVec2(x1, p0.y + h * 0.25f),
                      ImVec2(x1 + barW * std::min(1.0f, std::abs(c.r)), p0.y + h * 0.75f), col);
  }
  ImGui::EndChild();
}

void BrowserView::drawExtras(engine::FeatureKind kind, float width) {
  App& app = m_app;
  const auto& index = *app.data->index;
  const bool sparse = kind == engine::FeatureKind::Sparse;
  const float s = app.scale;
  const auto& qs = index.quantiles(kind, m_feature);
  const int cellPx = stripCellPixels(s), padPx = padPixels();
  const float side = stripCell(width, s, cellPx, padPx);
  const float k = side / cellPx;  // screen pixels per texture pixel
  const float stripH = side * (cellPx + 2.0f * padPx) / cellPx;
  const float textH = ImGui::GetTextLineHeight();

  ImGui::TextDisabled("Across the distribution: %s",
                      sparse ? "images at the 5th…95th percentile of the active values"
                             : "images at the 5th…95th percentile of the values");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "Each image is the first (lowest index) whose activation falls in the same\n"
        "1/%d-range bin as the exact percentile; repeats are left out",
        engine::FeatureIndex::kQuantileBins);
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  const Texture* tex = requestStrip(kind, m_feature, false);
  if (qs.empty()) {
    ImGui::Dummy(ImVec2(width, stripH + ImGui::GetStyle().ItemSpacing.y + 2 * textH));
    ImGui::GetWindowDrawList()->AddText(ImVec2(p0.x + 4 * s, p0.y + stripH / 2 - textH / 2),
                                        ImGui::GetColorU32(ImGuiCol_TextDisabled),
                                        "no active images");
  } else {
    if (tex && tex->valid()) {
      ImGui::Image(tex->imguiId(), ImVec2(tex->width() * k, tex->height() * k));
      app.hook(sparse ? "quantiles_sparse" : "quantiles_dense");
      if (ImGui::IsItemHovered()) {
        const float u = (ImGui::GetIO().MousePos.x - p0.x) / k - padPx;
        const int i = static_cast<int>(std::floor(u / (cellPx + padPx)));
        if (u >= 0 && i >= 0 && i < static_cast<int>(qs.size())) {
          const auto& q = qs[static_cast<size_t>(i)];
          const ImVec2 c0(p0.x + (padPx + i * (cellPx + padPx)) * k, p0.y + padPx * k);
          ImGui::GetWindowDrawList()->AddRect(c0, ImVec2(c0.x + side, c0.y + side),
                                              IM_COL32(255, 200, 90, 255), 0, 0, 2.0f);
          const std::string rel = q.index < static_cast<int64_t>(app.data->images.size())
                                      ? app.data->images[static_cast<size_t>(q.index)]
                                      : std::string("?");
          ImGui::SetTooltip(
              "%s percentile  image %lld\n%s\nactivation %.4g (bin %.4g … %.4g)\n"
              "click to open",
              percentLabel(q.quantile).c_str(), static_cast<long long>(q.index), rel.c_str(),
              q.activation, q.lo, q.hi);
          if (ImGui::IsMouseClicked(0)) {
            m_detailRow = q.index;
            m_detailKind = kind;
            m_detailOpenRequest = true;
          }
        }
      }
    } else {
      ImGui::Dummy(ImVec2(width, stripH));
      const std::string err = app.images.error(stripKey(kind, m_feature));
      ImGui::GetWindowDrawList()->AddText(
          ImVec2(p0.x + 4 * s, p0.y + stripH / 2 - textH / 2),
          ImGui::GetColorU32(ImGuiCol_TextDisabled),
          err.empty() ? "loading images…" : ("images unavailable: " + err).c_str());
    }
    // Labels under each cell: the percentile, then the activation.
    const ImVec2 l0(p0.x, p0.y + stripH + ImGui::GetStyle().ItemSpacing.y);
    ImGui::SetCursorScreenPos(l0);
    ImGui::Dummy(ImVec2(width, 2 * textH));
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (size_t i = 0; i < qs.size(); ++i) {
      const float cx = p0.x + (padPx + i * (cellPx + padPx) + cellPx / 2.0f) * k;
      char val[24];
      std::snprintf(val, sizeof val, "%.3g", static_cast<double>(qs[i].activation));
      const std::string pl = percentLabel(qs[i].quantile);
      const float w1 = ImGui::CalcTextSize(pl.c_str()).x, w2 = ImGui::CalcTextSize(val).x;
      dl->AddText(ImVec2(cx - w1 / 2, l0.y), ImGui::GetColorU32(ImGuiCol_TextDisabled), pl.c_str());
      dl->AddText(ImVec2(cx - w2 / 2, l0.y + textH), ImGui::GetColorU32(ImGuiCol_Text), val);
    }
  }

  // Nearest features by decoder cosine (sparse only); buttons wrap onto a second line.
  const float x0 = ImGui::GetCursorPosX();
  ImGui::AlignTextToFramePadding();
  if (!sparse) {
    ImGui::TextDisabled("Nearest by decoder: n/a for dense dimensions (no decoder row)");
    ImGui::Dummy(ImVec2(0, ImGui::GetFrameHeight()));
    return;
  }
  ImGui::TextDisabled("Nearest by decoder");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "Sparse features whose decoder rows (weight_decoder) have the highest\n"
        "cosine with this one's; click one to show it");
  if (m_nearFor != m_feature || m_nearIndex != &index) {
    m_near = index.nearestByDecoder(m_feature, kNear);
    m_nearFor = m_feature;
    m_nearIndex = &index;
  }
  if (m_near.empty()) {
    ImGui::SameLine();
    ImGui::TextDisabled("none");
  }
  const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
  int line = 0;
  int64_t jump = -1;
  for (size_t i = 0; i < m_near.size(); ++i) {
    const auto& nf = m_near[i];
    char label[48];
    std::snprintf(label, sizeof label, "#%lld %.2f", static_cast<long long>(nf.feature),
                  static_cast<double>(nf.cosine));
    const float w = ImGui::CalcTextSize(label).x + ImGui::GetStyle().FramePadding.x * 2;
    ImGui::SameLine();
    if (ImGui::GetCursorScreenPos().x + w > right) {
      if (line == 1) break;  // two lines at most: the layout reserved them
      ++line;
      ImGui::NewLine();
      ImGui::SetCursorPosX(x0);
    }
    ImGui::PushID(static_cast<int>(i));
    if (ImGui::Button(label)) jump = nf.feature;
    ImGui::PopID();
    if (i == 0) app.hook("near_first");
    if (ImGui::IsItemHovered()) {
      auto note = app.notes.notes.find(FeatureNotes::key(true, nf.feature));
      const bool labelled = note != app.notes.notes.end() && !note->second.empty();
      ImGui::SetTooltip("sparse feature %lld: decoder cosine %.4f%s%s\nclick to show it",
                        static_cast<long long>(nf.feature), static_cast<double>(nf.cosine),
                        labelled ? "\nnote: " : "", labelled ? note->second.c_str() : "");
    }
  }
  if (line == 0) ImGui::Dummy(ImVec2(0, ImGui::GetFrameHeight()));
  if (jump >= 0) setFeature(jump);
}

}  // namespace ui
