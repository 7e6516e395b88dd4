// engine/sae.h — INTERNAL (LibTorch): the reference sparse autoencoder of DESIGN.md.
#pragma once
#include <torch/torch.h>

namespace engine {

// x̄ = x − b_d; f = ReLU(x̄ W_e + b_e); x̂ = f W_d + b_d. Parameter names are the reference's.
struct SparseAutoencoderImpl : torch::nn::Module {
  SparseAutoencoderImpl(int64_t inputDim, int64_t features);
  // x: [B, D] → f: [B, F]
  torch::Tensor encode(const torch::Tensor& x);
  // f: [B, F] → x̂: [B, D]
  torch::Tensor decode(const torch::Tensor& f);

  torch::Tensor weight_encoder, weight_decoder, bias_encoder, bias_decoder;
};
TORCH_MODULE(SparseAutoencoder);

// The reference loss: ‖X − X̂‖₂ over the whole batch (not squared, not averaged) + λ Σ|F|.
struct SaeLoss {
  torch::Tensor reconstruction, sparsity, total;
};
SaeLoss saeLoss(const torch::Tensor& x, const torch::Tensor& xHat, const torch::Tensor& f,
                double l1);

// Row-wise L2 normalisation as torch.nn.functional.normalize (eps 1e-12).
torch::Tensor l2normalizeRows(const torch::Tensor& x);

}  // namespace engine
