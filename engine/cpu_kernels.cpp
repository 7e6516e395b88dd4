#include "cpu_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "simd.h"

// The loops below need GCC's dynamic vectorisation cost model (-fvect-cost-model=dynamic, set for
// this file in engine/CMakeLists.txt): -O2's "very cheap" model refuses strided loads.

namespace engine::kernels {

namespace {
// Torch's max-pooling rule: v replaces the running maximum m when it is greater or NaN.
inline bool replacesMax(float v, float m) {
  return (v > m) | (v != v);
}

// v where keep, else +0: a bit mask rather than a select (GCC 12 does not vectorise a float select
// in a loop that also widens to double or compares int32).
inline float keepBits(float v, bool keep) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits &= keep ? ~0u : 0u;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// f(Relu, Res) with the two run-time flags as compile-time constants (std::bool_constant), for
// the loops' template instances.
template <class F>
void withFlags(bool relu, bool res, F&& f) {
  if (relu && res)
    f(std::true_type{}, std::true_type{});
  else if (relu)
    f(std::true_type{}, std::false_type{});
  else if (res)
    f(std::false_type{}, std::true_type{});
  else
    f(std::false_type{}, std::false_type{});
}

// The 3-wide maxima of every row of a plane of even width w = 2*ow: v[t] and its position in the
// plane pos[t], t = r*ow + j. Output column j of row r reads the plane's elements 2t-1, 2t, 2t+1:
// one strided pass over the whole plane, then each row's first window (no left column) again.
SAESCOPE_CLONES void rowMaxima(const float* __restrict in, int64_t h, int64_t ow,
                               float* __restrict v, int32_t* __restrict pos) {
  const int64_t n = h * ow;
  for (int64_t t = 1; t < n; ++t) {
    const float a = in[2 * t - 1], b = in[2 * t], c = in[2 * t + 1];
    const bool tb = replacesMax(b, a);
    const float m = tb ? b : a;
    const bool tc = replacesMax(c, m);
    v[t] = tc ? c : m;
    pos[t] = static_cast<int32_t>(2 * t - 1) + (tc ? 2 : tb ? 1 : 0);
  }
  for (int64_t r = 0; r < h; ++r) {
    const int64_t i = r * 2 * ow;
    const bool tb = replacesMax(in[i + 1], in[i]);
    v[r * ow] = tb ? in[i + 1] : in[i];
    pos[r * ow] = static_cast<int32_t>(i + (tb ? 1 : 0));
  }
}

// One output row from its rows' maxima, in order. A window with fewer than 3 rows passes its last
// row again: taking the same value twice changes nothing.
template <bool WithIndex>
SAESCOPE_CLONES void combineRows(const float* __restrict v0, const float* __restrict v1,
                                 const float* __restrict v2, const int32_t* __restrict p0,
                                 const int32_t* __restrict p1, const int32_t* __restrict p2,
                                 int64_t ow, float* __restrict out, int32_t* __restrict idx) {
  for (int64_t j = 0; j < ow; ++j) {
    float m = v0[j];
    int32_t k = p0[j];
    bool t = replacesMax(v1[j], m);
    m = t ? v1[j] : m;
    k = t ? p1[j] : k;
    t = replacesMax(v2[j], m);
    m = t ? v2[j] : m;
    k = t ? p2[j] : k;
    out[j] = m;
    if (WithIndex) idx[j] = k;
  }
}
}  // namespace

void maxPool3x3s2Plane(const float* in, int64_t h, int64_t w, float* out, int32_t* idx, float* v,
                       int32_t* pos) {
  const int64_t ow = w / 2, oh = pooled3x3s2(h);
  rowMaxima(in, h, ow, v, pos);
  for (int64_t i = 0; i < oh; ++i) {
    const int64_t r0 = std::max<int64_t>(2 * i - 1, 0), r1 = 2 * i, r2 = std::min(2 * i + 1, h - 1);
    const float *v0 = v + r0 * ow, *v1 = v + r1 * ow, *v2 = v + r2 * ow;
    const int32_t *p0 = pos + r0 * ow, *p1 = pos + r1 * ow, *p2 = pos + r2 * ow;
    if (idx)
      combineRows<true>(v0, v1, v2, p0, p1, p2, ow, out + i * ow, idx + i * ow);
    else
      combineRows<false>(v0, v1, v2, p0, p1, p2, ow, out + i * ow, nullptr);
  }
}

void maxPoolBackwardPlane(const float* gradOut, const int32_t* idx, int64_t outPlane, float* gradIn,
                          int64_t inPlane) {
  std::fill(gradIn, gradIn + inPlane, 0.f);
  for (int64_t i = 0; i < outPlane; ++i) gradIn[idx[i]] += gradOut[i];
}

namespace {
// One window position of a channels-last pooling: o = max(o, v) by torch's rule, ix = pos where
// v replaced it.
template <bool WithIndex>
SAESCOPE_CLONES void poolTake(const float* __restrict v, int32_t pos, int64_t c,
                              float* __restrict o, int32_t* __restrict ix) {
  for (int64_t j = 0; j < c; ++j) {
    const bool take = replacesMax(v[j], o[j]);
    o[j] = take ? v[j] : o[j];
    if (WithIndex) ix[j] = take ? pos : ix[j];
  }
}
// g += gradOut where ix == pos.
SAESCOPE_CLONES void poolGather(const float* __restrict go, const int32_t* __restrict ix,
                                int32_t pos, int64_t c, float* __restrict g) {
  for (int64_t j = 0; j < c; ++j) g[j] += keepBits(go[j], ix[j] == pos);
}
}  // namespace

void maxPool3x3s2ChannelsLast(const float* in, int64_t h, int64_t w, int64_t c, int64_t oh0,
                              int64_t oh1, float* out, int32_t* idx) {
  const int64_t ow = pooled3x3s2(w);
  for (int64_t y = oh0; y < oh1; ++y) {
    const int64_t ra = std::max<int64_t>(2 * y - 1, 0), rb = std::min<int64_t>(2 * y + 1, h - 1);
    for (int64_t x = 0; x < ow; ++x) {
      const int64_t ca = std::max<int64_t>(2 * x - 1, 0), cb = std::min<int64_t>(2 * x + 1, w - 1);
      float* o = out + (y * ow + x) * c;
      int32_t* ix = idx ? idx + (y * ow + x) * c : nullptr;
      const float* first = in + (ra * w + ca) * c;
      std::copy(first, first + c, o);
      if (ix) std::fill(ix, ix + c, static_cast<int32_t>(ra * w + ca));
      for (int64_t r = ra; r <= rb; ++r)
        for (int64_t col = r == ra ? ca + 1 : ca; col <= cb; ++col) {
          const float* v = in + (r * w + col) * c;
          if (ix)
            poolTake<true>(v, static_cast<int32_t>(r * w + col), c, o, ix);
          else
            poolTake<false>(v, 0, c, o, nullptr);
        }
    }
  }
}

void maxPool3x3s2ChannelsLastBackward(const float* gradOut, const int32_t* idx, int64_t h,
                                      int64_t w, int64_t c, int64_t r0, int64_t r1, float* gradIn) {
  const int64_t oh = pooled3x3s2(h), ow = pooled3x3s2(w);
  // The outputs whose window holds input index i along an axis of n outputs: [i/2, (i+1)/2].
  auto first = [](int64_t i) { return i / 2; };
  auto last = [](int64_t i, int64_t n) { return std::min<int64_t>((i + 1) / 2, n - 1); };
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t col = 0; col < w; ++col) {
      float* g = gradIn + (r * w + col) * c;
      std::fill(g, g + c, 0.f);
      const auto pos = static_cast<int32_t>(r * w + col);
      for (int64_t y = first(r); y <= last(r, oh); ++y)
        for (int64_t x = first(col); x <= last(col, ow); ++x)
          poolGather(gradOut + (y * ow + x) * c, idx + (y * ow + x) * c, pos, c, g);
    }
}

