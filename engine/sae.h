// engine/sae.h — INTERNAL (LibTorch): the sparse autoencoders. `seed` is the reference of
// DESIGN.md; `l1`, `topk` and `batchtopk` are the modern variants (issue 5).
//
// Thread-safety: plain functions on tensors; an SaeTrainer is used by one thread.
//
// Saved form (sae.pt, saes/<name>.pt): the reference keys weight_encoder [D, F], weight_decoder
// [F, D], bias_encoder [F], bias_decoder [D], so that the reference encode
//   f_ref = ReLU((x − b_d) W_e + b_e),  x the L2-normalised embedding,
// gives the variant's features. The modern variants train on x' = (x − μ)·s (topk/batchtopk: μ the
// training mean, s = √D / mean‖x − μ‖; l1: μ = 0, s = √D) and fold μ and s into the weights:
//   W_e = s·W_e', W_d = W_d'/s, b_d = μ + b_d'/s.
// topk/batchtopk encode a single image with the learned global threshold θ (JumpReLU:
// f = pre·1[pre > θ]); the saved b_e is b_e' − θ, so f_ref has exactly the variant's support and
// f = f_ref + θ·1[f_ref > 0]. Extra keys: "threshold" [F] (θ), "input_mean" [D] (μ),
// "input_scale" [1] (s). The seed variant writes the four reference keys only.
#pragma once
#include <torch/torch.h>

#include "pipeline.h"

namespace engine {

class Workspace;

// x̄ = x − b_d; f = ReLU(x̄ W_e + b_e); x̂ = f W_d + b_d. Parameter names are the reference's.
struct SparseAutoencoderImpl : torch::nn::Module {
  SparseAutoencoderImpl(int64_t inputDim, int64_t features);
  // x: [B, D] → f: [B, F]
  torch::Tensor encode(const torch::Tensor& x);
  // Pre-activations (x − b_d) W_e + b_e: [B, F]
  torch::Tensor preActivation(const torch::Tensor& x);
  // f: [B, F] → x̂: [B, D]
  torch::Tensor decode(const torch::Tensor& f);

  torch::Tensor weight_encoder, weight_decoder, bias_encoder, bias_decoder;
  // The type the products run in: kFloat32 (the reference), or kBFloat16 (--precision bf16:
  // operands rounded to bf16, products accumulated and returned in fp32, biases added in fp32).
  at::ScalarType productType = at::kFloat;
};
TORCH_MODULE(SparseAutoencoder);

// The reference loss: ‖X − X̂‖₂ over the whole batch (not squared, not averaged) + λ Σ|F|.
struct SaeLoss {
  torch::Tensor reconstruction, sparsity, total;
};
SaeLoss saeLoss(const torch::Tensor& x, const torch::Tensor& xHat, const torch::Tensor& f,
                double l1);

// The reference SAE's training step (the seed variant), as four losses.
struct SeedStepLosses {
  double total = 0, reconstruction = 0, sparsity = 0, l0 = 0;  // l0: mean active features a row
};
// One step through autograd, any device and product type: the reference loss on xb [B, D],
// backward, `opt.step()`. Reads the losses back only when `report` (else all 0).
SeedStepLosses seedAutogradStep(SparseAutoencoder& sae, const torch::Tensor& xb, double l1,
                                torch::optim::Optimizer& opt, bool report);

// The same step on the CPU in fp32 with its backward pass written out, for speed (the SAE epoch
// of the performance issue is this loop): the batch is split by rows over LibTorch's threads,
// each running its own single-threaded products with the element-wise work fused after them
// while the rows are in cache; the weight gradients are split by output rows. With
// r = X̂ − X, L = ‖r‖ + λ Σ f:
//   ∂L/∂W_d = fᵀ r/‖r‖,  G = (r/‖r‖ W_dᵀ + λ) ⊙ 1[f > 0],  ∂L/∂W_e = X̄ᵀ G,  ∂L/∂b_e = Σ_rows G,
//   ∂L/∂b_d = Σ_rows r/‖r‖ − W_e ∂L/∂b_e
// (the last term is one matrix-vector product, where autograd multiplies G by W_eᵀ in full: five
// matrix products a step instead of six). Equal to seedAutogradStep up to fp32 summation order
// (tests/test_sae.cpp checks both against Python's autograd). The caller sets the BLAS to one
// thread (useSingleThreadedBlas). Not thread-safe; reuses its buffers between steps.
class SeedCpuStep {
 public:
  SeedCpuStep(SparseAutoencoder sae, double l1) : m_sae(std::move(sae)), m_l1(l1) {}
  // The losses of the rows `rows` [B] (int64) of x [N, D] (contiguous fp32), and the parameters'
  // gradients in their .grad().
  SeedStepLosses gradients(const torch::Tensor& x, const torch::Tensor& rows);
  // gradients(), then the optimiser's step (fusedAdamStep when it can, else opt.step()).
  SeedStepLosses step(const torch::Tensor& x, const torch::Tensor& rows,
                      torch::optim::Optimizer& opt);
  // How many of the steps took fusedAdamStep.
  int64_t fusedAdamSteps() const { return m_fusedAdamSteps; }

