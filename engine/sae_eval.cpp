// SAE health metrics, measured interpretability, the held-out split and the workspace's SAEs
// (LibTorch for the encoding; the statistics are plain C++).
#include "sae_eval.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "features.h"
#include "fsutil.h"
#include "npy.h"
#include "sae.h"
#include "torch_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

namespace {

std::string baseNameOf(const std::string& p) {
  const size_t s = p.find_last_of("/\\");
  return s == std::string::npos ? p : p.substr(s + 1);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// name → partition from list_eval_partition.{csv,txt}; empty when unreadable.
std::map<std::string, int> readPartition(const std::string& path) {
  std::map<std::string, int> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    for (char& c : line)
      if (c == ',' || c == '\t' || c == '\r') c = ' ';
    std::istringstream ss(line);
    std::string name, part;
    if (!(ss >> name >> part)) continue;
    if (part.empty() || !std::isdigit(static_cast<unsigned char>(part[0]))) continue;  // header
    out[name] = std::atoi(part.c_str());
  }
  return out;
}

struct LoadedSae {
  torch::Tensor we, wd, be, bd, theta;  // theta: [F] or undefined
};

LoadedSae loadSae(const std::string& file, int64_t d) {
  const StateDict sd = readTensorFile(file);
  LoadedSae s;
  const char* names[] = {"weight_encoder", "weight_decoder", "bias_encoder", "bias_decoder"};
  for (const char* n : names)
    if (!findTensor(sd, n))
      throw Error(file + ": missing tensor '" + std::string(n) +
                  "' (expected the reference SparseAutoencoder state_dict)");
  s.we = toTorch(*findTensor(sd, "weight_encoder")).to(torch::kFloat32);
  s.wd = toTorch(*findTensor(sd, "weight_decoder")).to(torch::kFloat32);
  s.be = toTorch(*findTensor(sd, "bias_encoder")).to(torch::kFloat32);
  s.bd = toTorch(*findTensor(sd, "bias_decoder")).to(torch::kFloat32);
  if (const TensorData* t = findTensor(sd, "threshold"))
    s.theta = toTorch(*t).to(torch::kFloat32).flatten();
  const int64_t f = s.we.dim() == 2 ? s.we.size(1) : -1;
  if (s.we.dim() != 2 || s.we.size(0) != d || s.wd.dim() != 2 || s.wd.size(0) != f ||
      s.wd.size(1) != d || s.be.numel() != f || s.bd.numel() != d ||
      (s.theta.defined() && s.theta.numel() != f && s.theta.numel() != 1))
    throw Error(file + ": weight shapes do not fit embeddings of width " + std::to_string(d));
  return s;
}

// Features as the saved SAE encodes them (engine/sae.h): f_ref + θ·1[f_ref > 0].
torch::Tensor encodeSaved(const LoadedSae& s, const torch::Tensor& x) {
  torch::Tensor f = torch::relu(torch::addmm(s.be, x - s.bd, s.we));
  if (s.theta.defined()) f = f + s.theta * (f > 0).to(torch::kFloat32);
  return f;
}

torch::Tensor rowsWhere(const std::vector<uint8_t>& mask, uint8_t v) {
  std::vector<int64_t> rows;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] == v) rows.push_back(static_cast<int64_t>(i));
  return torch::tensor(rows, torch::kLong);
}

// Average ranks (1-based) of v, ties averaged.
std::vector<double> averageRanks(const float* v, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] < v[b]; });
  std::vector<double> rank(n);
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && v[order[j + 1]] == v[order[i]]) ++j;
    const double r = 0.5 * static_cast<double>(i + j) + 1.0;
    for (int64_t t = i; t <= j; ++t) rank[order[t]] = r;
    i = j + 1;
  }
  return rank;
}

}  // namespace

double auroc(const std::vector<float>& scores, const std::vector<uint8_t>& labels) {
  const int64_t n = static_cast<int64_t>(scores.size());
  const std::vector<double> rank = averageRanks(scores.data(), n);
  double sumPos = 0;
  int64_t nPos = 0;
  for (int64_t i = 0; i < n; ++i)
    if (labels[i]) {
      sumPos += rank[i];
      ++nPos;
    }
  const int64_t nNeg = n - nPos;
  if (nPos == 0 || nNeg == 0) return NAN;
  return (sumPos - 0.5 * static_cast<double>(nPos) * (nPos + 1)) /
         (static_cast<double>(nPos) * nNeg);
}

