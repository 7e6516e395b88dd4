// engine/memory.h — how the process's allocator treats the large buffers saescope cycles through.
#pragma once

namespace engine {

// Keeps freed memory in the process (glibc: no mmap for blocks under 256 MB, no trimming under
// 1 GB). LibTorch allocates and frees MB-sized tensors every step, and the data loader's threads
// decode into buffers of hundreds of KB; glibc would map and unmap each one, and every first touch
// of a page is then a page fault (a third of an SAE epoch was kernel time; page faults serialise
// the loader's threads). Call once, first thing in main().
// Returns false where the C library has no such settings (or a sanitizer's allocator stands in).
bool keepFreedMemory();

}  // namespace engine
