// The SAE stage (LibTorch).
#include "sae.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <tuple>

#include "checkpoint.h"
#include "error.h"
#include "features.h"
#include "fsutil.h"
#include "npy.h"
#include "pipeline.h"
#include "sae_eval.h"
#include "simd.h"
#include "torch_util.h"
#include "workspace.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

SparseAutoencoderImpl::SparseAutoencoderImpl(int64_t inputDim, int64_t features) {
  weight_encoder = register_parameter("weight_encoder", torch::randn({inputDim, features}));
  weight_decoder = register_parameter("weight_decoder", torch::randn({features, inputDim}));
  bias_encoder = register_parameter("bias_encoder", torch::zeros({features}));
  bias_decoder = register_parameter("bias_decoder", torch::zeros({inputDim}));
}

torch::Tensor SparseAutoencoderImpl::encode(const torch::Tensor& x) {
  return torch::relu(preActivation(x));
}

torch::Tensor SparseAutoencoderImpl::preActivation(const torch::Tensor& x) {
  if (productType == at::kFloat)
    return torch::addmm(bias_encoder, x - bias_decoder, weight_encoder);
  return productIn(x - bias_decoder, weight_encoder, productType) + bias_encoder;
}

torch::Tensor SparseAutoencoderImpl::decode(const torch::Tensor& f) {
  if (productType == at::kFloat) return torch::addmm(bias_decoder, f, weight_decoder);
  return productIn(f, weight_decoder, productType) + bias_decoder;
}

torch::Tensor productIn(const torch::Tensor& a, const torch::Tensor& b, at::ScalarType type) {
  if (type == at::kFloat) return torch::mm(a, b);
  return torch::mm(a.to(type), b.to(type)).to(at::kFloat);
}

at::ScalarType productTypeOf(const std::string& precision) {
  return precision == "bf16" ? at::kBFloat16 : at::kFloat;
}

SaeLoss saeLoss(const torch::Tensor& x, const torch::Tensor& xHat, const torch::Tensor& f,
                double l1) {
  SaeLoss l;
  l.reconstruction = (x - xHat).norm();
  l.sparsity = f.abs().sum();
  l.total = l.reconstruction + l1 * l.sparsity;
  return l;
}

torch::Tensor l2normalizeRows(const torch::Tensor& x) {
  return x / x.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);
}

torch::Tensor loadUnitEmbeddings(const Workspace& ws) {
  ws.requireEmbeddings();
  TensorData emb = readNpy(ws.embeddingsPath());
  if (emb.shape.size() != 2 || emb.shape[0] < 1 || emb.shape[1] < 1)
    throw Error(ws.embeddingsPath() + ": expected a 2-D array [N, D], found " + emb.shapeString());
  torch::Tensor x = toTorch(std::move(emb)).to(torch::kFloat32);
  torch::NoGradGuard noGrad;
  return x.div_(x.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12));
}

// ---------------------------------------------------------------------------------------------
// The reference SAE's training step

SeedStepLosses seedAutogradStep(SparseAutoencoder& sae, const torch::Tensor& xb, double l1,
                                torch::optim::Optimizer& opt, bool report) {
  const torch::Tensor f = sae->encode(xb);
  const torch::Tensor xHat = sae->decode(f);
  const SaeLoss loss = saeLoss(xb, xHat, f, l1);
  opt.zero_grad();
  loss.total.backward();
  opt.step();
  SeedStepLosses out;
  if (report) {
    out.total = loss.total.item<double>();
    out.reconstruction = loss.reconstruction.item<double>();
    out.sparsity = loss.sparsity.item<double>();
    out.l0 = (f > 0).sum(1).to(torch::kFloat64).mean().item<double>();
  }
  return out;
}

namespace {
// SeedCpuStep's element-wise passes over its row blocks, written as 16-lane steps so that they
// vectorise without -ffast-math: float partial sums per lane, added up per row in double.
constexpr int kLanes = 16;

// xbar[i] = x[rows[i]] − b_d for `count` rows of width d.
SAESCOPE_CLONES void gatherCentered(const float* __restrict__ x, const int64_t* rows, int64_t count,
                                    int64_t d, const float* __restrict__ bd,
                                    float* __restrict__ xbar) {
  for (int64_t i = 0; i < count; ++i) {
    const float* src = x + rows[i] * d;
    float* dst = xbar + i * d;
    int64_t j = 0;
    for (; j + kLanes <= d; j += kLanes)
      for (int l = 0; l < kLanes; ++l) dst[j + l] = src[j + l] - bd[j + l];
    for (; j < d; ++j) dst[j] = src[j] - bd[j];
  }
}

// f ← ReLU(f + b_e) over `count` rows of width n (NaN passes, as in torch's ReLU); adds Σ f and
// the number of positive elements to *sum and *active.
SAESCOPE_CLONES void reluBiasRows(float* __restrict__ f, const float* __restrict__ be,
                                  int64_t count, int64_t n, double* sum, int64_t* active) {
  for (int64_t i = 0; i < count; ++i) {
    float* row = f + i * n;
    float acc[kLanes] = {};
    int32_t pos[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {  // one loop per quantity: -O2 vectorises each
      float* v = row + j;
      for (int l = 0; l < kLanes; ++l) v[l] += be[j + l];
      for (int l = 0; l < kLanes; ++l) v[l] = v[l] > 0.0f || v[l] != v[l] ? v[l] : 0.0f;
      for (int l = 0; l < kLanes; ++l) acc[l] += v[l];
      for (int l = 0; l < kLanes; ++l) pos[l] += v[l] > 0.0f;
    }
    double s = 0;
    for (; j < n; ++j) {
      const float v = row[j] + be[j];
      row[j] = v > 0.0f || v != v ? v : 0.0f;
      s += row[j];
      *active += row[j] > 0.0f;
    }
    for (int l = 0; l < kLanes; ++l) {
      s += acc[l];
      *active += pos[l];
    }
    *sum += s;
  }
}

// r ← r − xbar over `count` rows of width d; returns Σ r².
SAESCOPE_CLONES double residualRows(float* __restrict__ r, const float* __restrict__ xbar,
                                    int64_t count, int64_t d) {
  double total = 0;
  for (int64_t i = 0; i < count; ++i) {
    float* row = r + i * d;
    const float* xr = xbar + i * d;
    float acc[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= d; j += kLanes) {
      float* v = row + j;
      for (int l = 0; l < kLanes; ++l) v[l] -= xr[j + l];
      for (int l = 0; l < kLanes; ++l) acc[l] += v[l] * v[l];
    }
    double s = 0;
    for (; j < d; ++j) {
      row[j] -= xr[j];
      s += double(row[j]) * row[j];
    }
    for (int l = 0; l < kLanes; ++l) s += acc[l];
    total += s;
  }
  return total;
}

// r ← s·r over `count` rows of width d; col[j] += Σ_rows r[., j].
SAESCOPE_CLONES void scaleRowsSumColumns(float* __restrict__ r, int64_t count, int64_t d, float s,
                                         double* __restrict__ col) {
  for (int64_t i = 0; i < count; ++i) {
    float* row = r + i * d;
    int64_t j = 0;
    for (; j + kLanes <= d; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) row[j + l] *= s;
      for (int l = 0; l < kLanes; ++l) col[j + l] += row[j + l];
    }
    for (; j < d; ++j) {
      row[j] *= s;
      col[j] += row[j];
    }
  }
}

// g ← (g + λ)·1[f > 0] over `count` rows of width n (ReLU's and λΣ|f|'s backward); col += Σ_rows g.
SAESCOPE_CLONES void reluBackwardRows(float* __restrict__ g, const float* __restrict__ f,
                                      int64_t count, int64_t n, float l1,
                                      double* __restrict__ col) {
  for (int64_t i = 0; i < count; ++i) {
    float* row = g + i * n;
    const float* fr = f + i * n;
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) row[j + l] = fr[j + l] > 0.0f ? row[j + l] + l1 : 0.0f;
      for (int l = 0; l < kLanes; ++l) col[j + l] += row[j + l];
    }
    for (; j < n; ++j) {
      row[j] = fr[j] > 0.0f ? row[j] + l1 : 0.0f;
      col[j] += row[j];
    }
  }
}

}  // namespace

