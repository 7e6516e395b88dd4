#include "workspace.h"

#include <chrono>
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

json readManifest(const std::string& file) {
  const std::string text = readFileText(file);
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

json freshManifest() {
  return json{{"format", kManifestFormat},
              {"saescope_version", SAESCOPE_VERSION},
              {"created", isoNow()},
              {"stages", json::object()}};
}
}  // namespace

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
