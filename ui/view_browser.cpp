// ui/view_browser.cpp — dense vs sparse 4x4 grids, navigation, per-feature stats and notes (the
// extras under each grid are in view_browser_extras.cpp).
//
// Each grid is composed on the CPU by engine::composeGrid on a loader thread and uploaded as ONE
// texture: one upload and one draw call per grid, a cache entry per (kind, rule, feature) that
// makes flipping back and forth instant, and the same pixels the engine's tests check. Clicks are
// mapped back to cells from the grid's geometry.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "app.h"
#include "engine/export.h"
#include "engine/fsutil.h"
#include "engine/workspace.h"
#include "plot.h"

namespace ui {

namespace {
constexpr int kCols = 4;
constexpr int kShown = 16;
// What an export reads, from the app's loaded data and notes (UI thread; the result is a value
// the writer thread may use).
engine::ExportSource exportSource(const App& app) {
  engine::ExportSource src;
  src.workspace = app.ws->dir();
  src.dataRoot = app.data->dataRoot;
  src.images = app.data->images;
  src.index = app.data->index;
  src.notes = app.notes.notes;
  src.updated = app.notes.updated;
  return src;
}

// Writes one export on the writer thread into WS/exports/ and reports the file in the banner.
void submitExport(App& app, const std::string& name,
                  std::function<void(const engine::ExportSource&, const std::string&)> write) {
  const std::string out = app.ws->path("exports/" + name);
  const engine::ExportSource src = exportSource(app);
  app.message(Message::Info, "Exporting " + out + " …");
  app.writer.submit("export", [&app, src, out, write](engine::JobContext&) {
    std::string msg;
    bool ok = true;
    try {
      write(src, out);
      msg = "Exported " + out;
    } catch (const std::exception& e) {
      ok = false;
      msg = std::string("Export failed: ") + e.what();
    }
    app.queue.post([&app, ok, msg] { app.message(ok ? Message::Info : Message::Error, msg); });
  });
}

// The Export menu: the current feature's grids, a contact sheet, CSV statistics, notes.
void exportMenu(App& app, int64_t feature, engine::RankRule rule) {
  if (ImGui::Button("Export ▾")) ImGui::OpenPopup("export_menu");
  app.hook("export");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Write PNG, CSV or Markdown files to WS/exports/");
  if (!ImGui::BeginPopup("export_menu")) return;
  const auto& index = *app.data->index;
  const std::string rk = engine::rankName(rule), id = std::to_string(feature);
  for (auto kind : {engine::FeatureKind::Sparse, engine::FeatureKind::Dense}) {
    if (feature >= index.numFeatures(kind)) continue;
    const std::string kn = engine::kindName(kind);
    if (ImGui::MenuItem((kn + " " + id + ": grid with id and scores (PNG)").c_str()))
      submitExport(app, kn + "-" + id + "-" + rk + ".png",
                   [kind, feature, rule](const engine::ExportSource& s, const std::string& out) {
                     engine::writePng(out, engine::renderFeatureCard(s, kind, feature, rule));
                   });
    app.hook(kind == engine::FeatureKind::Sparse ? "export_grid_sparse" : "export_grid_dense");
  }
  ImGui::Separator();
  for (auto kind : {engine::FeatureKind::Sparse, engine::FeatureKind::Dense}) {
    const int64_t n = index.numFeatures(kind);
    if (n == 0) continue;
    const int64_t first = std::min<int64_t>(feature, std::max<int64_t>(0, n - 64));
    const int64_t last = std::min<int64_t>(n - 1, first + 63);
    const std::string kn = engine::kindName(kind);
    const std::string range = std::to_string(first) + "-" + std::to_string(last);
    if (ImGui::MenuItem(("contact sheet: " + kn + " " + range + " (PNG)").c_str()))
      submitExport(
          app, kn + "-sheet-" + range + "-" + rk + ".png",
          [kind, first, last, rule](const engine::ExportSource& s, const std::string& out) {
            std::vector<int64_t> ids;
            for (int64_t i = first; i <= last; ++i) ids.push_back(i);
            engine::writePng(out, engine::renderContactSheet(s, kind, ids, rule));
          });
    app.hook(kind == engine::FeatureKind::Sparse ? "export_sheet_sparse" : "export_sheet_dense");
  }
  ImGui::Separator();
  if (ImGui::MenuItem("per-feature statistics and labels (CSV)"))
    submitExport(app, "features-" + rk + ".csv",
                 [rule](const engine::ExportSource& s, const std::string& out) {
                   engine::writeFileAtomic(out, engine::featureStatsCsv(s, rule));
                 });
  app.hook("export_csv");
  if (ImGui::MenuItem("feature notes (Markdown)"))
    submitExport(app, "notes.md", [](const engine::ExportSource& s, const std::string& out) {
      engine::writeFileAtomic(out, engine::notesExport(s, false));
    });
  app.hook("export_notes");
  ImGui::EndPopup();
}

}  // namespace

int BrowserView::cellPixels() const {
  return static_cast<int>(std::lround(160 * std::min(m_app.scale, 2.0f)));
}

int BrowserView::padPixels() const {
  return std::max(2, static_cast<int>(std::lround(3 * m_app.scale)));
}

std::string BrowserView::gridKey(engine::FeatureKind k, int64_t id) const {
  return std::string("grid/") + engine::kindName(k) + "/" + engine::rankName(rule) + "/" +
         std::to_string(id) + "/" + std::to_string(cellPixels());
}

const Texture* BrowserView::requestGrid(engine::FeatureKind k, int64_t id, bool prefetchOnly) {
  auto d = m_app.data;
  if (!d || !d->index || id < 0 || id >= d->index->numFeatures(k)) return nullptr;
  const engine::RankRule r = rule;
  const int cell = cellPixels();
  const int pad = padPixels();
  auto produce = [d, k, r, id, cell, pad]() {
    const auto& top = d->index->top(k, r, id);
    std::vector<engine::Image> thumbs;
    const size_t n = std::min<size_t>(kShown, top.size());
    for (size_t i = 0; i < n; ++i) {
      try {
        thumbs.push_back(engine::loadThumbnail(d->absolutePath(top[i].index), cell));
      } catch (const std::exception&) {
        thumbs.emplace_back();  // a grey cell: the image is missing or unreadable
      }
    }
    if (thumbs.empty()) return engine::Image{};
    return engine::composeGrid(thumbs, kCols, cell, pad);
  };
  const std::string key = gridKey(k, id);
  if (prefetchOnly) {
    m_app.images.prefetch(key, produce);
    return nullptr;
  }
  return m_app.images.request(key, produce);
}

void BrowserView::setFeature(int64_t id) {
  int64_t count = 0;
  if (m_app.data && m_app.data->index)
    count = std::max(m_app.data->index->numFeatures(engine::FeatureKind::Dense),
                     m_app.data->index->numFeatures(engine::FeatureKind::Sparse));
  if (count > 0) id = std::clamp<int64_t>(id, 0, count - 1);
  m_feature = std::max<int64_t>(0, id);
  m_jumpTo = m_feature;
}

bool BrowserView::gridLoaded(engine::FeatureKind k) {
  return m_app.data && m_app.data->index && m_app.images.get(gridKey(k, m_feature)) != nullptr;
}

bool BrowserView::gridsSettled() {
  auto d = m_app.data;
  if (!d || !d->index) return true;
  for (auto k : {engine::FeatureKind::Dense, engine::FeatureKind::Sparse}) {
    if (m_feature >= d->index->numFeatures(k)) continue;
    const std::string key = gridKey(k, m_feature);
    if (!m_app.images.get(key) && m_app.images.error(key).empty()) return false;
    if (!m_showExtras || d->index->quantiles(k, m_feature).empty()) continue;
    const std::string strip = stripKey(k, m_feature);
    if (!m_app.images.get(strip) && m_app.images.error(strip).empty()) return false;
  }
  return true;
}

void BrowserView::handleKeys(int64_t count) {
  const ImGuiIO& io = ImGui::GetIO();
  if (io.KeyCtrl && ImGui::IsKeyPressed(GLFW_KEY_F, false)) m_focusJump = true;
  if (io.WantTextInput || ImGui::IsPopupOpen(nullptr, ImGuiPopupFlags_AnyPopupId)) return;
  int64_t next = m_feature;
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_RightArrow))) next += 1;
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_LeftArrow))) next -= 1;
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_PageDown))) next += kShown;
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_PageUp))) next -= kShown;
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Home))) next = 0;
  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_End))) next = count - 1;
  if (next != m_feature) setFeature(std::clamp<int64_t>(next, 0, count - 1));
}

