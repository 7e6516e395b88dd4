// ui/view_study.cpp — the Rating tab: start or resume a blind study, then rate one trial at a
// time. Blindness rules for everything drawn here while a study runs: no kind, no feature id, no
// hint of the order (only "trial N of M"), no tooltip or click-through on the grid; the file
// name shown is the study id (time, rater, seed).
//
// [SECTION] workspace and study list
// [SECTION] start form
// [SECTION] trial
// [SECTION] state and scripting
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "app.h"
#include "engine/error.h"
#include "engine/fsutil.h"
#include "study_views.h"

namespace ui {

namespace {
constexpr int kGridCols = 4;
constexpr int kGridImages = 16;

uint64_t freshSeed() {
  // Only picks the number that is then recorded; the plan's randomness is engine::StudyRng.
  return std::random_device{}() % 1000000;
}

std::set<int64_t> seenIds(const App& app) {
  std::set<int64_t> s(app.notes.seenDense.begin(), app.notes.seenDense.end());
  s.insert(app.notes.seenSparse.begin(), app.notes.seenSparse.end());
  return s;
}

void bigText(App& app, const char* text) {
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::TextUnformatted(text);
  if (app.fontLarge) ImGui::PopFont();
}

}  // namespace

void drawRatingView(App& app) {
  app.study->drawRating();
}

StudyViews::StudyViews(App& app) : m_app(app), m_seed(freshSeed()) {}
StudyViews::~StudyViews() = default;

// [SECTION] workspace and study list

void StudyViews::syncWorkspace() {
  const std::string dir = m_app.ws ? m_app.ws->dir() : std::string();
  if (dir == m_wsDir) return;
  m_wsDir = dir;
  m_plan.reset();
  m_writer.reset();
  m_studies.clear();
  m_studiesDirty = m_resultsDirty = true;
  m_source.clear();
  m_stats = nlohmann::json();
  m_ratings.clear();
  m_exported.clear();
  m_formError.clear();
  m_exportDir = dir.empty() ? std::string() : dir + "/exports";
}

void StudyViews::refreshStudies() {
  m_studiesDirty = false;
  m_studies = m_wsDir.empty() ? std::vector<engine::StudySummary>{} : engine::listStudies(m_wsDir);
}

void StudyViews::drawStudyList() {
  if (m_studiesDirty) refreshStudies();
  if (m_studies.empty()) return;
  ImGui::Spacing();
  ImGui::Separator();
  ImGui::Spacing();
  ImGui::TextUnformatted("Studies in this workspace");
  const bool ready = m_app.indexState == App::IndexState::Ready;
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerH |
                                ImGuiTableFlags_SizingFixedFit | ImGuiTableFlags_ScrollY;
  const float h = std::min<float>(ImGui::GetContentRegionAvail().y,
                                  ImGui::GetFrameHeightWithSpacing() * (m_studies.size() + 1.5f));
  if (!ImGui::BeginTable("studies", 5, flags, ImVec2(0, std::max(h, 60.0f)))) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  // Fixed widths: the layout is final in the first frame (scripted clicks aim at last frame's).
  const float s = m_app.scale;
  ImGui::TableSetupColumn("study (ratings/<study>.jsonl)", ImGuiTableColumnFlags_WidthFixed,
                          380 * s);
  ImGui::TableSetupColumn("rater", ImGuiTableColumnFlags_WidthFixed, 140 * s);
  ImGui::TableSetupColumn("progress", ImGuiTableColumnFlags_WidthFixed, 220 * s);
  ImGui::TableSetupColumn("", ImGuiTableColumnFlags_WidthFixed, 80 * s);
  ImGui::TableSetupColumn("", ImGuiTableColumnFlags_WidthFixed, 80 * s);
  ImGui::TableHeadersRow();
  for (size_t i = 0; i < m_studies.size(); ++i) {
    const auto& s = m_studies[i];
    ImGui::PushID(static_cast<int>(i));
    ImGui::TableNextRow();
    ImGui::TableSetColumnIndex(0);
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted(s.id.c_str());
    ImGui::TableSetColumnIndex(1);
    ImGui::TextUnformatted(s.rater.c_str());
    ImGui::TableSetColumnIndex(2);
    if (!s.error.empty()) {
      ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "unreadable");
      if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", s.error.c_str());
    } else if (s.done()) {
      ImGui::Text("finished: %d rated, %d skipped", s.answered, s.skipped);
    } else {
      ImGui::Text("%d of %d answered", s.answered + s.skipped, s.total);
    }
    ImGui::TableSetColumnIndex(3);
    if (s.error.empty() && !s.done()) {
      ImGui::BeginDisabled(!ready);
      if (ImGui::Button("Resume")) resumeStudy(s.id);
      m_app.hook(("study_resume_" + std::to_string(i)).c_str());
      ImGui::EndDisabled();
    }
    ImGui::TableSetColumnIndex(4);
    if (s.error.empty() && s.answered + s.skipped > 0) {
      if (ImGui::Button("Results")) {
        m_source = s.id;
        m_resultsDirty = true;
        m_app.switchView(View::Results);
      }
      m_app.hook(("study_results_" + std::to_string(i)).c_str());
    }
    ImGui::PopID();
  }
  ImGui::EndTable();
}

