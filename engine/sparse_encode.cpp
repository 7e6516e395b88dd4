// The feature index's SAE encoding (see sparse_encode.h).
//
// The screening bound. Let p = Σ_i x_i w_i, the exact pre-activation without the bias, and p̃ the
// bf16 product's element: operands rounded to bf16 (relative error u = 2^-9 each), products
// accumulated in fp32 (AMX tiles, or oneDNN through torch), the result rounded to bf16 when torch
// computes it (our AMX kernel keeps it in fp32: that term is then spare). Then
//   |p̃ − p| ≤ (2u + u²) Σ|x_i||w_i| + γ_D Σ|x_i||w_i| + u |p̃|/(1 − u),   γ_D ≈ D·2^-24,
// and by Cauchy–Schwarz Σ|x_i||w_i| ≤ ‖x‖ ‖w‖. The fp32 GEMM's own result differs from p by at
// most γ_D Σ|x_i||w_i|. With D ≤ 2^14 every factor of ‖x‖‖w‖ above stays below 2^-8 in total, so
//   p̃ + b + 2^-7 ‖x‖ ‖w‖ + 2^-8 |p̃| + (slack for b and underflow) < 0
// proves that the fp32 pre-activation is negative and its ReLU zero (2x slack on every term; bf16
// inputs flushed to zero, at most 2^-126 each, are in the absolute slack). NaN or infinity
// anywhere makes the left side NaN or infinite: such elements are never skipped.
#include "sparse_encode.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "error.h"
#include "torch_util.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 11
#define SAESCOPE_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define SAESCOPE_AMX 0
#endif

