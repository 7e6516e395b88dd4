#include "resnet.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "cpu_kernels.h"
#include "torch_util.h"
#include "winograd.h"

namespace nn = torch::nn;

namespace engine {

namespace {
// The engine's own CPU kernels, unless SAESCOPE_TORCH_KERNELS is set (torch's everywhere).
bool ownCpuKernels() {
  static const bool own = std::getenv("SAESCOPE_TORCH_KERNELS") == nullptr;
  return own;
}

// ---- The stem's max pooling (3x3, stride 2, padding 1) on the CPU in fp32 ----------------------
// LibTorch 1.13's NCHW max pooling took 10-25 ms a call on a [32, 64, 32, 32] batch and 160-270 ms
// on [32, 64, 112, 112] here (one thread: 19-25 and 250-270 ms); kernels::maxPool3x3s2Plane gives
// the same values and indices, plane by plane, in vector lanes (2.6 and 26 ms on one thread).
// Channels-last (224 px), torch's pooling took 35 ms a call on [32, 64, 112, 112] (two threads)
// and its backward zero-fills the 103 MB gradient before scattering into it; the engine's runs
// vectors of channels and gathers each input's gradient once.

bool channelsLastOnly(const torch::Tensor& x) {  // channels-last, and not NCHW-contiguous too
  return !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// x: [N, C, H, W] float on the CPU, contiguous NCHW with W even, or channels-last (any W).
// idx (optional): the argmax of each output within its plane, h*W + w, as torch's
// max_pool2d_with_indices gives it (in int32), in x's layout.
torch::Tensor stemMaxPoolForward(const torch::Tensor& x, torch::Tensor* idx) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = kernels::pooled3x3s2(h), ow = kernels::pooled3x3s2(w);
  const bool cl = channelsLastOnly(x);
  const auto layout = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  torch::Tensor y = torch::empty({n, c, oh, ow}, x.options().memory_format(layout));
  torch::Tensor ind;
  if (idx)
    ind = torch::empty({n, c, oh, ow}, x.options().dtype(torch::kInt32).memory_format(layout));
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  int32_t* outIdx = idx ? ind.data_ptr<int32_t>() : nullptr;
  if (cl) {  // images x output rows
    at::parallel_for(0, n * oh, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t / oh, r = t % oh;
        kernels::maxPool3x3s2ChannelsLast(in + i * h * w * c, h, w, c, r, r + 1,
                                          out + i * oh * ow * c,
                                          outIdx ? outIdx + i * oh * ow * c : nullptr);
      }
    });
  } else {
    at::parallel_for(0, n * c, 1, [&](int64_t p0, int64_t p1) {
      std::vector<float> v(h * ow);
      std::vector<int32_t> pos(h * ow);
      for (int64_t p = p0; p < p1; ++p)
        kernels::maxPool3x3s2Plane(in + p * h * w, h, w, out + p * oh * ow,
                                   outIdx ? outIdx + p * oh * ow : nullptr, v.data(), pos.data());
    });
  }
  if (idx) *idx = ind;
  return y;
}

torch::Tensor stemMaxPoolBackward(const torch::Tensor& gradOut, const torch::Tensor& idx, int64_t h,
                                  int64_t w) {
  const bool cl = channelsLastOnly(idx);
  const auto layout = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const torch::Tensor g = gradOut.contiguous(layout);
  const int64_t n = g.size(0), c = g.size(1), oh = g.size(2), ow = g.size(3);
  torch::Tensor gin = torch::empty({n, c, h, w}, g.options().memory_format(layout));
  const float* gp = g.data_ptr<float>();
  const int32_t* ip = idx.data_ptr<int32_t>();
  float* dst = gin.data_ptr<float>();
  if (cl) {  // images x input rows
    at::parallel_for(0, n * h, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t / h, r = t % h;
        kernels::maxPool3x3s2ChannelsLastBackward(gp + i * oh * ow * c, ip + i * oh * ow * c, h, w,
                                                  c, r, r + 1, dst + i * h * w * c);
      }
    });
  } else {
    at::parallel_for(0, n * c, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        kernels::maxPoolBackwardPlane(gp + p * oh * ow, ip + p * oh * ow, oh * ow, dst + p * h * w,
                                      h * w);
    });
  }
  return gin;
}

