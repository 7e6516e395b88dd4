#include "torch_util.h"

#include <ATen/ThreadLocalState.h>
#include <ATen/autocast_mode.h>
#ifdef SAESCOPE_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>

#include "error.h"
#include "fsutil.h"
#include "simd.h"
#include "workspace.h"

namespace engine {

namespace {
torch::ScalarType scalarTypeOf(DType d) {
  switch (d) {
    case DType::Float32: return torch::kFloat32;
    case DType::Float64: return torch::kFloat64;
    case DType::Float16: return torch::kFloat16;
    case DType::BFloat16: return torch::kBFloat16;
    case DType::Int64: return torch::kInt64;
    case DType::Int32: return torch::kInt32;
    case DType::Int16: return torch::kInt16;
    case DType::Int8: return torch::kInt8;
    case DType::UInt8: return torch::kUInt8;
    case DType::Bool: return torch::kBool;
  }
  return torch::kFloat32;
}

DType dtypeOf(torch::ScalarType s) {
  switch (s) {
    case torch::kFloat32: return DType::Float32;
    case torch::kFloat64: return DType::Float64;
    case torch::kFloat16: return DType::Float16;
    case torch::kBFloat16: return DType::BFloat16;
    case torch::kInt64: return DType::Int64;
    case torch::kInt32: return DType::Int32;
    case torch::kInt16: return DType::Int16;
    case torch::kInt8: return DType::Int8;
    case torch::kUInt8: return DType::UInt8;
    case torch::kBool: return DType::Bool;
    default: throw Error(std::string("unsupported tensor dtype ") + c10::toString(s));
  }
}
}  // namespace

torch::Tensor toTorch(const TensorData& t) {
  auto out = torch::empty(t.shape, torch::TensorOptions().dtype(scalarTypeOf(t.dtype)));
  if (!t.bytes.empty()) std::memcpy(out.data_ptr(), t.bytes.data(), t.bytes.size());
  return out;
}

torch::Tensor toTorch(TensorData&& t) {
  if (t.bytes.empty()) return toTorch(static_cast<const TensorData&>(t));
  auto owner = std::make_unique<std::vector<uint8_t>>(std::move(t.bytes));
  std::vector<uint8_t>* bytes = owner.get();
  torch::Tensor out = torch::from_blob(
      bytes->data(), t.shape, [bytes](void*) { delete bytes; },
      torch::TensorOptions().dtype(scalarTypeOf(t.dtype)));
  owner.release();  // the tensor's deleter owns the bytes now
  return out;
}

TensorData fromTorch(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  TensorData out;
  out.dtype = dtypeOf(c.scalar_type());
  out.shape.assign(c.sizes().begin(), c.sizes().end());
  out.bytes.resize(static_cast<size_t>(c.numel()) * c.element_size());
  if (!out.bytes.empty()) std::memcpy(out.bytes.data(), c.data_ptr(), out.bytes.size());
  return out;
}

void truncateStepLog(const std::string& path, int64_t step) {
  if (!fileExists(path)) return;
  std::istringstream in(readFileText(path));
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) >= step) break;
    } catch (const nlohmann::json::exception&) {
      break;  // a line cut by the kill
    }
    kept += line + "\n";
  }
  writeFileAtomic(path, kept);
}

bool singleThreadedBlas() {
  using GetThreads = int (*)();
  static const auto get =
      reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return !get || get() <= 1;
}

namespace {
// --threads: 0 means all cores, unless OMP_NUM_THREADS says otherwise (the OpenMP convention; the
// sanitizer runs use it to keep LibTorch's uninstrumented thread pool to one thread).
int resolvedThreads(int wanted) {
  if (wanted > 0) return wanted;
  if (const char* omp = std::getenv("OMP_NUM_THREADS"); omp && std::atoi(omp) > 0)
    return std::atoi(omp);
  return std::max(1u, std::thread::hardware_concurrency());
}

// OpenBLAS's thread control, looked up at run time: null when libblas.so.3 is another BLAS, and
// this binary still runs.
using SetBlasThreads = void (*)(int);
SetBlasThreads openblasSetThreads() {
  static const auto f =
      reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return f;
}
}  // namespace

