// engine/winograd.cpp — see winograd.h. The only translation unit that includes oneDNN's API.
//
// oneDNN's Winograd kernels read and write blocked maps (nChw16c) and their own weight layouts,
// so each call reorders its maps in and out (a pass over each map, a few percent of the
// convolution at ResNet18's sizes); the weights are packed once per weight version by the caller.
// Measured at 224 px, batch 32, on two Zen 5 cores: forward, backward data and backward weights of
// one 64-channel layer at 56x56 in 33 ms instead of the direct kernels' 52 (channels-last), of a
// 512-channel layer at 7x7 in 26 instead of 42; the outputs agree with the direct form's to
// 7e-7 (root mean square, relative).
#include "winograd.h"

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <tuple>

#ifdef SAESCOPE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#if DNNL_VERSION_MAJOR != 2
#error "engine/winograd.cpp is written against oneDNN 2.x's API (operation descriptors)"
#endif
#endif

namespace engine::winograd {

namespace {
bool switchedOff() {
  const char* v = std::getenv("SAESCOPE_WINOGRAD");
  return v && std::string(v) == "0";
}
}  // namespace

#ifdef SAESCOPE_HAVE_ONEDNN
namespace {
using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& cpu() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// A 64-byte aligned scratch buffer for one call's blocked maps.
struct Buffer {
  void* data = nullptr;
  explicit Buffer(std::size_t bytes) {
    data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!data) throw std::bad_alloc();
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// The user's layout `user` seen as the kernel's `want`: directly where they are the same, else
// through a buffer and a reorder (prepared once per shape).
struct Stage {
  memory::desc user, want;
  std::optional<dnnl::reorder> move;  // user → want (an input), or want → user (an output)
  Stage() = default;
  Stage(const memory::desc& u, const memory::desc& w, bool input) : user(u), want(w) {
    if (u != w)
      move = input ? dnnl::reorder({cpu(), u, cpu(), w}) : dnnl::reorder({cpu(), w, cpu(), u});
  }
};

// An input in the kernel's layout for the length of one call.
class Input {
 public:
  Input(const Stage& st, const void* user, dnnl::stream& s)
      : userMem_(st.user, cpu(), const_cast<void*>(user)) {
    if (!st.move) {
      mem_ = userMem_;
      return;
    }
    buffer_ = std::make_unique<Buffer>(st.want.get_size());
    mem_ = memory(st.want, cpu(), buffer_->data);
    st.move->execute(s, userMem_, mem_);
  }
  const memory& mem() const { return mem_; }

 private:
  memory userMem_, mem_;
  std::unique_ptr<Buffer> buffer_;
};

// An output: the kernel writes the buffer (or the user's memory directly), finish() moves it.
class Output {
 public:
  Output(const Stage& st, void* user) : stage_(st), userMem_(st.user, cpu(), user) {
    if (!st.move) {
      mem_ = userMem_;
      return;
    }
    buffer_ = std::make_unique<Buffer>(st.want.get_size());
    mem_ = memory(st.want, cpu(), buffer_->data);
  }
  const memory& mem() const { return mem_; }
  void finish(dnnl::stream& s) {
    if (stage_.move) stage_.move->execute(s, mem_, userMem_);
  }

 private:
  const Stage& stage_;
  memory userMem_, mem_;
  std::unique_ptr<Buffer> buffer_;
};

struct Primitives {
  dnnl::convolution_forward::primitive_desc fwdPd;
  dnnl::convolution_backward_data::primitive_desc dataPd;
  dnnl::convolution_backward_weights::primitive_desc weightsPd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data data;
  dnnl::convolution_backward_weights weights;
  Stage fwdIn, fwdOut, dataIn, dataOut, weightsX, weightsDy, weightsOut;
  dnnl::reorder packFwd, packData;