struct StemMaxPool : torch::autograd::Function<StemMaxPool> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    torch::Tensor idx;
    torch::Tensor y = stemMaxPoolForward(x, &idx);
    ctx->save_for_backward({idx});
    ctx->saved_data["h"] = x.size(2);
    ctx->saved_data["w"] = x.size(3);
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const torch::Tensor idx = ctx->get_saved_variables()[0];
    return {stemMaxPoolBackward(grads[0], idx, ctx->saved_data["h"].toInt(),
                                ctx->saved_data["w"].toInt())};
  }
};

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}

// ---- 3x3 convolutions over maps of at most 2x2 positions, on the CPU in fp32 --------------------
// At 64 px ResNet18's last stage runs on 2x2 maps, where oneDNN's convolutions reach a third of the
// CPU's speed: 17-20 ms a forward and backward of a 512-channel layer on a batch of 32 (a quarter
// of a fine-tuning step for its three such layers, each run twice). Every output position sees
// every input position there, so the convolution is one product with the weight laid out over
// the positions (kernels::tapMatrix): y = x · bigᵀ, dx = dy · big, and dW from im2col columns.

// big for `weight` over h x w maps, rebuilt only when the weight changed.
const torch::Tensor& tapMatrixOf(const torch::Tensor& weight, int64_t h, int64_t w,
                                 ConvCache& cache) {
  const int64_t version = weight._version();
  if (cache.matrix.defined() && cache.data == weight.data_ptr() && cache.version == version &&
      cache.h == h && cache.w == w)
    return cache.matrix;
  const int64_t co = weight.size(0), ci = weight.size(1), positions = h * w;
  // A normal tensor even when built under InferenceMode (embedding): autograd may save it later,
  // if the same module trains.
  c10::InferenceMode normalTensor(false);
  torch::Tensor big =
      torch::empty({co * positions, ci * positions}, weight.options().requires_grad(false));
  const float* src = weight.data_ptr<float>();
  float* dst = big.data_ptr<float>();
  at::parallel_for(0, co, 16,
                   [&](int64_t o0, int64_t o1) { kernels::tapMatrix(src, ci, h, w, o0, o1, dst); });
  cache.matrix = big;
  cache.data = weight.data_ptr();
  cache.version = version;
  cache.h = h;
  cache.w = w;
  return cache.matrix;
}

// y [n, co, h, w] = x · bigᵀ over the flattened maps.
torch::Tensor smallMapProduct(const torch::Tensor& x, const torch::Tensor& big, int64_t co) {
  const int64_t n = x.size(0), positions = x.size(2) * x.size(3);
  torch::Tensor y = torch::empty({n, co, x.size(2), x.size(3)}, x.options());
  splitMm(y.view({n, co * positions}), x.view({n, x.size(1) * positions}), big.t(), 1);
  return y;
}

