#include "feature_notes.h"

#include <exception>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/fsutil.h"

namespace ui {

FeatureNotes FeatureNotes::load(const std::string& wsDir) {
  FeatureNotes n;
  const std::string notesPath = wsDir + "/notes.json", seenPath = wsDir + "/seen.json";
  try {
    if (engine::fileExists(notesPath)) {
      const auto j = nlohmann::json::parse(engine::readFileText(notesPath));
      const nlohmann::json all = j.value("notes", nlohmann::json::object());
      for (const auto& [k, v] : all.items()) {
        n.notes[k] = v.value("text", std::string());
        n.updated[k] = v.value("updated", std::string());
      }
    }
  } catch (const std::exception& e) {
    throw engine::Error(notesPath + ": cannot read notes (" + e.what() +
                        "); fix or remove the file");
  }
  try {
    if (engine::fileExists(seenPath)) {
      const auto j = nlohmann::json::parse(engine::readFileText(seenPath));
      const auto s = j.value("seen", nlohmann::json::object());
      for (const auto& v : s.value("dense", nlohmann::json::array()))
        n.seenDense.insert(v.get<int64_t>());
      for (const auto& v : s.value("sparse", nlohmann::json::array()))
        n.seenSparse.insert(v.get<int64_t>());
    }
  } catch (const std::exception& e) {
    throw engine::Error(seenPath + ": cannot read the list of opened features (" + e.what() +
                        "); fix or remove the file");
  }
  return n;
}

std::string FeatureNotes::notesJson() const {
  nlohmann::json j;
  j["format"] = 1;
  j["notes"] = nlohmann::json::object();
  for (const auto& [k, text] : notes) {
    if (text.empty()) continue;
    auto u = updated.find(k);
    j["notes"][k] = {{"text", text}, {"updated", u == updated.end() ? "" : u->second}};
  }
  return j.dump(2) + "\n";
}

std::string FeatureNotes::seenJson() const {
  nlohmann::json j;
  j["format"] = 1;
  j["seen"] = {{"dense", seenDense}, {"sparse", seenSparse}};
  return j.dump() + "\n";
}

}  // namespace ui
