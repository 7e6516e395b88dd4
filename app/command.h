// app/command.h — the small flag parser, terminal progress and helpers shared by the subcommands.
// Thread-safety: main thread only (TerminalProgress runs its own watcher thread).
#pragma once
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/job.h"
#include "engine/pipeline.h"

namespace app {

// A mistake in the command line itself: exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Flag {
  std::string name;  // "--epochs"
  std::string meta;  // "N" (empty for a switch)
  std::string def;   // default shown in --help
  std::string help;
  std::function<void(const std::string&)> set;
};

// Parse a flag's value; throw UsageError naming the flag otherwise.
int64_t parseInt(const std::string& flag, const std::string& v);
double parseDouble(const std::string& flag, const std::string& v);
std::string fmtDouble(double v);

// One subcommand's flags: declared with their targets and defaults, parsed, and listed by --help.
class Command {
 public:
  Command(std::string name, std::string usage, std::string summary)
      : m_name(std::move(name)), m_usage(std::move(usage)), m_summary(std::move(summary)) {}

  Command& str(const std::string& flag, const std::string& meta, std::string* target,
               const std::string& help) {
    m_flags.push_back({flag, meta, *target, help, [target](const std::string& v) { *target = v; }});
    return *this;
  }
  template <typename Int>
  Command& integer(const std::string& flag, Int* target, const std::string& help) {
    m_flags.push_back(
        {flag, "N", std::to_string(*target), help,
         [flag, target](const std::string& v) { *target = static_cast<Int>(parseInt(flag, v)); }});
    return *this;
  }
  Command& real(const std::string& flag, double* target, const std::string& help) {
    m_flags.push_back({flag, "X", fmtDouble(*target), help,
                       [flag, target](const std::string& v) { *target = parseDouble(flag, v); }});
    return *this;
  }
  Command& sw(const std::string& flag, bool* target, const std::string& help) {
    m_flags.push_back({flag, "", "", help, [target](const std::string&) { *target = true; }});
    return *this;
  }
  Command& positional(const std::string& meta, std::vector<std::string>* target) {
    m_posMeta = meta;
    m_positional = target;
    return *this;
  }
  // --device, --threads, --seed.
  Command& common(engine::RunOptions* run) {
    str("--device", "auto|cpu|cuda", &run->device, "where to compute (auto: CUDA when available)");
    integer("--threads", &run->threads, "CPU threads (0: all cores)");
    integer("--seed", &run->seed, "random seed (shuffling, initialisation)");
    return *this;
  }

  // Parses args; returns false when --help was given (help already printed).
  bool parse(const std::vector<std::string>& args) {
    for (size_t i = 0; i < args.size(); ++i) {
      std::string a = args[i];
      if (a == "--help" || a == "-h") {
        printHelp();
        return false;
      }
      if (a.rfind("--", 0) != 0 || a.size() == 2) {
        if (!m_positional)
          throw UsageError("unexpected argument '" + a + "'; see `saescope " + m_name + " --help`");
        m_positional->push_back(a);
        continue;
      }
      std::string value;
      bool hasValue = false;
      const size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        hasValue = true;
      }
      const Flag* f = nullptr;
      for (const auto& fl : m_flags)
        if (fl.name == a) f = &fl;
      if (!f)
        throw UsageError("unknown flag " + a + " for `saescope " + m_name + "`; see `saescope " +
                         m_name + " --help`");
      if (!f->meta.empty() && !hasValue) {
        if (i + 1 >= args.size()) throw UsageError(a + ": missing value (" + f->meta + ")");
        value = args[++i];
      }
      f->set(value);
    }
    return true;
  }

  // A flag named in the usage line outside [...] must be given.
  bool requiredInUsage(const std::string& flag) const {
    int depth = 0;
    for (size_t i = 0; i < m_usage.size(); ++i) {
      if (m_usage[i] == '[' || m_usage[i] == '(') ++depth;  // optional, or one of several
      if (m_usage[i] == ']' || m_usage[i] == ')') --depth;
      if (depth == 0 && m_usage.compare(i, flag.size(), flag) == 0 &&
          (i + flag.size() == m_usage.size() || m_usage[i + flag.size()] == ' '))
        return true;
    }
    return false;
  }

  void printHelp() const {
    std::printf("usage: saescope %s %s\n\n%s\n\noptions:\n", m_name.c_str(), m_usage.c_str(),
                m_summary.c_str());
    for (const auto& f : m_flags) {
      std::string left = "  " + f.name + (f.meta.empty() ? "" : " " + f.meta);
      if (left.size() < 30)
        left.resize(30, ' ');
      else
        left += "  ";
      std::string def;
      if (requiredInUsage(f.name))
        def = " (required)";
      else if (f.meta.empty())
        def = " (default: off)";
      else if (f.def.empty() || f.def == "-1")  // -1: "not given" for ids
        def = f.help.find("default") == std::string::npos ? " (default: none)" : "";
      else
        def = " (default: " + f.def + ")";
      std::printf("%s%s%s\n", left.c_str(), f.help.c_str(), def.c_str());
    }
    std::printf("  %-28s%s\n", "--help", "show this help");
  }

 private:
  std::string m_name, m_usage, m_summary, m_posMeta;
  std::vector<Flag> m_flags;
  std::vector<std::string>* m_positional = nullptr;
};

// Runs `job` on this thread while a watcher thread prints a progress line (bar, rate, ETA,
// losses) to stderr and turns Ctrl-C into a cancel request.
void runWithProgress(const std::function<void(engine::JobContext&)>& job);

// Throws UsageError when --workspace was not given.
void requireWorkspace(const std::string& ws);

}  // namespace app