SaeSplit saeSplit(const Workspace& ws, int64_t n) {
  SaeSplit s;
  s.heldOut.assign(n, 0);
  const std::vector<std::string> paths = ws.imageList();
  std::vector<std::string> candidates;
  const std::string root = ws.dataRoot();
  const std::string attr = ws.manifest().value("attributes_file", std::string());
  for (const std::string& dir :
       {root, attr.empty() ? std::string() : fs::path(attr).parent_path().string()})
    if (!dir.empty())
      for (const char* name : {"list_eval_partition.csv", "list_eval_partition.txt"})
        candidates.push_back((fs::path(dir) / name).string());
  if (static_cast<int64_t>(paths.size()) == n) {
    for (const std::string& c : candidates) {
      if (!fileExists(c)) continue;
      const std::map<std::string, int> part = readPartition(c);
      int64_t covered = 0, test = 0;
      std::vector<uint8_t> mask(n, 0);
      for (int64_t i = 0; i < n; ++i) {
        auto it = part.find(baseNameOf(paths[i]));
        if (it == part.end()) continue;
        ++covered;
        if (it->second == 2) mask[i] = 1, ++test;
      }
      if (covered == n && test > 0 && test < n) {
        s.kind = "celeba_test_partition";
        s.source = c;
        s.heldOut = mask;
        s.numHeldOut = test;
        return s;
      }
    }
  }
  s.kind = "hash10";
  for (int64_t i = 0; i < n; ++i) {
    const std::string key =
        static_cast<int64_t>(paths.size()) == n ? baseNameOf(paths[i]) : std::to_string(i);
    s.heldOut[i] = fnv1a(key) % 10 == 0;
    s.numHeldOut += s.heldOut[i];
  }
  if (s.numHeldOut == 0 && n > 1) {  // tiny sets: hold out the last vector
    s.heldOut[n - 1] = 1;
    s.numHeldOut = 1;
  }
  return s;
}

std::string currentSaeName(const Workspace& ws) {
  return ws.manifest().value("current_sae", std::string());
}

std::string saeFileFor(const Workspace& ws, const std::string& name) {
  if (name.empty()) {
    if (!ws.hasSae())
      throw Error(ws.saePath() + ": missing; run `saescope sae --workspace " + ws.dir() +
                  "` first");
    return ws.saePath();
  }
  const std::string file = ws.path("saes/" + name + ".pt");
  if (name.find('/') != std::string::npos || !fileExists(file)) {
    std::string known;
    if (ws.manifest().contains("sae_runs"))
      for (auto it = ws.manifest()["sae_runs"].begin(); it != ws.manifest()["sae_runs"].end(); ++it)
        known += (known.empty() ? "" : ", ") + it.key();
    throw Error("--sae " + name + ": no such SAE in " + ws.dir() +
                (known.empty() ? std::string("; train one with `saescope sae --name NAME`")
                               : "; known: " + known));
  }
  return file;
}

void selectSae(const std::string& workspace, const std::string& name) {
  Workspace ws = Workspace::open(workspace, false);
  const std::string file = saeFileFor(ws, name);
  const std::vector<uint8_t> bytes = readFileBytes(file);
  writeFileAtomic(ws.saePath(), bytes.data(), bytes.size());
  retireFeatureIndex(ws);
  ws.updateManifest([&](json& m) { m["current_sae"] = name; });
}

