#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/job.h"
#include "engine/memory.h"
#include "test_helpers.h"

TEST_CASE("writeFileAtomic replaces a file whole and leaves no temporary") {
  testutil::TempDir dir("fs");
  const std::string p = dir.str("sub/a.txt");
  engine::writeFileAtomic(p, std::string("one"));
  engine::writeFileAtomic(p, std::string("two"));
  CHECK(engine::readFileText(p) == "two");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.str("sub"))) (void)e, ++files;
  CHECK(files == 1);
}

TEST_CASE("removeTree removes a folder and all under it, never what a link points to") {
  namespace fs = std::filesystem;
  testutil::TempDir dir("rmtree");
  const std::string tree = dir.str("tree"), keep = dir.str("keep");
  engine::writeFileAtomic(keep + "/precious.txt", std::string("kept"));
  for (const char* f : {"a.txt", "sub/b.bin", "sub/deeper/c.txt", "empty/.hidden"})
    engine::writeFileAtomic(tree + "/" + f, std::string(f));
  fs::create_directories(tree + "/empty-folder");
  fs::create_directory_symlink(keep, tree + "/sub/link-to-keep");
  fs::create_symlink(keep + "/precious.txt", tree + "/file-link");
  fs::create_symlink(dir.str("nowhere"), tree + "/dangling");
  CHECK(engine::removeTree(tree));
  CHECK_FALSE(fs::exists(fs::symlink_status(tree)));
  CHECK(engine::readFileText(keep + "/precious.txt") == "kept");  // links removed, not followed
  CHECK(engine::removeTree(tree));                                // missing: nothing to do
  CHECK(engine::removeTree(keep + "/precious.txt"));              // a plain file
  CHECK_FALSE(fs::exists(keep + "/precious.txt"));
  CHECK(fs::exists(keep));
  // A link given as the path itself goes, its target stays.
  engine::writeFileAtomic(keep + "/x", std::string("x"));
  fs::create_directory_symlink(keep, dir.str("link"));
  CHECK(engine::removeTree(dir.str("link")));
  CHECK(engine::readFileText(keep + "/x") == "x");
}

TEST_CASE("JobContext reports progress and honours stop") {
  engine::JobContext ctx;
  ctx.beginStage("train", 100, "images");
  ctx.advance(10, {{"loss", 1.5}}, 0);
  auto s = ctx.snapshot();
  CHECK(s.stage == "train");
  CHECK(s.done == 10);
  CHECK(s.latest.at("loss") == doctest::Approx(1.5));
  CHECK(s.curve.size() == 1);
  CHECK_NOTHROW(ctx.checkStop());
  ctx.requestStop();
  CHECK_THROWS_AS(ctx.checkStop(), engine::Cancelled);
}

TEST_CASE("formatDuration") {
  CHECK(engine::formatDuration(65) == "01:05");
  CHECK(engine::formatDuration(3725) == "1:02:05");
  CHECK(engine::formatDuration(-1) == "--:--");
}

// ---------------------------------------------------------------------------------------------
// Data sets, images, attributes, workspace

#include <fstream>
#include <random>
#include <set>

#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/npy.h"
#include "engine/workspace.h"

