// Feature index: per-feature top-k lists and statistics, dense and sparse (LibTorch for the SAE
// encoding; everything else plain C++).
#include "features.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <queue>
#include <tuple>

#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "fsutil.h"
#include "npy.h"
#include "sae.h"
#include "sae_eval.h"
#include "sparse_encode.h"
#include "torch_util.h"
#include "workspace.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

const char* kindName(FeatureKind k) { return k == FeatureKind::Dense ? "dense" : "sparse"; }
const char* rankName(RankRule r) { return r == RankRule::Seed ? "seed" : "raw"; }

FeatureKind parseKind(const std::string& s, const std::string& flag) {
  if (s == "dense") return FeatureKind::Dense;
  if (s == "sparse") return FeatureKind::Sparse;
  throw Error(flag + " " + s + ": expected dense or sparse");
}

RankRule parseRank(const std::string& s, const std::string& flag) {
  if (s == "seed") return RankRule::Seed;
  if (s == "raw") return RankRule::Raw;
  throw Error(flag + " " + s + ": expected seed (the reference, row-normalised) or raw");
}

namespace {

constexpr int64_t kChunk = 4096;
constexpr int64_t kFeatureBlock = 16;  // features per unit of the scan's work

struct FileStamp {
  int64_t size = -1, mtimeNs = 0;
};
FileStamp stampOf(const std::string& path) {
  struct stat st {};
  FileStamp s;
  if (::stat(path.c_str(), &st) == 0) {
    s.size = st.st_size;
    s.mtimeNs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  return s;
}
json stampJson(const std::string& path) {
  const FileStamp s = stampOf(path);
  return {{"size", s.size}, {"mtime_ns", s.mtimeNs}};
}

// Keeps the k best (score desc, index asc) of a stream whose indices only grow.
class TopKeeper {
 public:
  explicit TopKeeper(int k) : m_k(k) {}
  float threshold() const {
    return static_cast<int>(m_heap.size()) < m_k ? -INFINITY : m_heap.front().score;
  }
  bool full() const { return static_cast<int>(m_heap.size()) >= m_k; }
  // Offers an entry; with growing indices an equal score never displaces an earlier one.
  void offer(const TopEntry& e) {
    if (!full()) {
      m_heap.push_back(e);
      std::push_heap(m_heap.begin(), m_heap.end(), worse);
    } else if (e.score > m_heap.front().score) {
      std::pop_heap(m_heap.begin(), m_heap.end(), worse);
      m_heap.back() = e;
      std::push_heap(m_heap.begin(), m_heap.end(), worse);
    }
  }
  // For a stream of non-negative scores whose exact zeros were not offered (the sparse scan
  // skips them): completes the list with zero entries at the lowest image indices not already
  // held, as offering every zero would have. Called once, after all `rows` rows were streamed.
  // When the list is not full, every positive score is held, so the rows not held were zeros.
  void fillZeros(int64_t rows) {
    if (full()) return;
    std::vector<int64_t> held;
    for (const TopEntry& e : m_heap) held.push_back(e.index);
    std::sort(held.begin(), held.end());
    for (int64_t r = 0; r < rows && !full(); ++r)
      if (!std::binary_search(held.begin(), held.end(), r)) offer({r, 0.f, 0.f});
  }
  std::vector<TopEntry> sorted() const {
    std::vector<TopEntry> out = m_heap;
    std::sort(out.begin(), out.end(), [](const TopEntry& a, const TopEntry& b) {
      return a.score != b.score ? a.score > b.score : a.index < b.index;
    });
    return out;
  }

 private:
  // Heap order: the front is the worst entry (lowest score; among equals, the highest index).
  static bool worse(const TopEntry& a, const TopEntry& b) {
    return a.score != b.score ? a.score > b.score : a.index < b.index;
  }
  int m_k;
  std::vector<TopEntry> m_heap;
};

// Bins of one feature's active values and the lowest-index image in each bin, for the quantile
// samples (the rule is in features.h at QuantileSample). Bins are allocated on the first active
// value, so dead features cost nothing (about 12 KB per live feature while the index is built).
// h is a power of two: binning scales by powers of two only, so it is exact, a value's bin after
// the range doubled is exactly its old bin merged, and the edges are exact.
struct QuantileAccumulator {
  static constexpr int kBins = FeatureIndex::kQuantileBins;
  bool symmetric = false;  // dense: bins over [-h, h); sparse: active values over [0, h)
  float h = 0, inv = 0;    // inv = 1 / h
  int64_t n = 0;
  // Per bin: its count, and the lowest image index in it with that image's activation. Apart, so
  // that the counts touched by every value are dense in cache (4 KB per feature).
  std::vector<int64_t> count, first;
  std::vector<float> firstAct;

  bool empty() const { return count.empty(); }
  void add(float v, int64_t row) {
    if (symmetric ? !std::isfinite(v) : !(v > 0 && std::isfinite(v))) return;
    if (std::abs(v) < h) {  // the common case: bins allocated, no growth (h > 0 implies both)
      ++n;
      const int b = bin(v);
      if (count[b]++ == 0) first[b] = row, firstAct[b] = v;
      return;
    }
    addGrowing(v, row);
  }
  // add() of a value already known finite, inside the range (|v| < h), and in bin b = bin(v).
  void addBinned(int b, float v, int64_t row) {
    ++n;
    if (count[b]++ == 0) first[b] = row, firstAct[b] = v;
  }
  // add() for the first value and for values at or beyond the range.
  __attribute__((noinline)) void addGrowing(float v, int64_t row) {
    if (count.empty()) count.assign(kBins, 0), first.assign(kBins, -1), firstAct.assign(kBins, 0);
    ++n;
    const float a = std::abs(v);
    if (h == 0 && a > 0) setRange(std::ldexp(1.0f, std::ilogb(a) + 1));
    while (a >= h && h > 0 && std::isfinite(h)) grow();
    const int b = bin(v);
    if (count[b]++ == 0) first[b] = row, firstAct[b] = v;
  }
  void setRange(float range) {
    h = range;
    inv = 1 / range;
  }
  int bin(float v) const {
    const float x = v * inv;  // dense zeros before any nonzero value: 0, the middle bin
    const int b = symmetric ? kBins / 2 + floorToInt(x * (kBins / 2)) : floorToInt(x * kBins);
    return std::clamp(b, 0, kBins - 1);
  }
  float edge(int b) const {
    return symmetric ? h * (static_cast<float>(b - kBins / 2) / (kBins / 2))
                     : h * (static_cast<float>(b) / kBins);
  }
  void grow() {
    std::vector<int64_t> c(kBins, 0), f(kBins, -1);
    std::vector<float> fa(kBins, 0);
    for (int i = 0; i < kBins; ++i) {
      if (count[i] == 0) continue;
      const int m = symmetric ? kBins / 4 + i / 2 : i / 2;
      if (c[m] == 0 || first[i] < f[m]) f[m] = first[i], fa[m] = firstAct[i];
      c[m] += count[i];
    }
    count.swap(c);
    first.swap(f);
    firstAct.swap(fa);
    setRange(h * 2);
  }
  std::vector<QuantileSample> finish() const {
    std::vector<QuantileSample> out;
    if (n == 0) return out;
    for (int i = 0; i < FeatureIndex::kQuantiles; ++i) {
      const float q = FeatureIndex::quantileLevel(i);
      const auto rank = static_cast<int64_t>(std::floor(static_cast<double>(q) * (n - 1)));
      int64_t cum = 0;
      int b = 0;
      for (; b < kBins - 1; ++b) {
        cum += count[b];
        if (cum > rank) break;
      }
      if (!out.empty() && out.back().index == first[b]) continue;
      out.push_back({q, first[b], firstAct[b], edge(b), edge(b + 1)});
    }
    return out;
  }

 private:
  // floor() of a value in int range, without a libm call on baseline x86-64 (no SSE4.1 round).
  static int floorToInt(float y) {
    const int t = static_cast<int>(y);
    return t - (y < static_cast<float>(t));
  }
};

// Count, sum, extremes and positives of one feature. Its histogram is made at the end from the
// quantile bins (merged a power of two at a time), so it costs nothing per value and its bin
// edges are exact.
struct StatAccumulator {
  int64_t active = 0, count = 0;
  int64_t zeros = 0;  // exact zeros not passed to add() (the sparse scan skips them)
  double sum = 0;
  float min = INFINITY, max = -INFINITY;

  void add(float v) {
    ++count;
    sum += v;
    active += v > 0;
    min = std::min(min, v);
    max = std::max(max, v);
  }
  // q: the feature's quantile bins (null without details); symmetric: dense.
  FeatureStats finish(const QuantileAccumulator* q, bool symmetric) const {
    FeatureStats s;
    const int64_t all = count + zeros;
    s.active = active;
    s.mean = all ? sum / all : 0;
    s.min = count ? (zeros ? std::min(min, 0.f) : min) : 0;
    s.max = count ? (zeros ? std::max(max, 0.f) : max) : 0;
    constexpr int nh = FeatureIndex::kHistBins, nq = FeatureIndex::kQuantileBins;
    s.histogram.assign(nh, 0);
    const int64_t binned = q && !q->empty() ? q->n : 0;
    const int64_t unbinned = all - binned;  // sparse: the zeros
    if (binned > 0) {
      // The occupied quantile bins [i0, i1] (sparse with zeros: from 0), merged g at a time with
      // g the smallest power of two that fits them in nh bins: a tight range with exact edges.
      int i0 = nq, i1 = 0;
      for (int i = 0; i < nq; ++i)
        if (q->count[i] > 0) i0 = std::min(i0, i), i1 = i;
      if (!symmetric && unbinned > 0) i0 = 0;
      int g = 1;
      while (i1 / g - i0 / g + 1 > nh) g *= 2;
      const int start = i0 / g * g;
      for (int i = start; i <= i1; ++i) s.histogram[(i - start) / g] += q->count[i];
      s.histLo = q->edge(start);
      s.histHi = q->edge(start + nh * g);
    }
    if (!symmetric) s.histogram[0] += unbinned;  // zeros: in the first bin, which starts at 0
    return s;
  }
};

// Sums for Pearson correlations with binary attributes over the rows that have attributes:
// per feature Σa and Σa² (float64, in the scanner's loop) and Σ a·(y_c − ȳ_c) (dense: a float32
// product per chunk added into float64; sparse: float64, per nonzero value). With the labels
// centred first, the covariance needs no difference of large sums, and no float64 copy of the
// activations is made.
struct CorrelationAccumulator {
  std::vector<double> sa, saa;  // [F]
  std::vector<double> say;      // [F, C], allocated by the first add

  void reserve(int64_t features, int64_t columns) {
    if (say.empty()) say.assign(features * columns, 0.0);
  }
  // act: [rows, F] float; yc: [rows, C] float, y − ȳ on rows with attributes, 0 elsewhere.
  void add(const torch::Tensor& act, const torch::Tensor& yc) {
    const int64_t nf = act.size(1), nc = yc.size(1);
    reserve(nf, nc);
    const torch::Tensor p = torch::mm(yc.t(), act).contiguous();  // [C, F]
    const float* pp = p.data_ptr<float>();
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t f = 0; f < nf; ++f) say[f * nc + c] += pp[c * nf + f];
  }
};

// 16 consecutive values v of one dense dimension, the part of KindScanner::add that vectorises:
// per lane the running sum, count of positives, min and max; the seed scores s = v / denom; and
// the quantile bins (h, inv: the dimension's range, see QuantileAccumulator) of the values inside
// the range. Returns how many of the 16 are inside it.
constexpr int64_t kDenseLanes = 16;
SAESCOPE_CLONES int denseLanes(const float* __restrict__ v, const float* __restrict__ denom,
                               float h, float inv, double* __restrict__ sum,
                               int* __restrict__ active, float* __restrict__ mn,
                               float* __restrict__ mx, float* __restrict__ s,
                               int* __restrict__ bins) {
  constexpr int kBins = FeatureIndex::kQuantileBins;
  // One loop per quantity: -O2 vectorises each.
  for (int64_t i = 0; i < kDenseLanes; ++i) sum[i] += v[i];
  for (int64_t i = 0; i < kDenseLanes; ++i) active[i] += v[i] > 0;
  for (int64_t i = 0; i < kDenseLanes; ++i) {
    mn[i] = v[i] < mn[i] ? v[i] : mn[i];  // NaN never wins, as with std::min(mn, v)
    mx[i] = v[i] > mx[i] ? v[i] : mx[i];
  }
  for (int64_t i = 0; i < kDenseLanes; ++i) s[i] = v[i] / denom[i];
  int inside = 0;
  for (int64_t i = 0; i < kDenseLanes; ++i) {
    const bool in = std::fabs(v[i]) < h;  // false for NaN and infinities
    inside += in;
    const float y = (in ? v[i] : 0.0f) * inv * (kBins / 2);  // QuantileAccumulator::bin, symmetric
    const int t = static_cast<int>(y);
    const int b = kBins / 2 + t - (y < static_cast<float>(t));
    bins[i] = b < 0 ? 0 : (b > kBins - 1 ? kBins - 1 : b);
  }
  return inside;
}

// Streams rows of scores/activations into per-feature keepers for both ranking rules.
class KindScanner {
 public:
  // `details`: also quantile bins (and, given labels, correlations) for the full index.
  KindScanner(int64_t features, int k, bool symmetric, int64_t onlyFeature, bool details = false)
      : m_symmetric(symmetric), m_only(onlyFeature) {
    const int64_t nf = onlyFeature >= 0 ? 1 : features;
    for (int64_t f = 0; f < nf; ++f) {
      m_seed.emplace_back(k);
      m_raw.emplace_back(k);
      m_stats.emplace_back();
    }
    if (details) {
      m_quant.resize(nf);
      for (auto& q : m_quant) q.symmetric = symmetric;
      m_corr.sa.assign(nf, 0);
      m_corr.saa.assign(nf, 0);
    }
  }
  // Dense kind. act: [rows, F] raw values (row-major, CPU float); norms: per-row L2 norm of act;
  // matched: per row, 1 when the image has attributes (null: no correlations).
  void add(const float* act, const float* norms, int64_t rows, int64_t features, int64_t row0,
           const int8_t* matched = nullptr) {
    const int64_t f0 = m_only >= 0 ? m_only : 0;
    const int64_t nf = static_cast<int64_t>(m_seed.size());
    m_rows += rows;
    // Divide (not multiply by a reciprocal) so scores round exactly as F.normalize's do: exact
    // ties must stay ties for the reference tie-break by index.
    std::vector<float> denom(rows);
    for (int64_t r = 0; r < rows; ++r) denom[r] = std::max(norms[r], 1e-12f);
    auto isMatched = [&](int64_t r) { return matched && matched[r]; };
    // Every value is visited, one feature at a time over the chunk's rows, with the feature's
    // running sums and the thresholds of its top lists in registers: the same updates as visit(),
    // in the same order. A block of 16 features' columns is first copied out contiguously.
    at::parallel_for(0, nf, kFeatureBlock, [&](int64_t b, int64_t e) {
      std::vector<float> cols(kFeatureBlock * rows);
      for (int64_t j = b; j < e; ++j) {
        const int64_t jb = b + (j - b) / kFeatureBlock * kFeatureBlock;
        if (j == jb) {
          const int64_t w = std::min(kFeatureBlock, e - jb);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < w; ++i) cols[i * rows + r] = act[r * features + f0 + jb + i];
        }
        StatAccumulator& st = m_stats[j];
        QuantileAccumulator* q = m_quant.empty() ? nullptr : &m_quant[j];
        TopKeeper &seed = m_seed[j], &raw = m_raw[j];
        int64_t count = st.count, active = st.active;
        double sum = st.sum, sa = 0, saa = 0;
        float mn = st.min, mx = st.max;
        bool seedFull = seed.full(), rawFull = raw.full();
        float seedMin = seed.threshold(), rawMin = raw.threshold();
        const float* col = cols.data() + (j - jb) * rows;
        double laneSum[kDenseLanes] = {};
        int laneActive[kDenseLanes] = {};
        float laneMin[kDenseLanes], laneMax[kDenseLanes], scores[kDenseLanes];
        int bins[kDenseLanes];
        std::fill(laneMin, laneMin + kDenseLanes, INFINITY);
        std::fill(laneMax, laneMax + kDenseLanes, -INFINITY);
        int inside = 0;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t lane = r % kDenseLanes;
          if (lane == 0 && r + kDenseLanes <= rows)  // the next 16 rows' sums, scores and bins
            inside = denseLanes(col + r, denom.data() + r, q ? q->h : 0.0f, q ? q->inv : 0.0f,
                                laneSum, laneActive, laneMin, laneMax, scores, bins);
          const bool laned = r - lane + kDenseLanes <= rows;
          const float v = col[r];
          ++count;
          if (!laned) {
            sum += v;
            active += v > 0;
            mn = std::min(mn, v);
            mx = std::max(mx, v);
          }
          if (q) {
            // Bins from denseLanes hold while the range stays: when all 16 were inside it.
            if (laned && inside == kDenseLanes)
              q->addBinned(bins[lane], v, row0 + r);
            else
              q->add(v, row0 + r);
          }
          if (isMatched(r) && v != 0) {
            sa += v;
            saa += static_cast<double>(v) * v;
          }
          const float s = laned ? scores[lane] : v / denom[r];
          if (s > seedMin || !seedFull) {
            seed.offer({row0 + r, s, v});
            seedFull = seed.full();
            seedMin = seed.threshold();
          }
          if (v > rawMin || !rawFull) {
            raw.offer({row0 + r, v, v});
            rawFull = raw.full();
            rawMin = raw.threshold();
          }
        }
        for (int64_t i = 0; i < kDenseLanes; ++i) {
          sum += laneSum[i];
          active += laneActive[i];
          mn = std::min(mn, laneMin[i]);
          mx = std::max(mx, laneMax[i]);
        }
        st.count = count, st.active = active, st.sum = sum, st.min = mn, st.max = mx;
        if (!m_corr.sa.empty()) m_corr.sa[j] += sa, m_corr.saa[j] += saa;
      }
    });
  }
  // Sparse kind: the rows' nonzero activations (starting at image row0); the zeros are accounted
  // for by finish(). matched as for add(); yc: [rows, C] the rows' centred labels (see
  // CorrelationAccumulator::add), null without correlations.
  void addRows(const ActivationRows& a, int64_t row0, const int8_t* matched, const float* yc,
               int64_t nc) {
    const int64_t f0 = m_only >= 0 ? m_only : 0;
    const int64_t nf = static_cast<int64_t>(m_seed.size());
    const int64_t rows = a.rows();
    m_rows += rows;
    if (yc) m_corr.reserve(nf, nc);
    at::parallel_for(0, nf, kFeatureBlock, [&](int64_t b, int64_t e) {
      const auto lo = static_cast<int32_t>(f0 + b), hi = static_cast<int32_t>(f0 + e);
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t* first = a.feature.data() + a.start[r];
        const int32_t* last = a.feature.data() + a.start[r + 1];
        const int32_t* it = std::lower_bound(first, last, lo);
        if (it == last || *it >= hi) continue;
        const float denom = std::max(a.norm[r], 1e-12f);
        const bool mr = matched && matched[r];
        for (; it != last && *it < hi; ++it) {
          const float v = a.value[it - a.feature.data()];
          const int64_t j = *it - f0;
          visit(j, v, denom, row0 + r, mr);
          if (mr && yc)
            for (int64_t c = 0; c < nc; ++c) m_corr.say[j * nc + c] += double(yc[r * nc + c]) * v;
        }
      }
    });
  }
  // After the last add(): the skipped zeros into the statistics and top lists.
  void finish() {
    if (m_symmetric) return;
    for (size_t j = 0; j < m_seed.size(); ++j) {
      m_stats[j].zeros = m_rows - m_stats[j].count;
      m_seed[j].fillZeros(m_rows);
      m_raw[j].fillZeros(m_rows);
    }
  }
  // Dense kind. act: [rows, F] float CPU; yc: the rows' centred labels (see
  // CorrelationAccumulator::add).
  void addCorrelation(const torch::Tensor& act, const torch::Tensor& yc) { m_corr.add(act, yc); }
  // One value of feature j (local index) in image `index`.
  void visit(int64_t j, float v, float denom, int64_t index, bool matched) {
    m_stats[j].add(v);
    if (!m_quant.empty()) m_quant[j].add(v, index);
    if (matched && v != 0) {
      m_corr.sa[j] += v;
      m_corr.saa[j] += static_cast<double>(v) * v;
    }
    const float s = v / denom;
    if (s > m_seed[j].threshold() || !m_seed[j].full()) m_seed[j].offer({index, s, v});
    if (v > m_raw[j].threshold() || !m_raw[j].full()) m_raw[j].offer({index, v, v});
  }
  std::vector<TopKeeper> m_seed, m_raw;
  std::vector<StatAccumulator> m_stats;
  bool m_symmetric;
  int64_t m_rows = 0;  // rows streamed so far
  std::vector<QuantileAccumulator> m_quant;
  CorrelationAccumulator m_corr;
  int64_t m_only;
};

