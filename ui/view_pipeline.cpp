// ui/view_pipeline.cpp — stage settings, Run / Cancel, live progress, loss curves, log.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "app.h"
#include "engine/fsutil.h"
#include "engine/import.h"
#include "engine/pipeline.h"
#include "engine/sae_eval.h"
#include "plot.h"

namespace ui {

namespace {

ImVec4 statusColor(const std::string& s) {
  if (s == "done") return ImVec4(0.45f, 0.85f, 0.50f, 1);
  if (s == "failed") return ImVec4(1.0f, 0.45f, 0.40f, 1);
  if (s == "cancelled") return ImVec4(1.0f, 0.75f, 0.35f, 1);
  if (s == "running") return ImVec4(0.45f, 0.75f, 1.0f, 1);
  return ImVec4(0.6f, 0.6f, 0.65f, 1);
}

const engine::StageStatus* findStage(const std::vector<engine::StageStatus>& st, const char* name) {
  for (const auto& s : st)
    if (s.name == name) return &s;
  return nullptr;
}

// Label column + widget column rows inside a two-column table.
bool rowLabel(const char* label, const char* help) {
  ImGui::TableNextRow();
  ImGui::TableSetColumnIndex(0);
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted(label);
  if (help && ImGui::IsItemHovered()) ImGui::SetTooltip("%s", help);
  ImGui::TableSetColumnIndex(1);
  ImGui::SetNextItemWidth(-1);
  return true;
}

void intField(const char* label, const char* id, int* v, int lo, int hi, const char* help) {
  rowLabel(label, help);
  if (ImGui::InputInt(id, v, 0, 0)) *v = std::clamp(*v, lo, hi);
}

void int64Field(const char* label, const char* id, int64_t* v, const char* help) {
  rowLabel(label, help);
  long long x = *v;
  if (ImGui::InputScalar(id, ImGuiDataType_S64, &x)) *v = std::max(0LL, x);
}

void doubleField(const char* label, const char* id, double* v, const char* fmt, const char* help) {
  rowLabel(label, help);
  ImGui::InputDouble(id, v, 0, 0, fmt);
}

void comboField(const char* label, const char* id, std::string* v,
                const std::vector<const char*>& options, const char* help) {
  rowLabel(label, help);
  if (ImGui::BeginCombo(id, v->c_str())) {
    for (const char* o : options)
      if (ImGui::Selectable(o, *v == o)) *v = o;
    ImGui::EndCombo();
  }
}

// Under a precision combo: fp16 or tf32 where the device is the CPU would stop the stage at its
// start.
void cudaOnlyHint(const std::string& precision, const std::string& device) {
  if ((precision != "fp16" && precision != "tf32") || device.rfind("cpu", 0) != 0) return;
  ImGui::TableNextRow();
  ImGui::TableSetColumnIndex(1);
  ImGui::TextColored(ImVec4(0.95f, 0.75f, 0.3f, 1), "%s runs on CUDA only: use bf16 or fp32 here",
                     precision.c_str());
}

bool beginFields(const char* id, float scale) {
  if (!ImGui::BeginTable(id, 2, ImGuiTableFlags_SizingStretchProp)) return false;
  ImGui::TableSetupColumn("label", ImGuiTableColumnFlags_WidthFixed, 150 * scale);
  ImGui::TableSetupColumn("value", ImGuiTableColumnFlags_WidthStretch);
  return true;
}

// Explained variance against L0 for every SAE of the workspace (held-out metrics).
void drawEvVsL0(const nlohmann::json& runs, const std::string& current, float scale) {
  std::vector<std::pair<double, double>> pts;
  std::vector<std::string> names;
  for (auto it = runs.begin(); it != runs.end(); ++it) {
    const auto& m = (*it).value("metrics", nlohmann::json::object());
    if (!m.contains("l0") || !m["l0"].is_number() || !m.contains("explained_variance") ||
        !m["explained_variance"].is_number())
      continue;
    pts.emplace_back(m["l0"].get<double>(), m["explained_variance"].get<double>());
    names.push_back(it.key());
  }
  if (pts.empty()) return;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& [x, y] : pts) {
    x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  }
  if (x1 - x0 < 1e-9) x0 -= 1, x1 += 1;
  // An SAE worse than the mean (an untrained or diverged one) can have an explained variance of
  // -1e6: below -1 the axis stops, and such runs sit on its bottom edge as triangles.
  const double yFloor = -1;
  const int below = static_cast<int>(
      std::count_if(pts.begin(), pts.end(), [&](const auto& p) { return p.second < yFloor; }));
  y0 = std::max(y0, yFloor);
  y1 = std::max(y1, y0);
  if (y1 - y0 < 1e-9) y0 -= 0.05, y1 += 0.05;
  char belowNote[64] = "";
  if (below > 0)
    std::snprintf(belowNote, sizeof belowNote, "; %d run(s) below -1 on the bottom edge", below);
  ImGui::PushTextWrapPos(0);
  ImGui::TextDisabled("explained variance (y, %.3f..%.3f%s) against L0 (x, %.1f..%.1f), held out",
                      y0, y1, belowNote, x0, x1);
  ImGui::PopTextWrapPos();
  const ImVec2 size(ImGui::GetContentRegionAvail().x, 140 * scale);
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  ImGui::InvisibleButton("##evl0", size);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRect(p0, ImVec2(p0.x + size.x, p0.y + size.y), IM_COL32(90, 90, 100, 255));
  const float pad = 8 * scale;
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  for (size_t i = 0; i < pts.size(); ++i) {
    const float px = p0.x + pad + float((pts[i].first - x0) / (x1 - x0)) * (size.x - 2 * pad);
    const bool off = pts[i].second < y0;
    const float py = p0.y + size.y - pad -
                     float((std::max(pts[i].second, y0) - y0) / (y1 - y0)) * (size.y - 2 * pad);
    const bool cur = names[i] == current;
    const ImU32 col = cur ? IM_COL32(255, 200, 80, 255) : IM_COL32(110, 180, 255, 255);
    const float r = (cur ? 5 : 3.5f) * scale;
    if (off)  // off the scale: a triangle pointing down
      dl->AddTriangleFilled(ImVec2(px - r, py - r), ImVec2(px + r, py - r), ImVec2(px, py + r),
                            col);
    else
      dl->AddCircleFilled(ImVec2(px, py), r, col);
    if (ImGui::IsItemHovered() && std::abs(mouse.x - px) < 6 * scale &&
        std::abs(mouse.y - py) < 6 * scale)
      ImGui::SetTooltip("%s\nL0 %.2f, explained variance %.4f", names[i].c_str(), pts[i].first,
                        pts[i].second);
  }
}

// The workspace's SAEs with their held-out metrics; "Use" makes one the current SAE.
void drawSaeRuns(App& app) {
  if (!app.ws) return;
  const nlohmann::json& m = app.ws->manifest();
  if (!m.contains("sae_runs") || !m["sae_runs"].is_object() || m["sae_runs"].empty()) return;
  const std::string current = m.value("current_sae", std::string());
  const auto& runs = m["sae_runs"];
  ImGui::Spacing();
  ImGui::TextUnformatted("SAEs in this workspace (metrics on the held-out split)");
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerH |
                                ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_ScrollY;
  const float h = std::min<float>(ImGui::GetTextLineHeightWithSpacing() * (runs.size() + 1.5f),
                                  220 * app.scale);
  if (ImGui::BeginTable("saeruns", 6, flags, ImVec2(0, h))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    for (const char* c : {"name", "L0", "expl. var.", "dead", "dense>10%", ""})
      ImGui::TableSetupColumn(c);
    ImGui::TableHeadersRow();
    std::string use;
    for (auto it = runs.begin(); it != runs.end(); ++it) {
      const auto& mt = (*it).value("metrics", nlohmann::json::object());
      auto num = [&](const char* k) {
        return mt.contains(k) && mt[k].is_number() ? mt[k].get<double>() : NAN;
      };
      ImGui::PushID(it.key().c_str());
      ImGui::TableNextRow();
      ImGui::TableSetColumnIndex(0);
      if (it.key() == current)
        ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "%s", it.key().c_str());
      else
        ImGui::TextUnformatted(it.key().c_str());
      if (ImGui::IsItemHovered())
        ImGui::SetTooltip("%s%s", (*it).value("variant", std::string("?")).c_str(),
                          it.key() == current ? " (current)" : "");
      ImGui::TableSetColumnIndex(1);
      ImGui::Text("%.2f", num("l0"));
      ImGui::TableSetColumnIndex(2);
      ImGui::Text("%.4f", num("explained_variance"));
      ImGui::TableSetColumnIndex(3);
      ImGui::Text("%.1f%%", 100 * num("dead_fraction"));
      ImGui::TableSetColumnIndex(4);
      ImGui::Text("%.1f%%", 100 * num("dense_fraction_10pct"));
      ImGui::TableSetColumnIndex(5);
      if (it.key() != current && ImGui::SmallButton("Use")) use = it.key();
      ImGui::PopID();
    }
    ImGui::EndTable();
    if (!use.empty()) {
      try {
        engine::selectSae(app.ws->dir(), use);
        app.reloadWorkspace();
        app.loadWorkspaceData();
      } catch (const std::exception& e) {
        app.message(Message::Error, e.what());
      }
    }
  }
  drawEvVsL0(runs, current, app.scale);
}

