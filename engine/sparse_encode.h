// engine/sparse_encode.h — INTERNAL to the engine's LibTorch translation units: an SAE's
// activations f = ReLU(x̄ W_e + b_e) for the feature index, kept as their nonzero values only.
//
// The values are the fp32 product's. How they are found depends on the CPU:
// - Full: one fp32 GEMM per block of rows, then the nonzeros picked out.
// - Screened (CPUs with bf16 matrix instructions: AMX, AVX512-BF16): a bf16 product first, about
//   4x faster, bounds every element. An element is skipped only when its bound proves the fp32
//   pre-activation negative (see sparse_encode.cpp for the bound). Every other element, a few per
//   cent of a trained SAE's, is computed as an fp32 dot product. So the screening changes what is
//   computed, never which values come out (up to fp32 summation order, as between two BLASes).
//   When a block turns out too dense for screening to pay (a ReLU SAE with many active features),
//   the encoder switches to Full for the rest.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "simd.h"

namespace engine {

// Rows of SAE activations: per row its nonzero values (positive, or NaN as ReLU passes it on) in
// increasing feature order, and the L2 norm of the whole row.
struct ActivationRows {
  std::vector<int64_t> start{0};  // row r holds entries [start[r], start[r + 1])
  std::vector<int32_t> feature;
  std::vector<float> value;
  std::vector<float> norm;  // [rows]
  int64_t rows() const { return static_cast<int64_t>(norm.size()); }
  void clear();
};

enum class EncodeMethod { Auto, Full, Screened };
// SAESCOPE_INDEX_SCREEN: "0"/"off" Full, "1"/"on" Screened (even without bf16 instructions: slow,
// for tests), unset or "auto": Screened on CPUs with bf16 instructions. Anything else throws.
EncodeMethod encodeMethodFromEnv();
// True on x86-64 CPUs with AMX-BF16 or AVX512-BF16.
bool cpuHasBf16();

class SparseEncoder {
 public:
  // we: [D, F]; be: [F] (CPU float).
  SparseEncoder(const torch::Tensor& we, const torch::Tensor& be, EncodeMethod method);
  // xc: [R, D] CPU float, the rows' x̄ (L2-normalised embeddings minus b_d). Appends R rows.
  void encode(const torch::Tensor& xc, ActivationRows& out);
  bool screening() const { return m_screen; }
  // Elements computed in fp32 by dot products after screening, and elements screened.
  int64_t screenedComputed() const { return m_computed; }
  int64_t screenedElements() const { return m_screened; }

 private:
  bool screenBlock(const torch::Tensor& x, ActivationRows& out);
  void fullBlock(const torch::Tensor& x, ActivationRows& out);
  // Rows' kept entries (m_idx/m_val, m_count per row) appended to out.
  void append(int64_t rows, const std::vector<double>& sumSq, ActivationRows& out) const;

  torch::Tensor m_we, m_be;  // [D, F], [F] float
  int64_t m_d, m_f, m_blockRows;
  bool m_screen;
  torch::Tensor m_wb;          // [D, F] bf16, for torch's bf16 product (without AMX)
  std::vector<uint16_t> m_wp;  // W_e in bf16 as AMX tiles (with AMX)
  std::vector<uint16_t> m_xb;  // a block's x̄ in bf16, rows padded to m_kpad
  int64_t m_kpad = 0;
  std::vector<float> m_wt;       // [F, D] W_eᵀ
  std::vector<float> m_marginW;  // [F] per-feature factor of the row norm in the bound
  std::vector<float> m_biasUp;   // [F] b_e rounded up by the bound's absolute terms
  std::vector<int32_t> m_idx;    // [blockRows, F] per row: candidate, then kept, features
  std::vector<float> m_val;      // [blockRows, F] their values
  std::vector<int64_t> m_count;  // [blockRows]
  int64_t m_computed = 0, m_screened = 0;
};

}  // namespace engine
