// engine/image.h — decoding, resizing and writing 8-bit images (stb), no LibTorch.
// Thread-safety: free functions on values; safe to call from any thread concurrently.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine {

// An 8-bit image, rows top to bottom, channels interleaved (3 = RGB, 4 = RGBA).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // width * height * channels
  bool empty() const { return pixels.empty(); }
};

// Decodes a JPEG/PNG/BMP/PPM/PGM file to RGB (grey and alpha are converted; 16-bit PNGs are
// reduced to 8 bits). Throws engine::Error "<path>: <reason>" when it cannot be decoded.
Image decodeImage(const std::string& path);
// Larger images are refused (kMaxImagePixels * 3 bytes is already 768 MiB).
constexpr int64_t kMaxImagePixels = int64_t(1) << 28;
// Same, from bytes in memory; `what` names the source in errors. `maxPixels` lowers the size limit
// (the fuzzer uses it: a 100-byte BMP may declare 14 million pixels, each decoded as zeros).
Image decodeImageMemory(const uint8_t* data, size_t size, const std::string& what,
                        int64_t maxPixels = kMaxImagePixels);

// Bilinear resize with a triangle filter widened by the scale factor when shrinking (the
// antialiased bilinear of torchvision/PIL); align_corners = false. Any channel count.
Image resizeBilinear(const Image& src, int width, int height);

// Writes an RGB or RGBA image as PNG, atomically. Throws engine::Error naming `path`.
void writePng(const std::string& path, const Image& img);
// PNG bytes in memory.
std::vector<uint8_t> encodePng(const Image& img);

}  // namespace engine

namespace engine {
// Resamples planar float data [c, h, w] into [c, oh, ow] with the filter of resizeBilinear
// (a copy when the size is unchanged).
void resizeChwFloat(const float* src, int c, int h, int w, float* dst, int oh, int ow);
}  // namespace engine
