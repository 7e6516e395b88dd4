// ui/view_results.cpp — the Results tab: what the ratings say, sparse vs dense.
//
// Every number comes from engine::studyStatistics() (the same JSON `saescope stats --json`
// prints); undefined values arrive as null and are drawn as "–" with the engine's sentence saying
// why, so no NaN or Inf ever reaches the screen.
//
// [SECTION] loading
// [SECTION] histogram, tables
// [SECTION] view and exports
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "app.h"
#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/stats.h"
#include "study_views.h"

namespace ui {

namespace {

const ImU32 kSparseCol = IM_COL32(230, 130, 40, 255);
const ImU32 kDenseCol = IM_COL32(60, 110, 190, 255);

const nlohmann::json& at(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// A number as text, "–" when undefined (null, NaN, Inf, missing).
std::string num(const nlohmann::json& v, const char* fmt = "%.4f") {
  if (!v.is_number()) return "–";
  const double x = v.get<double>();
  if (!std::isfinite(x)) return "–";
  char buf[48];
  std::snprintf(buf, sizeof buf, fmt, x);
  return buf;
}

std::string pValue(const nlohmann::json& v) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) return "–";
  const double p = v.get<double>();
  char buf[48];
  std::snprintf(buf, sizeof buf, p < 1e-4 ? "%.2e" : "%.4f", p);
  return buf;
}

int64_t count(const nlohmann::json& block, const char* kind) {
  const auto& c = at(at(block, kind), "count");
  return c.is_number() ? c.get<int64_t>() : 0;
}

}  // namespace

// [SECTION] loading

void StudyViews::loadResults() {
  m_resultsDirty = false;
  m_resultsError.clear();
  m_resultsWarnings.clear();
  m_ratings.clear();
  m_stats = nlohmann::json();
  if (m_wsDir.empty()) return;
  try {
    std::vector<std::string> files;
    if (m_source.empty()) {
      files = engine::ratingFiles(m_wsDir);
    } else {
      const std::string p = engine::studyRatingsPath(m_wsDir, m_source);
      if (engine::fileExists(p)) files.push_back(p);
    }
    m_ratings = engine::readRatingsFiles(files, &m_resultsWarnings);
    m_stats = engine::studyStatistics(m_ratings);
  } catch (const std::exception& e) {
    m_resultsError = e.what();
    m_ratings.clear();
  }
}

// [SECTION] histogram, tables

