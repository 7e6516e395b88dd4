// ui/feature_notes.h — what the user wrote about features and which ones they opened.
//
// WS/notes.json: {"format": 1, "notes": {"sparse/12": {"text": "smiling", "updated": ISO}, ...}}
// WS/seen.json:  {"format": 1, "seen": {"dense": [0, 1, ...], "sparse": [0, 5, ...]}}
//   seen.json lists the feature ids shown in the browser (both kinds of an id are shown together,
//   so both are listed); the blind study draws its default features from those NOT listed.
// Both files are written atomically (engine::writeFileAtomic). Thread-safety: a value type; the
// UI thread owns it and hands serialised text to a background writer.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace ui {

struct FeatureNotes {
  std::map<std::string, std::string> notes;  // "dense/3" → text
  std::map<std::string, std::string> updated;
  std::set<int64_t> seenDense, seenSparse;

  static std::string key(bool sparse, int64_t id) {
    return std::string(sparse ? "sparse/" : "dense/") + std::to_string(id);
  }
  // Loads both files from `wsDir`; missing files are empty. A damaged file throws engine::Error
  // naming it.
  static FeatureNotes load(const std::string& wsDir);
  std::string notesJson() const;
  std::string seenJson() const;
};

}  // namespace ui
