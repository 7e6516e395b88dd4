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
  // Kept per thread (the loader's threads resize every image): see loadImageTensor.
  thread_local std::vector<float> tmp;
  tmp.resize(static_cast<size_t>(h) * ow);
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

// The formats decodeImage() promises, by their signatures. stb_image also reads GIF, PSD, PIC, TGA
// and HDR, whose decoders are its least tested code (TGA has no signature at all): those are
// refused rather than handed to stb.
bool knownImageSignature(const uint8_t* d, size_t n) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff) return true;  // JPEG
  if (n >= 8 && std::memcmp(d, kPng, 8) == 0) return true;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return true;
  return n >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6');  // binary PGM, PPM
}

// Two defects of stb_image 2.27 (Debian 12's libstb), both found by tests/fuzz/fuzz_image, that a
// walk over the JPEG's segments (as stb reads them) can rule out beforehand. Returns why the file
// is refused, or null:
// - a Huffman table whose 16 code-length counts add up to more than 256: stb writes that many
//   entries into 256-entry arrays;
// - a scan that decodes with a Huffman table no DHT segment defined before it: stb then decodes
//   with uninitialised memory and indexes its tables hundreds of MB out of bounds (seen on
//   corrupt progressive JPEGs). Which tables a scan decodes with follows stb: baseline scans use
//   each component's DC and AC table, progressive DC scans (Ss = 0) the DC table on the first
//   pass only (Ah = 0), progressive AC scans the AC table.
// Entropy-coded data is stepped over byte by byte (0xff00 is a stuffed byte, 0xffd0-d7 restart
// markers), so the tables between progressive scans are seen too.
const char* jpegTablesProblem(const uint8_t* d, size_t n) {
  auto at = [&](size_t i) -> size_t { return i < n ? d[i] : 0; };  // stb reads 0 past the end
  bool defined[2][4] = {};                                         // [DC/AC][table id]
  bool progressive = false;
  size_t i = 2;  // after SOI
  while (i + 1 < n) {
    const size_t m = d[i + 1];
    if (d[i] != 0xff || m == 0xff) {  // entropy-coded data or a fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {  // stuffed byte, TEM, RSTn, SOI
      i += 2;
      continue;
    }
    if (m == 0xd9) return nullptr;  // EOI
    const size_t len = at(i + 2) << 8 | at(i + 3);
    if (m == 0xc2) progressive = true;
    if (m == 0xc0 || m == 0xc1) progressive = false;
    if (m == 0xc4) {
      // As stb: tables follow one another while the segment has bytes left; each is a class/id
      // byte, 16 counts and as many symbols as the counts add up to.
      for (size_t p = i + 4; p < i + 2 + len;) {
        size_t codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += at(p + k);
        if (codes > 256) return "a Huffman table has over 256 codes";
        const size_t tc = at(p) >> 4, th = at(p) & 15;
        if (tc <= 1 && th <= 3) defined[tc][th] = true;
        p += 17 + codes;
      }
    }
    if (m == 0xda) {
      const size_t ns = at(i + 4), spectral = i + 5 + 2 * ns;
      const size_t ss = at(spectral), ah = at(spectral + 2) >> 4;
      for (size_t c = 0; c < ns; ++c) {
        const size_t sel = at(i + 6 + 2 * c), td = sel >> 4, ta = sel & 15;
        const bool needDc = progressive ? ss == 0 && ah == 0 : true;
        const bool needAc = progressive ? ss > 0 : true;
        if ((needDc && (td > 3 || !defined[0][td])) || (needAc && (ta > 3 || !defined[1][ta])))
          return "a scan uses a Huffman table that no DHT segment defined";
      }
    }
    i += 2 + len;
  }
  return nullptr;
}

// What decodeImageMemory checks in a PNG's chunk list (up to IEND) before stb_image reads it.
struct PngChunks {
  // stb grows its buffer for an IDAT chunk to the chunk's declared length before it reads the
  // data, so a few corrupt bytes make it allocate up to 2 GiB (found by tests/fuzz/fuzz_image).
  // False when a chunk declares more data than the file holds: stb fails on such a file anyway,
  // after that allocation.
  bool fit = true;
  // An empty IDAT chunk before any data makes stb 2.27 memcpy 0 bytes to a null buffer, which is
  // undefined behaviour (found by tests/fuzz/fuzz_image). Such chunks are legal and carry no
  // data, so they are dropped from a copy that stb reads instead (withoutEmptyIdat).
  bool emptyIdat = false;
};