void BrowserView::drawToolbar(int64_t count) {
  App& app = m_app;
  ImGui::BeginDisabled(m_feature <= 0);
  if (ImGui::Button("◀ Previous")) setFeature(m_feature - 1);
  app.hook("prev");
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("Feature");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(90 * app.scale);
  if (m_focusJump) {
    ImGui::SetKeyboardFocusHere();
    m_focusJump = false;
  }
  long long jump = m_jumpTo;
  if (ImGui::InputScalar("##jump", ImGuiDataType_S64, &jump, nullptr, nullptr, "%lld",
                         ImGuiInputTextFlags_EnterReturnsTrue))
    setFeature(jump);
  else
    m_jumpTo = jump;
  app.hook("jump");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Type an id and press Enter (Ctrl+F)");
  ImGui::SameLine();
  ImGui::TextDisabled("of %lld", static_cast<long long>(count));
  ImGui::SameLine();
  ImGui::BeginDisabled(m_feature + 1 >= count);
  if (ImGui::Button("Next ▶")) setFeature(m_feature + 1);
  app.hook("next");
  ImGui::EndDisabled();

  ImGui::SameLine(0, 30 * app.scale);
  ImGui::TextUnformatted("Rank by");
  ImGui::SameLine();
  int r = rule == engine::RankRule::Seed ? 0 : 1;
  if (ImGui::RadioButton("reference (row-normalised)", &r, 0)) rule = engine::RankRule::Seed;
  app.hook("rank_seed");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "The reference ranking: each image's activation vector is L2-normalised, "
        "then images are sorted by this feature's share");
  ImGui::SameLine();
  if (ImGui::RadioButton("raw activation", &r, 1)) rule = engine::RankRule::Raw;
  app.hook("rank_raw");

  ImGui::SameLine(0, 30 * app.scale);
  ImGui::Checkbox("Details", &m_showExtras);
  app.hook("details");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "Under each grid: images across the activation quantiles, the most correlated "
        "attributes, the nearest features by decoder cosine (off: larger grids)");

  ImGui::SameLine(0, 30 * app.scale);
  exportMenu(app, m_feature, rule);

  const size_t opened = std::max(app.notes.seenDense.size(), app.notes.seenSparse.size());
  const std::string seen = std::to_string(opened) + " of " + std::to_string(count) + " ids opened";
  const float w = ImGui::CalcTextSize(seen.c_str()).x;
  ImGui::SameLine();
  const float x = ImGui::GetWindowContentRegionMax().x - w;
  if (x > ImGui::GetCursorPosX()) ImGui::SetCursorPosX(x);
  ImGui::TextDisabled("%s", seen.c_str());
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip(
        "Opened features are remembered (seen.json); a blind study leaves them out "
        "by default");
}

