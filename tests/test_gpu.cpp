// CUDA checks (ctest label "gpu"): run by bench/gpu.sh on a GPU machine. They fail without CUDA.
#include <filesystem>

#include "engine/demo_data.h"
#include "engine/features.h"
#include "engine/npy.h"
#include "engine/pipeline.h"
#include "engine/resnet.h"
#include "engine/sae.h"
#include "engine/torch_util.h"
#include "engine/workspace.h"
#include "test_helpers.h"

#include <doctest/doctest.h>  // after LibTorch: glog's CHECK must not win

TEST_CASE("CUDA is available to this LibTorch") {
  REQUIRE(torch::cuda::is_available());
  engine::RunOptions run;
  run.device = "auto";
  CHECK(engine::describeDevice(run).rfind("cuda:0", 0) == 0);
  MESSAGE(engine::describeDevice(run));
}

TEST_CASE("ResNet18 forward and fine-tuning loss agree on CUDA and CPU") {
  REQUIRE(torch::cuda::is_available());
  torch::manual_seed(0);
  engine::ResNet18 cpu;
  cpu->eval();
  engine::ResNet18 gpu;
  engine::loadStateDict(*gpu, engine::stateDictOf(*cpu), "in-memory");
  gpu->to(torch::kCUDA);
  gpu->eval();
  torch::NoGradGuard g;
  const auto x = torch::rand({8, 3, 64, 64});
  const auto a = cpu->forward(x), b = gpu->forward(x.cuda()).cpu();
  const double rel = (a - b).abs().max().item<double>() / a.abs().max().item<double>();
  MESSAGE("eval forward, max relative difference CPU vs CUDA: " << rel);
  CHECK(rel < 1e-3);
  const auto la = engine::fineTuneLoss(a, cpu->forward(x.flip({2, 3})));
  const auto lb = engine::fineTuneLoss(b.cuda(), gpu->forward(x.flip({2, 3}).cuda()));
  CHECK(lb.total.item<double>() == doctest::Approx(la.total.item<double>()).epsilon(1e-3));
}

TEST_CASE("the whole pipeline runs on CUDA and matches a CPU embedding of its backbone") {
  REQUIRE(torch::cuda::is_available());
  testutil::TempDir dir("gpu-e2e");
  engine::JobContext ctx;
  engine::DemoDataConfig demo;
  demo.out = dir.str("demo");
  demo.count = 96;
  demo.size = 64;
  engine::generateDemoData(demo, ctx);
  for (const std::string precision : {"fp32", "bf16"}) {
    engine::TrainConfig t;
    t.data = demo.out;
    t.workspace = dir.str("ws-" + precision);
    t.imageSize = 64;
    t.batch = 32;
    t.precision = precision;
    t.run.device = "cuda";
    engine::runTrain(t, ctx);
    engine::EmbedConfig e;
    e.workspace = t.workspace;
    e.run.device = "cuda";
    engine::runEmbed(e, ctx);
    engine::SaeConfig s;
    s.workspace = t.workspace;
    s.epochs = 3;
    s.batch = 32;
    s.run.device = "cuda";
    engine::runSae(s, ctx);
    const auto m = engine::Workspace::open(t.workspace, false).manifest();
    CHECK(m["stages"]["train"]["device"].get<std::string>().rfind("cuda", 0) == 0);
    CHECK(std::isfinite(m["stages"]["train"]["final"]["loss"].get<double>()));
    CHECK(m["stages"]["sae"]["status"] == "done");
    if (precision == "fp32") {
      // The CUDA embeddings equal a CPU embedding of the same backbone.
      const auto gpuEmb = engine::toTorch(engine::readNpy(t.workspace + "/embeddings.npy"));
      e.run.device = "cpu";
      engine::runEmbed(e, ctx);
      const auto cpuEmb = engine::toTorch(engine::readNpy(t.workspace + "/embeddings.npy"));
      const double rel = (gpuEmb - cpuEmb).abs().max().item<double>() / cpuEmb.abs().max().item<double>();
      MESSAGE("embeddings, max relative difference CUDA vs CPU: " << rel);
      CHECK(rel < 1e-3);
    }
  }
}
