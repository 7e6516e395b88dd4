#include "plot.h"

#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ui {

namespace {

std::string fmtValue(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5))
    std::snprintf(buf, sizeof buf, "%.3g", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace

std::string shortNumber(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e9)
    std::snprintf(buf, sizeof buf, "%.3gG", v / 1e9);
  else if (a >= 1e6)
    std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
  else if (a >= 1e4)
    std::snprintf(buf, sizeof buf, "%.3gk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

void linePlot(const char* id, const std::string& title, const std::vector<double>& xs,
              const std::vector<double>& ys, float width, float height, bool logY) {
  ImGui::PushID(id);
  if (width <= 0) width = ImGui::GetContentRegionAvail().x;
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  const ImVec2 size(width, height);
  ImGui::InvisibleButton("plot", size);
  const bool hovered = ImGui::IsItemHovered();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImGuiStyle& st = ImGui::GetStyle();
  const ImU32 bg = ImGui::GetColorU32(ImGuiCol_FrameBg);
  const ImU32 border = ImGui::GetColorU32(ImGuiCol_Border);
  const ImU32 text = ImGui::GetColorU32(ImGuiCol_Text);
  const ImU32 dim = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  const ImU32 line = ImGui::GetColorU32(ImGuiCol_PlotLines);
  const ImVec2 p1(p0.x + size.x, p0.y + size.y);
  dl->AddRectFilled(p0, p1, bg, st.FrameRounding);
  dl->AddRect(p0, p1, border, st.FrameRounding);

  const float lh = ImGui::GetTextLineHeight();
  dl->AddText(ImVec2(p0.x + 6, p0.y + 3), text, title.c_str());

  std::vector<double> vx, vy;
  vx.reserve(ys.size());
  vy.reserve(ys.size());
  for (size_t i = 0; i < ys.size() && i < xs.size(); ++i) {
    double y = ys[i];
    if (!std::isfinite(y)) continue;
    if (logY) {
      if (y <= 0) continue;
      y = std::log10(y);
    }
    vx.push_back(xs[i]);
    vy.push_back(y);
  }
  if (vy.empty()) {
    const char* msg = "no data yet";
    const ImVec2 ts = ImGui::CalcTextSize(msg);
    dl->AddText(ImVec2(p0.x + (size.x - ts.x) / 2, p0.y + (size.y - ts.y) / 2), dim, msg);
    ImGui::PopID();
    return;
  }
  const auto [ymin_it, ymax_it] = std::minmax_element(vy.begin(), vy.end());
  double ylo = *ymin_it, yhi = *ymax_it;
  if (yhi - ylo < 1e-12) {
    ylo -= 0.5;
    yhi += 0.5;
  }
  const double xlo = vx.front(), xhi = std::max(vx.back(), vx.front() + 1e-9);
  // Plot area below the title, right margin for labels.
  const float labelW = ImGui::CalcTextSize("-0.0000e-00").x * 0.8f;
  const ImVec2 a(p0.x + 6, p0.y + lh + 8);
  const ImVec2 b(p1.x - labelW - 6, p1.y - 6);
  auto toScreen = [&](double x, double y) {
    const float fx = static_cast<float>((x - xlo) / (xhi - xlo));
    const float fy = static_cast<float>((y - ylo) / (yhi - ylo));
    return ImVec2(a.x + fx * (b.x - a.x), b.y - fy * (b.y - a.y));
  };
  dl->AddLine(ImVec2(a.x, a.y), ImVec2(b.x, a.y), border);
  dl->AddLine(ImVec2(a.x, b.y), ImVec2(b.x, b.y), border);
  auto label = [&](double y) { return fmtValue(logY ? std::pow(10.0, y) : y); };
  dl->AddText(ImVec2(b.x + 4, a.y - lh / 2), dim, label(yhi).c_str());
  dl->AddText(ImVec2(b.x + 4, b.y - lh / 2), dim, label(ylo).c_str());
  const std::string latest = "latest " + label(vy.back());
  const ImVec2 ls = ImGui::CalcTextSize(latest.c_str());
  dl->AddText(ImVec2(p1.x - ls.x - 6, p0.y + 3), dim, latest.c_str());

  // At most ~2 points per pixel column.
  const size_t n = vy.size();
  const size_t stride = std::max<size_t>(1, n / std::max(1.0f, (b.x - a.x) * 2));
  std::vector<ImVec2> pts;
  pts.reserve(n / stride + 2);
  for (size_t i = 0; i < n; i += stride) pts.push_back(toScreen(vx[i], vy[i]));
  if ((n - 1) % stride) pts.push_back(toScreen(vx[n - 1], vy[n - 1]));
  dl->PushClipRect(ImVec2(a.x - 1, a.y - 1), ImVec2(b.x + 1, b.y + 1), true);
  if (pts.size() == 1)
    dl->AddCircleFilled(pts[0], 2.5f, line);
  else
    dl->AddPolyline(pts.data(), static_cast<int>(pts.size()), line, 0, 1.5f);
  dl->PopClipRect();

  if (hovered) {
    const float mx = ImGui::GetIO().MousePos.x;
    const double x = xlo + (mx - a.x) / std::max(1.0f, b.x - a.x) * (xhi - xlo);
    const size_t i =
        std::min<size_t>(n - 1, std::lower_bound(vx.begin(), vx.end(), x) - vx.begin());
    const ImVec2 s = toScreen(vx[i], vy[i]);
    dl->AddLine(ImVec2(s.x, a.y), ImVec2(s.x, b.y), dim);
    dl->AddCircleFilled(s, 3.5f, line);
    ImGui::SetTooltip("step %.0f\n%s = %s", vx[i], title.c_str(), label(vy[i]).c_str());
  }
  ImGui::PopID();
}

void histogramPlot(const char* id, const std::vector<long long>& counts, double lo, double hi,
                   float width, float height) {
  ImGui::PushID(id);
  if (width <= 0) width = ImGui::GetContentRegionAvail().x;
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  const ImVec2 size(width, height);
  ImGui::InvisibleButton("hist", size);
  const bool hovered = ImGui::IsItemHovered();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImGuiStyle& st = ImGui::GetStyle();
  const ImVec2 p1(p0.x + size.x, p0.y + size.y);
  const float lh = ImGui::GetTextLineHeight();
  dl->AddRectFilled(p0, p1, ImGui::GetColorU32(ImGuiCol_FrameBg), st.FrameRounding);
  const ImU32 dim = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  if (counts.empty()) {
    dl->AddText(ImVec2(p0.x + 6, p0.y + 4), dim, "no histogram");
    ImGui::PopID();
    return;
  }
  const ImVec2 a(p0.x + 4, p0.y + 4);
  const ImVec2 b(p1.x - 4, p1.y - lh - 4);
  long long maxc = 1;
  for (long long c : counts) maxc = std::max(maxc, c);
  const int nb = static_cast<int>(counts.size());
  const float bw = (b.x - a.x) / nb;
  // sqrt scale: a feature's activations are heavy-tailed; the tail stays visible.
  const double top = std::sqrt(static_cast<double>(maxc));
  int hoverBin = -1;
  if (hovered) {
    const float mx = ImGui::GetIO().MousePos.x;
    hoverBin = std::clamp(static_cast<int>((mx - a.x) / bw), 0, nb - 1);
  }
  for (int i = 0; i < nb; ++i) {
    const float h =
        static_cast<float>(std::sqrt(static_cast<double>(counts[i])) / top) * (b.y - a.y);
    const ImU32 col =
        ImGui::GetColorU32(i == hoverBin ? ImGuiCol_PlotHistogramHovered : ImGuiCol_PlotHistogram);
    if (counts[i] > 0)
      dl->AddRectFilled(ImVec2(a.x + i * bw + 1, std::min(b.y - 1, b.y - h)),
                        ImVec2(a.x + (i + 1) * bw - 1, b.y), col);
  }
  dl->AddLine(ImVec2(a.x, b.y), ImVec2(b.x, b.y), ImGui::GetColorU32(ImGuiCol_Border));
  const std::string l = fmtValue(lo), r = fmtValue(hi);
  dl->AddText(ImVec2(a.x, b.y + 2), dim, l.c_str());
  dl->AddText(ImVec2(b.x - ImGui::CalcTextSize(r.c_str()).x, b.y + 2), dim, r.c_str());
  const char* mid = "activation (bar height: sqrt count)";
  const float mw = ImGui::CalcTextSize(mid).x;
  if (mw < (b.x - a.x) * 0.6f) dl->AddText(ImVec2((a.x + b.x - mw) / 2, b.y + 2), dim, mid);
  if (hoverBin >= 0) {
    const double w = (hi - lo) / nb;
    ImGui::SetTooltip("[%s, %s): %lld images", fmtValue(lo + hoverBin * w).c_str(),
                      fmtValue(lo + (hoverBin + 1) * w).c_str(), counts[hoverBin]);
  }
  ImGui::PopID();
}

}  // namespace ui