// [SECTION] start form

void StudyViews::drawRating() {
  syncWorkspace();
  if (m_plan && m_next < m_plan->size()) {
    drawTrial();
    return;
  }
  if (m_plan) {
    drawFinished();
    return;
  }
  drawStart();
}

void StudyViews::drawStart() {
  App& app = m_app;
  const float s = app.scale;
  ImGui::Dummy(ImVec2(0, 16 * s));
  ImGui::Indent(24 * s);
  bigText(app, "Blind rating study");
  ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + 760 * s);
  ImGui::TextDisabled(
      "Each chosen id gives two trials, its dense dimension and its sparse feature; all trials "
      "are shuffled and shown as 4x4 grids of top images without their kind. You rate each from "
      "1 to 7. Every answer is written to the workspace as you give it; a study can be left and "
      "resumed at any time.");
  ImGui::PopTextWrapPos();
  ImGui::Spacing();
  if (!app.ws) {
    ImGui::TextUnformatted("Open a workspace first (the bar above, or Ctrl+O).");
    ImGui::Unindent(24 * s);
    return;
  }
  const bool ready = app.indexState == App::IndexState::Ready && app.data && app.data->index;
  int64_t nd = 0, ns = 0;
  if (ready) {
    nd = app.data->index->numFeatures(engine::FeatureKind::Dense);
    ns = app.data->index->numFeatures(engine::FeatureKind::Sparse);
  }
  const int64_t limit = std::min(nd, ns);
  if (!ready) {
    ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1), "%s",
                       app.indexState == App::IndexState::Loading
                           ? "Loading the features…"
                           : "This workspace has no features yet: run the pipeline (embeddings "
                             "and an SAE) first.");
  } else if (ns == 0) {
    ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1),
                       "This workspace has no SAE yet: train one (Pipeline tab) to compare "
                       "sparse features with dense dimensions.");
  }

  const float labelW = 150 * s, fieldW = 260 * s;
  auto label = [&](const char* text) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted(text);
    ImGui::SameLine(labelW + ImGui::GetStyle().IndentSpacing);
    ImGui::SetCursorPosX(ImGui::GetCursorPosX());
  };
  ImGui::BeginDisabled(!ready || ns == 0);
  label("Rater");
  ImGui::SetNextItemWidth(fieldW);
  ImGui::InputTextWithHint("##rater", "your name", &m_rater);
  app.hook("study_rater");

  std::set<int64_t> seen = seenIds(app);
  int64_t unseen = 0;
  for (int64_t id = 0; id < limit; ++id) unseen += seen.count(id) ? 0 : 1;
  label("Features");
  if (ImGui::RadioButton("random, never opened in the browser", &m_choice, 0)) m_formError.clear();
  app.hook("study_choice_random");
  ImGui::SameLine();
  ImGui::TextDisabled("(%lld of %lld ids unseen)", static_cast<long long>(unseen),
                      static_cast<long long>(limit));
  label("");
  if (ImGui::RadioButton("these ids:", &m_choice, 1)) m_formError.clear();
  app.hook("study_choice_explicit");
  ImGui::SameLine();
  ImGui::BeginDisabled(m_choice != 1);
  ImGui::SetNextItemWidth(fieldW - 80 * s);
  ImGui::InputTextWithHint("##ids", "e.g. 16-31, 40", &m_ids);
  app.hook("study_ids");
  ImGui::EndDisabled();

  label("Features per kind");
  ImGui::BeginDisabled(m_choice != 0);
  ImGui::SetNextItemWidth(120 * s);
  ImGui::InputInt("##perkind", &m_perKind);
  m_perKind = std::clamp(m_perKind, 1, 100000);
  app.hook("study_per_kind");
  ImGui::EndDisabled();

  label("Seed");
  ImGui::SetNextItemWidth(120 * s);
  ImGui::InputScalar("##seed", ImGuiDataType_U64, &m_seed);
  app.hook("study_seed");
  ImGui::SameLine();
  if (ImGui::Button("New seed")) m_seed = freshSeed();
  ImGui::SameLine();
  ImGui::TextDisabled("recorded with the study; the same seed gives the same trials");

  // What Start will make.
  std::string preview;
  if (m_choice == 0) {
    preview = "2 x " + std::to_string(m_perKind) + " = " + std::to_string(2 * m_perKind) +
              " trials, shuffled; the kind is never shown.";
  } else if (limit > 0) {
    try {
      const auto ids = engine::parseFeatureIds(m_ids, limit);
      int64_t opened = 0;
      for (int64_t id : ids) opened += seen.count(id) ? 1 : 0;
      preview = std::to_string(ids.size()) + " ids: " + std::to_string(2 * ids.size()) +
                " trials, shuffled; the kind is never shown.";
      if (opened > 0)
        preview += " Note: " + std::to_string(opened) +
                   " of these ids were opened in the browser, so their ratings are not blind.";
    } catch (const engine::Error& e) {
      preview = e.what();
    }
  }
  ImGui::Spacing();
  ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + 760 * s);
  ImGui::TextDisabled("%s", preview.c_str());
  ImGui::PopTextWrapPos();
  if (ImGui::Button("Start study", ImVec2(160 * s, 0))) startStudy();
  app.hook("study_start");
  ImGui::EndDisabled();
  if (!m_formError.empty()) {
    ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + 760 * s);
    ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "%s", m_formError.c_str());
    ImGui::PopTextWrapPos();
  }
  drawStudyList();
  ImGui::Unindent(24 * s);
}

