#include "memory.h"

#include <cstdlib>  // defines __GLIBC__ (through <features.h>) on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace engine {

bool keepFreedMemory() {
#if defined(__GLIBC__)
  // Setting either one also stops glibc's own threshold from moving: both are set.
  const bool mmapSet = mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1;
  return mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 && mmapSet;
#else
  return false;
#endif
}

}  // namespace engine
