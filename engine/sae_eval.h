// engine/sae_eval.h — SAE health metrics (sae-eval), measured interpretability (interp), the
// held-out split and the workspace's several SAEs. Torch-free header.
//
// Thread-safety: free functions; evaluate*/measureInterp run on the calling thread (a worker or
// the CLI's main thread) and read the workspace only; selectSae writes sae.pt and the manifest.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "job.h"
#include "workspace.h"

namespace engine {

// The held-out split for SAE evaluation: CelebA's list_eval_partition test partition (2) when the
// data folder has one that covers the images, else the images whose file name hashes (FNV-1a 64)
// to 0 mod 10. Deterministic; independent of images.txt order.
struct SaeSplit {
  std::string kind;              // "celeba_test_partition" | "hash10"
  std::string source;            // the partition file, or ""
  std::vector<uint8_t> heldOut;  // [N] 1 = held out
  int64_t numHeldOut = 0;
};
SaeSplit saeSplit(const Workspace& ws, int64_t n);

// The file of SAE `name` (saes/<name>.pt); "" = the current SAE (sae.pt). Throws engine::Error
// listing the workspace's SAEs when there is none of that name.
std::string saeFileFor(const Workspace& ws, const std::string& name);
// The current SAE's name ("" when the manifest does not know it).
std::string currentSaeName(const Workspace& ws);
// Makes saes/<name>.pt the current SAE: copies it to sae.pt (atomically), sets current_sae and
// drops the cached feature index.
void selectSae(const std::string& workspace, const std::string& name);

// Health metrics of the SAE in `file` on the held-out split: l0, explained_variance (float64
// sums, vector mean of the split), cosine, shrinkage (E‖x̂‖² / E⟨x, x̂⟩), mse, dead_fraction,
// dense_fraction_1pct/10pct, redundancy (mean max decoder-row cosine to another row),
// log10_frequency_histogram, features, vectors, split. Encoding as engine/sae.h states.
nlohmann::json evaluateSaeFile(const Workspace& ws, const std::string& file, JobContext& ctx);
// evaluateSaeFile() for SAE `name` ("" = current) plus "variant" and "name" from the manifest.
nlohmann::json evaluateSae(const std::string& workspace, const std::string& name, JobContext& ctx);

// Attribute AUROC (best feature chosen on the training split, measured on the held-out split;
// dense and random-projection features sign-aware, sparse features as they fire), top-16 purity
// (share of a feature's 16 top images, over all images, having the most common of the
// attributes' minority values, averaged over features), dense vs sparse vs a fixed-seed random
// projection with as many features as the SAE. Needs the data set's attributes (manifest
// attributes_file); throws engine::Error otherwise.
nlohmann::json measureInterp(const std::string& workspace, const std::string& name,
                             JobContext& ctx);

// AUROC of `scores` for binary `labels` (1 = positive) in the Mann–Whitney form, ties counted
// half (average ranks). NaN when either class is empty.
double auroc(const std::vector<float>& scores, const std::vector<uint8_t>& labels);

}  // namespace engine
