#include "study.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "error.h"
#include "fsutil.h"
#include "workspace.h"

// stb_easy_font is header-only (static functions); it draws ASCII as axis-aligned quads.
#include <stb_easy_font.h>

namespace fs = std::filesystem;

namespace engine {

// ---- config and plan JSON ----------------------------------------------------------------

nlohmann::json toJson(const StudyConfig& c) {
  return {{"rater", c.rater},
          {"features_per_kind", c.featuresPerKind},
          {"choice", c.choice == StudyChoice::Explicit ? "explicit" : "random-unseen"},
          {"ids", c.ids},
          {"seed", c.seed},
          {"sae", c.sae},
          {"rank", c.rank}};
}

namespace {

template <class T>
T field(const nlohmann::json& j, const char* key, const char* what) {
  const auto it = j.find(key);
  if (it == j.end()) throw Error(std::string("missing field \"") + key + "\"");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(std::string("\"") + key + "\" must be " + what + ", got " + it->dump());
  }
}

}  // namespace

StudyConfig studyConfigFromJson(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("the study config must be a JSON object");
  StudyConfig c;
  c.rater = field<std::string>(j, "rater", "a string");
  c.featuresPerKind = field<int>(j, "features_per_kind", "an integer");
  const std::string choice = field<std::string>(j, "choice", "a string");
  if (choice == "explicit")
    c.choice = StudyChoice::Explicit;
  else if (choice == "random-unseen")
    c.choice = StudyChoice::RandomUnseen;
  else
    throw Error("\"choice\" must be \"random-unseen\" or \"explicit\", got \"" + choice + "\"");
  c.ids = j.value("ids", std::string());
  c.seed = field<uint64_t>(j, "seed", "a non-negative integer");
  c.sae = j.value("sae", std::string("sae.pt"));
  c.rank = j.value("rank", std::string("seed"));
  return c;
}

nlohmann::json toJson(const StudyPlan& p) {
  nlohmann::json trials = nlohmann::json::array();
  for (const auto& t : p.trials)
    trials.push_back({{"trial", t.trial}, {"kind", t.kind}, {"feature", t.feature}});
  return {{"format", kStudyFormat},
          {"id", p.id},
          {"created", p.created},
          {"question", kStudyQuestion},
          {"config", toJson(p.config)},
          {"num_dense", p.numDense},
          {"num_sparse", p.numSparse},
          {"excluded", p.excluded},
          {"features", p.features},
          {"chosen_seen", p.chosenSeen},
          {"trials", trials}};
}

StudyPlan studyPlanFromJson(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("a study plan must be a JSON object");
  const int format = field<int>(j, "format", "an integer");
  if (format != kStudyFormat)
    throw Error("study plan format " + std::to_string(format) + " is not supported (expected " +
                std::to_string(kStudyFormat) + ")");
  StudyPlan p;
  p.id = field<std::string>(j, "id", "a string");
  p.created = field<std::string>(j, "created", "a string");
  const auto it = j.find("config");
  if (it == j.end()) throw Error("missing field \"config\"");
  p.config = studyConfigFromJson(*it);
  p.numDense = field<int64_t>(j, "num_dense", "an integer");
  p.numSparse = field<int64_t>(j, "num_sparse", "an integer");
  p.excluded = field<std::vector<int64_t>>(j, "excluded", "a list of ids");
  p.features = field<std::vector<int64_t>>(j, "features", "a list of ids");
  p.chosenSeen = j.value("chosen_seen", int64_t{0});
  const auto& trials = field<nlohmann::json>(j, "trials", "a list");
  if (!trials.is_array()) throw Error("\"trials\" must be a list");
  for (const auto& t : trials) {
    StudyTrial s;
    s.trial = field<int>(t, "trial", "an integer");
    s.kind = field<std::string>(t, "kind", "a string");
    s.feature = field<int64_t>(t, "feature", "an integer");
    if (s.kind != "dense" && s.kind != "sparse")
      throw Error("trial " + std::to_string(s.trial) + ": \"kind\" must be dense or sparse");
    if (s.trial != static_cast<int>(p.trials.size()))
      throw Error("trial " + std::to_string(s.trial) + " is out of order");
    p.trials.push_back(s);
  }
  return p;
}

// ---- ids and randomness -------------------------------------------------------------------

