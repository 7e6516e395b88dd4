// [SECTION] flag parsing   [SECTION] terminal progress   [SECTION] subcommands   [SECTION] dispatch
#include "cli.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/demo_data.h"
#include "engine/error.h"
#include "engine/features.h"
#include "engine/job.h"
#include "engine/pipeline.h"
#include "engine/ratings.h"
#include "engine/stats.h"
#include "engine/workspace.h"

#ifdef SAESCOPE_WITH_GUI
#include "ui/gui.h"
#endif

using nlohmann::json;

namespace app {

namespace {

// ---------------------------------------------------------------------------------------------
// [SECTION] flag parsing

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Flag {
  std::string name;      // "--epochs"
  std::string meta;      // "N" (empty for a switch)
  std::string def;       // default shown in --help
  std::string help;
  std::function<void(const std::string&)> set;
};

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
    m_flags.push_back({flag, "N", std::to_string(*target), help, [flag, target](const std::string& v) {
                         *target = static_cast<Int>(parseInt(flag, v));
                       }});
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
      if (!f) throw UsageError("unknown flag " + a + " for `saescope " + m_name + "`; see `saescope " + m_name + " --help`");
      if (!f->meta.empty() && !hasValue) {
        if (i + 1 >= args.size()) throw UsageError(a + ": missing value (" + f->meta + ")");
        value = args[++i];
      }
      f->set(value);
    }
    return true;
  }

  void printHelp() const {
    std::printf("usage: saescope %s %s\n\n%s\n\noptions:\n", m_name.c_str(), m_usage.c_str(),
                m_summary.c_str());
    for (const auto& f : m_flags) {
      std::string left = "  " + f.name + (f.meta.empty() ? "" : " " + f.meta);
      if (left.size() < 30) left.resize(30, ' ');
      else left += "  ";
      std::string def = f.meta.empty() || f.def.empty() ? "" : " (default: " + f.def + ")";
      if (!f.meta.empty() && f.def.empty()) def = "";
      std::printf("%s%s%s\n", left.c_str(), f.help.c_str(), def.c_str());
    }
    std::printf("  %-28s%s\n", "--help", "show this help");
  }

 private:
  std::string m_name, m_usage, m_summary, m_posMeta;
  std::vector<Flag> m_flags;
  std::vector<std::string>* m_positional = nullptr;
};

// ---------------------------------------------------------------------------------------------
// [SECTION] terminal progress

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

// Runs `job` on this thread with a terminal progress display.
void runWithProgress(const std::function<void(engine::JobContext&)>& job) {
  engine::JobContext ctx;
  TerminalProgress progress(ctx);
  job(ctx);
}

// ---------------------------------------------------------------------------------------------
// [SECTION] subcommands

int cmdDemoData(const std::vector<std::string>& args) {
  engine::DemoDataConfig cfg;
  cfg.count = 2000;
  Command cmd("demo-data", "--out DIR [options]",
              "Writes the built-in synthetic face data set (CelebA layout, with attributes).");
  cmd.str("--out", "DIR", &cfg.out, "folder to create (must be new or empty)")
      .integer("--count", &cfg.count, "number of images")
      .integer("--size", &cfg.size, "image side in pixels")
      .integer("--seed", &cfg.seed, "random seed (same seed: same files)")
      .str("--format", "png|jpg", &cfg.format, "image format")
      .integer("--threads", &cfg.threads, "worker threads (0: all cores)");
  if (!cmd.parse(args)) return 0;
  if (cfg.out.empty()) throw UsageError("--out: required; e.g. saescope demo-data --out demo");
  runWithProgress([&](engine::JobContext& ctx) { engine::generateDemoData(cfg, ctx); });
  std::printf("wrote %d images to %s\n", cfg.count, cfg.out.c_str());
  return 0;
}

void trainFlags(Command& cmd, engine::TrainConfig& t) {
  cmd.str("--data", "DIR", &t.data, "image folder (searched recursively; CelebA layout recognised)")
      .str("--workspace", "WS", &t.workspace, "workspace folder (created if missing)")
      .integer("--epochs", &t.epochs, "fine-tuning epochs")
      .integer("--batch", &t.batch, "fine-tuning batch size")
      .real("--lr", &t.lr, "Adam learning rate")
      .integer("--image-size", &t.imageSize, "images are resized to this square")
      .str("--weights", "FILE", &t.weights, "torchvision resnet18 checkpoint (.pth); none: random init")
      .integer("--limit", &t.limit, "use only the first N images (0: all)")
      .str("--normalize", "none|imagenet", &t.normalize, "input normalisation")
      .str("--precision", "fp32|bf16", &t.precision, "numeric precision");
}

void saeFlags(Command& cmd, engine::SaeConfig& s, bool prefixed) {
  const std::string p = prefixed ? "--sae-" : "--";
  cmd.integer("--features", &s.features, "SAE features (dictionary size)")
      .integer(p + "epochs", &s.epochs, "SAE epochs")
      .integer(p + "batch", &s.batch, "SAE batch size")
      .real(p + "lr", &s.lr, "SAE Adam learning rate")
      .real("--l1", &s.l1, "sparsity penalty λ")
      .real("--weight-decay", &s.weightDecay, "Adam weight decay")
      .str("--variant", "seed", &s.variant, "SAE variant (seed: the reference)");
}