void StudyViews::drawHistogram(const nlohmann::json& block, float width, float height) {
  const float s = m_app.scale;
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  ImGui::InvisibleButton("histogram", ImVec2(width, height));
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const auto& hist = at(block, "histogram");
  int64_t hs[7] = {}, hd[7] = {}, top = 1;
  for (int i = 0; i < 7; ++i) {
    const auto& a = at(hist, "sparse");
    const auto& b = at(hist, "dense");
    hs[i] = a.is_array() && i < static_cast<int>(a.size()) ? a[i].get<int64_t>() : 0;
    hd[i] = b.is_array() && i < static_cast<int>(b.size()) ? b[i].get<int64_t>() : 0;
    top = std::max({top, hs[i], hd[i]});
  }
  const ImU32 ink = ImGui::GetColorU32(ImGuiCol_Text);
  const ImU32 faint = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  const ImU32 gridCol = ImGui::GetColorU32(ImGuiCol_Border);
  const float lh = ImGui::GetTextLineHeight();
  // Legend.
  const std::string ls = "sparse (n=" + std::to_string(count(block, "sparse")) + ")";
  const std::string ld = "dense (n=" + std::to_string(count(block, "dense")) + ")";
  float lx = p0.x + 40 * s;
  dl->AddRectFilled(ImVec2(lx, p0.y + 3 * s), ImVec2(lx + 12 * s, p0.y + lh - 2 * s), kSparseCol);
  dl->AddText(ImVec2(lx + 16 * s, p0.y), ink, ls.c_str());
  lx += 16 * s + ImGui::CalcTextSize(ls.c_str()).x + 20 * s;
  dl->AddRectFilled(ImVec2(lx, p0.y + 3 * s), ImVec2(lx + 12 * s, p0.y + lh - 2 * s), kDenseCol);
  dl->AddText(ImVec2(lx + 16 * s, p0.y), ink, ld.c_str());

  const float left = p0.x + 40 * s, right = p0.x + width - 8 * s;
  const float topY = p0.y + 2 * lh + 14 * s, bottom = p0.y + height - 2 * lh - 8 * s;
  int64_t step = 1;
  while (top / step > 5) step = step == 1 ? 2 : step == 2 ? 5 : step * 2;
  const double ymax = static_cast<double>((top + step - 1) / step * step);
  for (int64_t v = 0; v <= static_cast<int64_t>(ymax); v += step) {
    const float y = bottom - static_cast<float>(v / ymax) * (bottom - topY);
    dl->AddLine(ImVec2(left, y), ImVec2(right, y), gridCol);
    const std::string t = std::to_string(v);
    dl->AddText(ImVec2(left - 6 * s - ImGui::CalcTextSize(t.c_str()).x, y - lh / 2), faint,
                t.c_str());
  }
  const float slot = (right - left) / 7;
  const float bw = slot * 0.36f;
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  int hovered = -1;
  for (int i = 0; i < 7; ++i) {
    const float cx = left + slot * (i + 0.5f);
    const float ys = bottom - static_cast<float>(hs[i] / ymax) * (bottom - topY);
    const float yd = bottom - static_cast<float>(hd[i] / ymax) * (bottom - topY);
    dl->AddRectFilled(ImVec2(cx - bw - 1, ys), ImVec2(cx - 1, bottom), kSparseCol);
    dl->AddRectFilled(ImVec2(cx + 1, yd), ImVec2(cx + bw + 1, bottom), kDenseCol);
    if (hs[i] > 0) {
      const std::string t = std::to_string(hs[i]);
      dl->AddText(ImVec2(cx - bw / 2 - ImGui::CalcTextSize(t.c_str()).x / 2 - 1, ys - lh), faint,
                  t.c_str());
    }
    if (hd[i] > 0) {
      const std::string t = std::to_string(hd[i]);
      dl->AddText(ImVec2(cx + bw / 2 - ImGui::CalcTextSize(t.c_str()).x / 2 + 1, yd - lh), faint,
                  t.c_str());
    }
    const std::string t = std::to_string(i + 1);
    dl->AddText(ImVec2(cx - ImGui::CalcTextSize(t.c_str()).x / 2, bottom + 4 * s), ink, t.c_str());
    if (mouse.x >= cx - slot / 2 && mouse.x < cx + slot / 2 && mouse.y >= topY && mouse.y <= bottom)
      hovered = i;
  }
  dl->AddLine(ImVec2(left, bottom), ImVec2(right, bottom), ink);
  const char* xl = "rating (how visually consistent, 1-7)";
  dl->AddText(ImVec2((left + right) / 2 - ImGui::CalcTextSize(xl).x / 2, bottom + lh + 6 * s),
              faint, xl);
  if (hovered >= 0 && ImGui::IsItemHovered())
    ImGui::SetTooltip("rating %d: %lld sparse, %lld dense", hovered + 1,
                      static_cast<long long>(hs[hovered]), static_cast<long long>(hd[hovered]));
}

void StudyViews::drawSummaryTable(const nlohmann::json& block, const char* id) {
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInner |
                                ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_NoHostExtendX;
  if (!ImGui::BeginTable(id, 3, flags)) return;
  ImGui::TableSetupColumn("", ImGuiTableColumnFlags_WidthFixed, 60 * m_app.scale);
  ImGui::TableSetupColumn("sparse", ImGuiTableColumnFlags_WidthFixed, 100 * m_app.scale);
  ImGui::TableSetupColumn("dense", ImGuiTableColumnFlags_WidthFixed, 100 * m_app.scale);
  ImGui::TableHeadersRow();
  const char* rows[] = {"count", "mean", "std", "min", "25%", "50%", "75%", "max"};
  for (const char* r : rows) {
    ImGui::TableNextRow();
    ImGui::TableSetColumnIndex(0);
    ImGui::TextUnformatted(r);
    for (int k = 0; k < 2; ++k) {
      ImGui::TableSetColumnIndex(1 + k);
      const auto& v = at(at(block, k == 0 ? "sparse" : "dense"), r);
      const std::string t = std::string(r) == "count" ? num(v, "%.0f") : num(v, "%.4f");
      ImGui::SetCursorPosX(ImGui::GetCursorPosX() + ImGui::GetColumnWidth() -
                           ImGui::CalcTextSize(t.c_str()).x);
      ImGui::TextUnformatted(t.c_str());
    }
  }
  ImGui::EndTable();
}

