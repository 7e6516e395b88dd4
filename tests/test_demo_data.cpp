// Tests of the synthetic face data set (engine/demo_data.h): layout, determinism, ground truth
// that really drives the pixels, config errors and cancellation that leave nothing behind.
#include <doctest/doctest.h>
#include <stb/stb_image.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/demo_data.h"
#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/job.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

engine::DemoDataConfig makeConfig(const std::string& out, int count, int size, uint64_t seed = 0,
                                  int threads = 2) {
  engine::DemoDataConfig cfg;
  cfg.out = out;
  cfg.count = count;
  cfg.size = size;
  cfg.seed = seed;
  cfg.threads = threads;
  return cfg;
}

// Every regular file under `root`, by relative path, with its bytes.
std::map<std::string, std::vector<uint8_t>> readTree(const fs::path& root) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file())
      files[fs::relative(e.path(), root).string()] = engine::readFileBytes(e.path().string());
  return files;
}

std::vector<std::string> listNames(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string joinComma(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> splitComma(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string cell; std::getline(in, cell, ',');) out.push_back(cell);
  return out;
}

// --- pixel probes in the face frame --------------------------------------------------------------

struct Rgb {
  double r = 0, g = 0, b = 0;
};

double lum(Rgb c) {
  return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b;
}
double sat(Rgb c) {
  const double mx = std::max({c.r, c.g, c.b}), mn = std::min({c.r, c.g, c.b});
  return mx > 1e-6 ? (mx - mn) / mx : 0;
}
double absDiff(Rgb a, Rgb b) {
  return std::fabs(a.r - b.r) + std::fabs(a.g - b.g) + std::fabs(a.b - b.b);
}

struct Probe {
  const engine::DemoFace& face;
  int size;
  Rgb pixel(int x, int y) const {
    x = std::clamp(x, 0, size - 1), y = std::clamp(y, 0, size - 1);
    const uint8_t* p = &face.rgb[(static_cast<size_t>(y) * size + x) * 3];
    return {p[0] / 255.0, p[1] / 255.0, p[2] / 255.0};
  }
  Rgb at(double u, double v) const {
    double x, y;
    engine::demoFaceToPixel(face.factors, size, u, v, &x, &y);
    return pixel(static_cast<int>(std::floor(x)), static_cast<int>(std::floor(y)));
  }
  // Mean over a 3x3 grid of face-frame points `rad` apart around each of `points`.
  Rgb patch(std::initializer_list<std::pair<double, double>> points, double rad = 0.02) const {
    Rgb acc;
    int n = 0;
    for (const auto& p : points)
      for (double du : {-rad, 0.0, rad})
        for (double dv : {-rad, 0.0, rad}) {
          const Rgb c = at(p.first + du, p.second + dv);
          acc.r += c.r, acc.g += c.g, acc.b += c.b, ++n;
        }
    return {acc.r / n, acc.g / n, acc.b / n};
  }
};

// Cohen's d of `vals` between the images where `group` holds and the others.
double effectSize(const std::vector<double>& vals, const std::vector<bool>& group) {
  double s[2] = {0, 0}, ss[2] = {0, 0};
  int n[2] = {0, 0};
  for (size_t i = 0; i < vals.size(); ++i) {
    const int g = group[i] ? 1 : 0;
    s[g] += vals[i], ss[g] += vals[i] * vals[i], ++n[g];
  }
  REQUIRE(n[0] > 5);
  REQUIRE(n[1] > 5);
  const double m1 = s[1] / n[1], m0 = s[0] / n[0];
  const double v1 = (ss[1] - n[1] * m1 * m1) / (n[1] - 1),
               v0 = (ss[0] - n[0] * m0 * m0) / (n[0] - 1);
  return (m1 - m0) / std::sqrt(std::max(1e-12, 0.5 * (v1 + v0)));
}

// The tilt (degrees, counter-clockwise) of the face's mirror-symmetry axis through its centre,
// found by reflecting the head region about candidate axes. Knows the centre and scale, not the
// angle.
double measureTilt(const engine::DemoFace& face, int size) {
  const Probe pr{face, size};
  double cx, cy, ux, uy;
  engine::demoFaceToPixel(face.factors, size, 0, 0, &cx, &cy);
  engine::demoFaceToPixel(face.factors, size, 0.5, 0, &ux, &uy);
  const double radius = std::hypot(ux - cx, uy - cy);
  double bestErr = 1e300, bestTilt = 0;
  for (double tilt = -30; tilt <= 30.001; tilt += 0.5) {
    const double a = tilt * M_PI / 180, dx = -std::sin(a), dy = -std::cos(a);
    double err = 0;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const double qx = x + 0.5 - cx, qy = y + 0.5 - cy;
        if (qx * qx + qy * qy > radius * radius) continue;
        const double dot = qx * dx + qy * dy;
        const Rgb a1 = pr.pixel(x, y);
        const Rgb a2 = pr.pixel(static_cast<int>(std::lround(cx + 2 * dot * dx - qx - 0.5)),
                                static_cast<int>(std::lround(cy + 2 * dot * dy - qy - 0.5)));
        err += absDiff(a1, a2);
      }
    if (err < bestErr) bestErr = err, bestTilt = tilt;
  }
  return bestTilt;
}