void BrowserView::drawMissing() {
  App& app = m_app;
  ImGui::Dummy(ImVec2(0, 30 * app.scale));
  ImGui::Indent(30 * app.scale);
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  if (!app.ws)
    ImGui::TextUnformatted("No workspace open");
  else if (app.indexState == App::IndexState::Loading)
    ImGui::TextUnformatted("Loading the features…");
  else if (app.indexState == App::IndexState::Failed)
    ImGui::TextUnformatted("The features could not be loaded");
  else
    ImGui::TextUnformatted("This workspace has no features to browse yet");
  if (app.fontLarge) ImGui::PopFont();

  if (!app.ws) {
    ImGui::TextDisabled("Open or create a workspace in the bar above (Ctrl+O).");
  } else if (app.indexState == App::IndexState::Loading) {
    const auto s = app.indexer.snapshot();
    ImGui::TextDisabled("Computing the top-%d images of every feature, once per workspace (%s)",
                        engine::FeatureIndex::kStoredK, s.stage.c_str());
    ImGui::ProgressBar(s.total > 0 ? static_cast<float>(s.done) / s.total : 0,
                       ImVec2(480 * app.scale, 0));
  } else if (app.indexState == App::IndexState::Failed) {
    ImGui::PushTextWrapPos(0);
    ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "%s", app.indexError.c_str());
    ImGui::PopTextWrapPos();
    if (ImGui::Button("Try again")) app.loadWorkspaceData();
  } else {
    ImGui::TextDisabled(
        "The browser shows images that activate each dense dimension of the "
        "embeddings and each sparse feature of the SAE. It needs:");
    ImGui::Spacing();
    const bool busy = app.pipeline.isBusy();
    struct Need {
      const char* stage;
      const char* what;
      const char* button;
      const char* hookName;
    } needs[] = {
        {"train", "a fine-tuned backbone (backbone.pt)", "Fine-tune the backbone", "need_train"},
        {"embed", "embeddings of every image (embeddings.npy)", "Compute embeddings", "need_embed"},
        {"sae", "a sparse autoencoder (sae.pt)", "Train the SAE", "need_sae"}};
    for (const auto& n : needs) {
      std::string status = "missing";
      for (const auto& s : app.stages)
        if (s.name == n.stage) status = s.status;
      const bool done = status == "done";
      ImGui::PushID(n.stage);
      ImGui::TextColored(done ? ImVec4(0.45f, 0.85f, 0.5f, 1) : ImVec4(1, 0.7f, 0.4f, 1), "%s",
                         done ? "✓" : "✗");
      ImGui::SameLine();
      ImGui::Text("%s — %s", n.what, status.c_str());
      if (!done) {
        ImGui::SameLine();
        ImGui::BeginDisabled(busy);
        if (ImGui::SmallButton(n.button)) {
          app.runStages(n.stage);
          app.switchView(View::Pipeline);
        }
        app.hook(n.hookName);
        ImGui::EndDisabled();
      }
      ImGui::PopID();
    }
    ImGui::Spacing();
    ImGui::BeginDisabled(busy);
    if (ImGui::Button("Run all stages")) {
      app.runStages("all");
      app.switchView(View::Pipeline);
    }
    ImGui::EndDisabled();
    if (busy) {
      ImGui::SameLine();
      ImGui::TextDisabled("a run is in progress (Pipeline tab)");
    }
  }
  ImGui::Unindent(30 * app.scale);
}

