// saescope: the desktop app (no arguments or `gui`) and the command line (subcommands).
#include <execinfo.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <string>
#include <vector>

#include "cli.h"
#include "engine/memory.h"
#include "engine/pipeline.h"
#include "sanitized.h"

namespace {

void writeStderr(const char* s) {
  const ssize_t n = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)n;
}

// A crash is a bug in saescope (or a library under it): say so in one line instead of a bare
// "Segmentation fault", and with SAESCOPE_BACKTRACE=1 print the stack for the bug report. Only
// async-signal-safe calls (backtrace_symbols_fd writes without malloc once backtrace was warmed).
[[maybe_unused]] void onFatalSignal(int sig) {
  const char* name = sig == SIGSEGV ? "segmentation fault"
                     : sig == SIGBUS ? "bus error"
                     : sig == SIGFPE ? "arithmetic exception"
                     : sig == SIGILL ? "illegal instruction"
                                     : "abort";
  writeStderr("saescope: internal error: ");
  writeStderr(name);
  writeStderr("; please report it with the command line (set SAESCOPE_BACKTRACE=1 for a trace)\n");
  if (const char* bt = std::getenv("SAESCOPE_BACKTRACE"); bt && bt[0] == '1') {
    void* frames[64];
    const int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
  }
  std::signal(sig, SIG_DFL);  // keep the signal exit status for shells and tests
  std::raise(sig);
}

void installCrashHandlers() {
#ifndef SAESCOPE_SANITIZED  // a sanitized build keeps the sanitizer's own reports
  void* warm[1];
  backtrace(warm, 1);  // loads libgcc now, not inside the handler
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, onFatalSignal);
  std::set_terminate([] {
    writeStderr("saescope: internal error: unhandled exception");
    if (auto e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        writeStderr(": ");
        writeStderr(ex.what());
      } catch (...) {
      }
    }
    writeStderr("\n");
    std::_Exit(1);
  });
#endif
}

// OpenBLAS picks its kernels from the CPU model at load time, and can get it wrong in a VM: where
// the model is masked it falls back to "Prescott" (SSE3), 8x slower (26 vs 200 GFLOP/s measured on
// this project's 2-core AVX-512 Xeon VM). AVX2 kernels on an AVX-512 CPU cost half: forced to
// "Haswell" on this project's 2-core AMD EPYC (Zen 5) VM, products ran at 205-244 GFLOP/s against
// 407-443 with its AVX-512 kernels (the SAE epoch 2.5 s against 1.3-1.5 s). When the kernels lack
// what the CPU has (AVX-512, or AVX2 and FMA), run this program
// again with OPENBLAS_CORETYPE set, which OpenBLAS reads only at load time. OPENBLAS_CORETYPE
// given by the user is left alone (`saescope --version` names the kernels in use).
void fixOpenBlasKernels(char** argv) {
#ifndef SAESCOPE_SANITIZED
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("SAESCOPE_OPENBLAS_CHECKED")) return;
  std::string core = engine::blasKernels();
  if (core.empty()) return;
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto among = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (core == n) return true;
    return false;
  };
  // Kernels without AVX2 and FMA, and kernels with AVX2 but without AVX-512.
  const bool belowAvx2 =
      among({"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine",
             "northwood", "banias", "generic", "barcelona", "opteron", "opteron_sse3", "bobcat",
             "sandybridge", "bulldozer"});
  const bool belowAvx512 =
      belowAvx2 || among({"haswell", "zen", "piledriver", "steamroller", "excavator"});
  __builtin_cpu_init();
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && belowAvx512)
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && belowAvx2)
    want = "Haswell";
  if (!want) return;
  ::setenv("OPENBLAS_CORETYPE", want, 1);
  ::setenv("SAESCOPE_OPENBLAS_CHECKED", "1", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: go on with the slower kernels
#else
  (void)argv;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  fixOpenBlasKernels(argv);
  engine::keepFreedMemory();  // no page faults for every tensor and decoded image
  installCrashHandlers();
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return app::runCli(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saescope: error: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "saescope: error: unexpected failure\n");
    return 1;
  }
}
