// bench/grid_latency.cpp — how long the browser needs to show a feature's 4x4 grid from a warm
// feature index: top-16 lookup, 16 thumbnails decoded and scaled, the grid composed (the work the
// app does off the UI thread before one texture upload).
//   usage: saescope_bench_grid WORKSPACE [FEATURES=64] [CELL=128]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/features.h"
#include "engine/workspace.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s WORKSPACE [FEATURES=64] [CELL=128]\n", argv[0]);
    return 2;
  }
  const std::string wsDir = argv[1];
  const int features = argc > 2 ? std::stoi(argv[2]) : 64;
  const int cell = argc > 3 ? std::stoi(argv[3]) : 128;
  try {
    const engine::Workspace ws = engine::Workspace::open(wsDir, false);
    const std::vector<std::string> paths = ws.imageList();
    engine::JobContext ctx;
    const auto t0 = std::chrono::steady_clock::now();
    const auto index = engine::FeatureIndex::loadOrBuild(wsDir, ctx);
    const double indexMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> ms;
    const auto kind = index->hasSparse() ? engine::FeatureKind::Sparse : engine::FeatureKind::Dense;
    for (int f = 0; f < std::min<int64_t>(features, index->numFeatures(kind)); ++f) {
      const auto s = std::chrono::steady_clock::now();
      const auto& top = index->top(kind, engine::RankRule::Seed, f);
      std::vector<engine::Image> thumbs;
      for (size_t i = 0; i < std::min<size_t>(16, top.size()); ++i)
        thumbs.push_back(engine::loadThumbnail(ws.dataRoot() + "/" + paths[top[i].index], cell));
      const engine::Image grid = engine::composeGrid(thumbs, 4, cell, 4);
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("images %lld, index load %.0f ms; grid of 16 (%d px cells), one thread: median %.1f ms, "
                "p95 %.1f ms, max %.1f ms over %zu features\n",
                static_cast<long long>(index->numImages()), indexMs, cell, ms[ms.size() / 2],
                ms[ms.size() * 95 / 100], ms.back(), ms.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
