// engine/demo_data.h — the built-in synthetic face data set (`saescope demo-data`).
//
// CelebA cannot be downloaded everywhere, so saescope ships a generator of face-like images whose
// visual factors are known. It writes CelebA's Kaggle layout, so the data set loader treats it
// exactly like CelebA, and the attribute CSV says which factors each image has, so tests and
// metrics can check that sparse features find them.
//
// Output for `cfg.out` = OUT:
//   OUT/img_align_celeba/img_align_celeba/000001.png ...   (1-based, 6 digits; .jpg for "jpg")
//   OUT/list_attr_celeba.csv     image_id,<demoAttributeNames()...>,<demoFactorNames()...>
//                                attributes as 1/-1 like CelebA, factors as decimal numbers
//   OUT/list_eval_partition.csv  image_id,partition  (0 train / 1 val / 2 test, ~80/10/10)
//   OUT/README.txt               what this is, the seed, count and size
//
// The output depends only on (seed, count, size, format): never on the thread count or machine
// load. Image i uses its own random stream seeded from (seed, i). PNGs come from a built-in
// encoder (unfiltered rows, fixed-Huffman deflate) that touches no process-global state.
//
// Thread-safety: every function is reentrant; generateDemoData() runs its own worker threads and
// returns after joining them. Concurrent calls must use different output folders.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "job.h"

namespace engine {

struct DemoDataConfig {
  std::string out;             // folder to create; must not exist or be empty
  int count = 2000;            // images, 1..999999
  int size = 64;               // square side in pixels, 16..1024
  uint64_t seed = 0;           // same seed, count, size and format -> byte-identical files
  std::string format = "png";  // "png" or "jpg" (quality 95)
  int threads = 0;             // worker threads; 0 = all cores
};

// The config as a JSON object (every field), for manifests.
nlohmann::json toJson(const DemoDataConfig& cfg);

// CelebA-named binary attributes (values 1/-1), in CSV column order.
std::vector<std::string> demoAttributeNames();

// Extra continuous or categorical factors, in CSV column order (after the attributes).
// skin_tone 0 (palest)..1 (darkest); hair_hue degrees; hair_length 0..1 (0 when bald; up to
// 0.35 short hair, above it hair down past the ears, the longer the higher);
// eye_color 0 brown, 1 blue, 2 green, 3 gray; face_width ~0.9..1.1; background_hue degrees;
// clutter = number of background shapes; rotation_deg = in-plane rotation of the face,
// counter-clockwise on screen (as PIL's Image.rotate), -20..20; scale 0.95..1.2 (1 = the face
// frame's [-1, 1] spans the image); offset_x, offset_y = face centre shift as a fraction of the
// image side (+x right, +y down), about ±0.06.
std::vector<std::string> demoFactorNames();

// Checks `cfg` and throws engine::Error naming the flag (--out, --count, --size, --format,
// --threads) when a value is out of range. generateDemoData() calls it first.
void validateDemoDataConfig(const DemoDataConfig& cfg);

// Writes the data set described above into cfg.out. Builds it in a sibling `OUT.tmp-<pid>`
// folder and renames that into place at the end, so OUT is either complete or absent. Reports
// progress as stage "demo-data", unit "images"; throws engine::Cancelled when ctx is stopped and
// engine::Error on bad config, an existing non-empty OUT or I/O failure (the temporary folder is
// removed in every failure case). Call from one thread (typically the job worker).
void generateDemoData(const DemoDataConfig& cfg, JobContext& ctx);

// One rendered image and its ground truth.
struct DemoFace {
  std::vector<uint8_t> rgb;               // RGB8, size x size, row-major, 3 * size * size bytes
  std::map<std::string, int> attributes;  // demoAttributeNames() -> 1 / -1
  std::map<std::string, double> factors;  // demoFactorNames() -> value
};

// Renders image `index` (0-based; file index + 1) of the data set with `seed` at `size` pixels.
// Pure function of its arguments; generateDemoData() writes exactly these pixels (PNG).
DemoFace renderDemoFace(uint64_t seed, int64_t index, int size);

// Maps a point of the face frame (u right, v down; the head spans about u in [-0.4, 0.4] and
// v in [-0.5, 0.5], the image spans [-1, 1] at scale 1) to pixel coordinates (x right, y down,
// pixel centres at i + 0.5) of a face with the given factors. Tests use it to probe regions.
void demoFaceToPixel(const std::map<std::string, double>& factors, int size, double u, double v,
                     double* x, double* y);

}  // namespace engine
