#include "image_cache.h"

#include <GLFW/glfw3.h>

#include <algorithm>
#include <chrono>
#include <exception>

namespace ui {

namespace {
constexpr size_t kMaxQueued = 96;  // older requests beyond this are dropped (user skipped past)
}

ImageCache::ImageCache(int threads, size_t maxBytes) : m_maxBytes(maxBytes) {
  for (int i = 0; i < std::max(1, threads); ++i) m_threads.emplace_back([this] { loop(); });
}

ImageCache::~ImageCache() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_quit = true;
    m_queue.clear();
  }
  m_cv.notify_all();
  for (auto& t : m_threads) t.join();
}

const Texture* ImageCache::get(const std::string& key) {
  auto it = m_entries.find(key);
  if (it == m_entries.end()) return nullptr;
  it->second.lastUsed = m_frame;
  return &it->second.tex;
}

const Texture* ImageCache::request(const std::string& key, Producer produce) {
  if (const Texture* t = get(key)) return t;
  if (!m_pending.count(key) && !m_errors.count(key)) enqueue(key, std::move(produce), true);
  return nullptr;
}

void ImageCache::prefetch(const std::string& key, Producer produce) {
  if (m_entries.count(key) || m_pending.count(key) || m_errors.count(key)) return;
  enqueue(key, std::move(produce), false);
}

std::string ImageCache::error(const std::string& key) const {
  auto it = m_errors.find(key);
  return it == m_errors.end() ? std::string() : it->second;
}

bool ImageCache::pending(const std::string& key) const {
  return m_pending.count(key) > 0;
}

size_t ImageCache::pendingCount() const {
  return m_pending.size();
}

void ImageCache::enqueue(const std::string& key, Producer produce, bool front) {
  m_pending.insert(key);
  std::vector<std::string> dropped;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    Job job{key, std::move(produce), m_generation};
    if (front)
      m_queue.push_front(std::move(job));
    else
      m_queue.push_back(std::move(job));
    while (m_queue.size() > kMaxQueued) {
      dropped.push_back(m_queue.back().key);
      m_queue.pop_back();
    }
  }
  for (const auto& k : dropped) m_pending.erase(k);
  m_cv.notify_one();
}

void ImageCache::loop() {
  std::unique_lock<std::mutex> lock(m_mutex);
  for (;;) {
    m_cv.wait(lock, [this] { return m_quit || !m_queue.empty(); });
    if (m_quit) return;
    Job job = std::move(m_queue.front());
    m_queue.pop_front();
    ++m_busy;
    lock.unlock();
    Done done{job.key, {}, {}, job.generation};
    try {
      done.img = job.produce();
      if (done.img.empty()) done.error = "no image";
    } catch (const std::exception& e) {
      done.error = e.what();
    } catch (...) {
      done.error = "unknown error";
    }
    job.produce = nullptr;
    lock.lock();
    --m_busy;
    m_done.push_back(std::move(done));
    glfwPostEmptyEvent();  // wake the frame loop
  }
}

int ImageCache::uploadPending(double budgetMs, bool all) {
  const auto t0 = std::chrono::steady_clock::now();
  int uploaded = 0;
  for (;;) {
    Done d;
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      if (m_done.empty()) break;
      d = std::move(m_done.front());
      m_done.erase(m_done.begin());
      if (d.generation != m_generation) continue;  // made for a workspace since closed
    }
    m_pending.erase(d.key);
    if (!d.error.empty()) {
      m_errors[d.key] = d.error;
      continue;
    }
    Entry e;
    e.tex = Texture(d.img);
    e.lastUsed = m_frame;
    auto it = m_entries.find(d.key);
    if (it != m_entries.end()) m_bytes -= it->second.tex.bytes();
    m_bytes += e.tex.bytes();
    m_entries[d.key] = std::move(e);
    ++uploaded;
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!all && ms > budgetMs) break;
  }
  evict();
  return uploaded;
}

void ImageCache::evict() {
  while (m_bytes > m_maxBytes && m_entries.size() > 1) {
    auto oldest = m_entries.end();
    for (auto it = m_entries.begin(); it != m_entries.end(); ++it)
      if (oldest == m_entries.end() || it->second.lastUsed < oldest->second.lastUsed) oldest = it;
    if (oldest->second.lastUsed >= m_frame) break;  // everything is in use this frame
    m_bytes -= oldest->second.tex.bytes();
    m_entries.erase(oldest);  // the Texture retires its name; deleted after this frame renders
  }
}

void ImageCache::clear() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    ++m_generation;
    m_queue.clear();
    m_done.clear();
  }
  m_entries.clear();
  m_errors.clear();
  m_pending.clear();
  m_bytes = 0;
}

}  // namespace ui
