// ui/image_cache.h — images produced off the UI thread and kept as GL textures (LRU).
//
// A request names a key ("grid/sparse/seed/12", "large/1234") and a producer that makes the
// RGB(A) pixels on a loader thread (decode with engine::loadThumbnail, compose with
// engine::composeGrid, ...). Finished pixels wait in a hand-off list until the UI thread uploads
// them in uploadPending(), within a time budget per frame.
//
// Thread-safety: get(), request(), uploadPending(), evict and counters are UI thread only. The
// producers run on the pool's threads and must only read immutable data (shared_ptr<const ...>).
// The destructor drops queued requests and joins the pool.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/image.h"
#include "texture.h"

namespace ui {

class ImageCache {
 public:
  using Producer = std::function<engine::Image()>;

  // `threads` loader threads; at most `maxBytes` of textures kept (least recently used go first).
  ImageCache(int threads, size_t maxBytes);
  ~ImageCache();
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  // The texture for `key` if it is loaded (marks it used this frame), else nullptr.
  const Texture* get(const std::string& key);
  // get(); when absent and not yet queued, queues `produce`. Newest requests run first, so the
  // feature the user looks at now wins over ones skipped past.
  const Texture* request(const std::string& key, Producer produce);
  // Queues `produce` for `key` at low priority (prefetch) unless loaded or queued.
  void prefetch(const std::string& key, Producer produce);
  // Error message of a failed key ("" if none).
  std::string error(const std::string& key) const;
  bool pending(const std::string& key) const;
  // Requests queued or being produced, plus finished ones not yet uploaded.
  size_t pendingCount() const;

  // UI thread, once per frame after NewFrame: uploads finished images (at most `budgetMs` ms of
  // work unless `all`), then evicts beyond the byte budget. Returns how many were uploaded.
  int uploadPending(double budgetMs, bool all = false);
  // Forgets everything (new workspace): textures are retired, queued requests dropped.
  void clear();
  void beginFrame() { ++m_frame; }
  size_t textureCount() const { return m_entries.size(); }
  size_t textureBytes() const { return m_bytes; }

 private:
  struct Entry {
    Texture tex;
    uint64_t lastUsed = 0;
  };
  struct Job {
    std::string key;
    Producer produce;
    uint64_t generation;
  };
  struct Done {
    std::string key;
    engine::Image img;
    std::string error;
    uint64_t generation;
  };
  void enqueue(const std::string& key, Producer produce, bool front);
  void loop();
  void evict();

  // UI-thread state
  std::unordered_map<std::string, Entry> m_entries;
  std::map<std::string, std::string> m_errors;
  std::set<std::string> m_pending;
  size_t m_bytes = 0;
  size_t m_maxBytes;
  uint64_t m_frame = 0;

  // shared with the loader threads
  mutable std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<Job> m_queue;  // front: next to run
  std::vector<Done> m_done;
  uint64_t m_generation = 0;
  int m_busy = 0;
  bool m_quit = false;
  std::vector<std::thread> m_threads;
};

}  // namespace ui
