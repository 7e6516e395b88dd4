#include "resnet.h"

#include <cstdlib>
#include <limits>
#include <vector>

#include "cpu_kernels.h"
#include "torch_util.h"

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

// x: contiguous [N, C, H, W] float on the CPU, W even. idx (optional): the argmax of each output
// within its plane, h*W + w, as torch's max_pool2d_with_indices gives it (in int32).
torch::Tensor stemMaxPoolForward(const torch::Tensor& x, torch::Tensor* idx) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = kernels::pooled3x3s2(h), ow = kernels::pooled3x3s2(w);
  torch::Tensor y = torch::empty({n, c, oh, ow}, x.options());
  torch::Tensor ind;
  if (idx) ind = torch::empty({n, c, oh, ow}, x.options().dtype(torch::kInt32));
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  int32_t* outIdx = idx ? ind.data_ptr<int32_t>() : nullptr;
  at::parallel_for(0, n * c, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> v(h * ow);
    std::vector<int32_t> pos(h * ow);
    for (int64_t p = p0; p < p1; ++p)
      kernels::maxPool3x3s2Plane(in + p * h * w, h, w, out + p * oh * ow,
                                 outIdx ? outIdx + p * oh * ow : nullptr, v.data(), pos.data());
  });
  if (idx) *idx = ind;
  return y;
}

torch::Tensor stemMaxPoolBackward(const torch::Tensor& gradOut, const torch::Tensor& idx, int64_t h,
                                  int64_t w) {
  const torch::Tensor g = gradOut.contiguous();
  const int64_t n = g.size(0), c = g.size(1), outPlane = g.size(2) * g.size(3);
  torch::Tensor gin = torch::empty({n, c, h, w}, g.options());
  const float* gp = g.data_ptr<float>();
  const int32_t* ip = idx.data_ptr<int32_t>();
  float* dst = gin.data_ptr<float>();
  at::parallel_for(0, n * c, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      kernels::maxPoolBackwardPlane(gp + p * outPlane, ip + p * outPlane, outPlane, dst + p * h * w,
                                    h * w);
  });
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
                                 TapMatrixCache& cache) {
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
  cache = {big, weight.data_ptr(), version, h, w};
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
  torch::Tensor out = torch::relu(bn1(smallMapConv(conv1, x, taps1)));
  out = bn2(smallMapConv(conv2, out, taps2));
  const torch::Tensor identity = downsample ? downsample->forward(x) : x;
  return torch::relu(out + identity);
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
  torch::Tensor y = torch::relu(bn1(conv1(x)));
  y = stemMaxPool(y);
  y = layer4->forward(layer3->forward(layer2->forward(layer1->forward(y))));
  y = torch::adaptive_avg_pool2d(y, {1, 1});
  return torch::flatten(y, 1);
}

torch::Tensor stemMaxPool(const torch::Tensor& x) {
  const bool ours = ownCpuKernels() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 &&
                    x.dim() == 4 && x.is_contiguous() && x.size(2) > 0 && x.size(3) > 0 &&
                    x.size(3) % 2 == 0 &&
                    x.size(2) * x.size(3) <= std::numeric_limits<int32_t>::max() && x.numel() > 0;
  if (!ours) return torch::max_pool2d(x, 3, 2, 1);
  if (torch::GradMode::is_enabled() && x.requires_grad()) return StemMaxPool::apply(x);
  return stemMaxPoolForward(x, nullptr);
}

torch::Tensor smallMapConv(nn::Conv2d& conv, const torch::Tensor& x, TapMatrixCache& cache) {
  using std::get;
  const auto& o = conv->options;
  const torch::Tensor& weight = conv->weight;
  auto all = [](const auto& v, int64_t want) { return v->at(0) == want && v->at(1) == want; };
  const bool ours = ownCpuKernels() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 &&
                    x.dim() == 4 && x.is_contiguous() && x.size(0) > 0 && x.size(2) <= 2 &&
                    x.size(3) <= 2 && x.size(2) > 0 && x.size(3) > 0 && weight.is_cpu() &&
                    weight.scalar_type() == torch::kFloat32 && weight.is_contiguous() &&
                    all(o.kernel_size(), 3) && all(o.stride(), 1) && all(o.dilation(), 1) &&
                    o.groups() == 1 && !o.bias() && !cpuAutocastEnabled() &&
                    // padding: alternative 0 is the sizes, padding_mode's alternative 0 is zeros
                    // (c10::variant in LibTorch 1.13, std::variant in 2.x: ADL finds get)
                    o.padding().index() == 0 && all(get<0>(o.padding()), 1) &&
                    o.padding_mode().index() == 0;
  if (!ours) return conv->forward(x);
  const torch::Tensor& big = tapMatrixOf(weight, x.size(2), x.size(3), cache);
  if (torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()))
    return SmallMapConvFn::apply(x, weight, big);
  return smallMapProduct(x, big, weight.size(0));
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
