// engine/ratings.h — the ratings file of a blind study: WS/ratings/<study>.jsonl.
//
// One JSON object per line, appended (and fsync'ed) as each answer is given:
//   {"session": "...", "rater": "...", "trial": 3, "kind": "sparse"|"dense", "feature": 17,
//    "rating": 1..7 | null, "skipped": false, ...extra fields ("sae", "seed", "time", ...)}
// "skipped" may be absent (then a null rating means skipped); when present it must agree with
// "rating". Every other key is kept verbatim in Rating::extra.
//
// Thread-safety: the free functions are reentrant. A RatingsWriter is used by one thread at a
// time; two writers on the same file interleave whole lines only (O_APPEND).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace engine {

class LineAppender;

struct Rating {
  std::string session;        // one sitting of one rater; resumes keep the same session
  std::string rater;          // the name the rater typed
  int trial = 0;              // position in the session's shuffled trial order, from 0
  std::string kind;           // "sparse" or "dense"
  int64_t feature = 0;        // SAE feature id or embedding dimension, >= 0
  std::optional<int> rating;  // 1..7; empty when the trial was skipped
  nlohmann::json extra = nlohmann::json::object();  // every other key of the line, verbatim

  bool skipped() const { return !rating.has_value(); }
};

// The line's JSON object: `extra`'s keys plus the fixed fields (which win over `extra`),
// "rating" null and "skipped" true for a skipped trial.
nlohmann::json toJson(const Rating& r);

// Parses one line's JSON object. Throws engine::Error("<what is wrong>") without a location;
// readRatingsFile adds "<path>:<line>: ".
Rating ratingFromJson(const nlohmann::json& j);

// Reads a ratings file. Blank lines are ignored. A malformed line (bad JSON, missing or
// wrong-typed field, kind not sparse/dense, rating outside 1..7) throws
// engine::Error("<path>:<line>: <what is wrong>"). A last line that has no trailing newline and
// is not valid JSON is what a crash mid-write leaves: it is ignored, and a sentence saying so
// is appended to `warnings` when given. A missing or unreadable file throws engine::Error.
std::vector<Rating> readRatingsFile(const std::string& path,
                                    std::vector<std::string>* warnings = nullptr);
// readRatingsFile() on the file's text; `name` stands for the file in errors and warnings.
std::vector<Rating> parseRatings(const std::string& text, const std::string& name,
                                 std::vector<std::string>* warnings = nullptr);

// All ratings of all files, in order (file by file, line by line).
std::vector<Rating> readRatingsFiles(const std::vector<std::string>& paths,
                                     std::vector<std::string>* warnings = nullptr);

// Appends ratings to one file; each append() is written, flushed and fsync'ed before it returns,
// so killing the app loses no answer. Opening repairs a file whose last line was cut by a crash
// (no trailing newline): an incomplete line is removed, a complete one gets its newline, so the
// next line does not glue onto it. Creates missing parent folders. Throws engine::Error naming
// the path on any I/O failure.
class RatingsWriter {
 public:
  explicit RatingsWriter(const std::string& path);
  ~RatingsWriter();
  RatingsWriter(RatingsWriter&&) noexcept;
  RatingsWriter& operator=(RatingsWriter&&) noexcept;

  void append(const Rating& r);

  const std::string& path() const { return m_path; }
  // Empty, or one sentence saying what opening repaired (for the log or a status line).
  const std::string& repairNote() const { return m_repairNote; }

 private:
  std::string m_path;
  std::string m_repairNote;
  std::unique_ptr<LineAppender> m_out;
};

}  // namespace engine