struct SmallMapConvFn : torch::autograd::Function<SmallMapConvFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& big) {
    ctx->save_for_backward({x, big});
    ctx->saved_data["co"] = weight.size(0);
    return smallMapProduct(x, big, weight.size(0));
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& big = saved[1];
    const int64_t n = x.size(0), ci = x.size(1), h = x.size(2), w = x.size(3), positions = h * w;
    const int64_t co = ctx->saved_data["co"].toInt();
    const torch::Tensor g = grads[0].contiguous();
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty_like(x);
      splitMm(dx.view({n, ci * positions}), g.view({n, co * positions}), big, 1);
    }
    if (ctx->needs_input_grad(1)) {
      torch::Tensor cols = torch::empty({n * positions, ci * 9}, x.options());
      const float* xp = x.data_ptr<float>();
      float* cp = cols.data_ptr<float>();
      at::parallel_for(0, n, 1, [&](int64_t n0, int64_t n1) {
        kernels::smallMapColumns(xp, ci, h, w, n0, n1, cp);
      });
      // dy as [(image, position), co]: a small transpose (n*P*co floats).
      const torch::Tensor gp =
          g.view({n, co, positions}).transpose(1, 2).reshape({n * positions, co});
      dw = torch::empty({co, ci, 3, 3}, x.options());
      splitMm(dw.view({co, ci * 9}), gp.t(), cols, 0);
    }
    return {dx, dw, torch::Tensor()};
  }
};

// ---- 3x3 convolutions through oneDNN's Winograd kernels, on the CPU in fp32 ---------------------
// oneDNN's direct kernels (what LibTorch runs) took about 75 % of a fine-tuning step at 224 px;
// Winograd's F(4x4, 3x3) needs a quarter of their multiplications. Where maps are at least 7x7
// (on smaller ones the kernels ran slower than the direct ones where measured: 4x4 and 6x6 with
// 256 channels, 5x5 with 512), forward, backward data and backward weights of one layer took, at
// 224 px and batch 32 on two Zen 5 cores, 33 instead of 52 ms (64 channels, 56x56), 30 instead of
// 47 (128, 28x28), 25 instead of 43 (256, 14x14) and 26 instead of 42 (512, 7x7), maps reordered
// included. The kernels' own weight layouts (the transformed taps, four times the weight's size)
// are packed once per weight version and kept with the layer (ConvCache).
constexpr int64_t kWinogradMinSide = 7;

// x: NCHW-contiguous or channels-last.
winograd::Shape winogradShape(const torch::Tensor& x, int64_t co) {
  return {x.size(0), x.size(1), co, x.size(2), x.size(3), channelsLastOnly(x)};
}

at::MemoryFormat layoutOf(const winograd::Shape& s) {
  return s.channelsLast ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The weight packed for the forward kernel (and, with backward, for the backward-data one), kept
// while the weight is unchanged. A repack makes new tensors: a graph recorded before keeps the
// packing it was recorded with.
void packWinograd(const torch::Tensor& weight, const winograd::Shape& s, bool backward,
                  ConvCache& cache) {
  const bool same = cache.packedFrom == weight.data_ptr() &&
                    cache.packedVersion == weight._version() && cache.packedShape == s;
  if (same && (!backward || cache.packedData.defined())) return;
  // Normal tensors even when packed under InferenceMode (embedding): autograd may save them later.
  c10::InferenceMode normalTensor(false);
  const torch::Tensor w = weight.detach().contiguous(layoutOf(s));
  auto packed = [&](winograd::Pass pass) {
    torch::Tensor t = torch::empty({static_cast<int64_t>(winograd::packedBytes(s, pass))},
                                   weight.options().dtype(torch::kUInt8).requires_grad(false));
    winograd::pack(s, pass, w.data_ptr<float>(), t.data_ptr());
    return t;
  };
  if (!same) {
    cache.packedForward = packed(winograd::Pass::Forward);
    cache.packedData = torch::Tensor();
  }
  if (backward) cache.packedData = packed(winograd::Pass::BackwardData);
  cache.packedFrom = weight.data_ptr();
  cache.packedVersion = weight._version();
  cache.packedShape = s;
}

torch::Tensor winogradForward(const torch::Tensor& x, const winograd::Shape& s,
                              const torch::Tensor& packedForward) {
  torch::Tensor y = torch::empty({s.n, s.co, s.h, s.w}, x.options().memory_format(layoutOf(s)));
  winograd::forward(s, x.data_ptr<float>(), packedForward.data_ptr(), y.data_ptr<float>());
  return y;
}

struct WinogradConvFn : torch::autograd::Function<WinogradConvFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& packedForward,
                               const torch::Tensor& packedData) {
    const winograd::Shape s = winogradShape(x, weight.size(0));
    ctx->save_for_backward({x, packedData});
    return winogradForward(x, s, packedForward);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& packedData = saved[1];
    const int64_t co = grads[0].size(1);
    const winograd::Shape s = winogradShape(x, co);
    const torch::Tensor dy = grads[0].contiguous(layoutOf(s));
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = torch::empty_like(x, layoutOf(s));
    if (ctx->needs_input_grad(1))
      dw = torch::empty({co, s.ci, 3, 3}, x.options().memory_format(layoutOf(s)));
    if (dx.defined() || dw.defined())
      winograd::backward(s, x.data_ptr<float>(), dy.data_ptr<float>(), packedData.data_ptr(),
                         dx.defined() ? dx.data_ptr<float>() : nullptr,
                         dw.defined() ? dw.data_ptr<float>() : nullptr);
    return {dx, dw, torch::Tensor(), torch::Tensor()};
  }
};

