// engine/sae_topk.cpp — the topk / batchtopk SAEs' training step on the CPU with its backward pass
// written out over the sparse activations (see TopkCpuStep in sae.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "error.h"
#include "sae.h"
#include "simd.h"

namespace engine {

namespace {

constexpr int kLanes = 16;

// dst += a·src over n floats.
SAESCOPE_CLONES void axpy(float* __restrict__ dst, const float* __restrict__ src, float a,
                          int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] += a * src[j];
}

// Σ a·b over n floats, in 16 float lanes (vectorises without -ffast-math).
SAESCOPE_CLONES float dot(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  float lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += a[j + l] * b[j + l];
  float s = 0;
  for (; j < n; ++j) s += a[j] * b[j];
  for (int l = 0; l < kLanes; ++l) s += lane[l];
  return s;
}

// The radix buckets of positive floats: their bit patterns order as the values do, and the top
// 11 bits (exponent and 3 mantissa bits, the sign being 0) split them into at most 2,048 bins.
constexpr int kBucketShift = 20;
constexpr int kBuckets = 1 << (31 - kBucketShift);

inline uint32_t bitsOf(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

// Whether any of the 16 values at p passes `bar` (one vector comparison).
SAESCOPE_CLONES bool anyAbove(const float* __restrict__ p, float bar) {
  int any = 0;
  for (int l = 0; l < kLanes; ++l) any |= p[l] > bar;
  return any != 0;
}

// The (value, column) pairs of the `keep` largest values > 0 of row p over the columns `cols`
// (all ncols when null), in `heap`, in column order. A min-heap of `keep` whose root, once it is
// full, is the bar a value must pass (before that, 0): most values fail it, 16 at a time on a
// whole row.
void largestPositive(const float* p, const int32_t* cols, int64_t ncols, int64_t keep,
                     std::vector<std::pair<float, int32_t>>& heap) {
  heap.clear();
  if (keep < 1) return;
  auto later = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first;
  };
  float bar = 0;
  auto offer = [&](float v, int32_t j) {
    if (!(v > bar)) return;
    if (static_cast<int64_t>(heap.size()) == keep) {
      std::pop_heap(heap.begin(), heap.end(), later);
      heap.pop_back();
    }
    heap.emplace_back(v, j);
    std::push_heap(heap.begin(), heap.end(), later);
    if (static_cast<int64_t>(heap.size()) == keep) bar = heap.front().first;
  };
  if (cols) {
    for (int64_t c = 0; c < ncols; ++c) offer(p[cols[c]], cols[c]);
  } else {
    int64_t c = 0;
    for (; c + kLanes <= ncols; c += kLanes)
      if (anyAbove(p + c, bar))
        for (int l = 0; l < kLanes; ++l) offer(p[c + l], static_cast<int32_t>(c + l));
    for (; c < ncols; ++c) offer(p[c], static_cast<int32_t>(c));
  }
  std::sort(heap.begin(), heap.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
}

// The n-th largest of the values v[i] for which keep(v[i]) holds, gathered in one pass over
// `chunks` parts (keep is rarely true: a predictable branch); -1 when fewer than n are kept.
template <typename Keep>
float nthKept(const float* v, int64_t count, int64_t n, int64_t chunks, Keep keep) {
  std::vector<std::vector<float>> found(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t lo = count * c / chunks, hi = count * (c + 1) / chunks;
      for (int64_t i = lo; i < hi; ++i)
        if (keep(v[i])) found[c].push_back(v[i]);
    }
  });
  std::vector<float> all;
  for (const auto& f : found) all.insert(all.end(), f.begin(), f.end());
  if (static_cast<int64_t>(all.size()) < n) return -1.0f;
  std::nth_element(all.begin(), all.begin() + (n - 1), all.end(), std::greater<float>());
  return all[n - 1];
}

}  // namespace

