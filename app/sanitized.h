// app/sanitized.h — SAESCOPE_SANITIZED, defined in AddressSanitizer and ThreadSanitizer builds
// (gcc and clang): there the app keeps the sanitizer's own crash reports and does not re-run
// itself for OpenBLAS's kernels.
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SAESCOPE_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SAESCOPE_SANITIZED 1
#endif
