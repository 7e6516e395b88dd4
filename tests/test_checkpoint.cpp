// Tests for engine/checkpoint and engine/npy. Files written by Python's torch and numpy are the
// oracle (tests/python/checkpoint_oracle.py), in both directions.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/npy.h"
#include "test_helpers.h"

using engine::DType;
using engine::StateDict;
using engine::TensorData;
using nlohmann::json;

namespace {

// --- fixtures written once per run by the Python oracle

struct Fixtures {
  testutil::TempDir dir{"ckpt"};
  int rc = -1;
  json expect;
  std::vector<uint8_t> blob;
  std::string path(const std::string& f) const { return dir.str(f); }
};

const Fixtures& fixtures() {
  static Fixtures f;
  static bool done = false;
  if (!done) {
    done = true;
    f.rc = testutil::runPython(testutil::pyScript("checkpoint_oracle.py"), "write " + f.dir.str());
    if (f.rc == 0) {
      f.expect = json::parse(engine::readFileText(f.path("expect.json")));
      f.blob = engine::readFileBytes(f.path("expect.bin"));
    }
  }
  REQUIRE(f.rc == 0);
  return f;
}

std::vector<int64_t> shapeOf(const json& j) {
  return j.get<std::vector<int64_t>>();
}

// Compares `sd` with the oracle's entries for `file`, exactly (bytes).
void checkMatches(const StateDict& sd, const std::string& file) {
  const Fixtures& f = fixtures();
  const json& entries = f.expect["fixtures"][file];
  INFO("fixture " << file);
  REQUIRE(sd.size() == entries.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    const json& e = entries[i];
    const TensorData& t = sd[i].second;
    INFO("entry " << e["name"].get<std::string>());
    CHECK(sd[i].first == e["name"].get<std::string>());
    CHECK(std::string(engine::dtypeName(t.dtype)) == e["dtype"].get<std::string>());
    CHECK(t.shape == shapeOf(e["shape"]));
    const size_t off = e["offset"].get<size_t>(), n = e["nbytes"].get<size_t>();
    REQUIRE(t.bytes.size() == n);
    if (n > 0) CHECK(std::memcmp(t.bytes.data(), f.blob.data() + off, n) == 0);
  }
}

// The message of the engine::Error that `fn` throws; "<no error>" or "<other: ...>" otherwise.
std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const engine::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<other: ") + e.what() + ">";
  }
  return "<no error>";
}

// Outcome of reading malformed bytes: 0 returned, 1 engine::Error, 2 anything else.
int outcome(const uint8_t* data, size_t size) {
  try {
    engine::readTensorFileFromMemory(data, size, "mem.bin");
    return 0;
  } catch (const engine::Error& e) {
    const std::string m = e.what();
    if (m.find("mem.bin") == std::string::npos || m.find('\n') != std::string::npos) return 2;
    return 1;
  } catch (...) {
    return 2;
  }
}

// --- the deterministic pattern both sides compute (pattern() in checkpoint_oracle.py)

uint16_t floatToHalfExact(float f) {  // exact for the pattern's values (k/8, |k| <= 50)
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint16_t sign = uint16_t((b >> 16) & 0x8000u);
  if ((b & 0x7fffffffu) == 0) return sign;
  const int exp = int((b >> 23) & 0xff) - 127 + 15;
  return uint16_t(sign | (exp << 10) | ((b >> 13) & 0x3ffu));
}

