// engine/pipeline.h — the pipeline stages (fine-tune, embed, SAE) as jobs. Torch-free header.
//
// Each run*() is called on ONE worker thread (it sets LibTorch's thread-local grad mode and
// thread count there), reports progress through the JobContext, checks ctx.checkStop() at least
// once per batch, and writes its artifact atomically at the end: a cancelled or failed stage
// leaves the workspace as it was. Errors a user can fix throw engine::Error; cancel throws
// engine::Cancelled.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "job.h"

namespace engine {

// Settings shared by every stage.
struct RunOptions {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  int threads = 0;              // 0 = all cores (or $OMP_NUM_THREADS when set)
  uint64_t seed = 0;
};

// Sets the calling thread's LibTorch thread count (0: all cores, or $OMP_NUM_THREADS) and the CPU
// BLAS's threads to match without oversubscribing (see setupDevice); for work outside the stages,
// such as building the feature index. LibTorch's count is per thread with OpenMP: call it on the
// worker.
void configureThreads(int threads);

struct TrainConfig {
  std::string data;  // image folder
  std::string workspace;
  int epochs = 1;
  int batch = 128;
  double lr = 1e-3;
  int imageSize = 224;
  std::string weights;             // torchvision resnet18 state_dict (.pth); "" = random init
  int64_t limit = 0;               // use only the first N images (0 = all)
  std::string normalize = "none";  // none | imagenet
  std::string precision = "fp32";  // fp32 | bf16 | fp16 | tf32 (the last two CUDA only)
  // Resumable training: the model, the optimiser and the position in the data are saved to
  // WS/checkpoints/train.ckpt every `checkpointMinutes` (and every `checkpointSteps` steps when
  // > 0, and when cancelled); `resume` continues from there, giving the same result as an
  // uninterrupted run up to floating-point noise. The checkpoint is removed when the stage ends.
  bool resume = false;
  double checkpointMinutes = 5;
  int64_t checkpointSteps = 0;
  RunOptions run;
};

struct EmbedConfig {
  std::string workspace;
  int batch = 128;
  int imageSize = 0;  // 0 = the size the backbone was trained at
  std::string precision = "fp32";
  RunOptions run;
};

// The SAE stage. Struct defaults are the reference (`seed`); saeDefaults(variant) gives each
// variant's defaults. The modern variants (l1, topk, batchtopk) train on centred, norm-scaled
// inputs and fold that transform (and, for topk/batchtopk, the learned global threshold) into the
// saved weights, so the reference encode f = ReLU((x − b_d) W_e + b_e) on the L2-normalised
// embedding gives the variant's features (see engine/sae.h).
struct SaeConfig {
  std::string workspace;
  std::string variant = "seed";  // seed | l1 | topk | batchtopk
  std::string name;              // run name (saes/<name>.pt); "" = derived from the settings
  int features = 512;
  int epochs = 30;    // passes over the training split (when steps == 0)
  int64_t steps = 0;  // optimiser steps; 0 = epochs × batches per epoch
  int batch = 512;    // clamped to the training split's size
  double lr = 1e-5;   // 0 = scaled with width: 2e-4 · sqrt(16384 / features)
  double l1 = 0.1;    // seed: λ on Σ|f|; l1: λ on Σ f_i ‖W_d,i‖
  double weightDecay = 1e-4;
  int k = 16;                  // topk / batchtopk: active latents per vector
  int kAux = 256;              // AuxK: dead latents used to model the residual
  double auxAlpha = 1.0 / 32;  // AuxK loss weight
  int64_t deadAfter = 0;       // a latent is dead after this many vectors without firing
                               // (0 = one pass over the training split)
  double lrWarmup = 0;         // fraction of steps with linear lr warm-up
  double lrDecay = 0;          // fraction of final steps with linear lr decay to 0
  double l1Warmup = 0;         // l1: fraction of steps over which λ ramps up from 0
  double gradClip = 0;         // global gradient-norm clip (0 = none)
  double decoderInitNorm = 1;  // l1: initial norm of decoder rows
  double thresholdEma = 0.01;  // topk/batchtopk: EMA rate of the global threshold
  bool holdout = false;        // exclude the held-out split from training (modern: on)
  // fp32 | bf16 | tf32: bf16 runs the matrix products in bfloat16 (AMX / tensor cores) with fp32
  // weights, optimiser and losses; tf32 (CUDA only) lets cuBLAS round fp32 products' operands to
  // TF32; fp32 stays the reference.
  std::string precision = "fp32";
  RunOptions run;
  // Resumable training, as TrainConfig's: WS/checkpoints/sae.ckpt (+ sae.json) every
  // `checkpointMinutes` (and every `checkpointSteps` steps when > 0, and when cancelled); `resume`
  // continues the interrupted run with its saved settings, giving the same SAE as an
  // uninterrupted run up to floating-point noise. The checkpoint is removed when the run ends.
  bool resume = false;
  double checkpointMinutes = 5;
  int64_t checkpointSteps = 0;
};

// Every setting that decides what an SAE run computes, by its key (the keys of toJson and of
// the SAE checkpoint's record): f(key, member) for each.
template <class F>
void forEachSaeSetting(SaeConfig& c, F&& f) {
  f("variant", c.variant);
  f("name", c.name);
  f("features", c.features);
  f("epochs", c.epochs);
  f("steps", c.steps);
  f("batch", c.batch);
  f("lr", c.lr);
  f("l1", c.l1);
  f("weight_decay", c.weightDecay);
  f("k", c.k);
  f("k_aux", c.kAux);
  f("aux_alpha", c.auxAlpha);
  f("dead_after", c.deadAfter);
  f("lr_warmup", c.lrWarmup);
  f("lr_decay", c.lrDecay);
  f("l1_warmup", c.l1Warmup);
  f("grad_clip", c.gradClip);
  f("decoder_init_norm", c.decoderInitNorm);
  f("threshold_ema", c.thresholdEma);
  f("holdout", c.holdout);
  f("precision", c.precision);
  f("seed", c.run.seed);
}

// The defaults of `variant` (unknown names: the seed defaults, left for validate() to reject).
// modern: 4096 features, k 16, batch 4096, k_aux 256, α 1/32, 2000 steps, lr scaled with width.
SaeConfig saeDefaults(const std::string& variant);
// The run name used when cfg.name is empty, e.g. "topk-f4096-k16-s0" ("...-s0-bf16" for bf16).
std::string saeRunName(const SaeConfig& cfg);
// The learning rate actually used (resolves lr == 0).
double saeEffectiveLr(const SaeConfig& cfg);

nlohmann::json toJson(const RunOptions& c);
nlohmann::json toJson(const TrainConfig& c);
nlohmann::json toJson(const EmbedConfig& c);
nlohmann::json toJson(const SaeConfig& c);
// The settings of a recorded run (toJson's form, e.g. the manifest's stages.sae.config): the
// variant's defaults with every recorded setting on top. The run name and the run options
// (device, threads, seed) are left at their defaults: a new run gets its own name. Throws
// nlohmann::json's exceptions on values of the wrong type.
SaeConfig saeConfigFromJson(const nlohmann::json& j);

// Throws engine::Error naming the flag when a value is out of range.
void validate(const TrainConfig& c);
void validate(const EmbedConfig& c);
void validate(const SaeConfig& c);

void runTrain(const TrainConfig& cfg, JobContext& ctx);
void runEmbed(const EmbedConfig& cfg, JobContext& ctx);
void runSae(const SaeConfig& cfg, JobContext& ctx);

// What --device resolves to, e.g. "cpu (2 threads)" or "cuda:0 (NVIDIA H100 80GB HBM3)".
// Throws engine::Error when cuda is asked for and LibTorch has none.
std::string describeDevice(const RunOptions& run);
bool cudaAvailable();
// LibTorch's version string, for manifests and --version.
std::string torchVersion();
// The kernels OpenBLAS runs in this process (openblas_get_corename, e.g. "SkylakeX"), or "" when
// the BLAS LibTorch calls is not OpenBLAS.
std::string blasKernels();

}  // namespace engine