SeedStepLosses SeedCpuStep::gradients(const torch::Tensor& x, const torch::Tensor& rows) {
  torch::NoGradGuard noGrad;
  const torch::Tensor we = m_sae->weight_encoder.detach(), wd = m_sae->weight_decoder.detach();
  const int64_t b = rows.numel(), d = we.size(0), nf = we.size(1);
  if (!x.is_cpu() || x.scalar_type() != torch::kFloat32 || !x.is_contiguous() || x.dim() != 2 ||
      x.size(1) != d || rows.scalar_type() != torch::kLong || !rows.is_contiguous() || b < 1 ||
      !we.is_cpu() || we.scalar_type() != torch::kFloat32)
    throw Error("SeedCpuStep: expected contiguous fp32 rows of width " + std::to_string(d) +
                " and int64 row numbers on the CPU");
  if (!m_xbar.defined() || m_xbar.size(0) < b) {
    m_xbar = torch::empty({b, d});
    m_r = torch::empty({b, d});
    m_f = torch::empty({b, nf});
    m_g = torch::empty({b, nf});
  }
  if (!m_gWe.defined()) {
    m_gWe = torch::empty_like(we);
    m_gWd = torch::empty_like(wd);
    m_gBe = torch::empty({nf});
    m_gBd = torch::empty({d});
    m_wb = torch::empty({d});
  }
  const torch::Tensor xbar = m_xbar.slice(0, 0, b), r = m_r.slice(0, 0, b);
  const torch::Tensor f = m_f.slice(0, 0, b), g = m_g.slice(0, 0, b);
  const float* xp = x.data_ptr<float>();
  const int64_t* rowp = rows.data_ptr<int64_t>();
  const float* bd = m_sae->bias_decoder.data_ptr<float>();
  const float* be = m_sae->bias_encoder.data_ptr<float>();
  float *xbarp = xbar.data_ptr<float>(), *rp = r.data_ptr<float>();
  float *fp = f.data_ptr<float>(), *gp = g.data_ptr<float>();
  for (int64_t i = 0; i < b; ++i)
    if (rowp[i] < 0 || rowp[i] >= x.size(0))
      throw Error("SeedCpuStep: row " + std::to_string(rowp[i]) + " is out of range");

  // Row blocks, one a thread (fixed by the thread count, so that the sums are reproducible).
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), b / 16));
  auto rowsOf = [&](int64_t blk) {
    return std::make_pair(b * blk / blocks, b * (blk + 1) / blocks);
  };
  struct Partial {
    double sumSq = 0, sumF = 0;
    int64_t active = 0;
  };
  std::vector<Partial> part(blocks);
  std::vector<double> colR(blocks * d, 0.0), colG(blocks * nf, 0.0);

  // Forward: X̄ = X − b_d; f = ReLU(X̄ W_e + b_e); r = f W_d − X̄ (= X̂ − X).
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    torch::NoGradGuard workerNoGrad;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const auto [lo, hi] = rowsOf(blk);
      gatherCentered(xp, rowp + lo, hi - lo, d, bd, xbarp + lo * d);
      torch::Tensor fb = f.slice(0, lo, hi), rb = r.slice(0, lo, hi);
      const torch::Tensor xb = xbar.slice(0, lo, hi);
      torch::mm_out(fb, xb, we);
      Partial& p = part[blk];
      reluBiasRows(fp + lo * nf, be, hi - lo, nf, &p.sumF, &p.active);
      torch::mm_out(rb, fb, wd);
      p.sumSq = residualRows(rp + lo * d, xbarp + lo * d, hi - lo, d);
    }
  });
  double sumSq = 0, sumF = 0;
  int64_t active = 0;
  for (const Partial& p : part) {
    sumSq += p.sumSq;
    sumF += p.sumF;
    active += p.active;
  }
  const double norm = std::sqrt(sumSq);
  // ‖r‖'s gradient r/‖r‖, and 0 at r = 0 (as torch's norm backward).
  const float inv = norm > 0 ? static_cast<float>(1.0 / norm) : 0.0f;
  const float l1 = static_cast<float>(m_l1);

  // Backward through the decoder and the ReLU: r ← r/‖r‖; G = (r W_dᵀ + λ) ⊙ 1[f > 0].
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    torch::NoGradGuard workerNoGrad;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const auto [lo, hi] = rowsOf(blk);
      scaleRowsSumColumns(rp + lo * d, hi - lo, d, inv, colR.data() + blk * d);
      torch::Tensor gb = g.slice(0, lo, hi);
      torch::mm_out(gb, r.slice(0, lo, hi), wd.t());
      reluBackwardRows(gp + lo * nf, fp + lo * nf, hi - lo, nf, l1, colG.data() + blk * nf);
    }
  });

  // Weight gradients, split by output rows: ∂L/∂W_d = fᵀ r [F, D], ∂L/∂W_e = X̄ᵀ G [D, F].
  at::parallel_for(0, nf + d, 16, [&](int64_t lo, int64_t hi) {
    torch::NoGradGuard workerNoGrad;
    if (lo < nf) {
      torch::Tensor out = m_gWd.slice(0, lo, std::min(hi, nf));
      torch::mm_out(out, f.slice(1, lo, std::min(hi, nf)).t(), r);
    }
    if (hi > nf) {
      torch::Tensor out = m_gWe.slice(0, std::max(lo, nf) - nf, hi - nf);
      torch::mm_out(out, xbar.slice(1, std::max(lo, nf) - nf, hi - nf).t(), g);
    }
  });
  float* gbe = m_gBe.data_ptr<float>();
  for (int64_t j = 0; j < nf; ++j) {
    double s = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) s += colG[blk * nf + j];
    gbe[j] = static_cast<float>(s);
  }
  torch::mv_out(m_wb, we, m_gBe);
  float* gbd = m_gBd.data_ptr<float>();
  const float* wb = m_wb.data_ptr<float>();
  for (int64_t j = 0; j < d; ++j) {
    double s = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) s += colR[blk * d + j];
    gbd[j] = static_cast<float>(s - wb[j]);
  }
  m_sae->weight_encoder.mutable_grad() = m_gWe;
  m_sae->weight_decoder.mutable_grad() = m_gWd;
  m_sae->bias_encoder.mutable_grad() = m_gBe;
  m_sae->bias_decoder.mutable_grad() = m_gBd;

  SeedStepLosses out;
  out.reconstruction = norm;
  out.sparsity = sumF;
  out.total = norm + m_l1 * sumF;
  out.l0 = static_cast<double>(active) / static_cast<double>(b);
  return out;
}