namespace {

void writeSolidPng(const std::string& path, int w, int h, uint8_t r) {
  engine::Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.assign(static_cast<size_t>(w) * h * 3, r);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  engine::writePng(path, img);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("scanDataset sorts exactly as torchvision's ImageFolder") {
  testutil::TempDir dir("scan");
  // Names that sort differently under naive, case-insensitive or natural orders.
  const char* files[] = {"b/x.png", "a/z.png", "a/B.png", "a/a.PNG", "a/sub/c.png", "a/sub2/a.png",
                         "a/sub 1/q.jpg", "a/10.png", "a/9.png", "A/k.png", "a/é.png", "c/d/e/f.png",
                         "a/sub/Z.bmp", "a_b/x.png"};
  for (const char* f : files) {
    const std::string p = dir.str(f);
    if (std::string(f).find(".jpg") != std::string::npos) {
      writeSolidPng(p + ".tmp.png", 4, 4, 9);
      std::filesystem::rename(p + ".tmp.png", p);  // a PNG named .jpg: found by extension
    } else {
      writeSolidPng(p, 4, 4, 9);
    }
  }
  std::ofstream(dir.str("a/notes.txt")) << "not an image";
  std::string out;
  REQUIRE(testutil::runPython(testutil::pyScript("torch_oracle.py"), "imagefolder " + dir.str(), &out) == 0);
  const engine::Dataset d = engine::scanDataset(dir.str());
  CHECK(d.paths == lines(out));
  CHECK(d.size() == 14);
  CHECK(d.layout == "folder");

  SUBCASE("images directly in the root come first") {
    writeSolidPng(dir.str("top.png"), 4, 4, 1);
    const engine::Dataset d2 = engine::scanDataset(dir.str());
    CHECK(d2.paths.front() == "top.png");
    CHECK(std::vector<std::string>(d2.paths.begin() + 1, d2.paths.end()) == d.paths);
  }
  SUBCASE("a missing or empty folder is one clear error") {
    CHECK_THROWS_WITH_AS(engine::scanDataset(dir.str("nope")), doctest::Contains("no such folder"),
                         engine::Error);
    std::filesystem::create_directories(dir.str("empty/sub"));
    CHECK_THROWS_WITH_AS(engine::scanDataset(dir.str("empty")), doctest::Contains("no images found"),
                         engine::Error);
  }
}

TEST_CASE("CelebA layout and attribute files are recognised and parsed") {
  testutil::TempDir dir("celeba");
  for (int i = 1; i <= 3; ++i)
    writeSolidPng(dir.str("img_align_celeba/img_align_celeba/00000" + std::to_string(i) + ".jpg"), 8, 8, 50);
  std::ofstream(dir.str("list_attr_celeba.csv"))
      << "image_id,Smiling,Eyeglasses,scale\n000001.jpg,1,-1,0.5\n000002.jpg,-1,-1,1.25\n000003.jpg,1,1,2\n";
  std::ofstream(dir.str("list_eval_partition.csv")) << "image_id,partition\n000001.jpg,0\n";
  const engine::Dataset d = engine::scanDataset(dir.str());
  CHECK(d.layout == "celeba");
  CHECK(d.paths[0] == "img_align_celeba/img_align_celeba/000001.jpg");
  CHECK(d.attributesFile == dir.str("list_attr_celeba.csv"));
  CHECK(d.partitionFile == dir.str("list_eval_partition.csv"));
  const engine::Attributes a = engine::loadAttributes(d.attributesFile);
  CHECK(a.names == std::vector<std::string>{"Smiling", "Eyeglasses", "scale"});
  CHECK(a.binary == std::vector<bool>{true, true, false});
  const int64_t row = a.rowForPath(d.paths[2]);
  REQUIRE(row == 2);
  CHECK(a.value(row, 1) == 1.f);
  CHECK(a.value(1, 2) == doctest::Approx(1.25));

  SUBCASE("pointing --data at the image folder itself still finds the attributes") {
    const engine::Dataset inner = engine::scanDataset(dir.str("img_align_celeba/img_align_celeba"));
    CHECK(inner.attributesFile == dir.str("list_attr_celeba.csv"));
    CHECK(inner.paths[0] == "000001.jpg");
  }
  SUBCASE("the original whitespace format with a count line") {
    std::ofstream(dir.str("attr.txt")) << "2\nSmiling Eyeglasses\n000001.jpg  1 -1\n000002.jpg -1  1\n";
    const engine::Attributes t = engine::loadAttributes(dir.str("attr.txt"));
    CHECK(t.names.size() == 2);
    CHECK(t.value(t.rowForPath("x/000002.jpg"), 1) == 1.f);
  }
  SUBCASE("a malformed row names the file and line") {
    std::ofstream(dir.str("bad.csv")) << "image_id,Smiling\n000001.jpg,1\n000002.jpg,yes\n";
    CHECK_THROWS_WITH_AS(engine::loadAttributes(dir.str("bad.csv")),
                         doctest::Contains("bad.csv:3: column Smiling"), engine::Error);
  }
}

TEST_CASE("resizeChwFloat equals torch's antialiased bilinear interpolate") {
  testutil::TempDir dir("resize");
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0, 1);
  const int c = 3, h = 37, w = 53;
  std::vector<float> src(c * h * w);
  for (auto& v : src) v = u(rng);
  engine::writeNpy(dir.str("in.npy"), engine::TensorData::fromFloat({c, h, w}, src.data()));
  for (auto [oh, ow] : {std::pair{16, 16}, std::pair{64, 64}, std::pair{37, 20}, std::pair{90, 41}}) {
    CAPTURE(oh);
    CAPTURE(ow);
    const std::string out = dir.str("out.npy");
    REQUIRE(testutil::runPython(testutil::pyScript("torch_oracle.py"),
                                "resize " + dir.str("in.npy") + " " + std::to_string(oh) + " " +
                                    std::to_string(ow) + " " + out) == 0);
    const std::vector<float> want = engine::readNpy(out).toFloat();
    std::vector<float> got(c * oh * ow);
    engine::resizeChwFloat(src.data(), c, h, w, got.data(), oh, ow);
    float maxErr = 0;
    for (size_t i = 0; i < got.size(); ++i) maxErr = std::max(maxErr, std::abs(got[i] - want[i]));
    CHECK(maxErr < 1e-5f);
  }
}

TEST_CASE("decodeImage converts grey and alpha to RGB and rejects what is not an image") {
  testutil::TempDir dir("decode");
  engine::Image rgba;
  rgba.width = 2;
  rgba.height = 1;
  rgba.channels = 4;
  rgba.pixels = {10, 20, 30, 0, 200, 100, 50, 255};
  engine::writePng(dir.str("a.png"), rgba);
  const engine::Image back = engine::decodeImage(dir.str("a.png"));
  CHECK(back.channels == 3);
  CHECK(back.pixels == std::vector<uint8_t>{10, 20, 30, 200, 100, 50});
  std::ofstream(dir.str("t.jpg")) << "hello";
  CHECK_THROWS_WITH_AS(engine::decodeImage(dir.str("t.jpg")), doctest::Contains("t.jpg: not a readable image"),
                       engine::Error);
  std::ofstream(dir.str("z.png")).close();
  CHECK_THROWS_WITH_AS(engine::decodeImage(dir.str("z.png")), doctest::Contains("empty file"), engine::Error);
  // GIF, TGA, PSD... are not handed to stb; a JPEG whose Huffman table has over 256 codes (stb 2.27
  // writes past its tables, found by tests/fuzz/fuzz_image) is refused.
  std::ofstream(dir.str("g.png")) << "GIF89a\x01\x00\x01\x00";
  CHECK_THROWS_WITH_AS(engine::decodeImage(dir.str("g.png")), doctest::Contains("not a JPEG, PNG"),
                       engine::Error);
  CHECK_THROWS_WITH_AS(
      engine::decodeImage(SAESCOPE_TEST_DIR "/fuzz/corpus/fuzz_image/jpeg_dht_over_256_codes.jpg"),
      doctest::Contains("over 256 codes"), engine::Error);
  // A progressive JPEG whose scan decodes with a Huffman table that was never defined (stb 2.27
  // indexes uninitialised tables hundreds of MB out of bounds, found by fuzz_image) is refused;
  // a valid progressive JPEG still decodes.
  CHECK_THROWS_WITH_AS(
      engine::decodeImage(SAESCOPE_TEST_DIR
                          "/fuzz/corpus/fuzz_image/jpeg_progressive_undefined_huffman_table.jpg"),
      doctest::Contains("no DHT segment defined"), engine::Error);
  CHECK(engine::decodeImage(SAESCOPE_TEST_DIR "/fuzz/corpus/fuzz_image/progressive.jpg").width > 0);
  // A PNG chunk longer than the file: refused before stb allocates that length.
  CHECK_THROWS_WITH_AS(
      engine::decodeImage(SAESCOPE_TEST_DIR "/fuzz/corpus/fuzz_image/png_idat_length_2gib.png"),
      doctest::Contains("truncated PNG"), engine::Error);
  // Empty IDAT chunks (legal; one before any data made stb 2.27 memcpy to a null buffer, found by
  // fuzz_image) are dropped before stb reads the file: the same image as demo.png, whose one IDAT
  // chunk this file splits in two, with an empty one before each half.
  {
    const engine::Image split =
        engine::decodeImage(SAESCOPE_TEST_DIR "/fuzz/corpus/fuzz_image/png_empty_idat_chunks.png");
    const engine::Image whole =
        engine::decodeImage(SAESCOPE_TEST_DIR "/fuzz/corpus/fuzz_image/demo.png");
    CHECK(split.width == whole.width);
    CHECK(split.height == whole.height);
    CHECK(split.pixels == whole.pixels);
    CHECK(whole.width > 1);
  }
  // A 16-bit PGM (stb 2.27 overran its buffer converting one to RGB) decodes to grey. Which byte
  // of each sample stb 2.27 keeps depends on the host's byte order (it does not swap), so only the
  // shape is checked.
  std::ofstream(dir.str("g16.pgm"), std::ios::binary) << "P5 2 1 65535\n\x12\x34\xab\xcd";
  const engine::Image g16 = engine::decodeImage(dir.str("g16.pgm"));
  REQUIRE(g16.pixels.size() == 6);
  CHECK((g16.pixels[0] == g16.pixels[1] && g16.pixels[1] == g16.pixels[2]));
  CHECK((g16.pixels[3] == g16.pixels[4] && g16.pixels[4] == g16.pixels[5]));
  CHECK(g16.pixels[0] != g16.pixels[3]);
  std::ofstream(dir.str("w.ppm")) << "P6 1111111111 3 255\n";  // stb's int would overflow
  CHECK_THROWS_WITH_AS(engine::decodeImage(dir.str("w.ppm")), doctest::Contains("too large"),
                       engine::Error);
}

// The loader tests' images: c/1NN.png, solid red NN*10 (writeSolidPng), 6x6 loaded at 4x4. A solid
// image stays solid through the resize: the red plane's value identifies the row.
double solidRed(const engine::Dataset& d, int64_t row) {
  return (std::stoi(d.paths[row].substr(2, 3)) - 100) * 10 / 255.0;
}

TEST_CASE("BatchLoader yields every row once, in order or shuffled, skipping unreadable files") {
  testutil::TempDir dir("loader");
  for (int i = 0; i < 23; ++i) writeSolidPng(dir.str("c/" + std::to_string(100 + i) + ".png"), 6, 6, i * 10);
  std::ofstream(dir.str("c/150.png")) << "broken";
  const engine::Dataset d = engine::scanDataset(dir.str());
  REQUIRE(d.size() == 24);
  for (bool shuffle : {false, true}) {
    engine::LoaderConfig lc;
    lc.imageSize = 4;
    lc.batchSize = 5;
    lc.shuffle = shuffle;
    lc.seed = 9;
    lc.threads = 3;
    engine::BatchLoader loader(d, lc);
    CHECK(loader.numBatches() == 5);
    std::vector<int64_t> seen;
    int failures = 0;
    engine::Batch b;
    while (loader.next(b)) {
      REQUIRE(b.pixels.size() == static_cast<size_t>(b.size) * 3 * 4 * 4);
      for (int i = 0; i < b.size; ++i) {
        const int64_t row = b.indices[i];
        seen.push_back(row);
        CHECK(b.pixels[static_cast<size_t>(i) * 48] ==
              doctest::Approx(solidRed(d, row)).epsilon(1e-5));
      }
      for (const auto& f : b.failures) {
        CHECK(d.paths[f.first] == "c/150.png");
        CHECK(f.second.find("not a readable image") != std::string::npos);
        ++failures;
      }
    }
    CHECK(failures == 1);
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 23);
    CHECK((seen == sorted) == !shuffle);
  }
}

