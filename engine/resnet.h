// engine/resnet.h — INTERNAL: ResNet18 with torchvision's parameter names, fc removed (512-d out).
#pragma once
#include <torch/torch.h>

#include "winograd.h"

namespace engine {

// What conv3x3 keeps of a layer's weight while it is unchanged (same storage, same version).
struct ConvCache {
  // The weight as one matrix over a small map's positions.
  torch::Tensor matrix;
  const void* data = nullptr;
  int64_t version = -1, h = 0, w = 0;
  // The weight packed for oneDNN's Winograd kernels: forward, and backward data (when trained).
  torch::Tensor packedForward, packedData;
  const void* packedFrom = nullptr;
  int64_t packedVersion = -1;
  winograd::Shape packedShape;
};

struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
  ConvCache cache1, cache2;
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

// max_pool2d(x, 3, 2, 1), as ResNet's stem pools: on the CPU in fp32 (contiguous NCHW of even
// width, or channels-last) by the engine's own loops (the same values, indices and gradients as
// torch's, bit for bit, several times faster), elsewhere torch's. SAESCOPE_TORCH_KERNELS=1 uses
// torch's everywhere.
torch::Tensor stemMaxPool(const torch::Tensor& x);

// act(bn(x) + residual), act = ReLU or identity, residual optional (undefined). On the CPU in
// fp32 over channels-last (224 px) or NCHW-contiguous maps (residual in the same layout), by the
// engine's own loops: the batch's statistics, the
// running statistics and num_batches_tracked as BatchNorm2d updates them, values and gradients
// as torch's to fp32 rounding, in one pass forward and two backward (torch's kernels take
// several and run below the memory's speed). In evaluation mode only without autograd
// (embedding). Elsewhere torch's modules and functions.
torch::Tensor batchNormAct(torch::nn::BatchNorm2d& bn, const torch::Tensor& x,
                           const torch::Tensor& residual, bool relu);

// conv(x) for a 3x3 convolution of stride 1 and padding 1 without bias. On the CPU in fp32 (the
// same values as torch's to fp32 rounding, gradients included):
// - over maps of at most 2x2 (ResNet18's last stage at 64 px), as matrix products of the engine's
//   own (oneDNN's kernels run these shapes at a third of the CPU's speed);
// - over maps of at least 7x7, NCHW or channels-last, through oneDNN's Winograd kernels where
//   winograd::supports the shape (AVX-512, Debian's LibTorch; SAESCOPE_WINOGRAD=0 turns them off);
// conv(x) elsewhere, and everywhere with SAESCOPE_TORCH_KERNELS=1.
torch::Tensor conv3x3(torch::nn::Conv2d& conv, const torch::Tensor& x, ConvCache& cache);

// The reference fine-tuning losses on a batch of embeddings (DESIGN.md):
// contrastive = cross_entropy(E Eᵀ, arange(B)); orientation = mse(E, −E_rot).
// e, eRot: [B, D] float, same device.
struct FineTuneLoss {
  torch::Tensor contrastive, orientation, total;
};
FineTuneLoss fineTuneLoss(const torch::Tensor& e, const torch::Tensor& eRot);

}  // namespace engine