// Binary attributes of the workspace's images, as labels for the correlations.
struct AttributeLabels {
  std::vector<std::string> names;  // binary columns that vary over the matched images
  torch::Tensor y;      // [N, C + 1] int8: ±1 per column, 0 without attributes; last column 1
                        // where the image has attributes
  torch::Tensor meanY;  // [C] float: ȳ per column over the matched images (for centring)
  std::vector<double> meanYExact;  // [C] the same in float64
  int64_t matched = 0;
  bool empty() const { return names.empty(); }
  // Rows [s, e) as (centred labels [rows, C] float, 0 on unmatched rows; matched [rows] int8).
  std::pair<torch::Tensor, torch::Tensor> chunk(int64_t s, int64_t e) const {
    const int64_t nc = static_cast<int64_t>(names.size());
    const torch::Tensor rows = y.slice(0, s, e);
    const torch::Tensor mask = rows.select(1, nc).contiguous();
    const torch::Tensor yc =
        (rows.slice(1, 0, nc).to(torch::kFloat32) - meanY) * mask.to(torch::kFloat32).unsqueeze(1);
    return {yc.contiguous(), mask};
  }
};

// The attribute file the index uses (the manifest's attributes_file) and what it depends on, for
// the cache's validity.
json attributesSource(const Workspace& ws) {
  const std::string file = ws.manifest().value("attributes_file", std::string());
  return {{"file", file}, {"stamp", stampJson(file)}, {"images", stampJson(ws.imagesPath())}};
}