  explicit Primitives(const Shape& s) {
    const memory::dims xDims{s.n, s.ci, s.h, s.w}, yDims{s.n, s.co, s.h, s.w},
        wDims{s.co, s.ci, 3, 3}, one{1, 1};
    const auto f32 = memory::data_type::f32;
    const memory::desc userX(xDims, f32, s.channelsLast ? Tag::nhwc : Tag::nchw),
        userY(yDims, f32, s.channelsLast ? Tag::nhwc : Tag::nchw),
        userW(wDims, f32, s.channelsLast ? Tag::ohwi : Tag::oihw), anyX(xDims, f32, Tag::any),
        anyY(yDims, f32, Tag::any), anyW(wDims, f32, Tag::any);
    const auto wino = dnnl::algorithm::convolution_winograd;
    fwdPd = {{dnnl::prop_kind::forward_training, wino, anyX, anyW, anyY, one, one, one}, cpu()};
    dataPd = {{wino, anyX, anyW, anyY, one, one, one}, cpu(), fwdPd};
    weightsPd = {{wino, anyX, anyW, anyY, one, one, one}, cpu(), fwdPd};
    fwd = dnnl::convolution_forward(fwdPd);
    data = dnnl::convolution_backward_data(dataPd);
    weights = dnnl::convolution_backward_weights(weightsPd);
    fwdIn = Stage(userX, fwdPd.src_desc(), true);
    fwdOut = Stage(userY, fwdPd.dst_desc(), false);
    dataIn = Stage(userY, dataPd.diff_dst_desc(), true);
    dataOut = Stage(userX, dataPd.diff_src_desc(), false);
    weightsX = Stage(userX, weightsPd.src_desc(), true);
    weightsDy = Stage(userY, weightsPd.diff_dst_desc(), true);
    weightsOut = Stage(userW, weightsPd.diff_weights_desc(), false);
    packFwd = dnnl::reorder({cpu(), userW, cpu(), fwdPd.weights_desc()});
    packData = dnnl::reorder({cpu(), userW, cpu(), dataPd.weights_desc()});
  }
};

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

// The primitives of a shape, created on first use; nullptr where oneDNN has no Winograd kernel
// for it (the answer is kept too).
Primitives* primitivesOf(const Shape& s) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Primitives>> cache;
  const Key key{s.n, s.ci, s.co, s.h, s.w, s.channelsLast};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second.get();
  std::unique_ptr<Primitives> p;
  if (s.n > 0 && s.ci > 0 && s.co > 0 && s.h > 0 && s.w > 0) {
    try {
      p = std::make_unique<Primitives>(s);
    } catch (const dnnl::error&) {  // "could not create a primitive descriptor": not this shape
      p.reset();
    }
  }
  return cache.emplace(key, std::move(p)).first->second.get();
}

Primitives& need(const Shape& s) {
  Primitives* p = primitivesOf(s);
  if (!p)
    throw std::logic_error("winograd: no oneDNN Winograd kernel for this shape (check supports())");
  return *p;
}

// The probe that decides available(): a small shape oneDNN's kernels take on any AVX-512 CPU.
const Primitives* probe() {
  static const Primitives* p = primitivesOf({2, 16, 16, 8, 8, false});
  return p;
}
}  // namespace

bool available() {
  return !switchedOff() && probe() != nullptr;
}

bool supports(const Shape& s) {
  return available() && primitivesOf(s) != nullptr;
}

std::string describe() {
  const dnnl_version_t* v = dnnl_version();
  std::string name = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                     std::to_string(v->patch);
  if (switchedOff()) return name + ", Winograd off (SAESCOPE_WINOGRAD=0)";
  if (!probe()) return name + ", no Winograd kernels on this CPU (they need AVX-512)";
  return name + " Winograd (" + probe()->fwdPd.impl_info_str() + ")";
}

std::size_t packedBytes(const Shape& s, Pass pass) {
  const Primitives& p = need(s);
  return (pass == Pass::Forward ? p.fwdPd.weights_desc() : p.dataPd.weights_desc()).get_size();
}

void pack(const Shape& s, Pass pass, const float* weight, void* packed) {
  Primitives& p = need(s);
  const bool fwd = pass == Pass::Forward;
  const memory::desc want = fwd ? p.fwdPd.weights_desc() : p.dataPd.weights_desc();
  memory from(p.weightsOut.user, cpu(), const_cast<float*>(weight)), to(want, cpu(), packed);
  dnnl::stream s0(cpu());
  (fwd ? p.packFwd : p.packData).execute(s0, from, to);
  s0.wait();
}

void forward(const Shape& s, const float* x, const void* packed, float* y) {
  Primitives& p = need(s);
  dnnl::stream st(cpu());
  const Input in(p.fwdIn, x, st);
  Output out(p.fwdOut, y);
  const memory w(p.fwdPd.weights_desc(), cpu(), const_cast<void*>(packed));
  p.fwd.execute(st, {{DNNL_ARG_SRC, in.mem()}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, out.mem()}});
  out.finish(st);
  st.wait();
}

void backward(const Shape& s, const float* x, const float* dy, const void* packed, float* dx,
              float* dw) {
  Primitives& p = need(s);
  dnnl::stream st(cpu());
  const Input grad(p.dataIn, dy, st);
  if (dx) {
    Output out(p.dataOut, dx);
    const memory w(p.dataPd.weights_desc(), cpu(), const_cast<void*>(packed));
    p.data.execute(
        st,
        {{DNNL_ARG_DIFF_DST, grad.mem()}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, out.mem()}});
    out.finish(st);
  }
  if (dw) {
    const Input in(p.weightsX, x, st);
    // The two kernels read dy in the same blocked layout here; a second reorder where they do not.
    std::optional<Input> own;
    if (p.weightsDy.want != p.dataIn.want) own.emplace(p.weightsDy, dy, st);
    Output out(p.weightsOut, dw);
    p.weights.execute(st, {{DNNL_ARG_SRC, in.mem()},
                           {DNNL_ARG_DIFF_DST, own ? own->mem() : grad.mem()},
                           {DNNL_ARG_DIFF_WEIGHTS, out.mem()}});
    out.finish(st);
  }
  st.wait();
}

#else  // built without oneDNN

bool available() {
  return false;
}
bool supports(const Shape&) {
  return false;
}
std::string describe() {
  return switchedOff() ? "Winograd off (SAESCOPE_WINOGRAD=0)"
                       : "no oneDNN Winograd (LibTorch does not use the system's oneDNN 2.x)";
}
std::size_t packedBytes(const Shape&, Pass) {
  throw std::logic_error("winograd: not built");
}
void pack(const Shape&, Pass, const float*, void*) {
  throw std::logic_error("winograd: not built");
}
void forward(const Shape&, const float*, const void*, float*) {
  throw std::logic_error("winograd: not built");
}
void backward(const Shape&, const float*, const float*, const void*, float*, float*) {
  throw std::logic_error("winograd: not built");
}

#endif

}  // namespace engine::winograd
