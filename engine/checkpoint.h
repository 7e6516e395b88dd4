// engine/checkpoint.h — PyTorch checkpoints (.pt/.pth) and safetensors files, read and written
// without LibTorch, so that `torch.save` files from Python load here and ours load in Python.
//
// Thread-safety: free functions without shared state; any thread may call them concurrently
// (two writers of the same path race on the final rename only).
//
// Every malformed input — truncated, corrupt, not a checkpoint, out-of-range offsets, absurd
// shapes — is an engine::Error whose one-line message names the file and what is wrong. The
// readers never read outside the file and never allocate much more than the file's tensors need.
#pragma once
#include <cstddef>
#include <string>

#include "tensor_data.h"

namespace engine {

// Reads a file written by Python's `torch.save`: the zip format (torch >= 1.6) or the legacy
// pre-1.6 format. The saved object may be a dict/OrderedDict of tensors (a state_dict), a single
// tensor (one entry with key ""), or a training checkpoint dict whose state_dict sits under
// "state_dict" or "model". Non-tensor values are ignored. Tensors come back C-contiguous.
StateDict readTorchCheckpoint(const std::string& path);

// Writes `sd` as `torch.save(OrderedDict(sd))` would (zip format, protocol 2 pickle, records
// 64-byte aligned, the records torch 2.x writes), atomically. torch.load (weights_only too) gives
// back an OrderedDict with the same names, dtypes, shapes and values; a tensor with key "" too.
void writeTorchCheckpoint(const std::string& path, const StateDict& sd);

// Reads a .safetensors file (F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL), in header order;
// `__metadata__` is ignored.
StateDict readSafetensors(const std::string& path);

// Reads whatever tensor file `path` holds, by its content: a PyTorch checkpoint (zip or legacy),
// a .safetensors file, or a .npy array (one entry with key "").
StateDict readTensorFile(const std::string& path);

// readTensorFile() on bytes in memory; `name` stands for the file in error messages. For tests
// and fuzzers.
StateDict readTensorFileFromMemory(const void* data, size_t size, const std::string& name);

namespace detail {
// writeTorchCheckpoint()'s bytes; `forceZip64` writes zip64 records even for small files, so
// that tests can check that path without writing 4 GiB.
std::string torchCheckpointBytes(const StateDict& sd, bool forceZip64);
}  // namespace detail

}  // namespace engine
