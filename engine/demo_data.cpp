// engine/demo_data.cpp — synthetic faces with known factors, written in CelebA's layout.
//
// [SECTION] Random numbers        splitmix64, one stream per image
// [SECTION] Colours and shapes    signed distance functions in the face frame
// [SECTION] Canvas                anti-aliased compositing of SDF shapes (analytic coverage)
// [SECTION] Face parameters       every random choice of one image, drawn in a fixed order
// [SECTION] Face rendering        background, clutter, body, head, features, hair, hat, glasses
// [SECTION] PNG writer            a small fast encoder (fixed-Huffman deflate)
// [SECTION] Public API            names, rendering, the parallel writer
#include "demo_data.h"

#include <fcntl.h>
#include <stb_image_write.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "error.h"
#include "fsutil.h"

namespace fs = std::filesystem;

namespace engine {

namespace {

// ---------------------------------------------------------------------------------------------
// [SECTION] Random numbers
// ---------------------------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A tiny generator whose output is the same on every platform and standard library (the
// std::*_distribution classes are not).
class Rng {
 public:
  Rng(uint64_t seed, int64_t index) {
    uint64_t a = seed;
    uint64_t b = static_cast<uint64_t>(index) ^ 0xD1B54A32D192ED03ull;
    m_state = splitmix64(a) ^ (splitmix64(b) * 0x9E3779B97F4A7C15ull);
    splitmix64(m_state);
  }
  uint64_t next() { return splitmix64(m_state); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  bool chance(double p) { return uniform() < p; }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t m_state = 0;
};

// ---------------------------------------------------------------------------------------------
// [SECTION] Colours and shapes
// ---------------------------------------------------------------------------------------------

struct Col {
  float r = 0, g = 0, b = 0;
};

Col operator*(Col c, float k) {
  return {c.r * k, c.g * k, c.b * k};
}
Col mix(Col a, Col b, float t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
Col clampCol(Col c) {
  return {std::clamp(c.r, 0.f, 1.f), std::clamp(c.g, 0.f, 1.f), std::clamp(c.b, 0.f, 1.f)};
}

// h in degrees, s and v in [0, 1].
Col hsv(double h, double s, double v) {
  h = std::fmod(h, 360.0);
  if (h < 0) h += 360.0;
  const double c = v * s;
  const double hp = h / 60.0;
  const double x = c * (1 - std::fabs(std::fmod(hp, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  if (hp < 1)
    r = c, g = x;
  else if (hp < 2)
    r = x, g = c;
  else if (hp < 3)
    g = c, b = x;
  else if (hp < 4)
    g = x, b = c;
  else if (hp < 5)
    r = x, b = c;
  else
    r = c, b = x;
  const double m = v - c;
  return {static_cast<float>(r + m), static_cast<float>(g + m), static_cast<float>(b + m)};
}

double hueOf(Col c) {
  const float mx = std::max({c.r, c.g, c.b}), mn = std::min({c.r, c.g, c.b});
  const float d = mx - mn;
  if (d <= 1e-6f) return 0;
  double h;
  if (mx == c.r)
    h = 60.0 * std::fmod((c.g - c.b) / d, 6.0);
  else if (mx == c.g)
    h = 60.0 * ((c.b - c.r) / d + 2.0);
  else
    h = 60.0 * ((c.r - c.g) / d + 4.0);
  return h < 0 ? h + 360.0 : h;
}

// Signed distances (negative inside) in face-frame units. The ellipse one is the usual first-order
// approximation, exact on the boundary, which is all that anti-aliasing needs.
inline float sdEllipse(float x, float y, float rx, float ry) {
  const float ax = x / rx, ay = y / ry;
  const float k0 = std::sqrt(ax * ax + ay * ay);
  const float bx = ax / rx, by = ay / ry;
  const float k1 = std::sqrt(bx * bx + by * by);
  if (k1 < 1e-12f) return -std::min(rx, ry);
  return k0 * (k0 - 1.f) / k1;
}

inline float sdCircle(float x, float y, float r) {
  return std::sqrt(x * x + y * y) - r;
}

// Box with half sizes (hx, hy) and corner radius r.
inline float sdBox(float x, float y, float hx, float hy, float r) {
  const float qx = std::fabs(x) - hx + r, qy = std::fabs(y) - hy + r;
  const float ox = std::max(qx, 0.f), oy = std::max(qy, 0.f);
  return std::sqrt(ox * ox + oy * oy) + std::min(std::max(qx, qy), 0.f) - r;
}

inline float sdSegment(float px, float py, float ax, float ay, float bx, float by) {
  const float pax = px - ax, pay = py - ay, bax = bx - ax, bay = by - ay;
  const float l2 = bax * bax + bay * bay;
  const float h = l2 > 0 ? std::clamp((pax * bax + pay * bay) / l2, 0.f, 1.f) : 0.f;
  const float dx = pax - bax * h, dy = pay - bay * h;
  return std::sqrt(dx * dx + dy * dy);
}

// A quadratic curve through a, m (at t = 0.5) and c, as a polyline; distance to it.
struct Curve {
  static constexpr int kPts = 9;
  float x[kPts], y[kPts];
  float x0, y0, x1, y1;  // bounding box
  Curve(float ax, float ay, float mx, float my, float cx, float cy) {
    const float bx = 2 * mx - 0.5f * (ax + cx), by = 2 * my - 0.5f * (ay + cy);
    for (int i = 0; i < kPts; ++i) {
      const float t = static_cast<float>(i) / (kPts - 1), s = 1 - t;
      x[i] = s * s * ax + 2 * s * t * bx + t * t * cx;
      y[i] = s * s * ay + 2 * s * t * by + t * t * cy;
    }
    x0 = *std::min_element(x, x + kPts), x1 = *std::max_element(x, x + kPts);
    y0 = *std::min_element(y, y + kPts), y1 = *std::max_element(y, y + kPts);
  }
  float dist(float px, float py) const {
    float d = 1e9f;
    for (int i = 0; i + 1 < kPts; ++i)
      d = std::min(d, sdSegment(px, py, x[i], y[i], x[i + 1], y[i + 1]));
    return d;
  }
};

// ---------------------------------------------------------------------------------------------
// [SECTION] Canvas
// ---------------------------------------------------------------------------------------------

// A similarity transform from a drawing frame (u, v) to pixels: x = cx + k (u c + v s),
// y = cy + k (-u s + v c). Positive angles turn the drawing counter-clockwise on screen.
struct Frame {
  double cx = 0, cy = 0, k = 1, c = 1, s = 0;
  static Frame make(int size, double scale, double rotDeg, double offX, double offY) {
    Frame f;
    f.cx = size * (0.5 + offX);
    f.cy = size * (0.5 + offY);
    f.k = 0.5 * size * scale;
    const double a = rotDeg * M_PI / 180.0;
    f.c = std::cos(a);
    f.s = std::sin(a);
    return f;
  }
  void toPixel(double u, double v, double* x, double* y) const {
    *x = cx + k * (u * c + v * s);
    *y = cy + k * (-u * s + v * c);
  }
};

struct BBox {
  float u0, v0, u1, v1;
};

class Canvas {
 public:
  explicit Canvas(int size) : m_n(size), m_px(static_cast<size_t>(size) * size * 3, 0.f) {}
  int size() const { return m_n; }

  // Vertical gradient over the whole canvas, from `top` to `bottom`.
  void gradient(Col top, Col bottom) {
    for (int y = 0; y < m_n; ++y) {
      const Col c = mix(top, bottom, (y + 0.5f) / m_n);
      float* p = &m_px[static_cast<size_t>(y) * m_n * 3];
      for (int x = 0; x < m_n; ++x, p += 3) p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
  }

  // Composites `col` with opacity `alpha` over the shape sdf(u, v) < 0, whose support lies in
  // `bb` (frame units). Coverage is analytic: a linear ramp one pixel (or `featherPx`) wide
  // across the boundary, which is what box-filtered supersampling converges to for straight edges.
  template <class Sdf>
  void fill(const Frame& f, BBox bb, Col col, float alpha, Sdf&& sdf, float featherPx = 1.f) {
    double xmin = 1e30, xmax = -1e30, ymin = 1e30, ymax = -1e30;
    const double cu[4] = {bb.u0, bb.u1, bb.u0, bb.u1}, cv[4] = {bb.v0, bb.v0, bb.v1, bb.v1};
    for (int i = 0; i < 4; ++i) {
      double x, y;
      f.toPixel(cu[i], cv[i], &x, &y);
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    const double pad = 1.0 + featherPx;
    const int x0 = std::max(0, static_cast<int>(std::floor(xmin - pad)));
    const int x1 = std::min(m_n - 1, static_cast<int>(std::ceil(xmax + pad)));
    const int y0 = std::max(0, static_cast<int>(std::floor(ymin - pad)));
    const int y1 = std::min(m_n - 1, static_cast<int>(std::ceil(ymax + pad)));
    if (x0 > x1 || y0 > y1) return;
    // Inverse transform, stepped incrementally along a row.
    const float duDx = static_cast<float>(f.c / f.k), dvDx = static_cast<float>(f.s / f.k);
    const float kpx = static_cast<float>(f.k) / std::max(1.f, featherPx);
    for (int y = y0; y <= y1; ++y) {
      const double dx = (x0 + 0.5 - f.cx) / f.k, dy = (y + 0.5 - f.cy) / f.k;
      float u = static_cast<float>(dx * f.c - dy * f.s);
      float v = static_cast<float>(dx * f.s + dy * f.c);
      float* p = &m_px[(static_cast<size_t>(y) * m_n + x0) * 3];
      for (int x = x0; x <= x1; ++x, p += 3, u += duDx, v += dvDx) {
        float a = 0.5f - sdf(u, v) * kpx;
        if (a <= 0.f) continue;
        a = std::min(a, 1.f) * alpha;
        p[0] += (col.r - p[0]) * a;
        p[1] += (col.g - p[1]) * a;
        p[2] += (col.b - p[2]) * a;
      }
    }
  }

  void toRgb8(uint8_t* out) const {
    for (size_t i = 0; i < m_px.size(); ++i)
      out[i] = static_cast<uint8_t>(std::clamp(m_px[i], 0.f, 1.f) * 255.f + 0.5f);
  }

 private:
  int m_n;
  std::vector<float> m_px;
};

// ---------------------------------------------------------------------------------------------
// [SECTION] Face parameters
// ---------------------------------------------------------------------------------------------

enum Attr {
  kBlackHair,
  kBlondHair,
  kBrownHair,
  kGrayHair,
  kBald,
  kBangs,
  kEyeglasses,
  kWearingHat,
  kSmiling,
  kMouthOpen,
  kPaleSkin,
  kNoBeard,
  kLipstick,
  kRosyCheeks,
  kNarrowEyes,
  kHeavyMakeup,
  kNumAttrs
};

const char* const kAttrNames[kNumAttrs] = {
    "Black_Hair",  "Blond_Hair", "Brown_Hair",       "Gray_Hair",   "Bald",
    "Bangs",       "Eyeglasses", "Wearing_Hat",      "Smiling",     "Mouth_Slightly_Open",
    "Pale_Skin",   "No_Beard",   "Wearing_Lipstick", "Rosy_Cheeks", "Narrow_Eyes",
    "Heavy_Makeup"};

enum Factor {
  kSkinTone,
  kHairHue,
  kHairLength,
  kEyeColor,
  kFaceWidth,
  kBackgroundHue,
  kClutter,
  kRotationDeg,
  kScale,
  kOffsetX,
  kOffsetY,
  kNumFactors
};

const char* const kFactorNames[kNumFactors] = {
    "skin_tone", "hair_hue",     "hair_length", "eye_color", "face_width", "background_hue",
    "clutter",   "rotation_deg", "scale",       "offset_x",  "offset_y"};
// Decimals in the CSV; the renderer uses the rounded values, so the CSV is exact.
const int kFactorDecimals[kNumFactors] = {4, 2, 4, 0, 4, 2, 0, 3, 4, 4, 4};

double roundTo(double x, int decimals) {
  const double p = std::pow(10.0, decimals);
  return std::round(x * p) / p;
}

enum HairTone { kToneBlack, kToneBrown, kToneBlond, kToneGray, kToneRed };

struct ClutterShape {
  int kind;  // 0 disc, 1 rotated box, 2 triangle, 3 ring
  float x, y, r, angle, aspect;
  Col col;
  float alpha;
};

constexpr int kMaxClutter = 8;

struct FaceParams {
  int attr[kNumAttrs];  // +1 / -1
  double fac[kNumFactors];
  Col bg, skin, hair, brow, lip, iris, clothing, hat, hatBand, frame, shadow, shadowEye;
  int hatStyle = 0;    // 0 beanie, 1 brimmed hat, 2 cap
  int glassStyle = 0;  // 0 rectangular, 1 round
  float hairVolume = 1, lensTint = 0.15f, gaze = 0, mouthWidth = 0.1f, browLift = 0;
  int nClutter = 0;
  ClutterShape clutter[kMaxClutter];
  bool has(Attr a) const { return attr[a] > 0; }
};

Col skinColour(double t) {
  static const Col kStops[] = {{0.98f, 0.87f, 0.80f}, {0.94f, 0.77f, 0.65f}, {0.82f, 0.62f, 0.47f},
                               {0.66f, 0.46f, 0.32f}, {0.45f, 0.30f, 0.21f}, {0.28f, 0.19f, 0.14f}};
  const double x = std::clamp(t, 0.0, 1.0) * 5.0;
  const int i = std::min(4, static_cast<int>(x));
  return mix(kStops[i], kStops[i + 1], static_cast<float>(x - i));
}

// Draws every random choice of image `index` in a fixed order, so one choice never shifts another.
FaceParams drawParams(uint64_t seed, int64_t index) {
  Rng rng(seed, index);
  FaceParams p;
  std::fill(p.attr, p.attr + kNumAttrs, -1);
  auto set = [&](Attr a, bool on) { p.attr[a] = on ? 1 : -1; };

  // Hair colour: one tone per face (CelebA's hair colours are nearly exclusive too).
  const double toneDraw = rng.uniform();
  const HairTone tone = toneDraw < 0.25   ? kToneBlack
                        : toneDraw < 0.52 ? kToneBrown
                        : toneDraw < 0.72 ? kToneBlond
                        : toneDraw < 0.85 ? kToneGray
                                          : kToneRed;
  set(kBlackHair, tone == kToneBlack);
  set(kBrownHair, tone == kToneBrown);
  set(kBlondHair, tone == kToneBlond);
  set(kGrayHair, tone == kToneGray);
  const bool bald = rng.chance(0.12);
  const bool bangs = rng.chance(0.26);
  set(kBald, bald);
  set(kBangs, bangs && !bald);
  set(kEyeglasses, rng.chance(0.22));
  set(kWearingHat, rng.chance(0.18));
  set(kSmiling, rng.chance(0.45));
  set(kMouthOpen, rng.chance(0.35));
  set(kPaleSkin, rng.chance(0.18));
  set(kNoBeard, !rng.chance(0.22));
  set(kLipstick, rng.chance(0.30));
  set(kRosyCheeks, rng.chance(0.22));
  set(kNarrowEyes, rng.chance(0.20));
  set(kHeavyMakeup, rng.chance(0.20));

  // Continuous factors.
  const double skinT = p.has(kPaleSkin) ? rng.uniform(0.0, 0.08) : rng.uniform(0.16, 1.0);
  const float hairJitter = static_cast<float>(rng.uniform());
  Col hair;
  switch (tone) {
    case kToneBlack:
      hair = mix({0.07f, 0.06f, 0.06f}, {0.16f, 0.12f, 0.10f}, hairJitter);
      break;
    case kToneBrown:
      hair = mix({0.30f, 0.19f, 0.11f}, {0.50f, 0.33f, 0.19f}, hairJitter);
      break;
    case kToneBlond:
      hair = mix({0.84f, 0.70f, 0.44f}, {0.96f, 0.87f, 0.62f}, hairJitter);
      break;
    case kToneGray:
      hair = mix({0.60f, 0.60f, 0.61f}, {0.85f, 0.85f, 0.84f}, hairJitter);
      break;
    case kToneRed:
      hair = mix({0.55f, 0.20f, 0.09f}, {0.78f, 0.38f, 0.16f}, hairJitter);
      break;
  }
  const double hairLen = rng.uniform();
  const double eyeDraw = rng.uniform();
  const int eyeColor = eyeDraw < 0.5 ? 0 : eyeDraw < 0.7 ? 1 : eyeDraw < 0.85 ? 2 : 3;
  const double faceWidth = rng.uniform(0.9, 1.1);
  const double bgHue = rng.uniform(0.0, 360.0);
  const double bgSat = rng.uniform(0.12, 0.45), bgVal = rng.uniform(0.5, 0.92);
  const int nClutter = rng.below(kMaxClutter + 1);
  const double rot = rng.uniform(-20.0, 20.0);
  const double scale = rng.uniform(0.95, 1.2);
  const double offX = rng.uniform(-0.06, 0.06), offY = rng.uniform(-0.05, 0.05);

  p.fac[kSkinTone] = skinT;
  p.fac[kHairHue] = hueOf(hair);
  p.fac[kHairLength] = bald ? 0.0 : hairLen;
  p.fac[kEyeColor] = eyeColor;
  p.fac[kFaceWidth] = faceWidth;
  p.fac[kBackgroundHue] = bgHue;
  p.fac[kClutter] = nClutter;
  p.fac[kRotationDeg] = rot;
  p.fac[kScale] = scale;
  p.fac[kOffsetX] = offX;
  p.fac[kOffsetY] = offY;
  for (int i = 0; i < kNumFactors; ++i) p.fac[i] = roundTo(p.fac[i], kFactorDecimals[i]);

  p.bg = hsv(bgHue, bgSat, bgVal);
  p.skin = skinColour(p.fac[kSkinTone]);
  p.hair = hair;
  p.brow = tone == kToneBlond || tone == kToneGray ? hair * 0.72f : hair * 0.85f;
  p.lip = p.has(kLipstick)
              ? hsv(rng.uniform(335.0, 365.0), rng.uniform(0.7, 0.9), rng.uniform(0.55, 0.8))
              : clampCol({p.skin.r * 0.86f, p.skin.g * 0.58f, p.skin.b * 0.58f});
  static const Col kIris[4] = {
      {0.33f, 0.20f, 0.10f}, {0.25f, 0.47f, 0.78f}, {0.30f, 0.55f, 0.30f}, {0.52f, 0.56f, 0.60f}};
  p.iris = kIris[eyeColor];
  p.clothing = hsv(rng.uniform(0.0, 360.0), rng.uniform(0.25, 0.8), rng.uniform(0.25, 0.8));
  p.hat = hsv(rng.uniform(0.0, 360.0), rng.uniform(0.65, 0.9), rng.uniform(0.45, 0.85));
  p.hatBand = p.hat * 0.6f;
  p.hatStyle = rng.below(3);
  p.glassStyle = rng.below(2);
  static const Col kFrames[4] = {
      {0.05f, 0.05f, 0.05f}, {0.22f, 0.12f, 0.06f}, {0.08f, 0.10f, 0.22f}, {0.30f, 0.06f, 0.06f}};
  p.frame = kFrames[rng.below(4)];
  p.lensTint =
      static_cast<float>(rng.chance(0.15) ? rng.uniform(0.55, 0.8) : rng.uniform(0.1, 0.25));
  p.hairVolume = static_cast<float>(rng.uniform(0.96, 1.08));
  p.gaze = static_cast<float>(rng.uniform(-0.015, 0.015));
  p.mouthWidth = static_cast<float>(rng.uniform(0.09, 0.11));
  p.browLift = static_cast<float>(rng.uniform(-0.01, 0.012));
  p.shadow = p.skin * 0.78f;
  static const double kShadowHues[4] = {280, 220, 320, 170};
  p.shadowEye = hsv(kShadowHues[rng.below(4)], rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.75));

  p.nClutter = nClutter;
  for (int i = 0; i < kMaxClutter; ++i) {
    ClutterShape& c = p.clutter[i];
    c.kind = rng.below(4);
    c.x = static_cast<float>(rng.uniform(-1.0, 1.0));
    c.y = static_cast<float>(rng.uniform(-1.0, 1.0));
    c.r = static_cast<float>(rng.uniform(0.08, 0.3));
    c.angle = static_cast<float>(rng.uniform(0.0, M_PI));
    c.aspect = static_cast<float>(rng.uniform(0.4, 1.0));
    c.col = hsv(rng.uniform(0.0, 360.0), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.95));
    c.alpha = static_cast<float>(rng.uniform(0.6, 1.0));
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// [SECTION] Face rendering
// ---------------------------------------------------------------------------------------------
// Face frame: u right, v down; the head is an egg about 0.72 wide and 0.92 tall centred near the
// origin; eyes at v = 0, mouth at v = 0.29. Everything of the person is drawn in this frame and
// then turned, scaled and shifted together; the background and its clutter are not.

constexpr float kHeadCy = 0.02f, kHeadRy = 0.46f;
constexpr float kEyeY = 0.0f, kMouthY = 0.29f;

// The head outline: an ellipse whose width narrows towards the chin.
inline float sdHead(float u, float v, float hx) {
  const float t = std::clamp((v - kHeadCy) / kHeadRy, 0.f, 1.f);
  const float w = hx * (1.f - 0.2f * t * t);
  return sdEllipse(u, v - kHeadCy, w, kHeadRy);
}

void drawClutter(Canvas& cv, const FaceParams& p) {
  const Frame img = Frame::make(cv.size(), 1.0, 0.0, 0.0, 0.0);
  for (int i = 0; i < p.nClutter; ++i) {
    const ClutterShape& c = p.clutter[i];
    const BBox bb{c.x - c.r, c.y - c.r, c.x + c.r, c.y + c.r};
    const float ca = std::cos(c.angle), sa = std::sin(c.angle);
    switch (c.kind) {
      case 0:
        cv.fill(img, bb, c.col, c.alpha,
                [&](float u, float v) { return sdCircle(u - c.x, v - c.y, c.r); });
        break;
      case 1:
        cv.fill(img, bb, c.col, c.alpha, [&](float u, float v) {
          const float x = u - c.x, y = v - c.y;
          return sdBox(x * ca + y * sa, -x * sa + y * ca, c.r * 0.7f, c.r * 0.7f * c.aspect, 0.f);
        });
        break;
      case 2: {
        // Equilateral-ish triangle: the max of three half-planes.
        float nx[3], ny[3];
        for (int k = 0; k < 3; ++k) {
          const float a = c.angle + static_cast<float>(k * 2.0 * M_PI / 3.0);
          nx[k] = std::cos(a), ny[k] = std::sin(a);
        }
        cv.fill(img, bb, c.col, c.alpha, [&](float u, float v) {
          const float x = u - c.x, y = v - c.y;
          float d = -1e9f;
          for (int k = 0; k < 3; ++k) d = std::max(d, x * nx[k] + y * ny[k] - c.r * 0.5f);
          return d;
        });
        break;
      }
      default:
        cv.fill(img, bb, c.col, c.alpha, [&](float u, float v) {
          return std::fabs(sdCircle(u - c.x, v - c.y, c.r * 0.8f)) - c.r * 0.15f;
        });
        break;
    }
  }
}

// Hair above the face: a cap around the head minus the face opening (which bangs fill above the
// brows); bald heads keep only a fringe at the sides.
float sdTopHair(const FaceParams& p, float u, float v, float fw) {
  const float vol = p.hairVolume;
  const float cap = sdEllipse(u, v + 0.06f, 0.415f * fw * vol, 0.53f * vol);
  const float opening = sdEllipse(u, v - 0.10f, 0.33f * fw, 0.42f);
  if (p.has(kBald)) {
    // A fringe over the ears that thins out towards the crown.
    const float band = sdEllipse(std::fabs(u) - 0.42f * fw, v + 0.04f, 0.14f, 0.13f);
    return std::max(std::max(cap, -opening), band);
  }
  float keep = -opening;  // outside the face opening
  if (p.has(kBangs)) {
    const float edge = -0.16f + 0.05f * (u / 0.3f) * (u / 0.3f) + 0.012f * std::sin(u * 38.f);
    keep = std::min(keep, v - edge);
  }
  const float longHair = p.fac[kHairLength] > 0.35 ? 1.f : 0.f;
  // Short hair stops at the temples; longer hair comes down beside the face.
  const float bottom = v - (0.0f + longHair * 0.2f);
  return std::max(std::max(cap, keep), bottom);
}

void drawFace(Canvas& cv, const FaceParams& p) {
  const int n = cv.size();
  const Frame f =
      Frame::make(n, p.fac[kScale], p.fac[kRotationDeg], p.fac[kOffsetX], p.fac[kOffsetY]);
  const float fw = static_cast<float>(p.fac[kFaceWidth]);
  const float hx = 0.35f * fw;
  const float hairLen = static_cast<float>(p.fac[kHairLength]);
  const bool bald = p.has(kBald);

  // Body: shoulders, long hair behind the neck, neck with a shadow under the chin.
  cv.fill(f, {-1.0f, 0.55f, 1.0f, 1.6f}, p.clothing, 1.f,
          [&](float u, float v) { return sdEllipse(u, v - 1.08f, 0.88f, 0.44f); });
  cv.fill(f, {-0.3f, 0.55f, 0.3f, 0.85f}, p.clothing * 0.7f, 1.f, [&](float u, float v) {
    return std::max(sdEllipse(u, v - 1.08f, 0.88f, 0.44f),
                    sdEllipse(u, v - 0.66f, 0.2f, 0.14f) - 0.025f);
  });
  if (!bald && hairLen > 0.35f) {
    const float vEnd = 0.3f + 0.7f * hairLen;
    const float cy = 0.5f * (vEnd - 0.15f), hy = 0.5f * (vEnd + 0.15f);
    const float wx = 0.47f * fw;
    cv.fill(f, {-wx, -0.2f, wx, vEnd + 0.02f}, p.hair * 0.8f, 1.f,
            [&](float u, float v) { return sdBox(u, v - cy, wx, hy, 0.16f); });
  }
  cv.fill(f, {-0.22f, 0.2f, 0.22f, 0.85f}, p.skin * 0.86f, 1.f, [&](float u, float v) {
    return std::min(sdBox(u, v - 0.5f, 0.15f * fw, 0.24f, 0.05f),
                    sdEllipse(u, v - 0.66f, 0.2f, 0.14f));
  });
  cv.fill(
      f, {-0.25f, 0.3f, 0.25f, 0.6f}, p.skin * 0.62f, 0.55f,
      [&](float u, float v) { return sdEllipse(u, v - 0.44f, 0.2f, 0.08f); }, 2.5f);

  // Ears and head.
  for (int s = -1; s <= 1; s += 2) {
    const float ex = s * (hx + 0.01f);
    cv.fill(f, {ex - 0.07f, -0.08f, ex + 0.07f, 0.16f}, p.skin * 0.92f, 1.f,
            [&](float u, float v) { return sdEllipse(u - ex, v - 0.04f, 0.055f, 0.09f); });
    cv.fill(
        f, {ex - 0.05f, -0.04f, ex + 0.05f, 0.12f}, p.skin * 0.72f, 0.6f,
        [&](float u, float v) { return sdEllipse(u - ex - s * 0.01f, v - 0.05f, 0.022f, 0.05f); });
  }
  cv.fill(f, {-hx, kHeadCy - kHeadRy, hx, kHeadCy + kHeadRy}, p.skin, 1.f,
          [&](float u, float v) { return sdHead(u, v, hx); });
  // Soft shading inside the outline (a band 0.07 wide) gives the head some volume.
  cv.fill(
      f, {-hx, -0.45f, hx, 0.5f}, p.skin * 0.85f, 0.5f,
      [&](float u, float v) {
        const float d = sdHead(u, v, hx);
        return std::max(d, -d - 0.07f);
      },
      3.f);
  if (bald)
    cv.fill(
        f, {-0.25f, -0.45f, 0.15f, -0.2f}, mix(p.skin, {1, 1, 1}, 0.35f), 0.5f,
        [&](float u, float v) { return sdEllipse(u + 0.07f, v + 0.32f, 0.12f, 0.06f); }, 2.f);

  // Cheeks, nose.
  if (p.has(kRosyCheeks))
    for (int s = -1; s <= 1; s += 2)
      cv.fill(
          f, {s * 0.2f - 0.1f, 0.05f, s * 0.2f + 0.1f, 0.25f}, {0.88f, 0.32f, 0.36f}, 0.55f,
          [&](float u, float v) { return sdEllipse(u - s * 0.2f, v - 0.15f, 0.075f, 0.055f); },
          2.5f);
  cv.fill(
      f, {0.0f, 0.0f, 0.07f, 0.17f}, p.shadow, 0.45f,
      [&](float u, float v) { return sdSegment(u, v, 0.03f, 0.03f, 0.045f, 0.145f) - 0.012f; },
      1.5f);
  for (int s = -1; s <= 1; s += 2)
    cv.fill(f, {s * 0.03f - 0.03f, 0.14f, s * 0.03f + 0.03f, 0.2f}, p.skin * 0.55f, 0.7f,
            [&](float u, float v) { return sdEllipse(u - s * 0.028f, v - 0.168f, 0.016f, 0.01f); });

  // Beard: the jaw below the cheeks, and a moustache.
  if (!p.has(kNoBeard)) {
    const Col beard = p.brow;
    cv.fill(f, {-hx, 0.08f, hx, kHeadCy + kHeadRy + 0.02f}, beard, 0.96f, [&](float u, float v) {
      const float jaw = sdHead(u, v, hx) - 0.012f;
      const float cheeks = sdEllipse(u, v - 0.03f, 0.26f * fw, 0.2f);
      return std::max(std::max(jaw, -cheeks), 0.1f - v);
    });
    const Curve mst(-0.14f, kMouthY - 0.01f, 0.f, kMouthY - 0.06f, 0.14f, kMouthY - 0.01f);
    cv.fill(f, {-0.18f, kMouthY - 0.1f, 0.18f, kMouthY + 0.03f}, beard, 0.96f,
            [&](float u, float v) { return mst.dist(u, v) - 0.03f; });
  }

  // Mouth: a centre line yc(u) that dips (neutral) or lifts at the corners (smile).
  {
    const bool smile = p.has(kSmiling), open = p.has(kMouthOpen);
    const float w = p.mouthWidth + (smile ? 0.03f : 0.f);
    const float lift = smile ? 0.025f : 0.f, dip = smile ? 0.02f : 0.004f;
    auto yc = [&](float u) {
      const float t = std::clamp(u / w, -1.f, 1.f);
      return kMouthY - lift + (lift + dip) * (1.f - t * t);
    };
    const BBox bb{-w - 0.05f, kMouthY - 0.08f, w + 0.05f, kMouthY + 0.12f};
    const Curve line(-w, yc(-w), 0.f, yc(0.f), w, yc(w));
    if (!open) {
      cv.fill(f, bb, p.lip, 1.f, [&](float u, float v) {
        const float shape = sdEllipse(u, v - yc(u), w, 0.026f);
        return std::min(shape, line.dist(u, v) - 0.012f);
      });
      cv.fill(f, bb, p.lip * 0.42f, 1.f,
              [&](float u, float v) { return line.dist(u, v) - 0.007f; });
    } else {
      const float top = smile ? 0.006f : 0.02f, bottom = smile ? 0.075f : 0.055f;
      auto opening = [&](float u, float v) {
        const float t = std::clamp(u / w, -1.f, 1.f), q = 1.f - t * t;
        const float c = yc(u);
        return 0.85f * std::max(std::max(c - top * q - v, v - c - bottom * q), std::fabs(u) - w);
      };
      cv.fill(f, bb, p.lip, 1.f, [&](float u, float v) { return opening(u, v) - 0.018f; });
      cv.fill(f, bb, {0.2f, 0.05f, 0.06f}, 1.f, opening);
      if (smile)
        cv.fill(f, bb, {0.95f, 0.94f, 0.9f}, 1.f, [&](float u, float v) {
          const float t = std::clamp(u / w, -1.f, 1.f);
          return std::max(opening(u, v), v - (yc(u) - top * (1.f - t * t) + 0.022f));
        });
    }
  }

  // Eyes, make-up and brows.
  const float eyeRy = p.has(kNarrowEyes) ? 0.012f : 0.036f;
  for (int s = -1; s <= 1; s += 2) {
    const float ex = s * 0.15f * fw, ey = kEyeY;
    if (p.has(kHeavyMakeup))
      cv.fill(
          f, {ex - 0.11f, ey - 0.11f, ex + 0.11f, ey + 0.04f}, p.shadowEye, 0.8f,
          [&](float u, float v) { return sdEllipse(u - ex, v - ey + 0.035f, 0.095f, 0.055f); },
          1.5f);
    cv.fill(f, {ex - 0.08f, ey - 0.05f, ex + 0.08f, ey + 0.05f}, {0.94f, 0.93f, 0.9f}, 1.f,
            [&](float u, float v) { return sdEllipse(u - ex, v - ey, 0.068f, eyeRy); });
    const float ix = ex + p.gaze;
    cv.fill(f, {ix - 0.04f, ey - 0.04f, ix + 0.04f, ey + 0.04f}, p.iris, 1.f,
            [&](float u, float v) {
              return std::max(sdCircle(u - ix, v - ey, 0.032f),
                              sdEllipse(u - ex, v - ey, 0.068f, eyeRy));
            });
    cv.fill(f, {ix - 0.02f, ey - 0.02f, ix + 0.02f, ey + 0.02f}, {0.03f, 0.03f, 0.03f}, 1.f,
            [&](float u, float v) {
              return std::max(sdCircle(u - ix, v - ey, 0.014f),
                              sdEllipse(u - ex, v - ey, 0.068f, eyeRy));
            });
    const float liner = p.has(kHeavyMakeup) ? 0.013f : 0.008f;
    const Curve lid(ex - 0.075f, ey + 0.004f, ex, ey - eyeRy - 0.004f, ex + 0.075f, ey + 0.004f);
    cv.fill(f, {ex - 0.1f, ey - 0.07f, ex + 0.1f, ey + 0.03f}, {0.1f, 0.07f, 0.06f}, 1.f,
            [&](float u, float v) { return lid.dist(u, v) - liner; });
    const float by = -0.105f - p.browLift;
    const Curve brow(s * 0.065f, by + 0.012f, s * 0.15f, by - 0.022f, s * 0.235f, by + 0.008f);
    cv.fill(
        f, {std::min(s * 0.04f, s * 0.26f), by - 0.06f, std::max(s * 0.04f, s * 0.26f), by + 0.04f},
        p.brow, 1.f, [&](float u, float v) { return brow.dist(u, v) - 0.017f; });
  }

  // Hair on top (after the brows so that bangs cover the forehead), with a soft highlight.
  {
    const float bottom = bald ? 0.06f : hairLen > 0.35f ? 0.22f : 0.02f;
    cv.fill(f, {-0.46f * fw, -0.64f, 0.46f * fw, bottom}, p.hair, 1.f,
            [&](float u, float v) { return sdTopHair(p, u, v, fw); });
    if (!bald)
      cv.fill(
          f, {-0.28f, -0.51f, 0.08f, -0.35f}, mix(p.hair, {1, 1, 1}, 0.3f), 0.4f,
          [&](float u, float v) {
            return std::max(sdTopHair(p, u, v, fw), sdEllipse(u + 0.1f, v + 0.43f, 0.16f, 0.06f));
          },
          2.f);
  }

  // Hat.
  if (p.has(kWearingHat)) {
    switch (p.hatStyle) {
      case 0:  // beanie with a folded band
        cv.fill(f, {-0.5f, -0.9f, 0.5f, -0.15f}, p.hat, 1.f, [&](float u, float v) {
          return std::max(sdEllipse(u, v + 0.2f, 0.45f * fw, 0.64f), v + 0.2f);
        });
        cv.fill(f, {-0.5f, -0.4f, 0.5f, -0.15f}, p.hatBand, 1.f, [&](float u, float v) {
          return std::max(sdEllipse(u, v + 0.2f, 0.46f * fw, 0.66f), std::fabs(v + 0.26f) - 0.06f);
        });
        break;
      case 1:  // brimmed hat: crown and brim
        cv.fill(f, {-0.4f, -0.9f, 0.4f, -0.25f}, p.hat, 1.f,
                [&](float u, float v) { return sdBox(u, v + 0.58f, 0.31f * fw, 0.27f, 0.1f); });
        cv.fill(f, {-0.4f, -0.45f, 0.4f, -0.3f}, p.hatBand, 1.f,
                [&](float u, float v) { return sdBox(u, v + 0.38f, 0.31f * fw, 0.04f, 0.f); });
        cv.fill(f, {-0.7f, -0.42f, 0.7f, -0.24f}, p.hat * 0.85f, 1.f,
                [&](float u, float v) { return sdEllipse(u, v + 0.33f, 0.62f * fw, 0.07f); });
        break;
      default:  // cap with a visor seen from the front
        cv.fill(f, {-0.5f, -0.85f, 0.5f, -0.2f}, p.hat, 1.f, [&](float u, float v) {
          return std::max(sdEllipse(u, v + 0.25f, 0.44f * fw, 0.56f), v + 0.25f);
        });
        cv.fill(f, {-0.45f, -0.35f, 0.45f, -0.15f}, p.hatBand, 1.f, [&](float u, float v) {
          return std::max(sdEllipse(u, v + 0.25f, 0.4f * fw, 0.08f), -(v + 0.25f));
        });
        break;
    }
  }

  // Glasses: tinted lenses, frames, bridge and the arms towards the ears.
  if (p.has(kEyeglasses)) {
    const float lx = 0.15f * fw, hw = 0.095f, hh = 0.065f;
    auto lens = [&](float u, float v) {
      const float x = std::fabs(u) - lx, y = v - kEyeY;
      return p.glassStyle == 0 ? sdBox(x, y, hw, hh, 0.03f) : sdEllipse(x, y, hw, hh + 0.01f);
    };
    const BBox bb{-lx - hw - 0.03f, -0.1f, lx + hw + 0.03f, 0.1f};
    cv.fill(f, bb, {0.12f, 0.12f, 0.16f}, p.lensTint, lens);
    cv.fill(f, bb, p.frame, 1.f, [&](float u, float v) { return std::fabs(lens(u, v)) - 0.02f; });
    cv.fill(f, {-0.1f, -0.05f, 0.1f, 0.03f}, p.frame, 1.f, [&](float u, float v) {
      return sdSegment(u, v, -lx + hw, -0.015f, lx - hw, -0.015f) - 0.014f;
    });
    for (int s = -1; s <= 1; s += 2)
      cv.fill(f, {s * 0.3f - 0.1f, -0.06f, s * 0.3f + 0.1f, 0.03f}, p.frame, 1.f,
              [&](float u, float v) {
                return sdSegment(u, v, s * (lx + hw), -0.02f, s * (hx + 0.02f), -0.03f) - 0.013f;
              });
  }
}

void renderInto(const FaceParams& p, int size, uint8_t* rgb) {
  Canvas cv(size);
  cv.gradient(p.bg * 1.08f, p.bg * 0.86f);
  drawClutter(cv, p);
  drawFace(cv, p);
  cv.toRgb8(rgb);
}

// ---------------------------------------------------------------------------------------------
// [SECTION] PNG writer
// ---------------------------------------------------------------------------------------------
// A small PNG encoder (RFC 1950/1951, PNG spec): rows unfiltered, one deflate block with the fixed
// Huffman code, greedy LZ77 over a one-entry-per-bucket hash table. Flat-shaded cartoons compress
// to within a few percent of libstb's level-8 output at several times its speed, and nothing here
// touches process-global state (libstb's PNG settings are globals).

class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>* out) : m_out(out) {}
  // Appends the low `n` bits of `bits`, least significant first (n <= 32).
  void put(uint32_t bits, int n) {
    m_acc |= static_cast<uint64_t>(bits) << m_n;
    m_n += n;
    while (m_n >= 8) {
      m_out->push_back(static_cast<uint8_t>(m_acc));
      m_acc >>= 8;
      m_n -= 8;
    }
  }
  void flush() {
    if (m_n > 0) m_out->push_back(static_cast<uint8_t>(m_acc));
    m_acc = 0, m_n = 0;
  }

 private:
  std::vector<uint8_t>* m_out;
  uint64_t m_acc = 0;
  int m_n = 0;
};

struct DeflateTables {
  // Fixed literal/length code, bit-reversed for LSB-first output.
  uint16_t litCode[288];
  uint8_t litBits[288];
  // Match length 3..258 -> symbol offset (0..28), extra bits and base.
  uint8_t lenSym[259];
  static constexpr uint16_t kLenBase[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                            15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                            67, 83, 99, 115, 131, 163, 195, 227, 258};
  static constexpr uint8_t kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                            2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static constexpr uint16_t kDistBase[30] = {
      1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
      193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                             6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  uint8_t distCodeRev[30];  // 5-bit distance codes, bit-reversed
  uint32_t crc[256];

  static uint32_t reverse(uint32_t code, int bits) {
    uint32_t r = 0;
    for (int i = 0; i < bits; ++i) r |= ((code >> i) & 1u) << (bits - 1 - i);
    return r;
  }

  DeflateTables() {
    for (int s = 0; s < 288; ++s) {
      uint32_t code;
      int bits;
      if (s < 144)
        code = 0x30 + s, bits = 8;
      else if (s < 256)
        code = 0x190 + (s - 144), bits = 9;
      else if (s < 280)
        code = s - 256, bits = 7;
      else
        code = 0xC0 + (s - 280), bits = 8;
      litCode[s] = static_cast<uint16_t>(reverse(code, bits));
      litBits[s] = static_cast<uint8_t>(bits);
    }
    for (int sym = 0, len = 3; len <= 258; ++len) {
      while (sym < 28 && len >= kLenBase[sym + 1]) ++sym;
      lenSym[len] = static_cast<uint8_t>(sym);
    }
    for (int d = 0; d < 30; ++d) distCodeRev[d] = static_cast<uint8_t>(reverse(d, 5));
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      crc[n] = c;
    }
  }

  static int distSym(uint32_t d) {
    int lo = 0, hi = 29;  // the last base <= d
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (kDistBase[mid] <= d)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }
};

const DeflateTables& deflateTables() {
  static const DeflateTables tables;
  return tables;
}

inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void putBe32(std::vector<uint8_t>* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<uint8_t>(v >> s));
}

// Appends a PNG chunk: length, type, data, CRC of type and data.
void pngChunk(std::vector<uint8_t>* out, const char* type, const std::vector<uint8_t>& data) {
  const DeflateTables& t = deflateTables();
  putBe32(out, static_cast<uint32_t>(data.size()));
  const size_t crcFrom = out->size();
  out->insert(out->end(), type, type + 4);
  out->insert(out->end(), data.begin(), data.end());
  uint32_t c = 0xFFFFFFFFu;
  for (size_t k = crcFrom; k < out->size(); ++k) c = t.crc[(c ^ (*out)[k]) & 0xFF] ^ (c >> 8);
  putBe32(out, c ^ 0xFFFFFFFFu);
}

// Encodes RGB8 images as PNG files, reusing its buffers from one image to the next. One encoder
// per thread.
class PngEncoder {
 public:
  // RGB8 image (w x h, row-major) -> PNG file bytes in `out`.
  void encode(const uint8_t* rgb, int w, int h, std::vector<uint8_t>* out) {
    static const uint8_t kSignature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    const size_t stride = static_cast<size_t>(w) * 3;
    m_raw.resize((stride + 1) * h);
    for (int y = 0; y < h; ++y) {
      m_raw[y * (stride + 1)] = 0;  // filter: none (flat areas repeat the row above anyway)
      std::memcpy(&m_raw[y * (stride + 1) + 1], rgb + y * stride, stride);
    }
    m_z.clear();
    zlibCompress(m_raw.data(), m_raw.size(), &m_z);
    out->clear();
    out->insert(out->end(), kSignature, kSignature + 8);
    std::vector<uint8_t> ihdr;
    putBe32(&ihdr, static_cast<uint32_t>(w));
    putBe32(&ihdr, static_cast<uint32_t>(h));
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, deflate, adaptive filters, no interlace
    pngChunk(out, "IHDR", ihdr);
    pngChunk(out, "IDAT", m_z);
    pngChunk(out, "IEND", {});
  }

 private:
  // zlib stream (RFC 1950) of `in` with one fixed-Huffman deflate block.
  void zlibCompress(const uint8_t* in, size_t n, std::vector<uint8_t>* out) {
    const DeflateTables& t = deflateTables();
    constexpr int kHashBits = 14;
    constexpr uint32_t kWindow = 32768;
    std::vector<int32_t>& head = m_head;
    head.assign(size_t{1} << kHashBits, -1);
    out->push_back(0x78);  // deflate, 32K window
    out->push_back(0x01);  // no preset dictionary, (0x7801 % 31 == 0)
    BitWriter bw(out);
    bw.put(1, 1);  // final block
    bw.put(1, 2);  // fixed Huffman codes
    auto literal = [&](uint8_t b) { bw.put(t.litCode[b], t.litBits[b]); };
    auto hash = [](uint32_t v) { return (v * 2654435761u) >> (32 - kHashBits); };
    size_t i = 0;
    while (i < n) {
      if (i + 4 > n) {
        literal(in[i++]);
        continue;
      }
      const uint32_t v = load32(in + i);
      const uint32_t h = hash(v);
      const int32_t cand = head[h];
      head[h] = static_cast<int32_t>(i);
      if (cand < 0 || i - cand > kWindow || load32(in + cand) != v) {
        literal(in[i++]);
        continue;
      }
      size_t len = 4;
      const size_t maxLen = std::min<size_t>(258, n - i);
      while (len < maxLen && in[cand + len] == in[i + len]) ++len;
      const uint32_t dist = static_cast<uint32_t>(i - cand);
      const int ls = t.lenSym[len];
      bw.put(t.litCode[257 + ls], t.litBits[257 + ls]);
      if (DeflateTables::kLenExtra[ls])
        bw.put(static_cast<uint32_t>(len) - DeflateTables::kLenBase[ls],
               DeflateTables::kLenExtra[ls]);
      const int ds = DeflateTables::distSym(dist);
      bw.put(t.distCodeRev[ds], 5);
      if (DeflateTables::kDistExtra[ds])
        bw.put(dist - DeflateTables::kDistBase[ds], DeflateTables::kDistExtra[ds]);
      // Index the positions inside the match so later matches can start there.
      const size_t end = i + len;
      for (++i; i < end; ++i)
        if (i + 4 <= n) head[hash(load32(in + i))] = static_cast<int32_t>(i);
    }
    bw.put(t.litCode[256], t.litBits[256]);  // end of block
    bw.flush();
    uint32_t a = 1, b = 0;
    for (size_t k = 0; k < n;) {
      const size_t stop = std::min(n, k + 5552);  // largest run without overflow (zlib's NMAX)
      for (; k < stop; ++k) a += in[k], b += a;
      a %= 65521u, b %= 65521u;
    }
    const uint32_t adler = (b << 16) | a;
    for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<uint8_t>(adler >> s));
  }

  std::vector<uint8_t> m_raw, m_z;
  std::vector<int32_t> m_head;
};

// ---------------------------------------------------------------------------------------------
// [SECTION] Public API helpers: encoding, files, CSV
// ---------------------------------------------------------------------------------------------

void appendBytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const auto* b = static_cast<const uint8_t*>(data);
  out->insert(out->end(), b, b + size);
}

void encodeImage(const uint8_t* rgb, int size, bool png, PngEncoder* pngEncoder,
                 std::vector<uint8_t>* out) {
  out->clear();
  if (png) {
    pngEncoder->encode(rgb, size, size, out);
    return;
  }
  if (!stbi_write_jpg_to_func(appendBytes, out, size, size, 3, rgb, 95))
    throw Error("cannot encode a demo image as JPEG (" + std::to_string(size) + " px)");
}

void writeWholeFile(const std::string& path, const std::vector<uint8_t>& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw Error("cannot write " + path + ": " + why + " (is the disk full?)");
    }
    done += static_cast<size_t>(w);
  }
  if (::close(fd) != 0) throw Error("cannot write " + path + ": " + std::strerror(errno));
}

std::string imageName(int64_t index, const std::string& ext) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06lld.%s", static_cast<long long>(index + 1), ext.c_str());
  return buf;
}

// Locale-independent fixed-point formatting.
void appendFixed(std::string& s, double x, int decimals) {
  char buf[64];
  if (x == 0) x = 0;  // no "-0.0000"
  const auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::fixed, decimals);
  s.append(buf, r.ptr);
}

