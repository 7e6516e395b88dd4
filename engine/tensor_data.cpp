#include "tensor_data.h"

#include <cstring>
#include <sstream>

namespace engine {

size_t dtypeSize(DType t) {
  switch (t) {
    case DType::Float64:
    case DType::Int64: return 8;
    case DType::Float32:
    case DType::Int32: return 4;
    case DType::Float16:
    case DType::BFloat16:
    case DType::Int16: return 2;
    case DType::Int8:
    case DType::UInt8:
    case DType::Bool: return 1;
  }
  return 1;
}

const char* dtypeName(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int64: return "int64";
    case DType::Int32: return "int32";
    case DType::Int16: return "int16";
    case DType::Int8: return "int8";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}

int64_t TensorData::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
float halfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
}  // namespace

std::vector<float> TensorData::toFloat() const {
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  const uint8_t* p = bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::Float32: { float v; std::memcpy(&v, p + 4 * i, 4); out[i] = v; break; }
      case DType::Float64: { double v; std::memcpy(&v, p + 8 * i, 8); out[i] = static_cast<float>(v); break; }
      case DType::Float16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); out[i] = halfToFloat(v); break; }
      case DType::BFloat16: {
        uint16_t v; std::memcpy(&v, p + 2 * i, 2);
        uint32_t bits = static_cast<uint32_t>(v) << 16; float f; std::memcpy(&f, &bits, 4); out[i] = f; break;
      }
      case DType::Int64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); out[i] = static_cast<float>(v); break; }
      case DType::Int32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); out[i] = static_cast<float>(v); break; }
      case DType::Int16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); out[i] = static_cast<float>(v); break; }
      case DType::Int8: out[i] = static_cast<float>(static_cast<int8_t>(p[i])); break;
      case DType::UInt8:
      case DType::Bool: out[i] = static_cast<float>(p[i]); break;
    }
  }
  return out;
}

TensorData TensorData::fromFloat(std::vector<int64_t> shape, const float* values) {
  TensorData t;
  t.dtype = DType::Float32;
  t.shape = std::move(shape);
  t.bytes.resize(static_cast<size_t>(t.numel()) * 4);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), values, t.bytes.size());
  return t;
}

std::string TensorData::shapeString() const {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

const TensorData* findTensor(const StateDict& sd, const std::string& name) {
  for (const auto& kv : sd)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

}  // namespace engine