TEST_CASE("BatchLoader reuses the pixel buffers handed back; the allocator keeps freed memory") {
  testutil::TempDir dir("loader-reuse");
  for (int i = 0; i < 24; ++i)
    writeSolidPng(dir.str("c/" + std::to_string(100 + i) + ".png"), 6, 6, i * 10);
  const engine::Dataset d = engine::scanDataset(dir.str());
  engine::LoaderConfig lc;
  lc.imageSize = 4;
  lc.batchSize = 2;
  lc.threads = 2;
  lc.prefetchBatches = 3;
  engine::BatchLoader loader(d, lc);
  std::set<const float*> buffers;
  engine::Batch b;
  int batches = 0;
  while (loader.next(b)) {
    ++batches;
    buffers.insert(b.pixels.data());
    for (int i = 0; i < b.size; ++i) {  // a reused buffer holds this batch's images, not old ones
      CHECK(b.pixels[static_cast<size_t>(i) * 48 + 15] ==
            doctest::Approx(solidRed(d, b.indices[i])).epsilon(1e-5));
    }
  }
  CHECK(batches == 12);
  // The batches decoded ahead (3), the one handed out, one fresh before the first hand-back.
  CHECK(buffers.size() <= 5);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  CHECK(engine::keepFreedMemory());  // (a sanitizer's allocator refuses mallopt)
#endif
}