void configureThreads(int threadsWanted) {
  const int threads = resolvedThreads(threadsWanted);
  at::set_num_threads(threads);
  // LibTorch's BLAS calls (the SAE's matmuls) run on OpenBLAS's own thread pool when Debian's
  // libblas.so.3 is OpenBLAS, beside LibTorch's OpenMP pool: never more than --threads, and one on
  // machines of 1-2 threads, where the two pools fight (measured on 2 cores: an SAE epoch of
  // 202,599 x 512 took 14.0 s with 2 BLAS threads, 9.0 s with 1). SAESCOPE_BLAS_THREADS overrides.
  if (const auto f = openblasSetThreads()) {
    const char* env = std::getenv("SAESCOPE_BLAS_THREADS");
    f(env ? std::max(1, std::atoi(env)) : (threads <= 2 ? 1 : threads));
  }
}

namespace {

constexpr int kAdamLanes = 16;

// Adam's update of n elements, torch::optim::Adam::step's formulas in the same order of float
// operations (a fused multiply-add may round the last bit differently): g ← g + wd·p;
// m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; p ← p − (lr/bc₁)·m / (√v/√bc₂ + ε). One pass
// instead of torch's eight or nine.
struct AdamScalars {
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, weightDecay, sqrtBc2, eps, minusStepSize;
};
SAESCOPE_CLONES void adamUpdate(float* __restrict__ p, const float* __restrict__ g,
                                float* __restrict__ m, float* __restrict__ v, int64_t n,
                                const AdamScalars& a) {
  float gd[kAdamLanes];
  int64_t i = 0;
  for (; i + kAdamLanes <= n; i += kAdamLanes) {  // one loop per quantity: -O2 vectorises each
    for (int l = 0; l < kAdamLanes; ++l) gd[l] = g[i + l] + a.weightDecay * p[i + l];
    for (int l = 0; l < kAdamLanes; ++l) m[i + l] = m[i + l] * a.beta1 + a.oneMinusBeta1 * gd[l];
    for (int l = 0; l < kAdamLanes; ++l)
      v[i + l] = v[i + l] * a.beta2 + a.oneMinusBeta2 * gd[l] * gd[l];
    for (int l = 0; l < kAdamLanes; ++l)
      p[i + l] += a.minusStepSize * m[i + l] / (std::sqrt(v[i + l]) / a.sqrtBc2 + a.eps);
  }
  for (; i < n; ++i) {
    const float gi = g[i] + a.weightDecay * p[i];
    m[i] = m[i] * a.beta1 + a.oneMinusBeta1 * gi;
    v[i] = v[i] * a.beta2 + a.oneMinusBeta2 * gi * gi;
    p[i] += a.minusStepSize * m[i] / (std::sqrt(v[i]) / a.sqrtBc2 + a.eps);
  }
}

// The optimiser's state of parameter `impl`: its state map is keyed by the TensorImpl's address
// as text in LibTorch 1.13 and by the address itself in 2.x.
template <typename Map>
typename Map::mapped_type* findState(Map& state, c10::TensorImpl* impl) {
  using Key = typename Map::key_type;
  typename Map::iterator it;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << impl;
    it = state.find(key.str());
  } else if constexpr (std::is_convertible_v<c10::TensorImpl*, Key>) {
    it = state.find(impl);
  } else {
    return nullptr;
  }
  return it == state.end() ? nullptr : &it->second;
}
}  // namespace