std::vector<int64_t> parseFeatureIds(const std::string& textIn, int64_t limit) {
  const std::string F = "feature ids: ";
  // En dash (U+2013, as people write "16–31") reads as a hyphen; commas as spaces.
  std::string text;
  for (size_t i = 0; i < textIn.size(); ++i) {
    if (textIn.compare(i, 3, "\xE2\x80\x93") == 0) {
      text += '-';
      i += 2;
    } else {
      text += textIn[i] == ',' || textIn[i] == ';' ? ' ' : textIn[i];
    }
  }
  // "16 - 31" → "16-31"
  std::string compact;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ' ' || text[i] == '\t') {
      size_t j = i;
      while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) ++j;
      const bool nextDash = j < text.size() && text[j] == '-';
      const bool prevDash = !compact.empty() && compact.back() == '-';
      if (!nextDash && !prevDash) compact += ' ';
      i = j - 1;
    } else {
      compact += text[i];
    }
  }
  auto number = [&](const std::string& s, const std::string& token) -> int64_t {
    if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos)
      throw Error(F + "'" + token + "' is not an id or a range such as 16-31");
    return std::stoll(s);
  };
  auto inRange = [&](int64_t v) {
    if (v >= limit)
      throw Error(F + std::to_string(v) + " is out of range: this workspace has ids 0.." +
                  std::to_string(limit - 1) + " for both kinds");
  };
  std::vector<int64_t> ids;
  std::set<int64_t> seen;
  std::istringstream in(compact);
  for (std::string tok; in >> tok;) {
    const size_t dash = tok.find('-');
    int64_t a, b;
    if (dash == std::string::npos) {
      a = b = number(tok, tok);
    } else {
      a = number(tok.substr(0, dash), tok);
      b = number(tok.substr(dash + 1), tok);
      if (b < a)
        throw Error(F + "the range '" + tok + "' runs backwards (write " + std::to_string(b) + "-" +
                    std::to_string(a) + ")");
    }
    inRange(a);
    inRange(b);
    for (int64_t v = a; v <= b; ++v) {
      if (!seen.insert(v).second) throw Error(F + std::to_string(v) + " is listed twice");
      ids.push_back(v);
    }
  }
  if (ids.empty()) throw Error(F + "the list is empty: type ids such as 16-31, 40");
  std::sort(ids.begin(), ids.end());
  return ids;
}

