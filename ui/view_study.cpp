// ui/view_study.cpp — the rating and results views. Until the blind-study issue lands they show
// an honest empty state that says what will be here and what the browser already records.
#include <imgui.h>

#include "app.h"

namespace ui {

namespace {

void emptyState(App& app, const char* title, const char* body) {
  ImGui::Dummy(ImVec2(0, 40 * app.scale));
  ImGui::Indent(40 * app.scale);
  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  ImGui::TextUnformatted(title);
  if (app.fontLarge) ImGui::PopFont();
  ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + 680 * app.scale);
  ImGui::TextDisabled("%s", body);
  ImGui::Spacing();
  ImGui::TextUnformatted("This view comes with the blind-study feature.");
  if (app.ws) {
    ImGui::Spacing();
    ImGui::Text("Features opened in the browser so far: %zu dense, %zu sparse.",
                app.notes.seenDense.size(), app.notes.seenSparse.size());
    ImGui::TextDisabled("A study leaves them out by default, so its ratings stay blind.");
  }
  ImGui::PopTextWrapPos();
  ImGui::Unindent(40 * app.scale);
}

}  // namespace

void drawRatingView(App& app) {
  emptyState(app, "Blind rating study",
             "Dense dimensions and sparse features are shuffled and shown as 4x4 grids without "
             "their kind; you rate each from 1 to 7: how visually consistent do its images "
             "appear? Every answer is written to the workspace as you give it.");
}

void drawResultsView(App& app) {
  emptyState(app, "Study results",
             "Histograms of the ratings of sparse and dense features side by side, the summary "
             "table, Student's and Welch's t-tests, Mann–Whitney U and Cohen's d — pooled and "
             "per rater.");
}

}  // namespace ui
