#include "script.h"

#include <GLFW/glfw3.h>
#include <imgui.h>

#include <cfloat>
#include <map>
#include <sstream>

#include "engine/error.h"

namespace ui {

namespace {

const std::map<std::string, int>& keyNames() {
  static const std::map<std::string, int> m = [] {
    std::map<std::string, int> k = {
        {"Left", GLFW_KEY_LEFT},      {"Right", GLFW_KEY_RIGHT},
        {"Up", GLFW_KEY_UP},          {"Down", GLFW_KEY_DOWN},
        {"PageUp", GLFW_KEY_PAGE_UP}, {"PageDown", GLFW_KEY_PAGE_DOWN},
        {"Home", GLFW_KEY_HOME},      {"End", GLFW_KEY_END},
        {"Enter", GLFW_KEY_ENTER},    {"Escape", GLFW_KEY_ESCAPE},
        {"Tab", GLFW_KEY_TAB},        {"Backspace", GLFW_KEY_BACKSPACE},
        {"Delete", GLFW_KEY_DELETE},  {"Space", GLFW_KEY_SPACE},
    };
    for (int i = 1; i <= 12; ++i) k["F" + std::to_string(i)] = GLFW_KEY_F1 + i - 1;
    for (char c = 'A'; c <= 'Z'; ++c) k[std::string(1, c)] = GLFW_KEY_A + (c - 'A');
    for (char c = '0'; c <= '9'; ++c) k[std::string(1, c)] = GLFW_KEY_0 + (c - '0');
    return k;
  }();
  return m;
}

const std::map<std::string, std::pair<size_t, size_t>>& arity() {
  static const std::map<std::string, std::pair<size_t, size_t>> m = {
      {"wait", {1, 1}}, {"wait-settled", {0, 1}}, {"wait-progress", {0, 1}}, {"wait-idle", {0, 1}},
      {"key", {1, 2}},  {"click", {1, 3}},        {"click-at", {2, 2}},      {"type", {1, 1}},
      {"set", {2, 2}},  {"view", {1, 1}},         {"screenshot", {1, 1}},    {"state", {1, 1}},
      {"quit", {0, 0}}, {"drop", {1, 8}},         {"resize", {2, 2}},
  };
  return m;
}

}  // namespace

std::vector<ScriptCommand> parseScript(const std::string& text, const std::string& file) {
  std::vector<ScriptCommand> out;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    ScriptCommand c;
    c.line = n;
    if (!(ls >> c.op)) continue;
    std::string rest;
    if (c.op == "type" || c.op == "set") {
      // `type` keeps spaces; `set NAME VALUE` keeps spaces in VALUE.
      if (c.op == "set") {
        std::string name;
        ls >> name;
        c.args.push_back(name);
      }
      std::getline(ls, rest);
      const size_t b = rest.find_first_not_of(' ');
      c.args.push_back(b == std::string::npos ? "" : rest.substr(b));
    } else {
      for (std::string a; ls >> a;) c.args.push_back(a);
    }
    auto it = arity().find(c.op);
    if (it == arity().end())
      throw engine::Error(file + ":" + std::to_string(n) + ": unknown script command '" + c.op +
                          "'");
    if (c.args.size() < it->second.first || c.args.size() > it->second.second)
      throw engine::Error(file + ":" + std::to_string(n) + ": wrong number of arguments for '" +
                          c.op + "'");
    if (c.op == "key" && !keyNames().count(c.args[0]))
      throw engine::Error(file + ":" + std::to_string(n) + ": unknown key '" + c.args[0] + "'");
    out.push_back(std::move(c));
  }
  return out;
}

ScriptRunner::ScriptRunner(std::vector<ScriptCommand> cmds, std::string file, ScriptHost& host)
    : m_cmds(std::move(cmds)), m_file(std::move(file)), m_host(host) {}

std::string ScriptRunner::where() const {
  if (m_pc >= m_cmds.size()) return m_file + ": end";
  return m_file + ":" + std::to_string(m_cmds[m_pc].line) + " (" + m_cmds[m_pc].op + ")";
}

void ScriptRunner::fail(const std::string& msg) {
  m_error = where() + ": " + msg;
}

void ScriptRunner::next() {
  ++m_pc;
  m_phase = 0;
  m_counter = 0;
}

double ScriptRunner::arg(size_t i, double dflt) const {
  const auto& a = m_cmds[m_pc].args;
  if (i >= a.size()) return dflt;
  try {
    return std::stod(a[i]);
  } catch (const std::exception&) {
    return dflt;
  }
}

void ScriptRunner::beforeFrame(ImGuiIO& io) {
  for (int k : m_keysToRelease) io.KeysDown[k] = false;
  if (!m_keysToRelease.empty()) {
    io.KeyCtrl = io.KeyShift = false;
    m_keysToRelease.clear();
  }
  // Runs commands until one needs a frame to pass.
  for (int guard = 0; guard < 1000 && !done(); ++guard)
    if (!step(io)) break;
  if (m_mouseX >= 0) {
    io.MousePos = ImVec2(m_mouseX, m_mouseY);
    io.MouseDown[0] = m_mouseDown;
  }
}

