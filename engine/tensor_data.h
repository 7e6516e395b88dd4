// engine/tensor_data.h — a torch-free tensor container for file I/O (checkpoints, .npy).
// Thread-safety: plain value types.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace engine {

enum class DType { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool };

// Bytes per element of `t`.
size_t dtypeSize(DType t);
// "float32", "int64", ... (numpy spelling).
const char* dtypeName(DType t);

// A dense, C-contiguous, little-endian tensor held in host memory.
struct TensorData {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel() * dtypeSize(dtype) bytes

  int64_t numel() const;
  // Converts (float16/bfloat16/float64/ints → float32) into a new vector.
  std::vector<float> toFloat() const;
  // A float32 tensor holding `values` with `shape`.
  static TensorData fromFloat(std::vector<int64_t> shape, const float* values);
  std::string shapeString() const;  // "[512, 64]"
};

// An ordered name → tensor map, as a PyTorch state_dict is.
using StateDict = std::vector<std::pair<std::string, TensorData>>;

// The entry called `name`, or nullptr.
const TensorData* findTensor(const StateDict& sd, const std::string& name);

}  // namespace engine
