// JSON forms and validation of the pipeline configs (torch-free).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <type_traits>

#include "error.h"
#include "pipeline.h"

using nlohmann::json;

namespace engine {

json toJson(const RunOptions& c) {
  return {{"device", c.device}, {"threads", c.threads}, {"seed", c.seed}};
}

json toJson(const TrainConfig& c) {
  return {{"data", c.data},      {"epochs", c.epochs},        {"batch", c.batch},
          {"lr", c.lr},          {"image_size", c.imageSize}, {"weights", c.weights},
          {"limit", c.limit},    {"normalize", c.normalize},  {"precision", c.precision},
          {"run", toJson(c.run)}};
}

json toJson(const EmbedConfig& c) {
  return {{"batch", c.batch},
          {"image_size", c.imageSize},
          {"precision", c.precision},
          {"run", toJson(c.run)}};
}

json toJson(const SaeConfig& c) {
  json j = {{"variant", c.variant},
            {"features", c.features},
            {"epochs", c.epochs},
            {"batch", c.batch},
            {"lr", c.lr},
            {"l1", c.l1},
            {"weight_decay", c.weightDecay},
            {"run", toJson(c.run)}};
  if (c.precision != "fp32") j["precision"] = c.precision;  // fp32 records stay as they were
  if (c.variant != "seed") {  // the seed record stays as it was
    j["name"] = c.name.empty() ? saeRunName(c) : c.name;
    j["steps"] = c.steps;
    j["lr_effective"] = saeEffectiveLr(c);
    j["k"] = c.k;
    j["k_aux"] = c.kAux;
    j["aux_alpha"] = c.auxAlpha;
    j["dead_after"] = c.deadAfter;
    j["lr_warmup"] = c.lrWarmup;
    j["lr_decay"] = c.lrDecay;
    j["l1_warmup"] = c.l1Warmup;
    j["grad_clip"] = c.gradClip;
    j["decoder_init_norm"] = c.decoderInitNorm;
    j["threshold_ema"] = c.thresholdEma;
    j["holdout"] = c.holdout;
  } else if (!c.name.empty()) {
    j["name"] = c.name;
  }
  return j;
}

SaeConfig saeConfigFromJson(const json& j) {
  SaeConfig c = saeDefaults(j.value("variant", std::string("seed")));
  forEachSaeSetting(c, [&](const std::string& key, auto& v) {
    if (key == "name" || key == "seed" || !j.contains(key) || j[key].is_null()) return;
    v = j[key].get<std::decay_t<decltype(v)>>();
  });
  return c;
}

SaeConfig saeDefaults(const std::string& variant) {
  SaeConfig c;
  c.variant = variant;
  if (variant != "l1" && variant != "topk" && variant != "batchtopk") return c;
  c.features = 4096;
  c.epochs = 0;
  c.steps = 2000;
  c.batch = 4096;
  c.lr = 0;  // scaled with width
  c.weightDecay = 0;
  c.lrDecay = 0.2;
  c.holdout = true;
  if (variant == "l1") {
    // April 2024 recipe: MSE + λ Σ f_i ‖W_d,i‖, λ warm-up 5%, lr decay 20%, decoder norm 0.1.
    c.l1 = 5;
    c.lr = 5e-5;
    c.l1Warmup = 0.05;
    c.decoderInitNorm = 0.1;
    c.gradClip = 1;
  } else {
    c.l1 = 0;
    c.lrWarmup = 0.05;
  }
  return c;
}

std::string saeRunName(const SaeConfig& c) {
  std::string n = c.variant + "-f" + std::to_string(c.features);
  if (c.variant == "topk" || c.variant == "batchtopk") n += "-k" + std::to_string(c.k);
  if (c.variant == "seed" || c.variant == "l1") {
    char buf[32];
    std::snprintf(buf, sizeof buf, "-l%g", c.l1);
    n += buf;
  }
  n += "-s" + std::to_string(c.run.seed);
  return c.precision == "fp32" ? n : n + "-" + c.precision;
}

double saeEffectiveLr(const SaeConfig& c) {
  if (c.lr > 0) return c.lr;
  return 2e-4 * std::sqrt(16384.0 / std::max(1, c.features));
}

namespace {
void positive(double v, const char* flag, const char* what) {
  if (!(v > 0) || !std::isfinite(v))
    throw Error(std::string(flag) + " " + std::to_string(v) + ": must be " + what);
}

void validateRun(const RunOptions& r) {
  if (r.threads < 0 || r.threads > 1024)
    throw Error("--threads " + std::to_string(r.threads) +
                ": must be between 0 (all cores) and 1024");
  const std::string& d = r.device;
  if (!(d == "auto" || d == "cpu" || d.rfind("cuda", 0) == 0))
    throw Error("--device " + d + ": expected auto, cpu, cuda or cuda:N");
}

// fp16 (CUDA) is for the ResNet stages, whose fine-tuning scales the loss; the SAE's products
// run in fp32, bf16 or tf32 (CUDA).
void validatePrecision(const std::string& p, bool fp16 = true) {
  if (p == "fp32" || p == "bf16" || p == "tf32" || (fp16 && p == "fp16")) return;
  if (p == "fp16")
    throw Error(
        "--precision fp16: the SAE runs in fp32, bf16 or tf32 (fp16 is for fine-tuning and "
        "embedding on CUDA)");
  throw Error("--precision " + p +
              (fp16 ? ": expected fp32, bf16, fp16 or tf32" : ": expected fp32, bf16 or tf32"));
}
}  // namespace

static void validateCheckpointing(double minutes, int64_t steps) {
  if (!(minutes > 0) || minutes > 1e6)
    throw Error("--checkpoint-minutes " + std::to_string(minutes) +
                ": must be a positive number of minutes");
  if (steps < 0)
    throw Error("--checkpoint-steps " + std::to_string(steps) +
                ": must be 0 (time-based only) or more");
}

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
  validateCheckpointing(c.checkpointMinutes, c.checkpointSteps);
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
  validateCheckpointing(c.checkpointMinutes, c.checkpointSteps);
  const std::string& v = c.variant;
  if (v != "seed" && v != "l1" && v != "topk" && v != "batchtopk")
    throw Error("--variant " + v + ": expected seed (the reference), l1, topk or batchtopk");
  if (c.features < 1 || c.features > 1 << 20)
    throw Error("--features " + std::to_string(c.features) + ": must be between 1 and 1048576");
  if (c.epochs < 0 || c.epochs > 1000000 || (c.epochs == 0 && c.steps == 0))
    throw Error("--epochs " + std::to_string(c.epochs) + ": must be at least 1 (or give --steps)");
  if (c.steps < 0 || c.steps > 100000000)
    throw Error("--steps " + std::to_string(c.steps) + ": must be 0 (use --epochs) or more");
  if (v == "seed" && c.steps != 0)
    throw Error("--steps: the seed variant trains by --epochs (the reference); drop --steps");
  if (c.batch < 1 || c.batch > 1 << 20)
    throw Error("--batch " + std::to_string(c.batch) + ": must be at least 1");
  if (v == "seed" || c.lr != 0) positive(c.lr, "--lr", "a positive number (0: scaled with width)");
  if (!(c.l1 >= 0) || !std::isfinite(c.l1))
    throw Error("--l1 " + std::to_string(c.l1) + ": must be 0 or more");
  if (!(c.weightDecay >= 0)) throw Error("--weight-decay: must be 0 or more");
  if ((v == "topk" || v == "batchtopk") && (c.k < 1 || c.k > c.features))
    throw Error("--k " + std::to_string(c.k) + ": must be between 1 and --features (" +
                std::to_string(c.features) + ")");
  if (c.kAux < 0) throw Error("--k-aux " + std::to_string(c.kAux) + ": must be 0 or more");
  if (!(c.auxAlpha >= 0)) throw Error("--aux-alpha: must be 0 or more");
  if (c.deadAfter < 0) throw Error("--dead-after: must be 0 (one pass) or more");
  auto frac = [](double x, const char* flag) {
    if (!(x >= 0 && x <= 1)) throw Error(std::string(flag) + ": must be a fraction in [0, 1]");
  };
  frac(c.lrWarmup, "--lr-warmup");
  frac(c.lrDecay, "--lr-decay");
  frac(c.l1Warmup, "--l1-warmup");
  if (c.lrWarmup + c.lrDecay > 1) throw Error("--lr-warmup + --lr-decay: must be at most 1");
  if (!(c.gradClip >= 0)) throw Error("--grad-clip: must be 0 (none) or more");
  positive(c.decoderInitNorm, "--decoder-init-norm", "a positive number");
  if (!(c.thresholdEma > 0 && c.thresholdEma <= 1))
    throw Error("--threshold-ema: must be in (0, 1]");
  for (char ch : c.name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'))
      throw Error("--name " + c.name + ": use letters, digits, '-', '_' and '.' only");
  if (!c.name.empty() && c.name[0] == '.')
    throw Error("--name " + c.name + ": must not start with '.'");
  validatePrecision(c.precision, /*fp16=*/false);
  validateRun(c.run);
}

}  // namespace engine
