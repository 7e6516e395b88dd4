// The SAE stage (LibTorch).
#include "sae.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "checkpoint.h"
#include "error.h"
#include "fsutil.h"
#include "npy.h"
#include "pipeline.h"
#include "torch_util.h"
#include "workspace.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

SparseAutoencoderImpl::SparseAutoencoderImpl(int64_t inputDim, int64_t features) {
  weight_encoder = register_parameter("weight_encoder", torch::randn({inputDim, features}));
  weight_decoder = register_parameter("weight_decoder", torch::randn({features, inputDim}));
  bias_encoder = register_parameter("bias_encoder", torch::zeros({features}));
  bias_decoder = register_parameter("bias_decoder", torch::zeros({inputDim}));
}

torch::Tensor SparseAutoencoderImpl::encode(const torch::Tensor& x) {
  return torch::relu(torch::addmm(bias_encoder, x - bias_decoder, weight_encoder));
}

torch::Tensor SparseAutoencoderImpl::decode(const torch::Tensor& f) {
  return torch::addmm(bias_decoder, f, weight_decoder);
}

SaeLoss saeLoss(const torch::Tensor& x, const torch::Tensor& xHat, const torch::Tensor& f,
                double l1) {
  SaeLoss l;
  l.reconstruction = (x - xHat).norm();
  l.sparsity = f.abs().sum();
  l.total = l.reconstruction + l1 * l.sparsity;
  return l;
}

torch::Tensor l2normalizeRows(const torch::Tensor& x) {
  return x / x.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);
}

void runSae(const SaeConfig& cfg, JobContext& ctx) {
  validate(cfg);
  Workspace ws = Workspace::open(cfg.workspace, /*create=*/false);
  runStage(ws, "sae", [&] {
    const auto start = std::chrono::steady_clock::now();
    const std::string started = isoNow();
    if (!ws.hasEmbeddings())
      throw Error(ws.embeddingsPath() + ": missing; run `saescope embed --workspace " + ws.dir() +
                  "` first");
    const torch::Device device = setupDevice(cfg.run, &ctx);
    torch::manual_seed(cfg.run.seed);

    const TensorData emb = readNpy(ws.embeddingsPath());
    if (emb.shape.size() != 2 || emb.shape[0] < 1 || emb.shape[1] < 1)
      throw Error(ws.embeddingsPath() + ": expected a 2-D array [N, D], found " + emb.shapeString());
    const int64_t n = emb.shape[0], d = emb.shape[1];
    const torch::Tensor x = l2normalizeRows(toTorch(emb).to(torch::kFloat32)).to(device);

    SparseAutoencoder sae(d, cfg.features);
    sae->to(device);
    torch::optim::Adam opt(sae->parameters(),
                           torch::optim::AdamOptions(cfg.lr).weight_decay(cfg.weightDecay));

    const std::string logPath = ws.path("logs/sae.jsonl");
    std::error_code ec;
    fs::remove(logPath, ec);
    LineAppender log(logPath);

    ctx.beginStage("sae", n * cfg.epochs, "vectors");
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(cfg.run.seed + 7);
    int64_t step = 0;
    double last[4] = {NAN, NAN, NAN, NAN};
    for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
      const torch::Tensor perm =
          torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong)).to(device);
      for (int64_t s = 0; s < n; s += cfg.batch) {
        ctx.checkStop();
        const int64_t e = std::min(n, s + cfg.batch);
        const torch::Tensor xb = x.index_select(0, perm.slice(0, s, e));
        const torch::Tensor f = sae->encode(xb);
        const torch::Tensor xHat = sae->decode(f);
        const SaeLoss loss = saeLoss(xb, xHat, f, cfg.l1);
        opt.zero_grad();
        loss.total.backward();
        opt.step();
        const bool report = device.is_cpu() || step % 20 == 0 || e == n;
        if (report) {
          last[0] = loss.total.item<double>();
          last[1] = loss.reconstruction.item<double>();
          last[2] = loss.sparsity.item<double>();
          last[3] = (f > 0).sum(1).to(torch::kFloat64).mean().item<double>();
          if (!std::isfinite(last[0]))
            throw Error("sae: the loss became " + std::to_string(last[0]) + "; try a smaller --lr");
          ctx.advance(e - s,
                      {{"loss", last[0]}, {"reconstruction", last[1]}, {"sparsity", last[2]},
                       {"l0", last[3]}},
                      step);
          log.appendLine(json{{"step", step}, {"epoch", epoch}, {"loss", last[0]},
                              {"reconstruction", last[1]}, {"sparsity", last[2]}, {"l0", last[3]}}
                             .dump());
        } else {
          ctx.advance(e - s);
        }
        ++step;
      }
    }
    ctx.checkStop();

    // Dead features over the whole set, for the manifest.
    int64_t dead = 0;
    {
      torch::NoGradGuard noGrad;
      torch::Tensor fired = torch::zeros({cfg.features}, torch::TensorOptions().dtype(torch::kBool).device(device));
      for (int64_t s = 0; s < n; s += 8192)
        fired |= (sae->encode(x.slice(0, s, std::min(n, s + 8192))) > 0).any(0);
      dead = cfg.features - fired.sum().item<int64_t>();
    }

    sae->to(torch::kCPU);
    StateDict sd;
    sd.emplace_back("weight_encoder", fromTorch(sae->weight_encoder));
    sd.emplace_back("weight_decoder", fromTorch(sae->weight_decoder));
    sd.emplace_back("bias_encoder", fromTorch(sae->bias_encoder));
    sd.emplace_back("bias_decoder", fromTorch(sae->bias_decoder));
    writeTorchCheckpoint(ws.saePath(), sd);
    fs::remove_all(ws.path("index"), ec);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ws.updateManifest([&](json& m) {
      m["stages"]["sae"] = json{
          {"status", "done"},
          {"config", toJson(cfg)},
          {"started", started},
          {"finished", isoNow()},
          {"seconds", secs},
          {"vectors", n},
          {"input_dim", d},
          {"device", describeDevice(cfg.run)},
          {"final",
           {{"loss", last[0]}, {"reconstruction", last[1]}, {"sparsity", last[2]}, {"l0", last[3]}}},
          {"dead_features", dead},
          {"summary", std::to_string(cfg.features) + " features, " + std::to_string(cfg.epochs) +
                          " epochs, " + formatDuration(secs)}};
    });
    ctx.log("sae: done in " + formatDuration(secs) + ", L0 " + std::to_string(last[3]) + ", " +
            std::to_string(dead) + " dead of " + std::to_string(cfg.features) + "; wrote " +
            ws.saePath());
  });
}

}  // namespace engine
