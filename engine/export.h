// engine/export.h — taking results out of a workspace: a feature's grid as a captioned PNG, a
// contact sheet of many features, a CSV of per-feature statistics and labels, the feature notes.
// Everything is composed on the CPU (text with stb_truetype and DejaVu Sans), so the GUI, the CLI
// and the tests share it; the GUI only hands the finished file name to a worker.
//
// Thread-safety: ExportSource is immutable once loaded; the render/format functions read it and
// may run on any thread concurrently.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "features.h"
#include "image.h"
#include "job.h"

namespace engine {

// What the exports read: the feature index, images.txt, and the notes (WS/notes.json).
struct ExportSource {
  std::string workspace;  // folder, for titles
  std::string dataRoot;
  std::vector<std::string> images;  // images.txt; row i = image i
  std::shared_ptr<const FeatureIndex> index;
  std::map<std::string, std::string> notes;    // "sparse/12" → text
  std::map<std::string, std::string> updated;  // "sparse/12" → ISO time of the note
  std::string absolutePath(int64_t row) const;
  std::string note(FeatureKind k, int64_t feature) const;  // "" when none
};

// Loads a workspace for export (FeatureIndex::loadOrBuild on the calling thread). Throws
// engine::Error naming the missing artifact.
ExportSource loadExportSource(const std::string& workspace, JobContext& ctx);
// Reads WS/notes.json into `src` ({"notes": {"sparse/12": {"text": ..., "updated": ...}}});
// a missing file leaves no notes, a damaged one throws engine::Error naming it.
void loadNotes(const std::string& workspace, ExportSource& src);

struct CardOptions {
  int cols = 4;    // grid columns
  int count = 16;  // images (cols x count/cols)
  int cell = 128;  // thumbnail side in px
  int pad = 4;
  float fontPx = 0;    // caption size; 0 = from cell size
  bool scores = true;  // each thumbnail's score in its corner
};

// One feature: a title line (kind, id, active fraction, max, mean), its note when there is one,
// and the grid of its top images with their scores. RGBA. Throws engine::Error for a feature id
// out of range.
Image renderFeatureCard(const ExportSource& src, FeatureKind kind, int64_t feature, RankRule rule,
                        const CardOptions& opt = {});

// Many features, `columns` cards a row, each a small grid with its id; a title on top. RGBA.
Image renderContactSheet(const ExportSource& src, FeatureKind kind,
                         const std::vector<int64_t>& features, RankRule rule, int columns = 8,
                         int cell = 40, JobContext* ctx = nullptr);

// One row per feature of both kinds: kind, feature, active, active_fraction, mean, min, max,
// top1 index, path and score, mean of the top-16 scores, label (the note). RFC 4180 quoting.
std::string featureStatsCsv(const ExportSource& src, RankRule rule = RankRule::Seed);

// The notes as Markdown (a table), or as JSON when `json` is set.
std::string notesExport(const ExportSource& src, bool json);

// Parses "0-15,20,31" into ids (each < count); throws engine::Error naming `flag`.
std::vector<int64_t> parseFeatureList(const std::string& spec, int64_t count,
                                      const std::string& flag);

// Draws `text` (UTF-8) onto an RGBA image with its top-left at (x, y), `px` pixels high; returns
// the x after the text. Without a usable font (DejaVu Sans missing) draws nothing and returns x.
int drawText(Image& img, int x, int y, const std::string& text, float px, uint8_t r, uint8_t g,
             uint8_t b);
// Width in pixels that drawText() would take.
int textWidth(const std::string& text, float px);
// True when a font was found (text appears in exports).
bool exportFontAvailable();

}  // namespace engine
