// tests/test_helpers.h — temporary folders and the Python reference oracle for doctest tests.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/fsutil.h"

namespace testutil {

// A fresh empty folder under the build tree, removed when the object dies.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::path(SAESCOPE_BINARY_DIR) / "testtmp" /
           (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    engine::removeTree(path.string());  // not std::filesystem's: see removeTree
    std::filesystem::create_directories(path);
  }
  ~TempDir() { engine::removeTree(path.string()); }
  std::string str(const std::string& child = "") const {
    return child.empty() ? path.string() : (path / child).string();
  }
};

// Runs Debian's python3 (with torch/scipy/pandas) on `script` with `args`; returns its exit code.
// The script's stdout goes to `out` when given.
inline int runPython(const std::string& script, const std::string& args, std::string* out = nullptr) {
  const std::string outFile = std::filesystem::temp_directory_path() /
                              ("saescope-py-" + std::to_string(::getpid()) + ".out");
  const std::string cmd = std::string(SAESCOPE_PYTHON) + " " + script + " " + args + " > " + outFile;
  const int rc = std::system(cmd.c_str());
  if (out) {
    std::ifstream in(outFile);
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
  }
  std::remove(outFile.c_str());
  return rc;
}

inline std::string pyScript(const std::string& name) {
  return std::string(SAESCOPE_TEST_DIR) + "/python/" + name;
}

}  // namespace testutil
