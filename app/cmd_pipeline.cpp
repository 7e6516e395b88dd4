// `saescope demo-data`, `train`, `embed`, `sae`, `run`.
#include <cstdio>

#include "command.h"
#include "commands.h"
#include "engine/demo_data.h"
#include "engine/features.h"
#include "engine/pipeline.h"

namespace app {

int cmdDemoData(const std::vector<std::string>& args) {
  engine::DemoDataConfig cfg;
  cfg.count = 2000;
  Command cmd("demo-data", "--out DIR [options]",
              "Writes the built-in synthetic face data set (CelebA layout, with attributes).");
  cmd.str("--out", "DIR", &cfg.out, "folder to create (must be new or empty)")
      .integer("--count", &cfg.count, "number of images")
      .integer("--size", &cfg.size, "image side in pixels")
      .integer("--seed", &cfg.seed, "random seed (same seed: same files)")
      .str("--format", "png|jpg", &cfg.format, "image format")
      .integer("--threads", &cfg.threads, "worker threads (0: all cores)");
  if (!cmd.parse(args)) return 0;
  if (cfg.out.empty()) throw UsageError("--out: required; e.g. saescope demo-data --out demo");
  runWithProgress([&](engine::JobContext& ctx) { engine::generateDemoData(cfg, ctx); });
  std::printf("wrote %d images to %s\n", cfg.count, cfg.out.c_str());
  return 0;
}

static void trainFlags(Command& cmd, engine::TrainConfig& t) {
  cmd.str("--data", "DIR", &t.data, "image folder (searched recursively; CelebA layout recognised)")
      .str("--workspace", "WS", &t.workspace, "workspace folder (created if missing)")
      .integer("--epochs", &t.epochs, "fine-tuning epochs")
      .integer("--batch", &t.batch, "fine-tuning batch size")
      .real("--lr", &t.lr, "Adam learning rate")
      .integer("--image-size", &t.imageSize, "images are resized to this square")
      .str("--weights", "FILE", &t.weights,
           "torchvision resnet18 checkpoint (.pth); none: random init")
      .integer("--limit", &t.limit, "use only the first N images (0: all)")
      .str("--normalize", "none|imagenet", &t.normalize, "input normalisation")
      .str("--precision", "fp32|bf16", &t.precision, "numeric precision");
}

static void saeFlags(Command& cmd, engine::SaeConfig& s, bool prefixed) {
  const std::string p = prefixed ? "--sae-" : "--";
  cmd.integer("--features", &s.features, "SAE features (dictionary size)")
      .integer(p + "epochs", &s.epochs, "SAE epochs")
      .integer(p + "batch", &s.batch, "SAE batch size")
      .real(p + "lr", &s.lr, "SAE Adam learning rate")
      .real("--l1", &s.l1, "sparsity penalty λ")
      .real("--weight-decay", &s.weightDecay, "Adam weight decay")
      .str("--variant", "seed", &s.variant, "SAE variant (seed: the reference)");
}

int cmdTrain(const std::vector<std::string>& args) {
  engine::TrainConfig t;
  Command cmd(
      "train", "--data DIR --workspace WS [options]",
      "Fine-tunes ResNet18 with the contrastive + orientation loss; writes WS/backbone.pt.");
  trainFlags(cmd, t);
  cmd.common(&t.run);
  if (!cmd.parse(args)) return 0;
  if (t.data.empty()) throw UsageError("--data: required; pass --data DIR (an image folder)");
  requireWorkspace(t.workspace);
  runWithProgress([&](engine::JobContext& ctx) { engine::runTrain(t, ctx); });
  return 0;
}

int cmdEmbed(const std::vector<std::string>& args) {
  engine::EmbedConfig e;
  Command cmd("embed", "--workspace WS [options]",
              "Writes one 512-d embedding per image (eval mode) to WS/embeddings.npy.");
  cmd.str("--workspace", "WS", &e.workspace, "workspace folder")
      .integer("--batch", &e.batch, "batch size")
      .integer("--image-size", &e.imageSize, "0: the size the backbone was trained at")
      .str("--precision", "fp32|bf16", &e.precision, "numeric precision");
  cmd.common(&e.run);
  if (!cmd.parse(args)) return 0;
  requireWorkspace(e.workspace);
  runWithProgress([&](engine::JobContext& ctx) { engine::runEmbed(e, ctx); });
  return 0;
}

static void buildIndex(const std::string& ws, engine::JobContext& ctx) {
  engine::FeatureIndex::loadOrBuild(ws, ctx);
  ctx.log("index: top-" + std::to_string(engine::FeatureIndex::kStoredK) + " lists cached in " +
          ws + "/index/");
}

int cmdSae(const std::vector<std::string>& args) {
  engine::SaeConfig s;
  Command cmd("sae", "--workspace WS [options]",
              "Trains the sparse autoencoder on the embeddings; writes WS/sae.pt.");
  cmd.str("--workspace", "WS", &s.workspace, "workspace folder");
  saeFlags(cmd, s, false);
  cmd.common(&s.run);
  if (!cmd.parse(args)) return 0;
  requireWorkspace(s.workspace);
  runWithProgress([&](engine::JobContext& ctx) {
    engine::runSae(s, ctx);
    buildIndex(s.workspace, ctx);
  });
  return 0;
}

int cmdRun(const std::vector<std::string>& args) {
  engine::TrainConfig t;
  engine::EmbedConfig e;
  engine::SaeConfig s;
  Command cmd("run", "--data DIR --workspace WS [options]",
              "The whole pipeline: train, embed, sae (and the feature index).");
  trainFlags(cmd, t);
  cmd.integer("--embed-batch", &e.batch, "embedding batch size");
  saeFlags(cmd, s, true);
  cmd.common(&t.run);
  if (!cmd.parse(args)) return 0;
  if (t.data.empty()) throw UsageError("--data: required; pass --data DIR (an image folder)");
  requireWorkspace(t.workspace);
  e.workspace = s.workspace = t.workspace;
  e.run = s.run = t.run;
  e.precision = t.precision;
  engine::validate(t);
  engine::validate(e);
  engine::validate(s);
  runWithProgress([&](engine::JobContext& ctx) {
    engine::runTrain(t, ctx);
    engine::runEmbed(e, ctx);
    engine::runSae(s, ctx);
    buildIndex(t.workspace, ctx);
  });
  std::printf(
      "workspace ready: %s\n  try: saescope topk --workspace %s --kind sparse --feature 0\n",
      t.workspace.c_str(), t.workspace.c_str());
  return 0;
}

}  // namespace app