float kthLargestPositive(const float* v, int64_t count, int64_t n, bool sampleFirst) {
  if (n < 1) throw Error("kthLargestPositive: n must be at least 1");
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count >> 16));
  constexpr float kTiny = std::numeric_limits<float>::denorm_min();
  // A bar from a sample: the value that a margin more than n of the count should pass (1.5x and
  // 4 standard deviations of the sample's count); then one pass gathers every value above it.
  // The result is exact whenever at least n pass the bar; else the radix select below runs.
  constexpr int64_t kSample = 16384;
  if (sampleFirst && count > 4 * kSample) {
    const double q = static_cast<double>(n) / static_cast<double>(count);
    const auto rank =
        static_cast<int64_t>(std::ceil(1.5 * q * kSample + 4 * std::sqrt(q * kSample) + 8));
    if (rank < kSample) {
      std::vector<float> sample(kSample);
      for (int64_t t = 0; t < kSample; ++t)  // spread over rows and columns alike
        sample[t] = v[static_cast<int64_t>((static_cast<uint64_t>(t) * 2654435761u + 97) %
                                           static_cast<uint64_t>(count))];
      std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<float>());
      const float bar = std::max(sample[rank], kTiny);
      const float found = nthKept(v, count, n, chunks, [bar](float x) { return x >= bar; });
      if (found >= 0) return found;
    }
  }
  // Radix select. Pass 1: counts per bucket, without branches (a value's sign is a coin toss):
  // values <= 0 (and the tiniest positive ones, whose bucket is 0 too) go to bucket 0. Four
  // interleaved counters per bucket, so that runs of one bucket do not wait on each other.
  constexpr int kWays = 4;
  std::vector<int64_t> hist(chunks * kBuckets, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<uint32_t> h(kWays * kBuckets);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(h.begin(), h.end(), 0u);
      const int64_t lo = count * c / chunks, hi = count * (c + 1) / chunks;
      int64_t i = lo;
      for (; i + kWays <= hi; i += kWays)
        for (int w = 0; w < kWays; ++w) {
          const float x = v[i + w];
          ++h[w * kBuckets + (x > 0 ? bitsOf(x) >> kBucketShift : 0)];
        }
      for (; i < hi; ++i) ++h[v[i] > 0 ? bitsOf(v[i]) >> kBucketShift : 0];
      for (int w = 0; w < kWays; ++w)
        for (int k = 0; k < kBuckets; ++k) hist[c * kBuckets + k] += h[w * kBuckets + k];
    }
  });
  int64_t above = 0;
  int bucket = kBuckets - 1;
  for (; bucket > 0; --bucket) {
    int64_t inBucket = 0;
    for (int64_t c = 0; c < chunks; ++c) inBucket += hist[c * kBuckets + bucket];
    if (above + inBucket >= n) break;
    above += inBucket;
  }
  // Pass 2: the bucket's positive values, and the (n − above)-th among them; fewer than n
  // positive values in all: the n-th largest ReLU is 0.
  const float found = nthKept(v, count, n - above, chunks, [bucket](float x) {
    return static_cast<int>(bitsOf(x) >> kBucketShift) == bucket && x > 0;
  });
  return found >= 0 ? found : 0.0f;
}

TopkCpuStep::TopkCpuStep(SparseAutoencoder sae, bool batchTopk, int64_t k, int64_t kAux,
                         double auxAlpha)
    : m_sae(std::move(sae)), m_batchTopk(batchTopk), m_k(k), m_kAux(kAux), m_auxAlpha(auxAlpha) {}