bool fusedAdamStep(torch::optim::Optimizer& opt) {
  auto* adam = dynamic_cast<torch::optim::Adam*>(&opt);
  if (adam == nullptr) return false;
  struct Work {
    torch::Tensor p;
    torch::optim::AdamParamState* state;
    const torch::optim::AdamOptions* options;
  };
  std::vector<Work> todo;  // everything checked before anything changes
  for (auto& group : adam->param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    if (o.amsgrad()) return false;
    for (const torch::Tensor& p : group.params()) {
      const torch::Tensor& g = p.grad();
      if (!g.defined()) continue;  // as torch's step: no gradient, no update
      auto* st = findState(adam->state(), p.unsafeGetTensorImpl());
      if (st == nullptr) return false;  // the first step: torch's Adam creates its state
      auto* s = dynamic_cast<torch::optim::AdamParamState*>(st->get());
      if (s == nullptr || !p.is_cpu() || !g.is_cpu() || p.scalar_type() != torch::kFloat32 ||
          g.scalar_type() != torch::kFloat32 || !p.is_contiguous() || !g.is_contiguous() ||
          !s->exp_avg().is_contiguous() || !s->exp_avg_sq().is_contiguous() ||
          s->exp_avg().scalar_type() != torch::kFloat32 ||
          s->exp_avg_sq().scalar_type() != torch::kFloat32)
        return false;
      todo.push_back({p, s, &o});
    }
  }
  torch::NoGradGuard noGrad;
  for (Work& w : todo) {
    const torch::optim::AdamOptions& o = *w.options;
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    w.state->step(w.state->step() + 1);
    const double bc1 = 1 - std::pow(beta1, w.state->step());
    const double bc2 = 1 - std::pow(beta2, w.state->step());
    const AdamScalars a{static_cast<float>(beta1),
                        static_cast<float>(1 - beta1),
                        static_cast<float>(beta2),
                        static_cast<float>(1 - beta2),
                        static_cast<float>(o.weight_decay()),
                        static_cast<float>(std::sqrt(bc2)),
                        static_cast<float>(o.eps()),
                        static_cast<float>(-(o.lr() / bc1))};
    float* pp = w.p.data_ptr<float>();
    const float* gp = w.p.grad().data_ptr<float>();
    float* mp = w.state->exp_avg().data_ptr<float>();
    float* vp = w.state->exp_avg_sq().data_ptr<float>();
    at::parallel_for(0, w.p.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
      adamUpdate(pp + lo, gp + lo, mp + lo, vp + lo, hi - lo, a);
    });
    // In-place changes, as torch's own in-place operations count them: autograd's checks of
    // saved tensors and the caches derived from a weight (resnet.cpp's tap matrices) see them.
    for (const torch::Tensor* t : {&w.p, &w.state->exp_avg(), &w.state->exp_avg_sq()})
      t->unsafeGetTensorImpl()->bump_version();
  }
  return true;
}

void useSingleThreadedBlas() {
  if (const auto set = openblasSetThreads()) set(1);
}

void splitMm(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, int dim) {
  const int64_t extent = out.size(dim);
  const int64_t blocks =
      singleThreadedBlas() ? std::min<int64_t>(at::get_num_threads(), extent / 64) : 1;
  if (blocks <= 1) {
    torch::NoGradGuard noGrad;
    torch::mm_out(const_cast<torch::Tensor&>(out), a, b);
    return;
  }
  // Blocks of a multiple of 16 columns or rows (whole vectors), the last one taking the rest.
  const int64_t step = (extent / blocks + 15) / 16 * 16;
  // Grad and inference mode are per thread, and LibTorch's workers do not inherit the caller's:
  // under InferenceMode (embedding) a worker may not write into the caller's inference tensors.
  const at::ThreadLocalState callerState;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    at::ThreadLocalStateGuard sameState(callerState);
    torch::NoGradGuard noGrad;
    for (int64_t k = b0; k < b1; ++k) {
      const int64_t lo = k * step, hi = k + 1 == blocks ? extent : std::min(extent, lo + step);
      if (lo >= hi) continue;
      torch::Tensor o = out.slice(dim, lo, hi);
      if (dim == 1)
        torch::mm_out(o, a, b.slice(1, lo, hi));
      else
        torch::mm_out(o, a.slice(0, lo, hi), b);
    }
  });
}

void preferBlasThreads(const RunOptions& run, const torch::Device& device) {
  const auto set = openblasSetThreads();
  if (!device.is_cpu() || !set || std::getenv("SAESCOPE_BLAS_THREADS") ||
      resolvedThreads(run.threads) != 2)
    return;
  at::set_num_threads(1);
  set(2);
}