uint64_t StudyRng::next() {
  uint64_t z = (m_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t StudyRng::below(uint64_t n) {
  if (n <= 1) return 0;
  // Accept only draws below the largest multiple of n: every residue equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

// ---- planning -----------------------------------------------------------------------------

StudyPlan planStudy(const StudyConfig& c, int64_t numDense, int64_t numSparse,
                    const std::set<int64_t>& seen) {
  if (c.rater.find_first_not_of(" \t") == std::string::npos)
    throw Error("rater: type your name (it is recorded with every rating)");
  const int64_t limit = std::min(numDense, numSparse);
  if (numSparse <= 0) throw Error("sae: this workspace has no sparse features: train an SAE first");
  if (numDense <= 0) throw Error("embeddings: this workspace has no dense features: embed first");
  StudyPlan p;
  p.config = c;
  p.numDense = numDense;
  p.numSparse = numSparse;
  StudyRng rng(c.seed);
  if (c.choice == StudyChoice::Explicit) {
    p.features = parseFeatureIds(c.ids, limit);
    for (int64_t id : p.features) p.chosenSeen += seen.count(id) ? 1 : 0;
  } else {
    if (c.featuresPerKind < 1) throw Error("features per kind: must be at least 1");
    std::vector<int64_t> candidates;
    for (int64_t id = 0; id < limit; ++id) {
      if (seen.count(id))
        p.excluded.push_back(id);
      else
        candidates.push_back(id);
    }
    if (static_cast<int64_t>(candidates.size()) < c.featuresPerKind)
      throw Error("features per kind: only " + std::to_string(candidates.size()) + " of " +
                  std::to_string(limit) +
                  " ids have not been opened in the browser; ask for fewer, or list ids "
                  "explicitly");
    rng.shuffle(candidates);
    p.features.assign(candidates.begin(), candidates.begin() + c.featuresPerKind);
    std::sort(p.features.begin(), p.features.end());
  }
  for (int64_t id : p.features) {
    p.trials.push_back({0, "dense", id});
    p.trials.push_back({0, "sparse", id});
  }
  rng.shuffle(p.trials);
  for (size_t i = 0; i < p.trials.size(); ++i) p.trials[i].trial = static_cast<int>(i);
  return p;
}

std::string studyId(const std::string& rater, uint64_t seed, const std::string& iso) {
  std::string digits;
  for (char ch : iso)
    if (ch >= '0' && ch <= '9') digits += ch;
  while (digits.size() < 14) digits += '0';
  std::string who;
  for (char ch : rater) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
    if (ok)
      who += ch;
    else if (!who.empty() && who.back() != '_')
      who += '_';
  }
  while (!who.empty() && (who.back() == '_' || who.back() == '-')) who.pop_back();
  if (who.size() > 32) who.resize(32);
  if (who.empty()) who = "rater";
  return "study-" + digits.substr(0, 8) + "-" + digits.substr(8, 6) + "-" + who + "-" +
         std::to_string(seed);
}

std::string studyPlanPath(const std::string& ws, const std::string& id) {
  return ws + "/ratings/" + id + ".plan.json";
}

std::string studyRatingsPath(const std::string& ws, const std::string& id) {
  return ws + "/ratings/" + id + ".jsonl";
}

StudyPlan createStudy(const std::string& ws, const StudyConfig& c, int64_t numDense,
                      int64_t numSparse, const std::set<int64_t>& seen, const std::string& iso) {
  StudyPlan p = planStudy(c, numDense, numSparse, seen);
  p.created = iso.empty() ? isoNow() : iso;
  const std::string base = studyId(c.rater, c.seed, p.created);
  p.id = base;
  for (int n = 2; fileExists(studyPlanPath(ws, p.id)) || fileExists(studyRatingsPath(ws, p.id));
       ++n)
    p.id = base + "-" + std::to_string(n);
  writeFileAtomic(studyPlanPath(ws, p.id), toJson(p).dump(1) + "\n");
  return p;
}

StudyPlan loadStudyPlan(const std::string& path, bool* reproducible) {
  StudyPlan p;
  try {
    p = studyPlanFromJson(nlohmann::json::parse(readFileText(path)));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not a valid study plan (" + std::string(e.what()) + ")");
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(path, 0) == 0) throw;
    throw Error(path + ": " + what);
  }
  if (reproducible) {
    try {
      const std::set<int64_t> seen(p.excluded.begin(), p.excluded.end());
      const StudyPlan again = planStudy(p.config, p.numDense, p.numSparse, seen);
      bool same = again.features == p.features && again.trials.size() == p.trials.size();
      for (size_t i = 0; same && i < p.trials.size(); ++i)
        same = again.trials[i].kind == p.trials[i].kind &&
               again.trials[i].feature == p.trials[i].feature;
      *reproducible = same;
    } catch (const Error&) {
      *reproducible = false;
    }
  }
  return p;
}

// ---- progress -----------------------------------------------------------------------------

StudyProgress studyProgress(const StudyPlan& plan, const std::string& path) {
  StudyProgress s;
  if (!fileExists(path)) return s;
  s.ratings = readRatingsFile(path, &s.warnings);
  std::vector<int> state(plan.trials.size(), 0);  // 0 open, 1 rated, 2 skipped
  for (size_t i = 0; i < s.ratings.size(); ++i) {
    const Rating& r = s.ratings[i];
    const std::string where = path + ": rating " + std::to_string(i + 1) + ": ";
    if (r.session != plan.id) continue;  // lines of another session do not advance this one
    if (r.trial < 0 || r.trial >= plan.size())
      throw Error(where + "trial " + std::to_string(r.trial) + " is not in the plan (0.." +
                  std::to_string(plan.size() - 1) + ")");
    const StudyTrial& t = plan.trials[static_cast<size_t>(r.trial)];
    if (t.kind != r.kind || t.feature != r.feature)
      throw Error(where + "trial " + std::to_string(r.trial) + " does not match the study plan (" +
                  plan.id + ".plan.json)");
    state[static_cast<size_t>(r.trial)] = r.rating ? 1 : 2;
  }
  s.next = plan.size();
  for (size_t i = 0; i < state.size(); ++i) {
    if (state[i] == 1) ++s.answered;
    if (state[i] == 2) ++s.skipped;
    if (state[i] == 0 && s.next == plan.size()) s.next = static_cast<int>(i);
  }
  return s;
}

Rating studyRating(const StudyPlan& plan, int trial, std::optional<int> rating, double responseMs,
                   const std::string& iso) {
  if (trial < 0 || trial >= plan.size())
    throw Error("trial " + std::to_string(trial) + " is not in study " + plan.id);
  const StudyTrial& t = plan.trials[static_cast<size_t>(trial)];
  Rating r;
  r.session = plan.id;
  r.rater = plan.config.rater;
  r.trial = trial;
  r.kind = t.kind;
  r.feature = t.feature;
  r.rating = rating;
  r.extra = {{"seed", plan.config.seed},
             {"sae", plan.config.sae},
             {"study_format", kStudyFormat},
             {"time", iso.empty() ? isoNow() : iso},
             {"response_ms", static_cast<int64_t>(std::llround(std::max(0.0, responseMs)))}};
  return r;
}

std::vector<std::string> ratingFiles(const std::string& ws) {
  std::vector<std::string> out;
  std::error_code ec;
  const fs::path dir = fs::path(ws) / "ratings";
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec) && e.path().extension() == ".jsonl") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<StudySummary> listStudies(const std::string& ws) {
  std::vector<StudySummary> out;
  std::error_code ec;
  const fs::path dir = fs::path(ws) / "ratings";
  if (!fs::is_directory(dir, ec)) return out;
  const std::string suffix = ".plan.json";
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    StudySummary s;
    s.id = name.substr(0, name.size() - suffix.size());
    s.planPath = e.path().string();
    s.ratingsPath = studyRatingsPath(ws, s.id);
    try {
      const StudyPlan p = loadStudyPlan(s.planPath);
      s.rater = p.config.rater;
      s.created = p.created;
      s.total = p.size();
      const StudyProgress g = studyProgress(p, s.ratingsPath);
      s.answered = g.answered;
      s.skipped = g.skipped;
      s.next = g.next;
    } catch (const std::exception& ex) {
      s.error = ex.what();
    }
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const StudySummary& a, const StudySummary& b) {
    return a.created != b.created ? a.created > b.created : a.id > b.id;
  });
  return out;
}

