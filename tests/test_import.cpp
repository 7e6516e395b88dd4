// tests/test_import.cpp — `saescope import` against files written by Python's torch (every
// container and float16/float32), its errors, the torchvision checkpoint lookup, and exports.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>

#include "engine/checkpoint.h"
#include "engine/dataset.h"
#include "engine/error.h"
#include "engine/export.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/import.h"
#include "engine/npy.h"
#include "engine/workspace.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kN = 40, kD = 24, kF = 32;

// A tiny image folder (class folders plus loose images) and the Python-written artifacts.
struct Fixture {
  testutil::TempDir dir{"import"};
  std::string data, files;
  Fixture() {
    data = dir.str("data");
    files = dir.str("files");
    for (int i = 0; i < kN; ++i) {
      engine::Image im;
      im.width = im.height = 8;
      im.pixels.assign(8 * 8 * 3, 0);
      for (size_t p = 0; p < im.pixels.size(); p += 3) {
        im.pixels[p] = static_cast<uint8_t>(i * 6);
        im.pixels[p + 1] = static_cast<uint8_t>(255 - i * 6);
        im.pixels[p + 2] = static_cast<uint8_t>((i * 37) % 256);
      }
      const char* sub = i % 3 == 0 ? "" : i % 3 == 1 ? "b/" : "a/";
      engine::writePng(data + "/" + sub + "img" + std::to_string(100 - i) + ".png", im);
    }
    const int rc = testutil::runPython(testutil::pyScript("import_oracle.py"),
                                       "write " + files + " " + std::to_string(kN) + " " +
                                           std::to_string(kD) + " " + std::to_string(kF));
    REQUIRE(rc == 0);
  }
  std::string f(const std::string& name) const { return files + "/" + name; }
};

Fixture& fixture() {
  static Fixture fx;
  return fx;
}

std::string importInto(const std::string& ws, const std::string& emb, const std::string& sae = "",
                       const std::string& backbone = "") {
  engine::ImportConfig cfg;
  cfg.data = fixture().data;
  cfg.workspace = ws;
  cfg.embeddings = emb;
  cfg.sae = sae;
  cfg.backbone = backbone;
  engine::JobContext ctx;
  engine::runImport(cfg, ctx);
  return ws;
}

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "";
}

std::vector<float> floatsOf(const std::string& path) {
  return engine::readTensorFile(path)[0].second.toFloat();
}

std::string saescopeBinary() {
  return std::string(SAESCOPE_BINARY_DIR) + "/app/saescope";
}

