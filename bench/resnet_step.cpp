// bench/resnet_step.cpp — one fine-tuning step of ResNet18 on the CPU (both forwards in train
// mode, the reference losses, backward and Adam: what `saescope train` runs per batch, without
// data loading), in the layout the app picks for the size, timed step by step after a warm-up.
// Random images stand in for the data. Prints the median and the fastest step.
//   usage: saescope_bench_resnet_step [SIZE=224] [BATCH=32] [STEPS=6] [THREADS=0 (all cores)]
//          saescope_bench_resnet_step bn    (the stem's pooling and the batch norms of 224 px
//          alone; the first touch of fresh memory, which glibc's heap gives these 100 MB maps in a
//          short loop, is timed too)
// Compare the engine's own CPU kernels with torch's by running it again with
// SAESCOPE_TORCH_KERNELS=1, and without oneDNN's Winograd convolutions with SAESCOPE_WINOGRAD=0
// (bench/kernels.sh alternates the three), on an idle machine.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "engine/pipeline.h"
#include "engine/resnet.h"
#include "engine/torch_util.h"
#include "engine/winograd.h"

namespace {
const char* kernelsName() {
  if (std::getenv("SAESCOPE_TORCH_KERNELS")) return "torch's";
  return engine::winograd::available() ? "own + Winograd" : "own";
}

// Median milliseconds of forward() and of backward(its output) over 8 rounds after a warm-up.
// The gradients are returned, not accumulated into a leaf's .grad (that add is not the kernels').
template <class F, class B>
std::pair<double, double> medianMs(F&& forward, B&& backward) {
  std::vector<double> fwd, bwd;
  for (int s = 0; s <= 8; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const torch::Tensor y = forward();
    const auto t1 = std::chrono::steady_clock::now();
    backward(y);
    const auto t2 = std::chrono::steady_clock::now();
    if (s == 0) continue;
    fwd.push_back(std::chrono::duration<double>(t1 - t0).count() * 1e3);
    bwd.push_back(std::chrono::duration<double>(t2 - t1).count() * 1e3);
  }
  std::sort(fwd.begin(), fwd.end());
  std::sort(bwd.begin(), bwd.end());
  return {fwd[fwd.size() / 2], bwd[bwd.size() / 2]};
}

// The stem's pooling and the batch norms (+ ReLU, + residual) of 224 px, channels-last.
void benchKernels() {
  const auto cl = at::MemoryFormat::ChannelsLast;
  {
    const auto x = torch::randn({32, 64, 112, 112}).contiguous(cl).requires_grad_();
    const auto g = torch::randn({32, 64, 56, 56}).contiguous(cl);
    const auto [f, b] =
        medianMs([&] { return engine::stemMaxPool(x); },
                 [&](const torch::Tensor& y) { torch::autograd::grad({y}, {x}, {g}); });
    std::printf(
        "max pooling [32, 64, 112, 112], %s kernels: forward %.1f ms, backward %.1f ms "
        "(medians)\n",
        kernelsName(), f, b);
  }
  for (auto [n, c, h, residual] : {std::tuple{32, 64, 112, false}, std::tuple{32, 64, 56, true},
                                   std::tuple{32, 128, 28, true}, std::tuple{32, 512, 7, true}}) {
    torch::nn::BatchNorm2d bn(c);
    bn->train();
    const torch::Tensor x = torch::randn({n, c, h, h}).contiguous(cl).requires_grad_();
    const torch::Tensor r = torch::randn({n, c, h, h}).contiguous(cl).requires_grad_();
    const torch::Tensor g = torch::randn({n, c, h, h}).contiguous(cl);
    const auto [f, b] =
        medianMs([&] { return engine::batchNormAct(bn, x, residual ? r : torch::Tensor(), true); },
                 [&](const torch::Tensor& y) {
                   if (residual)
                     torch::autograd::grad({y}, {x, r}, {g});
                   else
                     torch::autograd::grad({y}, {x}, {g});
                 });
    std::printf(
        "batch norm + ReLU%s [%d, %d, %d, %d], %s kernels: forward %.1f ms, backward %.1f "
        "ms (medians)\n",
        residual ? " + residual" : "", n, c, h, h, kernelsName(), f, b);
  }
}
}  // namespace

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);  // as app/main.cpp: the per-step tensors in the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc > 1 && std::string(argv[1]) == "bn") {
    engine::configureThreads(0);
    benchKernels();
    return 0;
  }
  auto arg = [&](int i, int def) { return argc > i ? std::stoi(argv[i]) : def; };
  const int size = arg(1, 224), batch = arg(2, 32), steps = arg(3, 6), threads = arg(4, 0);
  engine::configureThreads(threads);
  torch::manual_seed(0);
  engine::ResNet18 model;
  const bool channelsLast = engine::useChannelsLast(torch::kCPU, false, size);
  if (channelsLast) engine::toChannelsLast(*model);
  model->train();
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-4));
  torch::Tensor x = torch::rand({batch, 3, size, size});
  if (channelsLast) x = engine::toChannelsLast(x);
  std::vector<double> times;
  for (int s = 0; s <= steps; ++s) {  // step 0 warms up (allocations, oneDNN's kernel choice)
    const auto t0 = std::chrono::steady_clock::now();
    const torch::Tensor e = model->forward(x);
    const torch::Tensor eRot = model->forward(x.flip({2, 3}));
    const engine::FineTuneLoss loss = engine::fineTuneLoss(e, eRot);
    opt.zero_grad();
    loss.total.backward();
    if (!engine::fusedAdamStep(opt)) opt.step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  std::printf(
      "resnet step %d px, batch %d, %s, %s kernels: median %.3f s, fastest %.3f s (%d steps)\n",
      size, batch, channelsLast ? "channels-last" : "NCHW", kernelsName(), times[times.size() / 2],
      times.front(), steps);
  return 0;
}
