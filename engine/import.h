// engine/import.h — building a workspace from artifacts made elsewhere (a notebook, another
// pipeline): embeddings of any model, the reference SAE state_dict, a torchvision ResNet18
// state_dict. No LibTorch: files are read with checkpoint.h/npy.h.
//
// Thread-safety: free functions without shared state; call runImport() on a worker thread (it
// reports progress through the JobContext). Two imports into the same workspace at once race.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "job.h"
#include "tensor_data.h"

namespace engine {

struct ImportConfig {
  std::string data;        // image folder; row i of the embeddings is image i in ImageFolder order
  std::string workspace;   // created when missing
  std::string embeddings;  // torch.save'd tensor [N, D] (or a dict holding one), .npy, .safetensors
  std::string sae;         // reference SAE state_dict (weight_encoder [D, F], ...)
  std::string backbone;    // torchvision resnet18 state_dict, with or without fc; .pth/.safetensors
};

nlohmann::json toJson(const ImportConfig& c);

// What an artifact file holds, judged by its tensors' names and shapes.
enum class ArtifactKind { Embeddings, Sae, Backbone, Unknown };
const char* artifactKindName(ArtifactKind k);  // "embeddings", "sae", "backbone", "unknown"
// Reads `path` (any format readTensorFile() knows) and classifies it. Throws engine::Error when
// the file cannot be read.
ArtifactKind classifyArtifact(const std::string& path);

// Validates every input before anything is written, then writes embeddings.npy (float32),
// sae.pt, backbone.pt (fc dropped), images.txt and manifest.json (stages with status
// "imported" and their source files). Each file is written atomically and all of them only after
// every check passed: on error the workspace is as it was (a workspace folder that did not exist
// is not created). Removes the cached feature index. Throws engine::Error with one line naming the
// file or flag at fault.
void runImport(const ImportConfig& cfg, JobContext& ctx);

// --- the checks, exposed for tests and for the GUI's drop handling ---

// The [N, D] embeddings in `sd` (key "" or the only 2-D floating tensor), as float32.
TensorData embeddingsFrom(const StateDict& sd, const std::string& path);
// The reference SAE's four tensors as float32, shapes checked against each other and, when
// `dims` > 0, against embeddings of width `dims`.
StateDict saeFrom(const StateDict& sd, const std::string& path, int64_t dims);
// The torchvision resnet18 state_dict without fc (and with num_batches_tracked where missing),
// names and shapes checked strictly ("module." prefixes accepted), floats as float32.
StateDict backboneFrom(const StateDict& sd, const std::string& path);
// torchvision resnet18's state_dict entries without fc: name → shape, in torchvision's order.
std::vector<std::pair<std::string, std::vector<int64_t>>> resnet18Spec();

// Torchvision's ImageNet ResNet18 checkpoint (resnet18-f37072fd.pth) in torch's hub cache —
// $TORCH_HOME/hub/checkpoints, else $XDG_CACHE_HOME/torch/hub/checkpoints, else
// ~/.cache/torch/hub/checkpoints — or "" when none is there. Any thread.
std::string findTorchvisionResnet18();

}  // namespace engine
