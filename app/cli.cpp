// [SECTION] gui, version, help   [SECTION] dispatch
#include "cli.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "command.h"
#include "commands.h"
#include "engine/error.h"
#include "engine/pipeline.h"
#include "engine/winograd.h"
#include "sanitized.h"

#ifdef SAESCOPE_WITH_GUI
#include "ui/gui.h"
#endif

namespace app {

int cmdGui(const std::vector<std::string>& args) {
#ifdef SAESCOPE_WITH_GUI
  return ui::guiMain(args);
#else
  (void)args;
  throw engine::Error(
      "this saescope was built without the GUI (-DSAESCOPE_GUI=OFF); use the subcommands, see "
      "`saescope --help`");
#endif
}

namespace {

void printVersion() {
  std::string blas = engine::blasKernels();
  if (blas.empty())
    blas = "BLAS: not OpenBLAS";
  else if (std::getenv("OPENBLAS_CORETYPE") && !std::getenv("SAESCOPE_OPENBLAS_CHECKED"))
    blas = "OpenBLAS " + blas + " kernels as OPENBLAS_CORETYPE asks";
  else
    blas = "OpenBLAS " + blas + " kernels";
  std::printf("saescope %s (LibTorch %s, CUDA %s, %s)\n", SAESCOPE_VERSION,
              engine::torchVersion().c_str(),
              engine::cudaAvailable() ? "available" : "not available", blas.c_str());
  std::printf("3x3 convolutions on the CPU: %s\n", engine::winograd::describe().c_str());
#ifdef SAESCOPE_SANITIZED
  std::printf("sanitized build: OpenBLAS's kernels as it picked them (no re-run)\n");
#endif
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
      "  stats       statistics of blind rating studies\n"
      "  sae-eval    health metrics of an SAE on the held-out split\n"
      "  interp      attribute AUROC and purity: dense vs sparse vs random\n"
      "  import      build a workspace from outside embeddings / SAE / backbone files\n"
      "  export      a feature's grid as PNG, a contact sheet, CSV statistics, notes\n\n"
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
  static const std::map<std::string, std::function<int(const std::vector<std::string>&)>> commands =
      {{"gui", cmdGui},          {"demo-data", cmdDemoData},
       {"train", cmdTrain},      {"embed", cmdEmbed},
       {"sae", cmdSae},          {"run", cmdRun},
       {"topk", cmdTopk},        {"stats", cmdStats},
       {"import", cmdImport},    {"export", cmdExport},
       {"sae-eval", cmdSaeEval}, {"interp", cmdInterp}};
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