 private:
  int64_t m_fusedAdamSteps = 0;

  SparseAutoencoder m_sae;
  double m_l1;
  torch::Tensor m_xbar, m_f, m_r, m_g;             // [B, D], [B, F], [B, D], [B, F] workspaces
  torch::Tensor m_gWe, m_gWd, m_gBe, m_gBd, m_wb;  // gradients; W_e ∂L/∂b_e
};

// The n-th largest of max(v, 0) over `count` floats (n >= 1; 0 when fewer than n are positive),
// exactly. First (`sampleFirst`) a bar from a sample of 16,384 values that somewhat more than n
// should pass, and one pass gathering the values above it; where fewer than n pass, a radix
// select: one pass counts the positive values by the top bits of their bit patterns (which order
// as the values do), a second gathers the bucket holding the n-th. Split over LibTorch's threads.
// batchThreshold's CPU path (torch's topk over B·F values took 200 ms at 4,096 x 4,096).
float kthLargestPositive(const float* v, int64_t count, int64_t n, bool sampleFirst = true);

// The topk / batchtopk training step (SaeTrainer's, on the CPU in fp32) with its backward pass
// written out over the sparse activations, where autograd multiplies dense [B, F] matrices: of
// the forward products only the encoder's X̄ W_e is dense; x̂ sums k decoder rows a row, and the
// gradients are gathered per activation (∂L/∂f_ij = ∂L/∂x̂_i · W_d[j]) and summed per feature
// (∂L/∂W_d[j], ∂L/∂W_e[:, j], ∂L/∂b_e[j], in row order: the same bits run to run). AuxK
// likewise over the dead latents. With r = x̂ − x, L = mean(r²) + α mean((ê + r)²):
//   ∂L/∂b_d = Σ_rows ∂L/∂x̂ − W_e ∂L/∂b_e.
// Equal to the autograd step up to fp32 summation order and ties among pre-activations
// (tests/test_sae.cpp checks both against each other and Python's oracle). The rows are split
// over LibTorch's threads, each running its own products: the caller sets the BLAS to one thread
// (useSingleThreadedBlas). Not thread-safe; reuses its buffers between steps.
class TopkCpuStep {
 public:
  struct Result {
    double reconstruction = 0, aux = 0, l0 = 0;
    double threshold = 0;  // the batch threshold: the (B·k)-th largest ReLU(pre)
    torch::Tensor fired;   // [F] bool: the features active in some row
  };
  TopkCpuStep(SparseAutoencoder sae, bool batchTopk, int64_t k, int64_t kAux, double auxAlpha);
  // The losses of the batch x [B, D] (contiguous fp32) given the dead latents `dead` [F] (bool),
  // and the parameters' gradients in their .grad().
  Result gradients(const torch::Tensor& x, const torch::Tensor& dead);