namespace {
// One row of the tap matrix: row[c*P + q] = wo[c*9 + tap[q]], P fixed (the inner loop unrolls).
template <int P>
SAESCOPE_CLONES void tapRow(const float* __restrict wo, int64_t ci, const int* tap,
                            float* __restrict row) {
  int t[P];
  for (int q = 0; q < P; ++q) t[q] = tap[q];
  for (int64_t c = 0; c < ci; ++c)
    for (int q = 0; q < P; ++q) row[c * P + q] = wo[c * 9 + t[q]];
}
}  // namespace

void tapMatrix(const float* w, int64_t ci, int64_t h, int64_t wd, int64_t o0, int64_t o1,
               float* big) {
  const int64_t P = h * wd;
  int tap[4][4];
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < P; ++q)
      tap[p][q] = static_cast<int>((q / wd - p / wd + 1) * 3 + (q % wd - p % wd + 1));
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t p = 0; p < P; ++p) {
      float* row = big + (o * P + p) * ci * P;
      if (P == 4)
        tapRow<4>(w + o * ci * 9, ci, tap[p], row);
      else if (P == 2)
        tapRow<2>(w + o * ci * 9, ci, tap[p], row);
      else
        tapRow<1>(w + o * ci * 9, ci, tap[p], row);
    }
}

