// The browser's per-feature extras from the feature index — quantile samples, attribute
// correlations, nearest features by decoder cosine — against an independent numpy/torch reference
// (tests/python/feature_details_oracle.py) computed from embeddings.npy and sae.pt.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/checkpoint.h"
#include "engine/features.h"
#include "engine/fsutil.h"
#include "engine/npy.h"
#include "engine/workspace.h"
#include "test_helpers.h"

using engine::FeatureKind;
using nlohmann::json;

namespace {

constexpr int64_t kN = 6000, kD = 12, kF = 20;  // 6,000 rows: two index chunks

std::string imageName(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06lld.png", static_cast<long long>(i + 1));
  return buf;
}

// A workspace whose dense dimensions and attributes are related (Smiling follows dimension 0,
// Eyeglasses dimension 3), with quantised values in dimension 5 (many ties, values on bin edges),
// a dead sparse feature (4), a zero decoder row (6) and a decoder row parallel to another (9 ~ 2).
// Every 7th image has no attribute row. Returns the number of images with attributes.
int64_t makeWorkspace(const std::string& dir) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> emb(kN * kD);
  for (auto& v : emb) v = normal(rng);
  for (int64_t i = 0; i < kN; ++i) emb[i * kD + 5] = std::round(emb[i * kD + 5] * 2) / 2;
  engine::writeNpy(dir + "/embeddings.npy", engine::TensorData::fromFloat({kN, kD}, emb.data()));

  std::vector<float> we(kD * kF), be(kF), bd(kD), wd(kF * kD);
  for (auto& v : we) v = 0.6f * normal(rng);
  for (auto& v : be) v = 0.3f * normal(rng) - 0.2f;
  for (auto& v : bd) v = 0.05f * normal(rng);
  for (auto& v : wd) v = normal(rng);
  be[4] = -100;  // dead
  for (int64_t j = 0; j < kD; ++j) {
    wd[6 * kD + j] = 0;
    wd[9 * kD + j] = 3 * wd[2 * kD + j] + 0.01f * normal(rng);
  }
  engine::writeTorchCheckpoint(
      dir + "/sae.pt", {{"weight_encoder", engine::TensorData::fromFloat({kD, kF}, we.data())},
                        {"weight_decoder", engine::TensorData::fromFloat({kF, kD}, wd.data())},
                        {"bias_encoder", engine::TensorData::fromFloat({kF}, be.data())},
                        {"bias_decoder", engine::TensorData::fromFloat({kD}, bd.data())}});

  std::vector<std::string> paths;
  std::string csv = "image_id,Smiling,Eyeglasses,Constant,Age,Rare\n";
  int64_t matched = 0;
  for (int64_t i = 0; i < kN; ++i) {
    const std::string name = imageName(i);
    paths.push_back("img/" + name);
    if (i % 7 == 3) continue;  // no attributes for this image
    ++matched;
    const float* e = &emb[i * kD];
    const bool smiling = e[0] + 0.5f * normal(rng) > 0;
    const bool glasses = e[3] + 0.7f * normal(rng) > 0.8f;
    const bool rare = i % 97 == 0;
    csv += name + "," + (smiling ? "1" : "-1") + "," + (glasses ? "1" : "-1") + ",1," +
           std::to_string(20 + i % 50) + "," + (rare ? "1" : "-1") + "\n";
  }
  csv += "999999.png,1,1,-1,33,1\n";  // an image that is not in the workspace
  engine::writeImageList(dir + "/images.txt", paths);
  engine::writeFileAtomic(dir + "/attrs.csv", csv);
  auto ws = engine::Workspace::open(dir, true);
  ws.updateManifest([&](json& m) { m["attributes_file"] = dir + "/attrs.csv"; });
  return matched;
}