// ---- Batch normalisation, residual and ReLU on the CPU in fp32 ----------------------------------
// LibTorch 1.13's channels-last batch norm ran at a third to a quarter of this machine's memory
// bandwidth in training (70 ms forward and 74 ms backward on [32, 64, 112, 112], two threads),
// and the ReLU, the residual sum and their backward passes each go over the map once more. One
// pass for the statistics and one for act(x·scale + bias + res) forward; two backward. NCHW maps
// (64 px) the same way, plane by plane: there torch's batch norm, ReLU, residual sum and their
// backward passes were 13 % of a fine-tuning step.

// A map is either channels-last (a [rows = n*h*w, c] matrix) or NCHW-contiguous (n*c planes).
bool planar(const torch::Tensor& x) {
  return !x.is_contiguous(at::MemoryFormat::ChannelsLast);
}
at::MemoryFormat formatOf(const torch::Tensor& x) {
  return planar(x) ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
}
int64_t channels(const torch::Tensor& x) {
  return x.size(1);
}
int64_t mapRows(const torch::Tensor& x) {
  return x.numel() / x.size(1);
}
int64_t planeSize(const torch::Tensor& x) {
  return x.size(2) * x.size(3);
}

// A channels-last map is cut into chunks of rows fixed by its shape (about 64K values each); an
// NCHW map into planes. Sums per chunk or plane, added in their order, do not depend on the
// thread count.
int64_t rowsPerChunk(int64_t c) {
  return std::max<int64_t>(1, 65536 / c);
}
int64_t chunkCount(int64_t rows, int64_t c) {
  return (rows + rowsPerChunk(c) - 1) / rowsPerChunk(c);
}
// rowsFn(chunk, r0, r1) for each chunk of a channels-last map, or planeFn(plane, channel) for each
// plane of an NCHW one, in parallel.
template <class R, class P>
void forParts(const torch::Tensor& x, R&& rowsFn, P&& planeFn) {
  const int64_t c = channels(x);
  if (planar(x)) {
    const int64_t planes = x.size(0) * c;
    at::parallel_for(0, planes, std::max<int64_t>(1, 16384 / planeSize(x)),
                     [&](int64_t p0, int64_t p1) {
                       for (int64_t p = p0; p < p1; ++p) planeFn(p, p % c);
                     });
    return;
  }
  const int64_t rows = mapRows(x), per = rowsPerChunk(c);
  at::parallel_for(0, chunkCount(rows, c), 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) rowsFn(k, k * per, std::min(rows, (k + 1) * per));
  });
}
// Per-channel totals of two sums: rowsSum(r0, r1, a, b) adds a chunk's rows into a[c] and b[c]
// (zeroed); planeSum(plane, channel, a, b) sets one plane's two sums. Added in chunk or plane
// order.
template <class R, class P>
void channelTotals(const torch::Tensor& x, std::vector<double>& a, std::vector<double>& b,
                   R&& rowsSum, P&& planeSum) {
  const int64_t c = channels(x);
  const bool planes = planar(x);
  const int64_t parts = planes ? x.size(0) * c : chunkCount(mapRows(x), c);
  const int64_t width = planes ? 1 : c;  // sums per part
  std::vector<double> part(static_cast<size_t>(parts * 2 * width), 0.0);
  forParts(
      x,
      [&](int64_t k, int64_t r0, int64_t r1) {
        rowsSum(r0, r1, &part[k * 2 * c], &part[k * 2 * c + c]);
      },
      [&](int64_t p, int64_t j) { planeSum(p, j, &part[p * 2], &part[p * 2 + 1]); });
  a.assign(c, 0.0);
  b.assign(c, 0.0);
  for (int64_t k = 0; k < parts; ++k)
    for (int64_t i = 0; i < width; ++i) {
      const int64_t j = planes ? k % c : i;
      a[j] += part[(k * 2) * width + i];
      b[j] += part[(k * 2 + 1) * width + i];
    }
}

