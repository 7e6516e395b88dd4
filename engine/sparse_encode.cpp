// The feature index's SAE encoding (see sparse_encode.h).
//
// The screening bound. Let p = Σ_i x_i w_i, the exact pre-activation without the bias, and p̃ the
// bf16 product's element: operands rounded to bf16 (relative error u = 2^-9 each), products
// accumulated in fp32 (oneDNN, AMX or AVX512-BF16), the result rounded to bf16 (torch returns
// bf16). Then
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

// Clones for AVX-512 (every CPU with bf16 instructions has it) and the baseline, chosen at load.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SAESCOPE_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define SAESCOPE_CLONES
#endif

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

// One row of the bf16 product p̃ (bits), screened: writes to idx the features whose bound cannot
// prove the pre-activation negative (see the top of this file) and returns how many.
SAESCOPE_CLONES int64_t candidates(const uint16_t* p16, const float* biasUp, const float* marginW,
                                   float nx, int64_t nf, int32_t* idx) {
  auto bound = [&](int64_t f) {  // an upper bound of the fp32 pre-activation
    const uint32_t bits = static_cast<uint32_t>(p16[f]) << 16;  // bf16: the high half of a float
    float p;
    std::memcpy(&p, &bits, sizeof p);
    return p + biasUp[f] + nx * marginW[f] + kOutMargin * std::fabs(p);
  };
  constexpr int64_t kStep = 32;  // a fixed count, so that -O2 vectorises the loop
  float m[kStep];
  int64_t c = 0, f0 = 0;
  for (; f0 + kStep <= nf; f0 += kStep) {
    int negative = 0;
    for (int64_t j = 0; j < kStep; ++j) {
      m[j] = bound(f0 + j);
      negative += m[j] < 0;
    }
    if (negative == kStep) continue;
    for (int64_t j = 0; j < kStep; ++j)
      if (!(m[j] < 0)) idx[c++] = static_cast<int32_t>(f0 + j);
  }
  for (; f0 < nf; ++f0)
    if (!(bound(f0) < 0)) idx[c++] = static_cast<int32_t>(f0);
  return c;
}

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
  m_wb = m_we.to(torch::kBFloat16);
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
  const torch::Tensor approx = torch::mm(x.to(torch::kBFloat16), m_wb).contiguous();
  const auto* p16 = reinterpret_cast<const uint16_t*>(approx.data_ptr<at::BFloat16>());
  const float* xp = x.data_ptr<float>();
  // Candidates: the elements the bound cannot prove negative.
  at::parallel_for(0, rows, 8, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = xp + r * d;
      double sq = 0;
      for (int64_t i = 0; i < d; ++i) sq += double(xr[i]) * xr[i];
      const float nx = static_cast<float>(std::sqrt(sq));
      m_count[r] = candidates(p16 + r * nf, m_biasUp.data(), m_marginW.data(), nx, nf,
                              m_idx.data() + r * nf);
    }
  });
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
