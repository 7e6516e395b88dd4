// engine/error.h — the error types every engine entry point may throw.
// Thread-safety: plain value types.
#pragma once
#include <stdexcept>
#include <string>

namespace engine {

// A user-facing failure. what() is one line that names the file or flag at fault and says what
// to do; the CLI prints it as `saescope: error: <what>` and the GUI shows it in a message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by JobContext::checkStop() when the user cancelled. A job that throws it has left the
// workspace as it was before the job (artifacts are only ever written whole, by rename).
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

}  // namespace engine