json evaluateSaeFile(const Workspace& ws, const std::string& file, JobContext& ctx) {
  torch::NoGradGuard noGrad;
  const torch::Tensor all = loadUnitEmbeddings(ws);
  const int64_t n = all.size(0), d = all.size(1);
  const SaeSplit split = saeSplit(ws, n);
  const torch::Tensor x = all.index_select(0, rowsWhere(split.heldOut, 1));
  const LoadedSae sae = loadSae(file, d);
  const int64_t f = sae.we.size(1), m = x.size(0);

  ctx.beginStage("sae-eval", m, "vectors");
  const torch::Tensor mean = x.to(torch::kFloat64).mean(0);
  double sse = 0, sst = 0, cosSum = 0, l0Sum = 0, hatSq = 0, dot = 0;
  torch::Tensor fired = torch::zeros({f}, torch::kLong);
  for (int64_t s = 0; s < m; s += 4096) {
    ctx.checkStop();
    const int64_t e = std::min(m, s + 4096);
    const torch::Tensor xb = x.slice(0, s, e);
    const torch::Tensor fb = encodeSaved(sae, xb);
    const torch::Tensor xHat = torch::addmm(sae.bd, fb, sae.wd);
    const torch::Tensor x64 = xb.to(torch::kFloat64), h64 = xHat.to(torch::kFloat64);
    sse += (x64 - h64).pow(2).sum().item<double>();
    sst += (x64 - mean).pow(2).sum().item<double>();
    cosSum += torch::cosine_similarity(x64, h64, 1, 1e-12).sum().item<double>();
    l0Sum += (fb > 0).sum().item<double>();
    hatSq += h64.pow(2).sum().item<double>();
    dot += (x64 * h64).sum().item<double>();
    fired += (fb > 0).sum(0).to(torch::kLong);
    ctx.advance(e - s);
  }
  const torch::Tensor freq =
      fired.to(torch::kFloat64) / static_cast<double>(std::max<int64_t>(m, 1));
  const int64_t dead = (fired == 0).sum().item<int64_t>();

  // log10 frequency histogram: edges -6, -5.5, ..., 0; dead features counted apart.
  std::vector<double> edges;
  for (int i = 0; i <= 12; ++i) edges.push_back(-6 + 0.5 * i);
  std::vector<int64_t> counts(12, 0);
  const auto fa = freq.accessor<double, 1>();
  for (int64_t j = 0; j < f; ++j) {
    if (fa[j] <= 0) continue;
    const int b = std::clamp(static_cast<int>(std::floor((std::log10(fa[j]) + 6) / 0.5)), 0, 11);
    counts[b]++;
  }

  // Redundancy: mean over decoder rows of the max cosine to another row.
  double redundancy = 0;
  {
    const torch::Tensor u = l2normalizeRows(sae.wd);
    double sum = 0;
    for (int64_t s = 0; s < f; s += 1024) {
      const int64_t e = std::min(f, s + 1024);
      torch::Tensor c = torch::mm(u.slice(0, s, e), u.t());
      c.slice(1, s, e).diagonal().fill_(-2);  // exclude self
      sum += std::get<0>(c.max(1)).to(torch::kFloat64).sum().item<double>();
    }
    redundancy = f > 1 ? sum / static_cast<double>(f) : 0.0;
  }

  const double md = static_cast<double>(std::max<int64_t>(m, 1));
  return json{
      {"features", f},
      {"vectors", m},
      {"split", {{"kind", split.kind}, {"held_out", split.numHeldOut}, {"source", split.source}}},
      {"l0", l0Sum / md},
      {"explained_variance", sst > 0 ? 1.0 - sse / sst : NAN},
      {"mse", sse / (md * static_cast<double>(d))},
      {"cosine", cosSum / md},
      {"shrinkage", dot != 0 ? hatSq / dot : NAN},
      {"dead_fraction", static_cast<double>(dead) / f},
      {"dead_features", dead},
      {"dense_fraction_1pct", (freq > 0.01).to(torch::kFloat64).mean().item<double>()},
      {"dense_fraction_10pct", (freq > 0.10).to(torch::kFloat64).mean().item<double>()},
      {"redundancy", redundancy},
      {"log10_frequency_histogram", {{"edges", edges}, {"counts", counts}, {"dead", dead}}},
      {"encoding", sae.theta.defined() ? "global threshold" : "relu"}};
}

json evaluateSae(const std::string& workspace, const std::string& name, JobContext& ctx) {
  const Workspace ws = Workspace::open(workspace, false);
  const std::string file = saeFileFor(ws, name);
  json out = evaluateSaeFile(ws, file, ctx);
  const std::string runName = name.empty() ? currentSaeName(ws) : name;
  std::string variant = "seed";
  const json& m = ws.manifest();
  if (!runName.empty() && m.contains("sae_runs") && m["sae_runs"].contains(runName))
    variant = m["sae_runs"][runName].value("variant", "seed");
  else if (m.contains("stages") && m["stages"].contains("sae") &&
           m["stages"]["sae"].contains("config"))
    variant = m["stages"]["sae"]["config"].value("variant", "seed");
  out["variant"] = variant;
  out["name"] = runName;
  return out;
}

// ---------------------------------------------------------------------------------------------
// interp

