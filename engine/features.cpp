// Feature index: per-feature top-k lists and statistics, dense and sparse (LibTorch for the SAE
// encoding; everything else plain C++).
#include "features.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <queue>

#include <nlohmann/json.hpp>

#include "checkpoint.h"
#include "error.h"
#include "fsutil.h"
#include "npy.h"
#include "sae.h"
#include "sae_eval.h"
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

// Running statistics with a histogram whose range doubles as larger values arrive.
struct StatAccumulator {
  int64_t active = 0, count = 0;
  double sum = 0;
  float min = INFINITY, max = -INFINITY;
  bool symmetric = false;  // range [-h, h] (dense) or [0, h] (sparse)
  float h = 0;
  std::vector<int64_t> hist = std::vector<int64_t>(FeatureIndex::kHistBins, 0);

  void add(float v) {
    ++count;
    sum += v;
    if (v > 0) ++active;
    min = std::min(min, v);
    max = std::max(max, v);
    const float a = symmetric ? std::abs(v) : std::max(v, 0.f);
    if (h == 0 && a > 0) h = a;
    while (a > h) grow();
    hist[bin(v)]++;
  }
  int bin(float v) const {
    const int n = FeatureIndex::kHistBins;
    if (h == 0) return symmetric ? n / 2 : 0;
    const float lo = symmetric ? -h : 0.f;
    const int b = static_cast<int>((v - lo) / (h - lo) * n);
    return std::clamp(b, 0, n - 1);
  }
  void grow() {
    const int n = FeatureIndex::kHistBins;
    std::vector<int64_t> next(n, 0);
    for (int i = 0; i < n; ++i) next[symmetric ? n / 4 + i / 2 : i / 2] += hist[i];
    hist.swap(next);
    h *= 2;
  }
  FeatureStats finish() const {
    FeatureStats s;
    s.active = active;
    s.mean = count ? sum / count : 0;
    s.min = count ? min : 0;
    s.max = count ? max : 0;
    s.histogram = hist;
    return s;
  }
};

// Streams rows of scores/activations into per-feature keepers for both ranking rules.
class KindScanner {
 public:
  KindScanner(int64_t features, int k, bool symmetric, int64_t onlyFeature)
      : m_only(onlyFeature) {
    const int64_t nf = onlyFeature >= 0 ? 1 : features;
    for (int64_t f = 0; f < nf; ++f) {
      m_seed.emplace_back(k);
      m_raw.emplace_back(k);
      m_stats.emplace_back();
      m_stats.back().symmetric = symmetric;
    }
  }
  // act: [rows, F] raw activations (row-major, CPU float); norms: per-row L2 norm of act.
  void add(const float* act, const float* norms, int64_t rows, int64_t features, int64_t row0) {
    const int64_t f0 = m_only >= 0 ? m_only : 0;
    const int64_t nf = static_cast<int64_t>(m_seed.size());
    at::parallel_for(0, nf, 16, [&](int64_t b, int64_t e) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = act + r * features;
        // Divide (not multiply by a reciprocal) so scores round exactly as F.normalize's do:
        // exact ties must stay ties for the reference tie-break by index.
        const float denom = std::max(norms[r], 1e-12f);
        for (int64_t j = b; j < e; ++j) {
          const float v = row[f0 + j];
          m_stats[j].add(v);
          const float s = v / denom;
          if (s > m_seed[j].threshold() || !m_seed[j].full()) m_seed[j].offer({row0 + r, s, v});
          if (v > m_raw[j].threshold() || !m_raw[j].full()) m_raw[j].offer({row0 + r, v, v});
        }
      }
    });
  }
  std::vector<TopKeeper> m_seed, m_raw;
  std::vector<StatAccumulator> m_stats;
  int64_t m_only;
};

struct Sources {
  TensorData emb;          // [N, D]
  bool haveSae = false;
  torch::Tensor we, be, bd;  // SAE encoder weights (CPU float)
};

Sources readSources(const Workspace& ws, const std::string& saeFile = "") {
  if (!ws.hasEmbeddings())
    throw Error(ws.embeddingsPath() + ": missing; run `saescope embed --workspace " + ws.dir() + "` first");
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

// One pass over all rows, feeding the scanners (either may be null).
void scan(const Sources& src, KindScanner* dense, KindScanner* sparse, JobContext& ctx) {
  torch::NoGradGuard noGrad;
  const int64_t n = src.emb.shape[0], d = src.emb.shape[1];
  const torch::Tensor all = torch::from_blob(const_cast<uint8_t*>(src.emb.bytes.data()), {n, d},
                                             torch::kFloat32);
  ctx.beginStage("index", n, "images");
  for (int64_t s = 0; s < n; s += kChunk) {
    ctx.checkStop();
    const int64_t e = std::min(n, s + kChunk);
    const torch::Tensor raw = all.slice(0, s, e).contiguous();
    const torch::Tensor norms = raw.norm(2, 1).contiguous();
    if (dense) dense->add(raw.data_ptr<float>(), norms.data_ptr<float>(), e - s, d, s);
    if (sparse) {
      const torch::Tensor x = l2normalizeRows(raw);
      const torch::Tensor f = torch::relu(torch::addmm(src.be, x - src.bd, src.we)).contiguous();
      const torch::Tensor fn = f.norm(2, 1).contiguous();
      sparse->add(f.data_ptr<float>(), fn.data_ptr<float>(), e - s, f.size(1), s);
    }
    ctx.advance(e - s);
  }
}

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

constexpr char kIndexMagic[8] = {'S', 'A', 'E', 'I', 'D', 'X', '0', '1'};

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

void saveIndex(const Workspace& ws, const FeatureIndex& idx) {
  std::vector<uint8_t> out(kIndexMagic, kIndexMagic + 8);
  const json header = {{"n", idx.m_numImages},
                       {"dense", idx.m_numDense},
                       {"sparse", idx.m_numSparse},
                       {"k", FeatureIndex::kStoredK},
                       {"bins", FeatureIndex::kHistBins},
                       {"embeddings", stampJson(ws.embeddingsPath())},
                       {"sae", stampJson(ws.saePath())}};
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
      for (int64_t c : s.histogram) put<int64_t>(out, c);
    }
  }
  writeFileAtomic(indexPath(ws), out.data(), out.size());
}

