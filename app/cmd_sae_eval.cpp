// `saescope sae-eval` and `saescope interp`: SAE health metrics and measured interpretability.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.h"
#include "commands.h"
#include "engine/sae_eval.h"

using nlohmann::json;

namespace app {

namespace {
double get(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}
}  // namespace

// --workspace WS [--sae NAME] [--json], what sae-eval and interp take. False when --help was shown.
struct ReportArgs {
  std::string ws, sae;
  bool asJson = false;
};
static bool parseReportArgs(const char* name, const char* about, const Args& args, ReportArgs& a) {
  Command cmd(name, "--workspace WS [--sae NAME] [--json]", about);
  cmd.str("--workspace", "WS", &a.ws, "workspace folder")
      .str("--sae", "NAME", &a.sae, "one of the workspace's SAEs (default: the current one)")
      .sw("--json", &a.asJson, "print JSON");
  if (!cmd.parse(args)) return false;
  requireWorkspace(a.ws);
  return true;
}

int cmdSaeEval(const Args& args) {
  ReportArgs a;
  if (!parseReportArgs("sae-eval",
                       "Health metrics of an SAE on the held-out split (L0, explained variance, "
                       "dead and dense features, redundancy).",
                       args, a))
    return 0;
  engine::JobContext quiet;
  const json r = engine::evaluateSae(a.ws, a.sae, quiet);
  if (a.asJson) {
    std::printf("%s\n", r.dump(2).c_str());
    return 0;
  }
  std::printf("sae %s (%s), %lld features, held-out split %s (%lld vectors)\n",
              r.value("name", std::string("(current)")).c_str(),
              r.value("variant", std::string("?")).c_str(), r["features"].get<long long>(),
              r["split"]["kind"].get<std::string>().c_str(), r["vectors"].get<long long>());
  const char* keys[] = {"l0",
                        "explained_variance",
                        "cosine",
                        "shrinkage",
                        "dead_fraction",
                        "dense_fraction_1pct",
                        "dense_fraction_10pct",
                        "redundancy"};
  for (const char* k : keys) std::printf("  %-22s %10.4f\n", k, get(r, k));
  const auto& h = r["log10_frequency_histogram"];
  std::printf("  log10 frequency histogram (dead: %lld)\n", h["dead"].get<long long>());
  for (size_t i = 0; i < h["counts"].size(); ++i)
    if (h["counts"][i].get<long long>() > 0)
      std::printf("    [%5.1f, %5.1f)  %lld\n", h["edges"][i].get<double>(),
                  h["edges"][i + 1].get<double>(), h["counts"][i].get<long long>());
  return 0;
}

int cmdInterp(const Args& args) {
  ReportArgs a;
  if (!parseReportArgs("interp",
                       "Measured interpretability: attribute AUROC and top-16 purity of dense "
                       "dimensions, sparse features and a random-projection baseline.",
                       args, a))
    return 0;
  json r;
  runWithProgress([&](engine::JobContext& ctx) { r = engine::measureInterp(a.ws, a.sae, ctx); });
  if (a.asJson) {
    std::printf("%s\n", r.dump(2).c_str());
    return 0;
  }
  std::printf("%-22s %8s %8s %8s\n", "attribute (AUROC)", "dense", "sparse", "random");
  for (auto it = r["attributes"].begin(); it != r["attributes"].end(); ++it)
    std::printf("%-22s %8.3f %8.3f %8.3f\n", it.key().c_str(), get(*it, "dense_auroc"),
                get(*it, "sparse_auroc"), get(*it, "random_auroc"));
  std::printf("%-22s %8.3f %8.3f %8.3f\n", "mean AUROC", get(r, "mean_dense_auroc"),
              get(r, "mean_sparse_auroc"), get(r, "mean_random_auroc"));
  std::printf("%-22s %8.3f %8.3f %8.3f\n", "top-16 purity", get(r, "dense_purity"),
              get(r, "sparse_purity"), get(r, "random_purity"));
  return 0;
}

}  // namespace app