bool ScriptRunner::step(ImGuiIO& io) {
  const ScriptCommand& c = m_cmds[m_pc];
  const auto now = std::chrono::steady_clock::now();
  auto startDeadline = [&](double seconds) {
    if (m_phase == 0) {
      m_deadline = now + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
      m_phase = 1;
    }
  };
  try {
    if (c.op == "wait") {
      if (m_phase == 0) {
        m_counter = static_cast<int>(arg(0, 1));
        m_phase = 1;
      }
      if (m_counter-- <= 0) {
        next();
        return true;
      }
      return false;
    }
    if (c.op == "wait-settled" || c.op == "wait-progress" || c.op == "wait-idle") {
      startDeadline(arg(0, 60));
      const bool ok = c.op == "wait-settled"    ? m_host.scriptSettled()
                      : c.op == "wait-progress" ? m_host.scriptJobProgressed()
                                                : !m_host.scriptJobBusy();
      if (ok) {
        next();
        return false;  // let one frame draw the new state before the next command
      }
      if (now > m_deadline) {
        const std::string why = m_host.scriptWaitReport();
        fail("timed out" + (why.empty() ? std::string() : " (" + why + ")"));
      }
      return false;
    }
    if (c.op == "key") {
      const int k = keyNames().at(c.args[0]);
      io.KeysDown[k] = true;
      if (c.args.size() > 1 && c.args[1] == "ctrl") {
        io.KeysDown[GLFW_KEY_LEFT_CONTROL] = true;
        io.KeyCtrl = true;
        m_keysToRelease.push_back(GLFW_KEY_LEFT_CONTROL);
      }
      if (c.args.size() > 1 && c.args[1] == "shift") {
        io.KeysDown[GLFW_KEY_LEFT_SHIFT] = true;
        io.KeyShift = true;
        m_keysToRelease.push_back(GLFW_KEY_LEFT_SHIFT);
      }
      m_keysToRelease.push_back(k);
      next();
      return false;
    }
    if (c.op == "click" || c.op == "click-at") {
      // The point of the named widget (fractions of its rectangle in the optional arguments).
      auto widgetPoint = [&](float& x, float& y) {
        return m_host.scriptWidget(c.args[0], static_cast<float>(arg(1, 0.5)),
                                   static_cast<float>(arg(2, 0.5)), x, y);
      };
      if (m_phase == 0) {
        float x = 0, y = 0;
        if (c.op == "click-at") {
          x = static_cast<float>(arg(0, 0));
          y = static_cast<float>(arg(1, 0));
        } else if (!widgetPoint(x, y)) {
          // The widget may appear after a frame or two (a view switch, a popup opening).
          if (++m_counter > 120) fail("no widget named '" + c.args[0] + "' on screen");
          return false;
        }
        m_mouseX = x;
        m_mouseY = y;
        m_mouseDown = false;
        m_phase = 1;
        return false;
      }
      // Press and release where the widget is now: a layout that moved since the widget was
      // found (a line appearing above it once something loaded) would otherwise take the click.
      float x = 0, y = 0;
      if (c.op == "click" && widgetPoint(x, y)) {
        m_mouseX = x;
        m_mouseY = y;
      }
      if (m_phase == 1) {
        m_mouseDown = true;
        m_phase = 2;
        return false;
      }
      m_mouseDown = false;
      next();
      return false;
    }
    if (c.op == "type") {
      io.AddInputCharactersUTF8(c.args[0].c_str());
      next();
      return false;
    }
    if (c.op == "set") {
      m_host.scriptSet(c.args[0], c.args[1]);
      next();
      return true;
    }
    if (c.op == "view") {
      m_host.scriptView(c.args[0]);
      next();
      return false;
    }
    if (c.op == "screenshot") {
      m_host.scriptScreenshot(c.args[0]);
      next();
      return false;
    }
    if (c.op == "state") {
      m_host.scriptState(c.args[0]);
      next();
      return true;
    }
    if (c.op == "drop") {
      m_host.scriptDrop(c.args);
      next();
      return false;
    }
    if (c.op == "resize") {
      const double w = arg(0, -1), h = arg(1, -1);
      if (w < 64 || h < 64 || w > 16384 || h > 16384)
        throw engine::Error("resize expects a width and height from 64 to 16384");
      m_host.scriptResize(static_cast<int>(w), static_cast<int>(h));
      next();
      return false;
    }
    if (c.op == "quit") {
      m_host.scriptQuit();
      next();
      return false;
    }
    fail("unknown command");
  } catch (const std::exception& e) {
    fail(e.what());
  }
  return false;
}

}  // namespace ui
