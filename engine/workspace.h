// engine/workspace.h — the workspace folder: manifest.json, images.txt and artifact paths.
//
// Layout (DESIGN.md): manifest.json, images.txt, backbone.pt, embeddings.npy, sae.pt,
// ratings/*.jsonl, logs/*.jsonl, plus index/ (cached top-k lists) and notes.json.
// Thread-safety: Workspace is a value (a folder name plus a manifest copy). The manifest on disk
// is replaced atomically; updateManifest() serialises writers within one process.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace engine {

constexpr int kManifestFormat = 1;

struct StageStatus {
  std::string name;     // "train", "embed", "sae"
  std::string status;   // "missing", "done", "failed", "cancelled", "running"
  std::string detail;   // e.g. "1 epoch, 256 images, 12.3 s"
};

class Workspace {
 public:
  // Opens the workspace folder `dir`; with `create`, makes it (and an empty manifest) if absent.
  // Throws engine::Error naming the folder or manifest.json when it is not a usable workspace.
  static Workspace open(const std::string& dir, bool create);

  const std::string& dir() const { return m_dir; }
  std::string path(const std::string& name) const;  // dir/name
  std::string backbonePath() const { return path("backbone.pt"); }
  std::string embeddingsPath() const { return path("embeddings.npy"); }
  std::string saePath() const { return path("sae.pt"); }
  std::string imagesPath() const { return path("images.txt"); }

  const nlohmann::json& manifest() const { return m_manifest; }
  // Re-reads manifest.json from disk.
  void reload();
  // Reads the manifest, lets `fn` change it, writes it back atomically, keeps the result.
  void updateManifest(const std::function<void(nlohmann::json&)>& fn);

  std::string dataRoot() const;              // "" when not set
  std::vector<std::string> imageList() const;  // images.txt lines; empty when absent
  bool hasBackbone() const;
  bool hasEmbeddings() const;
  // Throws engine::Error naming embeddings.npy and the command that writes it, when it is missing.
  void requireEmbeddings() const;
  bool hasSae() const;
  // Train, embed and sae stage states, for the pipeline view and `saescope` status lines.
  std::vector<StageStatus> stages() const;

 private:
  std::string m_dir;
  nlohmann::json m_manifest;
};

// Parses and checks manifest.json's text (what Workspace::open does with the file): a JSON object
// with the documented key types, not from a newer format. Throws engine::Error "<name>: ...".
nlohmann::json parseManifest(const std::string& text, const std::string& name);

// The workspace's writer lock: one stage (train, embed, sae, import) writes a workspace at a time,
// across processes (two app instances, the app and the CLI). An advisory flock on
// dir/saescope.lock, released on destruction and by the kernel when the process dies (kill -9
// leaves no stale lock). The file records who holds it (pid, what, since) for the error message.
// Re-entrant within one process (a stage that runs another stage keeps the lock).
// Throws engine::Error "WS is in use by ... (pid N, since T); wait for it to finish or stop it"
// when another process holds it.
class WorkspaceLock {
 public:
  WorkspaceLock(const std::string& dir, const std::string& what);
  ~WorkspaceLock();
  WorkspaceLock(const WorkspaceLock&) = delete;
  WorkspaceLock& operator=(const WorkspaceLock&) = delete;

 private:
  std::string m_key;
};

// Writes images.txt (one relative path per line) atomically.
void writeImageList(const std::string& path, const std::vector<std::string>& paths);
// Reads images.txt; throws engine::Error naming the file when it cannot be read.
std::vector<std::string> readImageList(const std::string& path);

// Current UTC time as ISO 8601 ("2026-11-27T07:30:00Z").
std::string isoNow();

}  // namespace engine
