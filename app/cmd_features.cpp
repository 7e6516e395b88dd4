// `saescope topk`.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.h"
#include "commands.h"
#include "engine/features.h"
#include "engine/workspace.h"

using nlohmann::json;

namespace app {

int cmdTopk(const std::vector<std::string>& args) {
  std::string ws, kind, rank = "seed", sae;
  int64_t feature = -1;
  int k = 16;
  bool asJson = false;
  Command cmd("topk", "--workspace WS --kind dense|sparse --feature F [options]",
              "Prints the top-activating images of one feature.");
  cmd.str("--workspace", "WS", &ws, "workspace folder")
      .str("--kind", "dense|sparse", &kind, "embedding dimension or SAE feature")
      .integer("--feature", &feature, "feature id")
      .integer("--k", &k, "number of images")
      .str("--rank", "seed|raw", &rank, "seed: reference (row-normalised); raw: activation")
      .str("--sae", "NAME", &sae, "one of the workspace's SAEs (default: the current one)")
      .sw("--json", &asJson, "print JSON");
  if (!cmd.parse(args)) return 0;
  requireWorkspace(ws);
  if (kind.empty()) throw UsageError("--kind: required; dense or sparse");
  if (feature < 0) throw UsageError("--feature: required; a feature id (0 or more)");
  const engine::FeatureKind fk = engine::parseKind(kind, "--kind");
  const engine::RankRule rr = engine::parseRank(rank, "--rank");
  const engine::Workspace w = engine::Workspace::open(ws, false);
  const std::vector<std::string> paths = w.imageList();
  const auto top = engine::computeTopK(ws, fk, feature, k, rr, sae);
  json images = json::array();
  for (const auto& e : top) {
    const std::string path =
        e.index < static_cast<int64_t>(paths.size()) ? paths[e.index] : std::string();
    images.push_back(
        {{"index", e.index}, {"path", path}, {"score", e.score}, {"activation", e.activation}});
  }
  if (asJson) {
    const json out = {{"kind", kind}, {"feature", feature}, {"rank", rank}, {"images", images}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s feature %lld, top %zu by %s ranking\n", kind.c_str(),
                static_cast<long long>(feature), top.size(), rank.c_str());
    std::printf("%4s  %8s  %10s  %10s  %s\n", "rank", "index", "score", "activation", "path");
    int r = 1;
    for (const auto& im : images)
      std::printf("%4d  %8lld  %10.5f  %10.5f  %s\n", r++, im["index"].get<long long>(),
                  im["score"].get<double>(), im["activation"].get<double>(),
                  im["path"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace app