SeedStepLosses SeedCpuStep::step(const torch::Tensor& x, const torch::Tensor& rows,
                                 torch::optim::Optimizer& opt) {
  const SeedStepLosses out = gradients(x, rows);
  if (fusedAdamStep(opt))
    ++m_fusedAdamSteps;
  else
    opt.step();
  return out;
}

bool writtenOutStep(const std::string& variant, at::ScalarType productType,
                    const torch::Device& device) {
  return variant != "l1" && device.is_cpu() && productType == at::kFloat &&
         std::getenv("SAESCOPE_SAE_AUTOGRAD") == nullptr;
}

// ---------------------------------------------------------------------------------------------
// Modern variants: building blocks

torch::Tensor geometricMedian(const torch::Tensor& x, int iterations) {
  torch::NoGradGuard noGrad;
  torch::Tensor m = x.mean(0);
  for (int i = 0; i < iterations; ++i) {
    const torch::Tensor w = 1.0 / (x - m).norm(2, 1).clamp_min(1e-8);  // [N]
    m = (w.unsqueeze(1) * x).sum(0) / w.sum();
  }
  return m;
}

torch::Tensor topkActivation(const torch::Tensor& pre, int64_t k) {
  const auto top = pre.topk(std::min<int64_t>(k, pre.size(1)), 1);
  return torch::zeros_like(pre).scatter(1, std::get<1>(top), torch::relu(std::get<0>(top)));
}

torch::Tensor batchTopkActivation(const torch::Tensor& pre, int64_t k) {
  const torch::Tensor r = torch::relu(pre).flatten();
  const auto top = r.topk(std::min<int64_t>(k * pre.size(0), r.numel()));
  return torch::zeros_like(r).scatter(0, std::get<1>(top), std::get<0>(top)).view(pre.sizes());
}

double batchThreshold(const torch::Tensor& pre, int64_t k) {
  torch::NoGradGuard noGrad;
  const int64_t n = std::min<int64_t>(k * pre.size(0), pre.numel());
  if (pre.is_cpu() && pre.scalar_type() == torch::kFloat32) {
    const torch::Tensor c = pre.detach().contiguous();
    return kthLargestPositive(c.data_ptr<float>(), c.numel(), n);
  }
  const torch::Tensor r = torch::relu(pre.detach()).flatten();
  return std::get<0>(r.topk(n)).min().item<double>();
}

torch::Tensor thresholdActivation(const torch::Tensor& pre, const torch::Tensor& theta) {
  return pre * (pre > theta).to(pre.scalar_type());
}

torch::Tensor auxkLoss(const torch::Tensor& pre, const torch::Tensor& residual,
                       const torch::Tensor& weightDecoder, const torch::Tensor& dead, int64_t kAux,
                       at::ScalarType productType) {
  const int64_t nDead = dead.sum().item<int64_t>();
  if (nDead == 0 || kAux < 1) return torch::zeros({}, pre.options());
  const int64_t k = std::min(kAux, nDead);
  const torch::Tensor masked = pre.masked_fill(dead.logical_not().unsqueeze(0), -INFINITY);
  const auto top = masked.topk(k, 1);
  const torch::Tensor z =
      torch::zeros_like(pre).scatter(1, std::get<1>(top), torch::relu(std::get<0>(top)));
  const torch::Tensor eHat = productIn(z, weightDecoder, productType);
  return (eHat - residual).pow(2).mean();
}

namespace {
// g ← g − (g·w / max(‖w‖, 1e-12)²) w for `rows` rows of width d: removeParallelGradient in one
// pass a row (torch's form takes five over the whole matrix, 6.5 ms at 4,096 x 512).
SAESCOPE_CLONES void projectOutRows(const float* __restrict__ w, float* __restrict__ g,
                                    int64_t rows, int64_t d) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* wr = w + i * d;
    float* gr = g + i * d;
    float ww[kLanes] = {}, gw[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= d; j += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        ww[l] += wr[j + l] * wr[j + l];
        gw[l] += gr[j + l] * wr[j + l];
      }
    double sww = 0, sgw = 0;
    for (; j < d; ++j) {
      sww += static_cast<double>(wr[j]) * wr[j];
      sgw += static_cast<double>(gr[j]) * wr[j];
    }
    for (int l = 0; l < kLanes; ++l) {
      sww += ww[l];
      sgw += gw[l];
    }
    const double norm = std::max(std::sqrt(sww), 1e-12);
    const auto scale = static_cast<float>(sgw / (norm * norm));
    for (j = 0; j < d; ++j) gr[j] -= scale * wr[j];
  }
}
}  // namespace