void StudyViews::startStudy() {
  App& app = m_app;
  m_formError.clear();
  if (!app.ws || !app.data || !app.data->index) return;
  engine::StudyConfig c;
  c.rater = m_rater;
  c.featuresPerKind = m_perKind;
  c.choice = m_choice == 1 ? engine::StudyChoice::Explicit : engine::StudyChoice::RandomUnseen;
  c.ids = m_ids;
  c.seed = m_seed;
  try {
    const auto plan = engine::createStudy(
        m_wsDir, c, app.data->index->numFeatures(engine::FeatureKind::Dense),
        app.data->index->numFeatures(engine::FeatureKind::Sparse), seenIds(app));
    m_seed = freshSeed();  // the next study gets its own unless the user types one
    resumeStudy(plan.id);
  } catch (const std::exception& e) {
    m_formError = e.what();
  }
}

void StudyViews::resumeStudy(const std::string& id) {
  m_formError.clear();
  try {
    bool reproducible = true;
    engine::StudyPlan plan =
        engine::loadStudyPlan(engine::studyPlanPath(m_wsDir, id), &reproducible);
    const std::string path = engine::studyRatingsPath(m_wsDir, id);
    const engine::StudyProgress prog = engine::studyProgress(plan, path);
    auto writer = std::make_unique<engine::RatingsWriter>(path);
    if (!writer->repairNote().empty()) m_app.message(Message::Info, writer->repairNote());
    m_studyNote.clear();
    if (!reproducible)
      m_studyNote = "this plan does not follow from its recorded seed (edited by hand?)";
    const auto& idx = m_app.data->index;
    if (idx && (idx->numFeatures(engine::FeatureKind::Dense) != plan.numDense ||
                idx->numFeatures(engine::FeatureKind::Sparse) != plan.numSparse))
      m_studyNote = "the workspace's features changed since this study was planned";
    m_plan = std::move(plan);
    m_writer = std::move(writer);
    m_next = prog.next;
    m_answered = prog.answered;
    m_skipped = prog.skipped;
    m_reproducible = reproducible;
    m_gridShown = false;
    m_studiesDirty = m_resultsDirty = true;
    m_rater = m_plan->config.rater;
  } catch (const std::exception& e) {
    m_formError = e.what();
  }
}

