// app/cli.h — the `saescope` command line: subcommands over the engine, no window.
// Thread-safety: called from main() only.
#pragma once
#include <string>
#include <vector>

namespace app {

// Runs `saescope <args...>` (args without the program name). Returns the process exit code:
// 0 success, 1 a failure reported as `saescope: error: ...`, 2 a usage error, 130 cancelled.
int runCli(const std::vector<std::string>& args);

}  // namespace app
