// engine/cpu_kernels.h — INTERNAL to the engine: plain loops (no LibTorch) that replace LibTorch
// CPU kernels where those are slow on the shapes saescope runs. Each one is checked against
// torch's own operation in tests/test_engine.cpp.
#pragma once
#include <cstdint>

namespace engine::kernels {

// max_pool2d(kernel 3, stride 2, padding 1) of one [h, w] plane, w even (the ResNet stem's at even
// image sizes), into [(h-1)/2+1, w/2]. idx (may be null): each output's argmax in the plane,
// r*w + c, as torch's max_pool2d_with_indices gives it. Same values and indices as torch's CPU
// kernel, bit for bit: each window is scanned row by row, and a value replaces the maximum when
// it is greater or NaN (ties keep the first position in that order; the last NaN wins).
// scratch: h*w/2 floats and h*w/2 int32.
void maxPool3x3s2Plane(const float* in, int64_t h, int64_t w, float* out, int32_t* idx,
                       float* scratchV, int32_t* scratchPos);

// Its backward: gradIn (inPlane elements) = 0, then gradIn[idx[i]] += gradOut[i] in output order
// (torch's order, so sums of several outputs round the same).
void maxPoolBackwardPlane(const float* gradOut, const int32_t* idx, int64_t outPlane, float* gradIn,
                          int64_t inPlane);

}  // namespace engine::kernels
