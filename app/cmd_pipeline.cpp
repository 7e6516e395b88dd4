// `saescope demo-data`, `train`, `embed`, `sae`, `run`.
#include <cstdio>
#include <optional>

#include "command.h"
#include "commands.h"
#include "engine/demo_data.h"
#include "engine/features.h"
#include "engine/pipeline.h"
#include "engine/sae_eval.h"
#include "engine/workspace.h"

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
      .integer("--threads", &cfg.threads,
               "worker threads (0: all cores, or $OMP_NUM_THREADS when set)");
  if (!cmd.parse(args)) return 0;
  if (cfg.out.empty()) throw UsageError("--out: required; e.g. saescope demo-data --out demo");
  runWithProgress([&](engine::JobContext& ctx) { engine::generateDemoData(cfg, ctx); });
  std::printf("wrote %d images to %s\n", cfg.count, cfg.out.c_str());
  return 0;
}

// --resume, --checkpoint-minutes, --checkpoint-steps of a resumable stage.
static void checkpointFlags(Command& cmd, const std::string& what, bool* resume, double* minutes,
                            int64_t* steps) {
  cmd.sw("--resume", resume,
         "continue the interrupted " + what + " saved in WS/checkpoints/ (with its settings)")
      .real("--checkpoint-minutes", minutes,
            "save a resumable checkpoint this often (and on Ctrl-C)")
      .integer("--checkpoint-steps", steps, "also save one every N steps (0: time-based only)");
}

static void trainFlags(Command& cmd, engine::TrainConfig& t) {
  cmd.str("--data", "DIR", &t.data, "image folder (searched recursively; CelebA layout recognised)")
      .str("--workspace", "WS", &t.workspace, "workspace folder (created if missing)")
      .integer("--epochs", &t.epochs, "fine-tuning epochs")
      .integer("--batch", &t.batch, "fine-tuning batch size")
      .real("--lr", &t.lr, "Adam learning rate")
      .integer("--image-size", &t.imageSize, "images are resized to this square")
      .str("--weights", "FILE", &t.weights,
           "torchvision resnet18 checkpoint (.pth); empty: torch's hub cache if it has one; "
           "none: random init")
      .integer("--limit", &t.limit, "use only the first N images (0: all)")
      .str("--normalize", "none|imagenet", &t.normalize, "input normalisation")
      .str("--precision", "fp32|bf16|fp16|tf32", &t.precision,
           "fp32: the reference; bf16: autocast (AMX, tensor cores); fp16: CUDA only, autocast "
           "with loss scaling (GPUs without bf16); tf32: CUDA only, fp32 whose products use "
           "TF32 tensor cores (Ampere and later)");
  checkpointFlags(cmd, "run", &t.resume, &t.checkpointMinutes, &t.checkpointSteps);
}

// The value of the last `flag` in args ("--flag V" or "--flag=V"), before the command parses
// them; nullopt when absent (or given last without a value).
static std::optional<std::string> flagValue(const std::vector<std::string>& args,
                                            const std::string& flag) {
  std::optional<std::string> v;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag && i + 1 < args.size()) v = args[i + 1];
    if (args[i].rfind(flag + "=", 0) == 0) v = args[i].substr(flag.size() + 1);
  }
  return v;
}

// The value of --variant in args ("seed" when absent), so that each variant's defaults apply
// before the other flags are parsed (and show in --help).
static std::string variantOf(const std::vector<std::string>& args) {
  return flagValue(args, "--variant").value_or("seed");
}

// The modern variants train for a number of steps by default (2,000); --epochs given without
// --steps asks for epochs instead (steps 0), rather than being silently overridden.
static void epochsOverDefaultSteps(const std::vector<std::string>& args, engine::SaeConfig& s,
                                   bool prefixed) {
  const std::string p = prefixed ? "--sae-" : "--";
  if (flagValue(args, p + "epochs") && !flagValue(args, p + "steps")) s.steps = 0;
}