 private:
  SparseAutoencoder m_sae;
  bool m_batchTopk;
  int64_t m_k, m_kAux;
  double m_auxAlpha;
  torch::Tensor m_pre, m_xbar, m_r, m_e;             // [B, F], [B, D] x3 workspaces
  torch::Tensor m_gWe, m_gWeT, m_gWd, m_gBe, m_gBd;  // gradients (m_gWeT: [F, D])
};

// Whether `variant`'s training step runs written out (SeedCpuStep for seed, TopkCpuStep for topk
// and batchtopk): on the CPU with fp32 products, unless SAESCOPE_SAE_AUTOGRAD=1 asks for
// autograd (for comparison). l1 always runs through autograd.
bool writtenOutStep(const std::string& variant, at::ScalarType productType,
                    const torch::Device& device);

// a·b with the operands rounded to `type` and the result in fp32 (a plain mm for kFloat).
// Differentiable: the backward products run in `type` too.
torch::Tensor productIn(const torch::Tensor& a, const torch::Tensor& b, at::ScalarType type);
// at::kBFloat16 for --precision bf16, else at::kFloat.
at::ScalarType productTypeOf(const std::string& precision);

// Row-wise L2 normalisation as torch.nn.functional.normalize (eps 1e-12).
torch::Tensor l2normalizeRows(const torch::Tensor& x);
// The workspace's embeddings.npy as the SAEs' input: fp32 [N, D] with unit rows, normalised in
// place over the loaded bytes (one 415 MB copy at CelebA's size, not three). Throws engine::Error
// naming the file when it is missing or not 2-D.
torch::Tensor loadUnitEmbeddings(const Workspace& ws);

// ---- building blocks of the modern variants (each checked against tests/python/sae_oracle.py)

// Weiszfeld iterations for the geometric median of the rows of x [N, D] (start: the mean).
torch::Tensor geometricMedian(const torch::Tensor& x, int iterations = 8);
// TopK: per row keep the k largest pre-activations, then ReLU; others 0. [B, F] → [B, F].
torch::Tensor topkActivation(const torch::Tensor& pre, int64_t k);
// BatchTopK: keep the B·k largest values of ReLU(pre) over the whole batch; others 0.
torch::Tensor batchTopkActivation(const torch::Tensor& pre, int64_t k);
// The batch threshold: the (B·k)-th largest value of ReLU(pre) over the batch (no grad).
double batchThreshold(const torch::Tensor& pre, int64_t k);
// JumpReLU with a global threshold: pre·1[pre > θ]. θ: scalar or [F].
torch::Tensor thresholdActivation(const torch::Tensor& pre, const torch::Tensor& theta);
// AuxK: the top-kAux dead latents (ReLU'd pre-activations, others masked) reconstruct the
// residual (no decoder bias); returns mean((ê − residual)²). dead: [F] bool. Zero when none dead.
// The product ê = z W_d runs in `productType` (see SparseAutoencoderImpl).
torch::Tensor auxkLoss(const torch::Tensor& pre, const torch::Tensor& residual,
                       const torch::Tensor& weightDecoder, const torch::Tensor& dead, int64_t kAux,
                       at::ScalarType productType = at::kFloat);
// Removes from the decoder gradient its component parallel to each (unit) decoder row.
void removeParallelGradient(const torch::Tensor& weightDecoder);
// Scales each decoder row to unit L2 norm (in place, no grad).
void normaliseDecoderRows(const torch::Tensor& weightDecoder);
// How many features never fire, f = ReLU((x − b_d) W_e + b_e) ≤ 0, on any row of x [N, D].
// Each block of rows is encoded for the features that have not fired yet only: most fire in the
// first block, and the rest of the pass costs a sliver of the full product (850 GFLOP for 4,096
// features at CelebA's size).
int64_t countDeadFeatures(torch::Tensor we, torch::Tensor be, const torch::Tensor& bd,
                          const torch::Tensor& x);
// Learning-rate factor at `step` of `total`: linear warm-up over the first `warmup` fraction,
// linear decay to 0 over the last `decay` fraction, 1 in between.
double lrFactor(int64_t step, int64_t total, double warmup, double decay);

// One modern SAE under training, in the scaled input space.
class SaeTrainer {
 public:
  struct Step {
    double loss = 0, reconstruction = 0, sparsity = 0, aux = 0, l0 = 0, deadFraction = 0, lr = 0;
  };
  // totalSteps drives the schedules; deadAfter: vectors without firing until a latent is dead.
  SaeTrainer(const SaeConfig& cfg, int64_t inputDim, int64_t totalSteps, int64_t deadAfter);
  // Initialisation: decoder rows random directions (norm 1, l1: cfg.decoderInitNorm) drawn from
  // `gen`, W_e = W_dᵀ, b_e = 0; b_d = geometric median of `sample` (topk/batchtopk) or 0 (l1).
  void initialise(const torch::Tensor& sample, at::Generator gen);
  // One optimiser step on xb [B, D] (scaled inputs). Reads back scalars only when `report`.
  Step step(const torch::Tensor& xb, bool report);
  // Features of xb as the trained variant encodes them (topk/batchtopk: per-batch rule).
  torch::Tensor features(const torch::Tensor& xb);

  SparseAutoencoder& sae() { return m_sae; }
  double threshold() const { return m_threshold; }
  const torch::Tensor& sinceFired() const { return m_sinceFired; }  // [F] int64 vectors
  torch::optim::Optimizer& optimizer() { return *m_opt; }           // after initialise()
  // The resumable state beside the module and the optimiser (step, threshold, firing counters),
  // and back onto the trainer's device. Throws engine::Error when it does not fit this trainer.
  nlohmann::json extraState() const;
  void restoreExtraState(const nlohmann::json& state);
  void to(const torch::Device& device);
  // Whether step() runs TopkCpuStep (decided at the first step).
  bool writtenOut() const { return m_hand != nullptr; }

 private:
  // The step's gradients through autograd, its losses into `s` when `report`; returns the
  // features active in some row of xb.
  torch::Tensor autogradGradients(const torch::Tensor& xb, bool report, Step& s);
  // The global threshold's running average takes in a batch threshold (topk / batchtopk).
  void updateThreshold(double tau);

  SaeConfig m_cfg;
  int64_t m_total, m_deadAfter, m_step = 0;
  SparseAutoencoder m_sae;
  std::unique_ptr<torch::optim::Adam> m_opt;
  torch::Tensor m_sinceFired;
  double m_threshold = 0;
  bool m_haveThreshold = false;
  // topk / batchtopk on the CPU in fp32 (unless SAESCOPE_SAE_AUTOGRAD=1): the written-out step.
  std::unique_ptr<TopkCpuStep> m_hand;
  bool m_handDecided = false;
};

}  // namespace engine
