// `saescope import` and `saescope export`.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "command.h"
#include "commands.h"
#include "engine/error.h"
#include "engine/export.h"
#include "engine/fsutil.h"
#include "engine/import.h"
#include "engine/workspace.h"

namespace fs = std::filesystem;

namespace app {

int cmdImport(const Args& args) {
  engine::ImportConfig cfg;
  Command cmd("import",
              "--data DIR --workspace WS [--embeddings FILE] [--sae FILE] [--backbone FILE]",
              "Builds a workspace from artifacts made elsewhere (a notebook, another model).\n"
              "Row i of the embeddings is image i of DIR in torchvision ImageFolder order.\n"
              "FILEs may be torch.save files (.pt/.pth, zip or legacy), .npy or .safetensors;\n"
              "float16/bfloat16/float64 are converted to float32. Then `saescope topk` and the\n"
              "GUI's browser and study work on them (any embedding width D).");
  cmd.str("--data", "DIR", &cfg.data, "image folder the artifacts belong to")
      .str("--workspace", "WS", &cfg.workspace, "workspace folder (created when missing)")
      .str("--embeddings", "FILE", &cfg.embeddings, "tensor [N, D] (e.g. face_vectors.pt) or .npy")
      .str("--sae", "FILE", &cfg.sae,
           "reference SAE state_dict (weight_encoder [D,F], weight_decoder [F,D], biases)")
      .str("--backbone", "FILE", &cfg.backbone,
           "torchvision resnet18 state_dict, with or without fc (.pth or .safetensors)");
  if (!cmd.parse(args)) return 0;
  if (cfg.data.empty()) throw UsageError("--data: required; the image folder");
  requireWorkspace(cfg.workspace);
  if (cfg.embeddings.empty() && cfg.sae.empty() && cfg.backbone.empty())
    throw UsageError("nothing to import; give --embeddings, --sae and/or --backbone");
  runWithProgress([&](engine::JobContext& ctx) { engine::runImport(cfg, ctx); });
  const engine::Workspace ws = engine::Workspace::open(cfg.workspace, false);
  if (ws.hasEmbeddings()) {
    // Build the feature index now, as the GUI would on opening the workspace.
    runWithProgress([&](engine::JobContext& ctx) {
      const auto idx = engine::FeatureIndex::loadOrBuild(ws.dir(), ctx);
      std::printf("imported into %s: %lld images, %lld dense dimensions, %lld sparse features\n",
                  ws.dir().c_str(), static_cast<long long>(idx->numImages()),
                  static_cast<long long>(idx->numFeatures(engine::FeatureKind::Dense)),
                  static_cast<long long>(idx->numFeatures(engine::FeatureKind::Sparse)));
    });
  } else {
    std::printf("imported into %s; run `saescope embed --workspace %s` next\n", ws.dir().c_str(),
                ws.dir().c_str());
  }
  return 0;
}

int cmdExport(const Args& args) {
  std::string ws, kind = "sparse", rank = "seed", out, features, csv, notes, sheet;
  int64_t grid = -1;
  int cell = 128, sheetCell = 40, columns = 8;
  Command cmd("export",
              "--workspace WS (--grid F --out FILE.png | --contact-sheet FILE.png | "
              "--csv FILE.csv | --notes FILE.md) [options]",
              "Exports a feature's grid as a captioned PNG (id, statistics, note, scores), a\n"
              "contact sheet of many features, a CSV of per-feature statistics and labels, or\n"
              "the feature notes (Markdown, or JSON when FILE ends in .json). Several at once\n"
              "are fine.");
  cmd.str("--workspace", "WS", &ws, "workspace folder")
      .integer("--grid", &grid, "feature whose grid to export (with --out)")
      .str("--out", "FILE.png", &out, "PNG for --grid")
      .str("--kind", "dense|sparse", &kind, "dense dimensions or SAE features")
      .str("--rank", "seed|raw", &rank, "seed: reference (row-normalised); raw: activation")
      .integer("--cell", &cell, "thumbnail size in px for --grid")
      .str("--contact-sheet", "FILE.png", &sheet, "PNG of many features' grids")
      .str("--features", "LIST", &features,
           "features on the contact sheet, e.g. 0-31,40 (default: the first 64)")
      .integer("--columns", &columns, "contact sheet: features per row")
      .integer("--sheet-cell", &sheetCell, "contact sheet: thumbnail size in px")
      .str("--csv", "FILE.csv", &csv, "per-feature statistics and labels of both kinds")
      .str("--notes", "FILE", &notes, "the feature notes (.md or .json)");
  if (!cmd.parse(args)) return 0;
  requireWorkspace(ws);
  if (grid < 0 && sheet.empty() && csv.empty() && notes.empty())
    throw UsageError(
        "nothing to export; give --grid F --out FILE.png, --contact-sheet FILE.png, "
        "--csv FILE or --notes FILE");
  if (grid >= 0 && out.empty()) throw UsageError("--grid: needs --out FILE.png");
  if (grid < 0 && !out.empty()) throw UsageError("--out: needs --grid F");
  if (cell < 16 || cell > 1024) throw UsageError("--cell " + std::to_string(cell) + ": 16..1024");
  if (columns < 1) throw UsageError("--columns: must be at least 1");
  const engine::FeatureKind fk = engine::parseKind(kind, "--kind");
  const engine::RankRule rr = engine::parseRank(rank, "--rank");
  runWithProgress([&](engine::JobContext& ctx) {
    engine::ExportSource src;
    if (grid >= 0 || !sheet.empty() || !csv.empty()) {
      src = engine::loadExportSource(ws, ctx);
    } else {
      src.workspace = engine::Workspace::open(ws, false).dir();
      engine::loadNotes(src.workspace, src);
    }
    if (grid >= 0) {
      engine::CardOptions opt;
      opt.cell = cell;
      engine::writePng(out, engine::renderFeatureCard(src, fk, grid, rr, opt));
      ctx.log("wrote " + out);
    }
    if (!sheet.empty()) {
      const int64_t nf = src.index ? src.index->numFeatures(fk) : 0;
      if (nf == 0)
        throw engine::Error(std::string("--contact-sheet: this workspace has no ") +
                            engine::kindName(fk) + " features");
      const std::string spec =
          features.empty() ? "0-" + std::to_string(std::min<int64_t>(nf, 64) - 1) : features;
      const auto ids = engine::parseFeatureList(spec, nf, "--features");
      engine::writePng(sheet,
                       engine::renderContactSheet(src, fk, ids, rr, columns, sheetCell, &ctx));
      ctx.log("wrote " + sheet);
    }
    if (!csv.empty()) {
      engine::writeFileAtomic(csv, engine::featureStatsCsv(src, rr));
      ctx.log("wrote " + csv);
    }
    if (!notes.empty()) {
      const bool asJson = fs::path(notes).extension() == ".json";
      engine::writeFileAtomic(notes, engine::notesExport(src, asJson));
      ctx.log("wrote " + notes);
    }
  });
  if (!engine::exportFontAvailable())
    std::fprintf(stderr,
                 "saescope: note: DejaVu Sans not found (fonts-dejavu-core); PNGs have "
                 "no captions\n");
  return 0;
}

}  // namespace app
