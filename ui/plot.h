// ui/plot.h — small plots drawn with ImDrawList (ImPlot is not packaged in Debian 12).
// Thread-safety: UI thread only, inside an ImGui frame.
#pragma once
#include <string>
#include <vector>

namespace ui {

// A line plot of `ys` against `xs` filling width x height (0: available width), with min/max
// labels, the latest value and a hover read-out. `logY` plots log10 of positive values.
void linePlot(const char* id, const std::string& title, const std::vector<double>& xs,
              const std::vector<double>& ys, float width, float height, bool logY = false);

// A bar histogram of `counts` over [lo, hi], with a hover read-out of each bin.
void histogramPlot(const char* id, const std::vector<long long>& counts, double lo, double hi,
                   float width, float height);

// "1.23k", "4.5M": short numbers for labels.
std::string shortNumber(double v);

}  // namespace ui