TensorData patternTensor(DType dtype, std::vector<int64_t> shape, int salt) {
  TensorData t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const int64_t n = t.numel();
  t.bytes.resize(size_t(n) * engine::dtypeSize(dtype));
  uint8_t* p = t.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = (i * 37 + salt) % 101;
    const int64_t s = v - 50;
    const float f = float(s) / 8.0f;
    switch (dtype) {
      case DType::Float32:
        std::memcpy(p + 4 * i, &f, 4);
        break;
      case DType::Float64: {
        const double d = double(s) / 8.0;
        std::memcpy(p + 8 * i, &d, 8);
        break;
      }
      case DType::Float16: {
        const uint16_t h = floatToHalfExact(f);
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
      case DType::BFloat16: {
        uint32_t b;
        std::memcpy(&b, &f, 4);
        const uint16_t h = uint16_t(b >> 16);
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
      case DType::Int64:
        std::memcpy(p + 8 * i, &s, 8);
        break;
      case DType::Int32: {
        const int32_t x = int32_t(s);
        std::memcpy(p + 4 * i, &x, 4);
        break;
      }
      case DType::Int16: {
        const int16_t x = int16_t(s);
        std::memcpy(p + 2 * i, &x, 2);
        break;
      }
      case DType::Int8:
        p[i] = uint8_t(int8_t(s));
        break;
      case DType::UInt8:
        p[i] = uint8_t(v);
        break;
      case DType::Bool:
        p[i] = (i + salt) % 3 == 0;
        break;
    }
  }
  return t;
}

struct Pattern {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  int salt;
};

std::vector<Pattern> patternSpecs() {
  return {
      {"conv1.weight", DType::Float32, {4, 3, 3, 3}, 1},
      {"bn1.running_mean", DType::Float32, {4}, 2},
      {"bn1.num_batches_tracked", DType::Int64, {}, 3},
      {"half", DType::Float16, {5, 7}, 4},
      {"bf16", DType::BFloat16, {3, 2}, 5},
      {"double", DType::Float64, {2, 2, 2}, 6},
      {"i64", DType::Int64, {9}, 7},
      {"i32", DType::Int32, {6}, 8},
      {"i16", DType::Int16, {3}, 9},
      {"i8", DType::Int8, {4}, 10},
      {"u8", DType::UInt8, {10}, 11},
      {"mask", DType::Bool, {7}, 12},
      {"big", DType::Float32, {300, 250}, 13},
      {"empty", DType::Float32, {0, 4}, 14},
      {"wide_empty", DType::Float32, {3000000000LL, 0}, 15},
      {"wide_empty_t", DType::Float32, {0, 3000000000LL}, 16},
      {"f32_scalar", DType::Float32, {}, 17},
      {"unicod\xc3\xa9.weight", DType::Float32, {2}, 18},
  };
}

StateDict patternStateDict() {
  StateDict sd;
  for (const Pattern& p : patternSpecs())
    sd.emplace_back(p.name, patternTensor(p.dtype, p.shape, p.salt));
  return sd;
}

json manifestEntry(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                   int salt) {
  return json{
      {"name", name}, {"dtype", engine::dtypeName(dtype)}, {"shape", shape}, {"salt", salt}};
}

bool sameTensor(const TensorData& a, const TensorData& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}

std::string npyBytes(const std::string& header, const std::string& data, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += char(major);
  out += '\0';
  if (major == 1) {
    out += char(header.size() & 0xff);
    out += char(header.size() >> 8);
  } else {
    for (int k = 0; k < 4; ++k) out += char((header.size() >> (8 * k)) & 0xff);
  }
  return out + header + data;
}

std::string safetensorsBytes(const std::string& header, const std::string& data) {
  std::string out;
  for (int k = 0; k < 8; ++k) out += char((uint64_t(header.size()) >> (8 * k)) & 0xff);
  return out + header + data;
}

StateDict fromString(const std::string& s) {
  return engine::readTensorFileFromMemory(s.data(), s.size(), "mem.bin");
}

}  // namespace

// =================================================================================================
// Reading what Python wrote
// =================================================================================================

TEST_CASE("readTorchCheckpoint reads torch.save files exactly") {
  const Fixtures& f = fixtures();
  int n = 0;
  for (const auto& [file, entries] : f.expect["fixtures"].items()) {
    if (file.size() < 3 || file.substr(file.size() - 3) != ".pt") continue;
    CAPTURE(file);
    checkMatches(engine::readTorchCheckpoint(f.path(file)), file);
    checkMatches(engine::readTensorFile(f.path(file)), file);
    ++n;
  }
  // mixed, proto4, legacy, zip64, archive/ prefix, resnet18, plain dict, single tensor, two
  // training checkpoints, an empty state_dict, a crafted one with an unknown class, small, and
  // a hand-made legacy file with storage views.
  CHECK(n == 14);
}

