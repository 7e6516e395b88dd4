// engine/cpu_kernels.h — INTERNAL to the engine: plain loops (no LibTorch) that replace LibTorch
// CPU kernels where those are slow on the shapes saescope runs. Each one is checked against
// torch's own operation in tests/test_engine.cpp.
#pragma once
#include <cstdint>

namespace engine::kernels {

// The output size of a kernel-3, stride-2, padding-1 pooling along an axis of n: (n + 2 - 3)/2 + 1.
inline int64_t pooled3x3s2(int64_t n) {
  return (n - 1) / 2 + 1;
}

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

// The same pooling over one channels-last image [h, w, c] (any h, w): out [oh, ow, c] for output
// rows [oh0, oh1), idx (may be null) each output's argmax plane position r*w + col per channel,
// as torch's channels-last kernel finds it (the same scan order and rule, bit for bit).
void maxPool3x3s2ChannelsLast(const float* in, int64_t h, int64_t w, int64_t c, int64_t oh0,
                              int64_t oh1, float* out, int32_t* idx);
// Its backward for input rows [r0, r1) of one image: each input's gradient is the sum, in output
// order, of the gradients of the outputs whose argmax it is (torch's scatter, as a gather: each
// input written once, no zero fill).
void maxPool3x3s2ChannelsLastBackward(const float* gradOut, const int32_t* idx, int64_t h,
                                      int64_t w, int64_t c, int64_t r0, int64_t r1, float* gradIn);

// A 3x3 convolution (stride 1, padding 1) over a map of h x w <= 2 x 2 positions, P = h*w, is one
// matrix product: every output position sees every input position, through tap
// t(p, q) = (qy - py + 1)*3 + (qx - px + 1). ResNet18's last stage at 64 px (2x2 maps).
//
// The weight [co, ci, 3, 3] as the matrix big[o*P + p][c*P + q] = w[o][c][t(p, q)], so that
// y.view(n, co*P) = x.view(n, ci*P) · bigᵀ for NCHW x and y. Rows of output channels [o0, o1).
void tapMatrix(const float* w, int64_t ci, int64_t h, int64_t wd, int64_t o0, int64_t o1,
               float* big);
// im2col of x [n, ci, h, wd] for the weight's gradient: cols[(n*P + p)][c*9 + t] = the input seen
// by output position p through tap t (0 outside the map), so that dW.view(co, ci*9) = (dY as [(n,
// p), co])ᵀ · cols. Rows of images [n0, n1).
void smallMapColumns(const float* x, int64_t ci, int64_t h, int64_t wd, int64_t n0, int64_t n1,
                     float* cols);

// ---- Batch normalisation (with a residual and ReLU) over channels-last maps -------------------
// A channels-last [n, c, h, w] map is a [rows = n*h*w, c] matrix; each call covers rows [r0, r1).
// The callers (resnet.cpp's batchNormAct) split the rows into fixed chunks, so sums do not depend
// on the thread count.

// Adds Σ (x − shift[j]) to s1[j] and Σ (x − shift[j])² to s2[j] for each channel j, in double
// (the shift, a value near the mean, keeps the variance clear of cancellation).
void channelMoments(const float* x, int64_t c, int64_t r0, int64_t r1, const float* shift,
                    double* s1, double* s2);

// y = act(x·scale[j] + bias[j] (+ res)), act = ReLU (NaN kept) or identity. res may be null.
void scaleShiftAct(const float* x, const float* res, int64_t c, int64_t r0, int64_t r1,
                   const float* scale, const float* bias, bool relu, float* y);

// The backward's sums: with g = dy where the ReLU passed (y > 0 or NaN; all of dy when y is
// null: no ReLU), adds Σ g to sg[j] and Σ g·(x − mean[j]) to sgx[j], in double.
void bnBackwardSums(const float* dy, const float* y, const float* x, int64_t c, int64_t r0,
                    int64_t r1, const float* mean, double* sg, double* sgx);

// dx = a[j]·(g − gm[j]) − k[j]·(x − mean[j]) (g as above; the differences first, as torch's
// kernel: folding them into one offset per channel cancels badly when the mean is large against
// the spread); dres = g where dres is not null.
void bnBackwardInput(const float* dy, const float* y, const float* x, int64_t c, int64_t r0,
                     int64_t r1, const float* a, const float* gm, const float* k, const float* mean,
                     float* dx, float* dres);

// ---- The same over NCHW maps (64 px, where the convolutions stay NCHW) ----------------------
// An NCHW [n, c, h, w] map is n*c planes of hw = h*w values, plane i holding channel i % c of
// image i / c. Each call covers one plane, with its channel's scalars; the callers add the planes'
// sums per channel in plane order, so they do not depend on the thread count. The sums run in 16
// double lanes, added in lane order at the end.

// Σ (x − shift) into s1 and Σ (x − shift)² into s2 (set, not added).
void planeMoments(const float* x, int64_t hw, float shift, double* s1, double* s2);
// y = act(x·scale + bias (+ res)) over one plane; res may be null.
void planeScaleShiftAct(const float* x, const float* res, int64_t hw, float scale, float bias,
                        bool relu, float* y);
// sg = Σ g and sgx = Σ g·(x − mean) over one plane (set), g as in bnBackwardSums.
void planeBackwardSums(const float* dy, const float* y, const float* x, int64_t hw, float mean,
                       double* sg, double* sgx);
// dx = a·(g − gm) − k·(x − mean) over one plane; dres = g where dres is not null.
void planeBackwardInput(const float* dy, const float* y, const float* x, int64_t hw, float a,
                        float gm, float k, float mean, float* dx, float* dres);

}  // namespace engine::kernels
