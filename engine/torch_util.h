// engine/torch_util.h — INTERNAL to the engine's LibTorch translation units (never include it from
// ui/ or app/): conversions between TensorData and torch::Tensor, device and thread setup.
#pragma once
#include <torch/torch.h>

#include <functional>

#include "pipeline.h"
#include "tensor_data.h"

namespace engine {

// A CPU tensor copying `t` (shape and dtype kept).
torch::Tensor toTorch(const TensorData& t);
// A CPU tensor over `t`'s own bytes, taken over without a copy (the embeddings are 415 MB at
// CelebA's size).
torch::Tensor toTorch(TensorData&& t);
// A contiguous CPU copy of `t` as TensorData (float32/float16/bfloat16/float64/int64/int32/...).
TensorData fromTorch(const torch::Tensor& t);

// Resolves --device and sets the thread count (both thread-local and LibTorch-global settings).
// On CUDA, cuDNN's and cuBLAS's fp32 math is TF32 when `precision` is "tf32" and exact fp32
// otherwise. Call on the worker thread that runs the job.
torch::Device setupDevice(const RunOptions& run, JobContext* ctx,
                          const std::string& precision = "fp32");
// GPU memory in use on `device`, as nvidia-smi counts it (every process, LibTorch's cache
// included): "12.3 of 139.8 GiB in use". "" on the CPU, or where saescope was built without the
// CUDA runtime. A stage shows it beside its device (JobContext::setDevice) while it runs.
std::string deviceMemoryNote(const torch::Device& device);
// CUDA device `index`'s compute capability as major * 10 + minor (80: Ampere, the first with
// TF32), or -1 where unknown (no such GPU, or saescope built without the CUDA runtime).
int cudaCapability(int index);
// For stages dominated by large matrix products (SAE training), after setupDevice: on the CPU
// with 2 threads, LibTorch's own pool gets one thread and the BLAS gets both, since the two pools
// fight over 2 cores (measured: an SAE epoch of 202,599 x 512 took 7.1-8.6 s with 2 LibTorch
// threads and 1 BLAS thread, 6.7-6.8 s with 1 and 2). No effect with SAESCOPE_BLAS_THREADS set.
void preferBlasThreads(const RunOptions& run, const torch::Device& device);
// Restores configureThreads(threads) when it goes out of scope (LibTorch's count is also a
// process-wide default for threads started later, such as the app's index loader).
struct ThreadsRestorer {
  int threads;
  ~ThreadsRestorer() { configureThreads(threads); }
};

// True when the CPU BLAS runs one thread per call (OpenBLAS set so by setupDevice on 1-2 threads,
// or a BLAS without OpenBLAS's thread control): large products are then worth splitting over
// LibTorch's threads by the caller.
bool singleThreadedBlas();
// Sets OpenBLAS (when it is the BLAS) to one thread per call until the next configureThreads, for
// callers that split their products over LibTorch's threads themselves (SeedCpuStep). Products
// called inside LibTorch's parallel regions run single-threaded in the other BLASes (MKL's
// OpenMP threading is not nested).
void useSingleThreadedBlas();
// out = a·b, the output's columns (dim 1) or rows (dim 0) split over LibTorch's threads when
// OpenBLAS runs one thread (useSingleThreadedBlas, or configureThreads on 1-2 threads); one
// product otherwise. out must be a contiguous [a.size(0), b.size(1)] float tensor. A raw product:
// nothing is recorded for autograd (custom autograd functions call it in forward and backward),
// and the workers run in the caller's grad/inference mode.
void splitMm(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, int dim);

// torch::optim::Adam's step (its C++ formulas, weight decay included; equal to LibTorch 1.13's to
// the last bit or so, tests/test_sae.cpp) in one fused pass per parameter, on the optimiser's own
// state (so its checkpoints and a later opt.step() carry on from it): about 3x faster than
// torch's eight or nine passes over every parameter. Returns false, changing nothing, where it does not apply (another optimiser, the
// first step, which creates the state, amsgrad, CUDA, non-fp32 or non-contiguous tensors): call
// opt.step() then.
bool fusedAdamStep(torch::optim::Optimizer& opt);

// Loads a state dict (torch.save'd zip checkpoint or safetensors) into `module`'s parameters and
// buffers by name. `skip` names keys to ignore (e.g. "fc.weight"). Strict otherwise: a missing or
// unexpected key, or a shape mismatch, throws engine::Error naming `path` and the key.
void loadStateDict(torch::nn::Module& module, const StateDict& sd, const std::string& path,
                   const std::vector<std::string>& skip = {});
// The module's parameters and buffers in torchvision's state_dict order (per module:
// parameters, then buffers), as CPU TensorData.
StateDict stateDictOf(const torch::nn::Module& module);

// The type a --precision runs the ResNet's convolutions and products in: kBFloat16 (bf16),
// kHalf (fp16) or kFloat (fp32, and tf32: fp32 tensors whose products round their operands to
// TF32 on the GPU's tensor cores).
at::ScalarType reducedType(const std::string& precision);
// Throws engine::Error where `precision` cannot run on the device `run` picks (auto: CUDA when
// this LibTorch sees a GPU): fp16 and tf32 run on CUDA only (LibTorch's CPU autocast has bf16,
// not fp16; TF32 is NVIDIA's tensor-core format).
// Called before a stage creates anything.
void checkPrecisionDevice(const std::string& precision, const RunOptions& run);

// Turns on mixed precision (autocast to `type`: kBFloat16 or kHalf) for the current thread on
// `device` while alive; kFloat leaves it off. Restores the previous state on destruction. Works
// with LibTorch 1.13 and 2.x.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, at::ScalarType type);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::Device m_device;
  bool m_enabled;
  bool m_prev = false;
  at::ScalarType m_prevType = at::kBFloat16;
};