TopkCpuStep::Result TopkCpuStep::gradients(const torch::Tensor& x, const torch::Tensor& dead) {
  torch::NoGradGuard noGrad;
  const torch::Tensor we = m_sae->weight_encoder.detach(), wd = m_sae->weight_decoder.detach();
  const int64_t b = x.size(0), d = we.size(0), nf = we.size(1);
  if (!x.is_cpu() || x.scalar_type() != torch::kFloat32 || !x.is_contiguous() || x.dim() != 2 ||
      x.size(1) != d || b < 1 || !we.is_cpu() || we.scalar_type() != torch::kFloat32 ||
      dead.numel() != nf)
    throw Error("TopkCpuStep: expected a contiguous fp32 batch of width " + std::to_string(d) +
                " on the CPU and a dead mask of " + std::to_string(nf) + " features");
  if (!m_pre.defined() || m_pre.size(0) < b) {
    m_pre = torch::empty({b, nf});
    m_xbar = torch::empty({b, d});
    m_r = torch::empty({b, d});
    m_e = torch::empty({b, d});
  }
  if (!m_gWe.defined()) {
    m_gWe = torch::empty_like(we);
    m_gWeT = torch::empty({nf, d});
    m_gWd = torch::empty_like(wd);
    m_gBe = torch::empty({nf});
    m_gBd = torch::empty({d});
  }
  const float* xp = x.data_ptr<float>();
  const float* bd = m_sae->bias_decoder.data_ptr<float>();
  const float* be = m_sae->bias_encoder.data_ptr<float>();
  const float* wdp = wd.data_ptr<float>();
  float *prep = m_pre.data_ptr<float>(), *xbarp = m_xbar.data_ptr<float>();
  float *rp = m_r.data_ptr<float>(), *ep = m_e.data_ptr<float>();

  std::vector<int32_t> deadCols;
  {
    const torch::Tensor dm = dead.to(torch::kCPU, torch::kBool).contiguous();
    const bool* dp = dm.data_ptr<bool>();
    for (int64_t j = 0; j < nf; ++j)
      if (dp[j]) deadCols.push_back(static_cast<int32_t>(j));
  }
  const int64_t kAux = std::min<int64_t>(m_kAux, static_cast<int64_t>(deadCols.size()));
  const int64_t selected = std::min<int64_t>(m_k * b, b * nf);

  // Row blocks, one a thread (fixed by the thread count, so that the sums are reproducible).
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), b / 16));
  auto rowsOf = [&](int64_t blk) {
    return std::make_pair(b * blk / blocks, b * (blk + 1) / blocks);
  };

  // Forward through the encoder: X̄ = X − b_d; pre = X̄ W_e + b_e.
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    torch::NoGradGuard workerNoGrad;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const auto [lo, hi] = rowsOf(blk);
      for (int64_t i = lo; i < hi; ++i)
        for (int64_t j = 0; j < d; ++j) xbarp[i * d + j] = xp[i * d + j] - bd[j];
      torch::Tensor pb = m_pre.slice(0, lo, hi);
      torch::mm_out(pb, m_xbar.slice(0, lo, hi), we);
      for (int64_t i = lo; i < hi; ++i) axpy(prep + i * nf, be, 1.0f, nf);
    }
  });
  // The batch threshold: the (B·k)-th largest ReLU(pre) over the batch (BatchTopK's support, and
  // the global threshold's running average for both variants).
  const float tau = kthLargestPositive(prep, b * nf, selected);

  // The activations as lists per row block: (column, value) in row order, with each row's end.
  struct Block {
    std::vector<int32_t> col, auxCol;
    std::vector<float> val, auxVal, grad, auxGrad;  // grad: ∂L/∂pre of each entry
    std::vector<int64_t> end, auxEnd;               // per row, one past its last entry
    double sumSq = 0, auxSumSq = 0;
  };
  std::vector<Block> part(blocks);
  const float twoOverN = static_cast<float>(2.0 / static_cast<double>(b * d));
  const float auxScale = static_cast<float>(m_auxAlpha) * twoOverN;

  // Selection, decoding and the backward pass down to each activation, row by row.
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<std::pair<float, int32_t>> heap;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const auto [lo, hi] = rowsOf(blk);
      Block& p = part[blk];
      p.col.reserve((hi - lo) * m_k);
      for (int64_t i = lo; i < hi; ++i) {
        const float* pre = prep + i * nf;
        float* r = rp + i * d;
        std::memcpy(r, bd, d * sizeof(float));
        const size_t first = p.col.size();
        if (m_batchTopk) {
          const float bar = tau > 0 ? tau : std::numeric_limits<float>::denorm_min();
          for (int64_t j = 0; j < nf; ++j)
            if (pre[j] >= bar) {
              p.col.push_back(static_cast<int32_t>(j));
              p.val.push_back(pre[j]);
            }
        } else {
          largestPositive(pre, nullptr, nf, m_k, heap);
          for (const auto& [v, j] : heap) {
            p.col.push_back(j);
            p.val.push_back(v);
          }
        }
        p.end.push_back(static_cast<int64_t>(p.col.size()));
        // x̂ = f W_d + b_d; r = x̂ − x.
        for (size_t e = first; e < p.col.size(); ++e) axpy(r, wdp + p.col[e] * d, p.val[e], d);
        for (int64_t j = 0; j < d; ++j) r[j] -= xp[i * d + j];
        p.sumSq += static_cast<double>(dot(r, r, d));
        // AuxK: the kAux largest positive pre-activations of dead latents reconstruct −r.
        float* e = ep + i * d;
        if (kAux > 0) {
          const size_t auxFirst = p.auxCol.size();
          largestPositive(pre, deadCols.data(), static_cast<int64_t>(deadCols.size()), kAux, heap);
          std::memcpy(e, r, d * sizeof(float));  // ê − (x − x̂) = ê + r
          for (const auto& [v, j] : heap) {
            p.auxCol.push_back(j);
            p.auxVal.push_back(v);
            axpy(e, wdp + static_cast<int64_t>(j) * d, v, d);
          }
          p.auxEnd.push_back(static_cast<int64_t>(p.auxCol.size()));
          p.auxSumSq += static_cast<double>(dot(e, e, d));
          for (int64_t j = 0; j < d; ++j) e[j] *= auxScale;  // ∂L/∂ê
          for (size_t a = auxFirst; a < p.auxCol.size(); ++a)
            p.auxGrad.push_back(dot(e, wdp + static_cast<int64_t>(p.auxCol[a]) * d, d));
        }
        for (int64_t j = 0; j < d; ++j) r[j] *= twoOverN;  // ∂L/∂x̂
        for (size_t a = first; a < p.col.size(); ++a)
          p.grad.push_back(dot(r, wdp + static_cast<int64_t>(p.col[a]) * d, d));
      }
    }
  });

  // Every entry by feature, in row order (a fixed summation order: the same bits run to run).
  struct Ref {
    int32_t row;
    float val, grad;
    bool aux;
  };
  std::vector<int64_t> start(nf + 1, 0);
  for (const Block& p : part) {
    for (int32_t j : p.col) ++start[j + 1];
    for (int32_t j : p.auxCol) ++start[j + 1];
  }
  for (int64_t j = 0; j < nf; ++j) start[j + 1] += start[j];
  std::vector<Ref> byFeature(start[nf]);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const Block& p = part[blk];
      const int64_t lo = rowsOf(blk).first;
      size_t e = 0, a = 0;
      for (size_t row = 0; row < p.end.size(); ++row) {
        const auto i = static_cast<int32_t>(lo + static_cast<int64_t>(row));
        for (; e < static_cast<size_t>(p.end[row]); ++e)
          byFeature[fill[p.col[e]]++] = {i, p.val[e], p.grad[e], false};
        if (kAux > 0)
          for (; a < static_cast<size_t>(p.auxEnd[row]); ++a)
            byFeature[fill[p.auxCol[a]]++] = {i, p.auxVal[a], p.auxGrad[a], true};
      }
    }
  }

  // Weight gradients by feature: ∂L/∂W_d[j] = Σ f_ij ∂L/∂x̂_i (+ the AuxK terms with ∂L/∂ê_i),
  // ∂L/∂W_e[:, j] = Σ ∂L/∂pre_ij X̄_i, ∂L/∂b_e[j] = Σ ∂L/∂pre_ij.
  float *gwd = m_gWd.data_ptr<float>(), *gweT = m_gWeT.data_ptr<float>();
  float* gbe = m_gBe.data_ptr<float>();
  at::parallel_for(0, nf, 64, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      float *rowD = gwd + j * d, *rowE = gweT + j * d;
      std::fill(rowD, rowD + d, 0.0f);
      std::fill(rowE, rowE + d, 0.0f);
      double sum = 0;
      for (int64_t t = start[j]; t < start[j + 1]; ++t) {
        const Ref& ref = byFeature[t];
        axpy(rowD, (ref.aux ? ep : rp) + static_cast<int64_t>(ref.row) * d, ref.val, d);
        axpy(rowE, xbarp + static_cast<int64_t>(ref.row) * d, ref.grad, d);
        sum += ref.grad;
      }
      gbe[j] = static_cast<float>(sum);
    }
  });
  m_gWe.copy_(m_gWeT.t());
  // ∂L/∂b_d = Σ_rows ∂L/∂x̂ − W_e ∂L/∂b_e (b_d enters x̂ and, subtracted, the encoder).
  torch::sum_out(m_gBd, m_r.slice(0, 0, b), 0);
  m_gBd.sub_(torch::mv(we, m_gBe));
  m_sae->weight_encoder.mutable_grad() = m_gWe;
  m_sae->weight_decoder.mutable_grad() = m_gWd;
  m_sae->bias_encoder.mutable_grad() = m_gBe;
  m_sae->bias_decoder.mutable_grad() = m_gBd;

  Result out;
  out.threshold = tau;
  std::vector<uint8_t> fired(nf, 0);
  int64_t active = 0;
  double sumSq = 0, auxSumSq = 0;
  for (const Block& p : part) {
    for (int32_t j : p.col) fired[j] = 1;
    active += static_cast<int64_t>(p.col.size());
    sumSq += p.sumSq;
    auxSumSq += p.auxSumSq;
  }
  const double n = static_cast<double>(b * d);
  out.reconstruction = sumSq / n;
  out.aux = kAux > 0 ? auxSumSq / n : 0.0;
  out.l0 = static_cast<double>(active) / static_cast<double>(b);
  out.fired = torch::from_blob(fired.data(), {nf}, torch::kUInt8).to(torch::kBool);
  return out;
}

}  // namespace engine