static void saeFlags(Command& cmd, engine::SaeConfig& s, bool prefixed, std::string* holdout) {
  const std::string p = prefixed ? "--sae-" : "--";
  cmd.str("--variant", "seed|l1|topk|batchtopk", &s.variant,
          "SAE variant (seed: the reference; put it first: it sets the other defaults)")
      .str(p + "name", "NAME", &s.name, "run name (saes/NAME.pt; default: from the settings)")
      .integer("--features", &s.features, "SAE features (dictionary size)")
      .integer(p + "epochs", &s.epochs, "SAE epochs (when " + p + "steps is 0)")
      .integer(p + "steps", &s.steps,
               "SAE optimiser steps (0: from epochs; " + p + "epochs alone sets 0)")
      .integer(p + "batch", &s.batch, "SAE batch size")
      .real(p + "lr", &s.lr, "SAE Adam learning rate (0: 2e-4·sqrt(16384/features))")
      .real("--l1", &s.l1, "sparsity penalty λ (seed, l1)")
      .real("--weight-decay", &s.weightDecay, "Adam weight decay")
      .integer("--k", &s.k, "topk/batchtopk: active latents per vector")
      .integer("--k-aux", &s.kAux, "AuxK: dead latents modelling the residual")
      .real("--aux-alpha", &s.auxAlpha, "AuxK loss weight")
      .integer("--dead-after", &s.deadAfter,
               "vectors without firing until a latent counts as dead (0: one pass)")
      .real("--lr-warmup", &s.lrWarmup, "fraction of steps with lr warm-up")
      .real("--lr-decay", &s.lrDecay, "fraction of final steps with lr decay to 0")
      .real("--l1-warmup", &s.l1Warmup, "l1: fraction of steps over which λ ramps up")
      .real("--grad-clip", &s.gradClip, "gradient-norm clip (0: none)")
      .real("--decoder-init-norm", &s.decoderInitNorm, "l1: initial decoder row norm")
      .real("--threshold-ema", &s.thresholdEma, "topk/batchtopk: EMA rate of the global threshold")
      .str("--holdout", "yes|no", holdout, "exclude the held-out split from SAE training");
  if (!prefixed)  // `run` takes one --precision for every stage
    cmd.str("--precision", "fp32|bf16|tf32", &s.precision,
            "products in bf16 (AMX, tensor cores) or tf32 (CUDA only), weights and losses in "
            "fp32");
}

static void applyHoldout(engine::SaeConfig& s, const std::string& h) {
  if (h == "yes")
    s.holdout = true;
  else if (h == "no")
    s.holdout = false;
  else
    throw UsageError("--holdout " + h + ": expected yes or no");
}