// The batch's mean and 1/sqrt(var + eps) per channel ([c] floats), and torch's update of the
// running statistics (the unbiased variance; in double, as torch's CPU kernel).
std::pair<torch::Tensor, torch::Tensor> batchStatistics(const torch::Tensor& x,
                                                        torch::Tensor& runningMean,
                                                        torch::Tensor& runningVar, double momentum,
                                                        double eps) {
  const int64_t c = channels(x), rows = mapRows(x), hw = planeSize(x);
  const float* xp = x.data_ptr<float>();
  std::vector<float> shift(c);  // the first image's first position: near the mean
  const int64_t stride = planar(x) ? hw : 1;  // from one channel to the next
  for (int64_t j = 0; j < c; ++j) shift[j] = xp[j * stride];
  std::vector<double> s1, s2;
  channelTotals(
      x, s1, s2,
      [&](int64_t r0, int64_t r1, double* a, double* b) {
        kernels::channelMoments(xp, c, r0, r1, shift.data(), a, b);
      },
      [&](int64_t p, int64_t j, double* a, double* b) {
        kernels::planeMoments(xp + p * hw, hw, shift[j], a, b);
      });
  torch::Tensor mean = torch::empty({c}, x.options()), invstd = torch::empty({c}, x.options());
  float* m = mean.data_ptr<float>();
  float* is = invstd.data_ptr<float>();
  float* rm = runningMean.data_ptr<float>();
  float* rv = runningVar.data_ptr<float>();
  for (int64_t j = 0; j < c; ++j) {
    const double d = s1[j] / rows, var = std::max(0.0, s2[j] / rows - d * d);
    m[j] = static_cast<float>(shift[j] + d);
    is[j] = static_cast<float>(1.0 / std::sqrt(var + eps));
    rm[j] = static_cast<float>(momentum * (shift[j] + d) + (1 - momentum) * rm[j]);
    rv[j] = static_cast<float>(momentum * var * rows / (rows - 1) + (1 - momentum) * rv[j]);
  }
  return {mean, invstd};
}

// act(x·scale + bias + residual) with scale = weight·invstd and bias = b − mean·scale, torch's
// form of the normalisation; in x's layout.
torch::Tensor normalizeAct(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias, const torch::Tensor& residual,
                           const torch::Tensor& mean, const torch::Tensor& invstd, bool relu) {
  const int64_t c = channels(x), hw = planeSize(x);
  std::vector<float> scale(c), shift(c);
  const float* w = weight.data_ptr<float>();
  const float* b = bias.data_ptr<float>();
  const float* m = mean.data_ptr<float>();
  const float* is = invstd.data_ptr<float>();
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = w[j] * is[j];
    shift[j] = b[j] - m[j] * scale[j];
  }
  torch::Tensor y = torch::empty_like(x, formatOf(x));
  const float* xp = x.data_ptr<float>();
  const float* rp = residual.defined() ? residual.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  forParts(
      x,
      [&](int64_t, int64_t r0, int64_t r1) {
        kernels::scaleShiftAct(xp, rp, c, r0, r1, scale.data(), shift.data(), relu, yp);
      },
      [&](int64_t p, int64_t j) {
        kernels::planeScaleShiftAct(xp + p * hw, rp ? rp + p * hw : nullptr, hw, scale[j], shift[j],
                                    relu, yp + p * hw);
      });
  return y;
}