void BrowserView::draw() {
  App& app = m_app;
  if (!app.ws || app.indexState != App::IndexState::Ready || !app.data || !app.data->index) {
    drawMissing();
    return;
  }
  const auto& index = *app.data->index;
  const int64_t count = std::max(index.numFeatures(engine::FeatureKind::Dense),
                                 index.numFeatures(engine::FeatureKind::Sparse));
  if (count == 0) {
    ImGui::TextDisabled("The feature index is empty.");
    return;
  }
  if (m_feature >= count) setFeature(count - 1);
  drawToolbar(count);
  handleKeys(count);
  // Seen = shown in the browser (not merely selected at start-up): blind studies leave these out.
  app.markSeen(m_feature);

  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float gap = ImGui::GetStyle().ItemSpacing.x;
  const float w = (avail.x - gap) / 2;
  ImGui::BeginChild("dense", ImVec2(w, avail.y), true);
  drawPanel(engine::FeatureKind::Dense, w, avail.y);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("sparse", ImVec2(w, avail.y), true);
  drawPanel(engine::FeatureKind::Sparse, w, avail.y);
  ImGui::EndChild();

  // Neighbours load while the user looks at this one, once this one is on screen.
  if (gridsSettled()) {
    for (auto k : {engine::FeatureKind::Dense, engine::FeatureKind::Sparse}) {
      requestGrid(k, m_feature + 1, true);
      if (m_feature > 0) requestGrid(k, m_feature - 1, true);
      if (m_showExtras) requestStrip(k, m_feature + 1, true);
    }
  }
  drawDetail();
}