// "8,16,32" → {8, 16, 32}; "" → {}.
static std::vector<double> parseList(const std::string& flag, const std::string& v) {
  std::vector<double> out;
  size_t pos = 0;
  while (pos < v.size()) {
    const size_t c = v.find(',', pos);
    out.push_back(
        parseDouble(flag, v.substr(pos, c == std::string::npos ? std::string::npos : c - pos)));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

int cmdTrain(const std::vector<std::string>& args) {
  engine::TrainConfig t;
  Command cmd(
      "train", "--data DIR --workspace WS [options]",
      "Fine-tunes ResNet18 with the contrastive + orientation loss; writes WS/backbone.pt.");
  trainFlags(cmd, t);
  cmd.common(&t.run);
  if (!cmd.parse(args)) return 0;
  if (t.data.empty() && !t.resume)
    throw UsageError("--data: required; pass --data DIR (an image folder)");
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
      .str("--precision", "fp32|bf16|fp16|tf32", &e.precision,
           "the model in fp32 (the reference), bf16, fp16 (CUDA only) or fp32 with TF32 "
           "products (tf32, CUDA only)");
  cmd.common(&e.run);
  if (!cmd.parse(args)) return 0;
  requireWorkspace(e.workspace);
  runWithProgress([&](engine::JobContext& ctx) { engine::runEmbed(e, ctx); });
  return 0;
}

static void buildIndex(const std::string& ws, int threads, engine::JobContext& ctx) {
  engine::configureThreads(threads);
  engine::FeatureIndex::loadOrBuild(ws, ctx);
  ctx.log("index: top-" + std::to_string(engine::FeatureIndex::kStoredK) + " lists cached in " +
          ws + "/index/");
}

int cmdSae(const std::vector<std::string>& args) {
  engine::SaeConfig s = engine::saeDefaults(variantOf(args));
  std::string holdout = s.holdout ? "yes" : "no", sweepK, sweepSeeds, sweepL1, use;
  Command cmd("sae", "--workspace WS [--variant V] [options]",
              "Trains a sparse autoencoder on the embeddings; writes WS/saes/NAME.pt and makes it "
              "the current SAE (WS/sae.pt).");
  cmd.str("--workspace", "WS", &s.workspace, "workspace folder");
  saeFlags(cmd, s, false, &holdout);
  cmd.str("--sweep-k", "K,K,..", &sweepK, "train one SAE per k (topk/batchtopk)")
      .str("--sweep-l1", "X,X,..", &sweepL1, "train one SAE per λ (seed/l1)")
      .str("--sweep-seeds", "S,S,..", &sweepSeeds, "train one SAE per seed")
      .str("--use", "NAME", &use, "make SAE NAME the current one (no training)");
  checkpointFlags(cmd, "SAE run", &s.resume, &s.checkpointMinutes, &s.checkpointSteps);
  cmd.common(&s.run);
  if (!cmd.parse(args)) return 0;
  epochsOverDefaultSteps(args, s, false);
  requireWorkspace(s.workspace);
  if (s.resume && (!use.empty() || !sweepK.empty() || !sweepL1.empty() || !sweepSeeds.empty()))
    throw UsageError(std::string("--resume continues one interrupted run; drop ") +
                     (!use.empty() ? "--use" : "the --sweep-* flags") +
                     " (a sweep's finished SAEs are kept: run the rest with their own values)");
  if (!use.empty()) {
    engine::selectSae(s.workspace, use);
    runWithProgress([&](engine::JobContext& ctx) { buildIndex(s.workspace, s.run.threads, ctx); });
    std::printf("current SAE: %s\n", use.c_str());
    return 0;
  }
  applyHoldout(s, holdout);
  std::vector<engine::SaeConfig> runs;
  const std::vector<double> ks = parseList("--sweep-k", sweepK),
                            l1s = parseList("--sweep-l1", sweepL1),
                            seeds = parseList("--sweep-seeds", sweepSeeds);
  for (double k : ks.empty() ? std::vector<double>{double(s.k)} : ks)
    for (double l1 : l1s.empty() ? std::vector<double>{s.l1} : l1s)
      for (double seed : seeds.empty() ? std::vector<double>{double(s.run.seed)} : seeds) {
        engine::SaeConfig r = s;
        r.k = static_cast<int>(k);
        r.l1 = l1;
        r.run.seed = static_cast<uint64_t>(seed);
        if (!s.name.empty() && (ks.size() > 1 || l1s.size() > 1 || seeds.size() > 1))
          r.name = s.name + "-" + engine::saeRunName(r);
        engine::validate(r);
        runs.push_back(r);
      }
  runWithProgress([&](engine::JobContext& ctx) {
    for (const auto& r : runs) engine::runSae(r, ctx);
    buildIndex(s.workspace, s.run.threads, ctx);
  });
  if (runs.size() > 1) {
    const engine::Workspace w = engine::Workspace::open(s.workspace, false);
    std::printf("%-32s %8s %8s %8s\n", "sae", "l0", "ev", "dead");
    for (const auto& r : runs) {
      const std::string n = r.name.empty() ? engine::saeRunName(r) : r.name;
      const auto& m = w.manifest()["sae_runs"][n]["metrics"];
      if (m.is_object())
        std::printf("%-32s %8.2f %8.4f %8.4f\n", n.c_str(), m.value("l0", 0.0),
                    m.value("explained_variance", 0.0), m.value("dead_fraction", 0.0));
    }
  }
  return 0;
}

int cmdRun(const std::vector<std::string>& args) {
  engine::TrainConfig t;
  engine::EmbedConfig e;
  engine::SaeConfig s = engine::saeDefaults(variantOf(args));
  std::string holdout = s.holdout ? "yes" : "no";
  Command cmd("run", "--data DIR --workspace WS [options]",
              "The whole pipeline: train, embed, sae (and the feature index). --precision applies "
              "to every stage; with fp16 the SAE trains in fp32.");
  trainFlags(cmd, t);
  cmd.integer("--embed-batch", &e.batch, "embedding batch size");
  saeFlags(cmd, s, true, &holdout);
  cmd.common(&t.run);
  if (!cmd.parse(args)) return 0;
  epochsOverDefaultSteps(args, s, true);
  applyHoldout(s, holdout);
  if (t.data.empty()) throw UsageError("--data: required; pass --data DIR (an image folder)");
  requireWorkspace(t.workspace);
  e.workspace = s.workspace = t.workspace;
  e.run = s.run = t.run;
  e.precision = s.precision = t.precision;
  if (t.precision == "fp16") s.precision = "fp32";  // the SAE's products: fp32 or bf16
  engine::validate(t);
  engine::validate(e);
  engine::validate(s);
  runWithProgress([&](engine::JobContext& ctx) {
    engine::runTrain(t, ctx);
    engine::runEmbed(e, ctx);
    engine::runSae(s, ctx);
    buildIndex(t.workspace, t.run.threads, ctx);
  });
  std::printf(
      "workspace ready: %s\n  try: saescope topk --workspace %s --kind sparse --feature 0\n",
      t.workspace.c_str(), t.workspace.c_str());
  return 0;
}

}  // namespace app
