// Exports: captioned grids, contact sheets, CSV statistics, notes (CPU only, no GL).
#include "export.h"

#include <stb_truetype.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.h"
#include "fsutil.h"
#include "workspace.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

// ---------------------------------------------------------------------------------------------
// Text

namespace {

struct Font {
  std::vector<uint8_t> ttf;
  stbtt_fontinfo info{};
  bool ok = false;
};

const Font& font() {
  static Font f;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* candidates[] = {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                                "/usr/share/fonts/dejavu/DejaVuSans.ttf"};
    for (const char* c : candidates) {
      if (!fileExists(c)) continue;
      try {
        f.ttf = readFileBytes(c);
      } catch (const Error&) {
        continue;
      }
      if (stbtt_InitFont(&f.info, f.ttf.data(), stbtt_GetFontOffsetForIndex(f.ttf.data(), 0))) {
        f.ok = true;
        return;
      }
    }
  });
  return f;
}

// Next code point of UTF-8 `s` at `i` (advances i); invalid bytes come back as '?'.
int nextCodepoint(const std::string& s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
  if (n < 0) return '?';
  int cp = c & (0x3F >> n);
  for (; n > 0; --n) {
    if (i >= s.size() || (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) return '?';
    cp = (cp << 6) | (static_cast<unsigned char>(s[i++]) & 0x3F);
  }
  return cp;
}

void fillRect(Image& img, int x0, int y0, int w, int h, uint8_t r, uint8_t g, uint8_t b,
              float alpha = 1) {
  for (int y = std::max(0, y0); y < std::min(img.height, y0 + h); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x0 + w); ++x) {
      uint8_t* d = &img.pixels[(static_cast<size_t>(y) * img.width + x) * img.channels];
      d[0] = static_cast<uint8_t>(d[0] + (r - d[0]) * alpha);
      d[1] = static_cast<uint8_t>(d[1] + (g - d[1]) * alpha);
      d[2] = static_cast<uint8_t>(d[2] + (b - d[2]) * alpha);
    }
}

Image blankCanvas(int w, int h, uint8_t v) {
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 4;
  img.pixels.assign(static_cast<size_t>(w) * h * 4, v);
  for (size_t i = 3; i < img.pixels.size(); i += 4) img.pixels[i] = 255;
  return img;
}

void blit(Image& dst, const Image& src, int x0, int y0) {
  for (int y = 0; y < src.height; ++y)
    for (int x = 0; x < src.width; ++x) {
      const int dx = x0 + x, dy = y0 + y;
      if (dx < 0 || dy < 0 || dx >= dst.width || dy >= dst.height) continue;
      const uint8_t* s = &src.pixels[(static_cast<size_t>(y) * src.width + x) * src.channels];
      uint8_t* d = &dst.pixels[(static_cast<size_t>(dy) * dst.width + dx) * dst.channels];
      d[0] = s[0];
      d[1] = src.channels >= 3 ? s[1] : s[0];
      d[2] = src.channels >= 3 ? s[2] : s[0];
    }
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

bool exportFontAvailable() {
  return font().ok;
}

// No kerning: stb_truetype's GPOS kerning lookup is slow (and can fail to end) on DejaVu Sans.
int textWidth(const std::string& text, float px) {
  const Font& f = font();
  if (!f.ok) return 0;
  const float scale = stbtt_ScaleForPixelHeight(&f.info, px);
  float x = 0;
  for (size_t i = 0; i < text.size();) {
    const int cp = nextCodepoint(text, i);
    int adv = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&f.info, cp, &adv, &lsb);
    x += scale * adv;
  }
  return static_cast<int>(std::ceil(x));
}