// An interrupted run of `stage` (killed, cancelled, crashed) left a checkpoint in
// WS/checkpoints/: a line offering to go on (one stat per frame). Widget: resume_<stage>.
template <class Submit>
void offerResume(App& app, const std::string& stage, const char* what, const char* button,
                 Submit submit) {
  if (!app.ws || app.pipeline.isBusy() ||
      !engine::fileExists(app.ws->path("checkpoints/" + stage + ".json")))
    return;
  ImGui::TextColored(ImVec4(0.95f, 0.75f, 0.3f, 1), "An interrupted %s run was saved.", what);
  ImGui::SameLine();
  if (ImGui::SmallButton(button)) submit(app);
  app.hook(("resume_" + stage).c_str());
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("Continues from %s with the settings it was started with",
                      app.ws->path("checkpoints/" + stage + ".ckpt").c_str());
}

}  // namespace

void PipelineView::draw() {
  App& app = m_app;
  if (!app.ws) {
    ImGui::Dummy(ImVec2(0, 40 * app.scale));
    ImGui::Indent(40 * app.scale);
    if (app.fontLarge) ImGui::PushFont(app.fontLarge);
    ImGui::TextUnformatted("No workspace open");
    if (app.fontLarge) ImGui::PopFont();
    ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + 640 * app.scale);
    ImGui::TextDisabled(
        "A workspace is a folder that keeps everything one study makes: the fine-tuned backbone, "
        "the embeddings, the sparse autoencoder, notes and ratings. Type a folder in the bar "
        "above and press Create, or pick one:");
    ImGui::PopTextWrapPos();
    if (ImGui::Button("Create or open a workspace…"))
      app.m_bar.openFolderBrowser("Open or create a workspace", app.m_bar.pathInput,
                                  [&app](const std::string& d) {
                                    app.openWorkspace(d, !engine::fileExists(d + "/manifest.json"));
                                  });
    app.hook("empty_open");
    if (!app.config.recentWorkspaces.empty()) {
      ImGui::Spacing();
      ImGui::TextUnformatted("Recent workspaces");
      for (const auto& r : app.config.recentWorkspaces) {
        if (ImGui::Selectable(r.c_str(), false, 0, ImVec2(640 * app.scale, 0))) {
          const std::string dir = r;
          app.openWorkspace(dir, false);
          break;
        }
      }
    }
    ImGui::Unindent(40 * app.scale);
    return;
  }
  const float leftW = std::max(420 * app.scale, ImGui::GetContentRegionAvail().x * 0.40f);
  ImGui::BeginChild("settings", ImVec2(leftW, 0), true);
  drawSettings();
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("progress", ImVec2(0, 0), true);
  drawProgress();
  ImGui::EndChild();
  drawDemoPopup();
}