// Runs a shell command; returns the exit code, stderr in `err`.
int shell(const std::string& cmd, std::string* err) {
  const std::string errFile =
      fs::temp_directory_path() / ("saescope-imp-" + std::to_string(::getpid()));
  const int rc = std::system((cmd + " > /dev/null 2> " + errFile).c_str());
  std::ifstream in(errFile);
  err->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::remove(errFile.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("embeddings from every container and dtype become float32 embeddings.npy") {
  Fixture& fx = fixture();
  const std::vector<float> ref32 = floatsOf(fx.f("emb_f32.npy"));
  const std::vector<float> ref16 = floatsOf(fx.f("emb_f16.npy"));  // float16 values, widened
  const std::pair<const char*, const std::vector<float>*> cases[] = {
      {"emb_f32.pt", &ref32},  {"emb_f16.pt", &ref16},  {"emb_dict.pt", &ref32},
      {"emb_f32.npy", &ref32}, {"emb_f16.npy", &ref16}, {"emb_f16.safetensors", &ref16}};
  for (const auto& [file, ref] : cases) {
    CAPTURE(file);
    const std::string ws = importInto(fx.dir.str(std::string("ws-") + file), fx.f(file));
    const engine::TensorData e = engine::readNpy(ws + "/embeddings.npy");
    CHECK(e.dtype == engine::DType::Float32);
    REQUIRE(e.shape == std::vector<int64_t>{kN, kD});
    CHECK(e.toFloat() == *ref);
    // images.txt is the data set in ImageFolder order; the manifest records the import.
    CHECK(engine::readImageList(ws + "/images.txt") == engine::scanDataset(fx.data).paths);
    const json m = json::parse(engine::readFileText(ws + "/manifest.json"));
    CHECK(m["image_count"] == kN);
    CHECK(m["data_root"] == engine::scanDataset(fx.data).root);
    CHECK(m["stages"]["embed"]["status"] == "imported");
    CHECK(m["stages"]["embed"]["source"] == fs::absolute(fx.f(file)).lexically_normal().string());
    CHECK(engine::classifyArtifact(fx.f(file)) == engine::ArtifactKind::Embeddings);
  }
}

TEST_CASE("SAE state_dicts: OrderedDict, plain dict, float16, safetensors") {
  Fixture& fx = fixture();
  const engine::StateDict ref = engine::readTensorFile(fx.f("sae_ordered.pt"));
  for (const char* file : {"sae_ordered.pt", "sae_plain.pt", "sae_f16.pt", "sae.safetensors"}) {
    CAPTURE(file);
    const std::string ws =
        importInto(fx.dir.str(std::string("sae-") + file), fx.f("emb_f32.pt"), fx.f(file));
    const engine::StateDict sd = engine::readTorchCheckpoint(ws + "/sae.pt");
    REQUIRE(sd.size() == 4);
    for (const auto& [name, t] : sd) {
      CAPTURE(name);
      CHECK(t.dtype == engine::DType::Float32);
      const engine::TensorData* r = engine::findTensor(ref, name);
      REQUIRE(r);
      CHECK(t.shape == r->shape);
      if (std::string(file) != "sae_f16.pt") CHECK(t.toFloat() == r->toFloat());
    }
    CHECK(engine::findTensor(sd, "weight_encoder")->shape == std::vector<int64_t>{kD, kF});
    const json m = json::parse(engine::readFileText(ws + "/manifest.json"));
    CHECK(m["stages"]["sae"]["status"] == "imported");
    CHECK(m["stages"]["sae"]["features"] == kF);
    CHECK(engine::classifyArtifact(fx.f(file)) == engine::ArtifactKind::Sae);
  }
}

TEST_CASE("ResNet18 state_dicts: legacy .pth with fc, float16 safetensors without fc") {
  Fixture& fx = fixture();
  for (const char* file : {"resnet18_fc.pth", "resnet18_f16.safetensors", "resnet18_nofc.pt"}) {
    CAPTURE(file);
    const std::string ws = fx.dir.str(std::string("bb-") + file);
    importInto(ws, "", "", fx.f(file));
    const engine::StateDict sd = engine::readTorchCheckpoint(ws + "/backbone.pt");
    CHECK(sd.size() == engine::resnet18Spec().size());
    CHECK_FALSE(engine::findTensor(sd, "fc.weight"));
    CHECK(engine::classifyArtifact(fx.f(file)) == engine::ArtifactKind::Backbone);
    // torchvision loads it strictly (fc = Identity) and it holds the original values.
    CHECK(testutil::runPython(testutil::pyScript("import_oracle.py"),
                              "backbone " + ws + " " + fx.f(file)) == 0);
    const json m = json::parse(engine::readFileText(ws + "/manifest.json"));
    CHECK(m["stages"]["train"]["status"] == "imported");
    CHECK_FALSE(engine::fileExists(ws + "/embeddings.npy"));
  }
  // A SAE is not a backbone.
  const std::string err =
      errorOf([&] { importInto(fx.dir.str("bb-bad"), "", "", fx.f("sae_ordered.pt")); });
  CHECK(err.find("missing tensor 'conv1.weight'") != std::string::npos);
}

TEST_CASE("the imported workspace's `saescope topk --json` equals the reference ranking") {
  Fixture& fx = fixture();
  REQUIRE(engine::fileExists(saescopeBinary()));
  // float16 inputs: the reference ranks the same float16 values widened to float32.
  const std::string ws =
      importInto(fx.dir.str("topk16"), fx.f("emb_f16.safetensors"), fx.f("sae_f16.pt"));
  CHECK(testutil::runPython(testutil::pyScript("import_oracle.py"),
                            "topk " + saescopeBinary() + " " + ws + " " +
                                fx.f("emb_f16.safetensors") + " " + fx.f("sae_f16.pt")) == 0);
  const std::string ws32 =
      importInto(fx.dir.str("topk32"), fx.f("emb_f32.pt"), fx.f("sae_ordered.pt"));
  CHECK(testutil::runPython(testutil::pyScript("import_oracle.py"),
                            "topk " + saescopeBinary() + " " + ws32 + " " + fx.f("emb_f32.pt") +
                                " " + fx.f("sae_ordered.pt")) == 0);
  // D != 512 all the way through the feature index.
  engine::JobContext ctx;
  const auto idx = engine::FeatureIndex::loadOrBuild(ws32, ctx);
  CHECK(idx->numFeatures(engine::FeatureKind::Dense) == kD);
  CHECK(idx->numFeatures(engine::FeatureKind::Sparse) == kF);
  CHECK(idx->numImages() == kN);
}

TEST_CASE("mistakes give one clear line and leave the workspace as it was") {
  Fixture& fx = fixture();
  SUBCASE("count mismatch names the file and both counts; no workspace is created") {
    const std::string ws = fx.dir.str("err-count");
    const std::string err = errorOf([&] { importInto(ws, fx.f("emb_wrong_count.pt")); });
    CHECK(err.find(fx.f("emb_wrong_count.pt")) != std::string::npos);
    CHECK(err.find("43 embeddings but 40 images") != std::string::npos);
    CHECK(err.find('\n') == std::string::npos);
    CHECK_FALSE(fs::exists(ws));
  }
  SUBCASE("an SAE with inconsistent shapes") {
    const std::string err = errorOf(
        [&] { importInto(fx.dir.str("err-sae"), fx.f("emb_f32.pt"), fx.f("sae_wrong_shape.pt")); });
    CHECK(err.find("sae_wrong_shape.pt: weight_decoder has shape [32, 24], expected [32, 25]") !=
          std::string::npos);
  }
  SUBCASE("an SAE for other embeddings, into an existing workspace: nothing changes") {
    const std::string ws =
        importInto(fx.dir.str("err-keep"), fx.f("emb_f32.pt"), fx.f("sae_ordered.pt"));
    const std::string before = engine::readFileText(ws + "/manifest.json");
    const auto sae = engine::readFileBytes(ws + "/sae.pt");
    const std::string err = errorOf([&] { importInto(ws, "", fx.f("sae_other_dims.pt")); });
    CHECK(err.find("the SAE takes 26-d inputs") != std::string::npos);
    CHECK(err.find("embeddings are 24-d") != std::string::npos);
    CHECK(engine::readFileText(ws + "/manifest.json") == before);
    CHECK(engine::readFileBytes(ws + "/sae.pt") == sae);
    for (const auto& e : fs::directory_iterator(ws))
      CHECK(e.path().filename().string().rfind(".import.", 0) != 0);
  }
  SUBCASE("missing file, nothing to import") {
    CHECK(errorOf([&] {
            importInto(fx.dir.str("err-miss"), fx.f("nope.pt"));
          }).find("--embeddings " + fx.f("nope.pt") + ": no such file") != std::string::npos);
    CHECK(errorOf([&] { importInto(fx.dir.str("err-none"), ""); }).find("nothing to import") !=
          std::string::npos);
  }
  SUBCASE("the command line prints exactly one line and exits 1") {
    REQUIRE(engine::fileExists(saescopeBinary()));
    std::string err;
    const int rc = shell(saescopeBinary() + " import --data " + fx.data + " --workspace " +
                             fx.dir.str("err-cli") + " --embeddings " + fx.f("emb_wrong_count.pt"),
                         &err);
    CHECK(rc == 1);
    CHECK(err.rfind("saescope: error: ", 0) == 0);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find("43 embeddings but 40 images") != std::string::npos);
    const int rc2 = shell(saescopeBinary() + " import --data " + fx.data + " --workspace " +
                              fx.dir.str("err-cli2") + " --embeddings " + fx.f("emb_f32.pt") +
                              " --sae " + fx.f("sae_wrong_shape.pt"),
                          &err);
    CHECK(rc2 == 1);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find("weight_decoder has shape") != std::string::npos);
  }
}