torch::Device setupDevice(const RunOptions& run, JobContext* ctx, const std::string& precision) {
  configureThreads(run.threads);
  std::string dev = run.device.empty() ? "auto" : run.device;
  torch::Device device(torch::kCPU);
  if (dev == "auto") {
    if (torch::cuda::is_available()) device = torch::Device(torch::kCUDA, 0);
  } else if (dev == "cpu") {
  } else if (dev.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("--device " + dev +
                  ": this LibTorch has no CUDA (or no GPU is visible); use --device cpu, or build "
                  "against a CUDA LibTorch");
    int index = 0;
    if (dev.size() > 5 && dev[4] == ':') {
      try {
        index = std::stoi(dev.substr(5));
      } catch (const std::exception&) {
        throw Error("--device " + dev + ": expected cuda or cuda:N");
      }
    } else if (dev != "cuda") {
      throw Error("--device " + dev + ": expected auto, cpu, cuda or cuda:N");
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      throw Error("--device " + dev + ": no such GPU (" +
                  std::to_string(torch::cuda::device_count()) + " visible)");
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  } else {
    throw Error("--device " + dev + ": expected auto, cpu, cuda or cuda:N");
  }
  if (device.is_cuda()) {
    at::globalContext().setBenchmarkCuDNN(true);  // fixed input sizes
    // fp32 means fp32: no TF32 in cuDNN or cuBLAS (the reference and parity path); TF32 is the
    // explicit --precision tf32, as bf16 and fp16 are. Set for every stage, so that one stage's
    // choice does not carry over to the next in the app's process.
    const bool tf32 = precision == "tf32";
    at::globalContext().setAllowTF32CuDNN(tf32);
    at::globalContext().setAllowTF32CuBLAS(tf32);
    const int capability = cudaCapability(device.index());
    if (tf32 && ctx && capability >= 0 && capability < 80)
      ctx->log("--precision tf32: this GPU (compute capability " + std::to_string(capability / 10) +
               "." + std::to_string(capability % 10) +
               ") has no TF32 tensor cores; its products run in plain fp32");
  }
  if (ctx) ctx->setDevice(describeDevice(run) + (precision == "tf32" ? ", TF32" : ""));
  return device;
}

namespace {
// Whether `run` asks for CUDA: cuda or cuda:N, or auto where this LibTorch sees a GPU.
bool wantsCuda(const RunOptions& run) {
  const std::string& dev = run.device;
  return dev.rfind("cuda", 0) == 0 ||
         ((dev.empty() || dev == "auto") && torch::cuda::is_available());
}
}  // namespace

std::string describeDevice(const RunOptions& run) {
  const std::string dev = run.device.empty() ? "auto" : run.device;
  if (wantsCuda(run)) {
    if (!torch::cuda::is_available())
      throw Error("--device " + dev + ": this LibTorch has no CUDA; use --device cpu");
    const std::string name = dev == "auto" ? std::string("cuda:0") : dev;
#ifdef SAESCOPE_HAVE_CUDART
    const int index = name.size() > 5 ? std::atoi(name.c_str() + 5) : 0;
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) == cudaSuccess)
      return name + " (" + prop.name + ", " +
             std::to_string(prop.totalGlobalMem >> 30) + " GiB)";
#endif
    return name + " (" + std::to_string(torch::cuda::device_count()) + " GPU visible)";
  }
  return "cpu (" + std::to_string(resolvedThreads(run.threads)) + " threads)";
}

bool cpuAutocastEnabled() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(at::kCPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}

at::ScalarType reducedType(const std::string& precision) {
  if (precision == "bf16") return at::kBFloat16;
  if (precision == "fp16") return at::kHalf;
  return at::kFloat;
}

void checkPrecisionDevice(const std::string& precision, const RunOptions& run) {
  if (wantsCuda(run)) return;
  if (precision == "fp16")
    throw Error(
        "--precision fp16 runs on CUDA only (LibTorch's CPU autocast has bf16, not fp16); "
        "use --precision bf16 or fp32 on the CPU");
  if (precision == "tf32")
    throw Error(
        "--precision tf32 runs on CUDA only (TF32 is the tensor-core format of NVIDIA GPUs from "
        "Ampere on); use --precision fp32 or bf16 on the CPU");
}

AutocastGuard::AutocastGuard(const torch::Device& device, at::ScalarType type)
    : m_device(device), m_enabled(type != at::kFloat) {
  if (!m_enabled) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  m_prev = at::autocast::is_autocast_enabled(device.type());
  m_prevType = at::autocast::get_autocast_dtype(device.type());
  at::autocast::set_autocast_dtype(device.type(), type);
  at::autocast::set_autocast_enabled(device.type(), true);
#else
  if (device.is_cuda()) {
    m_prev = at::autocast::is_enabled();
    m_prevType = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(type);
    at::autocast::set_enabled(true);
  } else {
    m_prev = at::autocast::is_cpu_enabled();
    m_prevType = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(type);
    at::autocast::set_cpu_enabled(true);
  }
#endif
}