void StudyViews::leaveStudy() {
  m_plan.reset();
  m_writer.reset();
  m_studiesDirty = true;
}

// [SECTION] trial

std::string StudyViews::gridKey(int trial) const {
  return "study/" + m_plan->id + "/" + std::to_string(trial);
}

const Texture* StudyViews::trialGrid(int trial, bool prefetchOnly) {
  auto d = m_app.data;
  if (!m_plan || !d || !d->index || trial < 0 || trial >= m_plan->size()) return nullptr;
  const engine::StudyTrial& t = m_plan->trials[static_cast<size_t>(trial)];
  const engine::FeatureKind k =
      t.kind == "sparse" ? engine::FeatureKind::Sparse : engine::FeatureKind::Dense;
  if (t.feature >= d->index->numFeatures(k)) return nullptr;
  const engine::RankRule r =
      m_plan->config.rank == "raw" ? engine::RankRule::Raw : engine::RankRule::Seed;
  const int cell = static_cast<int>(std::lround(200 * std::min(m_app.scale, 2.0f)));
  const int pad = std::max(2, static_cast<int>(std::lround(4 * m_app.scale)));
  const int64_t feature = t.feature;
  auto produce = [d, k, r, feature, cell, pad]() {
    const auto& top = d->index->top(k, r, feature);
    std::vector<engine::Image> thumbs;
    const size_t n = std::min<size_t>(kGridImages, top.size());
    for (size_t i = 0; i < n; ++i) {
      try {
        thumbs.push_back(engine::loadThumbnail(d->absolutePath(top[i].index), cell));
      } catch (const std::exception&) {
        thumbs.emplace_back();
      }
    }
    if (thumbs.empty()) return engine::Image{};
    return engine::composeGrid(thumbs, kGridCols, cell, pad);
  };
  const std::string key = gridKey(trial);
  if (prefetchOnly) {
    m_app.images.prefetch(key, produce);
    return nullptr;
  }
  return m_app.images.request(key, produce);
}

void StudyViews::answer(std::optional<int> rating) {
  if (!active() || !m_writer) return;
  const double ms =
      m_gridShown
          ? std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m_shownAt)
                .count()
          : 0.0;
  try {
    // Written and fsync'ed before the next trial can be drawn.
    m_writer->append(engine::studyRating(*m_plan, m_next, rating, ms, ""));
  } catch (const std::exception& e) {
    m_app.message(Message::Error, std::string("the answer was not saved: ") + e.what());
    return;
  }
  (rating ? m_answered : m_skipped) += 1;
  ++m_next;
  m_gridShown = false;
  m_studiesDirty = m_resultsDirty = true;
}