// Labels from the manifest's attributes_file matched to images.txt by file name; empty (with a
// note in the log) when there is none or nothing usable.
AttributeLabels readLabels(const Workspace& ws, int64_t n, JobContext& ctx) {
  AttributeLabels out;
  const std::string file = ws.manifest().value("attributes_file", std::string());
  if (file.empty() || !fileExists(file)) return out;
  Attributes attrs;
  try {
    attrs = loadAttributes(file);
  } catch (const Error& e) {
    ctx.log(std::string("note: no attribute correlations: ") + e.what());
    return out;
  }
  const std::vector<std::string> paths = ws.imageList();
  if (static_cast<int64_t>(paths.size()) != n) {
    ctx.log("note: no attribute correlations: " + ws.imagesPath() + " has " +
            std::to_string(paths.size()) + " lines for " + std::to_string(n) + " embeddings");
    return out;
  }
  std::vector<int64_t> arow(n);
  for (int64_t i = 0; i < n; ++i) {
    arow[i] = attrs.rowForPath(paths[i]);
    out.matched += arow[i] >= 0;
  }
  if (out.matched < 3) return out;
  std::vector<size_t> cols;
  for (size_t c = 0; c < attrs.names.size(); ++c) {
    if (!attrs.binary[c]) continue;
    int64_t pos = 0;
    for (int64_t i = 0; i < n; ++i) pos += arow[i] >= 0 && attrs.value(arow[i], c) > 0;
    if (pos == 0 || pos == out.matched) continue;  // constant: no correlation
    cols.push_back(c);
    out.names.push_back(attrs.names[c]);
  }
  if (cols.empty()) return out;
  const int64_t nc = static_cast<int64_t>(cols.size());
  out.y = torch::zeros({n, nc + 1}, torch::kInt8);
  std::vector<double> sumY(nc, 0);
  int8_t* y = out.y.data_ptr<int8_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (arow[i] < 0) continue;
    for (int64_t c = 0; c < nc; ++c) {
      const int8_t v = attrs.value(arow[i], cols[c]) > 0 ? 1 : -1;
      y[i * (nc + 1) + c] = v;
      sumY[c] += v;
    }
    y[i * (nc + 1) + nc] = 1;
  }
  out.meanY = torch::empty({nc}, torch::kFloat32);
  for (int64_t c = 0; c < nc; ++c) {
    out.meanYExact.push_back(sumY[c] / out.matched);
    out.meanY.data_ptr<float>()[c] = static_cast<float>(out.meanYExact[c]);
  }
  return out;
}