int partitionOf(int64_t index, int64_t count) {
  // Contiguous blocks like CelebA: first 80% train, next 10% val, the rest test.
  const int64_t trainEnd = (count * 8 + 5) / 10, valEnd = (count * 9 + 5) / 10;
  return index < trainEnd ? 0 : index < valEnd ? 1 : 2;
}

// Six-digit file names sort in index order, as CelebA's do.
constexpr int kMaxCount = 999999;

void removeQuietly(const fs::path& p) {
  removeTree(p.string());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// [SECTION] Public API
// ---------------------------------------------------------------------------------------------

nlohmann::json toJson(const DemoDataConfig& cfg) {
  return {{"out", cfg.out},   {"count", cfg.count},   {"size", cfg.size},
          {"seed", cfg.seed}, {"format", cfg.format}, {"threads", cfg.threads}};
}

std::vector<std::string> demoAttributeNames() {
  return {kAttrNames, kAttrNames + kNumAttrs};
}

std::vector<std::string> demoFactorNames() {
  return {kFactorNames, kFactorNames + kNumFactors};
}

void validateDemoDataConfig(const DemoDataConfig& cfg) {
  if (cfg.out.empty()) throw Error("--out: missing; give the folder to create, e.g. --out demo");
  if (cfg.count < 1 || cfg.count > kMaxCount)
    throw Error("--count " + std::to_string(cfg.count) + ": must be between 1 and " +
                std::to_string(kMaxCount) + " (CelebA's six-digit file names)");
  if (cfg.size < 16 || cfg.size > 1024)
    throw Error("--size " + std::to_string(cfg.size) + ": must be between 16 and 1024 pixels");
  if (cfg.format != "png" && cfg.format != "jpg")
    throw Error("--format " + cfg.format + ": must be png or jpg");
  if (cfg.threads < 0)
    throw Error("--threads " + std::to_string(cfg.threads) + ": must be 0 (all cores) or more");
}

DemoFace renderDemoFace(uint64_t seed, int64_t index, int size) {
  if (size < 1 || size > 16384)
    throw Error("demo face size " + std::to_string(size) + " is out of range");
  const FaceParams p = drawParams(seed, index);
  DemoFace face;
  face.rgb.resize(static_cast<size_t>(size) * size * 3);
  renderInto(p, size, face.rgb.data());
  for (int i = 0; i < kNumAttrs; ++i) face.attributes[kAttrNames[i]] = p.attr[i];
  for (int i = 0; i < kNumFactors; ++i) face.factors[kFactorNames[i]] = p.fac[i];
  return face;
}

void demoFaceToPixel(const std::map<std::string, double>& factors, int size, double u, double v,
                     double* x, double* y) {
  auto get = [&](const char* name, double dflt) {
    const auto it = factors.find(name);
    return it == factors.end() ? dflt : it->second;
  };
  const Frame f = Frame::make(size, get("scale", 1.0), get("rotation_deg", 0.0),
                              get("offset_x", 0.0), get("offset_y", 0.0));
  f.toPixel(u, v, x, y);
}

void generateDemoData(const DemoDataConfig& cfg, JobContext& ctx) {
  validateDemoDataConfig(cfg);
  fs::path out = fs::path(cfg.out).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec))
      throw Error("--out " + cfg.out + ": exists and is not a folder; choose a new folder");
    if (!fs::is_empty(out, ec) || ec)
      throw Error("--out " + cfg.out +
                  ": folder exists and is not empty; choose a new folder or remove it");
  }
  const fs::path tmp = out.string() + ".tmp-" + std::to_string(::getpid());
  const fs::path imgDir = tmp / "img_align_celeba" / "img_align_celeba";
  removeQuietly(tmp);
  fs::create_directories(imgDir, ec);
  if (ec) {
    removeQuietly(tmp);
    throw Error("--out " + cfg.out + ": cannot create " + imgDir.string() + ": " + ec.message() +
                " (is the parent folder writable?)");
  }

  const bool png = cfg.format == "png";
  const std::string ext = png ? "png" : "jpg";
  const int64_t count = cfg.count;
  const int size = cfg.size;
  unsigned nThreads = cfg.threads > 0 ? static_cast<unsigned>(cfg.threads)
                                      : std::max(1u, std::thread::hardware_concurrency());
  nThreads = static_cast<unsigned>(std::min<int64_t>(nThreads, count));

  try {
    ctx.beginStage("demo-data", count, "images");
    ctx.log("demo-data: writing " + std::to_string(count) + " " + ext + " images of " +
            std::to_string(size) + " px (seed " + std::to_string(cfg.seed) + ", " +
            std::to_string(nThreads) + " threads) to " + out.string());

    // Per-image ground truth, filled by the workers, written as CSV at the end.
    std::vector<int8_t> attrs(static_cast<size_t>(count) * kNumAttrs);
    std::vector<double> facs(static_cast<size_t>(count) * kNumFactors);
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr firstError;
    std::mutex errorMutex;
    const std::string imgPrefix = imgDir.string() + "/";
    // Small chunks keep the threads balanced and cancellation quick even at 1024 px.
    const int64_t chunk = size <= 128 ? 16 : 1;

    auto worker = [&]() {
      try {
        std::vector<uint8_t> rgb(static_cast<size_t>(size) * size * 3), encoded;
        PngEncoder pngEncoder;
        while (!failed.load(std::memory_order_relaxed)) {
          const int64_t begin = next.fetch_add(chunk);
          if (begin >= count) break;
          const int64_t end = std::min(count, begin + chunk);
          for (int64_t i = begin; i < end; ++i) {
            ctx.checkStop();
            const FaceParams p = drawParams(cfg.seed, i);
            renderInto(p, size, rgb.data());
            encodeImage(rgb.data(), size, png, &pngEncoder, &encoded);
            writeWholeFile(imgPrefix + imageName(i, ext), encoded);
            std::copy(p.attr, p.attr + kNumAttrs, &attrs[static_cast<size_t>(i) * kNumAttrs]);
            std::copy(p.fac, p.fac + kNumFactors, &facs[static_cast<size_t>(i) * kNumFactors]);
          }
          ctx.advance(end - begin);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(errorMutex);
        if (!firstError) firstError = std::current_exception();
        failed.store(true);
      }
    };
    std::vector<std::thread> threads;
    threads.reserve(nThreads);
    try {
      for (unsigned t = 0; t < nThreads; ++t) threads.emplace_back(worker);
    } catch (const std::system_error& e) {
      failed.store(true);
      for (auto& t : threads) t.join();
      throw Error("--threads " + std::to_string(nThreads) + ": cannot start worker threads (" +
                  e.what() + "); try fewer");
    }
    for (auto& t : threads) t.join();
    if (firstError) std::rethrow_exception(firstError);
    ctx.checkStop();

    // Ground truth, partition and README.
    std::string csv = "image_id";
    for (const char* a : kAttrNames) csv += ',', csv += a;
    for (const char* fname : kFactorNames) csv += ',', csv += fname;
    csv += '\n';
    std::string part = "image_id,partition\n";
    csv.reserve(static_cast<size_t>(count) * (12 + kNumAttrs * 3 + kNumFactors * 9));
    part.reserve(static_cast<size_t>(count) * 14);
    for (int64_t i = 0; i < count; ++i) {
      const std::string name = imageName(i, ext);
      csv += name;
      for (int a = 0; a < kNumAttrs; ++a)
        csv += attrs[static_cast<size_t>(i) * kNumAttrs + a] > 0 ? ",1" : ",-1";
      for (int k = 0; k < kNumFactors; ++k) {
        csv += ',';
        appendFixed(csv, facs[static_cast<size_t>(i) * kNumFactors + k], kFactorDecimals[k]);
      }
      csv += '\n';
      part += name;
      part += ',';
      part += static_cast<char>('0' + partitionOf(i, count));
      part += '\n';
    }
    writeFileAtomic((tmp / "list_attr_celeba.csv").string(), csv);
    writeFileAtomic((tmp / "list_eval_partition.csv").string(), part);
    const std::string readme =
        "This is saescope's synthetic stand-in for CelebA, written by `saescope demo-data`: " +
        std::to_string(count) + " cartoon faces of " + std::to_string(size) + "x" +
        std::to_string(size) + " pixels (" + ext + "), generated from seed " +
        std::to_string(cfg.seed) +
        ", in CelebA's Kaggle layout (img_align_celeba/img_align_celeba/000001." + ext +
        ", list_attr_celeba.csv, list_eval_partition.csv). Every visual factor is known: "
        "list_attr_celeba.csv holds CelebA-named binary attributes (1/-1) that the renderer "
        "actually draws, followed by continuous factors (skin tone, hair hue and length, eye "
        "colour, face width, background hue, number of clutter shapes, in-plane rotation in "
        "degrees counter-clockwise, scale and offset), so sparse features can be checked "
        "against ground truth. The same seed, count, size and format give byte-identical files; "
        "partitions are contiguous blocks of 80/10/10 percent (train/val/test) like CelebA's.\n";
    writeFileAtomic((tmp / "README.txt").string(), readme);

    // Make the images durable before the folder becomes visible under its final name.
    const int dfd = ::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::syncfs(dfd);
      ::close(dfd);
    }
    ctx.checkStop();
    fs::rename(tmp, out, ec);
    if (ec) {
      if (ec == std::errc::directory_not_empty || ec == std::errc::file_exists)
        throw Error("--out " + cfg.out +
                    ": folder exists and is not empty; choose a new folder or remove it");
      throw Error("--out " + cfg.out + ": cannot rename " + tmp.string() +
                  " to it: " + ec.message());
    }
    const double secs = ctx.timing().elapsed;
    ctx.log("demo-data: wrote " + std::to_string(count) + " images to " + out.string() +
            (secs > 0 ? " (" + std::to_string(static_cast<int64_t>(count / secs)) + " images/s)"
                      : std::string()));
  } catch (...) {
    removeQuietly(tmp);
    throw;
  }
}

}  // namespace engine