void StudyViews::drawTrial() {
  App& app = m_app;
  const float s = app.scale;
  const engine::StudyPlan& plan = *m_plan;
  const Texture* tex = trialGrid(m_next, false);
  const std::string err = app.images.error(gridKey(m_next));
  // Rate only what was seen; a grid that cannot be shown can only be skipped.
  const bool canRate = tex && tex->valid();
  const bool canAnswer = canRate || !err.empty() || !app.data || !app.data->index;
  if (tex && tex->valid() && !m_gridShown) {
    m_gridShown = true;
    m_shownAt = std::chrono::steady_clock::now();
  }
  if (tex) trialGrid(m_next + 1, true);

  // Keys 1–7 (top row or keypad) and S, unless a text field or popup has the keyboard.
  const ImGuiIO& io = ImGui::GetIO();
  std::optional<std::optional<int>> keyAnswer;
  if (canAnswer && !io.WantTextInput && !io.KeyCtrl &&
      !ImGui::IsPopupOpen(nullptr, ImGuiPopupFlags_AnyPopupId)) {
    for (int v = 1; v <= 7 && canRate; ++v)
      if (ImGui::IsKeyPressed(GLFW_KEY_0 + v, false) ||
          ImGui::IsKeyPressed(GLFW_KEY_KP_0 + v, false))
        keyAnswer = std::optional<int>(v);
    if (ImGui::IsKeyPressed(GLFW_KEY_S, false)) keyAnswer = std::optional<int>();
  }

  // Header: the study (by its neutral id), the rater, progress.
  ImGui::AlignTextToFramePadding();
  bigText(app, "Blind rating study");
  ImGui::SameLine(0, 20 * s);
  ImGui::TextDisabled("rater %s  ·  %s", plan.config.rater.c_str(),
                      ("ratings/" + plan.id + ".jsonl").c_str());
  char progress[64];
  std::snprintf(progress, sizeof progress, "trial %d of %d", m_next + 1, plan.size());
  const float pw = 200 * s;
  const float tw = ImGui::CalcTextSize(progress).x;
  ImGui::SameLine(
      std::max(ImGui::GetCursorPosX() + 10 * s, ImGui::GetContentRegionMax().x - pw - tw - 16 * s));
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::TextUnformatted(progress);
  if (app.fontLarge) ImGui::PopFont();
  app.hook("study_progress");
  ImGui::SameLine();
  ImGui::ProgressBar(static_cast<float>(m_next) / std::max(1, plan.size()),
                     ImVec2(pw, ImGui::GetTextLineHeight()), "");
  if (!m_studyNote.empty())
    ImGui::TextColored(ImVec4(1, 0.8f, 0.4f, 1), "Note: %s", m_studyNote.c_str());

  // The grid, as large as the space above the question allows.
  const float answerH = 150 * s;
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float side = std::max(120.0f, std::min(avail.x, avail.y - answerH));
  const float x0 = ImGui::GetCursorPosX() + std::max(0.0f, (avail.x - side) / 2);
  ImGui::SetCursorPosX(x0);
  if (tex && tex->valid()) {
    const float aspect = static_cast<float>(tex->height()) / std::max(1, tex->width());
    ImGui::Image(tex->imguiId(), ImVec2(side, side * aspect));
  } else {
    ImGui::BeginChild("grid_placeholder", ImVec2(side, side), true);
    ImGui::SetCursorPos(ImVec2(side / 2 - 60 * s, side / 2 - 10 * s));
    if (!err.empty())
      ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "images not available: skip (S)");
    else
      ImGui::TextDisabled("loading images…");
    ImGui::EndChild();
  }
  app.hook("study_grid");

  // The question, verbatim, and the answers.
  ImGui::Spacing();
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  const float qw = ImGui::CalcTextSize(engine::kStudyQuestion).x;
  ImGui::SetCursorPosX(std::max(ImGui::GetCursorPosX(), (ImGui::GetContentRegionMax().x - qw) / 2));
  ImGui::TextUnformatted(engine::kStudyQuestion);
  if (app.fontLarge) ImGui::PopFont();
  app.hook("study_question");
  ImGui::Spacing();

  const float b = 52 * s, gap = 10 * s;
  const float skipW = 110 * s;
  const float rowW = 7 * b + 6 * gap + 2 * gap + skipW;
  ImGui::SetCursorPosX(
      std::max(ImGui::GetCursorPosX(), (ImGui::GetContentRegionMax().x - rowW) / 2));
  std::optional<std::optional<int>> clicked;
  ImGui::BeginDisabled(!canRate);
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  for (int v = 1; v <= 7; ++v) {
    if (v > 1) ImGui::SameLine(0, gap);
    char lbl[8];
    std::snprintf(lbl, sizeof lbl, "%d", v);
    if (ImGui::Button(lbl, ImVec2(b, b))) clicked = std::optional<int>(v);
    app.hook(("rate_" + std::to_string(v)).c_str());
  }
  if (app.fontLarge) ImGui::PopFont();
  ImGui::EndDisabled();
  ImGui::SameLine(0, 3 * gap);
  ImGui::BeginDisabled(!canAnswer);
  if (ImGui::Button("Skip (S)", ImVec2(skipW, b))) clicked = std::optional<int>();
  app.hook("rate_skip");
  ImGui::EndDisabled();

  ImGui::Spacing();
  const char* hint = "keys 1-7 rate, S skips  ·  each answer is saved as you give it";
  ImGui::SetCursorPosX(std::max(
      ImGui::GetCursorPosX(), (ImGui::GetContentRegionMax().x - ImGui::CalcTextSize(hint).x) / 2));
  ImGui::TextDisabled("%s", hint);
  ImGui::SameLine(ImGui::GetContentRegionMax().x - 150 * s);
  if (ImGui::Button("Pause study", ImVec2(140 * s, 0))) {
    leaveStudy();
    return;
  }
  app.hook("study_pause");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Leave now; Resume continues at this trial");

  if (clicked)
    answer(*clicked);
  else if (keyAnswer)
    answer(*keyAnswer);
}