// Pearson r per [feature, column] from the accumulated sums; NaN where the activation is constant.
// r = Σ a (y − ȳ) / sqrt((Σa² − (Σa)²/n) · Σ (y − ȳ)²).
std::vector<float> correlations(const CorrelationAccumulator& acc, const AttributeLabels& labels,
                                int64_t features) {
  const int64_t nc = static_cast<int64_t>(labels.names.size());
  std::vector<float> out(features * nc, NAN);
  if (acc.say.size() != static_cast<size_t>(features * nc) ||
      acc.sa.size() != static_cast<size_t>(features))
    return out;
  const double* p = acc.say.data();
  const double n = static_cast<double>(labels.matched);
  std::vector<double> vy(nc), shift(nc);
  for (int64_t c = 0; c < nc; ++c) {
    const double mean = labels.meanYExact[c];
    vy[c] = n * (1 - mean * mean);  // Σ (y − ȳ)² for ±1 labels
    shift[c] = mean - labels.meanY.data_ptr<float>()[c];
  }
  for (int64_t f = 0; f < features; ++f) {
    const double va = acc.saa[f] - acc.sa[f] * acc.sa[f] / n;
    if (!(va > 1e-12 * acc.saa[f])) continue;  // constant (or dead) over the matched images
    for (int64_t c = 0; c < nc; ++c) {
      // Σ a (y − ȳ) = Σ a (y − m) − (ȳ − m) Σa, m the float32 centre used in the products.
      const double cov = p[f * nc + c] - shift[c] * acc.sa[f];
      const double r = cov / std::sqrt(va * vy[c]);
      out[f * nc + c] = static_cast<float>(std::clamp(r, -1.0, 1.0));
    }
  }
  return out;
}