TEST_CASE("readTorchCheckpoint: views, strides and dtypes of the mixed state_dict") {
  const Fixtures& f = fixtures();
  const StateDict sd = engine::readTorchCheckpoint(f.path("mixed.pt"));
  const TensorData* base = engine::findTensor(sd, "base");
  const TensorData* tr = engine::findTensor(sd, "transposed");
  const TensorData* rows = engine::findTensor(sd, "rows_view");
  REQUIRE(base);
  REQUIRE(tr);
  REQUIRE(rows);
  CHECK(tr->shape == std::vector<int64_t>{6, 4});
  const auto b = base->toFloat(), t = tr->toFloat(), r = rows->toFloat();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j) CHECK(t[size_t(j * 4 + i)] == b[size_t(i * 6 + j)]);
  CHECK(rows->shape == std::vector<int64_t>{3, 6});
  for (size_t k = 0; k < r.size(); ++k) CHECK(r[k] == b[k + 6]);
  const TensorData* s = engine::findTensor(sd, "i64_scalar");
  REQUIRE(s);
  CHECK(s->shape.empty());
  int64_t v = 0;
  std::memcpy(&v, s->bytes.data(), 8);
  CHECK(v == 123456789012LL);
}

TEST_CASE("readNpy reads numpy files, Fortran order transposed") {
  const Fixtures& f = fixtures();
  int n = 0;
  for (const auto& [file, entries] : f.expect["fixtures"].items()) {
    if (file.size() < 4 || file.substr(file.size() - 4) != ".npy") continue;
    CAPTURE(file);
    checkMatches({{"", engine::readNpy(f.path(file))}}, file);
    checkMatches(engine::readTensorFile(f.path(file)), file);
    const engine::NpyInfo info = engine::readNpyHeader(f.path(file));
    CHECK(info.shape == shapeOf(entries[0]["shape"]));
    CHECK(info.fortranOrder == (file.rfind("fortran", 0) == 0));
    ++n;
  }
  CHECK(n == 15);
}

TEST_CASE("readSafetensors reads a hand-written safetensors file") {
  const Fixtures& f = fixtures();
  checkMatches(engine::readSafetensors(f.path("tensors.safetensors")), "tensors.safetensors");
  checkMatches(engine::readTensorFile(f.path("tensors.safetensors")), "tensors.safetensors");
}

TEST_CASE("readNpyRows streams rows of a numpy file") {
  const Fixtures& f = fixtures();
  const std::string p = f.path("f4.npy");
  const engine::NpyInfo info = engine::readNpyHeader(p);
  REQUIRE(info.shape == std::vector<int64_t>{3, 5});
  CHECK(info.dtype == DType::Float32);
  const TensorData all = engine::readNpy(p);
  std::vector<float> rows(10);
  engine::readNpyRows(p, info, 1, 2, rows.data());
  CHECK(std::memcmp(rows.data(), all.bytes.data() + 5 * 4, 40) == 0);
  engine::readNpyRows(p, info, 3, 0, rows.data());  // empty range at the end is fine
  CHECK_THROWS_AS(engine::readNpyRows(p, info, 2, 2, rows.data()), engine::Error);
  CHECK_THROWS_AS(engine::readNpyRows(p, info, -1, 1, rows.data()), engine::Error);
  const std::string fp = f.path("fortran2d.npy");
  CHECK_THROWS_AS(engine::readNpyRows(fp, engine::readNpyHeader(fp), 0, 1, rows.data()),
                  engine::Error);
}

// =================================================================================================
// Writing what Python reads
// =================================================================================================