void PipelineView::drawSettings() {
  App& app = m_app;
  const bool busy = app.pipeline.isBusy();
  const float s = app.scale;

  // Run all / Cancel first: the actions most used.
  ImGui::BeginDisabled(busy);
  if (ImGui::Button("▶ Run all stages")) app.runStages("all");
  app.hook("run_all");
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::BeginDisabled(!busy);
  ImGui::PushStyleColor(ImGuiCol_Button, ImVec4(0.55f, 0.22f, 0.22f, 1));
  ImGui::PushStyleColor(ImGuiCol_ButtonHovered, ImVec4(0.68f, 0.28f, 0.28f, 1));
  if (ImGui::Button("■ Cancel")) app.cancelJob();
  app.hook("cancel");
  ImGui::PopStyleColor(2);
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::TextDisabled(busy ? "settings are locked while a run is in progress"
                           : "fine-tune → embed → SAE");
  // Interrupted runs (killed, cancelled, crashed) that left a checkpoint: first, where they are
  // seen.
  offerResume(app, "train", "fine-tuning", "Resume fine-tuning", [](App& a) {
    engine::TrainConfig t;  // the settings come from the checkpoint
    t.workspace = a.ws->dir();
    t.run = a.runOpts;
    t.resume = true;
    a.pipeline.submit("train", [t](engine::JobContext& ctx) { engine::runTrain(t, ctx); });
  });
  offerResume(app, "sae", "SAE", "Resume SAE training", [](App& a) {
    engine::SaeConfig c;  // the settings come from the checkpoint
    c.workspace = a.ws->dir();
    c.run = a.runOpts;
    c.resume = true;
    a.pipeline.submit("sae", [c](engine::JobContext& ctx) { engine::runSae(c, ctx); });
  });
  ImGui::Spacing();

  ImGui::BeginDisabled(busy);
  // Data
  if (ImGui::CollapsingHeader("Data and device", ImGuiTreeNodeFlags_DefaultOpen)) {
    if (beginFields("data", s)) {
      rowLabel("Image folder",
               "Folder of images (CelebA: img_align_celeba). Sorted as "
               "torchvision's ImageFolder sorts them.");
      const float bw = ImGui::CalcTextSize("Browse…").x + ImGui::GetStyle().FramePadding.x * 2;
      ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - bw -
                              ImGui::GetStyle().ItemSpacing.x);
      ImGui::InputTextWithHint("##data", "folder of images", &app.train.data);
      ImGui::SameLine();
      if (ImGui::Button("Browse…##data"))
        app.m_bar.openFolderBrowser("Choose the image folder", app.train.data,
                                    [&app](const std::string& d) { app.train.data = d; });
      ImGui::TableNextRow();
      ImGui::TableSetColumnIndex(1);
      if (ImGui::Button("Generate demo data…")) m_demoOpen = true;
      app.hook("demo_data");
      ImGui::SameLine();
      ImGui::TextDisabled("synthetic faces");

      const std::string before = app.runOpts.device;
      std::vector<const char*> devices = {"auto", "cpu", "cuda"};
      comboField("Device", "##device", &app.runOpts.device, devices,
                 "auto: CUDA when LibTorch has a GPU, else the CPU");
      int threads = app.runOpts.threads;
      intField("CPU threads", "##threads", &threads, 0, 256, "0 = all cores (or $OMP_NUM_THREADS)");
      const bool threadsChanged = threads != app.runOpts.threads;
      app.runOpts.threads = threads;
      if (before != app.runOpts.device || threadsChanged) app.refreshDevice();
      rowLabel("Seed", "Random seed of shuffling and initialisation");
      long long seed = static_cast<long long>(app.runOpts.seed);
      if (ImGui::InputScalar("##seed", ImGuiDataType_S64, &seed))
        app.runOpts.seed = static_cast<uint64_t>(std::max(0LL, seed));
      ImGui::TableNextRow();
      ImGui::TableSetColumnIndex(1);
      ImGui::TextDisabled("→ %s",
                          app.deviceDescription.empty() ? "…" : app.deviceDescription.c_str());
      ImGui::EndTable();
    }
  }

  auto stageHeader = [&](const char* name, const char* title, const char* hookName) {
    const engine::StageStatus* st = findStage(app.stages, name);
    const std::string status = st ? st->status : "missing";
    ImGui::PushID(name);
    const bool open = ImGui::CollapsingHeader(
        title, ImGuiTreeNodeFlags_DefaultOpen | ImGuiTreeNodeFlags_AllowItemOverlap);
    const float runW = ImGui::CalcTextSize("Run").x + ImGui::GetStyle().FramePadding.x * 2;
    const std::string badge = status == "done" ? "✓ done" : status;
    const float badgeW = ImGui::CalcTextSize(badge.c_str()).x;
    ImGui::SameLine(ImGui::GetContentRegionMax().x - runW - badgeW - 20 * s);
    ImGui::TextColored(statusColor(status), "%s", badge.c_str());
    if (st && !st->detail.empty() && ImGui::IsItemHovered())
      ImGui::SetTooltip("%s", st->detail.c_str());
    ImGui::SameLine(ImGui::GetContentRegionMax().x - runW);
    if (ImGui::SmallButton("Run")) app.runStages(name);
    app.hook(hookName);
    ImGui::PopID();
    if (open && st && !st->detail.empty()) ImGui::TextDisabled("%s", st->detail.c_str());
    return open;
  };

  if (stageHeader("train", "1  Fine-tune the backbone", "run_train") && beginFields("train", s)) {
    intField("Epochs", "##epochs", &app.train.epochs, 1, 10000, "passes over the data");
    intField("Batch", "##batch", &app.train.batch, 2, 65536,
             "images per step; the contrastive loss needs at least 2");
    doubleField("Learning rate", "##lr", &app.train.lr, "%.2e", "Adam learning rate");
    intField("Image size", "##size", &app.train.imageSize, 32, 1024,
             "images are resized to this square (reference: 224)");
    int64Field("Limit", "##limit", &app.train.limit, "use only the first N images (0 = all)");
    rowLabel("Start weights", "torchvision resnet18 state_dict (.pth); empty = random init");
    ImGui::InputTextWithHint("##weights", "resnet18-f37072fd.pth (empty: random init)",
                             &app.train.weights);
    {
      // What the backbone will start from: the given file, torchvision's cached checkpoint, or
      // random weights (a few stat calls; cheap enough per frame).
      const std::string w = app.train.weights.empty() ? engine::findTorchvisionResnet18()
                                                      : app.train.weights;
      if (w.empty() || w == "none")
        ImGui::TextDisabled("starts random (no ImageNet checkpoint found)");
      else
        ImGui::TextDisabled("starts pretrained: %s", w.c_str());
    }
    comboField("Normalise", "##norm", &app.train.normalize, {"none", "imagenet"},
               "none: the reference preprocessing (ToTensor only)");
    comboField("Precision", "##prec", &app.train.precision, {"fp32", "bf16", "fp16", "tf32"},
               "fp32 is the reference; bf16 is faster on recent CPUs and GPUs; fp16 (CUDA only, "
               "with loss scaling) for GPUs without bf16; tf32 (CUDA only): fp32 whose products "
               "use TF32 tensor cores (Ampere and later)");
    cudaOnlyHint(app.train.precision, app.deviceDescription);
    ImGui::EndTable();
  }
  if (stageHeader("embed", "2  Compute embeddings", "run_embed") && beginFields("embed", s)) {
    intField("Batch", "##ebatch", &app.embed.batch, 1, 65536, "images per forward pass");
    intField("Image size", "##esize", &app.embed.imageSize, 0, 1024,
             "0 = the size the backbone was trained at");
    comboField("Precision", "##eprec", &app.embed.precision, {"fp32", "bf16", "fp16", "tf32"},
               "fp16 and tf32 run on CUDA only");
    cudaOnlyHint(app.embed.precision, app.deviceDescription);
    ImGui::EndTable();
  }
  if (stageHeader("sae", "3  Train the sparse autoencoder", "run_sae") && beginFields("sae", s)) {
    std::string variant = app.sae.variant;
    comboField("Variant", "##variant", &variant, {"seed", "l1", "topk", "batchtopk"},
               "seed: the reference SAE (DESIGN.md); l1: the April-2024 recipe; topk / "
               "batchtopk: TopK SAEs with AuxK for dead latents. Choosing one loads its defaults.");
    if (variant != app.sae.variant) {
      engine::SaeConfig d = engine::saeDefaults(variant);
      d.workspace = app.sae.workspace;
      d.run = app.sae.run;
      d.precision = app.sae.precision;
      app.sae = d;
    }
    const bool modern = app.sae.variant != "seed";
    const bool topk = app.sae.variant == "topk" || app.sae.variant == "batchtopk";
    intField("Features", "##features", &app.sae.features, 1, 1 << 20, "SAE dictionary size F");
    if (modern)
      int64Field("Steps", "##ssteps", &app.sae.steps, "optimiser steps (0 = from epochs)");
    intField("Epochs", "##sepochs", &app.sae.epochs, modern ? 0 : 1, 100000,
             modern ? "passes over the training split (used when Steps is 0)" : nullptr);
    intField("Batch", "##sbatch", &app.sae.batch, 1, 1 << 20, nullptr);
    doubleField("Learning rate", "##slr", &app.sae.lr, "%.2e",
                modern ? "Adam learning rate (0 = 2e-4·sqrt(16384/F), scaled with width)"
                       : "Adam learning rate (reference 1e-5)");
    if (topk) {
      intField("k", "##k", &app.sae.k, 1, 1 << 20, "active latents per vector");
      intField("AuxK k_aux", "##kaux", &app.sae.kAux, 0, 1 << 20,
               "dead latents used to model the residual");
      doubleField("AuxK α", "##alpha", &app.sae.auxAlpha, "%.4g", "weight of the AuxK loss");
    } else {
      doubleField("λ (L1)", "##l1", &app.sae.l1, "%.3g",
                  modern ? "weight of Σ f_i ‖W_d,i‖ (warmed up over the first 5% of steps)"
                         : "sparsity weight of the L1 penalty");
    }
    if (!modern) doubleField("Weight decay", "##wd", &app.sae.weightDecay, "%.2e", nullptr);
    comboField("Precision", "##sprec", &app.sae.precision, {"fp32", "bf16", "tf32"},
               "fp32 is the reference; bf16 runs the products in bfloat16 (AMX, tensor cores), "
               "about twice as fast on such hardware; tf32 (CUDA only) rounds their operands to "
               "TF32 on the tensor cores");
    cudaOnlyHint(app.sae.precision, app.deviceDescription);
    rowLabel("Run name", "Each SAE is kept as saes/NAME.pt; the last trained is the current one");
    ImGui::InputTextWithHint("##sname", engine::saeRunName(app.sae).c_str(), &app.sae.name);
    ImGui::EndTable();
    drawSaeRuns(app);
  }
  ImGui::EndDisabled();
}