int drawText(Image& img, int x, int y, const std::string& text, float px, uint8_t r, uint8_t g,
             uint8_t b) {
  const Font& f = font();
  if (!f.ok || img.channels < 3) return x;
  const float scale = stbtt_ScaleForPixelHeight(&f.info, px);
  int ascent = 0, descent = 0, gap = 0;
  stbtt_GetFontVMetrics(&f.info, &ascent, &descent, &gap);
  const int baseline = y + static_cast<int>(std::round(ascent * scale));
  float pen = static_cast<float>(x);
  std::vector<uint8_t> glyph;
  for (size_t i = 0; i < text.size();) {
    const int cp = nextCodepoint(text, i);
    int adv = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&f.info, cp, &adv, &lsb);
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    const float shift = pen - std::floor(pen);
    stbtt_GetCodepointBitmapBoxSubpixel(&f.info, cp, scale, scale, shift, 0, &x0, &y0, &x1, &y1);
    const int w = x1 - x0, h = y1 - y0;
    if (w > 0 && h > 0) {
      glyph.assign(static_cast<size_t>(w) * h, 0);
      stbtt_MakeCodepointBitmapSubpixel(&f.info, glyph.data(), w, h, w, scale, scale, shift, 0, cp);
      const int gx = static_cast<int>(std::floor(pen)) + x0, gy = baseline + y0;
      for (int yy = 0; yy < h; ++yy)
        for (int xx = 0; xx < w; ++xx) {
          const int dx = gx + xx, dy = gy + yy;
          if (dx < 0 || dy < 0 || dx >= img.width || dy >= img.height) continue;
          const float a = glyph[static_cast<size_t>(yy) * w + xx] / 255.0f;
          if (a <= 0) continue;
          uint8_t* d = &img.pixels[(static_cast<size_t>(dy) * img.width + dx) * img.channels];
          d[0] = static_cast<uint8_t>(std::lround(d[0] + (r - d[0]) * a));
          d[1] = static_cast<uint8_t>(std::lround(d[1] + (g - d[1]) * a));
          d[2] = static_cast<uint8_t>(std::lround(d[2] + (b - d[2]) * a));
        }
    }
    pen += scale * adv;
  }
  return static_cast<int>(std::ceil(pen));
}

// ---------------------------------------------------------------------------------------------
// Sources

std::string ExportSource::absolutePath(int64_t row) const {
  if (row < 0 || row >= static_cast<int64_t>(images.size())) return "";
  const std::string& rel = images[static_cast<size_t>(row)];
  if (!rel.empty() && rel[0] == '/') return rel;
  return dataRoot.empty() ? rel : dataRoot + "/" + rel;
}

std::string ExportSource::note(FeatureKind k, int64_t feature) const {
  auto it = notes.find(std::string(kindName(k)) + "/" + std::to_string(feature));
  return it == notes.end() ? "" : it->second;
}