TEST_CASE("writeTorchCheckpoint, writeNpy and NpyRowWriter output loads in torch and numpy") {
  const Fixtures& f = fixtures();
  testutil::TempDir dir("ckpt-out");
  json manifest = json::array();

  const StateDict sd = patternStateDict();
  json entries = json::array();
  for (const Pattern& p : patternSpecs())
    entries.push_back(manifestEntry(p.name, p.dtype, p.shape, p.salt));
  engine::writeTorchCheckpoint(dir.str("cpp_pattern.pt"), sd);
  manifest.push_back({{"file", "cpp_pattern.pt"}, {"kind", "torch"}, {"entries", entries}});
  const std::string z64 = engine::detail::torchCheckpointBytes(sd, true);
  engine::writeFileAtomic(dir.str("cpp_zip64.pt"), z64);
  manifest.push_back({{"file", "cpp_zip64.pt"}, {"kind", "torch"}, {"entries", entries}});
  engine::writeTorchCheckpoint(dir.str("cpp_empty.pt"), {});
  manifest.push_back({{"file", "cpp_empty.pt"}, {"kind", "torch"}, {"entries", json::array()}});

  // Our own reader agrees with what we wrote.
  for (const std::string file : {"cpp_pattern.pt", "cpp_zip64.pt"}) {
    CAPTURE(file);
    const StateDict back = engine::readTorchCheckpoint(dir.str(file));
    REQUIRE(back.size() == sd.size());
    for (size_t i = 0; i < sd.size(); ++i) {
      CHECK(back[i].first == sd[i].first);
      CHECK(sameTensor(back[i].second, sd[i].second));
    }
  }
  CHECK(engine::readTorchCheckpoint(dir.str("cpp_empty.pt")).empty());

  int salt = 30;
  for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::Int64, DType::Int32,
                   DType::Int16, DType::Int8, DType::UInt8, DType::Bool}) {
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{}, std::vector<int64_t>{7}, std::vector<int64_t>{3, 4, 5}}) {
      const std::string file = "cpp_" + std::string(engine::dtypeName(dt)) + "_" +
                               std::to_string(shape.size()) + "d.npy";
      const TensorData t = patternTensor(dt, shape, salt);
      engine::writeNpy(dir.str(file), t);
      CHECK(sameTensor(engine::readNpy(dir.str(file)), t));
      manifest.push_back({{"file", file},
                          {"kind", "npy"},
                          {"entries", json::array({manifestEntry("", dt, shape, salt)})}});
      ++salt;
    }
  }
  {  // 1000 x 17 float32 and 50 x 3 int64, streamed in uneven chunks
    const TensorData big = patternTensor(DType::Float32, {1000, 17}, 77);
    engine::NpyRowWriter w(dir.str("cpp_rows.npy"), DType::Float32, 17, 1000);
    for (int64_t r = 0; r < 1000;) {
      const int64_t n = std::min<int64_t>(1000 - r, 1 + r % 97);
      w.append(big.bytes.data() + r * 17 * 4, n);
      r += n;
    }
    CHECK(w.rowsWritten() == 1000);
    w.commit();
    manifest.push_back(
        {{"file", "cpp_rows.npy"},
         {"kind", "npy"},
         {"entries", json::array({manifestEntry("", DType::Float32, {1000, 17}, 77)})}});
    CHECK(sameTensor(engine::readNpy(dir.str("cpp_rows.npy")), big));
    const TensorData ints = patternTensor(DType::Int64, {50, 3}, 78);
    engine::NpyRowWriter wi(dir.str("cpp_rows_i64.npy"), DType::Int64, 3, 50);
    wi.append(ints.bytes.data(), 50);
    wi.commit();
    manifest.push_back({{"file", "cpp_rows_i64.npy"},
                        {"kind", "npy"},
                        {"entries", json::array({manifestEntry("", DType::Int64, {50, 3}, 78)})}});
  }
  engine::writeFileAtomic(dir.str("cpp_manifest.json"), manifest.dump(1));
  std::string out;
  const int rc = testutil::runPython(testutil::pyScript("checkpoint_oracle.py"),
                                     "check-written " + dir.str(), &out);
  INFO(out);
  CHECK(rc == 0);
  (void)f;
}

TEST_CASE("torch.save files survive a C++ read/write round trip (torch.load compares)") {
  const Fixtures& f = fixtures();
  testutil::TempDir dir("ckpt-rt");
  std::string args = "check-same";
  for (const char* file :
       {"mixed.pt", "mixed_proto4.pt", "mixed_legacy.pt", "mixed_zip64.pt", "plain_dict.pt",
        "single.pt", "small.pt", "crafted_ok.pt", "legacy_views.pt"}) {
    const std::string out = dir.str(std::string("rt_") + file);
    engine::writeTorchCheckpoint(out, engine::readTorchCheckpoint(f.path(file)));
    args += " " + f.path(file) + " " + out;
  }
  std::string log;
  const int rc = testutil::runPython(testutil::pyScript("checkpoint_oracle.py"), args, &log);
  INFO(log);
  CHECK(rc == 0);
}