void StudyViews::drawTests(const nlohmann::json& block, const char* id) {
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInner |
                                ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_NoHostExtendX;
  if (!ImGui::BeginTable(id, 4, flags)) return;
  ImGui::TableSetupColumn("sparse vs dense");
  ImGui::TableSetupColumn("statistic");
  ImGui::TableSetupColumn("df");
  ImGui::TableSetupColumn("p (two-sided)");
  ImGui::TableHeadersRow();
  auto row = [](const std::string& name, const std::string& stat, const std::string& df,
                const std::string& p) {
    ImGui::TableNextRow();
    ImGui::TableSetColumnIndex(0);
    ImGui::TextUnformatted(name.c_str());
    ImGui::TableSetColumnIndex(1);
    ImGui::TextUnformatted(stat.c_str());
    ImGui::TableSetColumnIndex(2);
    ImGui::TextUnformatted(df.c_str());
    ImGui::TableSetColumnIndex(3);
    ImGui::TextUnformatted(p.c_str());
  };
  const auto& st = at(block, "student_t");
  const auto& wt = at(block, "welch_t");
  const auto& mw = at(block, "mann_whitney");
  const auto& md = at(block, "mean_difference");
  row("Student's t (equal variances)", "t = " + num(at(st, "t")), num(at(st, "df"), "%.4g"),
      pValue(at(st, "p")));
  row("Welch's t", "t = " + num(at(wt, "t")), num(at(wt, "df"), "%.4g"), pValue(at(wt, "p")));
  const std::string method =
      at(mw, "method").is_string() ? " (" + at(mw, "method").get<std::string>() + ")" : "";
  row("Mann–Whitney U" + method, "U = " + num(at(mw, "u"), "%g"), "", pValue(at(mw, "p")));
  row("Cohen's d", "d = " + num(at(block, "cohens_d")), "", "");
  row("mean difference (sparse - dense)", num(at(md, "estimate")),
      "95% CI [" + num(at(md, "ci95_low")) + ", " + num(at(md, "ci95_high")) + "]", "");
  ImGui::EndTable();
}

void StudyViews::drawBlock(const nlohmann::json& block, const char* id, bool histogram) {
  const float s = m_app.scale;
  ImGui::PushID(id);
  const float histW = std::min(560 * s, ImGui::GetContentRegionAvail().x * 0.48f);
  if (histogram) {
    ImGui::BeginGroup();
    drawHistogram(block, histW, 300 * s);
    ImGui::EndGroup();
    m_app.hook((std::string("results_histogram_") + id).c_str());
    ImGui::SameLine(0, 24 * s);
  }
  ImGui::BeginGroup();
  drawSummaryTable(block, "describe");
  m_app.hook((std::string("results_describe_") + id).c_str());
  ImGui::Spacing();
  const auto& sk = at(block, "skipped");
  ImGui::TextDisabled("skipped trials (not counted): %s", num(sk, "%.0f").c_str());
  ImGui::EndGroup();
  ImGui::Spacing();
  drawTests(block, "tests");
  m_app.hook((std::string("results_tests_") + id).c_str());
  ImGui::TextDisabled("t > 0 and d > 0: sparse features were rated higher.");
  const auto& ms = at(block, "messages");
  ImGui::PushTextWrapPos(0);
  if (ms.is_array())
    for (const auto& m : ms)
      if (m.is_string()) ImGui::BulletText("%s", m.get<std::string>().c_str());
  ImGui::PopTextWrapPos();
  ImGui::PopID();
}

// [SECTION] view and exports

void drawResultsView(App& app) {
  app.study->drawResults();
}