void requireWorkspace(const std::string& ws) {
  if (ws.empty()) throw UsageError("--workspace: required; pass --workspace WS");
}

int cmdTrain(const std::vector<std::string>& args) {
  engine::TrainConfig t;
  Command cmd("train", "--data DIR --workspace WS [options]",
              "Fine-tunes ResNet18 with the contrastive + orientation loss; writes WS/backbone.pt.");
  trainFlags(cmd, t);
  cmd.common(&t.run);
  if (!cmd.parse(args)) return 0;
  if (t.data.empty()) throw UsageError("--data: required; pass --data DIR (an image folder)");
  requireWorkspace(t.workspace);
  runWithProgress([&](engine::JobContext& ctx) { engine::runTrain(t, ctx); });
  return 0;
}

int cmdEmbed(const std::vector<std::string>& args) {
  engine::EmbedConfig e;
  Command cmd("embed", "--workspace WS [options]",
              "Writes one 512-d embedding per image (eval mode) to WS/embeddings.npy.");
  cmd.str("--workspace", "WS", &e.workspace, "workspace folder")
      .integer("--batch", &e.batch, "batch size")
      .integer("--image-size", &e.imageSize, "0: the size the backbone was trained at")
      .str("--precision", "fp32|bf16", &e.precision, "numeric precision");
  cmd.common(&e.run);
  if (!cmd.parse(args)) return 0;
  requireWorkspace(e.workspace);
  runWithProgress([&](engine::JobContext& ctx) { engine::runEmbed(e, ctx); });
  return 0;
}

void buildIndex(const std::string& ws, engine::JobContext& ctx) {
  engine::FeatureIndex::loadOrBuild(ws, ctx);
  ctx.log("index: top-" + std::to_string(engine::FeatureIndex::kStoredK) +
          " lists cached in " + ws + "/index/");
}

int cmdSae(const std::vector<std::string>& args) {
  engine::SaeConfig s;
  Command cmd("sae", "--workspace WS [options]",
              "Trains the sparse autoencoder on the embeddings; writes WS/sae.pt.");
  cmd.str("--workspace", "WS", &s.workspace, "workspace folder");
  saeFlags(cmd, s, false);
  cmd.common(&s.run);
  if (!cmd.parse(args)) return 0;
  requireWorkspace(s.workspace);
  runWithProgress([&](engine::JobContext& ctx) {
    engine::runSae(s, ctx);
    buildIndex(s.workspace, ctx);
  });
  return 0;
}

int cmdRun(const std::vector<std::string>& args) {
  engine::TrainConfig t;
  engine::EmbedConfig e;
  engine::SaeConfig s;
  Command cmd("run", "--data DIR --workspace WS [options]",
              "The whole pipeline: train, embed, sae (and the feature index).");
  trainFlags(cmd, t);
  cmd.integer("--embed-batch", &e.batch, "embedding batch size");
  saeFlags(cmd, s, true);
  cmd.common(&t.run);
  if (!cmd.parse(args)) return 0;
  if (t.data.empty()) throw UsageError("--data: required; pass --data DIR (an image folder)");
  requireWorkspace(t.workspace);
  e.workspace = s.workspace = t.workspace;
  e.run = s.run = t.run;
  e.precision = t.precision;
  engine::validate(t);
  engine::validate(e);
  engine::validate(s);
  runWithProgress([&](engine::JobContext& ctx) {
    engine::runTrain(t, ctx);
    engine::runEmbed(e, ctx);
    engine::runSae(s, ctx);
    buildIndex(t.workspace, ctx);
  });
  std::printf("workspace ready: %s\n  try: saescope topk --workspace %s --kind sparse --feature 0\n",
              t.workspace.c_str(), t.workspace.c_str());
  return 0;
}

