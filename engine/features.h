// engine/features.h — top-activating images per feature, dense and sparse, and the 4x4 grid.
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
  std::vector<int64_t> histogram;  // kHistBins bins over [min, max]
};

class FeatureIndex {
 public:
  static constexpr int kStoredK = 64;
  static constexpr int kHistBins = 32;

  // Computes top-kStoredK lists for both kinds and both rules, and per-feature stats, in one
  // chunked pass over the embeddings (never holding N x F activations). Needs embeddings.npy;
  // sparse parts need sae.pt (absent: sparse queries are empty). Runs on the calling thread.
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

  // Internal representation, filled by build()/load.
  int64_t m_numImages = 0, m_numDense = 0, m_numSparse = 0;
  std::vector<std::vector<TopEntry>> m_top[2][2];  // [kind][rule][feature]
  std::vector<FeatureStats> m_stats[2];            // [kind][feature]
  std::vector<float> m_embeddings;                 // [N, D] raw (for strongestSparse)
  std::vector<float> m_we, m_be, m_bd;             // SAE encoder [D, F], [F], [D]
};

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