// Renders faces 0..n-1 of `seed` once per test binary run.
const std::vector<engine::DemoFace>& sampleFaces() {
  static const std::vector<engine::DemoFace> faces = [] {
    std::vector<engine::DemoFace> f;
    for (int i = 0; i < 500; ++i) f.push_back(engine::renderDemoFace(42, i, 64));
    return f;
  }();
  return faces;
}

}  // namespace

TEST_SUITE("demo-data") {
  TEST_CASE("attribute and factor names are CelebA's where they exist, unique and stable") {
    const std::set<std::string> celeba = {"5_o_Clock_Shadow",
                                          "Arched_Eyebrows",
                                          "Attractive",
                                          "Bags_Under_Eyes",
                                          "Bald",
                                          "Bangs",
                                          "Big_Lips",
                                          "Big_Nose",
                                          "Black_Hair",
                                          "Blond_Hair",
                                          "Blurry",
                                          "Brown_Hair",
                                          "Bushy_Eyebrows",
                                          "Chubby",
                                          "Double_Chin",
                                          "Eyeglasses",
                                          "Goatee",
                                          "Gray_Hair",
                                          "Heavy_Makeup",
                                          "High_Cheekbones",
                                          "Male",
                                          "Mouth_Slightly_Open",
                                          "Mustache",
                                          "Narrow_Eyes",
                                          "No_Beard",
                                          "Oval_Face",
                                          "Pale_Skin",
                                          "Pointy_Nose",
                                          "Receding_Hairline",
                                          "Rosy_Cheeks",
                                          "Sideburns",
                                          "Smiling",
                                          "Straight_Hair",
                                          "Wavy_Hair",
                                          "Wearing_Earrings",
                                          "Wearing_Hat",
                                          "Wearing_Lipstick",
                                          "Wearing_Necklace",
                                          "Wearing_Necktie",
                                          "Young"};
    const auto attrs = engine::demoAttributeNames();
    const auto factors = engine::demoFactorNames();
    CHECK(attrs.size() >= 12);
    CHECK(attrs.size() <= 16);
    for (const auto& a : attrs) CHECK_MESSAGE(celeba.count(a) == 1, a);
    std::set<std::string> all(attrs.begin(), attrs.end());
    all.insert(factors.begin(), factors.end());
    CHECK(all.size() == attrs.size() + factors.size());
    for (const char* f : {"skin_tone", "hair_hue", "hair_length", "background_hue", "clutter",
                          "rotation_deg", "scale", "offset_x", "offset_y"})
      CHECK_MESSAGE(std::count(factors.begin(), factors.end(), f) == 1, f);
  }

  TEST_CASE("renderDemoFace is a pure function of seed, index and size") {
    const auto a = engine::renderDemoFace(7, 3, 48);
    const auto b = engine::renderDemoFace(7, 3, 48);
    CHECK(a.rgb.size() == 48u * 48u * 3u);
    CHECK(a.rgb == b.rgb);
    CHECK(a.attributes == b.attributes);
    CHECK(a.factors == b.factors);
    CHECK(engine::renderDemoFace(8, 3, 48).rgb != a.rgb);
    CHECK(engine::renderDemoFace(7, 4, 48).rgb != a.rgb);
    // The size changes the resolution, not the face.
    const auto big = engine::renderDemoFace(7, 3, 96);
    CHECK(big.attributes == a.attributes);
    CHECK(big.factors == a.factors);
    for (const auto& kv : a.attributes) CHECK((kv.second == 1 || kv.second == -1));
    CHECK(a.attributes.size() == engine::demoAttributeNames().size());
    CHECK(a.factors.size() == engine::demoFactorNames().size());
  }

  TEST_CASE("generateDemoData writes CelebA's Kaggle layout with exact ground truth") {
    testutil::TempDir dir("demo-layout");
    const auto cfg = makeConfig(dir.str("out"), 30, 40, 5);
    engine::JobContext ctx;
    engine::generateDemoData(cfg, ctx);

    const auto snap = ctx.snapshot();
    CHECK(snap.stage == "demo-data");
    CHECK(snap.unit == "images");
    CHECK(snap.total == 30);
    CHECK(snap.done == 30);
    CHECK(listNames(dir.path) == std::vector<std::string>{"out"});  // no temporary left
    CHECK(listNames(dir.path / "out") == std::vector<std::string>{"README.txt", "img_align_celeba",
                                                                  "list_attr_celeba.csv",
                                                                  "list_eval_partition.csv"});
    const fs::path imgDir = dir.path / "out" / "img_align_celeba" / "img_align_celeba";
    const auto names = listNames(imgDir);
    REQUIRE(names.size() == 30);
    CHECK(names.front() == "000001.png");
    CHECK(names.back() == "000030.png");

    const auto attrs = engine::demoAttributeNames();
    const auto factors = engine::demoFactorNames();
    const auto lines =
        splitLines(engine::readFileText((dir.path / "out/list_attr_celeba.csv").string()));
    REQUIRE(lines.size() == 31);
    CHECK(lines[0] == "image_id," + joinComma(attrs) + "," + joinComma(factors));
    for (int i = 0; i < 30; ++i) {
      const auto cells = splitComma(lines[i + 1]);
      REQUIRE(cells.size() == 1 + attrs.size() + factors.size());
      CHECK(cells[0] == names[i]);
      // Each row is the ground truth of the file it names, and the file holds the rendered pixels.
      const auto face = engine::renderDemoFace(5, i, 40);
      for (size_t a = 0; a < attrs.size(); ++a)
        CHECK(cells[1 + a] == std::to_string(face.attributes.at(attrs[a])));
      for (size_t f = 0; f < factors.size(); ++f)
        CHECK(std::stod(cells[1 + attrs.size() + f]) ==
              doctest::Approx(face.factors.at(factors[f])).epsilon(1e-9));
      const auto png = engine::readFileBytes((imgDir / names[i]).string());
      int w = 0, h = 0, c = 0;
      uint8_t* px = stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &c, 3);
      REQUIRE(px != nullptr);
      CHECK(w == 40);
      CHECK(h == 40);
      CHECK(c == 3);
      CHECK(std::equal(face.rgb.begin(), face.rgb.end(), px));
      stbi_image_free(px);
    }

    const auto part =
        splitLines(engine::readFileText((dir.path / "out/list_eval_partition.csv").string()));
    REQUIRE(part.size() == 31);
    CHECK(part[0] == "image_id,partition");
    CHECK(part[1] == "000001.png,0");
    CHECK(part[24] == "000024.png,0");
    CHECK(part[25] == "000025.png,1");
    CHECK(part[28] == "000028.png,2");
    CHECK(part[30] == "000030.png,2");

    const std::string readme = engine::readFileText((dir.path / "out/README.txt").string());
    CHECK(readme.find("seed 5") != std::string::npos);
    CHECK(readme.find("30 ") != std::string::npos);
    CHECK(readme.find("40x40") != std::string::npos);

    const nlohmann::json j = engine::toJson(cfg);
    CHECK(j.at("count") == 30);
    CHECK(j.at("size") == 40);
    CHECK(j.at("seed") == 5);
    CHECK(j.at("format") == "png");
    CHECK(j.at("out") == cfg.out);
  }

  TEST_CASE("the same seed gives byte-identical files whatever the thread count" *
            doctest::timeout(120)) {
    testutil::TempDir dir("demo-determinism");
    engine::JobContext c1, c2, c3;
    engine::generateDemoData(makeConfig(dir.str("one"), 64, 32, 9, 1), c1);
    engine::generateDemoData(makeConfig(dir.str("three"), 64, 32, 9, 3), c2);
    engine::generateDemoData(makeConfig(dir.str("other"), 64, 32, 10, 2), c3);
    const auto one = readTree(dir.path / "one");
    const auto three = readTree(dir.path / "three");
    const auto other = readTree(dir.path / "other");
    REQUIRE(one.size() == 64 + 3);
    CHECK(one == three);
    REQUIRE(other.size() == one.size());
    int differing = 0;
    for (const auto& kv : one) differing += other.at(kv.first) != kv.second ? 1 : 0;
    // Every image and the attribute CSV differ; the partition file does not depend on the seed.
    CHECK(differing >= 64 + 1);
    CHECK(one.at("README.txt") != other.at("README.txt"));
  }

  TEST_CASE("PNG files decode to exactly the rendered pixels at odd and large sizes") {
    testutil::TempDir dir("demo-png");
    // 333 px rows exceed deflate's 32 KiB window between repeats, 17 px is tiny and odd.
    for (int size : {16, 17, 333}) {
      const std::string out = dir.str("s" + std::to_string(size));
      engine::JobContext ctx;
      engine::generateDemoData(makeConfig(out, 2, size, 4), ctx);
      for (int i = 0; i < 2; ++i) {
        const auto bytes = engine::readFileBytes(out + "/img_align_celeba/img_align_celeba/00000" +
                                                 std::to_string(i + 1) + ".png");
        int w = 0, h = 0, c = 0;
        uint8_t* px =
            stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3);
        REQUIRE(px != nullptr);
        CHECK(w == size);
        CHECK(h == size);
        const auto face = engine::renderDemoFace(4, i, size);
        CHECK(std::equal(face.rgb.begin(), face.rgb.end(), px));
        stbi_image_free(px);
        // Compressed well below the raw size (the flat-shaded faces repeat a lot).
        if (size >= 64) CHECK(bytes.size() < face.rgb.size() / 4);
      }
    }
  }

  TEST_CASE("jpg format writes decodable JPEGs of the rendered faces") {
    testutil::TempDir dir("demo-jpg");
    auto cfg = makeConfig(dir.str("out"), 4, 48, 3);
    cfg.format = "jpg";
    engine::JobContext ctx;
    engine::generateDemoData(cfg, ctx);
    const fs::path imgDir = dir.path / "out" / "img_align_celeba" / "img_align_celeba";
    CHECK(listNames(imgDir) ==
          std::vector<std::string>{"000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"});
    for (int i = 0; i < 4; ++i) {
      const auto bytes =
          engine::readFileBytes((imgDir / ("00000" + std::to_string(i + 1) + ".jpg")).string());
      int w = 0, h = 0, c = 0;
      uint8_t* px =
          stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3);
      REQUIRE(px != nullptr);
      CHECK(w == 48);
      CHECK(h == 48);
      const auto face = engine::renderDemoFace(3, i, 48);
      double err = 0;
      for (size_t k = 0; k < face.rgb.size(); ++k) err += std::abs(int(face.rgb[k]) - int(px[k]));
      CHECK(err / face.rgb.size() < 4.0);  // quality 95
      stbi_image_free(px);
    }
    const auto lines =
        splitLines(engine::readFileText((dir.path / "out/list_attr_celeba.csv").string()));
    CHECK(lines.at(1).rfind("000001.jpg,", 0) == 0);
  }

  TEST_CASE("pandas and PIL read the folder as CelebA, and its CSV rows describe its images" *
            doctest::timeout(300)) {
    testutil::TempDir dir("demo-python");
    const int count = 400, size = 64;
    engine::JobContext ctx;
    engine::generateDemoData(makeConfig(dir.str("out"), count, size, 11), ctx);
    std::string out;
    const std::string args =
        dir.str("out") + " " + std::to_string(count) + " " + std::to_string(size) + " png " +
        joinComma(engine::demoAttributeNames()) + " " + joinComma(engine::demoFactorNames());
    const int rc = testutil::runPython(testutil::pyScript("demo_data_check.py"), args, &out);
    INFO("python output: " << out);
    REQUIRE(rc == 0);
    const auto report = nlohmann::json::parse(out);
    CHECK(report.at("rows") == count);
    for (const auto& a : engine::demoAttributeNames()) {
      const double freq = report.at("frequencies").at(a).get<double>();
      CHECK_MESSAGE(freq > 0.05, a);
      CHECK_MESSAGE(freq < 0.95, a);
    }
    CHECK(report.at("rotation_error_deg_p90").get<double>() < 4.0);
  }

  TEST_CASE("attribute frequencies lie in their intended ranges and are mostly independent") {
    const auto& faces = sampleFaces();
    const auto names = engine::demoAttributeNames();
    // Intended share of +1 (No_Beard: a beard in about a fifth of the faces).
    const std::map<std::string, std::pair<double, double>> ranges = {
        {"Black_Hair", {0.18, 0.33}},
        {"Blond_Hair", {0.14, 0.27}},
        {"Brown_Hair", {0.2, 0.35}},
        {"Gray_Hair", {0.08, 0.19}},
        {"Bald", {0.08, 0.17}},
        {"Bangs", {0.15, 0.29}},
        {"Eyeglasses", {0.15, 0.3}},
        {"Wearing_Hat", {0.12, 0.25}},
        {"Smiling", {0.37, 0.53}},
        {"Mouth_Slightly_Open", {0.27, 0.43}},
        {"Pale_Skin", {0.12, 0.25}},
        {"No_Beard", {0.7, 0.85}},
        {"Wearing_Lipstick", {0.23, 0.38}},
        {"Rosy_Cheeks", {0.15, 0.3}},
        {"Narrow_Eyes", {0.14, 0.27}},
        {"Heavy_Makeup", {0.14, 0.27}}};
    REQUIRE(ranges.size() == names.size());
    std::map<std::string, std::vector<double>> x;
    for (const auto& n : names)
      for (const auto& f : faces) x[n].push_back(f.attributes.at(n) > 0 ? 1.0 : 0.0);
    for (const auto& n : names) {
      double mean = 0;
      for (double v : x[n]) mean += v;
      mean /= faces.size();
      MESSAGE(n << ": " << mean);
      CHECK_MESSAGE(mean >= ranges.at(n).first, n << " " << mean);
      CHECK_MESSAGE(mean <= ranges.at(n).second, n << " " << mean);
    }
    // Pairs outside the hair group (one colour per head; bald heads have no bangs) are independent
    // draws: their correlation on 500 faces stays within sampling noise.
    const std::set<std::string> hair = {"Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"};
    for (size_t i = 0; i < names.size(); ++i)
      for (size_t j = i + 1; j < names.size(); ++j) {
        const auto &a = names[i], &b = names[j];
        if (hair.count(a) && hair.count(b)) continue;
        if ((a == "Bald" && b == "Bangs") || (a == "Bangs" && b == "Bald")) continue;
        double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
        const size_t n = faces.size();
        for (size_t k = 0; k < n; ++k) ma += x[a][k], mb += x[b][k];
        ma /= n, mb /= n;
        for (size_t k = 0; k < n; ++k) {
          sab += (x[a][k] - ma) * (x[b][k] - mb);
          saa += (x[a][k] - ma) * (x[a][k] - ma);
          sbb += (x[b][k] - mb) * (x[b][k] - mb);
        }
        const double r = sab / std::sqrt(saa * sbb);
        CHECK_MESSAGE(std::fabs(r) < 0.2, a << " ~ " << b << ": " << r);
      }
  }

  TEST_CASE("every attribute visibly changes the pixels where it should") {
    const auto& faces = sampleFaces();
    const int size = 64;
    auto has = [&](const char* name) {
      std::vector<bool> g;
      for (const auto& f : faces) g.push_back(f.attributes.at(name) > 0);
      return g;
    };
    // Measures one number per face (restricted to faces where `keep` holds) and returns Cohen's d
    // between the faces with and without `attr`.
    auto measure = [&](const char* attr, auto&& fn, auto&& keep) {
      std::vector<double> vals;
      std::vector<bool> group;
      const auto g = has(attr);
      for (size_t i = 0; i < faces.size(); ++i) {
        const Probe pr{faces[i], size};
        if (!keep(faces[i])) continue;
        vals.push_back(fn(pr, faces[i]));
        group.push_back(g[i]);
      }
      const double d = effectSize(vals, group);
      MESSAGE(std::string(attr) << ": effect size " << d);
      return d;
    };
    auto all = [](const engine::DemoFace&) { return true; };
    auto is = [](const char* a) {
      return [a](const engine::DemoFace& f) { return f.attributes.at(a) > 0; };
    };
    auto isNot = [](const char* a) {
      return [a](const engine::DemoFace& f) { return f.attributes.at(a) < 0; };
    };
    auto both = [](auto p, auto q) {
      return [p, q](const engine::DemoFace& f) { return p(f) && q(f); };
    };
    auto cheek = [](const Probe& p) { return p.patch({{-0.12, 0.1}, {0.12, 0.1}}); };
    auto hairVisible = both(isNot("Wearing_Hat"), isNot("Bald"));

    // A hat is saturated cloth above the head, where there is only background otherwise.
    CHECK(measure(
              "Wearing_Hat",
              [](const Probe& p, auto&) {
                return sat(p.patch({{0, -0.74}}));
              },
              all) > 2.0);
    // Glasses: dark frames across the eye band (relative to the face's own skin).
    CHECK(measure(
              "Eyeglasses",
              [&](const Probe& p, auto&) {
                return lum(p.patch({{-0.15, -0.065}, {0.15, -0.065}, {0, -0.015}}, 0.01)) /
                       lum(cheek(p));
              },
              all) < -1.0);
    CHECK(measure(
              "Pale_Skin", [&](const Probe& p, auto&) { return lum(cheek(p)); }, all) > 1.5);
    // Hair colours at the crown (hats and bald heads hide it).
    auto crownLum = [](const Probe& p, auto&) { return lum(p.patch({{0, -0.55}})); };
    CHECK(measure("Blond_Hair", crownLum, both(hairVisible, isNot("Gray_Hair"))) > 1.5);
    CHECK(measure("Black_Hair", crownLum, hairVisible) < -1.5);
    CHECK(measure("Brown_Hair", crownLum, both(hairVisible, isNot("Black_Hair"))) < -1.0);
    CHECK(measure(
              "Gray_Hair",
              [](const Probe& p, auto&) {
                return sat(p.patch({{0, -0.55}}));
              },
              hairVisible) < -1.5);
    // Bald: skin on the crown. Bangs: hair on the forehead.
    CHECK(measure(
              "Bald",
              [&](const Probe& p, auto&) {
                return absDiff(p.patch({{0, -0.38}}), cheek(p));
              },
              isNot("Wearing_Hat")) < -1.0);
    CHECK(measure(
              "Bangs",
              [&](const Probe& p, auto&) {
                return absDiff(p.patch({{0, -0.22}}), cheek(p));
              },
              hairVisible) > 1.0);
    // A beard covers the jaw with hair colour.
    CHECK(measure(
              "No_Beard",
              [&](const Probe& p, auto&) {
                return absDiff(p.patch({{0, 0.43}, {-0.2, 0.33}, {0.2, 0.33}}), cheek(p));
              },
              all) < -1.0);
    // Mouth: open is dark below the lip line; a smile lifts dark corners; lipstick is saturated.
    CHECK(measure(
              "Mouth_Slightly_Open",
              [](const Probe& p, auto&) {
                return lum(p.patch({{0, 0.335}}, 0.008));
              },
              isNot("Smiling")) < -1.0);
    CHECK(measure(
              "Smiling",
              [&](const Probe& p, auto&) {
                return lum(p.patch({{-0.125, 0.27}, {0.125, 0.27}}, 0.01)) / lum(cheek(p));
              },
              is("No_Beard")) < -0.5);
    CHECK(measure(
              "Wearing_Lipstick",
              [](const Probe& p, auto&) {
                double best = 0;
                for (double u = -0.1; u <= 0.1001; u += 0.025)
                  for (double v = 0.25; v <= 0.34; v += 0.015) {
                    const Rgb c = p.at(u, v);
                    best = std::max(best, sat(c) * std::max({c.r, c.g, c.b}));
                  }
                return best;
              },
              is("No_Beard")) > 0.8);
    // Cheeks: redder than the skin beside the nose.
    auto redness = [](Rgb c) { return c.r - 0.5 * (c.g + c.b); };
    CHECK(measure(
              "Rosy_Cheeks",
              [&](const Probe& p, auto&) {
                return redness(p.patch({{-0.2, 0.15}, {0.2, 0.15}})) - redness(cheek(p));
              },
              all) > 1.0);
    // Eyes: narrow eyes show less contrast (white, iris, pupil) in the eye box.
    CHECK(measure(
              "Narrow_Eyes",
              [](const Probe& p, const engine::DemoFace& f) {
                const double fw = f.factors.at("face_width");
                double s = 0, ss = 0;
                int n = 0;
                for (int side : {-1, 1})
                  for (double du = -0.05; du <= 0.0501; du += 0.025)
                    for (double dv = -0.03; dv <= 0.0301; dv += 0.015) {
                      const double l = lum(p.at(side * 0.15 * fw + du, dv));
                      s += l, ss += l * l, ++n;
                    }
                return std::sqrt(std::max(0.0, ss / n - (s / n) * (s / n)));
              },
              isNot("Eyeglasses")) < -0.5);
    // Make-up: coloured eye shadow between the lids and the brows, where there is skin otherwise.
    CHECK(
        measure(
            "Heavy_Makeup",
            [&](const Probe& p, const engine::DemoFace& f) {
              const double fw = f.factors.at("face_width");
              return absDiff(p.patch({{-0.15 * fw, -0.075}, {0.15 * fw, -0.075}}, 0.01), cheek(p));
            },
            isNot("Eyeglasses")) > 1.5);
  }

  TEST_CASE("rotation_deg is the tilt of the face's symmetry axis" * doctest::timeout(120)) {
    const int size = 96;
    double maxErr = 0, sumErr = 0;
    int n = 0;
    for (int i = 0; i < 40; ++i) {
      const auto face = engine::renderDemoFace(3, i, size);
      const double rot = face.factors.at("rotation_deg");
      CHECK(std::fabs(rot) <= 20.0);
      const double err = std::fabs(measureTilt(face, size) - rot);
      maxErr = std::max(maxErr, err), sumErr += err, ++n;
    }
    MESSAGE("tilt error: mean " << sumErr / n << " max " << maxErr);
    CHECK(sumErr / n < 1.5);
    CHECK(maxErr < 5.0);
  }

  TEST_CASE("invalid configs throw engine::Error naming the flag and create nothing") {
    testutil::TempDir dir("demo-invalid");
    const std::string out = dir.str("out");
    struct BadCase {
      engine::DemoDataConfig cfg;
      const char* flag;
    };
    std::vector<BadCase> cases;
    cases.push_back({makeConfig(out, 0, 64), "--count"});
    cases.push_back({makeConfig(out, -5, 64), "--count"});
    cases.push_back({makeConfig(out, 1000000, 64), "--count"});
    cases.push_back({makeConfig(out, 10, 15), "--size"});
    cases.push_back({makeConfig(out, 10, 1025), "--size"});
    auto fmt = makeConfig(out, 10, 64);
    fmt.format = "bmp";
    cases.push_back({fmt, "--format"});
    cases.push_back({makeConfig(out, 10, 64, 0, -1), "--threads"});
    cases.push_back({makeConfig("", 10, 64), "--out"});
    for (const auto& c : cases) {
      engine::JobContext ctx;
      std::string what;
      try {
        engine::generateDemoData(c.cfg, ctx);
      } catch (const engine::Error& e) {
        what = e.what();
      }
      CHECK_MESSAGE(what.find(c.flag) == 0, what);
      CHECK(what.find('\n') == std::string::npos);
      CHECK(listNames(dir.path).empty());
    }
  }

  TEST_CASE("an existing non-empty --out is refused and left as it was") {
    testutil::TempDir dir("demo-exists");
    const fs::path out = dir.path / "out";
    engine::writeFileAtomic((out / "keep.txt").string(), std::string("mine"));
    engine::JobContext ctx;
    std::string what;
    try {
      engine::generateDemoData(makeConfig(out.string(), 5, 32), ctx);
    } catch (const engine::Error& e) {
      what = e.what();
    }
    CHECK(what == "--out " + out.string() +
                      ": folder exists and is not empty; choose a new folder or remove it");
    CHECK(listNames(dir.path) == std::vector<std::string>{"out"});
    CHECK(listNames(out) == std::vector<std::string>{"keep.txt"});
    CHECK(engine::readFileText((out / "keep.txt").string()) == "mine");

    // A file in the way is refused too.
    const fs::path file = dir.path / "file";
    engine::writeFileAtomic(file.string(), std::string("x"));
    CHECK_THROWS_AS(engine::generateDemoData(makeConfig(file.string(), 5, 32), ctx), engine::Error);
    CHECK(listNames(dir.path) == std::vector<std::string>{"file", "out"});
  }

  TEST_CASE("an existing empty --out folder, or a missing parent, is fine") {
    testutil::TempDir dir("demo-empty");
    fs::create_directories(dir.path / "empty");
    engine::JobContext ctx;
    engine::generateDemoData(makeConfig(dir.str("empty") + "/", 3, 32), ctx);
    CHECK(listNames(dir.path / "empty").size() == 4);
    engine::generateDemoData(makeConfig(dir.str("a/b/c"), 3, 32), ctx);
    CHECK(fs::is_regular_file(dir.path / "a/b/c/list_attr_celeba.csv"));
    CHECK(listNames(dir.path) == std::vector<std::string>{"a", "empty"});
  }

  TEST_CASE("cancellation leaves nothing behind" * doctest::timeout(120)) {
    testutil::TempDir dir("demo-cancel");
    SUBCASE("stop requested before the start") {
      engine::JobContext ctx;
      ctx.requestStop();
      CHECK_THROWS_AS(engine::generateDemoData(makeConfig(dir.str("out"), 50, 32), ctx),
                      engine::Cancelled);
      CHECK(listNames(dir.path).empty());
    }
    SUBCASE("stop requested while images are being written") {
      engine::JobContext ctx;
      std::atomic<bool> threw{false}, finished{false};
      std::thread worker([&] {
        try {
          engine::generateDemoData(makeConfig(dir.str("out"), 200000, 64), ctx);
        } catch (const engine::Cancelled&) {
          threw = true;
        }
        finished = true;
      });
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (ctx.snapshot().done < 200 && !finished && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      // Images are on disk in the temporary folder now.
      bool sawTemporary = false;
      for (const auto& name : listNames(dir.path)) sawTemporary |= name.rfind("out.tmp-", 0) == 0;
      CHECK(sawTemporary);
      ctx.requestStop();
      worker.join();
      CHECK(threw);
      CHECK(ctx.snapshot().done < 200000);
      CHECK(listNames(dir.path).empty());
    }
  }

}  // TEST_SUITE
