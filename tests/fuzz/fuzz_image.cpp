// Fuzz target: engine::decodeImageMemory (stb_image, compiled here with the sanitizers) and the
// resize that the data set loader applies to each decoded image.
#include <cstddef>
#include <cstdint>

#include "engine/image.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Progressive JPEGs included: the overrun this target found in stb 2.27's progressive decoder
  // (a scan decoding with a never-defined Huffman table) is ruled out by decodeImageMemory.
  fuzz::guarded([&] {
    // At most 2^16 pixels: a few bytes can declare hundreds of millions (decoded as zeros, which
    // is slow but no bug); the decoders' code paths are all reached with small images.
    const engine::Image img = engine::decodeImageMemory(data, size, "fuzz-input", int64_t(1) << 16);
    fuzz::check(img.width > 0 && img.height > 0 && img.channels == 3, "decoded image has a size");
    fuzz::check(img.pixels.size() == size_t(img.width) * img.height * 3, "pixel buffer size");
    // The loader's resize to the model's input; small, so large images stay cheap.
    const engine::Image small = engine::resizeBilinear(img, 7, 5);
    fuzz::check(small.pixels.size() == 7 * 5 * 3, "resized buffer size");
  });
  return 0;
}