TEST_CASE("torchvision resnet18 state_dict: Python save, C++ read and write, strict load") {
  const Fixtures& f = fixtures();
  testutil::TempDir dir("ckpt-resnet");
  const StateDict sd = engine::readTorchCheckpoint(f.path("resnet18.pt"));
  CHECK(sd.size() == 122);
  const TensorData* nbt = engine::findTensor(sd, "bn1.num_batches_tracked");
  REQUIRE(nbt);
  CHECK(nbt->dtype == DType::Int64);
  CHECK(nbt->shape.empty());
  const TensorData* conv = engine::findTensor(sd, "conv1.weight");
  REQUIRE(conv);
  CHECK(conv->shape == std::vector<int64_t>{64, 3, 7, 7});
  engine::writeTorchCheckpoint(dir.str("cpp_resnet18.pt"), sd);
  std::string log;
  const int rc = testutil::runPython(
      testutil::pyScript("checkpoint_oracle.py"),
      "resnet-strict " + dir.str("cpp_resnet18.pt") + " " + f.path("resnet18.pt"), &log);
  INFO(log);
  CHECK(rc == 0);
}

TEST_CASE("NpyRowWriter: wrong row counts, no commit, no temporary left behind") {
  testutil::TempDir dir("npyrows");
  const std::string p = dir.str("sub/e.npy");
  const TensorData t = patternTensor(DType::Float32, {4, 2}, 1);
  {
    engine::NpyRowWriter w(p, DType::Float32, 2, 4);
    w.append(t.bytes.data(), 3);
    CHECK_THROWS_AS(w.append(t.bytes.data(), 2), engine::Error);  // would make 5 rows
    CHECK_THROWS_AS(w.commit(), engine::Error);                   // only 3 rows
  }                                                               // destroyed without commit
  CHECK_FALSE(std::filesystem::exists(p));
  CHECK(std::filesystem::is_empty(dir.str("sub")));

  engine::writeNpy(p, t);  // an old complete file survives an abandoned writer
  {
    engine::NpyRowWriter w(p, DType::Float32, 2, 4);
    w.append(t.bytes.data(), 1);
  }
  CHECK(sameTensor(engine::readNpy(p), t));
  {
    engine::NpyRowWriter w(p, DType::Float32, 2, 0);  // zero rows is a valid array
    w.commit();
    CHECK_THROWS_AS(w.commit(), engine::Error);
  }
  const TensorData z = engine::readNpy(p);
  CHECK(z.shape == std::vector<int64_t>{0, 2});
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.str("sub"))) (void)e, ++files;
  CHECK(files == 1);
  CHECK_THROWS_AS(engine::NpyRowWriter(dir.str("x.npy"), DType::BFloat16, 2, 2), engine::Error);
  CHECK_THROWS_AS(engine::NpyRowWriter(dir.str("x.npy"), DType::Float32, -1, 2), engine::Error);
}

TEST_CASE("writers reject inconsistent tensors with a message naming the file") {
  testutil::TempDir dir("ckpt-bad-write");
  TensorData bad = patternTensor(DType::Float32, {2, 3}, 0);
  bad.bytes.pop_back();
  const std::string p = dir.str("bad.pt");
  std::string m = errorOf([&] { engine::writeTorchCheckpoint(p, {{"w", bad}}); });
  CHECK(m.find(p) != std::string::npos);
  CHECK(m.find("'w'") != std::string::npos);
  const TensorData ok = patternTensor(DType::Float32, {2}, 0);
  m = errorOf([&] { engine::writeTorchCheckpoint(p, {{"w", ok}, {"w", ok}}); });
  CHECK(m.find("twice") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(p));
  m = errorOf([&] { engine::writeNpy(dir.str("b.npy"), patternTensor(DType::BFloat16, {2}, 0)); });
  CHECK(m.find("bfloat16") != std::string::npos);
  CHECK_THROWS_AS(engine::writeNpy(dir.str("c.npy"), bad), engine::Error);
}