// ---- exports ------------------------------------------------------------------------------

namespace {

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string extraText(const Rating& r, const char* key) {
  const auto it = r.extra.find(key);
  if (it == r.extra.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_float()) {
    const double v = it->get<double>();
    char buf[40];
    std::snprintf(buf, sizeof buf, v == std::floor(v) ? "%.0f" : "%.17g", v);
    return buf;
  }
  return it->dump();
}

}  // namespace

std::string trialsCsv(const std::vector<Rating>& ratings) {
  std::string out = "study,rater,trial,kind,feature,rating,skipped,time,response_ms\n";
  for (const Rating& r : ratings) {
    out += csvField(r.session) + "," + csvField(r.rater) + "," + std::to_string(r.trial) + "," +
           r.kind + "," + std::to_string(r.feature) + "," +
           (r.rating ? std::to_string(*r.rating) : "") + "," + (r.rating ? "false" : "true") + "," +
           csvField(extraText(r, "time")) + "," + csvField(extraText(r, "response_ms")) + "\n";
  }
  return out;
}

void writeTrialsCsv(const std::string& path, const std::vector<Rating>& ratings) {
  writeFileAtomic(path, trialsCsv(ratings));
}

void writeStatisticsJson(const std::string& path, const nlohmann::json& stats) {
  writeFileAtomic(path, stats.dump(2) + "\n");
}

namespace {

struct Canvas {
  Image img;
  void fill(int x0, int y0, int x1, int y1, std::array<uint8_t, 3> c) {
    x0 = std::max(0, x0), y0 = std::max(0, y0);
    x1 = std::min(img.width, x1), y1 = std::min(img.height, y1);
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * 3];
        p[0] = c[0], p[1] = c[1], p[2] = c[2];
      }
  }
  // ASCII text at (x, y) (top-left), each font unit `s` pixels.
  void text(float x, float y, const std::string& s, int scale, std::array<uint8_t, 3> c) {
    static thread_local std::vector<char> buf(60000);
    std::string t = s;
    const int quads =
        stb_easy_font_print(0, 0, t.data(), nullptr, buf.data(), static_cast<int>(buf.size()));
    for (int q = 0; q < quads; ++q) {
      const float* v = reinterpret_cast<const float*>(buf.data() + q * 64);
      // 4 vertices of 16 bytes: x, y, z, colour. Quads are axis-aligned.
      const float qx0 = std::min(v[0], v[8]), qx1 = std::max(v[0], v[8]);
      const float qy0 = std::min(v[1], v[9]), qy1 = std::max(v[1], v[9]);
      fill(static_cast<int>(x + qx0 * scale), static_cast<int>(y + qy0 * scale),
           static_cast<int>(x + qx1 * scale), static_cast<int>(y + qy1 * scale), c);
    }
  }
  static int textWidth(const std::string& s, int scale) {
    std::string t = s;
    return stb_easy_font_width(t.data()) * scale;
  }
};

}  // namespace