void BrowserView::drawPanel(engine::FeatureKind kind, float width, float height) {
  App& app = m_app;
  const auto& index = *app.data->index;
  const bool sparse = kind == engine::FeatureKind::Sparse;
  const float s = app.scale;
  const ImGuiStyle& st = ImGui::GetStyle();

  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::Text("%s %lld", sparse ? "Sparse feature" : "Dense dimension",
              static_cast<long long>(m_feature));
  if (app.fontLarge) ImGui::PopFont();

  if (sparse && !index.hasSparse()) {
    ImGui::Spacing();
    ImGui::TextDisabled("No sparse autoencoder in this workspace yet.");
    ImGui::BeginDisabled(app.pipeline.isBusy());
    if (ImGui::Button("Train the SAE")) {
      app.runStages("sae");
      app.switchView(View::Pipeline);
    }
    app.hook("need_sae");
    ImGui::EndDisabled();
    return;
  }
  const int64_t n = index.numFeatures(kind);
  if (m_feature >= n) {
    ImGui::TextDisabled("This workspace has %lld %s; this id is beyond them.",
                        static_cast<long long>(n), sparse ? "sparse features" : "dense dimensions");
    return;
  }
  const engine::FeatureStats& fs = index.stats(kind, m_feature);
  const double total = static_cast<double>(std::max<int64_t>(1, index.numImages()));
  ImGui::SameLine();
  if (fs.active == 0) {
    // A dead feature: its "top" images are arbitrary ties at zero; say so rather than mislead.
    ImGui::TextColored(ImVec4(1, 0.75f, 0.35f, 1), "  dead: active in none of the %lld images",
                       static_cast<long long>(index.numImages()));
  } else {
    ImGui::TextDisabled("  active in %lld of %lld images (%.1f%%)",
                        static_cast<long long>(fs.active),
                        static_cast<long long>(index.numImages()), 100.0 * fs.active / total);
  }

  // The grid: square, as large as the panel allows. Without the extras the stats block sits
  // under it; with them a column beside it holds the stats, histogram and correlated
  // attributes, and the quantile strip and neighbours run under both.
  const float contentW = ImGui::GetContentRegionAvail().x;
  const float colW = 230 * s;
  const float belowH = m_showExtras ? extrasHeight(contentW) + ImGui::GetFrameHeightWithSpacing() +
                                          st.ItemSpacing.y + st.WindowPadding.y
                                    : ImGui::GetTextLineHeightWithSpacing() + 78 * s +
                                          ImGui::GetFrameHeightWithSpacing() +
                                          st.ItemSpacing.y * 2 + st.WindowPadding.y;
  const float maxW = m_showExtras ? contentW - colW - st.ItemSpacing.x : contentW;
  const float side = std::max(120.0f, std::min(maxW, ImGui::GetContentRegionAvail().y - belowH));
  if (!m_showExtras) {
    const float x0 = ImGui::GetCursorPosX() + (contentW - side) / 2;
    ImGui::SetCursorPosX(std::max(ImGui::GetCursorPosX(), x0));
  }
  const Texture* tex = requestGrid(kind, m_feature, false);
  const std::string key = gridKey(kind, m_feature);
  if (tex && tex->valid()) {
    const float dispH = side * tex->height() / std::max(1, tex->width());
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    ImGui::Image(tex->imguiId(), ImVec2(side, dispH));
    app.hook(sparse ? "grid_sparse" : "grid_dense");
    if (ImGui::IsItemHovered()) {
      // Map the mouse back to a cell of composeGrid's layout (cols x rows, pad gaps, centred).
      const int cell = cellPixels(), pad = padPixels();
      const auto& topAll = index.top(kind, rule, m_feature);
      const int shown = static_cast<int>(std::min<size_t>(kShown, topAll.size()));
      const int rows = std::max(1, (shown + kCols - 1) / kCols);
      const float k = tex->width() / side;
      // Margins work for composeGrid with or without an outer border of `pad`.
      const float mx = (tex->width() - kCols * cell - (kCols - 1) * pad) / 2.0f;
      const float my = (tex->height() - rows * cell - (rows - 1) * pad) / 2.0f;
      const float u = (ImGui::GetIO().MousePos.x - p0.x) * k - mx;
      const float v = (ImGui::GetIO().MousePos.y - p0.y) * k - my;
      const int col = static_cast<int>(std::floor(u / (cell + pad)));
      const int row = static_cast<int>(std::floor(v / (cell + pad)));
      const float padX = static_cast<float>(pad), padY = static_cast<float>(pad);
      const auto& top = index.top(kind, rule, m_feature);
      const int i = row * kCols + col;
      if (u >= 0 && v >= 0 && col < kCols && i < shown) {
        const ImVec2 c0(p0.x + (mx + col * (cell + padX)) / k,
                        p0.y + (my + row * (cell + padY)) / k);
        ImGui::GetWindowDrawList()->AddRect(c0, ImVec2(c0.x + cell / k, c0.y + cell / k),
                                            IM_COL32(255, 200, 90, 255), 0, 0, 2.5f);
        const auto& e = top[static_cast<size_t>(i)];
        const std::string rel = e.index < static_cast<int64_t>(app.data->images.size())
                                    ? app.data->images[static_cast<size_t>(e.index)]
                                    : std::string("?");
        ImGui::SetTooltip("#%d  image %lld\n%s\nactivation %.4g   score %.4g\nclick to open", i + 1,
                          static_cast<long long>(e.index), rel.c_str(), e.activation, e.score);
        if (ImGui::IsMouseClicked(0)) {
          m_detailRow = e.index;
          m_detailKind = kind;
          m_detailOpenRequest = true;
        }
      }
    }
  } else {
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    ImGui::Dummy(ImVec2(side, side));
    ImDrawList* dl = ImGui::GetWindowDrawList();
    dl->AddRectFilled(p0, ImVec2(p0.x + side, p0.y + side), ImGui::GetColorU32(ImGuiCol_FrameBg),
                      4);
    const std::string err = app.images.error(key);
    const std::string msg = err.empty() ? "loading images…" : "images unavailable: " + err;
    const ImVec2 ts = ImGui::CalcTextSize(msg.c_str(), nullptr, false, side - 20);
    dl->AddText(nullptr, 0, ImVec2(p0.x + (side - ts.x) / 2, p0.y + (side - ts.y) / 2),
                ImGui::GetColorU32(err.empty() ? ImGuiCol_TextDisabled : ImGuiCol_Text),
                msg.c_str(), nullptr, side - 20);
  }

  // Stats and histogram (beside the grid with the extras, under it without).
  const auto& top = index.top(kind, rule, m_feature);
  const size_t shown = std::min<size_t>(kShown, top.size());
  std::vector<long long> hist(fs.histogram.begin(), fs.histogram.end());
  if (m_showExtras) {
    ImGui::SameLine();
    ImGui::BeginChild(sparse ? "side_sparse" : "side_dense", ImVec2(0, side), false,
                      ImGuiWindowFlags_NoScrollbar);
    // Two lines: a narrow column would otherwise wrap inside a number.
    ImGui::Text("mean %.4g", fs.mean);
    ImGui::Text("min %.4g   max %.4g", fs.min, fs.max);
    if (shown > 0) {
      ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
      ImGui::TextWrapped("shown: activation %.4g … %.4g", top[shown - 1].activation,
                         top[0].activation);
      ImGui::PopStyleColor();
    }
    const float histH = std::clamp(ImGui::GetContentRegionAvail().y * 0.45f, 40 * s, 110 * s);
    histogramPlot(sparse ? "hs" : "hd", hist, fs.histLo, fs.histHi, 0, histH);
    drawCorrelations(kind, ImGui::GetContentRegionAvail().x, ImGui::GetContentRegionAvail().y);
    ImGui::EndChild();
    drawExtras(kind, contentW);
  } else {
    ImGui::Text("mean %.4g   min %.4g   max %.4g", fs.mean, fs.min, fs.max);
    if (shown > 0) {
      ImGui::SameLine();
      ImGui::TextDisabled("   shown: activation %.4g … %.4g", top[shown - 1].activation,
                          top[0].activation);
    }
    histogramPlot(sparse ? "hs" : "hd", hist, fs.histLo, fs.histHi, 0, 78 * s);
  }

  // Note: saved to WS/notes.json when the field loses focus after an edit.
  const int ki = sparse ? 1 : 0;
  if (m_noteFor != m_feature) {
    for (int j = 0; j < 2; ++j) {
      auto it = app.notes.notes.find(FeatureNotes::key(j == 1, m_feature));
      m_noteBuf[j] = it == app.notes.notes.end() ? std::string() : it->second;
    }
    m_noteFor = m_feature;
  }
  ImGui::SetNextItemWidth(-1);
  ImGui::InputTextWithHint(sparse ? "##notesparse" : "##notedense",
                           "note or label for this feature (saved in the workspace)",
                           &m_noteBuf[ki]);
  app.hook(sparse ? "note_sparse" : "note_dense");
  if (ImGui::IsItemDeactivatedAfterEdit()) {
    const std::string k = FeatureNotes::key(sparse, m_feature);
    app.notes.notes[k] = m_noteBuf[ki];
    app.notes.updated[k] = engine::isoNow();
    app.saveNotes();
  }
  (void)height;
}

}  // namespace ui