void StudyViews::drawResults() {
  syncWorkspace();
  App& app = m_app;
  const float s = app.scale;
  if (!app.ws) {
    ImGui::Dummy(ImVec2(0, 30 * s));
    ImGui::Indent(30 * s);
    ImGui::TextUnformatted("Open a workspace to see the results of its rating studies.");
    ImGui::Unindent(30 * s);
    return;
  }
  if (m_studiesDirty) refreshStudies();
  if (m_resultsDirty) loadResults();

  // Source: every study pooled, or one.
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("Ratings from");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(420 * s);
  const std::string current = m_source.empty() ? "every study in this workspace" : m_source;
  if (ImGui::BeginCombo("##source", current.c_str())) {
    if (ImGui::Selectable("every study in this workspace", m_source.empty())) {
      m_source.clear();
      m_resultsDirty = true;
    }
    for (const auto& st : m_studies) {
      if (!st.error.empty()) continue;
      const std::string label = st.id + "  (" + st.rater + ", " +
                                std::to_string(st.answered + st.skipped) + "/" +
                                std::to_string(st.total) + ")";
      if (ImGui::Selectable(label.c_str(), m_source == st.id)) {
        m_source = st.id;
        m_resultsDirty = true;
      }
    }
    ImGui::EndCombo();
  }
  app.hook("results_source");
  ImGui::SameLine();
  if (ImGui::Button("Reload")) m_resultsDirty = m_studiesDirty = true;
  app.hook("results_reload");
  ImGui::SameLine();
  ImGui::TextDisabled("%zu ratings", m_ratings.size());
  if (active())
    ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1),
                       "A study is in progress: seeing results now can bias the ratings still "
                       "to come.");
  for (const auto& w : m_resultsWarnings)
    ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1), "%s", w.c_str());
  if (!m_resultsError.empty()) {
    ImGui::PushTextWrapPos(0);
    ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "%s", m_resultsError.c_str());
    ImGui::PopTextWrapPos();
    return;
  }
  if (m_ratings.empty()) {
    ImGui::Dummy(ImVec2(0, 20 * s));
    if (app.fontLarge) ImGui::PushFont(app.fontLarge);
    ImGui::TextUnformatted("No ratings yet");
    if (app.fontLarge) ImGui::PopFont();
    ImGui::TextDisabled(
        "Run a blind study in the Rating tab; its results appear here as you answer.");
    return;
  }

  ImGui::BeginChild("results_scroll", ImVec2(0, -ImGui::GetFrameHeightWithSpacing() * 1.4f));
  // Pooled over raters.
  const auto& raters = at(m_stats, "raters");
  const size_t nRaters = raters.is_object() ? raters.size() : 0;
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::Text("Sparse vs dense%s", nRaters > 1 ? ", pooled over raters" : "");
  if (app.fontLarge) ImGui::PopFont();
  drawBlock(m_stats, "pooled", true);

  // Agreement and per rater.
  const auto& ag = at(m_stats, "agreement");
  ImGui::Spacing();
  if (nRaters > 1) {
    ImGui::Text("Krippendorff's alpha (ordinal): %s  over %s features rated by several raters",
                num(at(m_stats, "krippendorff_alpha_ordinal")).c_str(),
                num(at(ag, "units"), "%.0f").c_str());
    app.hook("results_alpha");
    for (auto it = raters.begin(); it != raters.end(); ++it) {
      const std::string title = "Rater " + it.key();
      ImGui::PushID(it.key().c_str());
      if (ImGui::CollapsingHeader(title.c_str(), ImGuiTreeNodeFlags_DefaultOpen))
        drawBlock(it.value(), "rater", true);
      ImGui::PopID();
    }
  }
  ImGui::EndChild();

  // Exports.
  ImGui::Separator();
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("Export to");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(360 * s);
  ImGui::InputText("##exportdir", &m_exportDir);
  app.hook("export_dir");
  ImGui::SameLine();
  if (ImGui::Button("Trials CSV")) exportResults(1);
  app.hook("export_csv");
  ImGui::SameLine();
  if (ImGui::Button("Statistics JSON")) exportResults(2);
  app.hook("export_json");
  ImGui::SameLine();
  if (ImGui::Button("Histogram PNG")) exportResults(3);
  app.hook("export_png");
  ImGui::SameLine();
  if (ImGui::Button("All three")) exportResults(0);
  app.hook("export_all");
}

void StudyViews::exportResults(int what) {
  const std::string dir = m_exportDir.empty() ? m_wsDir + "/exports" : m_exportDir;
  const std::string base = dir + "/" + (m_source.empty() ? std::string("all-studies") : m_source);
  std::vector<std::string> wrote;
  try {
    if (what == 0 || what == 1) {
      engine::writeTrialsCsv(base + "-trials.csv", m_ratings);
      wrote.push_back(base + "-trials.csv");
    }
    if (what == 0 || what == 2) {
      engine::writeStatisticsJson(base + "-statistics.json", m_stats);
      wrote.push_back(base + "-statistics.json");
    }
    if (what == 0 || what == 3) {
      engine::writePng(base + "-histogram.png", engine::renderHistogram(m_stats));
      wrote.push_back(base + "-histogram.png");
    }
  } catch (const std::exception& e) {
    m_app.message(Message::Error, std::string("export failed: ") + e.what());
    return;
  }
  m_exported.insert(m_exported.end(), wrote.begin(), wrote.end());
  std::string text = "Exported ";
  for (size_t i = 0; i < wrote.size(); ++i) text += (i ? ", " : "") + wrote[i];
  m_app.message(Message::Info, text);
}

}  // namespace ui