struct BatchNormActFn : torch::autograd::Function<BatchNormActFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& residual, const torch::Tensor& mean,
                               const torch::Tensor& invstd, bool relu) {
    torch::Tensor y = normalizeAct(x, weight, bias, residual.numel() ? residual : torch::Tensor(),
                                   mean, invstd, relu);
    ctx->save_for_backward({x, weight, mean, invstd, relu ? y : torch::Tensor()});
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const torch::Tensor& y = saved[4];
    const torch::Tensor dy = grads[0].contiguous(formatOf(x));
    const int64_t c = channels(x), rows = mapRows(x), hw = planeSize(x);
    const float* dyp = dy.data_ptr<float>();
    const float* yp = y.defined() ? y.data_ptr<float>() : nullptr;
    const float* xp = x.data_ptr<float>();
    const float* m = mean.data_ptr<float>();
    const float* is = invstd.data_ptr<float>();
    const float* w = weight.data_ptr<float>();
    // sg = Σ g, sgx = Σ g·(x − mean), g the gradient past the ReLU.
    std::vector<double> sg, sgx;
    channelTotals(
        x, sg, sgx,
        [&](int64_t r0, int64_t r1, double* a, double* b) {
          kernels::bnBackwardSums(dyp, yp, xp, c, r0, r1, m, a, b);
        },
        [&](int64_t p, int64_t j, double* a, double* b) {
          kernels::planeBackwardSums(dyp + p * hw, yp ? yp + p * hw : nullptr, xp + p * hw, hw,
                                     m[j], a, b);
        });
    torch::Tensor dx, dw, db, dres;
    if (ctx->needs_input_grad(0) || ctx->needs_input_grad(3)) {
      // dx = weight·invstd·(g − mean(g) − x̂·mean(g·x̂)) = a·(g − gm) − k·(x − mean).
      std::vector<float> a(c), gm(c), k(c);
      for (int64_t j = 0; j < c; ++j) {
        const double aj = static_cast<double>(w[j]) * is[j];
        a[j] = static_cast<float>(aj);
        gm[j] = static_cast<float>(sg[j] / rows);
        k[j] = static_cast<float>(aj * is[j] * is[j] * sgx[j] / rows);
      }
      dx = torch::empty_like(x, formatOf(x));
      if (ctx->needs_input_grad(3)) dres = torch::empty_like(x, formatOf(x));
      float* dxp = dx.data_ptr<float>();
      float* drp = dres.defined() ? dres.data_ptr<float>() : nullptr;
      forParts(
          x,
          [&](int64_t, int64_t r0, int64_t r1) {
            kernels::bnBackwardInput(dyp, yp, xp, c, r0, r1, a.data(), gm.data(), k.data(), m, dxp,
                                     drp);
          },
          [&](int64_t p, int64_t j) {
            const int64_t o = p * hw;
            kernels::planeBackwardInput(dyp + o, yp ? yp + o : nullptr, xp + o, hw, a[j], gm[j],
                                        k[j], m[j], dxp + o, drp ? drp + o : nullptr);
          });
      if (!ctx->needs_input_grad(0)) dx = torch::Tensor();
    }
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      dw = torch::empty({c}, x.options());
      db = torch::empty({c}, x.options());
      float* dwp = dw.data_ptr<float>();
      float* dbp = db.data_ptr<float>();
      for (int64_t j = 0; j < c; ++j) {
        dwp[j] = static_cast<float>(sgx[j] * is[j]);
        dbp[j] = static_cast<float>(sg[j]);
      }
    }
    return {dx, dw, db, dres, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

nn::Sequential makeLayer(int64_t in, int64_t out, int64_t stride) {
  nn::Sequential s;
  s->push_back(BasicBlock(in, out, stride));
  s->push_back(BasicBlock(out, out, 1));
  return s;
}
}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
  conv1 = register_module("conv1", conv(in, out, 3, stride, 1));
  bn1 = register_module("bn1", nn::BatchNorm2d(out));
  conv2 = register_module("conv2", conv(out, out, 3, 1, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(out));
  if (stride != 1 || in != out)
    downsample = register_module("downsample",
                                 nn::Sequential(conv(in, out, 1, stride, 0), nn::BatchNorm2d(out)));
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  const torch::Tensor out = batchNormAct(bn1, conv3x3(conv1, x, cache1), {}, true);
  const torch::Tensor identity = downsample ? downsample->forward(x) : x;
  return batchNormAct(bn2, conv3x3(conv2, out, cache2), identity, true);
}