uint32_t pngChunkLength(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// Calls `chunk(at, end)` for each chunk before IEND, [at, end) its bytes with the CRC (which a
// truncated file may lack). Returns false when a chunk runs past the end of the file; `pos` is
// then where that chunk starts, else where IEND (or trailing bytes too short for a chunk) starts.
template <class F>
bool forEachPngChunk(const uint8_t* d, size_t n, size_t& pos, F&& chunk) {
  pos = 8;  // after the signature
  while (n - pos >= 8) {
    if (std::memcmp(d + pos + 4, "IEND", 4) == 0) return true;
    const size_t len = pngChunkLength(d + pos);
    if (len > n - pos - 8) return false;
    const size_t end = pos + 8 + len + std::min<size_t>(4, n - pos - 8 - len);
    chunk(pos, end);
    pos = end;
  }
  return true;
}

PngChunks checkPngChunks(const uint8_t* d, size_t n) {
  PngChunks c;
  size_t pos = 0;
  c.fit = forEachPngChunk(d, n, pos, [&](size_t at, size_t) {
    c.emptyIdat |= pngChunkLength(d + at) == 0 && std::memcmp(d + at + 4, "IDAT", 4) == 0;
  });
  return c;
}

// The PNG without its empty IDAT chunks; the rest (IEND and anything after it) as it was.
std::vector<uint8_t> withoutEmptyIdat(const uint8_t* d, size_t n) {
  std::vector<uint8_t> out(d, d + 8);
  out.reserve(n);
  size_t pos = 0;
  forEachPngChunk(d, n, pos, [&](size_t at, size_t end) {
    if (pngChunkLength(d + at) != 0 || std::memcmp(d + at + 4, "IDAT", 4) != 0)
      out.insert(out.end(), d + at, d + end);
  });
  out.insert(out.end(), d + pos, d + n);
  return out;
}

// stb_image 2.27 reads a PGM/PPM header's width, height and maximum value into an int with no
// overflow check (undefined behaviour; found by tests/fuzz/fuzz_image). Returns false when one of
// them, read as stb reads them (whitespace and # comments between), has more than 9 digits: such
// an image would be refused as too large anyway.
bool pnmHeaderNumbersFit(const uint8_t* d, size_t n) {
  auto space = [](uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  size_t i = 2;  // after "P5" or "P6"
  for (int field = 0; field < 3; ++field) {
    for (;;) {
      while (i < n && space(d[i])) ++i;
      if (i >= n || d[i] != '#') break;
      while (i < n && d[i] != '\n' && d[i] != '\r') ++i;
    }
    size_t digits = 0;
    for (; i < n && d[i] >= '0' && d[i] <= '9'; ++i) ++digits;
    if (digits > 9) return false;
  }
  return true;
}

void appendToVector(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  v->insert(v->end(), p, p + size);
}
}  // namespace

Image decodeImageMemory(const uint8_t* data, size_t size, const std::string& what,
                        int64_t maxPixels) {
  if (size == 0) throw Error(what + ": empty file");
  if (size > static_cast<size_t>(INT32_MAX)) throw Error(what + ": file too large to decode");
  if (!knownImageSignature(data, size))
    throw Error(what + ": not a readable image (not a JPEG, PNG, BMP, PPM or PGM file)");
  if (data[0] == 0xff)
    if (const char* why = jpegTablesProblem(data, size))
      throw Error(what + ": not a readable image (corrupt JPEG: " + why + ")");
  std::vector<uint8_t> pngCopy;
  if (data[0] == 0x89) {
    const PngChunks png = checkPngChunks(data, size);
    if (!png.fit)
      throw Error(what +
                  ": not a readable image (truncated PNG: a chunk runs past the end of the file)");
    if (png.emptyIdat) {
      pngCopy = withoutEmptyIdat(data, size);
      data = pngCopy.data();
      size = pngCopy.size();
    }
  }
  if (data[0] == 'P' && !pnmHeaderNumbersFit(data, size))
    throw Error(what + ": not a readable image (corrupt PPM/PGM header: a number is too large)");
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp)) {
    const char* why = stbi_failure_reason();
    throw Error(what + ": not a readable image (" + (why ? why : "unknown format") + ")");
  }
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > std::min(maxPixels, kMaxImagePixels))
    throw Error(what + ": image of " + std::to_string(w) + "x" + std::to_string(h) +
                " pixels is too large");
  // Decoded with its own channel count and converted to RGB here: asked for 3 channels, stb 2.27
  // runs its 8-bit converter on a 16-bit PGM and then reads past that buffer (found by
  // tests/fuzz/fuzz_image). The conversion is stb's: grey is copied to R, G and B, alpha dropped.
  unsigned char* px = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, 0);
  if (!px) {
    const char* why = stbi_failure_reason();
    throw Error(what + ": cannot decode image (" + (why ? why : "corrupt data") + ")");
  }
  if (comp < 1 || comp > 4) {
    stbi_image_free(px);
    throw Error(what + ": cannot decode image (" + std::to_string(comp) + " channels)");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  const size_t count = static_cast<size_t>(w) * h;
  img.pixels.resize(count * 3);
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* in = px + i * comp;
    uint8_t* out = &img.pixels[i * 3];
    out[0] = in[0];
    out[1] = in[comp >= 3 ? 1 : 0];
    out[2] = in[comp >= 3 ? 2 : 0];
  }
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