struct Sources {
  TensorData emb;          // [N, D]
  bool haveSae = false;
  torch::Tensor we, be, bd;  // SAE encoder weights (CPU float)
  torch::Tensor wd;          // SAE decoder [F, D] (CPU float); undefined when the file has none
};

Sources readSources(const Workspace& ws, const std::string& saeFile = "") {
  ws.requireEmbeddings();
  Sources s;
  s.emb = readNpy(ws.embeddingsPath());
  if (s.emb.shape.size() != 2 || s.emb.shape[0] < 1)
    throw Error(ws.embeddingsPath() + ": expected a 2-D array [N, D], found " + s.emb.shapeString());
  if (s.emb.dtype != DType::Float32) {
    const std::vector<float> f = s.emb.toFloat();
    s.emb = TensorData::fromFloat(s.emb.shape, f.data());
  }
  const std::string saePath = saeFile.empty() ? ws.saePath() : saeFile;
  if (fileExists(saePath)) {
    const StateDict sd = readTensorFile(saePath);
    const char* names[] = {"weight_encoder", "bias_encoder", "bias_decoder"};
    for (const char* name : names)
      if (!findTensor(sd, name))
        throw Error(ws.saePath() + ": missing tensor '" + std::string(name) +
                    "' (expected the reference SparseAutoencoder state_dict)");
    s.we = toTorch(*findTensor(sd, "weight_encoder")).to(torch::kFloat32);
    s.be = toTorch(*findTensor(sd, "bias_encoder")).to(torch::kFloat32);
    s.bd = toTorch(*findTensor(sd, "bias_decoder")).to(torch::kFloat32);
    if (const auto* wd = findTensor(sd, "weight_decoder")) {
      s.wd = toTorch(*wd).to(torch::kFloat32);
      if (s.wd.dim() != 2 || s.wd.size(0) != s.we.size(1) || s.wd.size(1) != s.emb.shape[1])
        throw Error(saePath + ": weight_decoder has shape " + wd->shapeString() + ", expected [" +
                    std::to_string(s.we.size(1)) + ", " + std::to_string(s.emb.shape[1]) + "]");
    }
    const int64_t d = s.emb.shape[1];
    if (s.we.dim() != 2 || s.we.size(0) != d || s.be.dim() != 1 || s.be.size(0) != s.we.size(1) ||
        s.bd.dim() != 1 || s.bd.size(0) != d)
      throw Error(ws.saePath() + ": weight shapes do not fit embeddings of width " +
                  std::to_string(d) + " (weight_encoder " +
                  findTensor(sd, "weight_encoder")->shapeString() + ")");
    s.haveSae = true;
  }
  return s;
}

// One pass over all rows, feeding the scanners (either may be null) and, given labels, their
// correlation sums.
void scan(const Sources& src, KindScanner* dense, KindScanner* sparse, JobContext& ctx,
          const AttributeLabels* labels = nullptr) {
  torch::NoGradGuard noGrad;
  const int64_t n = src.emb.shape[0], d = src.emb.shape[1];
  const torch::Tensor all = torch::from_blob(const_cast<uint8_t*>(src.emb.bytes.data()), {n, d},
                                             torch::kFloat32);
  std::unique_ptr<SparseEncoder> encoder;
  if (sparse) encoder = std::make_unique<SparseEncoder>(src.we, src.be, encodeMethodFromEnv());
  ActivationRows act;
  ctx.beginStage("index", n, "images");
  for (int64_t s = 0; s < n; s += kChunk) {
    ctx.checkStop();
    const int64_t e = std::min(n, s + kChunk);
    const torch::Tensor raw = all.slice(0, s, e).contiguous();
    const bool corr = labels && !labels->empty();
    torch::Tensor yc, matched;
    if (corr) std::tie(yc, matched) = labels->chunk(s, e);
    const int8_t* m = corr ? matched.data_ptr<int8_t>() : nullptr;
    if (dense) {
      const torch::Tensor norms = raw.norm(2, 1).contiguous();
      dense->add(raw.data_ptr<float>(), norms.data_ptr<float>(), e - s, d, s, m);
      if (corr) dense->addCorrelation(raw, yc);
    }
    if (sparse) {
      act.clear();
      encoder->encode(l2normalizeRows(raw) - src.bd, act);
      sparse->addRows(act, s, m, corr ? yc.data_ptr<float>() : nullptr, corr ? yc.size(1) : 0);
    }
    ctx.advance(e - s);
  }
  if (encoder && encoder->screenedElements() > 0) {
    char share[32];
    std::snprintf(share, sizeof share, "%.2f",
                  100.0 * encoder->screenedComputed() / encoder->screenedElements());
    ctx.log(std::string("index: encoder product screened in bf16, ") + share +
            " % of its elements then computed in fp32" +
            (encoder->screening() ? "" : " (until the SAE proved too dense to screen)"));
  }
}

// 02: quantile samples, attribute correlations. 03: histogram range.
constexpr char kIndexMagic[8] = {'S', 'A', 'E', 'I', 'D', 'X', '0', '3'};

