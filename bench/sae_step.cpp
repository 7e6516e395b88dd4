// bench/sae_step.cpp — the reference SAE's fp32 training epoch on the CPU, by hand (SeedCpuStep,
// what `saescope sae` runs) against autograd (seedAutogradStep, each with its best thread split),
// in interleaved rounds: this VM's speed drifts by tens of per cent within minutes, so only
// neighbouring rounds compare. Also the hand step's gradients alone (its Adam step left out).
// Random unit vectors stand in for the embeddings (the SAE sees only their directions).
//   usage: saescope_bench_sae_step [ROWS=202599] [FEATURES=512] [BATCH=512] [ROUNDS=3]
//          [THREADS=0 (all cores)]
// On a VM where OpenBLAS takes the CPU for a "Prescott", set OPENBLAS_CORETYPE=SkylakeX (the app
// does so itself; see README "What mattered").
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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

}  // namespace

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);  // as app/main.cpp: LibTorch's per-step tensors in the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  try {
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