json quantilesJson(const engine::FeatureIndex& idx) {
  json out;
  for (auto kind : {FeatureKind::Dense, FeatureKind::Sparse}) {
    json lists = json::array();
    for (int64_t f = 0; f < idx.numFeatures(kind); ++f) {
      json list = json::array();
      for (const auto& q : idx.quantiles(kind, f))
        list.push_back({{"q", q.quantile},
                        {"index", q.index},
                        {"activation", q.activation},
                        {"lo", q.lo},
                        {"hi", q.hi}});
      lists.push_back(list);
    }
    out[engine::kindName(kind)]["quantiles"] = lists;
    json stats = json::array();
    for (int64_t f = 0; f < idx.numFeatures(kind); ++f) {
      const auto& st = idx.stats(kind, f);
      stats.push_back({{"active", st.active},
                       {"mean", st.mean},
                       {"min", st.min},
                       {"max", st.max},
                       {"lo", st.histLo},
                       {"hi", st.histHi},
                       {"histogram", st.histogram}});
    }
    out[engine::kindName(kind)]["stats"] = stats;
  }
  return out;
}

json runOracle(const std::string& ws, const json& quantiles) {
  const std::string details = ws + "/details.json";
  engine::writeFileAtomic(details, quantiles.dump());
  std::string out;
  REQUIRE(testutil::runPython(testutil::pyScript("feature_details_oracle.py"), ws + " " + details,
                              &out) == 0);
  return json::parse(out);
}

}  // namespace

