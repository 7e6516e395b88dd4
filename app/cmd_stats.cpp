// `saescope stats`.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.h"
#include "commands.h"
#include "engine/ratings.h"
#include "engine/stats.h"

using nlohmann::json;

namespace app {

int cmdStats(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  bool asJson = false;
  Command cmd(
      "stats", "RATINGS.jsonl... [--json]",
      "Statistics of blind rating studies: sparse vs dense (describe, t-tests, Mann-Whitney, "
      "Cohen's d).");
  cmd.sw("--json", &asJson, "print JSON").positional("RATINGS.jsonl", &files);
  if (!cmd.parse(args)) return 0;
  if (files.empty())
    throw UsageError("no ratings file given; e.g. saescope stats WS/ratings/*.jsonl");
  const auto ratings = engine::readRatingsFiles(files);
  const json stats = engine::studyStatistics(ratings);
  if (asJson)
    std::printf("%s\n", stats.dump(2).c_str());
  else
    std::printf("%s", engine::formatStudyStatistics(stats).c_str());
  return 0;
}

}  // namespace app