AutocastGuard::~AutocastGuard() {
  if (!m_enabled) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(m_device.type(), m_prev);
  at::autocast::set_autocast_dtype(m_device.type(), m_prevType);
#else
  if (m_device.is_cuda()) {
    at::autocast::set_enabled(m_prev);
    at::autocast::set_autocast_gpu_dtype(m_prevType);
  } else {
    at::autocast::set_cpu_enabled(m_prev);
    at::autocast::set_autocast_cpu_dtype(m_prevType);
  }
#endif
  at::autocast::clear_cache();
}

void LossScaler::restore(double scale, int64_t growthTracker) {
  if (!(scale > 0) || !std::isfinite(scale) || growthTracker < 0)
    throw Error("loss scale " + std::to_string(scale) + " (after " + std::to_string(growthTracker) +
                " steps): not a valid saved state");
  m_scale = scale;
  m_tracker = growthTracker;
}

bool LossScaler::unscaleGradients(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> finite;
  for (const torch::Tensor& p : params) {
    torch::Tensor g = p.grad();
    if (!g.defined()) continue;
    g.mul_(1.0 / m_scale);
    finite.push_back(torch::isfinite(g).all());
  }
  const bool ok = finite.empty() || torch::stack(finite).all().item<bool>();
  if (!ok) {
    m_scale *= 0.5;
    m_tracker = 0;
    ++m_overflows;
  } else if (++m_tracker >= m_interval) {
    m_scale *= 2;
    m_tracker = 0;
  }
  return ok;
}

bool useChannelsLast(const torch::Device& device, bool reducedPrecision, int imageSize) {
  if (device.is_cuda() || reducedPrecision) return true;
  if (const char* v = std::getenv("SAESCOPE_CHANNELS_LAST"); v && *v) return std::string(v) != "0";
  return imageSize >= 160;
}

void toChannelsLast(torch::nn::Module& module) {
  torch::NoGradGuard noGrad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
}

torch::Tensor toChannelsLast(const torch::Tensor& x) {
  return x.contiguous(at::MemoryFormat::ChannelsLast);
}

torch::Tensor hostToDevice(float* data, at::IntArrayRef shape, const torch::Device& device) {
  const torch::Tensor host = torch::from_blob(data, shape, torch::kFloat32);
  if (device.is_cpu()) return host;
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

int cudaCapability(int index) {
#ifdef SAESCOPE_HAVE_CUDART
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) == cudaSuccess) return prop.major * 10 + prop.minor;
#endif
  (void)index;
  return -1;
}

std::string deviceMemoryNote(const torch::Device& device) {
#ifdef SAESCOPE_HAVE_CUDART
  if (!device.is_cuda()) return "";
  int before = 0;
  if (cudaGetDevice(&before) != cudaSuccess) return "";
  const int index = device.has_index() ? device.index() : before;
  size_t freeBytes = 0, totalBytes = 0;
  const bool ok = cudaSetDevice(index) == cudaSuccess &&
                  cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess && totalBytes > 0;
  cudaSetDevice(before);
  if (!ok) return "";
  char text[64];
  std::snprintf(text, sizeof text, "%.1f of %.1f GiB in use",
                static_cast<double>(totalBytes - freeBytes) / (1 << 30),
                static_cast<double>(totalBytes) / (1 << 30));
  return text;
#else
  (void)device;
  return "";
#endif
}

bool cudaAvailable() { return torch::cuda::is_available(); }

std::string blasKernels() {
  using CoreName = char* (*)();
  auto coreName = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = coreName ? coreName() : nullptr;
  return name ? std::string(name) : std::string();
}

std::string torchVersion() {
#ifdef TORCH_VERSION
  return TORCH_VERSION;
#else
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#endif
}

StateDict stateDictOf(const torch::nn::Module& module) {
  StateDict sd;
  for (const auto& m : module.named_modules("", /*include_self=*/true)) {
    const std::string prefix = m.key().empty() ? "" : m.key() + ".";
    for (const auto& p : m.value()->named_parameters(/*recurse=*/false))
      sd.emplace_back(prefix + p.key(), fromTorch(p.value()));
    for (const auto& b : m.value()->named_buffers(/*recurse=*/false))
      sd.emplace_back(prefix + b.key(), fromTorch(b.value()));
  }
  return sd;
}