// The cached index when it exists and matches the current artifacts; null otherwise.
std::shared_ptr<FeatureIndex> tryLoadIndex(const Workspace& ws) {
  if (!fileExists(indexPath(ws))) return nullptr;
  try {
    const std::vector<uint8_t> bytes = readFileBytes(indexPath(ws));
    if (bytes.size() < 16 || std::memcmp(bytes.data(), kIndexMagic, 8) != 0) return nullptr;
    Reader rd{bytes, 8};
    const uint64_t hl = rd.get<uint64_t>();
    if (hl > bytes.size() - rd.pos) return nullptr;
    const json h = json::parse(bytes.begin() + rd.pos, bytes.begin() + rd.pos + hl);
    rd.pos += hl;
    if (h["embeddings"] != stampJson(ws.embeddingsPath()) || h["sae"] != stampJson(ws.saePath()) ||
        h["k"] != FeatureIndex::kStoredK || h["bins"] != FeatureIndex::kHistBins)
      return nullptr;
    auto idx = std::make_shared<FeatureIndex>();
    idx->m_numImages = h["n"];
    idx->m_numDense = h["dense"];
    idx->m_numSparse = h["sparse"];
    for (int k = 0; k < 2; ++k) {
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
        s.histogram.resize(FeatureIndex::kHistBins);
        for (auto& c : s.histogram) c = rd.get<int64_t>();
      }
    }
    return idx;
  } catch (const std::exception&) {
    return nullptr;  // a damaged cache is rebuilt, not reported
  }
}

void attachSources(FeatureIndex& idx, const Sources& src) {
  const float* p = reinterpret_cast<const float*>(src.emb.bytes.data());
  idx.m_embeddings.assign(p, p + src.emb.numel());
  if (src.haveSae) {
    auto copy = [](const torch::Tensor& t) {
      const torch::Tensor c = t.contiguous();
      return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    };
    idx.m_we = copy(src.we);
    idx.m_be = copy(src.be);
    idx.m_bd = copy(src.bd);
  }
}

std::shared_ptr<FeatureIndex> buildFrom(const Sources& src, JobContext& ctx) {
  const int64_t n = src.emb.shape[0], d = src.emb.shape[1];
  const int64_t f = src.haveSae ? src.we.size(1) : 0;
  KindScanner dense(d, FeatureIndex::kStoredK, /*symmetric=*/true, -1);
  std::unique_ptr<KindScanner> sparse;
  if (src.haveSae) sparse = std::make_unique<KindScanner>(f, FeatureIndex::kStoredK, false, -1);
  scan(src, &dense, sparse.get(), ctx);
  auto idx = std::make_shared<FeatureIndex>();
  idx->m_numImages = n;
  idx->m_numDense = d;
  idx->m_numSparse = f;
  KindScanner* scanners[2] = {&dense, sparse.get()};
  for (int k = 0; k < 2; ++k) {
    if (!scanners[k]) continue;
    for (auto& t : scanners[k]->m_seed) idx->m_top[k][0].push_back(t.sorted());
    for (auto& t : scanners[k]->m_raw) idx->m_top[k][1].push_back(t.sorted());
    for (auto& s : scanners[k]->m_stats) idx->m_stats[k].push_back(s.finish());
  }
  return idx;
}

}  // namespace

std::shared_ptr<const FeatureIndex> FeatureIndex::build(const std::string& workspace,
                                                         JobContext& ctx) {
  const Workspace ws = Workspace::open(workspace, false);
  const Sources src = readSources(ws);
  auto idx = buildFrom(src, ctx);
  attachSources(*idx, src);
  return idx;
}

std::shared_ptr<const FeatureIndex> FeatureIndex::loadOrBuild(const std::string& workspace,
                                                               JobContext& ctx) {
  const Workspace ws = Workspace::open(workspace, false);
  const Sources src = readSources(ws);
  std::shared_ptr<FeatureIndex> idx = tryLoadIndex(ws);
  if (!idx || idx->m_numImages != src.emb.shape[0]) {
    idx = buildFrom(src, ctx);
    try {
      saveIndex(ws, *idx);
    } catch (const Error& e) {
      ctx.log(std::string("note: cannot cache the feature index: ") + e.what());
    }
  }
  attachSources(*idx, src);
  return idx;
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
  const float* e = m_embeddings.data() + row * d;
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