namespace engine {

namespace {

constexpr float kRowMargin = 1.0f / 128;  // × ‖x‖ ‖w‖
constexpr float kOutMargin = 1.0f / 256;  // × |p̃|
constexpr float kBiasSlack = 1.0f / (1 << 20);
constexpr float kAbsSlack = 1e-30f;
// A screened block with more candidates than this share of its elements is cheaper as one GEMM:
// the bf16 product costs about a quarter of the fp32 one and a candidate's dot product several
// times a GEMM element.
constexpr double kMaxCandidateShare = 1.0 / 16;
constexpr int64_t kBlockElements = int64_t(1) << 21;  // rows × features per block (8 MB of floats)
constexpr int64_t kMaxScreenedWidth = int64_t(1) << 14;  // D: keeps the bound's γ_D small
constexpr int64_t kScreenStep = 32;                      // features screened at a time

// 32 independent partial sums: vectorised, without waiting on one accumulator's latency.
SAESCOPE_CLONES float dot(const float* a, const float* b, int64_t n) {
  constexpr int64_t kLanes = 32;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  for (int64_t w = kLanes / 2; w > 0; w /= 2)  // a tree: not 32 additions waiting on each other
    for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  float s = acc[0];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Screens one row's p̃ for features [f0, f0 + w), w ≤ 32: appends to idx (holding c entries) the
// features whose bound cannot prove the pre-activation negative (see the top of this file), and
// returns the new count.
SAESCOPE_CLONES int64_t screen(const float* p, const float* biasUp, const float* marginW, float nx,
                               int64_t f0, int64_t w, int32_t* idx, int64_t c) {
  auto bound = [&](int64_t j) {  // an upper bound of the fp32 pre-activation
    return p[j] + biasUp[f0 + j] + nx * marginW[f0 + j] + kOutMargin * std::fabs(p[j]);
  };
  if (w != kScreenStep) {
    for (int64_t j = 0; j < w; ++j)
      if (!(bound(j) < 0)) idx[c++] = static_cast<int32_t>(f0 + j);
    return c;
  }
  float m[kScreenStep];  // a fixed count, so that -O2 vectorises the loop
  int negative = 0;
  for (int64_t j = 0; j < kScreenStep; ++j) {
    m[j] = bound(j);
    negative += m[j] < 0;
  }
  if (negative == kScreenStep) return c;
  for (int64_t j = 0; j < kScreenStep; ++j)
    if (!(m[j] < 0)) idx[c++] = static_cast<int32_t>(f0 + j);
  return c;
}

float bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;  // bf16: the high half of a float
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as torch's conversion does; NaN stays NaN.
uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

#if SAESCOPE_AMX
// AMX (Intel's tile matrix unit): Linux grants its register state on request, once per process.
bool amxAvailable() {
  static const bool ok = [] {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16")) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtileData = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
  }();
  return ok;
}

// Palette 1: eight tiles of 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// Rows [r0, r1) (multiples of 32) of the product x̂ Ŵ, x̂ [rows padded, kpad] bf16 and Ŵ packed
// by SparseEncoder (16-feature groups of B tiles), screened row by row into idx/count. Tiles 0-3:
// a 32 x 32 block of the product (fp32); 4-5: two 16-row A tiles; 6-7: two 16-feature B tiles.
__attribute__((target("amx-tile,amx-bf16"))) void amxScreenRows(
    const uint16_t* xb, int64_t kpad, int64_t r0, int64_t r1, int64_t rows, const uint16_t* wp,
    int64_t nf, const float* nx, const float* biasUp, const float* marginW, int32_t* idx,
    int64_t* count) {
  const TileConfig cfg;
  _tile_loadconfig(&cfg);
  const int64_t steps = kpad / 32;
  alignas(64) float c[32 * 32];
  for (int64_t g = 0; g * 16 < nf; g += 2) {  // 32 features at a time
    const uint16_t* b0 = wp + g * steps * 512;
    const uint16_t* b1 = b0 + steps * 512;
    for (int64_t i0 = r0; i0 < r1; i0 += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint16_t* a0 = xb + i0 * kpad;  // tiles of 16 rows x 32 inputs, 1 KB each
      const uint16_t* a1 = a0 + 16 * kpad;
      for (int64_t s = 0; s < steps; ++s) {
        _tile_loadd(4, a0 + s * 512, 64);
        _tile_loadd(5, a1 + s * 512, 64);
        _tile_loadd(6, b0 + s * 512, 64);
        _tile_loadd(7, b1 + s * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, c, 128);
      _tile_stored(1, c + 16, 128);
      _tile_stored(2, c + 16 * 32, 128);
      _tile_stored(3, c + 16 * 32 + 16, 128);
      const int64_t w = std::min<int64_t>(32, nf - g * 16);
      for (int64_t i = 0; i < 32 && i0 + i < rows; ++i) {
        const int64_t r = i0 + i;
        count[r] = screen(c + i * 32, biasUp, marginW, nx[r], g * 16, w, idx + r * nf, count[r]);
      }
    }
  }
  _tile_release();
}
#endif

// ReLU as torch computes it: NaN passes, so does -0 (not kept: it is not > 0).
bool kept(float v) {
  return v > 0 || std::isnan(v);
}

}  // namespace

void ActivationRows::clear() {
  start.assign(1, 0);
  feature.clear();
  value.clear();
  norm.clear();
}

EncodeMethod encodeMethodFromEnv() {
  const char* v = std::getenv("SAESCOPE_INDEX_SCREEN");
  const std::string s = v ? v : "";
  if (s.empty() || s == "auto") return EncodeMethod::Auto;
  if (s == "0" || s == "off") return EncodeMethod::Full;
  if (s == "1" || s == "on") return EncodeMethod::Screened;
  throw Error("SAESCOPE_INDEX_SCREEN=" + s + ": expected auto, on (1) or off (0)");
}

bool cpuHasBf16() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
#else
  return false;
#endif
}

SparseEncoder::SparseEncoder(const torch::Tensor& we, const torch::Tensor& be, EncodeMethod method)
    : m_we(we.to(torch::kFloat32).contiguous()),
      m_be(be.to(torch::kFloat32).contiguous()),
      m_d(we.size(0)),
      m_f(we.size(1)),
      m_blockRows(std::max<int64_t>(16, kBlockElements / std::max<int64_t>(1, we.size(1)))),
      m_screen(method == EncodeMethod::Screened || (method == EncodeMethod::Auto && cpuHasBf16())) {
  if (m_d > kMaxScreenedWidth) m_screen = false;
  m_idx.resize(m_blockRows * m_f);
  m_val.resize(m_blockRows * m_f);
  m_count.resize(m_blockRows);
  if (!m_screen) return;
  torch::NoGradGuard noGrad;
#if SAESCOPE_AMX
  if (amxAvailable() && std::getenv("SAESCOPE_NO_AMX") == nullptr) {
    // Ŵ as AMX B tiles: per group of 16 features and step of 32 inputs, 16 rows (input pairs) of
    // 16 features x 2 inputs; zero padding up to multiples of 32 inputs and 32 features.
    m_kpad = (m_d + 31) / 32 * 32;
    const int64_t groups = (m_f + 31) / 32 * 2, steps = m_kpad / 32;
    const float* w = m_we.data_ptr<float>();
    m_wp.assign(groups * steps * 512, 0);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t s = 0; s < steps; ++s)
        for (int64_t kk = 0; kk < 16; ++kk)
          for (int64_t n = 0; n < 16; ++n)
            for (int64_t e = 0; e < 2; ++e) {
              const int64_t k = s * 32 + 2 * kk + e, f = g * 16 + n;
              if (k < m_d && f < m_f)
                m_wp[((g * steps + s) * 16 + kk) * 32 + n * 2 + e] = floatToBf16(w[k * m_f + f]);
            }
  }
#endif
  if (m_wp.empty()) m_wb = m_we.to(torch::kBFloat16);
  const torch::Tensor wt = m_we.t().contiguous();
  m_wt.assign(wt.data_ptr<float>(), wt.data_ptr<float>() + wt.numel());
  const float* b = m_be.data_ptr<float>();
  m_marginW.resize(m_f);
  m_biasUp.resize(m_f);
  for (int64_t f = 0; f < m_f; ++f) {
    double sq = 0;
    for (int64_t i = 0; i < m_d; ++i) sq += double(m_wt[f * m_d + i]) * m_wt[f * m_d + i];
    m_marginW[f] = kRowMargin * static_cast<float>(std::sqrt(sq));
    m_biasUp[f] = b[f] + kBiasSlack * std::fabs(b[f]) + kAbsSlack;
  }
}

void SparseEncoder::encode(const torch::Tensor& xc, ActivationRows& out) {
  torch::NoGradGuard noGrad;
  const torch::Tensor x = xc.to(torch::kFloat32).contiguous();
  const int64_t n = x.size(0);
  for (int64_t s = 0; s < n; s += m_blockRows) {
    const torch::Tensor block = x.slice(0, s, std::min(n, s + m_blockRows));
    if (m_screen && screenBlock(block, out)) continue;
    fullBlock(block, out);
  }
}

bool SparseEncoder::screenBlock(const torch::Tensor& x, ActivationRows& out) {
  const int64_t rows = x.size(0), d = m_d, nf = m_f;
  const float* xp = x.data_ptr<float>();
  const bool amx = !m_wp.empty();
  const int64_t padded = (rows + 31) / 32 * 32, steps = m_kpad / 32;
  if (amx) m_xb.assign(padded * m_kpad, 0);
  std::vector<float> nx(rows);
  at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = xp + r * d;
      double sq = 0;
      for (int64_t i = 0; i < d; ++i) sq += double(xr[i]) * xr[i];
      nx[r] = static_cast<float>(std::sqrt(sq));
      if (!amx) continue;
      // x̂ as A tiles: per 16 rows and 32 inputs, 16 x 32 bf16 (1 KB) contiguous.
      uint16_t* tiles = m_xb.data() + (r / 16 * steps * 16 + r % 16) * 32;
      for (int64_t i = 0; i < d; ++i) tiles[i / 32 * 512 + i % 32] = floatToBf16(xr[i]);
    }
  });
  // Candidates: the elements the bound cannot prove negative.
  std::fill(m_count.begin(), m_count.begin() + rows, 0);