void PipelineView::drawProgress() {
  App& app = m_app;
  const float s = app.scale;
  const bool busy = app.pipeline.isBusy();
  if (!busy && app.lastJob.id == 0) {
    if (app.fontLarge) ImGui::PushFont(app.fontLarge);
    ImGui::TextUnformatted("Progress");
    if (app.fontLarge) ImGui::PopFont();
    ImGui::PushTextWrapPos(0);
    ImGui::TextDisabled(
        "Nothing has run in this session yet. Run all stages fine-tunes the backbone, writes one "
        "embedding per image and trains the SAE; each stage can also run alone. Progress, speed, "
        "time left and the loss curves appear here while the worker trains; Cancel stops at the "
        "next batch and keeps the workspace as it was.");
    ImGui::PopTextWrapPos();
    ImGui::Spacing();
    for (const auto& st : app.stages) {
      ImGui::TextColored(statusColor(st.status), "%s  %s", st.status == "done" ? "✓" : "○",
                         st.name.c_str());
      ImGui::SameLine(120 * s);
      ImGui::TextDisabled("%s", st.detail.empty() ? st.status.c_str() : st.detail.c_str());
    }
    drawRecordedCurves();
    return;
  }
  // A snapshot copies the curve: take one only when the worker published something new.
  const auto ctx = app.pipeline.context();
  const uint64_t version = ctx ? ctx->version() : 0;
  if (ctx && (version != m_snapVersion || ctx.get() != m_snapCtx)) {
    m_snap = ctx->snapshot();
    m_snapVersion = version;
    m_snapCtx = ctx.get();
    m_series.clear();
    for (const auto& p : m_snap.curve)
      for (const auto& [k, v] : p.values) {
        auto& sr = m_series[k];
        sr.first.push_back(static_cast<double>(p.step));
        sr.second.push_back(v);
      }
    m_log = ctx->logLines();
  }
  const engine::ProgressSnapshot& snap = m_snap;

  if (app.fontLarge) ImGui::PushFont(app.fontLarge);
  if (busy)
    ImGui::Text("Running: %s",
                snap.stage.empty() ? app.pipeline.currentName().c_str() : snap.stage.c_str());
  else
    ImGui::Text("Last run: %s — %s", app.lastJob.name.c_str(),
                engine::JobRunner::stateName(app.lastJob.state));
  if (app.fontLarge) ImGui::PopFont();
  if (busy && app.pipeline.queued() > 0) {
    ImGui::SameLine();
    ImGui::TextDisabled("(%zu more stage%s queued)", app.pipeline.queued(),
                        app.pipeline.queued() > 1 ? "s" : "");
  }
  const float frac = snap.total > 0 ? static_cast<float>(snap.done) / snap.total : 0;
  char overlay[96];
  std::snprintf(overlay, sizeof overlay, "%lld / %lld %s", static_cast<long long>(snap.done),
                static_cast<long long>(snap.total), snap.unit.c_str());
  ImGui::ProgressBar(frac, ImVec2(-1, 0), snap.total > 0 ? overlay : "starting…");
  if (ImGui::BeginTable("facts", 4, ImGuiTableFlags_SizingStretchSame)) {
    auto fact = [&](const char* label, const std::string& value) {
      ImGui::TableNextColumn();
      ImGui::TextDisabled("%s", label);
      ImGui::TextUnformatted(value.c_str());
    };
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.1f %s/s", snap.rate,
                  snap.unit.empty() ? "steps" : snap.unit.c_str());
    fact("speed", rate);
    fact("elapsed", engine::formatDuration(snap.elapsed));
    fact("time left", busy ? engine::formatDuration(snap.eta) : std::string("—"));
    fact("device", snap.device.empty() ? app.deviceDescription : snap.device);
    ImGui::EndTable();
  }
  if (!busy && app.lastJob.state == engine::JobRunner::State::Failed)
    ImGui::TextColored(ImVec4(1, 0.5f, 0.45f, 1), "%s", app.lastJob.error.c_str());
  if (!busy && app.lastJob.state == engine::JobRunner::State::Cancelled)
    ImGui::TextColored(ImVec4(1, 0.75f, 0.35f, 1),
                       "Cancelled: the workspace keeps its previous artifacts.");

  // Loss curves: one small plot per term (their scales differ by orders of magnitude).
  ImGui::Spacing();
  if (!snap.latest.empty()) {
    const int perRow = ImGui::GetContentRegionAvail().x > 700 * s ? 3 : 2;
    const float gap = ImGui::GetStyle().ItemSpacing.x;
    const float w = (ImGui::GetContentRegionAvail().x - gap * (perRow - 1)) / perRow;
    int i = 0;
    for (const auto& [key, sr] : m_series) {
      if (i % perRow) ImGui::SameLine();
      linePlot(key.c_str(), key, sr.first, sr.second, w, 150 * s);
      ++i;
    }
    for (const auto& [key, v] : snap.latest) {  // terms with a latest value but no curve yet
      if (m_series.count(key)) continue;
      if (i % perRow) ImGui::SameLine();
      linePlot(key.c_str(), key, {}, {}, w, 150 * s);
      ++i;
    }
  }
  ImGui::Spacing();
  ImGui::TextDisabled("Log");
  ImGui::BeginChild("log", ImVec2(0, 0), true, ImGuiWindowFlags_HorizontalScrollbar);
  ImGuiListClipper clip;
  clip.Begin(static_cast<int>(m_log.size()));
  while (clip.Step())
    for (int i = clip.DisplayStart; i < clip.DisplayEnd; ++i)
      ImGui::TextUnformatted(m_log[static_cast<size_t>(i)].c_str());
  if (ImGui::GetScrollY() >= ImGui::GetScrollMaxY() - 4) ImGui::SetScrollHereY(1.0f);
  ImGui::EndChild();
}

