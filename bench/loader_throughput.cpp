// bench/loader_throughput.cpp — how many images per second the data loader (decode, RGB, resize to
// SIZE, float CHW) delivers with T threads, the model left out: the ceiling that data loading puts
// on fine-tuning and embedding. One pass over the folder per thread count. The allocator is set up
// as the app sets it (engine::keepFreedMemory).
//   usage: saescope_bench_loader DIR [SIZE=224] [BATCH=256] [THREADS=1,2,4,...] [LIMIT=0]
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/dataset.h"
#include "engine/error.h"
#include "engine/memory.h"

int main(int argc, char** argv) {
  engine::keepFreedMemory();
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [SIZE=224] [BATCH=256] [THREADS=1,2,4,...] [LIMIT=0]\n",
                 argv[0]);
    return 2;
  }
  const int size = argc > 2 ? std::stoi(argv[2]) : 224;
  const int batch = argc > 3 ? std::stoi(argv[3]) : 256;
  std::vector<int> threads;
  if (argc > 4) {
    std::stringstream ss(argv[4]);
    for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::stoi(t));
  } else {
    for (int t = 1; t <= static_cast<int>(std::thread::hardware_concurrency()); t *= 2)
      threads.push_back(t);
  }
  const int64_t limit = argc > 5 ? std::stoll(argv[5]) : 0;
  try {
    const engine::Dataset data = engine::scanDataset(argv[1]);
    std::printf("| threads | images | seconds | images/s | ms per image per thread |\n");
    std::printf("|---|---|---|---|---|\n");
    for (int t : threads) {
      engine::LoaderConfig lc;
      lc.imageSize = size;
      lc.batchSize = batch;
      lc.threads = t;
      lc.limit = limit;
      const auto t0 = std::chrono::steady_clock::now();
      engine::BatchLoader loader(data, lc);
      engine::Batch b;
      int64_t n = 0;
      while (loader.next(b)) n += b.size;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("| %d | %lld | %.2f | %.0f | %.2f |\n", t, static_cast<long long>(n), s, n / s,
                  1000.0 * s * t / n);
      std::fflush(stdout);
    }
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "saescope_bench_loader: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
