// engine/pipeline.h — the pipeline stages (fine-tune, embed, SAE) as jobs. Torch-free header.
//
// Each run*() is called on ONE worker thread (it sets LibTorch's thread-local grad mode and
// thread count there), reports progress through the JobContext, checks ctx.checkStop() at least
// once per batch, and writes its artifact atomically at the end: a cancelled or failed stage
// leaves the workspace as it was. Errors a user can fix throw engine::Error; cancel throws
// engine::Cancelled.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "job.h"

namespace engine {

// Settings shared by every stage.
struct RunOptions {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  int threads = 0;              // 0 = all cores
  uint64_t seed = 0;
};

struct TrainConfig {
  std::string data;             // image folder
  std::string workspace;
  int epochs = 1;
  int batch = 128;
  double lr = 1e-3;
  int imageSize = 224;
  std::string weights;          // torchvision resnet18 state_dict (.pth); "" = random init
  int64_t limit = 0;            // use only the first N images (0 = all)
  std::string normalize = "none";  // none | imagenet
  std::string precision = "fp32";  // fp32 | bf16
  RunOptions run;
};

struct EmbedConfig {
  std::string workspace;
  int batch = 128;
  int imageSize = 0;            // 0 = the size the backbone was trained at
  std::string precision = "fp32";
  RunOptions run;
};

struct SaeConfig {
  std::string workspace;
  std::string variant = "seed";  // the reference SAE of DESIGN.md
  int features = 512;
  int epochs = 30;
  int batch = 512;
  double lr = 1e-5;
  double l1 = 0.1;
  double weightDecay = 1e-4;
  RunOptions run;
};

nlohmann::json toJson(const RunOptions& c);
nlohmann::json toJson(const TrainConfig& c);
nlohmann::json toJson(const EmbedConfig& c);
nlohmann::json toJson(const SaeConfig& c);

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

}  // namespace engine