TEST_CASE("torchvision's resnet18 checkpoint is found in torch's hub cache") {
  testutil::TempDir d("hub");
  const char* oldTorch = std::getenv("TORCH_HOME");
  const char* oldHome = std::getenv("HOME");
  const char* oldXdg = std::getenv("XDG_CACHE_HOME");
  const std::string saveTorch = oldTorch ? oldTorch : "", saveHome = oldHome ? oldHome : "",
                    saveXdg = oldXdg ? oldXdg : "";
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", d.str("home").c_str(), 1);
  unsetenv("TORCH_HOME");
  CHECK(engine::findTorchvisionResnet18() == "");
  const std::string inHome = d.str("home/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth");
  engine::writeFileAtomic(inHome, "x");
  CHECK(engine::findTorchvisionResnet18() == inHome);
  const std::string inTorch = d.str("th/hub/checkpoints/resnet18-f37072fd.pth");
  engine::writeFileAtomic(inTorch, "x");
  setenv("TORCH_HOME", d.str("th").c_str(), 1);
  CHECK(engine::findTorchvisionResnet18() == inTorch);
  auto restore = [](const char* name, const char* old, const std::string& v) {
    if (old)
      setenv(name, v.c_str(), 1);
    else
      unsetenv(name);
  };
  restore("TORCH_HOME", oldTorch, saveTorch);
  restore("HOME", oldHome, saveHome);
  restore("XDG_CACHE_HOME", oldXdg, saveXdg);
}

