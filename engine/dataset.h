// engine/dataset.h — image folders in torchvision ImageFolder order, CelebA attributes, and a
// multi-threaded prefetching batch loader. No LibTorch.
//
// Thread-safety: Dataset and Attributes are immutable values once built. A BatchLoader is used by
// one consumer thread; it runs its own decoder threads internally.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace engine {

// Per-image attributes from a CelebA-style CSV (`image_id,<attr>,...`). Columns whose values are
// all -1/1 are binary attributes; the others are numeric factors.
struct Attributes {
  std::vector<std::string> names;  // column names without image_id
  std::vector<bool> binary;        // per column: all values in {-1, 1}
  std::vector<std::string> imageIds;
  std::vector<float> values;       // [imageIds.size(), names.size()], row-major
  std::map<std::string, int64_t> rowOf;  // image_id → row

  bool empty() const { return names.empty(); }
  // Row for an image path (matched by file name), or -1.
  int64_t rowForPath(const std::string& relPath) const;
  float value(int64_t row, size_t col) const { return values[row * names.size() + col]; }
};

// Parses a CelebA attribute CSV (comma- or whitespace-separated, as Kaggle's and the original
// list_attr_celeba.txt are). Throws engine::Error "<path>:<line>: ..." on malformed rows.
Attributes loadAttributes(const std::string& path);

struct Dataset {
  std::string root;                 // absolute, as given by the user after canonicalisation
  std::vector<std::string> paths;   // relative to root, in ImageFolder order
  std::string layout;               // "celeba" or "folder"
  std::string attributesFile;       // absolute path of the attribute CSV, or ""
  std::string partitionFile;        // list_eval_partition.csv, or ""

  std::string absolutePath(int64_t i) const;
  int64_t size() const { return static_cast<int64_t>(paths.size()); }
};

// True for the file extensions torchvision's ImageFolder accepts that stb can decode.
bool isImageFile(const std::string& name);

// Finds every image below `root` (following folder links) and sorts them as torchvision's
// ImageFolder does: class folders sorted, then sorted(os.walk(class)) with sorted file names.
// Images directly in `root` come first (ImageFolder would ignore them). Recognises CelebA's
// Kaggle layout (img_align_celeba/img_align_celeba/*.jpg + list_attr_celeba.csv).
// Throws engine::Error naming `root` when it is missing or holds no image.
Dataset scanDataset(const std::string& root);

// Rebuilds a Dataset from a workspace's recorded root and images.txt lines (no scan).
Dataset datasetFromList(const std::string& root, std::vector<std::string> paths);

struct LoaderConfig {
  int imageSize = 224;      // output is imageSize x imageSize
  int batchSize = 128;
  bool shuffle = false;
  uint64_t seed = 0;        // shuffle order for epoch e uses (seed, e)
  int epoch = 0;
  int threads = 0;          // decoder threads; 0 = all cores
  int prefetchBatches = 3;  // batches decoded ahead of the consumer
  bool dropLast = false;
  int64_t limit = 0;        // use only the first `limit` images (0 = all)
  int64_t startBatch = 0;   // skip the epoch's first batches without decoding them (resume)
};

// One batch: float32 pixels [B, 3, S, S] in [0, 1] (ToTensor semantics, channel-first).
struct Batch {
  std::vector<int64_t> indices;  // data set rows of the images in this batch, in order
  std::vector<float> pixels;     // B * 3 * S * S
  int size = 0;                  // B
  // Images that could not be decoded: (data set row, reason). They are left out of the batch.
  std::vector<std::pair<int64_t, std::string>> failures;
};

// Decodes and resizes batches on a pool of threads, `prefetchBatches` ahead of the consumer.
class BatchLoader {
 public:
  BatchLoader(const Dataset& data, const LoaderConfig& cfg);
  ~BatchLoader();  // stops and joins the decoder threads
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Next batch in order; false when the epoch is done. Blocks while the batch is decoded.
  // The pixel buffer `out` held is taken back and reused for a later batch (a fresh 150 MB buffer
  // per batch of 256 at 224 px is a page fault per 4 KB): nothing may point into it any more.
  bool next(Batch& out);
  int64_t numBatches() const { return static_cast<int64_t>(m_batches.size()); }
  int64_t numImages() const { return m_numImages; }

 private:
  void workerLoop();
  // Queues the next batch's images for decoding (m_mutex held); false when none is left.
  bool scheduleNextLocked();

  const Dataset& m_data;
  LoaderConfig m_cfg;
  std::vector<std::vector<int64_t>> m_batches;  // rows per batch
  int64_t m_numImages = 0;

  struct Slot {
    Batch batch;
    int remaining = 0;  // images still being decoded
    bool ready = false;
  };
  std::mutex m_mutex;
  std::condition_variable m_cvWork, m_cvReady;
  std::map<int64_t, std::shared_ptr<Slot>> m_slots;  // batch number → slot being filled
  int64_t m_nextToHand = 0;      // next batch number for next()
  int64_t m_nextToSchedule = 0;  // next batch number to schedule
  std::deque<std::pair<int64_t, int>> m_queue;  // (batch number, position) to decode
  std::vector<std::vector<float>> m_spare;      // pixel buffers handed back by next()
  bool m_stop = false;
  std::vector<std::thread> m_threads;
};

// Decodes the image at `path` into `dst` (3 * size * size floats, CHW in [0,1]); throws
// engine::Error on failure. The reference preprocessing: RGB, ToTensor, bilinear resize.
void loadImageTensor(const std::string& path, int size, float* dst);

}  // namespace engine
