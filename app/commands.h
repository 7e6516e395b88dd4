// app/commands.h — one function per subcommand: args are the words after the command name;
// returns the exit code; throws UsageError / engine::Error, which cli.cpp turns into one line.
#pragma once
#include <string>
#include <vector>

namespace app {

using Args = std::vector<std::string>;

int cmdGui(const Args& args);       // cli.cpp
int cmdDemoData(const Args& args);  // cmd_pipeline.cpp
int cmdTrain(const Args& args);
int cmdEmbed(const Args& args);
int cmdSae(const Args& args);
int cmdRun(const Args& args);
int cmdTopk(const Args& args);     // cmd_features.cpp
int cmdStats(const Args& args);    // cmd_stats.cpp
int cmdSaeEval(const Args& args);  // cmd_sae_eval.cpp
int cmdInterp(const Args& args);
int cmdImport(const Args& args);  // cmd_import.cpp
int cmdExport(const Args& args);

}  // namespace app