int cmdTopk(const std::vector<std::string>& args) {
  std::string ws, kind, rank = "seed";
  int64_t feature = -1;
  int k = 16;
  bool asJson = false;
  Command cmd("topk", "--workspace WS --kind dense|sparse --feature F [options]",
              "Prints the top-activating images of one feature.");
  cmd.str("--workspace", "WS", &ws, "workspace folder")
      .str("--kind", "dense|sparse", &kind, "embedding dimension or SAE feature")
      .integer("--feature", &feature, "feature id")
      .integer("--k", &k, "number of images")
      .str("--rank", "seed|raw", &rank, "seed: reference (row-normalised); raw: activation")
      .sw("--json", &asJson, "print JSON");
  if (!cmd.parse(args)) return 0;
  requireWorkspace(ws);
  if (kind.empty()) throw UsageError("--kind: required; dense or sparse");
  if (feature < 0) throw UsageError("--feature: required; a feature id (0 or more)");
  const engine::FeatureKind fk = engine::parseKind(kind, "--kind");
  const engine::RankRule rr = engine::parseRank(rank, "--rank");
  const engine::Workspace w = engine::Workspace::open(ws, false);
  const std::vector<std::string> paths = w.imageList();
  const auto top = engine::computeTopK(ws, fk, feature, k, rr);
  json images = json::array();
  for (const auto& e : top) {
    const std::string path =
        e.index < static_cast<int64_t>(paths.size()) ? paths[e.index] : std::string();
    images.push_back({{"index", e.index}, {"path", path}, {"score", e.score}, {"activation", e.activation}});
  }
  if (asJson) {
    const json out = {{"kind", kind}, {"feature", feature}, {"rank", rank}, {"images", images}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s feature %lld, top %zu by %s ranking\n", kind.c_str(),
                static_cast<long long>(feature), top.size(), rank.c_str());
    std::printf("%4s  %8s  %10s  %10s  %s\n", "rank", "index", "score", "activation", "path");
    int r = 1;
    for (const auto& im : images)
      std::printf("%4d  %8lld  %10.5f  %10.5f  %s\n", r++, im["index"].get<long long>(),
                  im["score"].get<double>(), im["activation"].get<double>(),
                  im["path"].get<std::string>().c_str());
  }
  return 0;
}

int cmdStats(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  bool asJson = false;
  Command cmd("stats", "RATINGS.jsonl... [--json]",
              "Statistics of blind rating studies: sparse vs dense (describe, t-tests, Mann-Whitney, "
              "Cohen's d).");
  cmd.sw("--json", &asJson, "print JSON").positional("RATINGS.jsonl", &files);
  if (!cmd.parse(args)) return 0;
  if (files.empty()) throw UsageError("no ratings file given; e.g. saescope stats WS/ratings/*.jsonl");
  const auto ratings = engine::readRatingsFiles(files);
  const json stats = engine::studyStatistics(ratings);
  if (asJson)
    std::printf("%s\n", stats.dump(2).c_str());
  else
    std::printf("%s", engine::formatStudyStatistics(stats).c_str());
  return 0;
}

int cmdGui(const std::vector<std::string>& args) {
#ifdef SAESCOPE_WITH_GUI
  return ui::guiMain(args);
#else
  (void)args;
  throw engine::Error("this saescope was built without the GUI (-DSAESCOPE_GUI=OFF); use the subcommands, see `saescope --help`");
#endif
}

void printVersion() {
  std::printf("saescope %s (LibTorch %s, CUDA %s)\n", SAESCOPE_VERSION, engine::torchVersion().c_str(),
              engine::cudaAvailable() ? "available" : "not available");
}

void printMainHelp() {
  std::printf(
      "saescope — find interpretable features in image models\n\n"
      "usage: saescope [COMMAND] [options]      (no command: open the GUI)\n\n"
      "commands:\n"
      "  gui         open the desktop app (or render a screenshot of it)\n"
      "  demo-data   write the built-in synthetic face data set\n"
      "  train       fine-tune ResNet18 (contrastive + orientation loss)\n"
      "  embed       write one embedding per image\n"
      "  sae         train the sparse autoencoder on the embeddings\n"
      "  run         train + embed + sae in one go\n"
      "  topk        top-activating images of a dense dimension or sparse feature\n"
      "  stats       statistics of blind rating studies\n\n"
      "  --version   print the version\n"
      "  --help      this help; `saescope COMMAND --help` lists a command's flags and defaults\n\n"
      "example:\n"
      "  saescope demo-data --out demo --count 2000\n"
      "  saescope run --data demo --workspace ws --image-size 64 --sae-epochs 5\n"
      "  saescope topk --workspace ws --kind sparse --feature 3\n");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// [SECTION] dispatch

int runCli(const std::vector<std::string>& args) {
  static const std::map<std::string, std::function<int(const std::vector<std::string>&)>> commands = {
      {"gui", cmdGui},       {"demo-data", cmdDemoData}, {"train", cmdTrain}, {"embed", cmdEmbed},
      {"sae", cmdSae},       {"run", cmdRun},            {"topk", cmdTopk},   {"stats", cmdStats}};
  try {
    if (args.empty()) return cmdGui({});
    const std::string& first = args[0];
    if (first == "--help" || first == "-h" || first == "help") {
      printMainHelp();
      return 0;
    }
    if (first == "--version") {
      printVersion();
      return 0;
    }
    if (first.rfind("--", 0) == 0) return cmdGui(args);  // `saescope --workspace WS` opens the GUI
    auto it = commands.find(first);
    if (it == commands.end())
      throw UsageError("unknown command '" + first + "'; see `saescope --help`");
    return it->second(std::vector<std::string>(args.begin() + 1, args.end()));
  } catch (const UsageError& e) {
    std::fprintf(stderr, "saescope: error: %s\n", e.what());
    return 2;
  } catch (const engine::Cancelled&) {
    std::fprintf(stderr, "saescope: cancelled; the workspace is as it was before this stage\n");
    return 130;
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "saescope: error: %s\n", e.what());
    return 1;
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "saescope: error: unexpected JSON content: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "saescope: error: out of memory; try a smaller --batch or --limit\n");
    return 1;
  }
}

}  // namespace app