void removeParallelGradient(const torch::Tensor& weightDecoder) {
  torch::NoGradGuard noGrad;
  torch::Tensor g = weightDecoder.mutable_grad();
  if (!g.defined()) return;
  if (weightDecoder.is_cpu() && weightDecoder.scalar_type() == torch::kFloat32 &&
      weightDecoder.is_contiguous() && g.scalar_type() == torch::kFloat32 && g.is_contiguous() &&
      weightDecoder.dim() == 2) {
    const float* w = weightDecoder.data_ptr<float>();
    float* gp = g.data_ptr<float>();
    const int64_t d = weightDecoder.size(1);
    at::parallel_for(0, weightDecoder.size(0), 64, [&](int64_t r0, int64_t r1) {
      projectOutRows(w + r0 * d, gp + r0 * d, r1 - r0, d);
    });
    return;
  }
  const torch::Tensor unit = weightDecoder / weightDecoder.norm(2, 1, true).clamp_min(1e-12);
  g.sub_((g * unit).sum(1, true) * unit);
}

void normaliseDecoderRows(const torch::Tensor& weightDecoder) {
  torch::NoGradGuard noGrad;
  weightDecoder.div_(weightDecoder.norm(2, 1, true).clamp_min(1e-12));
}

double lrFactor(int64_t step, int64_t total, double warmup, double decay) {
  const double t = static_cast<double>(step), n = static_cast<double>(std::max<int64_t>(total, 1));
  const double w = warmup * n, dStart = (1 - decay) * n;
  double f = 1;
  if (w > 0 && t < w) f = std::min(f, (t + 1) / w);
  if (decay > 0 && t >= dStart) f = std::min(f, std::max(0.0, (n - t) / (n - dStart)));
  return f;
}

int64_t countDeadFeatures(torch::Tensor we, torch::Tensor be, const torch::Tensor& bd,
                          const torch::Tensor& x) {
  torch::NoGradGuard noGrad;
  const torch::Tensor xc = x.to(torch::kCPU);
  int64_t block = 1024;
  for (int64_t s = 0; s < xc.size(0) && we.size(1) > 0;
       s += block, block = std::min<int64_t>(block * 2, 8192)) {
    const torch::Tensor xb = xc.slice(0, s, std::min<int64_t>(xc.size(0), s + block));
    const torch::Tensor silent = (torch::addmm(be, xb - bd, we) > 0).any(0).logical_not();
    if (silent.all().item<bool>()) continue;
    const torch::Tensor keep = silent.nonzero().flatten();
    we = we.index_select(1, keep);
    be = be.index_select(0, keep);
  }
  return we.size(1);
}

// ---------------------------------------------------------------------------------------------
// SaeTrainer

SaeTrainer::SaeTrainer(const SaeConfig& cfg, int64_t inputDim, int64_t totalSteps,
                       int64_t deadAfter)
    : m_cfg(cfg), m_total(totalSteps), m_deadAfter(deadAfter), m_sae(inputDim, cfg.features) {
  m_sae->productType = productTypeOf(cfg.precision);
  m_sinceFired = torch::zeros({cfg.features}, torch::kLong);
}

void SaeTrainer::to(const torch::Device& device) {
  m_sae->to(device);
  m_sinceFired = m_sinceFired.to(device);
}

void SaeTrainer::initialise(const torch::Tensor& sample, at::Generator gen) {
  torch::NoGradGuard noGrad;
  const int64_t f = m_cfg.features, d = m_sae->weight_decoder.size(1);
  torch::Tensor wd = at::randn({f, d}, gen, torch::TensorOptions().dtype(torch::kFloat32));
  wd = wd / wd.norm(2, 1, true).clamp_min(1e-12);
  if (m_cfg.variant == "l1") wd = wd * m_cfg.decoderInitNorm;
  const torch::Device dev = m_sae->weight_decoder.device();
  m_sae->weight_decoder.copy_(wd.to(dev));
  m_sae->weight_encoder.copy_(wd.t().to(dev));
  m_sae->bias_encoder.zero_();
  if (m_cfg.variant == "l1")
    m_sae->bias_decoder.zero_();
  else
    m_sae->bias_decoder.copy_(geometricMedian(sample.to(dev)));
  m_opt = std::make_unique<torch::optim::Adam>(
      m_sae->parameters(),
      torch::optim::AdamOptions(saeEffectiveLr(m_cfg)).weight_decay(m_cfg.weightDecay));
}

torch::Tensor SaeTrainer::features(const torch::Tensor& xb) {
  const torch::Tensor pre = m_sae->preActivation(xb);
  if (m_cfg.variant == "topk") return topkActivation(pre, m_cfg.k);
  if (m_cfg.variant == "batchtopk") return batchTopkActivation(pre, m_cfg.k);
  return torch::relu(pre);
}