ResNet18Impl::ResNet18Impl() {
  conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
  bn1 = register_module("bn1", nn::BatchNorm2d(64));
  layer1 = register_module("layer1", makeLayer(64, 64, 1));
  layer2 = register_module("layer2", makeLayer(64, 128, 2));
  layer3 = register_module("layer3", makeLayer(128, 256, 2));
  layer4 = register_module("layer4", makeLayer(256, 512, 2));
  // torchvision's initialisation: Kaiming-normal (fan_out, relu) convolutions, BN weight 1 bias 0.
  torch::NoGradGuard noGrad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
}

torch::Tensor ResNet18Impl::forward(const torch::Tensor& x) {
  torch::Tensor y = stemMaxPool(batchNormAct(bn1, conv1(x), {}, true));
  y = layer4->forward(layer3->forward(layer2->forward(layer1->forward(y))));
  y = torch::adaptive_avg_pool2d(y, {1, 1});
  return torch::flatten(y, 1);
}

torch::Tensor stemMaxPool(const torch::Tensor& x) {
  const bool ours = ownCpuKernels() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 &&
                    x.dim() == 4 && x.numel() > 0 &&
                    ((x.is_contiguous() && x.size(3) % 2 == 0) || channelsLastOnly(x)) &&
                    x.size(2) * x.size(3) <= std::numeric_limits<int32_t>::max();
  if (!ours) return torch::max_pool2d(x, 3, 2, 1);
  if (torch::GradMode::is_enabled() && x.requires_grad()) return StemMaxPool::apply(x);
  return stemMaxPoolForward(x, nullptr);
}

