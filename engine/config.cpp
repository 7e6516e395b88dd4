// JSON forms and validation of the pipeline configs (torch-free).
#include <cmath>

#include "error.h"
#include "pipeline.h"

using nlohmann::json;

namespace engine {

json toJson(const RunOptions& c) {
  return {{"device", c.device}, {"threads", c.threads}, {"seed", c.seed}};
}

json toJson(const TrainConfig& c) {
  return {{"data", c.data},         {"epochs", c.epochs},       {"batch", c.batch},
          {"lr", c.lr},             {"image_size", c.imageSize}, {"weights", c.weights},
          {"limit", c.limit},       {"normalize", c.normalize}, {"precision", c.precision},
          {"run", toJson(c.run)}};
}

json toJson(const EmbedConfig& c) {
  return {{"batch", c.batch},
          {"image_size", c.imageSize},
          {"precision", c.precision},
          {"run", toJson(c.run)}};
}

json toJson(const SaeConfig& c) {
  return {{"variant", c.variant}, {"features", c.features}, {"epochs", c.epochs},
          {"batch", c.batch},     {"lr", c.lr},             {"l1", c.l1},
          {"weight_decay", c.weightDecay}, {"run", toJson(c.run)}};
}

namespace {
void positive(double v, const char* flag, const char* what) {
  if (!(v > 0) || !std::isfinite(v))
    throw Error(std::string(flag) + " " + std::to_string(v) + ": must be " + what);
}

void validateRun(const RunOptions& r) {
  if (r.threads < 0 || r.threads > 1024)
    throw Error("--threads " + std::to_string(r.threads) + ": must be between 0 (all cores) and 1024");
  const std::string& d = r.device;
  if (!(d == "auto" || d == "cpu" || d.rfind("cuda", 0) == 0))
    throw Error("--device " + d + ": expected auto, cpu, cuda or cuda:N");
}

void validatePrecision(const std::string& p) {
  if (p != "fp32" && p != "bf16")
    throw Error("--precision " + p + ": expected fp32 or bf16");
}
}  // namespace

void validate(const TrainConfig& c) {
  if (c.epochs < 0 || c.epochs > 100000)
    throw Error("--epochs " + std::to_string(c.epochs) + ": must be between 0 and 100000");
  if (c.batch < 2 || c.batch > 65536)
    throw Error("--batch " + std::to_string(c.batch) +
                ": must be at least 2 (the contrastive loss compares images within a batch)");
  positive(c.lr, "--lr", "a positive number");
  if (c.imageSize < 32 || c.imageSize > 1024)
    throw Error("--image-size " + std::to_string(c.imageSize) + ": must be between 32 and 1024");
  if (c.limit < 0) throw Error("--limit " + std::to_string(c.limit) + ": must be 0 (all) or more");
  if (c.normalize != "none" && c.normalize != "imagenet")
    throw Error("--normalize " + c.normalize + ": expected none or imagenet");
  validatePrecision(c.precision);
  validateRun(c.run);
}

void validate(const EmbedConfig& c) {
  if (c.batch < 1 || c.batch > 65536)
    throw Error("--batch " + std::to_string(c.batch) + ": must be between 1 and 65536");
  if (c.imageSize != 0 && (c.imageSize < 32 || c.imageSize > 1024))
    throw Error("--image-size " + std::to_string(c.imageSize) + ": must be between 32 and 1024");
  validatePrecision(c.precision);
  validateRun(c.run);
}

void validate(const SaeConfig& c) {
  if (c.variant != "seed")
    throw Error("--variant " + c.variant + ": this build knows only 'seed' (the reference SAE)");
  if (c.features < 1 || c.features > 1 << 20)
    throw Error("--features " + std::to_string(c.features) + ": must be between 1 and 1048576");
  if (c.epochs < 1 || c.epochs > 1000000)
    throw Error("--epochs " + std::to_string(c.epochs) + ": must be at least 1");
  if (c.batch < 1 || c.batch > 1 << 20)
    throw Error("--batch " + std::to_string(c.batch) + ": must be at least 1");
  positive(c.lr, "--lr", "a positive number");
  if (!(c.l1 >= 0) || !std::isfinite(c.l1))
    throw Error("--l1 " + std::to_string(c.l1) + ": must be 0 or more");
  if (!(c.weightDecay >= 0)) throw Error("--weight-decay: must be 0 or more");
  validateRun(c.run);
}

}  // namespace engine