SaeTrainer::Step SaeTrainer::step(const torch::Tensor& xb, bool report) {
  const bool l1 = m_cfg.variant == "l1";
  const double lr =
      saeEffectiveLr(m_cfg) * lrFactor(m_step, m_total, m_cfg.lrWarmup, m_cfg.lrDecay);
  for (auto& group : m_opt->param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  if (!m_handDecided) {
    m_handDecided = true;
    if (writtenOutStep(m_cfg.variant, m_sae->productType, m_sae->weight_decoder.device()))
      m_hand = std::make_unique<TopkCpuStep>(m_sae, m_cfg.variant == "batchtopk", m_cfg.k,
                                             m_cfg.kAux, m_cfg.auxAlpha);
  }
  Step s;
  s.lr = lr;
  torch::Tensor fired;  // [F] bool: the features active in some row of the batch
  if (m_hand) {
    const TopkCpuStep::Result h = m_hand->gradients(xb.contiguous(), m_sinceFired >= m_deadAfter);
    updateThreshold(h.threshold);
    fired = h.fired;
    if (report) {
      s.reconstruction = h.reconstruction;
      s.aux = h.aux;
      s.loss = h.reconstruction + m_cfg.auxAlpha * h.aux;
      s.l0 = h.l0;
    }
  } else {
    fired = autogradGradients(xb, report, s);
  }
  if (!l1) removeParallelGradient(m_sae->weight_decoder);
  if (m_cfg.gradClip > 0) torch::nn::utils::clip_grad_norm_(m_sae->parameters(), m_cfg.gradClip);
  if (!(m_hand && fusedAdamStep(*m_opt))) m_opt->step();
  if (!l1) normaliseDecoderRows(m_sae->weight_decoder);
  m_sinceFired.add_(xb.size(0)).masked_fill_(fired, 0);
  ++m_step;
  if (report)
    s.deadFraction = (m_sinceFired >= m_deadAfter).to(torch::kFloat64).mean().item<double>();
  return s;
}

torch::Tensor SaeTrainer::autogradGradients(const torch::Tensor& xb, bool report, Step& s) {
  const torch::Tensor pre = m_sae->preActivation(xb);
  torch::Tensor f, recon, sparsity, aux, total;
  if (m_cfg.variant == "l1") {
    f = torch::relu(pre);
    const torch::Tensor xHat = m_sae->decode(f);
    recon = (xHat - xb).pow(2).sum(1).mean();
    const double ramp =
        m_cfg.l1Warmup > 0
            ? std::min(1.0, (m_step + 1) / (m_cfg.l1Warmup * std::max<int64_t>(m_total, 1)))
            : 1.0;
    sparsity = (f * m_sae->weight_decoder.norm(2, 1).unsqueeze(0)).sum(1).mean();
    total = recon + (m_cfg.l1 * ramp) * sparsity;
  } else {
    f = m_cfg.variant == "topk" ? topkActivation(pre, m_cfg.k) : batchTopkActivation(pre, m_cfg.k);
    const torch::Tensor xHat = m_sae->decode(f);
    recon = (xHat - xb).pow(2).mean();
    const torch::Tensor dead = m_sinceFired >= m_deadAfter;
    aux = auxkLoss(pre, (xb - xHat).detach(), m_sae->weight_decoder, dead, m_cfg.kAux,
                   m_sae->productType);
    total = recon + m_cfg.auxAlpha * aux;
    updateThreshold(batchThreshold(pre, m_cfg.k));
  }
  m_opt->zero_grad();
  total.backward();
  torch::NoGradGuard noGrad;
  if (report) {
    s.loss = total.item<double>();
    s.reconstruction = recon.item<double>();
    s.sparsity = sparsity.defined() ? sparsity.item<double>() : 0.0;
    s.aux = aux.defined() ? aux.item<double>() : 0.0;
    s.l0 = (f > 0).sum(1).to(torch::kFloat64).mean().item<double>();
  }
  return (f > 0).any(0);
}

void SaeTrainer::updateThreshold(double tau) {
  // The global threshold for single-image encoding: EMA of the batch threshold.
  m_threshold = m_haveThreshold ? m_threshold + m_cfg.thresholdEma * (tau - m_threshold) : tau;
  m_haveThreshold = true;
}

json SaeTrainer::extraState() const {
  const torch::Tensor sf = m_sinceFired.to(torch::kCPU).contiguous();
  const int64_t* p = sf.data_ptr<int64_t>();
  return {{"step", m_step},
          {"threshold", m_threshold},
          {"have_threshold", m_haveThreshold},
          {"since_fired", std::vector<int64_t>(p, p + sf.numel())}};
}

void SaeTrainer::restoreExtraState(const json& state) {
  const auto since = state.at("since_fired").get<std::vector<int64_t>>();
  if (static_cast<int64_t>(since.size()) != m_sinceFired.numel())
    throw Error("the checkpoint is of an SAE with " + std::to_string(since.size()) +
                " features, not " + std::to_string(m_sinceFired.numel()));
  m_step = state.at("step").get<int64_t>();
  m_threshold = state.at("threshold").get<double>();
  m_haveThreshold = state.at("have_threshold").get<bool>();
  m_sinceFired = torch::tensor(since, torch::kLong).to(m_sinceFired.device());
}

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

json settingsJson(SaeConfig c) {
  json j;
  forEachSaeSetting(c, [&](const char* key, const auto& v) { j[key] = v; });
  return j;
}

// What the checkpoint was trained on: a changed embeddings.npy makes it void.
json fileStamp(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  return {{"bytes", ec ? 0 : size}, {"modified", ec ? 0 : static_cast<int64_t>(mtime)}};
}

json lastJson(const double last[4]) {
  json j = json::array();
  for (int i = 0; i < 4; ++i) j.push_back(std::isfinite(last[i]) ? json(last[i]) : json(nullptr));
  return j;
}

void lastFromJson(const json& j, double last[4]) {
  for (int i = 0; i < 4; ++i) last[i] = j.at(i).is_number() ? j[i].get<double>() : NAN;
}

// --resume: the interrupted run's settings from its note (WS/checkpoints/sae.json), and the note.
// A setting given now that differs from both the variant's default and the saved value is a
// contradiction and an error; --device and --threads may change.
std::pair<SaeConfig, json> resumedConfig(const SaeConfig& given, const std::string& notePath,
                                         const std::string& ckptPath) {
  if (!fileExists(ckptPath) || !fileExists(notePath))
    throw Error(ckptPath + ": no SAE checkpoint to resume from; run without --resume");
  json note, saved;
  SaeConfig c = given;
  try {
    note = json::parse(readFileText(notePath));
    saved = note.at("settings");
    const json now = settingsJson(given), defaults = settingsJson(saeDefaults(given.variant));
    for (const auto& [key, v] : now.items()) {
      if (v == defaults.at(key) || v == saved.value(key, defaults.at(key))) continue;
      std::string flag = key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      throw Error("--" + flag + " " + (v.is_string() ? v.get<std::string>() : v.dump()) +
                  ": the checkpoint " + ckptPath + " was saved with " +
                  saved.value(key, defaults.at(key)).dump() +
                  "; resume with its settings, or run without --resume to start anew");
    }
    forEachSaeSetting(c, [&](const char* key, auto& v) {
      // A setting added later (precision) is absent from older checkpoints: its default holds.
      if (saved.contains(key)) v = saved.at(key).get<std::decay_t<decltype(v)>>();
    });
  } catch (const json::exception& e) {
    throw Error(notePath + ": unreadable (" + std::string(e.what()) +
                "); delete WS/checkpoints/sae.* and run without --resume");
  }
  validate(c);
  return {c, note};
}

// Saves an SAE run's resumable state: WS/checkpoints/sae.ckpt (the module and Adam, with the
// note) after sae.json (the note alone, readable without LibTorch), every `minutes` or `steps`.
struct SaeCheckpoint {
  std::string ckpt, note;
  double minutes = 5;
  int64_t everySteps = 0;
  json header;              // the settings and the embeddings' stamp
  double priorSeconds = 0;  // spent before a resume
  Clock::time_point start = Clock::now(), lastSave = Clock::now();

  bool due(int64_t stepsDone) const {
    return (everySteps > 0 && stepsDone % everySteps == 0) ||
           secondsSince(lastSave) >= minutes * 60;
  }
  void save(const torch::nn::Module& module, const torch::optim::Optimizer& opt, json position) {
    position.update(header);
    position["seconds"] = priorSeconds + secondsSince(start);
    position["saved"] = isoNow();
    std::error_code ec;
    fs::create_directories(fs::path(ckpt).parent_path(), ec);
    writeFileAtomic(note, position.dump(2) + "\n");
    saveTrainingState(ckpt, module, opt, position);
    lastSave = Clock::now();
  }
  void remove() const {
    std::error_code ec;
    fs::remove(ckpt, ec);
    fs::remove(note, ec);
    fs::remove(fs::path(ckpt).parent_path(), ec);  // only when empty
  }
};

// The modern variants' training, in the scaled space; returns the saved (folded) state dict.
StateDict trainModern(const SaeConfig& cfg, const torch::Tensor& xTrain,
                      const torch::Device& device, JobContext& ctx, LineAppender& log,
                      double last[4], nlohmann::json& extra, SaeCheckpoint& ck, bool resume) {
  const int64_t n = xTrain.size(0), d = xTrain.size(1);
  const bool centre = cfg.variant != "l1";
  const torch::Tensor mu = centre ? xTrain.mean(0) : torch::zeros({d});
  const double meanNorm = (xTrain - mu).norm(2, 1).mean().item<double>();
  const double scale = std::sqrt(static_cast<double>(d)) / std::max(meanNorm, 1e-12);
  const torch::Tensor xs = ((xTrain - mu) * scale).to(device);

  const int64_t batch = std::min<int64_t>(cfg.batch, n);
  const int64_t perEpoch = (n + batch - 1) / batch;
  const int64_t total = cfg.steps > 0 ? cfg.steps : static_cast<int64_t>(cfg.epochs) * perEpoch;
  const int64_t deadAfter = cfg.deadAfter > 0 ? cfg.deadAfter : n;
  SaeTrainer trainer(cfg, d, total, deadAfter);
  trainer.to(device);
  auto initGen = torch::make_generator<at::CPUGeneratorImpl>(cfg.run.seed + 11);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(cfg.run.seed + 7);
  {
    const torch::Tensor pick =
        torch::randperm(n, initGen, torch::TensorOptions().dtype(torch::kLong))
            .slice(0, 0, std::min<int64_t>(n, 8192))
            .to(device);
    trainer.initialise(xs.index_select(0, pick), initGen);
  }

  // Position: the shuffles drawn so far (the last is the current one) and the place in it.
  torch::Tensor perm;
  int64_t pos = n, perms = 0, firstStep = 0;
  const auto longs = torch::TensorOptions().dtype(torch::kLong);
  if (resume) {
    const json note = loadTrainingState(ck.ckpt, *trainer.sae(), trainer.optimizer(), device);
    trainer.restoreExtraState(note.at("trainer"));
    firstStep = note.at("step").get<int64_t>();
    perms = note.at("perms").get<int64_t>();
    pos = note.at("pos").get<int64_t>();
    lastFromJson(note.at("last"), last);
    for (int64_t i = 0; i < perms; ++i) perm = torch::randperm(n, gen, longs);  // replayed
    if (perm.defined()) perm = perm.to(device);
  }
  auto position = [&](int64_t stepsDone) {
    return json{{"step", stepsDone},
                {"perms", perms},
                {"pos", pos},
                {"trainer", trainer.extraState()},
                {"last", lastJson(last)}};
  };

  ctx.beginStage("sae", total, "steps");
  ctx.skip(firstStep);
  int64_t done = firstStep;
  try {
    for (int64_t step = firstStep; step < total; ++step) {
      ctx.checkStop();
      if (pos >= n) {
        perm = torch::randperm(n, gen, longs).to(device);
        pos = 0;
        ++perms;
      }
      const int64_t e = std::min(n, pos + batch);
      const torch::Tensor xb = xs.index_select(0, perm.slice(0, pos, e));
      pos = e;
      const bool report = step % 10 == 0 || step + 1 == total;
      const SaeTrainer::Step st = trainer.step(xb, report);
      done = step + 1;
      if (report) {
        last[0] = st.loss;
        last[1] = st.reconstruction;
        last[2] = cfg.variant == "l1" ? st.sparsity : st.aux;
        last[3] = st.l0;
        if (!std::isfinite(st.loss))
          throw Error("sae: the loss became " + std::to_string(st.loss) + "; try a smaller --lr");
        ctx.advance(1,
                    {{"loss", st.loss},
                     {"reconstruction", st.reconstruction},
                     {"sparsity", st.sparsity},
                     {"aux", st.aux},
                     {"l0", st.l0},
                     {"dead", st.deadFraction}},
                    step);
        log.appendLine(nlohmann::json{{"step", step},
                                      {"loss", st.loss},
                                      {"reconstruction", st.reconstruction},
                                      {"sparsity", st.sparsity},
                                      {"aux", st.aux},
                                      {"l0", st.l0},
                                      {"dead_fraction", st.deadFraction},
                                      {"lr", st.lr},
                                      {"elapsed_s", ctx.timing().elapsed}}
                           .dump());
      } else {
        ctx.advance(1);
      }
      if (done < total && ck.due(done))
        ck.save(*trainer.sae(), trainer.optimizer(), position(done));
    }
  } catch (const Cancelled&) {
    // Ctrl-C or the app's Cancel: keep the work done so far for --resume.
    if (done > firstStep) {
      ck.save(*trainer.sae(), trainer.optimizer(), position(done));
      ctx.log("sae: saved " + ck.ckpt + " at step " + std::to_string(done) +
              "; continue with --resume");
    }
    throw;
  }
  ctx.checkStop();

  // Fold μ, s (and θ) into the reference parameters.
  SparseAutoencoder& sae = trainer.sae();
  sae->to(torch::kCPU);
  torch::NoGradGuard noGrad;
  const bool thresholded = cfg.variant == "topk" || cfg.variant == "batchtopk";
  const double theta = thresholded ? trainer.threshold() : 0.0;
  const torch::Tensor we = sae->weight_encoder * scale;
  const torch::Tensor wd = sae->weight_decoder / scale;
  const torch::Tensor bd = mu + sae->bias_decoder / scale;
  const torch::Tensor be = sae->bias_encoder - theta;
  StateDict sd;
  sd.emplace_back("weight_encoder", fromTorch(we));
  sd.emplace_back("weight_decoder", fromTorch(wd));
  sd.emplace_back("bias_encoder", fromTorch(be));
  sd.emplace_back("bias_decoder", fromTorch(bd));
  sd.emplace_back("threshold", fromTorch(torch::full({cfg.features}, theta, torch::kFloat32)));
  sd.emplace_back("input_mean", fromTorch(mu.to(torch::kFloat32)));
  sd.emplace_back("input_scale", fromTorch(torch::full({1}, scale, torch::kFloat32)));
  extra = {
      {"steps", total},
      {"batch_effective", batch},
      {"lr_effective", saeEffectiveLr(cfg)},
      {"input_scale", scale},
      {"threshold", theta},
      {"dead_after", deadAfter},
      {"encoding", thresholded ? "global threshold (JumpReLU), folded into bias_encoder" : "ReLU"}};
  return sd;
}

}  // namespace