namespace {

struct KindScores {
  std::vector<double> auc;  // per attribute, held-out AUROC of the feature chosen on train
  std::vector<int64_t> best;
  double purity = 0;
  int64_t purityFeatures = 0;
};

// acts: [N, K] float (CPU, contiguous); labels [A][N]; train/test masks.
KindScores scoreKind(const torch::Tensor& acts, const std::vector<std::vector<uint8_t>>& labels,
                     const std::vector<uint8_t>& heldOut, const std::vector<uint8_t>& minority,
                     bool signAware, bool needsActive, JobContext& ctx) {
  const int64_t n = acts.size(0), k = acts.size(1);
  const size_t na = labels.size();
  const torch::Tensor trainRows = rowsWhere(heldOut, 0), testRows = rowsWhere(heldOut, 1);
  const torch::Tensor tr = acts.index_select(0, trainRows).t().contiguous();  // [K, Ntr]
  const int64_t ntr = tr.size(1);
  std::vector<std::vector<uint8_t>> labTr(na), labTe(na);
  for (size_t a = 0; a < na; ++a)
    for (int64_t i = 0; i < n; ++i) (heldOut[i] ? labTe : labTr)[a].push_back(labels[a][i]);

  // Train-split AUROC of every feature for every attribute (ranks once per feature).
  std::vector<double> bestAuc(na, -1);
  std::vector<int64_t> best(na, -1);
  std::vector<double> nPos(na, 0);
  for (size_t a = 0; a < na; ++a)
    for (uint8_t v : labTr[a]) nPos[a] += v;
  std::vector<std::vector<double>> aucs(k, std::vector<double>(na, NAN));
  at::parallel_for(0, k, 64, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const std::vector<double> rank = averageRanks(tr.data_ptr<float>() + j * ntr, ntr);
      for (size_t a = 0; a < na; ++a) {
        const double p = nPos[a], q = ntr - p;
        if (p == 0 || q == 0) continue;
        double s = 0;
        for (int64_t i = 0; i < ntr; ++i)
          if (labTr[a][i]) s += rank[i];
        aucs[j][a] = (s - 0.5 * p * (p + 1)) / (p * q);
      }
    }
  });
  ctx.checkStop();
  for (int64_t j = 0; j < k; ++j)
    for (size_t a = 0; a < na; ++a) {
      double v = aucs[j][a];
      if (std::isnan(v)) continue;
      if (signAware) v = std::max(v, 1 - v);
      if (v > bestAuc[a]) bestAuc[a] = v, best[a] = j;
    }
  KindScores out;
  out.best = best;
  const torch::Tensor te = acts.index_select(0, testRows);
  for (size_t a = 0; a < na; ++a) {
    if (best[a] < 0) {
      out.auc.push_back(NAN);
      continue;
    }
    const torch::Tensor col = te.select(1, best[a]).contiguous();
    const std::vector<float> sc(col.data_ptr<float>(), col.data_ptr<float>() + col.numel());
    double v = auroc(sc, labTe[a]);
    if (signAware && !std::isnan(v)) v = std::max(v, 1 - v);
    out.auc.push_back(v);
  }

  // Purity over all images: top-16 by activation (ties: lower index first).
  const torch::Tensor cols = acts.t().contiguous();  // [K, N]
  double puritySum = 0;
  int64_t used = 0;
  const int top = 16;
  for (int64_t j = 0; j < k && n >= top; ++j) {
    const float* v = cols.data_ptr<float>() + j * n;
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top, order.end(),
                      [&](int64_t a, int64_t b) { return v[a] != v[b] ? v[a] > v[b] : a < b; });
    if (needsActive && !(v[order[top - 1]] > 0)) continue;  // fewer than 16 active images
    double bestShare = 0;
    for (size_t a = 0; a < na; ++a) {
      int c = 0;
      for (int t = 0; t < top; ++t) c += labels[a][order[t]] == minority[a];
      bestShare = std::max(bestShare, c / static_cast<double>(top));
    }
    puritySum += bestShare;
    ++used;
  }
  out.purity = used ? puritySum / used : NAN;
  out.purityFeatures = used;
  return out;
}

double meanOf(const std::vector<double>& v) {
  double s = 0;
  int c = 0;
  for (double x : v)
    if (!std::isnan(x)) s += x, ++c;
  return c ? s / c : NAN;
}

json num(double v) {
  return std::isnan(v) ? json(nullptr) : json(v);
}

}  // namespace

