// engine/npy.h — NumPy .npy files without NumPy or LibTorch: whole arrays, streamed rows, and a
// row-by-row writer for arrays too large to hold twice (202,599 x 512 embeddings).
//
// Thread-safety: the free functions share no state and may run on any thread concurrently (two
// writers of the same path race on the final rename only). An NpyRowWriter is used by one thread
// at a time.
//
// Every failure (missing file, malformed or truncated header, unsupported dtype, short data) is
// an engine::Error whose one-line message names the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor_data.h"

namespace engine {

// Reads a .npy file (format 1.0, 2.0 or 3.0) into a C-contiguous tensor. Supports little-endian
// <f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1; a fortran_order array is transposed into C order.
// Big-endian, structured and object arrays are rejected.
TensorData readNpy(const std::string& path);

// Writes `t` as a format 1.0 .npy (header padded to a multiple of 64 bytes, as numpy does),
// atomically. BFloat16 has no numpy dtype and is rejected: convert it to float32 first.
void writeNpy(const std::string& path, const TensorData& t);

// What readNpyHeader() learns without reading the data.
struct NpyInfo {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;  // [] for a 0-d array
  size_t dataOffset = 0;       // byte offset of the first element in the file
  bool fortranOrder = false;   // readNpyRows() refuses such files (with more than one dimension)
};

// Parses the header of a .npy file and checks that the file holds all of its data.
NpyInfo readNpyHeader(const std::string& path);

// Copies rows [firstRow, firstRow + rows) of the C-order array described by `info` (a header
// read from the same `path`) into `dst`, which must hold rows * rowBytes bytes; a "row" is one
// index along the first dimension (one element for a 1-d array).
void readNpyRows(const std::string& path, const NpyInfo& info, int64_t firstRow, int64_t rows,
                 void* dst);

// Streams a 2-d [rowsExpected, cols] array to `path`: writes into a temporary file beside it and
// renames it into place on commit(), so `path` is either the old file or the complete new one.
class NpyRowWriter {
 public:
  // Creates the temporary file (and missing parent folders) and writes the header.
  NpyRowWriter(const std::string& path, DType dtype, int64_t cols, int64_t rowsExpected);
  // Without commit(): closes and removes the temporary; `path` is left untouched.
  ~NpyRowWriter();
  NpyRowWriter(const NpyRowWriter&) = delete;
  NpyRowWriter& operator=(const NpyRowWriter&) = delete;

  // Appends `n` rows of `cols` elements each, C order, `dtype` elements. Throws engine::Error on
  // an I/O failure or when more than rowsExpected rows would be written.
  void append(const void* rows, int64_t n);
  // Checks that exactly rowsExpected rows were written, fsyncs and renames into place.
  void commit();

  int64_t rowsWritten() const { return m_rows; }

 private:
  std::string m_path;
  std::string m_tmp;
  int m_fd = -1;
  size_t m_rowBytes = 0;
  int64_t m_rows = 0;
  int64_t m_rowsExpected = 0;
  bool m_committed = false;
};

namespace detail {
// Internal, shared with checkpoint.cpp: copies the strided view (`shape`, `strides` and `offset`
// in elements of `elemSize` bytes) of `src` into C-contiguous `dst`. The caller has checked that
// every addressed element lies inside `src`.
void copyStrided(const uint8_t* src, size_t elemSize, const std::vector<int64_t>& shape,
                 const std::vector<int64_t>& strides, int64_t offset, uint8_t* dst);
// Internal, for readTensorFileFromMemory(): readNpy() on bytes in memory.
TensorData readNpyFromMemory(const uint8_t* data, size_t size, const std::string& name);
}  // namespace detail

}  // namespace engine