// =================================================================================================
// Malformed input: engine::Error naming the file, never a crash
// =================================================================================================

TEST_CASE("malformed fixtures throw engine::Error with a one-line message naming the file") {
  const Fixtures& f = fixtures();
  int n = 0;
  for (const auto& [file, want] : f.expect["errors"].items()) {
    CAPTURE(file);
    const std::string p = f.path(file);
    const std::string m = errorOf([&] { engine::readTensorFile(p); });
    CAPTURE(m);
    CHECK(m.rfind(p, 0) == 0);  // starts with the path
    CHECK(m.find(want.get<std::string>()) != std::string::npos);
    CHECK(m.find('\n') == std::string::npos);
    ++n;
  }
  CHECK(n >= 20);
  CHECK_THROWS_AS(engine::readTorchCheckpoint(f.path("f4.npy")), engine::Error);
  CHECK_THROWS_AS(engine::readSafetensors(f.path("mixed.pt")), engine::Error);
  CHECK_THROWS_AS(engine::readNpy(f.path("mixed.pt")), engine::Error);
  CHECK_THROWS_AS(engine::readTensorFile(f.path("no-such-file.pt")), engine::Error);
  CHECK_THROWS_AS(engine::readTensorFile(f.dir.str()), engine::Error);  // a folder
}

TEST_CASE("truncated copies of valid files throw engine::Error at every length tried") {
  const Fixtures& f = fixtures();
  for (const std::string file : {"small.pt", "mixed.pt", "mixed_legacy.pt", "mixed_zip64.pt",
                                 "tensors.safetensors", "f4.npy", "fortran.npy", "v3.npy"}) {
    CAPTURE(file);
    const std::vector<uint8_t> bytes = engine::readFileBytes(f.path(file));
    const size_t size = bytes.size();
    int bad = 0, tried = 0;
    size_t firstBad = 0;
    for (size_t len = 0; len < size;) {
      std::vector<uint8_t> copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
      if (outcome(copy.data(), copy.size()) != 1 && bad++ == 0) firstBad = len;
      ++tried;
      // Every length near the start and the end, a stride through the middle.
      len += (len < 3000 || len + 3000 > size) ? 1 : 331;
    }
    CAPTURE(firstBad);
    CHECK(bad == 0);
    CHECK(tried > 100);
  }
  // On disk, too.
  testutil::TempDir dir("ckpt-trunc");
  const std::vector<uint8_t> bytes = engine::readFileBytes(f.path("small.pt"));
  for (size_t len : {size_t(0), size_t(1), size_t(4), bytes.size() / 2, bytes.size() - 1}) {
    const std::string p = dir.str("t" + std::to_string(len) + ".pt");
    engine::writeFileAtomic(p, bytes.data(), len);
    const std::string m = errorOf([&] { engine::readTorchCheckpoint(p); });
    CHECK(m.rfind(p, 0) == 0);
  }
}

