#include "ratings.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "error.h"
#include "fsutil.h"

namespace engine {

namespace {

const char* const kFixedKeys[] = {"session", "rater",  "trial",  "kind",
                                  "feature", "rating", "skipped"};

std::string typeName(const nlohmann::json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_null()) return "null";
  if (v.is_array()) return "an array";
  return "an object";
}

// A short rendering of a value for an error message.
std::string shown(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

const nlohmann::json& need(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) throw Error(std::string("missing field \"") + key + "\"");
  return *it;
}

std::string needString(const nlohmann::json& j, const char* key) {
  const auto& v = need(j, key);
  if (!v.is_string())
    throw Error(std::string("\"") + key + "\" must be a string, got " + typeName(v));
  return v.get<std::string>();
}

int64_t needInteger(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi) {
  const auto& v = need(j, key);
  if (!v.is_number_integer())
    throw Error(std::string("\"") + key + "\" must be an integer, got " + typeName(v) + " " +
                shown(v));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    throw Error(std::string("\"") + key + "\" is out of range: " + shown(v));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) throw Error(std::string("\"") + key + "\" is out of range: " + shown(v));
  return x;
}

bool parsesAsJson(const std::string& text) {
  return nlohmann::json::accept(text);
}

std::string stripCr(std::string s) {
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

bool isBlank(const std::string& s) {
  return s.find_first_not_of(" \t\r") == std::string::npos;
}

std::string parseErrorText(const nlohmann::json::parse_error& e) {
  return "not valid JSON (error near byte " + std::to_string(e.byte) + ")";
}

}  // namespace

nlohmann::json toJson(const Rating& r) {
  nlohmann::json j = r.extra.is_object() ? r.extra : nlohmann::json::object();
  j["session"] = r.session;
  j["rater"] = r.rater;
  j["trial"] = r.trial;
  j["kind"] = r.kind;
  j["feature"] = r.feature;
  j["rating"] = r.rating ? nlohmann::json(*r.rating) : nlohmann::json(nullptr);
  j["skipped"] = !r.rating.has_value();
  return j;
}

Rating ratingFromJson(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("a rating must be a JSON object, got " + typeName(j));
  Rating r;
  r.session = needString(j, "session");
  r.rater = needString(j, "rater");
  r.trial = static_cast<int>(
      needInteger(j, "trial", std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
  r.kind = needString(j, "kind");
  if (r.kind != "sparse" && r.kind != "dense")
    throw Error("\"kind\" must be \"sparse\" or \"dense\", got " + shown(j.at("kind")));
  r.feature = needInteger(j, "feature", 0, std::numeric_limits<int64_t>::max());

  std::optional<bool> skipped;
  if (const auto it = j.find("skipped"); it != j.end()) {
    if (!it->is_boolean())
      throw Error("\"skipped\" must be true or false, got " + typeName(*it) + " " + shown(*it));
    skipped = it->get<bool>();
  }
  const auto rit = j.find("rating");
  if (rit == j.end() && skipped.value_or(false) == false)
    throw Error("missing field \"rating\" (1..7, or null when skipped)");
  if (rit != j.end() && !rit->is_null()) {
    const auto& v = *rit;
    if (!v.is_number())
      throw Error("\"rating\" must be 1..7 or null, got " + typeName(v) + " " + shown(v));
    const double x = v.get<double>();
    if (!(x >= 1 && x <= 7) || std::floor(x) != x)
      throw Error("\"rating\" must be a whole number 1..7 or null, got " + shown(v));
    r.rating = static_cast<int>(x);
  }
  if (skipped && *skipped && r.rating)
    throw Error("\"skipped\" is true but \"rating\" is " + std::to_string(*r.rating));
  if (skipped && !*skipped && !r.rating) throw Error("\"rating\" is null but \"skipped\" is false");

  for (auto it = j.begin(); it != j.end(); ++it) {
    bool fixed = false;
    for (const char* k : kFixedKeys) fixed = fixed || it.key() == k;
    if (!fixed) r.extra[it.key()] = it.value();
  }
  return r;
}

std::vector<Rating> readRatingsFile(const std::string& path, std::vector<std::string>* warnings) {
  return parseRatings(readFileText(path), path, warnings);
}

std::vector<Rating> parseRatings(const std::string& text, const std::string& path,
                                 std::vector<std::string>* warnings) {
  std::vector<Rating> out;
  size_t pos = 0;
  int64_t lineNo = 0;
  while (pos < text.size()) {
    ++lineNo;
    const size_t nl = text.find('\n', pos);
    const bool terminated = nl != std::string::npos;
    const std::string line = stripCr(text.substr(pos, terminated ? nl - pos : std::string::npos));
    pos = terminated ? nl + 1 : text.size();
    if (isBlank(line)) continue;
    const std::string where = path + ":" + std::to_string(lineNo) + ": ";
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      if (!terminated) {
        if (warnings)
          warnings->push_back(where +
                              "the last line is incomplete (the app stopped while writing it?) "
                              "and was ignored");
        break;
      }
      throw Error(where + parseErrorText(e));
    } catch (const nlohmann::json::exception&) {
      // out_of_range: a number beyond double's range, e.g. 1e999 (found by tests/fuzz).
      throw Error(where + "not valid JSON (a number is out of range)");
    }
    try {
      out.push_back(ratingFromJson(j));
    } catch (const Error& e) {
      throw Error(where + e.what());
    }
  }
  return out;
}

std::vector<Rating> readRatingsFiles(const std::vector<std::string>& paths,
                                     std::vector<std::string>* warnings) {
  std::vector<Rating> all;
  for (const auto& p : paths) {
    auto part = readRatingsFile(p, warnings);
    all.insert(all.end(), std::make_move_iterator(part.begin()),
               std::make_move_iterator(part.end()));
  }
  return all;
}

RatingsWriter::RatingsWriter(const std::string& path) : m_path(path) {
  namespace fs = std::filesystem;
  if (fileExists(path)) {
    const std::string text = readFileText(path);
    if (!text.empty() && text.back() != '\n') {
      const size_t nl = text.rfind('\n');
      const size_t keep = nl == std::string::npos ? 0 : nl + 1;
      const std::string tail = stripCr(text.substr(keep));
      if (parsesAsJson(tail)) {
        // A complete line without its newline (e.g. written by hand): finish it.
        LineAppender(path).appendLine("", true);
        m_repairNote = path + ": added the missing newline after the last line";
      } else {
        std::error_code ec;
        fs::resize_file(path, keep, ec);
        if (ec)
          throw Error("cannot repair " + path + " (its last line is incomplete): " + ec.message());
        m_repairNote =
            path + ": removed an incomplete last line (the app stopped while writing it)";
      }
    }
  }
  m_out = std::make_unique<LineAppender>(path);
}

RatingsWriter::~RatingsWriter() = default;
RatingsWriter::RatingsWriter(RatingsWriter&&) noexcept = default;
RatingsWriter& RatingsWriter::operator=(RatingsWriter&&) noexcept = default;

void RatingsWriter::append(const Rating& r) {
  if (!m_out) throw Error("ratings writer for " + m_path + " was moved from");
  if (r.kind != "sparse" && r.kind != "dense")
    throw Error("cannot record a rating of kind \"" + r.kind + "\" in " + m_path);
  if (r.rating && (*r.rating < 1 || *r.rating > 7))
    throw Error("cannot record rating " + std::to_string(*r.rating) + " in " + m_path +
                ": ratings are 1..7");
  m_out->appendLine(toJson(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    /*sync=*/true);
}

}  // namespace engine
