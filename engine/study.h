// engine/study.h — the blind rating study protocol: planning, the study files, resume, exports.
//
// A study is two files in WS/ratings/:
//   <id>.plan.json  the plan, written atomically before the first trial: format, id, created,
//                   the config (rater, features per kind, choice, ids, seed, sae), the feature
//                   counts and the ids excluded as seen at planning time, the chosen ids and the
//                   shuffled trials [{"trial", "kind", "feature"}]. planStudy() on the recorded
//                   inputs reproduces the trials exactly (loadStudyPlan checks it).
//   <id>.jsonl      one engine::Rating per answer (ratings.h), appended and fsync'ed as given;
//                   session = the study id, trial = the position in the shuffled order.
// The id ("study-20261127-081233-alice-42": UTC time, rater, seed) is the only name the rater
// sees: it says nothing of kinds, features or order.
//
// Randomness is SplitMix64 with unbiased bounded draws and Fisher–Yates shuffles written out
// here (never std:: distributions, whose output differs between standard libraries), so a seed
// gives the same study on every platform.
//
// Thread-safety: free functions on values; file functions may run on any thread, one writer per
// study at a time.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "image.h"
#include "ratings.h"

namespace engine {

constexpr int kStudyFormat = 1;
// The question every trial asks, verbatim (DESIGN.md).
constexpr const char* kStudyQuestion =
    "How visually-consistent do images for this feature appear? (1 - 7)";

enum class StudyChoice { RandomUnseen, Explicit };

struct StudyConfig {
  std::string rater;
  int featuresPerKind = 16;  // RandomUnseen: ids to draw; Explicit: ignored (the list decides)
  StudyChoice choice = StudyChoice::RandomUnseen;
  std::string ids;  // Explicit: text such as "16-31, 40" (parseFeatureIds)
  uint64_t seed = 0;
  std::string sae = "sae.pt";  // which SAE the sparse features come from (recorded)
  std::string rank = "seed";   // ranking of the grids' images (recorded)
};
nlohmann::json toJson(const StudyConfig& c);
// Throws engine::Error naming the bad field.
StudyConfig studyConfigFromJson(const nlohmann::json& j);

// Parses "16-31, 40" (commas and/or spaces; '-' or '–' in ranges) into ascending ids, each in
// [0, limit). Throws engine::Error("feature ids: <what is wrong>") for an empty list, a token that
// is no id or range, a reversed range, an id out of range, or an id listed twice.
std::vector<int64_t> parseFeatureIds(const std::string& text, int64_t limit);

// SplitMix64: the study's only source of randomness.
class StudyRng {
 public:
  explicit StudyRng(uint64_t seed) : m_state(seed) {}
  uint64_t next();
  // Uniform in [0, n), n >= 1, without modulo bias (rejection).
  uint64_t below(uint64_t n);
  template <class T>
  void shuffle(std::vector<T>& v) {  // Fisher–Yates, from the back
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  uint64_t m_state;
};

struct StudyTrial {
  int trial = 0;
  std::string kind;  // "dense" or "sparse"
  int64_t feature = 0;
};

struct StudyPlan {
  std::string id;
  std::string created;  // ISO 8601 UTC
  StudyConfig config;
  int64_t numDense = 0, numSparse = 0;
  std::vector<int64_t> excluded;   // RandomUnseen: ids opened in the browser when planned
  std::vector<int64_t> features;   // chosen ids, ascending
  std::vector<StudyTrial> trials;  // one dense and one sparse per chosen id, shuffled
  int64_t chosenSeen = 0;          // Explicit: chosen ids already opened (not blind for them)
  int size() const { return static_cast<int>(trials.size()); }
};
nlohmann::json toJson(const StudyPlan& p);
// Throws engine::Error("<what is wrong>") for a malformed plan.
StudyPlan studyPlanFromJson(const nlohmann::json& j);

// Chooses the features and shuffles the trials. Ids valid for both kinds are [0, min(numDense,
// numSparse)). RandomUnseen draws featuresPerKind ids not in `seen`; Explicit takes
// config.ids. All randomness comes from StudyRng(config.seed): ids are drawn by a shuffle of
// the candidates, then the 2n trials are shuffled with the same generator. Leaves id/created
// empty. Throws engine::Error naming the field ("rater: ...", "features per kind: ...",
// "feature ids: ...") when the study cannot be made.
StudyPlan planStudy(const StudyConfig& config, int64_t numDense, int64_t numSparse,
                    const std::set<int64_t>& seen);

// "study-<YYYYMMDD>-<HHMMSS>-<rater>-<seed>" from an ISO time; the rater is reduced to
// [A-Za-z0-9_-] (at most 32 characters, "rater" when nothing is left).
std::string studyId(const std::string& rater, uint64_t seed, const std::string& isoTime);
std::string studyPlanPath(const std::string& wsDir, const std::string& id);
std::string studyRatingsPath(const std::string& wsDir, const std::string& id);

// Plans a study, gives it an id not used in WS/ratings/ yet and writes the plan atomically.
StudyPlan createStudy(const std::string& wsDir, const StudyConfig& config, int64_t numDense,
                      int64_t numSparse, const std::set<int64_t>& seen,
                      const std::string& isoTime = "");

// Reads a plan. Throws engine::Error naming the file. `reproducible`, when given, says whether
// planStudy() on the recorded inputs gives the recorded trials.
StudyPlan loadStudyPlan(const std::string& path, bool* reproducible = nullptr);

// Where a study stands: its ratings so far and the first trial without an answer.
struct StudyProgress {
  std::vector<Rating> ratings;        // this study's lines, in file order
  int next = 0;                       // first unanswered trial; == plan.size() when done
  int answered = 0, skipped = 0;      // distinct trials rated / skipped
  std::vector<std::string> warnings;  // an incomplete last line, ...
  bool done(const StudyPlan& p) const { return next >= p.size(); }
};
// Reads WS/ratings/<id>.jsonl (missing: nothing answered). Throws engine::Error with path:line
// for a malformed line or a line that contradicts the plan (another kind or feature for its
// trial, a trial outside the plan).
StudyProgress studyProgress(const StudyPlan& plan, const std::string& ratingsPath);

// The line recorded for `trial`: the plan's kind and feature, rating (empty = skipped), plus
// extra fields seed, study_format, time and response_ms.
Rating studyRating(const StudyPlan& plan, int trial, std::optional<int> rating, double responseMs,
                   const std::string& isoTime);

// The studies of a workspace (plans in WS/ratings/), newest first.
struct StudySummary {
  std::string id, rater, created, planPath, ratingsPath, error;  // error: plan unreadable
  int total = 0, answered = 0, skipped = 0, next = 0;
  bool done() const { return error.empty() && next >= total; }
};
std::vector<StudySummary> listStudies(const std::string& wsDir);
// Every WS/ratings/*.jsonl, sorted by name.
std::vector<std::string> ratingFiles(const std::string& wsDir);

// --- exports ---
// CSV of trials, one row per rating line: study,rater,trial,kind,feature,rating,skipped,time,
// response_ms (rating empty when skipped; RFC 4180 quoting). Written atomically.
std::string trialsCsv(const std::vector<Rating>& ratings);
void writeTrialsCsv(const std::string& path, const std::vector<Rating>& ratings);
// studyStatistics() JSON, indented, written atomically.
void writeStatisticsJson(const std::string& path, const nlohmann::json& stats);
// Bar chart of stats["histogram"]: ratings 1..7 on x, sparse and dense bars side by side, counts
// on y, a title and legend (stb_easy_font). RGB, rendered on the CPU.
Image renderHistogram(const nlohmann::json& stats, int width = 800, int height = 480);

}  // namespace engine
