#include "image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "error.h"
#include "fsutil.h"

namespace engine {

namespace {
// Larger images are refused rather than risking a multi-gigabyte allocation.
constexpr int64_t kMaxPixels = int64_t(1) << 28;

// Weights of the antialiased triangle filter for resampling `in` samples to `out`: output i
// reads inputs [first[i], first[i] + count[i]) with weights w[i * maxTaps + t].
struct Taps {
  std::vector<int> first, count;
  std::vector<float> w;
  int maxTaps = 0;
};

Taps makeTaps(int in, int out) {
  Taps t;
  const double scale = static_cast<double>(in) / out;
  const double support = scale >= 1.0 ? scale : 1.0;
  const double invFilterScale = 1.0 / std::max(scale, 1.0);
  t.maxTaps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.w.assign(static_cast<size_t>(out) * t.maxTaps, 0.f);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), in);
    const int n = std::min(xmax - xmin, t.maxTaps);
    double sum = 0;
    std::vector<double> ws(n);
    for (int j = 0; j < n; ++j) {
      const double x = (j + xmin - center + 0.5) * invFilterScale;
      ws[j] = std::max(0.0, 1.0 - std::abs(x));
      sum += ws[j];
    }
    t.first[i] = xmin;
    t.count[i] = n;
    for (int j = 0; j < n; ++j) t.w[static_cast<size_t>(i) * t.maxTaps + j] = sum > 0 ? ws[j] / sum : 0;
  }
  return t;
}

// Resamples planar float data [C, H, W] → [C, oh, ow].
void resizePlanar(const float* src, int c, int h, int w, float* dst, int oh, int ow) {
  const Taps tx = makeTaps(w, ow), ty = makeTaps(h, oh);
  std::vector<float> tmp(static_cast<size_t>(h) * ow);
  for (int ch = 0; ch < c; ++ch) {
    const float* s = src + static_cast<size_t>(ch) * h * w;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < ow; ++x) {
        const float* wt = &tx.w[static_cast<size_t>(x) * tx.maxTaps];
        const float* row = s + static_cast<size_t>(y) * w + tx.first[x];
        float acc = 0;
        for (int t = 0; t < tx.count[x]; ++t) acc += wt[t] * row[t];
        tmp[static_cast<size_t>(y) * ow + x] = acc;
      }
    float* d = dst + static_cast<size_t>(ch) * oh * ow;
    for (int y = 0; y < oh; ++y) {
      const float* wt = &ty.w[static_cast<size_t>(y) * ty.maxTaps];
      for (int x = 0; x < ow; ++x) {
        float acc = 0;
        for (int t = 0; t < ty.count[y]; ++t)
          acc += wt[t] * tmp[static_cast<size_t>(ty.first[y] + t) * ow + x];
        d[static_cast<size_t>(y) * ow + x] = acc;
      }
    }
  }
}

void appendToVector(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  v->insert(v->end(), p, p + size);
}
}  // namespace

Image decodeImageMemory(const uint8_t* data, size_t size, const std::string& what) {
  if (size == 0) throw Error(what + ": empty file");
  if (size > static_cast<size_t>(INT32_MAX)) throw Error(what + ": file too large to decode");
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp)) {
    const char* why = stbi_failure_reason();
    throw Error(what + ": not a readable image (" + (why ? why : "unknown format") + ")");
  }
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > kMaxPixels)
    throw Error(what + ": image of " + std::to_string(w) + "x" + std::to_string(h) +
                " pixels is too large");
  unsigned char* px = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, 3);
  if (!px) {
    const char* why = stbi_failure_reason();
    throw Error(what + ": cannot decode image (" + (why ? why : "corrupt data") + ")");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.assign(px, px + static_cast<size_t>(w) * h * 3);
  stbi_image_free(px);
  return img;
}

Image decodeImage(const std::string& path) {
  const std::vector<uint8_t> bytes = readFileBytes(path);
  return decodeImageMemory(bytes.data(), bytes.size(), path);
}

Image resizeBilinear(const Image& src, int width, int height) {
  if (src.width == width && src.height == height) return src;
  const int c = src.channels;
  std::vector<float> planar(static_cast<size_t>(src.width) * src.height * c);
  const size_t plane = static_cast<size_t>(src.width) * src.height;
  for (size_t i = 0; i < plane; ++i)
    for (int ch = 0; ch < c; ++ch) planar[ch * plane + i] = src.pixels[i * c + ch];
  std::vector<float> out(static_cast<size_t>(width) * height * c);
  resizePlanar(planar.data(), c, src.height, src.width, out.data(), height, width);
  Image dst;
  dst.width = width;
  dst.height = height;
  dst.channels = c;
  dst.pixels.resize(out.size());
  const size_t oplane = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < oplane; ++i)
    for (int ch = 0; ch < c; ++ch)
      dst.pixels[i * c + ch] =
          static_cast<uint8_t>(std::clamp(std::lround(out[ch * oplane + i]), 0L, 255L));
  return dst;
}

void resizeChwFloat(const float* src, int c, int h, int w, float* dst, int oh, int ow) {
  if (h == oh && w == ow) {
    std::memcpy(dst, src, sizeof(float) * c * h * w);
    return;
  }
  resizePlanar(src, c, h, w, dst, oh, ow);
}

std::vector<uint8_t> encodePng(const Image& img) {
  std::vector<uint8_t> out;
  if (!stbi_write_png_to_func(appendToVector, &out, img.width, img.height, img.channels,
                              img.pixels.data(), img.width * img.channels))
    throw Error("cannot encode PNG");
  return out;
}

void writePng(const std::string& path, const Image& img) {
  const std::vector<uint8_t> bytes = encodePng(img);
  writeFileAtomic(path, bytes.data(), bytes.size());
}

}  // namespace engine