torch::Tensor batchNormAct(nn::BatchNorm2d& bn, const torch::Tensor& x,
                           const torch::Tensor& residual, bool relu) {
  const auto& o = bn->options;
  auto fp32map = [&](const torch::Tensor& t) {  // channels-last or NCHW-contiguous
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 4 &&
           (t.is_contiguous(at::MemoryFormat::ChannelsLast) || t.is_contiguous());
  };
  auto fp32vec = [&](const torch::Tensor& t) {
    return t.defined() && t.is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() &&
           t.numel() == x.size(1);
  };
  const bool training = bn->is_training();
  const bool needsGrad =
      torch::GradMode::is_enabled() &&
      (x.requires_grad() || bn->weight.requires_grad() || bn->bias.requires_grad() ||
       (residual.defined() && residual.requires_grad()));
  bool ours = ownCpuKernels() && !cpuAutocastEnabled() && o.affine() && o.track_running_stats() &&
              o.momentum().has_value() && fp32map(x) && x.numel() > 0 && fp32vec(bn->weight) &&
              fp32vec(bn->bias) && fp32vec(bn->running_mean) && fp32vec(bn->running_var) &&
              (!residual.defined() || (fp32map(residual) && residual.sizes() == x.sizes() &&
                                       residual.is_contiguous(formatOf(x))));
  // Training needs two values per channel (torch's error otherwise); evaluation is ours only
  // without autograd (embedding).
  ours = ours && (training ? mapRows(x) > 1 : !needsGrad);
  if (!ours) {
    torch::Tensor y = bn->forward(x);
    if (residual.defined()) y = y + residual;
    return relu ? torch::relu(y) : y;
  }
  torch::Tensor mean, invstd;
  if (training) {
    torch::NoGradGuard noGrad;
    bn->num_batches_tracked += 1;  // as BatchNorm2d's forward counts
    std::tie(mean, invstd) =
        batchStatistics(x, bn->running_mean, bn->running_var, *o.momentum(), o.eps());
  } else {
    mean = bn->running_mean;
    invstd = torch::rsqrt(bn->running_var + o.eps());
  }
  if (needsGrad)  // LibTorch 1.13's Function takes no undefined tensor: no residual, 0 elements
    return BatchNormActFn::apply(x, bn->weight, bn->bias,
                                 residual.defined() ? residual : torch::empty({0}, x.options()),
                                 mean, invstd, relu);
  return normalizeAct(x, bn->weight, bn->bias, residual, mean, invstd, relu);
}

torch::Tensor conv3x3(nn::Conv2d& conv, const torch::Tensor& x, ConvCache& cache) {
  using std::get;
  const auto& o = conv->options;
  const torch::Tensor& weight = conv->weight;
  auto all = [](const auto& v, int64_t want) { return v->at(0) == want && v->at(1) == want; };
  const bool ours =
      ownCpuKernels() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 &&
      x.dim() == 4 && x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0 && weight.is_cpu() &&
      weight.scalar_type() == torch::kFloat32 && all(o.kernel_size(), 3) && all(o.stride(), 1) &&
      all(o.dilation(), 1) && o.groups() == 1 && !o.bias() && !cpuAutocastEnabled() &&
      // padding: alternative 0 is the sizes, padding_mode's alternative 0 is zeros
      // (c10::variant in LibTorch 1.13, std::variant in 2.x: ADL finds get)
      o.padding().index() == 0 && all(get<0>(o.padding()), 1) && o.padding_mode().index() == 0;
  if (!ours) return conv->forward(x);
  const bool grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  if (x.size(2) <= 2 && x.size(3) <= 2 && x.is_contiguous() && weight.is_contiguous()) {
    const torch::Tensor& big = tapMatrixOf(weight, x.size(2), x.size(3), cache);
    return grad ? SmallMapConvFn::apply(x, weight, big) : smallMapProduct(x, big, weight.size(0));
  }
  if (x.size(2) >= kWinogradMinSide && x.size(3) >= kWinogradMinSide &&
      (x.is_contiguous() || channelsLastOnly(x))) {
    const winograd::Shape s = winogradShape(x, weight.size(0));
    if (winograd::supports(s)) {
      packWinograd(weight, s, grad, cache);
      return grad ? WinogradConvFn::apply(x, weight, cache.packedForward, cache.packedData)
                  : winogradForward(x, s, cache.packedForward);
    }
  }
  return conv->forward(x);
}

FineTuneLoss fineTuneLoss(const torch::Tensor& e, const torch::Tensor& eRot) {
  FineTuneLoss l;
  const auto target = torch::arange(e.size(0), torch::TensorOptions().dtype(torch::kLong).device(e.device()));
  l.contrastive = torch::nn::functional::cross_entropy(torch::mm(e, e.t()), target);
  l.orientation = torch::mse_loss(e, -eRot);
  l.total = l.contrastive + l.orientation;
  return l;
}

}  // namespace engine
