// engine/resnet.h — INTERNAL: ResNet18 with torchvision's parameter names, fc removed (512-d out).
#pragma once
#include <torch/torch.h>

namespace engine {

struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

// x: [B, 3, H, W] float32 → [B, 512]. torchvision's resnet18 with fc = Identity().
struct ResNet18Impl : torch::nn::Module {
  ResNet18Impl();
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
};
TORCH_MODULE(ResNet18);

// max_pool2d(x, 3, 2, 1), as ResNet's stem pools: on the CPU in fp32 (contiguous NCHW) by the
// engine's own loops (the same values, indices and gradients as torch's, bit for bit, several
// times faster), elsewhere torch's. SAESCOPE_TORCH_KERNELS=1 uses torch's everywhere.
torch::Tensor stemMaxPool(const torch::Tensor& x);
bool ownCpuKernels();  // false when SAESCOPE_TORCH_KERNELS is set

// The reference fine-tuning losses on a batch of embeddings (DESIGN.md):
// contrastive = cross_entropy(E Eᵀ, arange(B)); orientation = mse(E, −E_rot).
// e, eRot: [B, D] float, same device.
struct FineTuneLoss {
  torch::Tensor contrastive, orientation, total;
};
FineTuneLoss fineTuneLoss(const torch::Tensor& e, const torch::Tensor& eRot);

}  // namespace engine
