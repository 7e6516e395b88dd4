// ui/script.h — scripted input for GUI tests: real mouse and key events through ImGui's input
// state, plus a few waits and test-only settings.
//
// A script is a text file, one command a line, `#` starts a comment:
//   wait N                  let N frames pass
//   wait-settled [S]        until nothing loads: no job, no pending image, index loaded (S s, 60)
//   wait-progress [S]       until the pipeline job has made progress (done > 0)
//   wait-idle [S]           until the pipeline worker is idle
//   key NAME [ctrl|shift]   press and release a key: Left Right Up Down PageUp PageDown Home End
//                           Enter Escape Tab Backspace Delete F1..F12 A..Z 0..9
//   click WIDGET [FX FY]    move to a named widget (see App::hook) at fractions FX, FY of its
//                           width and height (default 0.5 0.5: the centre), press, release
//   click-at X Y            the same at window coordinates
//   type TEXT               type characters into the focused text field
//   set NAME VALUE          set a setting (train.epochs, sae.features, data, ...; see App)
//   view NAME               switch view
//   screenshot FILE         save the window after the next frame
//   state FILE              write the state JSON now
//   drop PATH...            drop files/folders onto the window (through GLFW's drop callback)
//   resize W H              set the window size (screen coordinates), as a user dragging its edge
//   quit                    close the app
// A wait that times out, or an unknown widget, stops the script with an error (exit code 1).
//
// Thread-safety: UI thread only.
#pragma once
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

struct ImGuiIO;

namespace ui {

struct ScriptCommand {
  std::string op;
  std::vector<std::string> args;
  int line = 0;
};

// Parses a script; throws engine::Error "<file>:<line>: ..." for an unknown command.
std::vector<ScriptCommand> parseScript(const std::string& text, const std::string& file);

// What a script needs from the app.
class ScriptHost {
 public:
  virtual ~ScriptHost() = default;
  virtual bool scriptSettled() = 0;
  virtual bool scriptJobBusy() = 0;
  virtual bool scriptJobProgressed() = 0;
  // One line on what a timed-out wait was waiting for (the job, what is not settled yet), for
  // the script's error message.
  virtual std::string scriptWaitReport() { return ""; }
  // Point (fx, fy in 0..1 of its rectangle) of the widget registered under `name` in the last
  // frame.
  virtual bool scriptWidget(const std::string& name, float fx, float fy, float& x, float& y) = 0;
  // Throws engine::Error for an unknown name or bad value.
  virtual void scriptSet(const std::string& name, const std::string& value) = 0;
  virtual void scriptView(const std::string& name) = 0;
  virtual void scriptScreenshot(const std::string& file) = 0;
  virtual void scriptState(const std::string& file) = 0;
  virtual void scriptQuit() = 0;
  // Delivers `paths` as a drop onto the window, through the window's GLFW drop callback.
  virtual void scriptDrop(const std::vector<std::string>& paths) {
    (void)paths;
    throw std::runtime_error("drop: not supported by this host");
  }
  virtual void scriptResize(int width, int height) {
    (void)width;
    (void)height;
    throw std::runtime_error("resize: not supported by this host");
  }
};

class ScriptRunner {
 public:
  ScriptRunner(std::vector<ScriptCommand> cmds, std::string file, ScriptHost& host);
  // Call after the platform backend's NewFrame and before ImGui::NewFrame(): overrides this
  // frame's mouse and keys and advances the script.
  void beforeFrame(ImGuiIO& io);
  bool done() const { return m_pc >= m_cmds.size() || !m_error.empty(); }
  const std::string& error() const { return m_error; }
  // Line being executed, for messages.
  std::string where() const;

 private:
  bool step(ImGuiIO& io);  // true: go on with the next command in this frame
  void fail(const std::string& msg);
  void next();
  double arg(size_t i, double dflt) const;

  std::vector<ScriptCommand> m_cmds;
  std::string m_file;
  ScriptHost& m_host;
  size_t m_pc = 0;
  int m_phase = 0;
  int m_counter = 0;
  std::chrono::steady_clock::time_point m_deadline;
  float m_mouseX = -1, m_mouseY = -1;
  bool m_mouseDown = false;
  std::vector<int> m_keysToRelease;
  std::string m_error;
};

}  // namespace ui
