// tests/gui/gui_driver.cpp — `saescope_gui_driver ARGS...` = `saescope gui ARGS...`, for the GUI
// tests (they do not depend on the app's command-line wiring).
#include <string>
#include <vector>

#include "ui/gui.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return ui::guiMain(args);
}
