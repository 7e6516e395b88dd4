// engine/simd.h — INTERNAL to the engine: SAESCOPE_CLONES, for hot loops that GCC vectorises.
//
// Function clones for AVX-512 and the baseline, chosen when the program loads (GCC on x86-64):
// the build targets the baseline x86-64 (SSE2), and these loops run 2-4x faster in AVX-512.
// Not under ThreadSanitizer: the clones' resolvers run while the dynamic loader relocates the
// program, before TSan's runtime starts, and their instrumentation crashes there.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define SAESCOPE_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define SAESCOPE_CLONES
#endif