TEST_CASE("exports: captioned grid, contact sheet, CSV, notes") {
  Fixture& fx = fixture();
  const std::string ws =
      importInto(fx.dir.str("export"), fx.f("emb_f32.pt"), fx.f("sae_ordered.pt"));
  engine::writeFileAtomic(
      ws + "/notes.json",
      R"({"format": 1, "notes": {"sparse/3": {"text": "reddish, \"warm\"", "updated": "2026-11-27T08:00:00Z"}}})");
  engine::JobContext ctx;
  const engine::ExportSource src = engine::loadExportSource(ws, ctx);
  CHECK(src.note(engine::FeatureKind::Sparse, 3) == "reddish, \"warm\"");

  engine::CardOptions opt;
  opt.cell = 48;
  const engine::Image card =
      engine::renderFeatureCard(src, engine::FeatureKind::Sparse, 3, engine::RankRule::Seed, opt);
  CHECK(card.channels == 4);
  CHECK(card.width == 4 * 48 + 5 * opt.pad);
  CHECK(card.height > card.width);  // a caption above the grid
  if (engine::exportFontAvailable()) {
    // The caption has light text pixels on the dark background.
    int light = 0;
    for (int y = 0; y < card.height - card.width; ++y)
      for (int x = 0; x < card.width; ++x)
        light += card.pixels[(static_cast<size_t>(y) * card.width + x) * 4] > 150;
    CHECK(light > 50);
  }
  CHECK(errorOf([&] {
          engine::renderFeatureCard(src, engine::FeatureKind::Dense, kD, engine::RankRule::Seed);
        }).find("out of range") != std::string::npos);

  const auto ids = engine::parseFeatureList("0-3,7", kF, "--features");
  CHECK(ids == std::vector<int64_t>{0, 1, 2, 3, 7});
  CHECK(errorOf([&] { engine::parseFeatureList("0-99", kF, "--features"); }).find("out of range") !=
        std::string::npos);
  const engine::Image sheet = engine::renderContactSheet(src, engine::FeatureKind::Sparse, ids,
                                                         engine::RankRule::Seed, 3, 16);
  CHECK(sheet.width > 3 * (4 * 16));
  CHECK(sheet.height > 2 * (4 * 16));

  const std::string csv = engine::featureStatsCsv(src);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 1 + kD + kF);
  CHECK(csv.rfind("kind,feature,active,", 0) == 0);
  CHECK(csv.find(",\"reddish, \"\"warm\"\"\"\n") != std::string::npos);

  const std::string md = engine::notesExport(src, false);
  CHECK(md.find("| sparse | 3 | reddish, \"warm\" | 2026-11-27T08:00:00Z |") != std::string::npos);
  const json nj = json::parse(engine::notesExport(src, true));
  CHECK(nj.size() == 1);
  CHECK(nj[0]["feature"] == 3);

  // And through the command line.
  REQUIRE(engine::fileExists(saescopeBinary()));
  std::string err;
  const std::string png = fx.dir.str("export/f3.png"), sheetPng = fx.dir.str("export/sheet.png"),
                    csvFile = fx.dir.str("export/features.csv");
  CHECK(shell(saescopeBinary() + " export --workspace " + ws + " --grid 3 --kind sparse --out " +
                  png + " --contact-sheet " + sheetPng + " --features 0-7 --csv " + csvFile,
              &err) == 0);
  CHECK(engine::decodeImage(png).width > 0);
  CHECK(engine::decodeImage(sheetPng).width > 0);
  CHECK(engine::readFileText(csvFile) == csv);
  CHECK(
      shell(saescopeBinary() + " export --workspace " + ws + " --grid 99 --kind dense --out " + png,
            &err) == 1);
  CHECK(err.find("out of range") != std::string::npos);
}
