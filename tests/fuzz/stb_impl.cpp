// The stb implementations for the fuzzing build only: compiled from Debian's libstb-dev headers
// with the sanitizers and libFuzzer's coverage, in place of the prebuilt, uninstrumented libstb.so,
// so that the fuzzer sees (and checks) the image decoders themselves.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
