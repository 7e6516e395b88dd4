// ui/study_views.h — the blind rating study (Rating tab) and its results (Results tab).
//
// The protocol lives in engine/study.h; these views only ask, show and record:
//   Rating   start form (rater, features per kind, random unseen or explicit ids, seed), the list
//            of the workspace's studies with Resume, then one trial at a time: the 4x4 grid of
//            the feature's top images, the question, buttons and keys 1–7, Skip (S), "trial 5 of
//            32". Nothing on screen names the kind, the feature id or the order (blindness).
//   Results  histogram of ratings 1..7 sparse vs dense (ImDrawList), describe() table, Student
//            and Welch t, Mann–Whitney U, Cohen's d with the 95% CI, per rater, Krippendorff's
//            alpha; exports (CSV of trials, statistics JSON, histogram PNG) to WS/exports/.
//
// Each answer is appended and fsync'ed (engine::RatingsWriter) on the UI thread before the next
// trial is drawn: a few milliseconds, and the only order that makes "killing the app loses
// nothing" true. Results are read from the ratings files when the tab opens or a file changed.
//
// Thread-safety: UI thread only. Grid pixels are produced on App::images' loader threads from
// the immutable WorkspaceData.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/ratings.h"
#include "engine/study.h"

namespace ui {

class App;
class Texture;

class StudyViews {
 public:
  explicit StudyViews(App& app);
  ~StudyViews();
  void drawRating();   // view_study.cpp
  void drawResults();  // view_results.cpp
  // False while the current trial's grid is still loading (screenshots wait for it).
  bool settled();
  // {"study": {...progress, no kind or feature...}, "results": {...statistics shown...}}
  nlohmann::json stateJson();
  // Script settings: study.rater, study.per_kind, study.choice (random|explicit), study.ids,
  // study.seed, results.source (all | a study id). False when `name` is not one of them.
  bool scriptSet(const std::string& name, const std::string& value);
  // Whether a study is being rated now (for the results' caution and the shortcuts).
  bool active() const { return m_plan.has_value() && m_next < m_plan->size(); }

 private:
  // rating (view_study.cpp)
  void syncWorkspace();
  void drawStart();
  void drawTrial();
  void drawFinished();
  void drawStudyList();
  void startStudy();
  void resumeStudy(const std::string& id);
  void leaveStudy();
  void answer(std::optional<int> rating);
  const Texture* trialGrid(int trial, bool prefetchOnly);
  std::string gridKey(int trial) const;
  void refreshStudies();
  // results (view_results.cpp)
  void loadResults();
  void drawHistogram(const nlohmann::json& block, float width, float height);
  void drawSummaryTable(const nlohmann::json& block, const char* id);
  void drawTests(const nlohmann::json& block, const char* id);
  void drawBlock(const nlohmann::json& block, const char* id, bool histogram);
  void exportResults(int what);  // 0 all, 1 csv, 2 json, 3 png

  App& m_app;
  std::string m_wsDir;

  // start form
  std::string m_rater;
  int m_perKind = 16;
  int m_choice = 0;  // 0 random unseen, 1 explicit
  std::string m_ids = "16-31";
  uint64_t m_seed = 0;
  std::string m_formError;

  // the study being rated
  std::optional<engine::StudyPlan> m_plan;
  std::unique_ptr<engine::RatingsWriter> m_writer;
  int m_next = 0, m_answered = 0, m_skipped = 0;
  bool m_reproducible = true;
  bool m_gridShown = false;
  std::chrono::steady_clock::time_point m_shownAt;
  std::string m_studyNote;

  std::vector<engine::StudySummary> m_studies;
  bool m_studiesDirty = true;

  // results
  std::string m_source;  // "" = every study of the workspace, else a study id
  bool m_resultsDirty = true;
  nlohmann::json m_stats;
  std::vector<engine::Rating> m_ratings;
  std::vector<std::string> m_resultsWarnings;
  std::string m_resultsError;
  std::string m_exportDir;
  std::vector<std::string> m_exported;
};

}  // namespace ui