template <typename T>
void put(std::vector<uint8_t>& out, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

struct Reader {
  const std::vector<uint8_t>& b;
  size_t pos = 0;
  template <typename T>
  T get() {
    if (pos + sizeof(T) > b.size()) throw Error("truncated");
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
};

std::string indexPath(const Workspace& ws) { return ws.path("index/features.idx"); }
// The index of the SAE before the current one, kept for its dense part (retireFeatureIndex).
std::string previousIndexPath(const Workspace& ws) {
  return ws.path("index/previous.idx");
}

void saveIndex(const Workspace& ws, const FeatureIndex& idx) {
  std::vector<uint8_t> out(kIndexMagic, kIndexMagic + 8);
  const json header = {{"n", idx.m_numImages},
                       {"dense", idx.m_numDense},
                       {"sparse", idx.m_numSparse},
                       {"k", FeatureIndex::kStoredK},
                       {"bins", FeatureIndex::kHistBins},
                       {"quantiles", FeatureIndex::kQuantiles},
                       {"quantile_bins", FeatureIndex::kQuantileBins},
                       {"embeddings", stampJson(ws.embeddingsPath())},
                       {"sae", stampJson(ws.saePath())},
                       {"attributes_source", attributesSource(ws)},
                       {"attributes", idx.m_attrNames},
                       {"attribute_images", idx.m_attrImages}};
  const std::string h = header.dump();
  put<uint64_t>(out, h.size());
  out.insert(out.end(), h.begin(), h.end());
  for (int k = 0; k < 2; ++k) {
    for (int r = 0; r < 2; ++r)
      for (const auto& list : idx.m_top[k][r]) {
        put<int32_t>(out, static_cast<int32_t>(list.size()));
        for (const auto& e : list) {
          put<int64_t>(out, e.index);
          put<float>(out, e.score);
          put<float>(out, e.activation);
        }
      }
    for (const auto& s : idx.m_stats[k]) {
      put<int64_t>(out, s.active);
      put<double>(out, s.mean);
      put<float>(out, s.min);
      put<float>(out, s.max);
      put<float>(out, s.histLo);
      put<float>(out, s.histHi);
      for (int64_t c : s.histogram) put<int64_t>(out, c);
    }
    for (const auto& list : idx.m_quantiles[k]) {
      put<int32_t>(out, static_cast<int32_t>(list.size()));
      for (const auto& q : list) {
        put<float>(out, q.quantile);
        put<int64_t>(out, q.index);
        put<float>(out, q.activation);
        put<float>(out, q.lo);
        put<float>(out, q.hi);
      }
    }
    for (float r : idx.m_corr[k]) put<float>(out, r);
  }
  writeFileAtomic(indexPath(ws), out.data(), out.size());
}

// The cached index when it exists and matches the current artifacts; null otherwise. denseOnly:
// only its dense part (which does not depend on the SAE), when that matches; file: another index
// file than indexPath(ws).
std::shared_ptr<FeatureIndex> tryLoadIndex(const Workspace& ws, bool denseOnly = false,
                                           const std::string& file = "") {
  const std::string path = file.empty() ? indexPath(ws) : file;
  if (!fileExists(path)) return nullptr;
  try {
    const std::vector<uint8_t> bytes = readFileBytes(path);
    if (bytes.size() < 16 || std::memcmp(bytes.data(), kIndexMagic, 8) != 0) return nullptr;
    Reader rd{bytes, 8};
    const uint64_t hl = rd.get<uint64_t>();
    if (hl > bytes.size() - rd.pos) return nullptr;
    const json h = json::parse(bytes.begin() + rd.pos, bytes.begin() + rd.pos + hl);
    rd.pos += hl;
    if (h["embeddings"] != stampJson(ws.embeddingsPath()) ||
        (!denseOnly && h["sae"] != stampJson(ws.saePath())) || h["k"] != FeatureIndex::kStoredK ||
        h["bins"] != FeatureIndex::kHistBins || h["quantiles"] != FeatureIndex::kQuantiles ||
        h["quantile_bins"] != FeatureIndex::kQuantileBins ||
        h["attributes_source"] != attributesSource(ws))
      return nullptr;
    auto idx = std::make_shared<FeatureIndex>();
    idx->m_numImages = h["n"];
    idx->m_numDense = h["dense"];
    idx->m_numSparse = denseOnly ? 0 : h["sparse"].get<int64_t>();
    idx->m_attrNames = h["attributes"].get<std::vector<std::string>>();
    idx->m_attrImages = h["attribute_images"];
    const int64_t nc = static_cast<int64_t>(idx->m_attrNames.size());
    for (int k = 0; k < (denseOnly ? 1 : 2); ++k) {
      const int64_t nf = k == 0 ? idx->m_numDense : idx->m_numSparse;
      for (int r = 0; r < 2; ++r) {
        idx->m_top[k][r].resize(nf);
        for (auto& list : idx->m_top[k][r]) {
          const int32_t c = rd.get<int32_t>();
          if (c < 0 || c > FeatureIndex::kStoredK) return nullptr;
          list.resize(c);
          for (auto& e : list) {
            e.index = rd.get<int64_t>();
            e.score = rd.get<float>();
            e.activation = rd.get<float>();
          }
        }
      }
      idx->m_stats[k].resize(nf);
      for (auto& s : idx->m_stats[k]) {
        s.active = rd.get<int64_t>();
        s.mean = rd.get<double>();
        s.min = rd.get<float>();
        s.max = rd.get<float>();
        s.histLo = rd.get<float>();
        s.histHi = rd.get<float>();
        s.histogram.resize(FeatureIndex::kHistBins);
        for (auto& c : s.histogram) c = rd.get<int64_t>();
      }
      idx->m_quantiles[k].resize(nf);
      for (auto& list : idx->m_quantiles[k]) {
        const int32_t c = rd.get<int32_t>();
        if (c < 0 || c > FeatureIndex::kQuantiles) return nullptr;
        list.resize(c);
        for (auto& q : list) {
          q.quantile = rd.get<float>();
          q.index = rd.get<int64_t>();
          q.activation = rd.get<float>();
          q.lo = rd.get<float>();
          q.hi = rd.get<float>();
        }
      }
      idx->m_corr[k].resize(nf * nc);
      for (auto& r : idx->m_corr[k]) r = rd.get<float>();
    }
    if (!denseOnly && rd.pos != bytes.size()) return nullptr;
    return idx;
  } catch (const std::exception&) {
    return nullptr;  // a damaged cache is rebuilt, not reported
  }
}

// Moves the embeddings (float32 after readSources) into the index: 415 MB at CelebA's size, not
// worth a copy.
void attachSources(FeatureIndex& idx, Sources& src) {
  idx.m_embeddingBytes = std::move(src.emb.bytes);
  if (src.haveSae) {
    auto copy = [](const torch::Tensor& t) {
      const torch::Tensor c = t.contiguous();
      return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    };
    idx.m_we = copy(src.we);
    idx.m_be = copy(src.be);
    idx.m_bd = copy(src.bd);
  }
  idx.m_decoderUnit.clear();
  if (src.wd.defined()) {
    const torch::Tensor wd = src.wd.to(torch::kFloat64);
    const torch::Tensor norms = wd.norm(2, 1, /*keepdim=*/true);
    // A zero row has no direction: NaN keeps it out of every comparison.
    const torch::Tensor unit =
        torch::where(norms > 0, wd / norms, torch::full_like(wd, NAN)).to(torch::kFloat32);
    const torch::Tensor c = unit.contiguous();
    idx.m_decoderUnit.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
}

// denseFrom: an index of the same embeddings and attributes whose dense part is taken as it is
// (it does not depend on the SAE), or null.
std::shared_ptr<FeatureIndex> buildFrom(const Workspace& ws, const Sources& src, JobContext& ctx,
                                        const FeatureIndex* denseFrom = nullptr) {
  const int64_t n = src.emb.shape[0], d = src.emb.shape[1];
  const int64_t f = src.haveSae ? src.we.size(1) : 0;
  const AttributeLabels labels = readLabels(ws, n, ctx);
  std::unique_ptr<KindScanner> dense, sparse;
  if (!denseFrom)
    dense = std::make_unique<KindScanner>(d, FeatureIndex::kStoredK, /*symmetric=*/true, -1,
                                          /*details=*/true);
  if (src.haveSae)
    sparse = std::make_unique<KindScanner>(f, FeatureIndex::kStoredK, false, -1, true);
  if (dense || sparse) scan(src, dense.get(), sparse.get(), ctx, &labels);
  if (dense) dense->finish();
  if (sparse) sparse->finish();
  auto idx = std::make_shared<FeatureIndex>();
  idx->m_numImages = n;
  idx->m_numDense = d;
  idx->m_numSparse = f;
  idx->m_attrNames = labels.names;
  idx->m_attrImages = labels.empty() ? 0 : labels.matched;
  if (denseFrom) {
    for (int r = 0; r < 2; ++r) idx->m_top[0][r] = denseFrom->m_top[0][r];
    idx->m_stats[0] = denseFrom->m_stats[0];
    idx->m_quantiles[0] = denseFrom->m_quantiles[0];
    idx->m_corr[0] = denseFrom->m_corr[0];
  }
  KindScanner* scanners[2] = {dense.get(), sparse.get()};
  for (int k = 0; k < 2; ++k) {
    if (!scanners[k]) continue;
    for (auto& t : scanners[k]->m_seed) idx->m_top[k][0].push_back(t.sorted());
    for (auto& t : scanners[k]->m_raw) idx->m_top[k][1].push_back(t.sorted());
    for (size_t j = 0; j < scanners[k]->m_stats.size(); ++j)
      idx->m_stats[k].push_back(scanners[k]->m_stats[j].finish(&scanners[k]->m_quant[j], k == 0));
    for (auto& q : scanners[k]->m_quant) idx->m_quantiles[k].push_back(q.finish());
    idx->m_corr[k] = correlations(scanners[k]->m_corr, labels, k == 0 ? d : f);
  }
  return idx;
}

}  // namespace

std::shared_ptr<const FeatureIndex> FeatureIndex::build(const std::string& workspace,
                                                         JobContext& ctx) {
  const Workspace ws = Workspace::open(workspace, false);
  Sources src = readSources(ws);
  auto idx = buildFrom(ws, src, ctx);
  attachSources(*idx, src);
  return idx;
}

std::shared_ptr<const FeatureIndex> FeatureIndex::loadOrBuild(const std::string& workspace,
                                                               JobContext& ctx) {
  const Workspace ws = Workspace::open(workspace, false);
  Sources src = readSources(ws);
  const int64_t n = src.emb.shape[0], d = src.emb.shape[1];
  std::shared_ptr<FeatureIndex> idx = tryLoadIndex(ws);
  if (!idx || idx->m_numImages != n) {
    // Another SAE on the same embeddings (a new run, `sae --use`): the dense part stays.
    std::shared_ptr<FeatureIndex> dense = tryLoadIndex(ws, /*denseOnly=*/true);
    if (!dense) dense = tryLoadIndex(ws, /*denseOnly=*/true, previousIndexPath(ws));
    if (dense && (dense->m_numImages != n || dense->m_numDense != d)) dense = nullptr;
    if (dense) ctx.log("index: dense dimensions taken from the cached index (same embeddings)");
    idx = buildFrom(ws, src, ctx, dense.get());
    try {
      saveIndex(ws, *idx);
      std::error_code ec;
      fs::remove(previousIndexPath(ws), ec);
    } catch (const Error& e) {
      ctx.log(std::string("note: cannot cache the feature index: ") + e.what());
    }
  }
  attachSources(*idx, src);
  return idx;
}

void retireFeatureIndex(const Workspace& ws) {
  std::error_code ec;
  if (fileExists(indexPath(ws))) fs::rename(indexPath(ws), previousIndexPath(ws), ec);
  if (ec) removeTree(ws.path("index"));
}

int64_t FeatureIndex::numFeatures(FeatureKind k) const {
  return k == FeatureKind::Dense ? m_numDense : m_numSparse;
}

const std::vector<TopEntry>& FeatureIndex::top(FeatureKind k, RankRule r, int64_t feature) const {
  static const std::vector<TopEntry> kEmpty;
  const auto& lists = m_top[k == FeatureKind::Dense ? 0 : 1][r == RankRule::Seed ? 0 : 1];
  if (feature < 0 || feature >= static_cast<int64_t>(lists.size())) return kEmpty;
  return lists[feature];
}

const FeatureStats& FeatureIndex::stats(FeatureKind k, int64_t feature) const {
  static const FeatureStats kNone;
  const auto& s = m_stats[k == FeatureKind::Dense ? 0 : 1];
  if (feature < 0 || feature >= static_cast<int64_t>(s.size())) return kNone;
  return s[feature];
}

std::vector<std::pair<int64_t, float>> FeatureIndex::strongestSparse(int64_t row, int n) const {
  std::vector<std::pair<int64_t, float>> out;
  if (m_numSparse == 0 || row < 0 || row >= m_numImages) return out;
  const int64_t d = m_numDense, f = m_numSparse;
  const float* e = reinterpret_cast<const float*>(m_embeddingBytes.data()) + row * d;
  double norm = 0;
  for (int64_t i = 0; i < d; ++i) norm += double(e[i]) * e[i];
  const float inv = 1.0f / std::max(static_cast<float>(std::sqrt(norm)), 1e-12f);
  std::vector<float> acc(m_be.begin(), m_be.end());
  for (int64_t i = 0; i < d; ++i) {
    const float xi = e[i] * inv - m_bd[i];
    const float* w = m_we.data() + i * f;
    for (int64_t j = 0; j < f; ++j) acc[j] += xi * w[j];
  }
  for (int64_t j = 0; j < f; ++j)
    if (acc[j] > 0) out.emplace_back(j, acc[j]);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (static_cast<int>(out.size()) > n) out.resize(n);
  return out;
}

const std::vector<QuantileSample>& FeatureIndex::quantiles(FeatureKind k, int64_t feature) const {
  static const std::vector<QuantileSample> kNone;
  const auto& q = m_quantiles[k == FeatureKind::Dense ? 0 : 1];
  if (feature < 0 || feature >= static_cast<int64_t>(q.size())) return kNone;
  return q[feature];
}

std::vector<AttributeCorrelation> FeatureIndex::correlatedAttributes(FeatureKind k, int64_t feature,
                                                                     int n) const {
  std::vector<AttributeCorrelation> out;
  const auto& corr = m_corr[k == FeatureKind::Dense ? 0 : 1];
  const size_t nc = m_attrNames.size();
  if (nc == 0 || feature < 0 || (static_cast<size_t>(feature) + 1) * nc > corr.size()) return out;
  for (size_t c = 0; c < nc; ++c) {
    const float r = corr[feature * nc + c];
    if (!std::isnan(r)) out.push_back({m_attrNames[c], r});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return std::abs(a.r) > std::abs(b.r); });
  if (static_cast<int>(out.size()) > n) out.resize(std::max(0, n));
  return out;
}

std::vector<NearFeature> FeatureIndex::nearestByDecoder(int64_t feature, int n) const {
  std::vector<NearFeature> out;
  const int64_t f = m_numSparse, d = m_numDense;
  if (m_decoderUnit.size() != static_cast<size_t>(f * d) || feature < 0 || feature >= f || n < 1)
    return out;
  const float* a = m_decoderUnit.data() + feature * d;
  for (int64_t j = 0; j < f; ++j) {
    if (j == feature) continue;
    const float* b = m_decoderUnit.data() + j * d;
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double(a[i]) * b[i];
    if (!std::isnan(dot)) out.push_back({j, static_cast<float>(dot)});
  }
  const size_t keep = std::min<size_t>(out.size(), static_cast<size_t>(n));
  std::partial_sort(out.begin(), out.begin() + keep, out.end(), [](const auto& x, const auto& y) {
    return x.cosine != y.cosine ? x.cosine > y.cosine : x.feature < y.feature;
  });
  out.resize(keep);
  return out;
}

std::vector<TopEntry> computeTopK(const std::string& workspace, FeatureKind kind, int64_t feature,
                                  int k, RankRule rule, const std::string& saeName) {
  const Workspace ws = Workspace::open(workspace, false);
  if (k < 1) throw Error("--k " + std::to_string(k) + ": must be at least 1");
  // Another SAE than the current one: computed directly (the cache is the current SAE's).
  const bool other = !saeName.empty() && saeName != currentSaeName(ws);
  const std::string saeFile = other ? saeFileFor(ws, saeName) : std::string();
  if (kind == FeatureKind::Sparse && !other && !ws.hasSae())
    throw Error(ws.saePath() + ": missing; run `saescope sae --workspace " + ws.dir() + "` first");
  auto checkFeatureId = [&](int64_t id, int64_t nf) {
    if (id < 0 || id >= nf)
      throw Error("--feature " + std::to_string(id) + ": out of range; this workspace has " +
                  std::to_string(nf) + " " + kindName(kind) + " features (0.." +
                  std::to_string(nf - 1) + ")");
  };
  JobContext quiet;
  if (k <= FeatureIndex::kStoredK && !other) {
    if (auto idx = tryLoadIndex(ws)) {
      checkFeatureId(feature, idx->numFeatures(kind));
      std::vector<TopEntry> top = idx->top(kind, rule, feature);
      if (static_cast<int>(top.size()) > k) top.resize(k);
      return top;
    }
  }
  const Sources src = readSources(ws, saeFile);
  const int64_t nf = kind == FeatureKind::Dense ? src.emb.shape[1] : src.we.size(1);
  checkFeatureId(feature, nf);
  KindScanner scanner(nf, k, kind == FeatureKind::Dense, feature);
  scan(src, kind == FeatureKind::Dense ? &scanner : nullptr,
       kind == FeatureKind::Sparse ? &scanner : nullptr, quiet);
  scanner.finish();
  return (rule == RankRule::Seed ? scanner.m_seed : scanner.m_raw)[0].sorted();
}

Image composeGrid(const std::vector<Image>& thumbs, int cols, int cell, int pad) {
  const int n = static_cast<int>(thumbs.size());
  const int rows = std::max(1, (n + cols - 1) / cols);
  Image out;
  out.channels = 4;
  out.width = cols * cell + (cols + 1) * pad;
  out.height = rows * cell + (rows + 1) * pad;
  out.pixels.assign(static_cast<size_t>(out.width) * out.height * 4, 0);
  for (size_t i = 0; i < out.pixels.size(); i += 4) {
    out.pixels[i] = out.pixels[i + 1] = out.pixels[i + 2] = 24;
    out.pixels[i + 3] = 255;
  }
  for (int t = 0; t < n; ++t) {
    const int x0 = pad + (t % cols) * (cell + pad), y0 = pad + (t / cols) * (cell + pad);
    Image im = thumbs[t];
    if (!im.empty() && (im.width != cell || im.height != cell)) im = resizeBilinear(im, cell, cell);
    for (int y = 0; y < cell; ++y)
      for (int x = 0; x < cell; ++x) {
        uint8_t* d = &out.pixels[(static_cast<size_t>(y0 + y) * out.width + x0 + x) * 4];
        if (im.empty()) {
          d[0] = d[1] = d[2] = 64;
        } else {
          const uint8_t* s = &im.pixels[(static_cast<size_t>(y) * cell + x) * im.channels];
          d[0] = s[0];
          d[1] = im.channels >= 3 ? s[1] : s[0];
          d[2] = im.channels >= 3 ? s[2] : s[0];
        }
        d[3] = 255;
      }
  }
  return out;
}

Image loadThumbnail(const std::string& path, int size) {
  Image img = decodeImage(path);
  const int side = std::min(img.width, img.height);
  if (img.width != img.height) {  // centre crop to a square
    Image sq;
    sq.width = sq.height = side;
    sq.channels = img.channels;
    sq.pixels.resize(static_cast<size_t>(side) * side * img.channels);
    const int x0 = (img.width - side) / 2, y0 = (img.height - side) / 2;
    for (int y = 0; y < side; ++y)
      std::memcpy(&sq.pixels[static_cast<size_t>(y) * side * img.channels],
                  &img.pixels[(static_cast<size_t>(y0 + y) * img.width + x0) * img.channels],
                  static_cast<size_t>(side) * img.channels);
    img = std::move(sq);
  }
  return resizeBilinear(img, size, size);
}

}  // namespace engine
