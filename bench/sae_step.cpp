// bench/sae_step.cpp — the reference SAE's fp32 training epoch on the CPU, by hand (SeedCpuStep,
// what `saescope sae` runs) against autograd (seedAutogradStep, each with its best thread split),
// in interleaved rounds: this VM's speed drifts by tens of per cent within minutes, so only
// neighbouring rounds compare. Also the hand step's gradients alone (its Adam step left out).
// Random unit vectors stand in for the embeddings (the SAE sees only their directions).
//   usage: saescope_bench_sae_step [ROWS=202599] [FEATURES=512] [BATCH=512] [ROUNDS=3]
//          [THREADS=0 (all cores)]
// With a variant first (topk or batchtopk), that SAE's epoch instead: TopkCpuStep against
// autograd, through SaeTrainer as `saescope sae` runs it (defaults 4,096 features, batch 4,096):
//   saescope_bench_sae_step topk [ROWS=202599] [FEATURES=4096] [BATCH=4096] [ROUNDS=3] [THREADS]
// On a VM where OpenBLAS takes the CPU for a "Prescott", set OPENBLAS_CORETYPE=SkylakeX (the app
// does so itself; see README "What mattered").
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/pipeline.h"
#include "engine/sae.h"
#include "engine/torch_util.h"

namespace {

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

enum class Mode { Hand, HandGradients, Autograd };

// One epoch (one shuffle, every batch) from the same initial weights; returns seconds.
double epoch(Mode mode, const torch::Tensor& x, int64_t features, int64_t batch, int threads,
             double* lastLoss) {
  const int64_t n = x.size(0);
  engine::configureThreads(threads);
  if (mode == Mode::Autograd)
    engine::preferBlasThreads(engine::RunOptions{"cpu", threads, 0}, torch::kCPU);
  else
    engine::useSingleThreadedBlas();
  torch::manual_seed(0);
  engine::SparseAutoencoder sae(x.size(1), features);
  torch::optim::Adam opt(sae->parameters(), torch::optim::AdamOptions(1e-5));
  engine::SeedCpuStep hand(sae, 0.1);
  const torch::Tensor perm = torch::randperm(n, torch::kLong);
  const auto t0 = std::chrono::steady_clock::now();
  engine::SeedStepLosses l;
  for (int64_t s = 0; s < n; s += batch) {
    const torch::Tensor rows = perm.slice(0, s, std::min(n, s + batch));
    if (mode == Mode::Hand)
      l = hand.step(x, rows, opt);
    else if (mode == Mode::HandGradients)
      l = hand.gradients(x, rows);
    else
      l = engine::seedAutogradStep(sae, x.index_select(0, rows), 0.1, opt, true);
  }
  const double t = seconds(t0);
  *lastLoss = l.total;
  return t;
}

// One epoch of a topk / batchtopk SAE through SaeTrainer, written out or through autograd
// (SAESCOPE_SAE_AUTOGRAD, read at the trainer's first step); returns seconds.
double epochModern(const std::string& variant, bool hand, const torch::Tensor& x, int64_t features,
                   int64_t batch, int threads, double* lastLoss) {
  const int64_t n = x.size(0);
  engine::configureThreads(threads);
  if (hand) {
    engine::useSingleThreadedBlas();
    unsetenv("SAESCOPE_SAE_AUTOGRAD");
  } else {
    engine::preferBlasThreads(engine::RunOptions{"cpu", threads, 0}, torch::kCPU);
    setenv("SAESCOPE_SAE_AUTOGRAD", "1", 1);
  }
  engine::SaeConfig cfg = engine::saeDefaults(variant);
  cfg.features = static_cast<int>(features);
  cfg.batch = static_cast<int>(batch);
  const int64_t steps = (n + batch - 1) / batch;
  engine::SaeTrainer trainer(cfg, x.size(1), steps, n);
  trainer.initialise(x.slice(0, 0, std::min<int64_t>(n, 8192)),
                     torch::make_generator<at::CPUGeneratorImpl>(11));
  torch::manual_seed(0);
  const torch::Tensor perm = torch::randperm(n, torch::kLong);
  const auto t0 = std::chrono::steady_clock::now();
  engine::SaeTrainer::Step st;
  for (int64_t s = 0; s < n; s += batch) {
    const torch::Tensor xb = x.index_select(0, perm.slice(0, s, std::min(n, s + batch)));
    st = trainer.step(xb, s + batch >= n);
  }
  const double t = seconds(t0);
  unsetenv("SAESCOPE_SAE_AUTOGRAD");
  if (trainer.writtenOut() != hand)
    throw engine::Error("the trainer did not take the step asked for");
  *lastLoss = st.loss;
  return t;
}

int modernMain(const std::string& variant, int argc, char** argv) {
  const int64_t rows = argc > 2 ? std::stoll(argv[2]) : 202599;
  const int64_t features = argc > 3 ? std::stoll(argv[3]) : 4096;
  const int64_t batch = argc > 4 ? std::stoll(argv[4]) : 4096;
  const int rounds = argc > 5 ? std::stoi(argv[5]) : 3;
  const int threads = argc > 6 ? std::stoi(argv[6]) : 0;
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({rows, 512}).contiguous();
  // The dense bound: one product a step, the encoder's X̄ W_e (the rest is k rows a vector).
  const double flops = 2.0 * static_cast<double>(rows) * 512 * static_cast<double>(features);
  std::printf(
      "%s SAE, %lld x 512, %lld features, batch %lld, %d thread(s); one epoch each, "
      "seconds\n| round | written out | autograd | speed-up |\n|---|---|---|---|\n",
      variant.c_str(), static_cast<long long>(rows), static_cast<long long>(features),
      static_cast<long long>(batch), threads);
  double best[2] = {1e30, 1e30};
  for (int r = 0; r < rounds; ++r) {
    double loss[2], t[2];
    t[0] = epochModern(variant, true, x, features, batch, threads, &loss[0]);
    t[1] = epochModern(variant, false, x, features, batch, threads, &loss[1]);
    for (int i = 0; i < 2; ++i) best[i] = std::min(best[i], t[i]);
    std::printf("| %d | %.2f | %.2f | %.2fx |\n", r + 1, t[0], t[1], t[1] / t[0]);
    if (std::abs(loss[0] - loss[1]) > 1e-3 * std::abs(loss[1]))
      throw engine::Error("the two steps disagree: last loss " + std::to_string(loss[0]) +
                          " written out, " + std::to_string(loss[1]) + " through autograd");
  }
  std::printf(
      "best: written out %.2f s (the encoder product alone at %.0f GFLOP/s), autograd "
      "%.2f s\n",
      best[0], flops / best[0] / 1e9, best[1]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);  // as app/main.cpp: LibTorch's per-step tensors in the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  try {
    if (argc > 1 && (std::string(argv[1]) == "topk" || std::string(argv[1]) == "batchtopk"))
      return modernMain(argv[1], argc, argv);
    const int64_t rows = argc > 1 ? std::stoll(argv[1]) : 202599;
    const int64_t features = argc > 2 ? std::stoll(argv[2]) : 512;
    const int64_t batch = argc > 3 ? std::stoll(argv[3]) : 512;
    const int rounds = argc > 4 ? std::stoi(argv[4]) : 3;
    const int threads = argc > 5 ? std::stoi(argv[5]) : 0;
    if (rows < 1 || features < 1 || batch < 1 || rounds < 1) {
      std::fprintf(stderr,
                   "usage: %s [ROWS=202599] [FEATURES=512] [BATCH=512] [ROUNDS=3] [THREADS=0]\n",
                   argv[0]);
      return 2;
    }
    torch::manual_seed(1);
    const torch::Tensor x = engine::l2normalizeRows(torch::randn({rows, 512})).contiguous();
    // Products of one step: X̄W_e, fW_d, rW_dᵀ, fᵀr, X̄ᵀG (the hand step); autograd adds GW_eᵀ.
    const double flops = 2.0 * 5 * static_cast<double>(rows) * 512 * static_cast<double>(features);
    std::printf("%lld x 512, %lld features, batch %lld, %d thread(s); one epoch each, seconds\n",
                static_cast<long long>(rows), static_cast<long long>(features),
                static_cast<long long>(batch), threads);
    std::printf(
        "| round | by hand | (its gradients alone) | autograd | speed-up "
        "|\n|---|---|---|---|---|\n");
    std::vector<double> best(3, 1e30);
    for (int r = 0; r < rounds; ++r) {
      double loss[3], t[3];
      t[0] = epoch(Mode::Hand, x, features, batch, threads, &loss[0]);
      t[1] = epoch(Mode::HandGradients, x, features, batch, threads, &loss[1]);
      t[2] = epoch(Mode::Autograd, x, features, batch, threads, &loss[2]);
      for (int i = 0; i < 3; ++i) best[i] = std::min(best[i], t[i]);
      std::printf("| %d | %.2f | %.2f | %.2f | %.2fx |\n", r + 1, t[0], t[1], t[2], t[2] / t[0]);
      if (std::abs(loss[0] - loss[2]) > 1e-3 * std::abs(loss[2]))
        throw engine::Error("the two steps disagree: last loss " + std::to_string(loss[0]) +
                            " by hand, " + std::to_string(loss[2]) + " through autograd");
    }
    std::printf("best: by hand %.2f s (%.0f GFLOP/s in its 5 products a step), autograd %.2f s\n",
                best[0], flops / best[0] / 1e9, best[2]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saescope_bench_sae_step: %s\n", e.what());
    return 1;
  }
}