void loadNotes(const std::string& workspace, ExportSource& src) {
  const std::string path = workspace + "/notes.json";
  if (!fileExists(path)) return;
  json j;
  try {
    j = json::parse(readFileText(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object() || !j.value("notes", json::object()).is_object())
    throw Error(path + ": expected {\"notes\": {\"sparse/12\": {\"text\": ...}}}");
  const json notes = j.value("notes", json::object());  // items() must not outlive it
  for (const auto& [key, v] : notes.items()) {
    if (v.is_string()) {
      src.notes[key] = v.get<std::string>();
    } else if (v.is_object() && v.contains("text") && v["text"].is_string()) {
      src.notes[key] = v["text"].get<std::string>();
      if (v.contains("updated") && v["updated"].is_string())
        src.updated[key] = v["updated"].get<std::string>();
    }
  }
}

ExportSource loadExportSource(const std::string& workspace, JobContext& ctx) {
  const Workspace ws = Workspace::open(workspace, false);
  ExportSource src;
  src.workspace = ws.dir();
  src.dataRoot = ws.dataRoot();
  src.images = ws.imageList();
  src.index = FeatureIndex::loadOrBuild(ws.dir(), ctx);
  loadNotes(ws.dir(), src);
  return src;
}

std::vector<int64_t> parseFeatureList(const std::string& spec, int64_t count,
                                      const std::string& flag) {
  std::vector<int64_t> out;
  std::stringstream ss(spec);
  std::string part;
  auto num = [&](const std::string& s) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (s.empty() || used != s.size() || v < 0)
      throw Error(flag + " " + spec + ": expected feature ids like 0-15,20");
    if (v >= count)
      throw Error(flag + " " + spec + ": feature " + s + " is out of range (0.." +
                  std::to_string(count - 1) + ")");
    return static_cast<int64_t>(v);
  };
  while (std::getline(ss, part, ',')) {
    const size_t dash = part.find('-');
    if (dash == std::string::npos) {
      out.push_back(num(part));
    } else {
      const int64_t a = num(part.substr(0, dash)), b = num(part.substr(dash + 1));
      if (b < a) throw Error(flag + " " + spec + ": range " + part + " runs backwards");
      for (int64_t i = a; i <= b; ++i) out.push_back(i);
    }
  }
  if (out.empty()) throw Error(flag + ": no feature ids given");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Images

namespace {

std::vector<Image> thumbnailsOf(const ExportSource& src, const std::vector<TopEntry>& top,
                                int count, int cell) {
  std::vector<Image> thumbs;
  for (int i = 0; i < count && i < static_cast<int>(top.size()); ++i) {
    try {
      thumbs.push_back(loadThumbnail(src.absolutePath(top[i].index), cell));
    } catch (const Error&) {
      thumbs.emplace_back();  // a grey cell: the image is gone or unreadable
    }
  }
  return thumbs;
}

std::string statsLine(const ExportSource& src, FeatureKind kind, int64_t feature) {
  const FeatureStats& s = src.index->stats(kind, feature);
  const double n = std::max<int64_t>(1, src.index->numImages());
  return "active " + fmt("%.1f%%", 100.0 * s.active / n) + "  ·  max " + fmt("%.3g", s.max) +
         "  ·  mean " + fmt("%.3g", s.mean);
}

void checkFeature(const ExportSource& src, FeatureKind kind, int64_t feature) {
  if (!src.index) throw Error(src.workspace + ": no feature index (embeddings missing?)");
  const int64_t nf = src.index->numFeatures(kind);
  if (kind == FeatureKind::Sparse && nf == 0)
    throw Error(src.workspace + "/sae.pt: missing; sparse features need an SAE");
  if (feature < 0 || feature >= nf)
    throw Error("feature " + std::to_string(feature) + ": out of range; this workspace has " +
                std::to_string(nf) + " " + kindName(kind) + " features (0.." +
                std::to_string(nf - 1) + ")");
}

}  // namespace

Image renderFeatureCard(const ExportSource& src, FeatureKind kind, int64_t feature, RankRule rule,
                        const CardOptions& opt) {
  checkFeature(src, kind, feature);
  const int cols = std::max(1, opt.cols);
  const std::vector<TopEntry>& top = src.index->top(kind, rule, feature);
  const int count = std::min<int>(opt.count, static_cast<int>(top.size()));
  const Image grid = composeGrid(thumbnailsOf(src, top, count, opt.cell), cols, opt.cell, opt.pad);
  const float px = opt.fontPx > 0 ? opt.fontPx : std::clamp(opt.cell * 0.16f, 12.f, 22.f);
  const std::string note = src.note(kind, feature);
  const int line = static_cast<int>(std::ceil(px * 1.35f));
  const int header = opt.pad + line + (note.empty() ? 0 : line) + line + opt.pad;
  Image out = blankCanvas(std::max(grid.width, 1), grid.height + header, 24);
  const int x0 = opt.pad * 2;
  int y = opt.pad;
  const std::string title = std::string(kindName(kind)) + " feature " + std::to_string(feature);
  const int after = drawText(out, x0, y, title, px * 1.15f, 240, 240, 240);
  drawText(out, after + static_cast<int>(px), y + static_cast<int>(px * 0.15f),
           std::string("(") + rankName(rule) + " ranking)", px * 0.9f, 150, 150, 150);
  y += line;
  if (!note.empty()) {
    drawText(out, x0, y, "“" + note + "”", px, 250, 210, 120);
    y += line;
  }
  drawText(out, x0, y, statsLine(src, kind, feature), px * 0.9f, 190, 190, 190);
  blit(out, grid, 0, header);
  if (opt.scores) {
    const float spx = std::clamp(opt.cell * 0.13f, 9.f, 16.f);
    for (int i = 0; i < count; ++i) {
      const int cx = opt.pad + (i % cols) * (opt.cell + opt.pad);
      const int cy = header + opt.pad + (i / cols) * (opt.cell + opt.pad);
      const std::string s = fmt("%.3f", top[i].score);
      const int w = textWidth(s, spx) + 6, h = static_cast<int>(spx * 1.3f);
      fillRect(out, cx, cy + opt.cell - h, w, h, 0, 0, 0, 0.6f);
      drawText(out, cx + 3, cy + opt.cell - h + 1, s, spx, 255, 255, 255);
    }
  }
  return out;
}

Image renderContactSheet(const ExportSource& src, FeatureKind kind,
                         const std::vector<int64_t>& features, RankRule rule, int columns, int cell,
                         JobContext* ctx) {
  for (int64_t f : features) checkFeature(src, kind, f);
  if (features.empty()) throw Error("contact sheet: no features given");
  columns = std::max(1, std::min<int>(columns, static_cast<int>(features.size())));
  cell = std::clamp(cell, 8, 512);
  const int pad = 1, gridW = 4 * cell + 5 * pad;
  const float px = std::clamp(cell * 0.32f, 11.f, 18.f);
  const int line = static_cast<int>(std::ceil(px * 1.35f));
  const int cardW = gridW, cardH = line + gridW, gap = std::max(6, cell / 4);
  const int rows = (static_cast<int>(features.size()) + columns - 1) / columns;
  const int titleH = static_cast<int>(std::ceil(px * 1.6f)) + gap;
  Image out = blankCanvas(columns * cardW + (columns + 1) * gap,
                          titleH + rows * cardH + (rows + 1) * gap, 16);
  drawText(out, gap, gap / 2,
           std::string(kindName(kind)) + " features · " + rankName(rule) + " ranking · " +
               fs::path(src.workspace).filename().string(),
           px * 1.2f, 235, 235, 235);
  if (ctx) ctx->beginStage("contact sheet", static_cast<int64_t>(features.size()), "features");
  for (size_t i = 0; i < features.size(); ++i) {
    if (ctx) ctx->checkStop();
    const int64_t f = features[i];
    const int cx = gap + static_cast<int>(i % columns) * (cardW + gap);
    const int cy = titleH + gap + static_cast<int>(i / columns) * (cardH + gap);
    const std::vector<TopEntry>& top = src.index->top(kind, rule, f);
    const Image grid = composeGrid(thumbnailsOf(src, top, 16, cell), 4, cell, pad);
    std::string label = "#" + std::to_string(f);
    const std::string note = src.note(kind, f);
    if (!note.empty()) label += " " + note;
    if (textWidth(label, px) > cardW) {
      // Drop whole UTF-8 characters from the end until the text and an ellipsis fit.
      while (label.size() > 2 && textWidth(label + "…", px) > cardW) {
        label.pop_back();
        while (!label.empty() && (static_cast<unsigned char>(label.back()) & 0xC0) == 0x80)
          label.pop_back();
        if (!label.empty() && (static_cast<unsigned char>(label.back()) & 0xC0) == 0xC0)
          label.pop_back();  // the lead byte of a character whose tail just went
      }
      label += "…";
    }
    drawText(out, cx, cy, label, px, note.empty() ? 220 : 250, note.empty() ? 220 : 210,
             note.empty() ? 220 : 120);
    blit(out, grid, cx, cy + line);
    if (ctx) ctx->advance(1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text exports

namespace {
std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}
}  // namespace

std::string featureStatsCsv(const ExportSource& src, RankRule rule) {
  if (!src.index) throw Error(src.workspace + ": no feature index (embeddings missing?)");
  std::string out =
      "kind,feature,active,active_fraction,mean,min,max,top1_index,top1_path,top1_score,"
      "top16_mean_score,label\n";
  const double n = std::max<int64_t>(1, src.index->numImages());
  for (FeatureKind k : {FeatureKind::Dense, FeatureKind::Sparse}) {
    for (int64_t f = 0; f < src.index->numFeatures(k); ++f) {
      const FeatureStats& s = src.index->stats(k, f);
      const auto& top = src.index->top(k, rule, f);
      double m16 = 0;
      const size_t k16 = std::min<size_t>(16, top.size());
      for (size_t i = 0; i < k16; ++i) m16 += top[i].score;
      if (k16) m16 /= static_cast<double>(k16);
      out += std::string(kindName(k)) + "," + std::to_string(f) + "," + std::to_string(s.active) +
             "," + fmt("%.6g", s.active / n) + "," + fmt("%.8g", s.mean) + "," +
             fmt("%.8g", s.min) + "," + fmt("%.8g", s.max) + ",";
      if (!top.empty())
        out += std::to_string(top[0].index) + "," +
               csvField(src.images.size() > size_t(top[0].index) ? src.images[top[0].index] : "") +
               "," + fmt("%.8g", top[0].score) + "," + fmt("%.8g", m16) + ",";
      else
        out += ",,,,";
      out += csvField(src.note(k, f)) + "\n";
    }
  }
  return out;
}

std::string notesExport(const ExportSource& src, bool asJson) {
  struct Row {
    std::string kind;
    int64_t id;
    std::string text, updated;
  };
  std::vector<Row> rows;
  for (const auto& [key, text] : src.notes) {
    const size_t slash = key.find('/');
    if (slash == std::string::npos) continue;
    Row r{key.substr(0, slash), 0, text, ""};
    try {
      r.id = std::stoll(key.substr(slash + 1));
    } catch (const std::exception&) {
      continue;
    }
    auto u = src.updated.find(key);
    if (u != src.updated.end()) r.updated = u->second;
    rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.id < b.id;
  });
  if (asJson) {
    json j = json::array();
    for (const auto& r : rows)
      j.push_back({{"kind", r.kind}, {"feature", r.id}, {"text", r.text}, {"updated", r.updated}});
    return j.dump(2) + "\n";
  }
  std::string out = "# Feature notes — " + fs::path(src.workspace).filename().string() + "\n\n";
  if (rows.empty()) return out + "(no notes yet)\n";
  out += "| kind | feature | note | updated |\n|---|---:|---|---|\n";
  for (const auto& r : rows) {
    std::string t;
    for (char c : r.text)
      t += c == '|' ? std::string("\\|") : c == '\n' ? std::string(" ") : std::string(1, c);
    out += "| " + r.kind + " | " + std::to_string(r.id) + " | " + t + " | " + r.updated + " |\n";
  }
  return out;
}

}  // namespace engine