json measureInterp(const std::string& workspace, const std::string& name, JobContext& ctx) {
  torch::NoGradGuard noGrad;
  const Workspace ws = Workspace::open(workspace, false);
  const std::string attrFile = ws.manifest().value("attributes_file", std::string());
  if (attrFile.empty() || !fileExists(attrFile))
    throw Error("interp: " + ws.dir() +
                " has no attribute file (manifest attributes_file); interp needs a data set with "
                "binary attributes, e.g. CelebA's list_attr_celeba or `saescope demo-data`");
  const Attributes attrs = loadAttributes(attrFile);
  const std::vector<std::string> paths = ws.imageList();
  const torch::Tensor raw = toTorch(readNpy(ws.embeddingsPath())).to(torch::kFloat32);
  const int64_t nAll = raw.size(0), d = raw.size(1);
  if (static_cast<int64_t>(paths.size()) != nAll)
    throw Error(ws.imagesPath() + ": " + std::to_string(paths.size()) + " lines but " +
                std::to_string(nAll) + " embeddings; re-run `saescope embed`");
  const SaeSplit split = saeSplit(ws, nAll);
  const LoadedSae sae = loadSae(saeFileFor(ws, name), d);

  // Images with attributes only.
  std::vector<int64_t> rows, attrRow;
  for (int64_t i = 0; i < nAll; ++i) {
    const int64_t r = attrs.rowForPath(paths[i]);
    if (r >= 0) rows.push_back(i), attrRow.push_back(r);
  }
  if (rows.size() < 32)
    throw Error("interp: only " + std::to_string(rows.size()) + " images of " + ws.dir() +
                " have attributes in " + attrFile + " (need at least 32)");
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<uint8_t> heldOut(n);
  for (int64_t i = 0; i < n; ++i) heldOut[i] = split.heldOut[rows[i]];
  std::vector<size_t> cols;
  std::vector<std::vector<uint8_t>> labels;
  std::vector<uint8_t> minority;
  for (size_t c = 0; c < attrs.names.size(); ++c) {
    if (!attrs.binary[c]) continue;
    std::vector<uint8_t> lab(n);
    int64_t pos = 0;
    for (int64_t i = 0; i < n; ++i) pos += lab[i] = attrs.value(attrRow[i], c) > 0;
    if (pos == 0 || pos == n) continue;  // constant: no AUROC
    cols.push_back(c);
    labels.push_back(std::move(lab));
    minority.push_back(pos * 2 <= n ? 1 : 0);
  }
  if (cols.empty()) throw Error("interp: " + attrFile + " has no binary attribute that varies");

  const torch::Tensor sel = raw.index_select(0, torch::tensor(rows, torch::kLong));
  const torch::Tensor dense = sel.contiguous();
  const torch::Tensor sparse = encodeSaved(sae, l2normalizeRows(sel)).contiguous();
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(12345);
  const torch::Tensor proj =
      at::randn({d, sae.we.size(1)}, gen, torch::TensorOptions().dtype(torch::kFloat32));
  const torch::Tensor random = torch::mm(l2normalizeRows(sel), proj).contiguous();

  ctx.beginStage("interp", 3, "kinds");
  const KindScores ds = scoreKind(dense, labels, heldOut, minority, true, false, ctx);
  ctx.advance(1);
  const KindScores ss = scoreKind(sparse, labels, heldOut, minority, false, true, ctx);
  ctx.advance(1);
  const KindScores rs = scoreKind(random, labels, heldOut, minority, true, false, ctx);
  ctx.advance(1);

  json perAttr = json::object();
  for (size_t a = 0; a < cols.size(); ++a)
    perAttr[attrs.names[cols[a]]] = {
        {"dense_auroc", num(ds.auc[a])},
        {"sparse_auroc", num(ss.auc[a])},
        {"random_auroc", num(rs.auc[a])},
        {"dense_feature", ds.best[a]},
        {"sparse_feature", ss.best[a]},
        {"positives", std::count(labels[a].begin(), labels[a].end(), 1)}};
  std::string runName = name.empty() ? currentSaeName(ws) : name;
  return json{{"attributes", perAttr},
              {"mean_dense_auroc", num(meanOf(ds.auc))},
              {"mean_sparse_auroc", num(meanOf(ss.auc))},
              {"mean_random_auroc", num(meanOf(rs.auc))},
              {"dense_purity", num(ds.purity)},
              {"sparse_purity", num(ss.purity)},
              {"random_purity", num(rs.purity)},
              {"sparse_purity_features", ss.purityFeatures},
              {"dense_features", d},
              {"sparse_features", sae.we.size(1)},
              {"random_features", sae.we.size(1)},
              {"random_seed", 12345},
              {"images", n},
              {"held_out", std::count(heldOut.begin(), heldOut.end(), 1)},
              {"split", split.kind},
              {"name", runName},
              {"method",
               "AUROC: best feature per attribute chosen on the training split, measured on the "
               "held-out split; dense and random features sign-aware. Purity: top-16 images over "
               "all images, share having the most common attribute minority value"}};
}

}  // namespace engine