TEST_CASE("workspace manifests: fresh, updated atomically, and validated") {
  testutil::TempDir dir("ws");
  engine::Workspace ws = engine::Workspace::open(dir.str("w"), true);
  CHECK(engine::fileExists(dir.str("w/manifest.json")));
  ws.updateManifest([](nlohmann::json& m) { m["data_root"] = "/data"; });
  CHECK(engine::Workspace::open(dir.str("w"), false).dataRoot() == "/data");
  auto st = ws.stages();
  REQUIRE(st.size() == 3);
  CHECK(st[0].status == "missing");
  engine::writeFileAtomic(dir.str("w/manifest.json"), std::string("{\"format\": 7}"));
  CHECK_THROWS_WITH_AS(engine::Workspace::open(dir.str("w"), false), doctest::Contains("newer saescope"),
                       engine::Error);
  engine::writeFileAtomic(dir.str("w/manifest.json"), std::string("{\"image_count\": \"many\"}"));
  CHECK_THROWS_WITH_AS(engine::Workspace::open(dir.str("w"), false),
                       doctest::Contains("\"image_count\" must be an integer"), engine::Error);
  engine::writeFileAtomic(dir.str("w/manifest.json"), std::string("{not json"));
  CHECK_THROWS_WITH_AS(engine::Workspace::open(dir.str("w"), false), doctest::Contains("not valid JSON"),
                       engine::Error);
  CHECK_THROWS_AS(engine::Workspace::open(dir.str("missing"), false), engine::Error);
}
