#include "command.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

namespace app {

int64_t parseInt(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used != v.size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw UsageError(flag + " " + v + ": expected a whole number");
  }
}

double parseDouble(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const double x = std::stod(v, &used);
    if (used != v.size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw UsageError(flag + " " + v + ": expected a number");
  }
}

std::string fmtDouble(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

namespace {

std::atomic<int> g_interrupts{0};

extern "C" void onSigint(int) {
  if (g_interrupts.fetch_add(1) >= 1) {
    // A second Ctrl-C: leave now. Artifacts are written by rename, so nothing is half-written.
    const char msg[] = "\nsaescope: interrupted\n";
    (void)!::write(2, msg, sizeof msg - 1);
    std::_Exit(130);
  }
}

// Prints a live progress line (bar, rate, ETA, losses) for a job running on this thread, from a
// watcher thread, and forwards Ctrl-C as a cancel request.
class TerminalProgress {
 public:
  explicit TerminalProgress(engine::JobContext& ctx) : m_ctx(ctx), m_tty(::isatty(2)) {
    ctx.setLogSink([this](const std::string& line) {
      std::lock_guard<std::mutex> lock(m_printMutex);
      clearLine();
      std::fprintf(stderr, "%s\n", line.c_str());
    });
    std::signal(SIGINT, onSigint);
    m_thread = std::thread([this] { loop(); });
  }
  ~TerminalProgress() {
    m_done = true;
    m_thread.join();
    std::signal(SIGINT, SIG_DFL);
    std::lock_guard<std::mutex> lock(m_printMutex);
    printLine(m_ctx.snapshot(), true);
  }

 private:
  void loop() {
    auto lastPlain = std::chrono::steady_clock::now();
    while (!m_done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (g_interrupts.load() > 0 && !m_ctx.stopRequested()) {
        m_ctx.requestStop();
        std::lock_guard<std::mutex> lock(m_printMutex);
        clearLine();
        std::fprintf(stderr, "saescope: stopping after this batch (Ctrl-C again to quit now)\n");
      }
      const auto now = std::chrono::steady_clock::now();
      if (!m_tty && now - lastPlain < std::chrono::seconds(10)) continue;
      lastPlain = now;
      std::lock_guard<std::mutex> lock(m_printMutex);
      printLine(m_ctx.snapshot(), !m_tty);
    }
  }

  void clearLine() {
    if (m_tty && m_shown) std::fprintf(stderr, "\r\033[K");
    m_shown = false;
  }

  void printLine(const engine::ProgressSnapshot& s, bool newline) {
    if (s.stage.empty() || (s.version == m_lastVersion && newline)) return;
    m_lastVersion = s.version;
    const double frac = s.total > 0 ? std::min(1.0, double(s.done) / s.total) : 0;
    const int width = 24;
    std::string bar;
    const int full = static_cast<int>(frac * width);
    for (int i = 0; i < width; ++i) bar += i < full ? "#" : "-";
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-6s [%s] %3.0f%% %lld/%lld %s  %.1f %s/s  elapsed %s  ETA %s",
                  s.stage.c_str(), bar.c_str(), frac * 100, static_cast<long long>(s.done),
                  static_cast<long long>(s.total), s.unit.c_str(), s.rate, s.unit.c_str(),
                  engine::formatDuration(s.elapsed).c_str(), engine::formatDuration(s.eta).c_str());
    std::string line = buf;
    for (const char* key : {"loss", "l0"}) {
      auto it = s.latest.find(key);
      if (it != s.latest.end()) {
        std::snprintf(buf, sizeof buf, "  %s %.4g", key, it->second);
        line += buf;
      }
    }
    if (m_tty) {
      std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), newline ? "\n" : "");
      m_shown = !newline;
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

  engine::JobContext& m_ctx;
  bool m_tty;
  bool m_shown = false;
  uint64_t m_lastVersion = ~0ull;
  std::atomic<bool> m_done{false};
  std::mutex m_printMutex;
  std::thread m_thread;
};

}  // namespace

void runWithProgress(const std::function<void(engine::JobContext&)>& job) {
  engine::JobContext ctx;
  TerminalProgress progress(ctx);
  job(ctx);
}

void requireWorkspace(const std::string& ws) {
  if (ws.empty()) throw UsageError("--workspace: required; pass --workspace WS");
}

}  // namespace app