void runSae(const SaeConfig& cfgIn, JobContext& ctx) {
  validate(cfgIn);
  Workspace ws = Workspace::open(cfgIn.workspace, /*create=*/false);
  SaeConfig cfg = cfgIn;
  SaeCheckpoint ck;
  ck.ckpt = ws.path("checkpoints/sae.ckpt");
  ck.note = ws.path("checkpoints/sae.json");
  json resumeNote;
  if (cfg.resume) std::tie(cfg, resumeNote) = resumedConfig(cfgIn, ck.note, ck.ckpt);
  checkPrecisionDevice(cfg.precision, cfg.run);  // a resumed run's saved precision included
  ck.minutes = cfg.checkpointMinutes;
  ck.everySteps = cfg.checkpointSteps;
  runStage(ws, "sae", [&] {
    const auto start = std::chrono::steady_clock::now();
    const std::string started = isoNow();
    ws.requireEmbeddings();  // before the device is set up
    const torch::Device device = setupDevice(cfg.run, &ctx, cfg.precision);
    const ThreadsRestorer restoreThreads{cfg.run.threads};
    // The seed, topk and batchtopk SAEs on the CPU in fp32 split their products over LibTorch's
    // threads themselves (SeedCpuStep, TopkCpuStep); SAESCOPE_SAE_AUTOGRAD=1 runs them through
    // autograd instead (for comparison).
    const bool byHand = writtenOutStep(cfg.variant, productTypeOf(cfg.precision), device);
    const bool seedByHand = byHand && cfg.variant == "seed";
    if (byHand)
      useSingleThreadedBlas();
    else if (cfg.precision == "fp32")  // bf16 products run in oneDNN on LibTorch's own pool
      preferBlasThreads(cfg.run, device);
    torch::manual_seed(cfg.run.seed);

    torch::Tensor x = loadUnitEmbeddings(ws);
    const int64_t nAll = x.size(0), d = x.size(1);
    const SaeSplit split = saeSplit(ws, nAll);
    if (cfg.holdout) {
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < nAll; ++i)
        if (!split.heldOut[i]) rows.push_back(i);
      if (rows.empty()) throw Error("sae: the held-out split leaves no vectors to train on");
      x = x.index_select(0, torch::tensor(rows, torch::kLong));
    }
    const int64_t n = x.size(0);
    const std::string name = cfg.name.empty() ? saeRunName(cfg) : cfg.name;

    ck.header = {{"settings", settingsJson(cfg)}, {"embeddings", fileStamp(ws.embeddingsPath())}};
    const std::string logPath = ws.path("logs/sae.jsonl");
    std::error_code ec;
    if (cfg.resume) {
      if (resumeNote.value("embeddings", json()) != ck.header["embeddings"])
        throw Error(ws.embeddingsPath() + ": changed since the checkpoint " + ck.ckpt +
                    " was saved; run without --resume to start anew");
      ck.priorSeconds = resumeNote.value("seconds", 0.0);
      truncateStepLog(logPath, resumeNote.at("step").get<int64_t>());
      ctx.log("sae: resuming " + ck.ckpt + " ('" + name + "') at step " +
              std::to_string(resumeNote.at("step").get<int64_t>()));
    } else {
      fs::remove(logPath, ec);
      if (fileExists(ck.ckpt))
        ctx.log("note: " + ck.ckpt +
                " holds an interrupted SAE run; this run starts anew (pass "
                "--resume to continue that one instead)");
    }
    LineAppender log(logPath);

    double last[4] = {NAN, NAN, NAN, NAN};
    StateDict sd;
    json extra = json::object();
    if (cfg.variant == "seed") {
      x = x.to(device);
      SparseAutoencoder sae(d, cfg.features);
      sae->productType = productTypeOf(cfg.precision);
      sae->to(device);
      torch::optim::Adam opt(sae->parameters(),
                             torch::optim::AdamOptions(cfg.lr).weight_decay(cfg.weightDecay));

      // Position: the epoch and the vectors of it already done (one shuffle per epoch).
      int epoch0 = 0;
      int64_t offset0 = 0, step = 0;
      if (cfg.resume) {
        const json note = loadTrainingState(ck.ckpt, *sae, opt, device);
        epoch0 = note.at("epoch").get<int>();
        offset0 = note.at("offset").get<int64_t>();
        step = note.at("step").get<int64_t>();
        lastFromJson(note.at("last"), last);
      }
      const int64_t firstStep = step;
      json position;
      ctx.beginStage("sae", n * cfg.epochs, "vectors");
      ctx.skip(epoch0 * n + offset0);
      auto gen = torch::make_generator<at::CPUGeneratorImpl>(cfg.run.seed + 7);
      const auto longs = torch::TensorOptions().dtype(torch::kLong);
      for (int epoch = 0; epoch < epoch0; ++epoch) torch::randperm(n, gen, longs);  // replayed
      std::optional<SeedCpuStep> byHand;
      if (seedByHand) {
        x = x.contiguous();
        byHand.emplace(sae, cfg.l1);
      }
      try {
        for (int epoch = epoch0; epoch < cfg.epochs; ++epoch) {
          const torch::Tensor perm = torch::randperm(n, gen, longs).to(device);
          for (int64_t s = epoch == epoch0 ? offset0 : 0; s < n; s += cfg.batch) {
            ctx.checkStop();
            const int64_t e = std::min(n, s + cfg.batch);
            const bool report = device.is_cpu() || step % 20 == 0 || e == n;
            const SeedStepLosses loss =
                byHand ? byHand->step(x, perm.slice(0, s, e), opt)
                       : seedAutogradStep(sae, x.index_select(0, perm.slice(0, s, e)), cfg.l1, opt,
                                          report);
            if (report) {
              last[0] = loss.total;
              last[1] = loss.reconstruction;
              last[2] = loss.sparsity;
              last[3] = loss.l0;
              if (!std::isfinite(last[0]))
                throw Error("sae: the loss became " + std::to_string(last[0]) +
                            "; try a smaller --lr");
              ctx.advance(e - s,
                          {{"loss", last[0]},
                           {"reconstruction", last[1]},
                           {"sparsity", last[2]},
                           {"l0", last[3]}},
                          step);
              log.appendLine(json{
                  {"step", step},
                  {"epoch", epoch},
                  {"elapsed_s", ctx.timing().elapsed},
                  {"loss", last[0]},
                  {"reconstruction", last[1]},
                  {"sparsity", last[2]},
                  {"l0",
                   last[3]}}.dump());
            } else {
              ctx.advance(e - s);
            }
            ++step;
            position = {{"epoch", e == n ? epoch + 1 : epoch},
                        {"offset", e == n ? 0 : e},
                        {"step", step},
                        {"last", lastJson(last)}};
            if (ck.due(step) && !(e == n && epoch + 1 == cfg.epochs)) ck.save(*sae, opt, position);
          }
        }
      } catch (const Cancelled&) {
        if (step > firstStep) {  // Ctrl-C or the app's Cancel: keep the work for --resume
          ck.save(*sae, opt, position);
          ctx.log("sae: saved " + ck.ckpt + " at step " + std::to_string(step) +
                  "; continue with --resume");
        }
        throw;
      }
      ctx.checkStop();
      sae->to(torch::kCPU);
      sd.emplace_back("weight_encoder", fromTorch(sae->weight_encoder));
      sd.emplace_back("weight_decoder", fromTorch(sae->weight_decoder));
      sd.emplace_back("bias_encoder", fromTorch(sae->bias_encoder));
      sd.emplace_back("bias_decoder", fromTorch(sae->bias_decoder));
    } else {
      sd = trainModern(cfg, x, device, ctx, log, last, extra, ck, cfg.resume);
    }

    // Dead features over the training vectors, for the manifest.
    const int64_t dead = countDeadFeatures(toTorch(*findTensor(sd, "weight_encoder")),
                                           toTorch(*findTensor(sd, "bias_encoder")),
                                           toTorch(*findTensor(sd, "bias_decoder")), x);

    const std::string runFile = "saes/" + name + ".pt";
    fs::create_directories(ws.path("saes"), ec);
    writeTorchCheckpoint(ws.path(runFile), sd);
    writeTorchCheckpoint(ws.saePath(), sd);
    retireFeatureIndex(ws);
    json metrics;
    try {
      metrics = evaluateSaeFile(ws, ws.path(runFile), ctx);
    } catch (const Error& e) {
      ctx.log(std::string("note: sae-eval after training failed: ") + e.what());
    }
    const double secs = ck.priorSeconds + secondsSince(start);
    const json final = {
        {"loss", last[0]}, {"reconstruction", last[1]}, {"sparsity", last[2]}, {"l0", last[3]}};
    ws.updateManifest([&](json& m) {
      json stage = {
          {"status", "done"},
          {"config", toJson(cfg)},
          {"started", started},
          {"finished", isoNow()},
          {"seconds", secs},
          {"vectors", n},
          {"input_dim", d},
          {"device", describeDevice(cfg.run)},
          {"final", final},
          {"dead_features", dead},
          {"summary", std::to_string(cfg.features) + " features, " +
                          (cfg.variant == "seed" ? std::to_string(cfg.epochs) + " epochs, "
                                                 : cfg.variant + ", ") +
                          formatDuration(secs)}};
      if (cfg.variant != "seed") stage["name"] = name;
      m["stages"]["sae"] = stage;
      json run = {
          {"variant", cfg.variant},
          {"file", runFile},
          {"config", toJson(cfg)},
          {"created", isoNow()},
          {"seconds", secs},
          {"vectors", n},
          {"trained_on", cfg.holdout ? "train split (held-out split excluded)" : "all vectors"},
          {"split",
           {{"kind", split.kind}, {"held_out", split.numHeldOut}, {"source", split.source}}},
          {"final", final},
          {"dead_features_train", dead},
          {"training", extra}};
      if (!metrics.is_null()) run["metrics"] = metrics;
      m["sae_runs"][name] = run;
      m["current_sae"] = name;
    });
    ck.remove();  // the run is done: nothing left to resume
    ctx.log("sae: done in " + formatDuration(secs) + ", L0 " + std::to_string(last[3]) + ", " +
            std::to_string(dead) + " dead of " + std::to_string(cfg.features) + "; wrote " +
            ws.saePath() + " (run '" + name + "')");
  });
}

}  // namespace engine