TEST_CASE("random bytes and corrupted valid files never crash the readers") {
  const Fixtures& f = fixtures();
  std::mt19937 rng(42);
  int other = 0;
  for (int i = 0; i < 3000; ++i) {  // plain noise
    std::vector<uint8_t> b(rng() % 3000);
    for (auto& c : b) c = uint8_t(rng());
    if (outcome(b.data(), b.size()) != 1) ++other;
  }
  CHECK(other == 0);

  // Noise behind each format's magic: returns or throws engine::Error.
  const std::string prefixes[] = {
      std::string("PK\x03\x04", 4),
      std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14),
      std::string("\x93NUMPY\x01\x00", 8), std::string("\x40\x00\x00\x00\x00\x00\x00\x00{", 9)};
  int crashes = 0;
  for (const std::string& pre : prefixes) {
    for (int i = 0; i < 1000; ++i) {
      std::vector<uint8_t> b(pre.begin(), pre.end());
      const size_t n = rng() % 600;
      for (size_t k = 0; k < n; ++k) b.push_back(uint8_t(rng()));
      if (outcome(b.data(), b.size()) == 2) ++crashes;
    }
  }
  CHECK(crashes == 0);

  // Single-byte corruption of whole small files: every byte of the zip (structure, CRCs,
  // pickle), the legacy file's pickles and data, a safetensors header and an .npy header.
  for (const std::string file : {"small.pt", "mixed_legacy.pt", "tensors.safetensors", "f4.npy"}) {
    CAPTURE(file);
    std::vector<uint8_t> b = engine::readFileBytes(f.path(file));
    const size_t limit = std::min<size_t>(b.size(), 6000);
    int bad = 0;
    size_t firstBad = 0;
    for (size_t pos = 0; pos < limit; ++pos) {
      const uint8_t orig = b[pos];
      for (uint8_t v :
           {uint8_t(orig ^ 0x01), uint8_t(orig ^ 0x80), uint8_t(rng()), uint8_t(0xff)}) {
        b[pos] = v;
        if (outcome(b.data(), b.size()) == 2 && bad++ == 0) firstBad = pos;
      }
      b[pos] = orig;
    }
    CAPTURE(firstBad);
    CHECK(bad == 0);
  }

  // Pickle mutants, re-zipped by Python with correct CRCs so the pickle VM sees every one.
  const int count = f.expect["fixtures"]["mutants"][0]["shape"][0].get<int>();
  CHECK(count > 500);
  int loaded = 0, rejected = 0, wrong = 0;
  for (int i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "mutants/%05d.pt", i);
    const std::string p = f.path(name);
    try {
      engine::readTorchCheckpoint(p);
      ++loaded;
    } catch (const engine::Error& e) {
      const std::string m = e.what();
      if (m.rfind(p, 0) != 0 || m.find('\n') != std::string::npos) ++wrong;
      ++rejected;
    } catch (...) {
      ++wrong;
    }
  }
  CHECK(wrong == 0);
  CHECK(rejected > count / 4);  // most mutants of a pickle are invalid
  CHECK(loaded > 0);            // some (e.g. a changed digit of a value) are not
}

TEST_CASE("malformed .npy headers and safetensors headers") {
  const std::string f4(4 * 6, '\0');
  const std::string good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  CHECK(fromString(npyBytes(good, f4)).at(0).second.shape == std::vector<int64_t>{2, 3});
  CHECK(fromString(npyBytes(good, f4, 2)).at(0).second.shape == std::vector<int64_t>{2, 3});
  const std::pair<std::string, std::string> bad[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4.substr(1)},
      {"{'descr': '<f4', 'fortran_order': False}", f4},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", f4},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", f4},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999999999, ), }", f4},
      {"{'descr': '<u4', 'fortran_order': False, 'shape': (6,), }", f4},
      {"{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", f4},
      {"{'descr': '<f4', 'fortran_order': 'no', 'shape': (6,), }", f4},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((((6,),),),),),),),),),),), }",
       f4},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,", f4},
      {"['descr']", f4},
      {"", f4},
  };
  for (const auto& [header, data] : bad) {
    CAPTURE(header);
    const std::string m = errorOf([&] { fromString(npyBytes(header, data)); });
    CHECK(m.rfind("mem.bin: ", 0) == 0);
  }
  CHECK_THROWS_AS(fromString(npyBytes(good, f4, 9)), engine::Error);
  std::string hugeLen = npyBytes(good, f4);
  hugeLen[8] = hugeLen[9] = '\xff';
  CHECK_THROWS_AS(fromString(hugeLen), engine::Error);

  const std::string d8(8, '\0');
  CHECK(
      fromString(
          safetensorsBytes(
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":"y"}})",
              d8))
          .size() == 1);
  const std::string badSt[] = {
      R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",      // size mismatch
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",     // past the data
      R"({"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})",  // unsupported dtype
      R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[2]}})",
      R"({"a":[1,2]})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})",  // not JSON
  };
  for (const std::string& h : badSt) {
    CAPTURE(h);
    const std::string m = errorOf([&] { fromString(safetensorsBytes(h, d8)); });
    CHECK(m.rfind("mem.bin: ", 0) == 0);
  }
  std::string st =
      safetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8);
  st[7] = '\x7f';  // header length beyond the file
  CHECK_THROWS_AS(engine::readTensorFileFromMemory(st.data(), st.size(), "mem.bin"), engine::Error);
}
