// Fuzz target: engine::parseManifest (a workspace's manifest.json) and, for a manifest it accepts,
// what the app reads from it: Workspace::open on a folder holding it, dataRoot(), stages().
// Past parseManifest the accessors must not throw at all: the manifest was declared valid.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/workspace.h"
#include "fuzz_common.h"

namespace {
// One scratch workspace folder per fuzzing process, removed at exit.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    char tmpl[] = "/tmp/saescope-fuzz-manifest-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    path = tmpl;
  }
  ~ScratchDir() {
    std::remove((path + "/manifest.json").c_str());
    rmdir(path.c_str());
  }
};

const std::string& scratchDir() {
  static const ScratchDir dir;
  return dir.path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  bool valid = false;
  fuzz::guarded([&] {
    engine::parseManifest(text, "manifest.json");
    valid = true;
  });
  if (!valid) return 0;
  const std::string file = scratchDir() + "/manifest.json";
  FILE* f = std::fopen(file.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  try {
    const engine::Workspace ws = engine::Workspace::open(scratchDir(), false);
    (void)ws.dataRoot();
    for (const auto& st : ws.stages()) fuzz::check(!st.status.empty(), "stage status");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: accepted manifest, then %s\n", e.what());
    std::abort();
  }
  return 0;
}
