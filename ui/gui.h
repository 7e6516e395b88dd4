// ui/gui.h — the desktop app's entry point.
#pragma once
#include <string>
#include <vector>

namespace ui {

// Runs the GUI. `args` are the words after `saescope gui` (none for a bare `saescope`):
// [--workspace WS] [--view pipeline|browser|rating|results] [--feature F] [--screenshot FILE.png]
// and the testing flags listed by --help. Returns the process exit code: 0 on success, 2 for a bad
// flag (one line `saescope: error: ...` on stderr), 1 when the window cannot be opened or a
// screenshot or script fails. Never throws. Call it on the main thread.
int guiMain(const std::vector<std::string>& args);

}  // namespace ui