void PipelineView::drawRecordedCurves() {
  App& app = m_app;
  if (!app.data) return;
  const float s = app.scale;
  const struct {
    const char* stage;
    const char* title;
  } stages[] = {{"train", "Fine-tuning, last run (logs/train.jsonl)"},
                {"sae", "Sparse autoencoder, last run (logs/sae.jsonl)"}};
  for (const auto& st : stages) {
    auto it = app.data->curves.find(st.stage);
    if (it == app.data->curves.end() || it->second.empty()) continue;
    ImGui::Spacing();
    ImGui::Spacing();
    ImGui::TextUnformatted(st.title);
    const int perRow = ImGui::GetContentRegionAvail().x > 700 * s ? 3 : 2;
    const float gap = ImGui::GetStyle().ItemSpacing.x;
    const float w = (ImGui::GetContentRegionAvail().x - gap * (perRow - 1)) / perRow;
    int i = 0;
    ImGui::PushID(st.stage);
    for (const auto& [key, sr] : it->second) {
      if (i % perRow) ImGui::SameLine();
      linePlot(key.c_str(), key, sr.first, sr.second, w, 130 * s);
      ++i;
    }
    ImGui::PopID();
  }
}

void PipelineView::drawDemoPopup() {
  App& app = m_app;
  if (m_demoOpen) {
    ImGui::OpenPopup("Generate demo data");
    m_demoOpen = false;
  }
  ImGui::SetNextWindowSize(ImVec2(560 * app.scale, 0), ImGuiCond_Appearing);
  if (!ImGui::BeginPopupModal("Generate demo data", nullptr, ImGuiWindowFlags_NoSavedSettings))
    return;
  ImGui::PushTextWrapPos(0);
  ImGui::TextDisabled(
      "Writes a small synthetic image data set to try the whole pipeline in "
      "minutes. When it is done it becomes the image folder of this workspace.");
  ImGui::PopTextWrapPos();
  if (beginFields("demo", app.scale)) {
    rowLabel("Folder", nullptr);
    ImGui::InputText("##demoout", &app.demo.out);
    intField("Images", "##democount", &app.demo.count, 16, 1000000, nullptr);
    intField("Size (px)", "##demosize", &app.demo.size, 16, 1024, nullptr);
    ImGui::EndTable();
  }
  if (ImGui::Button("Generate")) {
    app.generateDemoData();
    ImGui::CloseCurrentPopup();
  }
  app.hook("demo_generate");
  ImGui::SameLine();
  if (ImGui::Button("Cancel")) ImGui::CloseCurrentPopup();
  ImGui::EndPopup();
}

}  // namespace ui
