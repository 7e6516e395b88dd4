// Fuzz target: engine::readTensorFileFromMemory — torch.save zip and legacy checkpoints (zip
// reader, pickle VM), .safetensors and .npy. A file that reads must convert to float and survive a
// round trip through our own writer (torch.save format) with the same names, dtypes, shapes and
// bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/checkpoint.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::guarded([&] {
    const engine::StateDict sd = engine::readTensorFileFromMemory(data, size, "fuzz-input");
    for (const auto& [name, t] : sd) {
      fuzz::check(t.bytes.size() == size_t(t.numel()) * engine::dtypeSize(t.dtype),
                  "tensor bytes match its shape and dtype");
      fuzz::check(t.toFloat().size() == size_t(t.numel()), "toFloat() size");
    }
    std::string bytes;
    try {
      bytes = engine::detail::torchCheckpointBytes(sd, false);
    } catch (const engine::Error&) {
      return;  // the writer may refuse what it cannot represent (said in one line)
    }
    const engine::StateDict back =
        engine::readTensorFileFromMemory(bytes.data(), bytes.size(), "round-trip");
    fuzz::check(back.size() == sd.size(), "round trip keeps the entries");
    for (size_t i = 0; i < sd.size(); ++i) {
      fuzz::check(back[i].first == sd[i].first, "round trip keeps names");
      fuzz::check(back[i].second.dtype == sd[i].second.dtype, "round trip keeps dtypes");
      fuzz::check(back[i].second.shape == sd[i].second.shape, "round trip keeps shapes");
      fuzz::check(back[i].second.bytes == sd[i].second.bytes, "round trip keeps values");
    }
  });
  return 0;
}