#if SAESCOPE_AMX
  if (amx) {
    at::parallel_for(0, padded / 32, 1, [&](int64_t b, int64_t e) {
      amxScreenRows(m_xb.data(), m_kpad, b * 32, e * 32, rows, m_wp.data(), nf, nx.data(),
                    m_biasUp.data(), m_marginW.data(), m_idx.data(), m_count.data());
    });
  }
#endif
  if (!amx) {
    const torch::Tensor approx = torch::mm(x.to(torch::kBFloat16), m_wb).contiguous();
    const auto* p16 = reinterpret_cast<const uint16_t*>(approx.data_ptr<at::BFloat16>());
    at::parallel_for(0, rows, 8, [&](int64_t b, int64_t e) {
      float p[kScreenStep];
      for (int64_t r = b; r < e; ++r)
        for (int64_t f0 = 0; f0 < nf; f0 += kScreenStep) {
          const int64_t w = std::min(kScreenStep, nf - f0);
          for (int64_t j = 0; j < w; ++j) p[j] = bf16ToFloat(p16[r * nf + f0 + j]);
          m_count[r] = screen(p, m_biasUp.data(), m_marginW.data(), nx[r], f0, w,
                              m_idx.data() + r * nf, m_count[r]);
        }
    });
  }
  int64_t found = 0;
  for (int64_t r = 0; r < rows; ++r) found += m_count[r];
  if (found > kMaxCandidateShare * static_cast<double>(rows * nf)) {
    m_screen = false;  // a dense SAE: one GEMM per block from here on
    return false;
  }
  m_computed += found;
  m_screened += rows * nf;
  // The candidates' exact values, as fp32 dot products, feature by feature: a feature's weights
  // stay in cache while its candidate rows (the block's rows fit in L2) are computed.
  std::vector<int64_t> colStart(nf + 1, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < m_count[r]; ++c) ++colStart[m_idx[r * nf + c] + 1];
  for (int64_t f = 0; f < nf; ++f) colStart[f + 1] += colStart[f];
  std::vector<int64_t> next(colStart.begin(), colStart.end() - 1);
  std::vector<int32_t> colRow(found);
  std::vector<float> colVal(found);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < m_count[r]; ++c)
      colRow[next[m_idx[r * nf + c]]++] = static_cast<int32_t>(r);
  const float* be = m_be.data_ptr<float>();
  at::parallel_for(0, nf, 64, [&](int64_t b, int64_t e) {
    for (int64_t f = b; f < e; ++f) {
      const float* w = m_wt.data() + f * d;
      for (int64_t k = colStart[f]; k < colStart[f + 1]; ++k)
        colVal[k] = dot(xp + colRow[k] * d, w, d) + be[f];
    }
  });
  // Back to rows, in increasing feature order within each.
  std::vector<double> sumSq(rows, 0.0);
  std::fill(m_count.begin(), m_count.begin() + rows, 0);
  for (int64_t f = 0; f < nf; ++f)
    for (int64_t k = colStart[f]; k < colStart[f + 1]; ++k) {
      const float v = colVal[k];
      if (!kept(v)) continue;
      const int64_t r = colRow[k], at = r * nf + m_count[r]++;
      m_idx[at] = static_cast<int32_t>(f);
      m_val[at] = v;
      sumSq[r] += double(v) * v;
    }
  append(rows, sumSq, out);
  return true;
}

