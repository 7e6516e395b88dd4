// Fuzz target: engine::parseRatings (a study's ratings .jsonl). Every rating that parses must
// write back (toJson) to a line that parses to the same rating.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ratings.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::guarded([&] {
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> warnings;
    const std::vector<engine::Rating> ratings = engine::parseRatings(text, "fuzz.jsonl", &warnings);
    for (const auto& r : ratings) {
      fuzz::check(r.kind == "sparse" || r.kind == "dense", "kind");
      fuzz::check(r.feature >= 0, "feature >= 0");
      fuzz::check(!r.rating || (*r.rating >= 1 && *r.rating <= 7), "rating 1..7");
      const std::string line = engine::toJson(r).dump() + "\n";
      const auto again = engine::parseRatings(line, "round-trip.jsonl");
      fuzz::check(again.size() == 1, "round trip gives one rating");
      const engine::Rating& b = again[0];
      fuzz::check(b.session == r.session && b.rater == r.rater && b.trial == r.trial &&
                      b.kind == r.kind && b.feature == r.feature && b.rating == r.rating &&
                      b.extra == r.extra,
                  "round trip keeps the rating");
    }
  });
  return 0;
}
