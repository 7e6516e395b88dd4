// saescope: the desktop app (no arguments or `gui`) and the command line (subcommands).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli.h"

int main(int argc, char** argv) {
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
