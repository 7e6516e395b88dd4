#include "fsutil.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "error.h"

namespace fs = std::filesystem;

namespace engine {

namespace {
std::string errnoText() { return std::strerror(errno); }
}  // namespace

void writeAllToFd(int fd, const void* data, size_t size, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write " + path + ": " + errnoText());
    }
    p += w;
    size -= static_cast<size_t>(w);
  }
}

void writeFileAtomic(const std::string& path, const void* data, size_t size) {
  static std::atomic<unsigned> counter{0};
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create " + tmp + ": " + errnoText() + " (is the folder writable?)");
  try {
    writeAllToFd(fd, data, size, path);
    if (::fsync(fd) != 0) throw Error("cannot flush " + path + ": " + errnoText());
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errnoText();
    ::unlink(tmp.c_str());
    throw Error("cannot replace " + path + ": " + why);
  }
}

void writeFileAtomic(const std::string& path, const std::string& text) {
  writeFileAtomic(path, text.data(), text.size());
}

std::vector<uint8_t> readFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path + ": " + errnoText());
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error("cannot read " + path + " (not a regular file?)");
  in.seekg(0);
  std::vector<uint8_t> out(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(out.data()), size))
    throw Error("cannot read " + path + ": " + errnoText());
  return out;
}

std::string readFileText(const std::string& path) {
  const auto b = readFileBytes(path);
  return std::string(b.begin(), b.end());
}

bool fileExists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

LineAppender::LineAppender(const std::string& path) : m_path(path) {
  std::error_code ec;
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  m_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (m_fd < 0) throw Error("cannot open " + path + " for appending: " + errnoText());
}

LineAppender::~LineAppender() {
  if (m_fd >= 0) ::close(m_fd);
}

bool removeTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0 || errno == ENOENT;
  // Depth first (contents before their folder), physical (links themselves, not their targets).
  // nftw's callback takes no user data: the failures are counted per thread.
  static thread_local int failures = 0;
  failures = 0;
  const auto removeOne = [](const char* p, const struct stat*, int type, struct FTW*) -> int {
    if ((type == FTW_DP ? ::rmdir(p) : ::unlink(p)) != 0 && errno != ENOENT) ++failures;
    return 0;  // go on: remove what can be removed
  };
  const int rc = ::nftw(path.c_str(), removeOne, 16, FTW_DEPTH | FTW_PHYS);
  return rc == 0 && failures == 0 && ::lstat(path.c_str(), &st) != 0;
}

void LineAppender::appendLine(const std::string& line, bool sync) {
  std::string s = line;
  s.push_back('\n');
  writeAllToFd(m_fd, s.data(), s.size(), m_path);
  if (sync) ::fsync(m_fd);
}

}  // namespace engine