void smallMapColumns(const float* x, int64_t ci, int64_t h, int64_t wd, int64_t n0, int64_t n1,
                     float* cols) {
  const int64_t P = h * wd;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t py = p / wd, px = p % wd;
      float* row = cols + (n * P + p) * ci * 9;
      for (int64_t t = 0; t < 9; ++t) {
        const int64_t qy = py + t / 3 - 1, qx = px + t % 3 - 1;
        if (qy < 0 || qy >= h || qx < 0 || qx >= wd) {
          for (int64_t c = 0; c < ci; ++c) row[c * 9 + t] = 0.f;
          continue;
        }
        const float* src = x + n * ci * P + qy * wd + qx;
        for (int64_t c = 0; c < ci; ++c) row[c * 9 + t] = src[c * P];
      }
    }
}

SAESCOPE_CLONES void channelMoments(const float* __restrict x, int64_t c, int64_t r0, int64_t r1,
                                    const float* __restrict shift, double* __restrict s1,
                                    double* __restrict s2) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* row = x + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const double v = row[j] - shift[j];
      s1[j] += v;
      s2[j] += v * v;
    }
  }
}

namespace {
template <bool Relu, bool Res>
SAESCOPE_CLONES void scaleShiftRows(const float* __restrict x, const float* __restrict res,
                                    int64_t c, int64_t r0, int64_t r1,
                                    const float* __restrict scale, const float* __restrict bias,
                                    float* __restrict y) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t o = r * c;
    for (int64_t j = 0; j < c; ++j) {
      float v = x[o + j] * scale[j] + bias[j];
      if constexpr (Res) v += res[o + j];
      if constexpr (Relu) v = v < 0.f ? 0.f : v;
      y[o + j] = v;
    }
  }
}
}  // namespace

void scaleShiftAct(const float* x, const float* res, int64_t c, int64_t r0, int64_t r1,
                   const float* scale, const float* bias, bool relu, float* y) {
  withFlags(relu, res != nullptr, [&](auto Relu, auto Res) {
    scaleShiftRows<Relu, Res>(x, res, c, r0, r1, scale, bias, y);
  });
}

namespace {
// Where a ReLU whose output is y passes the gradient: torch's threshold_backward (y <= 0 stops it,
// NaN passes).
template <bool Relu>
inline float passed(float dy, const float* __restrict y, int64_t i) {
  if constexpr (!Relu) return dy;
  return keepBits(dy, !(y[i] <= 0.f));
}

template <bool Relu>
SAESCOPE_CLONES void backwardSums(const float* __restrict dy, const float* __restrict y,
                                  const float* __restrict x, int64_t c, int64_t r0, int64_t r1,
                                  const float* __restrict mean, double* __restrict sg,
                                  double* __restrict sgx) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t o = r * c;
    for (int64_t j = 0; j < c; ++j) {
      const float g = passed<Relu>(dy[o + j], y, o + j);
      sg[j] += g;
      sgx[j] += static_cast<double>(g) * (x[o + j] - mean[j]);
    }
  }
}

template <bool Relu, bool Res>
SAESCOPE_CLONES void backwardInput(const float* __restrict dy, const float* __restrict y,
                                   const float* __restrict x, int64_t c, int64_t r0, int64_t r1,
                                   const float* __restrict a, const float* __restrict gm,
                                   const float* __restrict k, const float* __restrict mean,
                                   float* __restrict dx, float* __restrict dres) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t o = r * c;
    for (int64_t j = 0; j < c; ++j) {
      const float g = passed<Relu>(dy[o + j], y, o + j);
      dx[o + j] = a[j] * (g - gm[j]) - k[j] * (x[o + j] - mean[j]);
      if constexpr (Res) dres[o + j] = g;
    }
  }
}
}  // namespace

