// engine/features.h — top-activating images per feature, dense and sparse, and the 4x4 grid;
// per feature also images across its activation quantiles, the attributes most correlated with
// it and (sparse) its nearest features by decoder cosine.
//
// A FeatureIndex is built once per workspace (embeddings.npy + sae.pt) on a worker thread and then
// shared read-only (std::shared_ptr<const FeatureIndex>): any thread may query it concurrently.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "image.h"
#include "job.h"

namespace engine {

enum class FeatureKind { Dense, Sparse };
enum class RankRule { Seed, Raw };  // seed: reference (row-L2-normalised); raw: activation

const char* kindName(FeatureKind k);  // "dense" / "sparse"
const char* rankName(RankRule r);     // "seed" / "raw"
// Parse "dense"/"sparse", "seed"/"raw"; throw engine::Error naming `flag` otherwise.
FeatureKind parseKind(const std::string& s, const std::string& flag);
RankRule parseRank(const std::string& s, const std::string& flag);

struct TopEntry {
  int64_t index = 0;     // image row (images.txt line)
  float score = 0;       // the ranking value (normalised for seed, raw for raw)
  float activation = 0;  // the raw activation
};

// Per-feature summary over all images.
struct FeatureStats {
  int64_t active = 0;  // images with activation > 0 (dense: > 0 as well)
  double mean = 0;
  float min = 0, max = 0;
  // kHistBins equal bins over [histLo, histHi), fitted to the values: unions of the quantile bins
  // (QuantileSample), so the edges are exact; sparse: from 0, the zeros in the first bin. Both 0
  // when no value was binned.
  std::vector<int64_t> histogram;
  float histLo = 0, histHi = 0;
};

// One image sampled at a quantile of a feature's active distribution. The active values (sparse:
// activation > 0; dense: every value) are counted in kQuantileBins equal-width bins over [0, h)
// (sparse) or [-h, h) (dense), h the smallest power of two above the first nonzero |value| that
// exceeds every |value| (the range doubles, merging bin pairs, as larger values arrive: one pass,
// exact counts). For level q the q-quantile is the active value of 0-based rank floor(q (n - 1)) in
// ascending order (numpy's method="lower"); the sample is the lowest-index image in the bin that
// holds that rank. So the sample and the exact q-quantile lie in the same bin [lo, hi).
struct QuantileSample {
  float quantile = 0;    // q, one of FeatureIndex::quantileLevel(i)
  int64_t index = 0;     // image row
  float activation = 0;  // its raw activation
  float lo = 0, hi = 0;  // the bin holding both this activation and the exact q-quantile
};

// Pearson correlation between a feature's raw activation and one binary (±1) attribute, over the
// images that have attributes.
struct AttributeCorrelation {
  std::string name;  // attribute column
  float r = 0;       // in [-1, 1]
};

// Another sparse feature and the cosine between its decoder row and the query's.
struct NearFeature {
  int64_t feature = 0;
  float cosine = 0;
};

class FeatureIndex {
 public:
  static constexpr int kStoredK = 64;
  static constexpr int kHistBins = 32;
  static constexpr int kQuantiles = 8;       // levels 5 %, 17.9 %, ..., 95 % (evenly spaced)
  static constexpr int kQuantileBins = 512;  // power of two (exact bin merging)
  static float quantileLevel(int i) { return 0.05f + 0.9f * i / (kQuantiles - 1); }

  // Computes top-kStoredK lists for both kinds and both rules, per-feature stats, quantile samples
  // and attribute correlations in one chunked pass over the embeddings (never holding N x F
  // activations). Needs embeddings.npy; sparse parts need sae.pt (absent: sparse queries are
  // empty); correlations need the manifest's attributes_file (matched to images.txt by file
  // name; binary columns that vary). Runs on the calling thread.
  static std::shared_ptr<const FeatureIndex> build(const std::string& workspace, JobContext& ctx);
  // Loads the cached index from WS/index/ if it matches the current artifacts, else builds and
  // caches it.
  static std::shared_ptr<const FeatureIndex> loadOrBuild(const std::string& workspace,
                                                         JobContext& ctx);

  int64_t numImages() const { return m_numImages; }
  int64_t numFeatures(FeatureKind k) const;
  bool hasSparse() const { return m_numSparse > 0; }
  // Top entries (at most kStoredK), best first; ties broken by lower image index.
  const std::vector<TopEntry>& top(FeatureKind k, RankRule r, int64_t feature) const;
  const FeatureStats& stats(FeatureKind k, int64_t feature) const;
  // The `n` strongest sparse features of image `row` (feature id, activation), best first.
  std::vector<std::pair<int64_t, float>> strongestSparse(int64_t row, int n) const;
  // Samples at the kQuantiles levels, ascending; a level that lands on the previous level's image
  // is left out (few active images). Empty for a dead feature.
  const std::vector<QuantileSample>& quantiles(FeatureKind k, int64_t feature) const;
  // The `n` attributes with the largest |r| (ties: column order); empty without attributes.
  std::vector<AttributeCorrelation> correlatedAttributes(FeatureKind k, int64_t feature,
                                                         int n) const;
  const std::vector<std::string>& attributeNames() const { return m_attrNames; }
  int64_t attributeImages() const { return m_attrImages; }  // images with attributes
  // The `n` other sparse features whose decoder rows have the highest cosine with `feature`'s,
  // best first, ties by lower id; rows of norm 0 take no part. O(F x D): cheap on any thread.
  std::vector<NearFeature> nearestByDecoder(int64_t feature, int n) const;

  // Internal representation, filled by build()/load.
  int64_t m_numImages = 0, m_numDense = 0, m_numSparse = 0;
  std::vector<std::vector<TopEntry>> m_top[2][2];  // [kind][rule][feature]
  std::vector<FeatureStats> m_stats[2];            // [kind][feature]
  std::vector<uint8_t> m_embeddingBytes;           // [N, D] raw float32 (for strongestSparse)
  std::vector<float> m_we, m_be, m_bd;             // SAE encoder [D, F], [F], [D]
  // [kind][feature]
  std::vector<std::vector<QuantileSample>> m_quantiles[2];
  // Correlated attribute columns; r per [kind][feature * columns + column], NaN: constant.
  std::vector<std::string> m_attrNames;
  int64_t m_attrImages = 0;
  std::vector<float> m_corr[2];
  // [F, D] decoder rows divided by their norm (from sae.pt); a zero row is NaN.
  std::vector<float> m_decoderUnit;
};

class Workspace;
// After the current SAE changed: the cached index (index/features.idx) becomes index/previous.idx,
// which the next build reads only for its dense part (it does not depend on the SAE; it is used
// only when its embeddings and attribute stamps still match).
void retireFeatureIndex(const Workspace& ws);

// Top-k of one feature computed directly from the workspace's arrays (any k), best first, ties by
// lower index. Matches the reference Python ranking.
// `saeName`: one of the workspace's SAEs (saes/<name>.pt); "" = the current SAE (sae.pt).
std::vector<TopEntry> computeTopK(const std::string& workspace, FeatureKind kind, int64_t feature,
                                  int k, RankRule rule, const std::string& saeName = "");

// Composes `cols` x rows thumbnails (RGB, any size; each scaled to `cell` px) into one RGBA image
// with `pad` px gaps on a dark background. Missing thumbnails (empty images) leave a grey cell.
Image composeGrid(const std::vector<Image>& thumbs, int cols, int cell, int pad);

// Decodes an image and scales it to fit `size` x `size` (centre-cropped to a square). Any thread.
Image loadThumbnail(const std::string& path, int size);

}  // namespace engine
