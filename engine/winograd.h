// engine/winograd.h — INTERNAL: 3x3 convolutions (stride 1, padding 1, no bias) of fp32 maps on
// the CPU through oneDNN's Winograd kernels (F(4x4, 3x3): a quarter of the direct form's
// multiplications), forward and both backward passes. No LibTorch here: resnet.cpp wraps these in
// an autograd function and owns every buffer that outlives a call.
//
// Built only where LibTorch itself calls the system's oneDNN 2.x (Debian's LibTorch: the same
// library, the same OpenMP threads); elsewhere (a downloaded LibTorch carries its own oneDNN)
// available() is false and ResNet18 runs torch's convolutions. oneDNN has these kernels for
// AVX-512 CPUs only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace engine::winograd {

// One convolution's problem: n maps of ci channels, h x w, to co channels of the same size.
// channelsLast: the maps are NHWC and the weight OHWI (both as torch's channels-last lays them
// out); else NCHW and OIHW. Every pointer below is to contiguous float data in those layouts.
struct Shape {
  int64_t n = 0, ci = 0, co = 0, h = 0, w = 0;
  bool channelsLast = false;
  bool operator==(const Shape& o) const {
    return n == o.n && ci == o.ci && co == o.co && h == o.h && w == o.w &&
           channelsLast == o.channelsLast;
  }
};

// Built with oneDNN, its fp32 Winograd kernels run on this CPU, and SAESCOPE_WINOGRAD is not "0".
bool available();
// available(), and oneDNN's Winograd kernels take this shape (the answer is kept per shape).
bool supports(const Shape& s);
// What --version prints: "oneDNN 2.6.3 Winograd (jit_wino_4x3:avx512_core)", or why it is off.
std::string describe();

// The weight in the layout a pass's kernel reads (Winograd's transformed taps: four times the
// weight's size). pack() writes it into `packed`, packedBytes(s, pass) bytes (64-byte aligned
// memory is fastest; torch's allocator gives that).
enum class Pass { Forward, BackwardData };
std::size_t packedBytes(const Shape& s, Pass pass);
void pack(const Shape& s, Pass pass, const float* weight, void* packed);

// y = conv(x, weight); packed: pack(s, Pass::Forward, weight).
void forward(const Shape& s, const float* x, const void* packed, float* y);
// From dy = ∂L/∂y: dx = ∂L/∂x (packed: pack(s, Pass::BackwardData, weight)) where dx is not
// null, and dw = ∂L/∂weight (in the weight's layout, from x) where dw is not null. dy is
// reordered once for both.
void backward(const Shape& s, const float* x, const float* dy, const void* packed, float* dx,
              float* dw);

}  // namespace engine::winograd