// Dynamic loss scaling for training in fp16 (the rule of torch.cuda.amp.GradScaler): the loss is
// multiplied by scale() before backward, so that small gradients survive fp16's range;
// unscaleGradients() then divides the gradients back, halves the scale if any is inf or NaN (the
// step must then be skipped: it returns false) and doubles it after growthInterval finite steps
// in a row. One synchronisation with the GPU per call.
class LossScaler {
 public:
  explicit LossScaler(double scale = 65536.0, int64_t growthInterval = 2000)
      : m_scale(scale), m_interval(growthInterval) {}
  double scale() const { return m_scale; }
  // Finite steps since the scale last changed (saved with a checkpoint, with scale()).
  int64_t growthTracker() const { return m_tracker; }
  void restore(double scale, int64_t growthTracker);
  // Steps skipped for an overflow since construction.
  int64_t overflows() const { return m_overflows; }
  bool unscaleGradients(const std::vector<torch::Tensor>& params);

 private:
  double m_scale;
  int64_t m_interval;
  int64_t m_tracker = 0;
  int64_t m_overflows = 0;
};

// Whether autocast is on for the CPU in this thread (LibTorch 1.13 and 2.x).
bool cpuAutocastEnabled();

// The memory layout fine-tuning and embedding run in. Channels-last on CUDA (cuDNN's fastest
// convolutions), for bf16 on the CPU (oneDNN's AMX kernels), and in fp32 on the CPU from 160 px:
// there oneDNN's convolutions no longer convert every large map to their blocked layout and back
// (224 px side by side on this project's 2-core Xeon VM: fine-tuning 8-19 % faster, embedding
// 14-23 %). Below, NCHW: the engine's own convolutions for the 2x2 maps of 64 px need it. On a
// 2-core AMD EPYC (Zen 5), with the engine's batch-norm kernels in both layouts, a fine-tuning
// step in channels-last took 12 % longer at 64 px, 1-4 % at 96, as long at 128, and 4-5 % less at
// 144, 6-8 % at 160 and 9-10 % at 224; embedding at 160 px 8-10 % less. (The Xeon, before the
// channels-last kernels: 20-40 % longer at 64 px, between 11 % less and 16 % more at 160.)
// SAESCOPE_CHANNELS_LAST=0/1 overrides on the CPU.
bool useChannelsLast(const torch::Device& device, bool reducedPrecision, int imageSize);

// Puts the module's 4-d parameters (convolution weights) in channels-last layout, the layout cuDNN's
// fastest convolutions (tensor cores, bf16) want; inputs follow with toChannelsLast(x). The values,
// names and saved form (stateDictOf copies to the standard layout) are unchanged.
void toChannelsLast(torch::nn::Module& module);
torch::Tensor toChannelsLast(const torch::Tensor& x);

// Copies a host float buffer [shape] to `device`: through pinned memory with a non-blocking copy
// on CUDA, a plain wrap-and-copy on the CPU.
torch::Tensor hostToDevice(float* data, at::IntArrayRef shape, const torch::Device& device);

// A resumable training state: a module's parameters and buffers, an optimiser's state and a JSON
// note (position, losses, config), written atomically to `path` in LibTorch's archive format. Only
// this build reads it back (it is not a torch.load format; the stage's artifacts are).
void saveTrainingState(const std::string& path, const torch::nn::Module& module,
                       const torch::optim::Optimizer& opt, const nlohmann::json& note);
// Loads into `module` and `opt` (already on `device`); returns the note. Throws engine::Error
// naming `path` when it is missing, unreadable or of another model.
nlohmann::json loadTrainingState(const std::string& path, torch::nn::Module& module,
                                 torch::optim::Optimizer& opt, const torch::Device& device);

// Keeps the JSON lines of a step log (logs/*.jsonl) whose "step" is below `step`: a resumed run
// rewrites the ones after, so each step is logged once. A line cut by a kill ends the kept part.
void truncateStepLog(const std::string& path, int64_t step);

class Workspace;
// Runs a stage body: on cancel or error, notes "cancelled"/"failed" with the message in the
// manifest's stages.<stage> and rethrows; LibTorch errors become engine::Error (out of memory with
// a hint to lower --batch).
void runStage(Workspace& ws, const std::string& stage, const std::function<void()>& body);

}  // namespace engine
