// Importing outside artifacts into a workspace (torch-free).
#include "import.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "fsutil.h"
#include "npy.h"
#include "workspace.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

namespace {

bool isFloating(DType t) {
  return t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16 || t == DType::Float64;
}

TensorData asFloat32(const TensorData& t) {
  if (t.dtype == DType::Float32) return t;
  const std::vector<float> f = t.toFloat();
  return TensorData::fromFloat(t.shape, f.data());
}

std::string shapeOf(const std::vector<int64_t>& s) {
  TensorData t;
  t.shape = s;
  return t.shapeString();
}

std::string keyList(const StateDict& sd) {
  std::string out;
  size_t n = 0;
  for (const auto& kv : sd) {
    if (n++ == 6) {
      out += ", ...";
      break;
    }
    out += (out.empty() ? "'" : ", '") + kv.first + "'";
  }
  return out.empty() ? "no tensors" : out;
}

std::string stripModule(const std::string& name) {
  return name.rfind("module.", 0) == 0 ? name.substr(7) : name;
}

std::string absolute(const std::string& p) {
  std::error_code ec;
  const fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

void requireFile(const std::string& flag, const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(flag + " " + path + ": no such file");
  if (fs::is_directory(path, ec)) throw Error(flag + " " + path + ": is a folder, expected a file");
}

}  // namespace

json toJson(const ImportConfig& c) {
  return json{{"data", c.data},
              {"workspace", c.workspace},
              {"embeddings", c.embeddings},
              {"sae", c.sae},
              {"backbone", c.backbone}};
}

const char* artifactKindName(ArtifactKind k) {
  switch (k) {
    case ArtifactKind::Embeddings:
      return "embeddings";
    case ArtifactKind::Sae:
      return "sae";
    case ArtifactKind::Backbone:
      return "backbone";
    case ArtifactKind::Unknown:
      break;
  }
  return "unknown";
}

ArtifactKind classifyArtifact(const std::string& path) {
  const StateDict sd = readTensorFile(path);
  for (const auto& kv : sd) {
    const std::string n = stripModule(kv.first);
    if (n == "weight_encoder") return ArtifactKind::Sae;
    if (n == "conv1.weight" || n == "layer1.0.conv1.weight") return ArtifactKind::Backbone;
  }
  int twoD = 0;
  for (const auto& kv : sd)
    if (kv.second.shape.size() == 2 && isFloating(kv.second.dtype)) ++twoD;
  return twoD == 1 ? ArtifactKind::Embeddings : ArtifactKind::Unknown;
}

TensorData embeddingsFrom(const StateDict& sd, const std::string& path) {
  const TensorData* t = findTensor(sd, "");
  if (!t) {
    for (const auto& kv : sd)
      if (kv.second.shape.size() == 2 && isFloating(kv.second.dtype)) {
        if (t)
          throw Error(path + ": holds several 2-D tensors (" + keyList(sd) +
                      "); save the embeddings alone, e.g. torch.save(emb, path)");
        t = &kv.second;
      }
  }
  if (!t)
    throw Error(path + ": no embeddings found (" + keyList(sd) +
                "); expected a tensor [N, D], e.g. torch.save(emb, path) or numpy.save(path, emb)");
  if (t->shape.size() != 2 || t->shape[0] < 1 || t->shape[1] < 1)
    throw Error(path + ": embeddings must be a 2-D tensor [N, D], found " + t->shapeString());
  if (!isFloating(t->dtype))
    throw Error(path + ": embeddings must be floating point, found " +
                std::string(dtypeName(t->dtype)));
  TensorData out = asFloat32(*t);
  const float* p = reinterpret_cast<const float*>(out.bytes.data());
  for (int64_t i = 0; i < out.numel(); ++i)
    if (!std::isfinite(p[i]))
      throw Error(path + ": embeddings hold a non-finite value (NaN or inf) in row " +
                  std::to_string(i / out.shape[1]));
  return out;
}

StateDict saeFrom(const StateDict& sdIn, const std::string& path, int64_t dims) {
  std::map<std::string, const TensorData*> sd;
  for (const auto& kv : sdIn) sd[stripModule(kv.first)] = &kv.second;
  const char* names[] = {"weight_encoder", "weight_decoder", "bias_encoder", "bias_decoder"};
  for (const char* n : names) {
    if (!sd.count(n))
      throw Error(path + ": missing tensor '" + std::string(n) + "' (found " + keyList(sdIn) +
                  "); expected the reference SAE state_dict, torch.save(sae.state_dict(), path)");
    if (!isFloating(sd[n]->dtype))
      throw Error(path + ": tensor '" + std::string(n) + "' is " + dtypeName(sd[n]->dtype) +
                  ", expected floating point");
  }
  for (const auto& kv : sd)
    if (std::find(std::begin(names), std::end(names), kv.first) == std::end(names))
      throw Error(path + ": unexpected tensor '" + kv.first +
                  "' (expected only weight_encoder, weight_decoder, bias_encoder, bias_decoder)");
  const auto& we = sd["weight_encoder"]->shape;
  if (we.size() != 2 || we[0] < 1 || we[1] < 1)
    throw Error(path + ": weight_encoder has shape " + shapeOf(we) + ", expected [D, F]");
  const int64_t d = we[0], f = we[1];
  const std::pair<const char*, std::vector<int64_t>> want[] = {{"weight_encoder", {d, f}},
                                                               {"weight_decoder", {f, d}},
                                                               {"bias_encoder", {f}},
                                                               {"bias_decoder", {d}}};
  for (const auto& [n, shape] : want)
    if (sd[n]->shape != shape)
      throw Error(path + ": " + n + " has shape " + sd[n]->shapeString() + ", expected " +
                  shapeOf(shape) + " (weight_encoder is " + shapeOf(we) + ")");
  if (dims > 0 && d != dims)
    throw Error(path + ": the SAE takes " + std::to_string(d) + "-d inputs (weight_encoder " +
                shapeOf(we) + ") but the embeddings are " + std::to_string(dims) +
                "-d; import the SAE trained on these embeddings");
  StateDict out;
  for (const auto& [n, shape] : want) out.emplace_back(n, asFloat32(*sd[n]));
  return out;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> resnet18Spec() {
  std::vector<std::pair<std::string, std::vector<int64_t>>> spec;
  auto bn = [&](const std::string& p, int64_t c) {
    spec.push_back({p + ".weight", {c}});
    spec.push_back({p + ".bias", {c}});
    spec.push_back({p + ".running_mean", {c}});
    spec.push_back({p + ".running_var", {c}});
    spec.push_back({p + ".num_batches_tracked", {}});
  };
  spec.push_back({"conv1.weight", {64, 3, 7, 7}});
  bn("bn1", 64);
  const int64_t widths[] = {64, 128, 256, 512};
  int64_t in = 64;
  for (int l = 0; l < 4; ++l) {
    const int64_t w = widths[l];
    for (int b = 0; b < 2; ++b) {
      const std::string p = "layer" + std::to_string(l + 1) + "." + std::to_string(b);
      const int64_t cin = b == 0 ? in : w;
      spec.push_back({p + ".conv1.weight", {w, cin, 3, 3}});
      bn(p + ".bn1", w);
      spec.push_back({p + ".conv2.weight", {w, w, 3, 3}});
      bn(p + ".bn2", w);
      if (b == 0 && l > 0) {
        spec.push_back({p + ".downsample.0.weight", {w, cin, 1, 1}});
        bn(p + ".downsample.1", w);
      }
    }
    in = w;
  }
  return spec;
}

StateDict backboneFrom(const StateDict& sdIn, const std::string& path) {
  std::map<std::string, const TensorData*> sd;
  for (const auto& kv : sdIn) sd[stripModule(kv.first)] = &kv.second;
  const auto spec = resnet18Spec();
  StateDict out;
  for (const auto& [name, shape] : spec) {
    auto it = sd.find(name);
    const bool counter = name.size() > 20 && name.rfind(".num_batches_tracked") == name.size() - 20;
    if (it == sd.end()) {
      if (counter) {  // old checkpoints (torchvision's own) have none; torch would add 0
        TensorData t;
        t.dtype = DType::Int64;
        t.bytes.assign(8, 0);
        out.emplace_back(name, std::move(t));
        continue;
      }
      throw Error(path + ": missing tensor '" + name +
                  "'; expected a torchvision resnet18 state_dict (found " + keyList(sdIn) + ")");
    }
    const TensorData& t = *it->second;
    if (t.shape != shape && !(counter && t.numel() == 1))
      throw Error(path + ": tensor '" + name + "' has shape " + t.shapeString() + ", expected " +
                  shapeOf(shape) + " (not a resnet18?)");
    if (counter) {
      TensorData c;
      c.dtype = DType::Int64;
      const std::vector<float> v = t.toFloat();
      const int64_t n = static_cast<int64_t>(v.empty() ? 0 : v[0]);
      c.bytes.resize(8);
      std::memcpy(c.bytes.data(), &n, 8);
      out.emplace_back(name, std::move(c));
    } else {
      if (!isFloating(t.dtype))
        throw Error(path + ": tensor '" + name + "' is " + dtypeName(t.dtype) +
                    ", expected floating point");
      out.emplace_back(name, asFloat32(t));
    }
  }
  for (const auto& kv : sd) {
    if (kv.first == "fc.weight" || kv.first == "fc.bias") continue;
    if (std::none_of(spec.begin(), spec.end(), [&](const auto& s) { return s.first == kv.first; }))
      throw Error(path + ": unexpected tensor '" + kv.first +
                  "'; expected a torchvision resnet18 state_dict (wrong architecture?)");
  }
  return out;
}

std::string findTorchvisionResnet18() {
  std::vector<fs::path> dirs;
  if (const char* th = std::getenv("TORCH_HOME"); th && *th) {
    dirs.push_back(fs::path(th) / "hub" / "checkpoints");
  } else {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
      dirs.push_back(fs::path(xdg) / "torch" / "hub" / "checkpoints");
    if (const char* home = std::getenv("HOME"); home && *home)
      dirs.push_back(fs::path(home) / ".cache" / "torch" / "hub" / "checkpoints");
  }
  // f37072fd: torchvision >= 0.13 (IMAGENET1K_V1); 5c106cde: the same weights, older name.
  for (const auto& d : dirs)
    for (const char* name : {"resnet18-f37072fd.pth", "resnet18-5c106cde.pth"}) {
      std::error_code ec;
      const fs::path p = d / name;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
  return "";
}

void runImport(const ImportConfig& cfg, JobContext& ctx) {
  if (cfg.data.empty()) throw Error("--data: required; the image folder the artifacts belong to");
  if (cfg.workspace.empty()) throw Error("--workspace: required; the folder to import into");
  if (cfg.embeddings.empty() && cfg.sae.empty() && cfg.backbone.empty())
    throw Error("nothing to import; give --embeddings FILE, --sae FILE and/or --backbone FILE");
  if (!cfg.embeddings.empty()) requireFile("--embeddings", cfg.embeddings);
  if (!cfg.sae.empty()) requireFile("--sae", cfg.sae);
  if (!cfg.backbone.empty()) requireFile("--backbone", cfg.backbone);
  std::error_code ec;
  if (fs::exists(cfg.workspace, ec) && !fs::is_directory(cfg.workspace, ec))
    throw Error("--workspace " + cfg.workspace + ": not a folder");

  // 1. Read and check everything; nothing is written (or printed: a mistake is one line) before
  // all checks pass.
  std::vector<std::string> notes;
  const Dataset data = scanDataset(cfg.data);
  const int64_t n = data.size();

  const bool wsExists = fs::exists(absolute(cfg.workspace) + "/manifest.json", ec);
  const std::string wsDir = absolute(cfg.workspace);
  auto existing = [&](const char* name) {
    const std::string p = wsDir + "/" + name;
    return wsExists && fileExists(p) ? p : std::string();
  };

  TensorData emb;
  int64_t dims = 0;
  if (!cfg.embeddings.empty()) {
    ctx.checkStop();
    emb = embeddingsFrom(readTensorFile(cfg.embeddings), cfg.embeddings);
    if (emb.shape[0] != n)
      throw Error(cfg.embeddings + ": " + std::to_string(emb.shape[0]) + " embeddings but " +
                  std::to_string(n) + " images in " + data.root +
                  " (row i must be image i in ImageFolder order)");
    dims = emb.shape[1];
    notes.push_back("embeddings: " + std::to_string(n) + " x " + std::to_string(dims) + " from " +
                    cfg.embeddings);
  } else if (const std::string p = existing("embeddings.npy"); !p.empty()) {
    const NpyInfo info = readNpyHeader(p);
    if (info.shape.size() != 2)
      throw Error(p + ": expected a 2-D array, found " + shapeOf(info.shape));
    if (info.shape[0] != n)
      throw Error(p + ": " + std::to_string(info.shape[0]) + " embeddings but " +
                  std::to_string(n) + " images in " + data.root +
                  "; import matching --embeddings too");
    dims = info.shape[1];
  }

  StateDict sae;
  if (!cfg.sae.empty()) {
    ctx.checkStop();
    sae = saeFrom(readTensorFile(cfg.sae), cfg.sae, dims);
    notes.push_back("sae: " + std::to_string(sae[0].second.shape[1]) + " features on " +
                    std::to_string(sae[0].second.shape[0]) + "-d inputs from " + cfg.sae);
  } else if (const std::string p = existing("sae.pt"); !p.empty() && !cfg.embeddings.empty()) {
    const StateDict old = readTensorFile(p);
    const TensorData* we = findTensor(old, "weight_encoder");
    if (we && we->shape.size() == 2 && we->shape[0] != dims)
      throw Error(p + ": this workspace's SAE takes " + std::to_string(we->shape[0]) +
                  "-d inputs but the imported embeddings are " + std::to_string(dims) +
                  "-d; import a matching --sae too, or delete " + p);
  }

  StateDict backbone;
  if (!cfg.backbone.empty()) {
    ctx.checkStop();
    backbone = backboneFrom(readTensorFile(cfg.backbone), cfg.backbone);
    notes.push_back("backbone: torchvision resnet18 from " + cfg.backbone);
  }
  ctx.checkStop();
  ctx.beginStage("import", 2, "steps");
  ctx.log("data set: " + std::to_string(n) + " images (" + data.layout + " layout) in " +
          data.root);
  for (const auto& line : notes) ctx.log(line);

  // 2. Write every artifact beside its place, then move all of them in, manifest last.
  const bool created = !fs::exists(cfg.workspace, ec);
  Workspace ws = Workspace::open(cfg.workspace, /*create=*/true);
  const WorkspaceLock lock(ws.dir(), "saescope import");
  std::vector<std::pair<std::string, std::string>> moves;  // temporary → final
  auto staged = [&](const std::string& final) {
    const std::string tmp =
        fs::path(final).parent_path().string() + "/.import." + fs::path(final).filename().string();
    moves.emplace_back(tmp, final);
    return tmp;
  };
  try {
    writeImageList(staged(ws.imagesPath()), data.paths);
    if (!cfg.embeddings.empty()) writeNpy(staged(ws.embeddingsPath()), emb);
    if (!cfg.sae.empty()) writeTorchCheckpoint(staged(ws.saePath()), sae);
    if (!cfg.backbone.empty()) writeTorchCheckpoint(staged(ws.backbonePath()), backbone);
    ctx.checkStop();
    for (const auto& [tmp, final] : moves) {
      fs::rename(tmp, final, ec);
      if (ec) throw Error(final + ": cannot move the imported file into place: " + ec.message());
    }
  } catch (...) {
    for (const auto& mv : moves) fs::remove(mv.first, ec);
    if (created) removeTree(ws.dir());
    throw;
  }
  removeTree(ws.path("index"));  // cached top-k lists belong to the old arrays
  ctx.advance(1);

  const std::string when = isoNow();
  ws.updateManifest([&](json& m) {
    m["data_root"] = data.root;
    m["data_layout"] = data.layout;
    m["data_limit"] = 0;
    m["attributes_file"] = data.attributesFile;
    m["image_count"] = n;
    auto stage = [&](const char* name, const std::string& src, json extra) {
      json st = {{"status", "imported"},
                 {"source", absolute(src)},
                 {"imported", when},
                 {"config", toJson(cfg)}};
      st.update(extra);
      m["stages"][name] = st;
    };
    if (!cfg.backbone.empty()) {
      stage("train", cfg.backbone,
            {{"weights", absolute(cfg.backbone)},
             {"summary", "imported torchvision resnet18 from " + absolute(cfg.backbone)}});
      if (cfg.embeddings.empty() && m["stages"].contains("embed"))
        m["stages"]["embed"]["stale"] = true;
    }
    if (!cfg.embeddings.empty()) {
      stage("embed", cfg.embeddings,
            {{"images", n},
             {"dims", dims},
             {"summary", "imported " + std::to_string(n) + " x " + std::to_string(dims) +
                             " embeddings from " + absolute(cfg.embeddings)}});
      if (cfg.sae.empty() && m["stages"].contains("sae")) m["stages"]["sae"]["stale"] = true;
    }
    if (!cfg.sae.empty())
      stage("sae", cfg.sae,
            {{"features", sae[0].second.shape[1]},
             {"dims", sae[0].second.shape[0]},
             {"summary", "imported SAE (" + std::to_string(sae[0].second.shape[1]) +
                             " features) from " + absolute(cfg.sae)}});
  });
  ctx.advance(1);
  ctx.log("import: wrote " + ws.dir() + " (" + std::to_string(n) + " images)");
}

}  // namespace engine
