#include "workspace.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "error.h"
#include "fsutil.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

namespace {
std::mutex g_manifestMutex;  // serialises read-modify-write of manifests within this process

json readManifest(const std::string& file) { return parseManifest(readFileText(file), file); }

json freshManifest() {
  return json{{"format", kManifestFormat},
              {"saescope_version", SAESCOPE_VERSION},
              {"created", isoNow()},
              {"stages", json::object()}};
}
}  // namespace

json parseManifest(const std::string& text, const std::string& file) {
  json m;
  try {
    m = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(file + ": not valid JSON (" + std::string(e.what()) +
                "); fix or delete the file to start the workspace anew");
  }
  if (!m.is_object()) throw Error(file + ": expected a JSON object; fix or delete the file");
  if (m.contains("format") && !m["format"].is_number_integer())
    throw Error(file + ": \"format\" must be an integer; fix or delete the file");
  if (m.value("format", kManifestFormat) > kManifestFormat)
    throw Error(file + ": written by a newer saescope (format " + m["format"].dump() +
                "); upgrade saescope to open this workspace");
  for (const char* key : {"data_root", "saescope_version"})
    if (m.contains(key) && !m[key].is_string())
      throw Error(file + ": \"" + std::string(key) + "\" must be a string; fix or delete the file");
  for (const char* key : {"stages", "versions"})
    if (m.contains(key) && !m[key].is_object())
      throw Error(file + ": \"" + std::string(key) + "\" must be an object; fix or delete the file");
  if (m.contains("image_count") && !m["image_count"].is_number_integer())
    throw Error(file + ": \"image_count\" must be an integer; fix or delete the file");
  if (m.contains("stages"))
    for (auto& [name, st] : m["stages"].items())
      if (!st.is_object() || (st.contains("status") && !st["status"].is_string()))
        throw Error(file + ": stage \"" + name + "\" must be an object with a string status");
  return m;
}

namespace {
struct HeldLock {
  int fd = -1;
  int count = 0;
};
std::mutex g_lockMutex;
std::map<std::string, HeldLock> g_heldLocks;  // canonical workspace dir → this process's lock

std::string lockKey(const std::string& dir) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(fs::absolute(dir), ec);
  return ec ? fs::absolute(dir).lexically_normal().string() : canon.string();
}
}  // namespace

WorkspaceLock::WorkspaceLock(const std::string& dir, const std::string& what) : m_key(lockKey(dir)) {
  std::lock_guard<std::mutex> guard(g_lockMutex);
  auto it = g_heldLocks.find(m_key);
  if (it != g_heldLocks.end()) {
    ++it->second.count;
    return;
  }
  const std::string file = (fs::path(m_key) / "saescope.lock").string();
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(file + ": cannot create the workspace lock (" + std::strerror(errno) +
                "); check that the workspace folder is writable");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[512];
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) holder.assign(buf, static_cast<size_t>(n));
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw Error(dir + " is in use by another saescope" +
                  (holder.empty() ? std::string() : " (" + holder + ")") +
                  "; wait for it to finish or stop it, then try again");
    throw Error(file + ": cannot lock (" + std::strerror(err) + ")");
  }
  const std::string info =
      "pid " + std::to_string(::getpid()) + ", " + what + ", since " + isoNow() + "\n";
  if (::ftruncate(fd, 0) == 0) {
    const ssize_t w = ::pwrite(fd, info.data(), info.size(), 0);
    (void)w;  // the note is informational; the flock is the lock
  }
  g_heldLocks[m_key] = HeldLock{fd, 1};
}

WorkspaceLock::~WorkspaceLock() {
  std::lock_guard<std::mutex> guard(g_lockMutex);
  auto it = g_heldLocks.find(m_key);
  if (it == g_heldLocks.end() || --it->second.count > 0) return;
  if (::ftruncate(it->second.fd, 0) != 0) {
  }
  ::close(it->second.fd);  // releases the flock
  g_heldLocks.erase(it);
}

std::string isoNow() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Workspace Workspace::open(const std::string& dir, bool create) {
  if (dir.empty()) throw Error("--workspace: no folder given; pass --workspace DIR");
  std::error_code ec;
  Workspace ws;
  if (!fs::exists(dir, ec)) {
    if (!create)
      throw Error("--workspace " + dir + ": no such folder; run `saescope train` or `saescope run` to create it");
    fs::create_directories(dir, ec);
    if (ec) throw Error("--workspace " + dir + ": cannot create folder: " + ec.message());
  }
  if (!fs::is_directory(dir, ec)) throw Error("--workspace " + dir + ": not a folder");
  ws.m_dir = fs::absolute(dir, ec).lexically_normal().string();
  if (ws.m_dir.size() > 1 && ws.m_dir.back() == '/') ws.m_dir.pop_back();
  const std::string mf = ws.path("manifest.json");
  if (fileExists(mf)) {
    ws.m_manifest = readManifest(mf);
  } else if (create) {
    std::lock_guard<std::mutex> lock(g_manifestMutex);
    ws.m_manifest = freshManifest();
    writeFileAtomic(mf, ws.m_manifest.dump(2) + "\n");
  } else {
    ws.m_manifest = freshManifest();  // a folder without manifest: every stage is missing
  }
  return ws;
}

std::string Workspace::path(const std::string& name) const { return m_dir + "/" + name; }

void Workspace::reload() {
  const std::string mf = path("manifest.json");
  m_manifest = fileExists(mf) ? readManifest(mf) : freshManifest();
}

void Workspace::updateManifest(const std::function<void(json&)>& fn) {
  std::lock_guard<std::mutex> lock(g_manifestMutex);
  const std::string mf = path("manifest.json");
  json m = fileExists(mf) ? readManifest(mf) : freshManifest();
  fn(m);
  m["format"] = kManifestFormat;
  m["saescope_version"] = SAESCOPE_VERSION;
  m["modified"] = isoNow();
  writeFileAtomic(mf, m.dump(2) + "\n");
  m_manifest = std::move(m);
}

std::string Workspace::dataRoot() const {
  return m_manifest.contains("data_root") ? m_manifest["data_root"].get<std::string>() : "";
}

std::vector<std::string> Workspace::imageList() const {
  return fileExists(imagesPath()) ? readImageList(imagesPath()) : std::vector<std::string>{};
}

bool Workspace::hasBackbone() const { return fileExists(backbonePath()); }
bool Workspace::hasEmbeddings() const { return fileExists(embeddingsPath()); }

void Workspace::requireEmbeddings() const {
  if (!hasEmbeddings())
    throw Error(embeddingsPath() + ": missing; run `saescope embed --workspace " + dir() +
                "` first");
}
bool Workspace::hasSae() const { return fileExists(saePath()); }

std::vector<StageStatus> Workspace::stages() const {
  std::vector<StageStatus> out;
  const json stages = m_manifest.value("stages", json::object());
  const std::pair<const char*, bool> present[] = {
      {"train", hasBackbone()}, {"embed", hasEmbeddings()}, {"sae", hasSae()}};
  for (const auto& [name, has] : present) {
    StageStatus s;
    s.name = name;
    const json st = stages.value(name, json::object());
    s.status = has ? "done" : st.value("status", std::string("missing"));
    if (!has && s.status == "done") s.status = "missing";  // artifact deleted by hand
    s.detail = st.value("summary", std::string());
    out.push_back(s);
  }
  return out;
}

void writeImageList(const std::string& path, const std::vector<std::string>& paths) {
  std::string text;
  for (const auto& p : paths) text += p + "\n";
  writeFileAtomic(path, text);
}

std::vector<std::string> readImageList(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace engine