TEST_CASE(
    "quantile samples, stats and histograms, attribute correlations and decoder neighbours equal "
    "numpy's") {
  testutil::TempDir dir("feature-details");
  const std::string ws = dir.str();
  const int64_t matched = makeWorkspace(ws);
  engine::JobContext ctx;
  const auto idx = engine::FeatureIndex::loadOrBuild(ws, ctx);
  const json ref = runOracle(ws, quantilesJson(*idx));

  SUBCASE("quantile samples follow the documented rule") {
    for (const auto& e : ref["errors"]) CHECK_MESSAGE(false, e.get<std::string>());
    CHECK(ref["errors"].empty());
    CHECK(idx->quantiles(FeatureKind::Sparse, 4).empty());  // dead
    // Dense dimensions are continuous: all 8 levels, each its own image, 5 % to 95 %.
    const auto& q0 = idx->quantiles(FeatureKind::Dense, 0);
    REQUIRE(q0.size() == engine::FeatureIndex::kQuantiles);
    CHECK(q0.front().quantile == doctest::Approx(0.05));
    CHECK(q0.back().quantile == doctest::Approx(0.95));
    CHECK(q0.front().activation < 0);  // the 5th percentile of a centred normal
    CHECK(q0.back().activation > 0);
    // The quantised dimension: few distinct values, so levels share images and are left out.
    CHECK(idx->quantiles(FeatureKind::Dense, 5).size() < engine::FeatureIndex::kQuantiles);
    // The oracle is not blind: the p50 sample swapped for the top image is caught.
    json wrong = quantilesJson(*idx);
    REQUIRE(idx->quantiles(FeatureKind::Sparse, 1).size() >= 5);
    json& median = wrong["sparse"]["quantiles"][1][4];
    median["index"] = idx->top(FeatureKind::Sparse, engine::RankRule::Raw, 1)[0].index;
    CHECK(runOracle(ws, wrong)["errors"].size() >= 1);
    // Nor for histograms: one value moved to the neighbouring bin is caught.
    json moved = quantilesJson(*idx);
    json& hist = moved["dense"]["stats"][0]["histogram"];
    REQUIRE(hist[16].get<int64_t>() > 0);
    hist[15] = hist[15].get<int64_t>() + 1;
    hist[16] = hist[16].get<int64_t>() - 1;
    CHECK(runOracle(ws, moved)["errors"].size() >= 1);
  }

  SUBCASE("correlations: binary varying columns, matched images, Pearson r") {
    const std::vector<std::string> names = ref["attributes"];
    CHECK(names == std::vector<std::string>{"Smiling", "Eyeglasses", "Rare"});
    CHECK(idx->attributeNames() == names);
    CHECK(idx->attributeImages() == matched);
    for (auto kind : {FeatureKind::Dense, FeatureKind::Sparse}) {
      const json& mat = ref["corr"][engine::kindName(kind)];
      for (int64_t f = 0; f < idx->numFeatures(kind); ++f) {
        CAPTURE(engine::kindName(kind));
        CAPTURE(f);
        const auto got = idx->correlatedAttributes(kind, f, 100);
        std::map<std::string, float> byName;
        for (const auto& c : got) byName[c.name] = c.r;
        for (size_t c = 0; c < names.size(); ++c) {
          const json& r = mat[f][c];
          if (r.is_null()) {
            CHECK(byName.count(names[c]) == 0);
          } else {
            REQUIRE(byName.count(names[c]) == 1);
            CHECK(std::abs(byName[names[c]] - r.get<double>()) < 1e-4);
          }
        }
        for (size_t i = 1; i < got.size(); ++i) CHECK(std::abs(got[i - 1].r) >= std::abs(got[i].r));
        const auto top1 = idx->correlatedAttributes(kind, f, 1);
        CHECK(top1.size() == std::min<size_t>(1, got.size()));
      }
    }
    CHECK(idx->correlatedAttributes(FeatureKind::Sparse, 4, 3).empty());  // dead: no r
    const auto smile = idx->correlatedAttributes(FeatureKind::Dense, 0, 1);
    REQUIRE(smile.size() == 1);
    CHECK(smile[0].name == "Smiling");
    CHECK(smile[0].r > 0.6f);
  }

  SUBCASE("nearest features by decoder cosine") {
    for (int64_t f = 0; f < kF; ++f) {
      CAPTURE(f);
      const json& want = ref["nearest"][f];
      const auto got = idx->nearestByDecoder(f, 8);
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].feature == want[i][0].get<int64_t>());
        CHECK(got[i].cosine == doctest::Approx(want[i][1].get<double>()).epsilon(1e-5));
      }
    }
    CHECK(idx->nearestByDecoder(6, 8).empty());  // a zero decoder row has no direction
    REQUIRE(!idx->nearestByDecoder(2, 1).empty());
    CHECK(idx->nearestByDecoder(2, 1)[0].feature == 9);
    CHECK(idx->nearestByDecoder(kF, 8).empty());
    CHECK(idx->nearestByDecoder(3, 50).size() == kF - 2);  // all others but the zero row
  }

  SUBCASE("the cache keeps them; a version-02 cache or another attribute file is rebuilt") {
    const std::string cache = ws + "/index/features.idx";
    const auto cached = engine::FeatureIndex::loadOrBuild(ws, ctx);
    CHECK(quantilesJson(*cached) == quantilesJson(*idx));
    CHECK(cached->attributeNames() == idx->attributeNames());
    for (auto kind : {FeatureKind::Dense, FeatureKind::Sparse})
      for (int64_t f = 0; f < idx->numFeatures(kind); ++f) {
        const auto a = idx->correlatedAttributes(kind, f, 10);
        const auto b = cached->correlatedAttributes(kind, f, 10);
        REQUIRE(a.size() == b.size());
        for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].r == b[i].r);
      }
    CHECK(cached->nearestByDecoder(2, 3)[0].feature == 9);

    std::vector<uint8_t> bytes = engine::readFileBytes(cache);
    REQUIRE(std::memcmp(bytes.data(), "SAEIDX03", 8) == 0);
    bytes[7] = '2';  // what the previous format wrote
    engine::writeFileAtomic(cache, bytes.data(), bytes.size());
    const auto rebuilt = engine::FeatureIndex::loadOrBuild(ws, ctx);
    CHECK(quantilesJson(*rebuilt) == quantilesJson(*idx));
    CHECK(engine::readFileBytes(cache)[7] == '3');

    engine::Workspace::open(ws, false).updateManifest([](json& m) { m.erase("attributes_file"); });
    const auto noAttrs = engine::FeatureIndex::loadOrBuild(ws, ctx);
    CHECK(noAttrs->attributeNames().empty());
    CHECK(noAttrs->attributeImages() == 0);
    CHECK(noAttrs->correlatedAttributes(FeatureKind::Dense, 0, 3).empty());
    CHECK(quantilesJson(*noAttrs) == quantilesJson(*idx));
  }
}