void SparseEncoder::fullBlock(const torch::Tensor& x, ActivationRows& out) {
  const int64_t rows = x.size(0), nf = m_f;
  const torch::Tensor pre = torch::empty({rows, nf}, torch::kFloat32);
  // One product per thread over its rows: the BLAS runs single-threaded on small machines (see
  // setupDevice), so one large product would leave the other cores idle.
  const int64_t grain = singleThreadedBlas() ? 256 : rows;
  at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) {
    torch::Tensor o = pre.slice(0, b, e);
    torch::addmm_out(o, m_be, x.slice(0, b, e), m_we);
  });
  const float* pp = pre.data_ptr<float>();
  std::vector<double> sumSq(rows, 0.0);
  at::parallel_for(0, rows, 8, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* pr = pp + r * nf;
      int32_t* idx = m_idx.data() + r * nf;
      float* val = m_val.data() + r * nf;
      int64_t k = 0;
      double sq = 0;
      for (int64_t f16 = 0; f16 < nf; f16 += 16) {
        const int64_t w = std::min<int64_t>(16, nf - f16);
        bool any = false;
        for (int64_t j = 0; j < w; ++j) any |= !(pr[f16 + j] <= 0);
        if (!any) continue;
        for (int64_t j = f16; j < f16 + w; ++j)
          if (kept(pr[j])) {
            idx[k] = static_cast<int32_t>(j);
            val[k++] = pr[j];
            sq += double(pr[j]) * pr[j];
          }
      }
      m_count[r] = k;
      sumSq[r] = sq;
    }
  });
  append(rows, sumSq, out);
}

void SparseEncoder::append(int64_t rows, const std::vector<double>& sumSq,
                           ActivationRows& out) const {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* idx = m_idx.data() + r * m_f;
    const float* val = m_val.data() + r * m_f;
    out.feature.insert(out.feature.end(), idx, idx + m_count[r]);
    out.value.insert(out.value.end(), val, val + m_count[r]);
    out.start.push_back(static_cast<int64_t>(out.feature.size()));
    out.norm.push_back(static_cast<float>(std::sqrt(sumSq[r])));
  }
}

}  // namespace engine