void bnBackwardSums(const float* dy, const float* y, const float* x, int64_t c, int64_t r0,
                    int64_t r1, const float* mean, double* sg, double* sgx) {
  if (y)
    backwardSums<true>(dy, y, x, c, r0, r1, mean, sg, sgx);
  else
    backwardSums<false>(dy, y, x, c, r0, r1, mean, sg, sgx);
}

void bnBackwardInput(const float* dy, const float* y, const float* x, int64_t c, int64_t r0,
                     int64_t r1, const float* a, const float* gm, const float* k, const float* mean,
                     float* dx, float* dres) {
  withFlags(y != nullptr, dres != nullptr, [&](auto Relu, auto Res) {
    backwardInput<Relu, Res>(dy, y, x, c, r0, r1, a, gm, k, mean, dx, dres);
  });
}

// ---- NCHW planes ----------------------------------------------------------------------------
namespace {
constexpr int64_t kLanes = 16;

// Two sums over one plane in kLanes double lanes: term(i, a, b) adds element i's parts.
template <class Term>
inline void laneSums(int64_t hw, Term&& term, double* s1, double* s2) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= hw; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) term(i + l, a[l], b[l]);
  for (int64_t l = 0; i + l < hw; ++l) term(i + l, a[l], b[l]);
  double t1 = 0, t2 = 0;
  for (int64_t l = 0; l < kLanes; ++l) {
    t1 += a[l];
    t2 += b[l];
  }
  *s1 = t1;
  *s2 = t2;
}

SAESCOPE_CLONES void planeMomentsImpl(const float* __restrict x, int64_t hw, float shift,
                                      double* s1, double* s2) {
  laneSums(
      hw,
      [&](int64_t i, double& a, double& b) {
        const double v = x[i] - shift;
        a += v;
        b += v * v;
      },
      s1, s2);
}

template <bool Relu, bool Res>
SAESCOPE_CLONES void planeScaleShift(const float* __restrict x, const float* __restrict res,
                                     int64_t hw, float scale, float bias, float* __restrict y) {
  for (int64_t i = 0; i < hw; ++i) {
    float v = x[i] * scale + bias;
    if constexpr (Res) v += res[i];
    if constexpr (Relu) v = v < 0.f ? 0.f : v;
    y[i] = v;
  }
}

template <bool Relu>
SAESCOPE_CLONES void planeSums(const float* __restrict dy, const float* __restrict y,
                               const float* __restrict x, int64_t hw, float mean, double* sg,
                               double* sgx) {
  laneSums(
      hw,
      [&](int64_t i, double& a, double& b) {
        const float g = passed<Relu>(dy[i], y, i);
        a += g;
        b += static_cast<double>(g) * (x[i] - mean);
      },
      sg, sgx);
}

template <bool Relu, bool Res>
SAESCOPE_CLONES void planeInput(const float* __restrict dy, const float* __restrict y,
                                const float* __restrict x, int64_t hw, float a, float gm, float k,
                                float mean, float* __restrict dx, float* __restrict dres) {
  for (int64_t i = 0; i < hw; ++i) {
    const float g = passed<Relu>(dy[i], y, i);
    dx[i] = a * (g - gm) - k * (x[i] - mean);
    if constexpr (Res) dres[i] = g;
  }
}
}  // namespace

void planeMoments(const float* x, int64_t hw, float shift, double* s1, double* s2) {
  planeMomentsImpl(x, hw, shift, s1, s2);
}

void planeScaleShiftAct(const float* x, const float* res, int64_t hw, float scale, float bias,
                        bool relu, float* y) {
  withFlags(relu, res != nullptr,
            [&](auto Relu, auto Res) { planeScaleShift<Relu, Res>(x, res, hw, scale, bias, y); });
}

void planeBackwardSums(const float* dy, const float* y, const float* x, int64_t hw, float mean,
                       double* sg, double* sgx) {
  if (y)
    planeSums<true>(dy, y, x, hw, mean, sg, sgx);
  else
    planeSums<false>(dy, y, x, hw, mean, sg, sgx);
}

void planeBackwardInput(const float* dy, const float* y, const float* x, int64_t hw, float a,
                        float gm, float k, float mean, float* dx, float* dres) {
  withFlags(y != nullptr, dres != nullptr, [&](auto Relu, auto Res) {
    planeInput<Relu, Res>(dy, y, x, hw, a, gm, k, mean, dx, dres);
  });
}

}  // namespace engine::kernels