void StudyViews::drawFinished() {
  App& app = m_app;
  const float s = app.scale;
  ImGui::Dummy(ImVec2(0, 30 * s));
  ImGui::Indent(30 * s);
  bigText(app, "Study complete — thank you");
  ImGui::Text("%d trials: %d rated, %d skipped. Saved in ratings/%s.jsonl.", m_plan->size(),
              m_answered, m_skipped, m_plan->id.c_str());
  ImGui::TextDisabled("The results tab now reveals which grids were dense and which sparse.");
  ImGui::Spacing();
  if (ImGui::Button("Show results", ImVec2(160 * s, 0))) {
    m_source = m_plan->id;
    m_resultsDirty = true;
    leaveStudy();
    m_app.switchView(View::Results);
  }
  app.hook("study_show_results");
  ImGui::SameLine();
  if (ImGui::Button("Back to studies", ImVec2(160 * s, 0))) leaveStudy();
  app.hook("study_back");
  ImGui::Unindent(30 * s);
}

// [SECTION] state and scripting

bool StudyViews::settled() {
  if (m_app.view != View::Rating || !active()) return true;
  const std::string key = gridKey(m_next);
  return m_app.images.get(key) != nullptr || !m_app.images.error(key).empty();
}

nlohmann::json StudyViews::stateJson() {
  nlohmann::json st;
  st["active"] = active();
  st["id"] = m_plan ? nlohmann::json(m_plan->id) : nlohmann::json(nullptr);
  st["trial"] = m_next;  // position only: never the kind or the feature
  st["total"] = m_plan ? m_plan->size() : 0;
  st["answered"] = m_answered;
  st["skipped"] = m_skipped;
  st["reproducible"] = m_reproducible;
  st["grid_loaded"] = active() && m_app.images.get(gridKey(m_next)) != nullptr;
  st["form_error"] = m_formError;
  st["studies"] = nlohmann::json::array();
  for (const auto& s : m_studies)
    st["studies"].push_back({{"id", s.id},
                             {"rater", s.rater},
                             {"total", s.total},
                             {"answered", s.answered},
                             {"skipped", s.skipped},
                             {"done", s.done()},
                             {"error", s.error}});
  nlohmann::json res;
  res["source"] = m_source.empty() ? "all" : m_source;
  res["ratings"] = m_ratings.size();
  res["stats"] = m_stats;
  res["error"] = m_resultsError;
  res["warnings"] = m_resultsWarnings;
  res["exported"] = m_exported;
  return {{"study", st}, {"results", res}};
}

bool StudyViews::scriptSet(const std::string& name, const std::string& v) {
  if (name == "study.rater")
    m_rater = v;
  else if (name == "study.per_kind")
    m_perKind = static_cast<int>(std::stoll(v));
  else if (name == "study.choice")
    m_choice = v == "explicit" ? 1 : 0;
  else if (name == "study.ids")
    m_ids = v;
  else if (name == "study.seed")
    m_seed = static_cast<uint64_t>(std::stoull(v));
  else if (name == "results.source") {
    m_source = v == "all" ? "" : v;
    m_resultsDirty = true;
  } else if (name == "results.export_dir")
    m_exportDir = v;
  else
    return false;
  return true;
}

}  // namespace ui