void loadStateDict(torch::nn::Module& module, const StateDict& sdIn, const std::string& path,
                   const std::vector<std::string>& skip) {
  // Accept DataParallel's "module." prefix.
  std::map<std::string, const TensorData*> sd;
  for (const auto& kv : sdIn) {
    std::string name = kv.first;
    if (name.rfind("module.", 0) == 0) name = name.substr(7);
    sd[name] = &kv.second;
  }
  torch::NoGradGuard noGrad;
  std::set<std::string> used;
  auto assign = [&](const std::string& name, torch::Tensor& target) {
    auto it = sd.find(name);
    if (it == sd.end())
      throw Error(path + ": missing tensor '" + name +
                  "' (is this a torchvision resnet18 state_dict?)");
    const TensorData& t = *it->second;
    std::vector<int64_t> want(target.sizes().begin(), target.sizes().end());
    if (t.shape != want) {
      TensorData tmp;
      tmp.shape = want;
      throw Error(path + ": tensor '" + name + "' has shape " + t.shapeString() + ", expected " +
                  tmp.shapeString() + " (wrong architecture?)");
    }
    target.copy_(toTorch(t).to(target.dtype()));
    used.insert(name);
  };
  for (auto& p : module.named_parameters(true)) assign(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) assign(b.key(), b.value());
  for (const auto& kv : sd) {
    if (used.count(kv.first) ||
        std::find(skip.begin(), skip.end(), kv.first) != skip.end())
      continue;
    throw Error(path + ": unexpected tensor '" + kv.first + "' (wrong architecture?)");
  }
}

void saveTrainingState(const std::string& path, const torch::nn::Module& module,
                       const torch::optim::Optimizer& opt, const nlohmann::json& note) {
  torch::serialize::OutputArchive archive, modelArchive, optArchive;
  module.save(modelArchive);
  opt.save(optArchive);
  archive.write("model", modelArchive);
  archive.write("optimizer", optArchive);
  archive.write("note", c10::IValue(note.dump()));
  std::ostringstream out;
  archive.save_to(out);
  writeFileAtomic(path, out.str());
}

nlohmann::json loadTrainingState(const std::string& path, torch::nn::Module& module,
                                 torch::optim::Optimizer& opt, const torch::Device& device) {
  if (!fileExists(path))
    throw Error(path + ": no training checkpoint to resume from; run without --resume");
  try {
    torch::serialize::InputArchive archive, modelArchive, optArchive;
    std::istringstream in(readFileText(path));
    archive.load_from(in, device);
    c10::IValue note;
    if (!archive.try_read("note", note) || !note.isString())
      throw Error(path + ": not a saescope training checkpoint; delete it and run without --resume");
    archive.read("model", modelArchive);
    archive.read("optimizer", optArchive);
    module.load(modelArchive);
    opt.load(optArchive);
    return nlohmann::json::parse(note.toStringRef());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    throw Error(path + ": cannot resume from this checkpoint (" + msg +
                "); delete it and run without --resume");
  }
}

namespace {
// Notes a stage that did not finish in the manifest; never throws (the original error matters).
void recordStageEnd(Workspace& ws, const std::string& stage, const std::string& status,
                    const std::string& message) {
  try {
    ws.updateManifest([&](nlohmann::json& m) {
      nlohmann::json& st = m["stages"][stage];
      st["status"] = status;
      st["message"] = message;
      st["finished"] = isoNow();
    });
  } catch (const std::exception&) {
  }
}
}  // namespace

void runStage(Workspace& ws, const std::string& stage, const std::function<void()>& body) {
  // Before anything is noted in the manifest: a workspace that another process is writing stays
  // untouched.
  const WorkspaceLock lock(ws.dir(), "saescope " + stage);
  try {
    body();
  } catch (const Cancelled&) {
    recordStageEnd(ws, stage, "cancelled", "cancelled by the user");
    throw;
  } catch (const Error& e) {
    recordStageEnd(ws, stage, "failed", e.what());
    throw;
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    const bool oom = msg.find("out of memory") != std::string::npos;
    const std::string text = oom ? stage + ": out of memory on the device; try a smaller --batch"
                                 : stage + ": LibTorch error: " + msg.substr(0, msg.find('\n'));
    recordStageEnd(ws, stage, "failed", text);
    throw Error(text);
  }
}

}  // namespace engine