Image renderHistogram(const nlohmann::json& stats, int width, int height) {
  Canvas cv;
  cv.img.width = width = std::max(width, 320);
  cv.img.height = height = std::max(height, 200);
  cv.img.channels = 3;
  cv.img.pixels.assign(static_cast<size_t>(width) * height * 3, 255);
  const std::array<uint8_t, 3> ink{40, 40, 48}, grid{225, 228, 234};
  const std::array<uint8_t, 3> cSparse{230, 130, 40}, cDense{60, 110, 190};

  std::array<int64_t, 7> hs{}, hd{};
  int64_t ns = 0, nd = 0;
  const auto hist = stats.value("histogram", nlohmann::json::object());
  for (int i = 0; i < 7; ++i) {
    const auto& s = hist.value("sparse", nlohmann::json::array());
    const auto& d = hist.value("dense", nlohmann::json::array());
    hs[i] = i < static_cast<int>(s.size()) && s[i].is_number() ? s[i].get<int64_t>() : 0;
    hd[i] = i < static_cast<int>(d.size()) && d[i].is_number() ? d[i].get<int64_t>() : 0;
    ns += hs[i], nd += hd[i];
  }
  const int64_t top = std::max<int64_t>(1, std::max(*std::max_element(hs.begin(), hs.end()),
                                                    *std::max_element(hd.begin(), hd.end())));

  const int s = height >= 400 ? 2 : 1;  // font scale
  const int left = 50 * s / 2 + 30, right = 20, topM = 60 * s / 2 + 20, bottom = 40 * s / 2 + 30;
  const int pw = width - left - right, ph = height - topM - bottom;
  cv.text(left, 12, "Ratings 1-7: sparse vs dense", s, ink);
  // Legend.
  const std::string ls = "sparse (n=" + std::to_string(ns) + ")";
  const std::string ld = "dense (n=" + std::to_string(nd) + ")";
  int lx = left;
  const int ly = 12 + 14 * s;
  cv.fill(lx, ly, lx + 12 * s, ly + 8 * s, cSparse);
  cv.text(lx + 16 * s, ly, ls, s, ink);
  lx += 16 * s + Canvas::textWidth(ls, s) + 20 * s;
  cv.fill(lx, ly, lx + 12 * s, ly + 8 * s, cDense);
  cv.text(lx + 16 * s, ly, ld, s, ink);

  // Y grid lines at "nice" steps.
  int64_t step = 1;
  while (top / step > 6) step = step == 1 ? 2 : step == 2 ? 5 : step * 2;
  for (int64_t v = 0; v <= top; v += step) {
    const int y = topM + ph - static_cast<int>(std::lround(static_cast<double>(v) / top * ph));
    cv.fill(left, y, left + pw, y + 1, grid);
    const std::string t = std::to_string(v);
    cv.text(left - 6 - Canvas::textWidth(t, s), y - 3 * s, t, s, ink);
  }
  // Bars.
  const double slot = pw / 7.0;
  const int bw = std::max(2, static_cast<int>(slot * 0.36));
  for (int i = 0; i < 7; ++i) {
    const int cx = left + static_cast<int>(slot * (i + 0.5));
    const int hS = static_cast<int>(std::lround(static_cast<double>(hs[i]) / top * ph));
    const int hD = static_cast<int>(std::lround(static_cast<double>(hd[i]) / top * ph));
    cv.fill(cx - bw - 1, topM + ph - hS, cx - 1, topM + ph, cSparse);
    cv.fill(cx + 1, topM + ph - hD, cx + bw + 1, topM + ph, cDense);
    const std::string t = std::to_string(i + 1);
    cv.text(cx - Canvas::textWidth(t, s) / 2, topM + ph + 6, t, s, ink);
  }
  cv.fill(left, topM + ph, left + pw, topM + ph + 1, ink);
  cv.fill(left, topM, left + 1, topM + ph + 1, ink);
  const std::string xl = "rating (how visually consistent, 1-7)";
  cv.text(left + (pw - Canvas::textWidth(xl, s)) / 2, topM + ph + 8 + 10 * s, xl, s, ink);
  return cv.img;
}

}  // namespace engine
