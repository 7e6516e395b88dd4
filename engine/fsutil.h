// engine/fsutil.h — files written whole or not at all, and small file helpers.
// Thread-safety: free functions; concurrent writers of the same path race on the rename only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine {

// Writes `data` to `path` atomically: a temporary file beside it, fsync, then rename over it.
// Creates missing parent folders. Throws engine::Error naming `path` on failure.
void writeFileAtomic(const std::string& path, const void* data, size_t size);
void writeFileAtomic(const std::string& path, const std::string& text);

// Whole file as bytes / text. Throws engine::Error naming `path` when it cannot be read.
std::vector<uint8_t> readFileBytes(const std::string& path);
std::string readFileText(const std::string& path);

bool fileExists(const std::string& path);

// Removes `path` and, for a folder, everything under it (symbolic links are removed, never
// followed); a missing path is no error. Returns false when something could not be removed.
// Use this, not std::filesystem::remove_all: the CUDA LibTorch 2.x wheels export their own copy of
// std::filesystem, and a binary linked with them calls that copy, whose remove_all crashed (null
// call) on a non-empty folder there.
bool removeTree(const std::string& path);

// Writes all `size` bytes to the open descriptor `fd` (retrying short writes and EINTR); throws
// engine::Error "cannot write <path>: <reason>".
void writeAllToFd(int fd, const void* data, size_t size, const std::string& path);

// Opens `path` for appending lines that survive a crash: each appendLine() is written and
// flushed to the OS (and fsync'ed) before it returns.
class LineAppender {
 public:
  explicit LineAppender(const std::string& path);
  ~LineAppender();
  LineAppender(const LineAppender&) = delete;
  LineAppender& operator=(const LineAppender&) = delete;
  void appendLine(const std::string& line, bool sync = false);

 private:
  int m_fd = -1;
  std::string m_path;
};

}  // namespace engine
