#include "resnet.h"

namespace nn = torch::nn;

namespace engine {

namespace {
nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}

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
  torch::Tensor out = torch::relu(bn1(conv1(x)));
  out = bn2(conv2(out));
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
  y = torch::max_pool2d(y, 3, 2, 1);
  y = layer4->forward(layer3->forward(layer2->forward(layer1->forward(y))));
  y = torch::adaptive_avg_pool2d(y, {1, 1});
  return torch::flatten(y, 1);
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
