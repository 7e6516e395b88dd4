#include "dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "error.h"
#include "fsutil.h"
#include "image.h"

namespace fs = std::filesystem;

namespace engine {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string baseName(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::vector<std::string> splitRow(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  const bool comma = line.find(',') != std::string::npos;
  for (char c : line) {
    const bool sep = comma ? c == ',' : (c == ' ' || c == '\t');
    if (sep) {
      if (comma || !cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur.push_back(c);
    }
  }
  if (comma || !cur.empty()) out.push_back(cur);
  for (auto& s : out) {
    while (!s.empty() && s.front() == ' ') s.erase(s.begin());
    while (!s.empty() && s.back() == ' ') s.pop_back();
  }
  return out;
}

// All files below `dir` in sorted(os.walk(dir, followlinks=True)) order, as paths relative to
// `root`. `depth` guards against folder-link cycles.
void walkSorted(const fs::path& root, const fs::path& dir, std::vector<std::string>& out) {
  std::vector<std::pair<std::string, fs::path>> dirs;  // (path string, path) of every folder
  std::vector<fs::path> stack{dir};
  while (!stack.empty()) {
    fs::path d = stack.back();
    stack.pop_back();
    if (dirs.size() > 1000000) break;
    dirs.emplace_back(d.string(), d);
    std::error_code ec;
    for (fs::directory_iterator it(d, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
      std::error_code ec2;
      if (it->is_directory(ec2) && dirs.size() + stack.size() < 1000000) {
        // A link back to an ancestor would loop forever: skip links whose target is above us.
        if (it->is_symlink(ec2)) {
          const fs::path target = fs::weakly_canonical(it->path(), ec2);
          const fs::path here = fs::weakly_canonical(d, ec2);
          const std::string t = target.string(), h = here.string();
          if (h.compare(0, t.size(), t) == 0) continue;
        }
        stack.push_back(it->path());
      }
    }
  }
  std::sort(dirs.begin(), dirs.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [name, d] : dirs) {
    std::vector<std::string> files;
    std::error_code ec;
    for (fs::directory_iterator it(d, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
      std::error_code ec2;
      if (!it->is_directory(ec2) && isImageFile(it->path().filename().string()))
        files.push_back(it->path().filename().string());
    }
    std::sort(files.begin(), files.end());
    const std::string rel = fs::relative(d, root).generic_string();
    for (const auto& f : files) out.push_back(rel == "." ? f : rel + "/" + f);
  }
}

}  // namespace

bool isImageFile(const std::string& name) {
  const size_t dot = name.find_last_of('.');
  if (dot == std::string::npos) return false;
  const std::string ext = lower(name.substr(dot));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".ppm" ||
         ext == ".pgm";
}

int64_t Attributes::rowForPath(const std::string& relPath) const {
  auto it = rowOf.find(baseName(relPath));
  return it == rowOf.end() ? -1 : it->second;
}

Attributes loadAttributes(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open attribute file " + path);
  Attributes a;
  std::string line;
  int64_t lineNo = 0;
  bool haveHeader = false;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.empty() || line == "\r") continue;
    std::vector<std::string> cells = splitRow(line);
    if (!haveHeader) {
      // The original list_attr_celeba.txt starts with the image count on its own line.
      if (cells.size() == 1 && std::all_of(cells[0].begin(), cells[0].end(), ::isdigit)) continue;
      if (!cells.empty() && (cells[0] == "image_id" || cells[0] == "filename" || cells[0].empty()))
        cells.erase(cells.begin());
      a.names = cells;
      haveHeader = true;
      continue;
    }
    if (cells.size() != a.names.size() + 1)
      throw Error(path + ":" + std::to_string(lineNo) + ": expected " +
                  std::to_string(a.names.size() + 1) + " columns, found " +
                  std::to_string(cells.size()));
    a.rowOf[cells[0]] = static_cast<int64_t>(a.imageIds.size());
    a.imageIds.push_back(cells[0]);
    for (size_t i = 1; i < cells.size(); ++i) {
      try {
        size_t used = 0;
        const float v = std::stof(cells[i], &used);
        if (used != cells[i].size()) throw std::invalid_argument("trailing");
        a.values.push_back(v);
      } catch (const std::exception&) {
        throw Error(path + ":" + std::to_string(lineNo) + ": column " + a.names[i - 1] +
                    ": not a number: '" + cells[i] + "'");
      }
    }
  }
  if (!haveHeader) throw Error(path + ": empty attribute file");
  a.binary.assign(a.names.size(), true);
  const size_t cols = a.names.size();
  for (size_t r = 0; r < a.imageIds.size(); ++r)
    for (size_t c = 0; c < cols; ++c) {
      const float v = a.values[r * cols + c];
      if (v != 1.f && v != -1.f) a.binary[c] = false;
    }
  return a;
}

std::string Dataset::absolutePath(int64_t i) const {
  return (fs::path(root) / paths[static_cast<size_t>(i)]).string();
}

Dataset scanDataset(const std::string& rootArg) {
  std::error_code ec;
  if (rootArg.empty()) throw Error("--data: no image folder given; pass --data DIR");
  if (!fs::is_directory(rootArg, ec))
    throw Error("--data " + rootArg + ": no such folder; pass a folder of images");
  const fs::path root = fs::canonical(rootArg, ec);
  Dataset d;
  d.root = root.string();
  d.layout = "folder";

  // Images directly in root first, then ImageFolder's classes in sorted order.
  std::vector<std::string> classes;
  std::vector<std::string> top;
  for (fs::directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    const std::string name = it->path().filename().string();
    if (it->is_directory(ec2)) {
      if (!name.empty() && name[0] != '.') classes.push_back(name);
    } else if (isImageFile(name)) {
      top.push_back(name);
    }
  }
  if (ec) throw Error("--data " + rootArg + ": cannot list folder: " + ec.message());
  std::sort(top.begin(), top.end());
  std::sort(classes.begin(), classes.end());
  d.paths = top;
  for (const auto& c : classes) walkSorted(root, root / c, d.paths);
  if (d.paths.empty())
    throw Error("--data " + rootArg +
                ": no images found (looked for .jpg .jpeg .png .bmp .ppm .pgm, recursively)");

  // CelebA (Kaggle or original layout), or its attribute files next to / above the images.
  for (fs::path p = root, stop = root.parent_path().parent_path(); ; p = p.parent_path()) {
    for (const char* name : {"list_attr_celeba.csv", "list_attr_celeba.txt"})
      if (d.attributesFile.empty() && fs::is_regular_file(p / name, ec))
        d.attributesFile = (p / name).string();
    for (const char* name : {"list_eval_partition.csv", "list_eval_partition.txt"})
      if (d.partitionFile.empty() && fs::is_regular_file(p / name, ec))
        d.partitionFile = (p / name).string();
    if (p == stop || p == p.parent_path()) break;
  }
  if (fs::is_directory(root / "img_align_celeba", ec) && !d.attributesFile.empty())
    d.layout = "celeba";
  return d;
}

Dataset datasetFromList(const std::string& root, std::vector<std::string> paths) {
  Dataset d;
  d.root = root;
  d.paths = std::move(paths);
  d.layout = "list";
  return d;
}

void loadImageTensor(const std::string& path, int size, float* dst) {
  const Image img = decodeImage(path);
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  // An image of the model's size is written straight into the batch. Otherwise its planes go to a
  // buffer kept per thread: a fresh one for every image (600 KB at 224 px) was a page fault per
  // 4 KB, and those serialise the loader's threads (on a 16-core GPU machine the loader gave 2,330
  // images/s with fresh buffers, 18,556 with this, the reused batches and engine::keepFreedMemory).
  thread_local std::vector<float> scratch;
  const bool same = img.width == size && img.height == size;
  if (!same) scratch.resize(plane * 3);
  float* chw = same ? dst : scratch.data();
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) chw[c * plane + i] = img.pixels[i * 3 + c] * (1.0f / 255.0f);
  if (!same) resizeChwFloat(chw, 3, img.height, img.width, dst, size, size);
}

// ---------------------------------------------------------------------------------------------
// BatchLoader

BatchLoader::BatchLoader(const Dataset& data, const LoaderConfig& cfg) : m_data(data), m_cfg(cfg) {
  int64_t n = data.size();
  if (cfg.limit > 0) n = std::min(n, cfg.limit);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (cfg.shuffle) {
    // Fisher–Yates with an explicit generator: the same order on every platform for a seed.
    std::mt19937_64 rng(cfg.seed * 1000003ULL + static_cast<uint64_t>(cfg.epoch) + 1);
    for (int64_t i = n - 1; i > 0; --i) {
      const uint64_t bound = static_cast<uint64_t>(i) + 1;
      const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
      uint64_t r;
      do r = rng(); while (r >= limit);
      std::swap(order[i], order[static_cast<int64_t>(r % bound)]);
    }
  }
  const int64_t bs = std::max(1, cfg.batchSize);
  for (int64_t s = 0; s < n; s += bs) {
    const int64_t e = std::min(n, s + bs);
    if (cfg.dropLast && e - s < bs) break;
    m_batches.emplace_back(order.begin() + s, order.begin() + e);
    m_numImages += e - s;
  }
  int threads = cfg.threads > 0 ? cfg.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, threads);
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_nextToHand = m_nextToSchedule = std::clamp<int64_t>(cfg.startBatch, 0, numBatches());
    const int64_t ahead = m_nextToHand + std::max(1, cfg.prefetchBatches);
    while (m_nextToSchedule < ahead && scheduleNextLocked()) {
    }
  }
  for (int t = 0; t < threads; ++t) m_threads.emplace_back([this] { workerLoop(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
  }
  m_cvWork.notify_all();
  for (auto& t : m_threads) t.join();
}

bool BatchLoader::scheduleNextLocked() {
  if (m_nextToSchedule >= numBatches()) return false;
  const int64_t b = m_nextToSchedule++;
  auto slot = std::make_shared<Slot>();
  const int sz = m_cfg.imageSize;
  slot->batch.indices = m_batches[b];
  slot->batch.size = static_cast<int>(m_batches[b].size());
  if (!m_spare.empty()) {  // a buffer handed back by next(): its pages are already mapped
    slot->batch.pixels = std::move(m_spare.back());
    m_spare.pop_back();
  }
  slot->batch.pixels.resize(static_cast<size_t>(slot->batch.size) * 3 * sz * sz);
  slot->remaining = slot->batch.size;
  m_slots[b] = slot;
  for (int i = 0; i < slot->batch.size; ++i) m_queue.emplace_back(b, i);
  return true;
}

void BatchLoader::workerLoop() {
  const int sz = m_cfg.imageSize;
  const size_t per = static_cast<size_t>(3) * sz * sz;
  for (;;) {
    std::shared_ptr<Slot> slot;
    int pos = 0;
    {
      std::unique_lock<std::mutex> lock(m_mutex);
      m_cvWork.wait(lock, [&] { return m_stop || !m_queue.empty(); });
      if (m_stop) return;
      const auto item = m_queue.front();
      m_queue.pop_front();
      slot = m_slots.at(item.first);
      pos = item.second;
    }
    std::string failure;
    const int64_t row = slot->batch.indices[pos];
    try {
      loadImageTensor(m_data.absolutePath(row), sz, slot->batch.pixels.data() + per * pos);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    bool done = false;
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      if (!failure.empty()) slot->batch.failures.emplace_back(row, failure);
      done = --slot->remaining == 0;
      slot->ready = done;
    }
    if (done) m_cvReady.notify_all();
  }
}

bool BatchLoader::next(Batch& out) {
  std::shared_ptr<Slot> slot;
  std::vector<float> previous = std::move(out.pixels);
  {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (previous.capacity() > 0 && m_spare.size() < 2) m_spare.push_back(std::move(previous));
    if (m_nextToHand >= numBatches()) return false;
    const int64_t b = m_nextToHand;
    slot = m_slots.at(b);
    m_cvReady.wait(lock, [&] { return slot->ready; });
    m_slots.erase(b);
    ++m_nextToHand;
    scheduleNextLocked();
  }
  m_cvWork.notify_all();
  out = std::move(slot->batch);
  if (!out.failures.empty()) {
    // Drop the images that failed, keeping the order of the rest.
    const size_t per = static_cast<size_t>(3) * m_cfg.imageSize * m_cfg.imageSize;
    std::vector<int64_t> keep;
    size_t w = 0;
    for (int i = 0; i < out.size; ++i) {
      const int64_t row = out.indices[i];
      const bool failed = std::any_of(out.failures.begin(), out.failures.end(),
                                      [&](const auto& f) { return f.first == row; });
      if (failed) continue;
      if (w != static_cast<size_t>(i))
        std::copy_n(out.pixels.begin() + per * i, per, out.pixels.begin() + per * w);
      keep.push_back(row);
      ++w;
    }
    out.indices = keep;
    out.size = static_cast<int>(w);
    out.pixels.resize(per * w);
    std::sort(out.failures.begin(), out.failures.end());
  }
  return true;
}

}  // namespace engine
