// ui/app.cpp — window, frame loop and the shared model.
//
// [SECTION] entry point
// [SECTION] window and style
// [SECTION] frame loop
// [SECTION] model actions
// [SECTION] scripting and state dump
#include "app.h"

#include <GL/gl.h>
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#if __has_include("engine/demo_data.h")
#include "engine/demo_data.h"
#define SAESCOPE_HAVE_DEMO_DATA 1
#endif
#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/image.h"
#include "engine/import.h"
#include "gui.h"
#include "study_views.h"
#include "texture.h"

namespace fs = std::filesystem;

namespace ui {

// [SECTION] entry point

int guiMain(const std::vector<std::string>& args) {
  GuiOptions o;
  try {
    o = parseGuiOptions(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saescope: error: %s\n", e.what());
    return 2;
  }
  if (o.help) {
    std::fputs(guiUsage().c_str(), stdout);
    return 0;
  }
  try {
    App app(std::move(o));
    return app.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saescope: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "saescope: error: unexpected failure in the GUI\n");
  }
  return 1;
}

const char* viewName(View v) {
  switch (v) {
    case View::Pipeline:
      return "pipeline";
    case View::Browser:
      return "browser";
    case View::Rating:
      return "rating";
    case View::Results:
      return "results";
  }
  return "pipeline";
}

std::string WorkspaceData::absolutePath(int64_t row) const {
  if (row < 0 || row >= static_cast<int64_t>(images.size()))
    throw engine::Error("image row " + std::to_string(row) + " is not in images.txt");
  const std::string& rel = images[static_cast<size_t>(row)];
  if (!rel.empty() && rel[0] == '/') return rel;
  return dataRoot.empty() ? rel : dataRoot + "/" + rel;
}

App::App(GuiOptions o) : opts(std::move(o)), m_start(std::chrono::steady_clock::now()) {
  config = loadUserConfig();
  train.data = config.lastDataFolder;
  const char* home = std::getenv("HOME");
  demo.out = std::string(home ? home : ".") + "/saescope-demo-data";
  study = std::make_unique<StudyViews>(*this);
}

App::~App() = default;

// [SECTION] window and style

namespace {

void glfwErrorCallback(int code, const char* desc) {
  // GLFW_NOT_INITIALIZED comes from glfwPostEmptyEvent after shutdown: harmless.
  if (code != GLFW_NOT_INITIALIZED) std::fprintf(stderr, "saescope: glfw: %s\n", desc);
}

bool isTensorFile(const std::string& p) {
  const std::string ext = fs::path(p).extension().string();
  return ext == ".pt" || ext == ".pth" || ext == ".npy" || ext == ".safetensors" || ext == ".bin";
}

// Dropped .pt/.npy/.safetensors files: imported into the open workspace (embeddings, SAE or
// backbone, told apart by their tensors) on the pipeline worker; the index reloads when done.
void importDropped(App& app, const std::vector<std::string>& files) {
  if (!app.ws) {
    app.message(Message::Warning, "Open or create a workspace first (Ctrl+O), then drop " +
                                      fs::path(files[0]).filename().string() + " again");
    return;
  }
  if (app.pipeline.isBusy()) {
    app.message(Message::Warning, "A run is in progress: drop the file again when it is done");
    return;
  }
  engine::ImportConfig cfg;
  cfg.workspace = app.ws->dir();
  cfg.data = app.ws->dataRoot().empty() ? app.train.data : app.ws->dataRoot();
  if (cfg.data.empty()) {
    app.message(Message::Warning,
                "Set the image folder the file belongs to first (drop the "
                "image folder onto the window), then drop the file again");
    return;
  }
  app.startImport(cfg, files);
}

}  // namespace

void App::startImport(const engine::ImportConfig& cfgIn,
                      const std::vector<std::string>& unclassified) {
  if (pipeline.isBusy()) {
    message(Message::Warning, "A run is in progress: import when it is done");
    return;
  }
  engine::ImportConfig cfg = cfgIn;
  const size_t count =
      unclassified.size() + !cfg.embeddings.empty() + !cfg.sae.empty() + !cfg.backbone.empty();
  message(Message::Info,
          "Importing " + std::to_string(count) + " file(s) into " + cfg.workspace + " …");
  std::error_code ec;
  const fs::path target = fs::absolute(cfg.workspace, ec).lexically_normal();
  const bool other = !ws || target != fs::absolute(ws->dir(), ec).lexically_normal();
  m_openAfterImport = other ? target.string() : "";
  m_switchAfterImport = true;
  pipeline.submit("import", [cfg, files = unclassified](engine::JobContext& ctx) mutable {
    for (const auto& f : files) {
      switch (engine::classifyArtifact(f)) {
        case engine::ArtifactKind::Embeddings:
          cfg.embeddings = f;
          break;
        case engine::ArtifactKind::Sae:
          cfg.sae = f;
          break;
        case engine::ArtifactKind::Backbone:
          cfg.backbone = f;
          break;
        case engine::ArtifactKind::Unknown:
          throw engine::Error(f +
                              ": holds neither embeddings [N, D], an SAE state_dict nor a "
                              "resnet18 state_dict");
      }
    }
    engine::runImport(cfg, ctx);
  });
}

namespace {

void dropCallback(GLFWwindow* w, int count, const char** paths) {
  auto* app = static_cast<App*>(glfwGetWindowUserPointer(w));
  if (!app || count <= 0) return;
  if (app->importDialogOpen()) {
    app->importDrop(std::vector<std::string>(paths, paths + count));
    return;
  }
  std::vector<std::string> files;
  for (int i = 0; i < count; ++i)
    if (isTensorFile(paths[i]) && !fs::is_directory(paths[i])) files.emplace_back(paths[i]);
  if (!files.empty())
    importDropped(*app, files);
  else
    app->openPath(paths[0]);
}

}  // namespace

bool App::initWindow() {
  glfwSetErrorCallback(glfwErrorCallback);
  if (!glfwInit()) {
    std::fprintf(stderr,
                 "saescope: error: cannot open a window: no display (set DISPLAY, or run "
                 "under `xvfb-run -a`; the command-line subcommands need no display)\n");
    return false;
  }
  glfwWindowHint(GLFW_SCALE_TO_MONITOR, GLFW_TRUE);
  const char* glsl = "#version 330 core";
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
  glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
  glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
  // An explicit --size wins; a one-shot screenshot uses the default size; else the last size.
  // Both are at 100% scale: GLFW_SCALE_TO_MONITOR multiplies them by the content scale.
  int w = opts.width, h = opts.height;
  if (config.windowWidth > 0 && config.windowHeight > 0 && !opts.sizeGiven &&
      opts.screenshot.empty()) {
    w = std::clamp(config.windowWidth, 320, 16384);
    h = std::clamp(config.windowHeight, 240, 16384);
  }
  m_window = glfwCreateWindow(w, h, "saescope", nullptr, nullptr);
  if (!m_window) {
    // Older drivers: an OpenGL 3.0 context without a profile.
    glfwDefaultWindowHints();
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    glsl = "#version 130";
    m_window = glfwCreateWindow(w, h, "saescope", nullptr, nullptr);
  }
  if (!m_window) {
    std::fprintf(stderr,
                 "saescope: error: cannot create an OpenGL 3 window (check the graphics "
                 "driver; under Xvfb install libgl1-mesa-dri)\n");
    glfwTerminate();
    return false;
  }
  glfwMakeContextCurrent(m_window);
  glfwSwapInterval(1);
  glfwSetWindowUserPointer(m_window, this);

  float xs = 1, ys = 1;
  glfwGetWindowContentScale(m_window, &xs, &ys);
  m_contentScale = xs > 0 ? xs : 1;
  scale = opts.scale > 0 ? opts.scale : std::clamp(xs, 1.0f, 4.0f);

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // the layout is fixed by code; window size goes to settings.json
  setupStyle();
  ImGui_ImplGlfw_InitForOpenGL(m_window, true);
  ImGui_ImplOpenGL3_Init(glsl);
  glfwSetDropCallback(m_window, dropCallback);
  return true;
}

void App::shutdownWindow() {
  if (!m_window) return;
  int w = 0, h = 0;
  glfwGetWindowSize(m_window, &w, &h);
  if (persistUi() && w > 0 && h > 0) {
    // Stored at 100% scale, so that the next start (which scales by the monitor) restores it.
    config.windowWidth = static_cast<int>(std::lround(w / m_contentScale));
    config.windowHeight = static_cast<int>(std::lround(h / m_contentScale));
  }
  images.clear();
  freeRetiredTextures();
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(m_window);
  m_window = nullptr;
  glfwTerminate();
}

void App::setupStyle() {
  ImGuiIO& io = ImGui::GetIO();
  const char* kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
  const char* kBold = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
  static ImVector<ImWchar> ranges;  // must outlive the atlas build
  if (ranges.empty()) {
    ImFontGlyphRangesBuilder b;
    b.AddRanges(io.Fonts->GetGlyphRangesDefault());
    b.AddText(u8"…—–·•×÷±≤≥←→↑↓▲▼◀▶▾▸✓✗●○■□λαΣ‖²₁₂∑√≈");
    b.BuildRanges(&ranges);
  }
  ImFontConfig cfg;
  cfg.OversampleH = 2;
  if (engine::fileExists(kFont)) {
    io.Fonts->AddFontFromFileTTF(kFont, std::round(15.0f * scale), &cfg, ranges.Data);
    fontLarge = io.Fonts->AddFontFromFileTTF(engine::fileExists(kBold) ? kBold : kFont,
                                             std::round(18.0f * scale), &cfg, ranges.Data);
  } else {
    ImFontConfig d;
    d.SizePixels = std::round(13.0f * scale);
    io.Fonts->AddFontDefault(&d);
    fontLarge = nullptr;
  }

  ImGui::StyleColorsDark();
  ImGuiStyle& st = ImGui::GetStyle();
  st.WindowPadding = ImVec2(10, 10);
  st.FramePadding = ImVec2(8, 5);
  st.ItemSpacing = ImVec2(8, 7);
  st.ItemInnerSpacing = ImVec2(6, 5);
  st.ScrollbarSize = 14;
  st.WindowRounding = 6;
  st.ChildRounding = 6;
  st.FrameRounding = 4;
  st.PopupRounding = 4;
  st.GrabRounding = 4;
  st.TabRounding = 4;
  st.WindowBorderSize = 0;
  st.ChildBorderSize = 1;
  ImVec4* c = st.Colors;
  c[ImGuiCol_WindowBg] = ImVec4(0.105f, 0.11f, 0.125f, 1);
  c[ImGuiCol_ChildBg] = ImVec4(0.13f, 0.135f, 0.155f, 1);
  c[ImGuiCol_PopupBg] = ImVec4(0.12f, 0.125f, 0.145f, 0.98f);
  c[ImGuiCol_Border] = ImVec4(0.25f, 0.26f, 0.30f, 1);
  c[ImGuiCol_FrameBg] = ImVec4(0.18f, 0.19f, 0.22f, 1);
  c[ImGuiCol_FrameBgHovered] = ImVec4(0.24f, 0.25f, 0.30f, 1);
  c[ImGuiCol_FrameBgActive] = ImVec4(0.27f, 0.29f, 0.35f, 1);
  c[ImGuiCol_Button] = ImVec4(0.22f, 0.35f, 0.55f, 1);
  c[ImGuiCol_ButtonHovered] = ImVec4(0.28f, 0.44f, 0.68f, 1);
  c[ImGuiCol_ButtonActive] = ImVec4(0.20f, 0.32f, 0.50f, 1);
  c[ImGuiCol_Header] = ImVec4(0.20f, 0.22f, 0.27f, 1);
  c[ImGuiCol_HeaderHovered] = ImVec4(0.25f, 0.30f, 0.40f, 1);
  c[ImGuiCol_HeaderActive] = ImVec4(0.28f, 0.34f, 0.46f, 1);
  c[ImGuiCol_Tab] = ImVec4(0.16f, 0.17f, 0.20f, 1);
  c[ImGuiCol_TabHovered] = ImVec4(0.28f, 0.44f, 0.68f, 1);
  c[ImGuiCol_TabActive] = ImVec4(0.22f, 0.35f, 0.55f, 1);
  c[ImGuiCol_PlotLines] = ImVec4(0.40f, 0.72f, 1.0f, 1);
  c[ImGuiCol_PlotHistogram] = ImVec4(0.36f, 0.62f, 0.92f, 1);
  c[ImGuiCol_PlotHistogramHovered] = ImVec4(1.0f, 0.75f, 0.35f, 1);
  c[ImGuiCol_TextDisabled] = ImVec4(0.56f, 0.58f, 0.63f, 1);
  st.ScaleAllSizes(scale);
}

// [SECTION] frame loop

int App::run() {
  if (!opts.script.empty()) {
    try {
      m_script = std::make_unique<ScriptRunner>(
          parseScript(engine::readFileText(opts.script), opts.script), opts.script, *this);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "saescope: error: --script: %s\n", e.what());
      return 2;
    }
  }
  if (!initWindow()) return 1;

  // The workspace's ui_state.json restores its last view, feature and rank; flags given win.
  m_browser.rule = opts.rank == "raw" ? engine::RankRule::Raw : engine::RankRule::Seed;
  m_viewRestored = false;
  if (!opts.workspace.empty()) openWorkspace(opts.workspace, false);
  if (opts.rankGiven)
    m_browser.rule = opts.rank == "raw" ? engine::RankRule::Raw : engine::RankRule::Seed;
  if (opts.view != "auto")
    view = opts.view == "browser"   ? View::Browser
           : opts.view == "rating"  ? View::Rating
           : opts.view == "results" ? View::Results
                                    : View::Pipeline;
  else if (!m_viewRestored)
    view = ws && ws->hasEmbeddings() ? View::Browser : View::Pipeline;
  viewRequest = true;
  if (opts.featureGiven || !ws) m_browser.setFeature(opts.feature);
  m_uiSaved = m_uiPending = uiState();  // what was restored (or asked for) is not a change
  refreshDevice();

  const bool automated = !opts.screenshot.empty() || m_script || opts.frames > 0;
  int settledFrames = 0;
  bool warnedTimeout = false;
  while (!m_quit && !glfwWindowShouldClose(m_window)) {
    const bool active = pipeline.isBusy() || indexer.isBusy() || images.pendingCount() > 0;
    const ImGuiIO& io = ImGui::GetIO();
    const bool input = io.WantTextInput || io.MouseDown[0] || io.MouseDelta.x != 0 ||
                       io.MouseDelta.y != 0 || m_frame < 3;
    if (automated)
      glfwWaitEventsTimeout(1.0 / 120);
    else
      glfwWaitEventsTimeout(active ? 1.0 / 30 : input ? 1.0 / 60 : 0.5);

    if (!opts.screenshot.empty() && m_screenshotFile.empty() && !m_screenshotDone) {
      // Shoot once everything on screen has loaded for a few frames, or at the time limit.
      settledFrames = settled() ? settledFrames + 1 : 0;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
      if (settledFrames >= 4) m_screenshotFile = opts.screenshot;
      if (waited > opts.screenshotTimeout && !warnedTimeout) {
        std::fprintf(stderr,
                     "saescope: warning: screenshot taken before every image loaded "
                     "(--screenshot-timeout %.0f s)\n",
                     opts.screenshotTimeout);
        warnedTimeout = true;
        m_screenshotFile = opts.screenshot;
      }
    }
    try {
      frame();
    } catch (const std::exception& e) {
      // Close whatever Begin/Push the exception skipped, then report it in the app.
      ImGui::ErrorCheckEndFrameRecover(nullptr);
      ImGui::EndFrame();
      message(Message::Error, e.what());
    }
    if (!opts.screenshot.empty() && m_screenshotDone && !m_script) m_quit = true;
    if (opts.frames > 0 && m_frame >= static_cast<uint64_t>(opts.frames)) m_quit = true;
    if (m_script && m_script->done() && m_screenshotFile.empty()) {
      if (!m_script->error().empty()) {
        std::fprintf(stderr, "saescope: error: script %s\n", m_script->error().c_str());
        m_exitCode = 1;
      }
      m_quit = true;
    }
  }
  if (!opts.stateOut.empty()) scriptState(opts.stateOut);
  saveUiState(true);
  // Stop background work before the GL context goes: running jobs see their stop flag.
  pipeline.cancel();
  indexer.cancel();
  checker.cancel();
  // Notes, seen marks and the UI state queued on the writer reach the disk (bounded wait).
  writer.waitIdle(10);
  shutdownWindow();
  const std::string err = saveUserConfig(config);
  if (!err.empty()) std::fprintf(stderr, "saescope: warning: %s\n", err.c_str());
  return m_exitCode;
}

void App::frame() {
  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  if (m_script)
    m_script->beforeFrame(ImGui::GetIO());
  else if (!opts.screenshot.empty())
    ImGui::GetIO().MousePos = ImVec2(-FLT_MAX, -FLT_MAX);  // no hover effects in a screenshot
  ImGui::NewFrame();

  // Results from workers: apply closures, upload finished images (all of them before a shot).
  queue.drain();
  images.beginFrame();
  images.uploadPending(6.0, !opts.screenshot.empty());
  pollJobs();

  drawMain();
  saveUiState(false);

  ImGui::Render();
  int fw = 0, fh = 0;
  glfwGetFramebufferSize(m_window, &fw, &fh);
  glViewport(0, 0, fw, fh);
  const ImVec4 bg = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
  glClearColor(bg.x, bg.y, bg.z, 1);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  if (!m_screenshotFile.empty()) {
    if (!captureScreenshot(m_screenshotFile)) m_exitCode = 1;
    m_screenshotFile.clear();
    m_screenshotDone = true;
  }
  freeRetiredTextures();  // after the frame that may have drawn them
  glfwSwapBuffers(m_window);
  ++m_frame;
}

bool App::captureScreenshot(const std::string& file) {
  int fw = 0, fh = 0;
  glfwGetFramebufferSize(m_window, &fw, &fh);
  engine::Image img;
  img.width = fw;
  img.height = fh;
  img.channels = 4;
  img.pixels.resize(static_cast<size_t>(fw) * fh * 4);
  std::vector<uint8_t> raw(img.pixels.size());
  glReadBuffer(GL_BACK);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadPixels(0, 0, fw, fh, GL_RGBA, GL_UNSIGNED_BYTE, raw.data());
  const size_t rowBytes = static_cast<size_t>(fw) * 4;
  for (int y = 0; y < fh; ++y) {  // GL rows go bottom-up
    uint8_t* dst = img.pixels.data() + static_cast<size_t>(y) * rowBytes;
    std::copy_n(raw.data() + static_cast<size_t>(fh - 1 - y) * rowBytes, rowBytes, dst);
    for (int x = 0; x < fw; ++x) dst[x * 4 + 3] = 255;
  }
  try {
    engine::writePng(file, img);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saescope: error: --screenshot: %s\n", e.what());
    return false;
  }
  std::fprintf(stderr, "saescope: wrote %s (%dx%d)\n", file.c_str(), fw, fh);
  return true;
}

void App::drawMain() {
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(vp->WorkPos);
  ImGui::SetNextWindowSize(vp->WorkSize);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                                 ImGuiWindowFlags_NoSavedSettings |
                                 ImGuiWindowFlags_NoBringToFrontOnFocus;
  ImGui::Begin("##main", nullptr, flags);
  m_bar.draw();
  drawMessages();

  const float statusH = ImGui::GetFrameHeight() + ImGui::GetStyle().ItemSpacing.y;
  if (ImGui::BeginTabBar("views")) {
    const View views[] = {View::Pipeline, View::Browser, View::Rating, View::Results};
    const char* labels[] = {"Pipeline", "Feature browser", "Rating", "Results"};
    const char* hooks[] = {"tab_pipeline", "tab_browser", "tab_rating", "tab_results"};
    for (int i = 0; i < 4; ++i) {
      ImGuiTabItemFlags f = 0;
      if (viewRequest && view == views[i]) f |= ImGuiTabItemFlags_SetSelected;
      const bool open = ImGui::BeginTabItem(labels[i], nullptr, f);
      hook(hooks[i]);
      if (!open) continue;
      if (!viewRequest) view = views[i];
      ImGui::BeginChild("view", ImVec2(0, -statusH), false);
      switch (views[i]) {
        case View::Pipeline:
          m_pipelineView.draw();
          break;
        case View::Browser:
          m_browser.draw();
          break;
        case View::Rating:
          drawRatingView(*this);
          break;
        case View::Results:
          drawResultsView(*this);
          break;
      }
      ImGui::EndChild();
      ImGui::EndTabItem();
    }
    ImGui::EndTabBar();
  }
  viewRequest = false;
  drawStatusBar();
  m_bar.drawFolderBrowser();
  m_bar.drawImportDialog();

  if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape)) && m_showShortcuts)
    m_showShortcuts = false;
  if (ImGui::IsKeyPressed(GLFW_KEY_F1, false)) m_showShortcuts = !m_showShortcuts;
  // Shortcuts that open a modal do nothing while another one is open (it would replace it).
  const bool popupOpen = ImGui::IsPopupOpen(nullptr, ImGuiPopupFlags_AnyPopupId);
  if (ImGui::GetIO().KeyCtrl && ImGui::IsKeyPressed(GLFW_KEY_O, false) && !popupOpen)
    m_bar.openFolderBrowser("Open or create a workspace", ws ? ws->dir() : m_bar.pathInput,
                            [this](const std::string& d) {
                              openWorkspace(d, !engine::fileExists(d + "/manifest.json"));
                            });
  if (ImGui::GetIO().KeyCtrl && ImGui::IsKeyPressed(GLFW_KEY_I, false) && !popupOpen) {
    if (pipeline.isBusy())
      message(Message::Warning, "A run is in progress: import when it is done");
    else
      m_bar.openImportDialog();
  }
  if (m_showShortcuts) drawShortcuts();
  ImGui::End();
}

void App::drawMessages() {
  if (messages.empty()) return;
  // The newest message stays until dismissed; older ones are counted.
  const Message& m = messages.back();
  const ImVec4 col = m.level == Message::Error     ? ImVec4(0.45f, 0.14f, 0.14f, 1)
                     : m.level == Message::Warning ? ImVec4(0.42f, 0.32f, 0.10f, 1)
                                                   : ImVec4(0.14f, 0.28f, 0.20f, 1);
  ImGui::PushStyleColor(ImGuiCol_ChildBg, col);
  const float h = ImGui::GetFrameHeight() + ImGui::GetStyle().WindowPadding.y;
  ImGui::BeginChild("message", ImVec2(0, h), false, ImGuiWindowFlags_NoScrollbar);
  ImGui::SetCursorPosY(ImGui::GetCursorPosY() - ImGui::GetStyle().WindowPadding.y * 0.5f + 2);
  ImGui::AlignTextToFramePadding();
  const char* tag = m.level == Message::Error     ? "Error: "
                    : m.level == Message::Warning ? "Note: "
                                                  : "";
  ImGui::Text("%s%s", tag, m.text.c_str());
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", m.text.c_str());
  const float bw = ImGui::CalcTextSize("Dismiss").x + ImGui::GetStyle().FramePadding.x * 2;
  ImGui::SameLine(ImGui::GetWindowWidth() - bw - ImGui::GetStyle().WindowPadding.x);
  if (ImGui::Button("Dismiss")) messages.pop_back();
  hook("dismiss");
  ImGui::EndChild();
  ImGui::PopStyleColor();
}

void App::drawStatusBar() {
  ImGui::Separator();
  const engine::ProgressSnapshot s =
      pipeline.isBusy() ? pipeline.snapshot() : engine::ProgressSnapshot{};
  if (pipeline.isBusy()) {
    const float frac = s.total > 0 ? static_cast<float>(s.done) / s.total : 0;
    ImGui::Text("%s %3.0f%%", s.stage.empty() ? pipeline.currentName().c_str() : s.stage.c_str(),
                frac * 100);
    ImGui::SameLine();
    ImGui::ProgressBar(frac, ImVec2(160 * scale, ImGui::GetTextLineHeight()), "");
    ImGui::SameLine();
    ImGui::TextDisabled("%.1f %s/s · ETA %s", s.rate, s.unit.empty() ? "steps" : s.unit.c_str(),
                        engine::formatDuration(s.eta).c_str());
  } else if (lastJob.id) {
    ImGui::TextDisabled("Last run: %s %s (%.1f s)", lastJob.name.c_str(),
                        engine::JobRunner::stateName(lastJob.state), lastJob.seconds);
  } else {
    ImGui::TextDisabled("Ready");
  }
  ImGui::SameLine();
  ImGui::TextDisabled("   |   ");
  ImGui::SameLine();
  switch (indexState) {
    case IndexState::None:
      ImGui::TextDisabled("no workspace");
      break;
    case IndexState::Missing:
      ImGui::TextDisabled("no embeddings yet");
      break;
    case IndexState::Loading: {
      const auto is = indexer.snapshot();
      ImGui::TextDisabled(
          "loading features %s",
          is.total > 0 ? (std::to_string(100 * is.done / is.total) + "%").c_str() : "…");
      break;
    }
    case IndexState::Ready:
      ImGui::TextDisabled(
          "%lld images · %lld dense · %lld sparse features",
          static_cast<long long>(data->index->numImages()),
          static_cast<long long>(data->index->numFeatures(engine::FeatureKind::Dense)),
          static_cast<long long>(data->index->numFeatures(engine::FeatureKind::Sparse)));
      break;
    case IndexState::Failed:
      ImGui::TextDisabled("feature index failed");
      break;
  }
  const std::string right =
      (deviceDescription.empty() ? std::string("device: …") : deviceDescription) +
      "   F1: shortcuts";
  const float w = ImGui::CalcTextSize(right.c_str()).x;
  ImGui::SameLine(std::max(ImGui::GetCursorPosX() + 20,
                           ImGui::GetWindowWidth() - w - ImGui::GetStyle().WindowPadding.x));
  ImGui::TextDisabled("%s", right.c_str());
}

void App::drawShortcuts() {
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(
      ImVec2(vp->WorkPos.x + vp->WorkSize.x / 2, vp->WorkPos.y + vp->WorkSize.y / 2),
      ImGuiCond_Always, ImVec2(0.5f, 0.5f));
  ImGui::SetNextWindowBgAlpha(0.96f);
  if (ImGui::Begin("Keyboard shortcuts", &m_showShortcuts,
                   ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings |
                       ImGuiWindowFlags_NoCollapse)) {
    const char* rows[][2] = {{"← / →", "previous / next feature"},
                             {"Page Up / Page Down", "16 features back / forward"},
                             {"Home / End", "first / last feature"},
                             {"Ctrl+F", "jump to a feature id"},
                             {"Ctrl+O", "open or create a workspace"},
                             {"Ctrl+I", "import embeddings / SAE / backbone files"},
                             {"click an image", "show it large, with its strongest features"},
                             {"1 … 7 / S", "rate / skip the trial (blind study)"},
                             {"drop a folder", "open a workspace / use as the image folder"},
                             {"drop .pt/.npy/.safetensors", "import into the open workspace"},
                             {"drop onto Import…", "fill the dialog's fields"},
                             {"F1 / Esc", "show / hide this help"}};
    if (ImGui::BeginTable("keys", 2, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV)) {
      for (auto& r : rows) {
        ImGui::TableNextRow();
        ImGui::TableSetColumnIndex(0);
        ImGui::TextUnformatted(r[0]);
        ImGui::TableSetColumnIndex(1);
        ImGui::TextUnformatted(r[1]);
      }
      ImGui::EndTable();
    }
  }
  ImGui::End();
}

// [SECTION] model actions

void App::message(Message::Level level, const std::string& text) {
  messages.push_back(Message{level, text});
  if (messages.size() > 50) messages.erase(messages.begin());
  if (level == Message::Error) std::fprintf(stderr, "saescope: %s\n", text.c_str());
}

bool App::openWorkspace(const std::string& dirIn, bool create) {
  if (pipeline.isBusy()) {
    message(Message::Warning, "A run is in progress: cancel it before switching workspaces");
    return false;
  }
  std::string dir = dirIn;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) {
    message(Message::Error, "Type a workspace folder, or press Browse… to pick one");
    return false;
  }
  std::optional<engine::Workspace> w;
  try {
    w = engine::Workspace::open(dir, create);
  } catch (const std::exception& e) {
    message(Message::Error, std::string(e.what()) +
                                (create ? "" : " (press Create to make a new workspace there)"));
    return false;
  }
  closeWorkspace();
  ws = std::move(w);
  m_bar.pathInput = ws->dir();
  // What the user last looked at here (WS/ui_state.json; unreadable = nothing stored).
  const WorkspaceUiState st = loadWorkspaceUiState(ws->dir());
  m_browser.setFeature(st.feature >= 0 ? st.feature : 0);
  if (!st.rank.empty())
    m_browser.rule = st.rank == "raw" ? engine::RankRule::Raw : engine::RankRule::Seed;
  m_viewRestored = !st.view.empty();
  if (m_viewRestored) scriptView(st.view);
  m_uiSaved = m_uiPending = uiState();
  m_uiWriteWarned = false;
  try {
    notes = FeatureNotes::load(ws->dir());
  } catch (const std::exception& e) {
    notes = FeatureNotes{};
    message(Message::Warning, e.what());
  }
  train.workspace = embed.workspace = sae.workspace = ws->dir();
  const std::string root = ws->dataRoot();
  if (!root.empty()) train.data = root;
  const fs::path parent = fs::path(ws->dir()).parent_path();
  demo.out = (parent.empty() ? fs::path(".") : parent).string() + "/saescope-demo-data";
  reloadWorkspace();
  applyManifestSettings();
  loadWorkspaceData();
  config.addRecent(ws->dir());
  const std::string err = saveUserConfig(config);
  if (!err.empty()) message(Message::Warning, err);
  return true;
}

void App::closeWorkspace() {
  saveUiState(true);
  ++m_wsGeneration;
  indexer.cancel();
  images.clear();
  ws.reset();
  data.reset();
  stages.clear();
  notes = FeatureNotes{};
  indexState = IndexState::None;
  indexError.clear();
}

void App::reloadWorkspace() {
  if (!ws) return;
  try {
    ws->reload();
    stages = ws->stages();
  } catch (const std::exception& e) {
    message(Message::Error, e.what());
  }
}

void App::applyManifestSettings() {
  if (!ws) return;
  try {
    const nlohmann::json st = ws->manifest().value("stages", nlohmann::json::object());
    auto cfg = [&](const char* stage) {
      return st.value(stage, nlohmann::json::object()).value("config", nlohmann::json::object());
    };
    const nlohmann::json t = cfg("train"), e = cfg("embed"), s = cfg("sae");
    train.epochs = t.value("epochs", train.epochs);
    train.batch = t.value("batch", train.batch);
    train.lr = t.value("lr", train.lr);
    train.imageSize = t.value("image_size", train.imageSize);
    train.limit = t.value("limit", train.limit);
    train.weights = t.value("weights", train.weights);
    train.normalize = t.value("normalize", train.normalize);
    train.precision = t.value("precision", train.precision);
    embed.batch = e.value("batch", embed.batch);
    embed.imageSize = e.value("image_size", embed.imageSize);
    embed.precision = e.value("precision", embed.precision);
    if (!s.empty()) {  // the last SAE run's variant and settings; a new run gets its own name
      engine::SaeConfig last = engine::saeConfigFromJson(s);
      last.workspace = sae.workspace;
      last.run = sae.run;
      sae = last;
    }
  } catch (const std::exception& ex) {
    // A manifest from another version: keep the defaults, say so.
    message(Message::Warning,
            std::string("stage settings not read from the manifest: ") + ex.what());
  }
}

namespace {

// logs/<stage>.jsonl → term → (steps, values). Bookkeeping fields are not curves.
std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> readCurves(
    const std::string& path) {
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> out;
  if (!engine::fileExists(path)) return out;
  static const std::set<std::string> skip = {"step", "epoch", "batch", "elapsed_s", "images_per_s"};
  std::istringstream in(engine::readFileText(path));
  std::string line;
  double n = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    const double step = j.value("step", n);
    for (const auto& [k, v] : j.items()) {
      if (!v.is_number() || skip.count(k)) continue;
      out[k].first.push_back(step);
      out[k].second.push_back(v.get<double>());
    }
    n += 1;
  }
  return out;
}

// CelebA ships its attributes beside the images; look in the data folder and its parents.
std::string findAttributes(const std::string& dataRoot) {
  if (dataRoot.empty()) return "";
  fs::path p(dataRoot);
  for (int up = 0; up < 3 && !p.empty(); ++up) {
    for (const char* name : {"list_attr_celeba.csv", "list_attr_celeba.txt", "attributes.csv"}) {
      std::error_code ec;
      if (fs::is_regular_file(p / name, ec)) return (p / name).string();
    }
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return "";
}

}  // namespace

void App::loadWorkspaceData() {
  if (!ws) return;
  const uint64_t gen = m_wsGeneration;
  const std::string dir = ws->dir();
  const bool hasEmbeddings = ws->hasEmbeddings();
  indexState = hasEmbeddings ? IndexState::Loading : IndexState::Missing;
  indexError.clear();
  indexer.cancel();
  indexer.submit("index", [this, gen, dir, hasEmbeddings](engine::JobContext& ctx) {
    auto d = std::make_shared<WorkspaceData>();
    d->dir = dir;
    std::string err, warn;
    try {
      const engine::Workspace w = engine::Workspace::open(dir, false);
      d->dataRoot = w.dataRoot();
      d->images = w.imageList();
      for (const char* stage : {"train", "sae"})
        d->curves[stage] = readCurves(w.path(std::string("logs/") + stage + ".jsonl"));
      d->attributesFile = w.manifest().value("attributes_file", std::string());
      if (d->attributesFile.empty() || !engine::fileExists(d->attributesFile))
        d->attributesFile = findAttributes(d->dataRoot);
      if (!d->attributesFile.empty()) {
        try {
          d->attributes = engine::loadAttributes(d->attributesFile);
        } catch (const std::exception& e) {
          warn = e.what();
        }
      }
      ctx.checkStop();
      if (hasEmbeddings) d->index = engine::FeatureIndex::loadOrBuild(dir, ctx);
    } catch (const engine::Cancelled&) {
      throw;
    } catch (const std::exception& e) {
      err = e.what();
    }
    queue.post([this, gen, d, err, warn] {
      if (gen != m_wsGeneration) return;  // the user opened another workspace meanwhile
      data = d;
      if (!warn.empty()) message(Message::Warning, warn);
      if (!err.empty()) {
        indexState = IndexState::Failed;
        indexError = err;
        message(Message::Error, err);
      } else {
        indexState = d->index ? IndexState::Ready : IndexState::Missing;
      }
      if (d->index) m_browser.setFeature(m_browser.feature());
    });
  });
}

void App::runStages(const std::string& which) {
  if (!ws) {
    message(Message::Error, "Open or create a workspace first (Workspace bar, or Ctrl+O)");
    return;
  }
  if (pipeline.isBusy()) {
    message(Message::Warning, "A run is already in progress");
    return;
  }
  engine::TrainConfig t = train;
  engine::EmbedConfig e = embed;
  engine::SaeConfig s = sae;
  t.workspace = e.workspace = s.workspace = ws->dir();
  t.run = e.run = s.run = runOpts;
  const bool doTrain = which == "all" || which == "train";
  const bool doEmbed = which == "all" || which == "embed";
  const bool doSae = which == "all" || which == "sae";
  try {
    if (doTrain) {
      if (t.data.empty())
        throw engine::Error("Choose the image folder first (Data, above), or generate demo data");
      engine::validate(t);
    }
    if (doEmbed) engine::validate(e);
    if (doSae) engine::validate(s);
  } catch (const std::exception& ex) {
    message(Message::Error, ex.what());
    return;
  }
  if (doTrain) {
    config.lastDataFolder = t.data;
    pipeline.submit("train", [t](engine::JobContext& ctx) { engine::runTrain(t, ctx); });
  }
  if (doEmbed) pipeline.submit("embed", [e](engine::JobContext& ctx) { engine::runEmbed(e, ctx); });
  if (doSae) pipeline.submit("sae", [s](engine::JobContext& ctx) { engine::runSae(s, ctx); });
}

void App::generateDemoData() {
#ifdef SAESCOPE_HAVE_DEMO_DATA
  if (pipeline.isBusy()) {
    message(Message::Warning, "A run is already in progress");
    return;
  }
  engine::DemoDataConfig c;
  c.out = demo.out;
  c.count = demo.count;
  c.size = demo.size;
  c.seed = demo.seed;
  pipeline.submit("demo-data", [c](engine::JobContext& ctx) { engine::generateDemoData(c, ctx); });
#else
  message(Message::Warning, "Demo data is not available in this build");
#endif
}

void App::cancelJob() {
  if (pipeline.isBusy()) pipeline.cancel();
}

void App::refreshDevice() {
  const engine::RunOptions r = runOpts;
  writer.submit("device", [this, r](engine::JobContext&) {
    std::string d;
    try {
      d = engine::describeDevice(r);
    } catch (const std::exception& e) {
      d = std::string("device error: ") + e.what();
    }
    queue.post([this, d] { deviceDescription = d; });
  });
}

void App::pollJobs() {
  // New embeddings or a new SAE: reload the feature index once the queue has run out.
  if (m_dataStale && !pipeline.isBusy()) {
    m_dataStale = false;
    loadWorkspaceData();
  }
  const engine::JobRunner::Outcome o = pipeline.lastOutcome();
  if (o.id == 0 || o.id == m_seenOutcome) return;
  m_seenOutcome = o.id;
  lastJob = o;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f s", o.seconds);
  const std::string what = o.name == "train"       ? "Fine-tuning"
                           : o.name == "embed"     ? "Embedding"
                           : o.name == "sae"       ? "SAE training"
                           : o.name == "demo-data" ? "Demo data"
                           : o.name == "import"    ? "Import"
                                                   : o.name;
  switch (o.state) {
    case engine::JobRunner::State::Done:
      message(Message::Info, what + " finished in " + secs);
      if (o.name == "demo-data") train.data = demo.out;
      break;
    case engine::JobRunner::State::Cancelled:
      message(Message::Info, what + " cancelled; the workspace keeps its previous artifacts");
      break;
    case engine::JobRunner::State::Failed:
      message(Message::Error, what + " failed: " + o.error);
      break;
    default:
      break;
  }
  if (o.name == "import") {
    const std::string target = m_openAfterImport;
    const bool toBrowser = m_switchAfterImport;
    m_openAfterImport.clear();
    m_switchAfterImport = false;
    if (o.state == engine::JobRunner::State::Done && !target.empty()) {
      // Imported into another (maybe new) workspace: open it; that loads its data.
      if (openWorkspace(target, false) && toBrowser && ws->hasEmbeddings())
        switchView(View::Browser);
      return;
    }
    reloadWorkspace();
    if (o.state == engine::JobRunner::State::Done) {
      m_dataStale = true;
      if (toBrowser && ws && ws->hasEmbeddings()) switchView(View::Browser);
    }
    return;
  }
  reloadWorkspace();
  if (o.state == engine::JobRunner::State::Done && o.name != "demo-data") m_dataStale = true;
}

void App::saveNotes() {
  if (!ws) return;
  const std::string path = ws->path("notes.json"), text = notes.notesJson();
  writer.submit("notes", [this, path, text](engine::JobContext&) {
    try {
      engine::writeFileAtomic(path, text);
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      queue.post([this, msg] { message(Message::Error, msg); });
    }
  });
}

void App::markSeen(int64_t id) {
  if (!ws || !data || !data->index) return;
  bool changed = false;
  if (id < data->index->numFeatures(engine::FeatureKind::Dense))
    changed |= notes.seenDense.insert(id).second;
  if (id < data->index->numFeatures(engine::FeatureKind::Sparse))
    changed |= notes.seenSparse.insert(id).second;
  if (!changed) return;
  const std::string path = ws->path("seen.json"), text = notes.seenJson();
  writer.submit("seen", [this, path, text](engine::JobContext&) {
    try {
      engine::writeFileAtomic(path, text);
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      queue.post([this, msg] { message(Message::Error, msg); });
    }
  });
}

void App::switchView(View v) {
  view = v;
  viewRequest = true;
}

void App::openPath(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (engine::fileExists(path + "/manifest.json")) {
      openWorkspace(path, false);
    } else {
      train.data = path;
      switchView(View::Pipeline);
      message(Message::Info,
              "Image folder set to " + path + "; press Run all to build a workspace from it");
    }
  } else {
    message(Message::Warning, path + ": drop a workspace folder or an image folder");
  }
}

void App::hook(const char* name) {
  const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
  m_hooks[name] = {m_frame, {a.x, a.y, b.x, b.y}};
}

const char* App::unsettledBy() {
  if (!queue.empty()) return "main-thread queue";
  if (indexer.isBusy()) return "feature index";
  if (images.pendingCount() > 0) return "images";
  if (writer.isBusy()) return "writer";  // notes, seen and exports are on disk once settled
  if (checker.isBusy() || m_bar.importChecksPending()) return "import checks";
  if (indexState == IndexState::Loading) return "feature index";
  if (view == View::Browser && indexState == IndexState::Ready && !m_browser.gridsSettled())
    return "grids";
  if (study && !study->settled()) return "study";
  if (deviceDescription.empty()) return "device description";
  return nullptr;
}

// [SECTION] scripting and state dump

void App::scriptDrop(const std::vector<std::string>& paths) {
  // The callback a real drop reaches (set in initWindow), so the test takes the same way.
  const GLFWdropfun cb = glfwSetDropCallback(m_window, nullptr);
  glfwSetDropCallback(m_window, cb);
  if (!cb) throw engine::Error("drop: the window has no drop callback");
  std::vector<const char*> ptrs;
  for (const auto& p : paths) ptrs.push_back(p.c_str());
  cb(m_window, static_cast<int>(ptrs.size()), ptrs.data());
}

void App::scriptResize(int width, int height) {
  glfwSetWindowSize(m_window, width, height);
}

WorkspaceUiState App::uiState() const {
  WorkspaceUiState s;
  s.view = viewName(view);
  s.feature = m_browser.feature();
  s.rank = engine::rankName(m_browser.rule);
  return s;
}

void App::saveUiState(bool now) {
  if (!ws || !persistUi()) return;
  const WorkspaceUiState cur = uiState();
  const auto t = std::chrono::steady_clock::now();
  if (cur != m_uiPending) {
    m_uiPending = cur;
    m_uiChanged = t;
  }
  if (m_uiPending == m_uiSaved) return;
  // Arrow-key browsing changes the feature many times a second: write once it rests.
  if (!now && t - m_uiChanged < std::chrono::seconds(1)) return;
  m_uiSaved = m_uiPending;
  const std::string dir = ws->dir();
  const uint64_t gen = m_wsGeneration;
  writer.submit("ui-state", [this, dir, cur, gen](engine::JobContext&) {
    const std::string err = saveWorkspaceUiState(dir, cur);
    if (err.empty()) return;
    queue.post([this, err, gen] {
      // Never fatal (a read-only workspace still browses); said once per opened workspace.
      if (gen != m_wsGeneration || m_uiWriteWarned) return;
      m_uiWriteWarned = true;
      message(Message::Warning, "view state not saved: " + err);
    });
  });
}

std::string App::scriptWaitReport() {
  std::string r;
  if (pipeline.isBusy()) {
    const engine::ProgressSnapshot snap = pipeline.snapshot();
    r = "job '" + pipeline.currentName() + "' running, stage '" + snap.stage + "' at " +
        std::to_string(snap.done) + " of " + std::to_string(snap.total);
  } else {
    r = "no job running";
  }
  if (lastJob.id != 0)
    r += "; last job '" + lastJob.name + "' " + engine::JobRunner::stateName(lastJob.state) +
         (lastJob.error.empty() ? "" : ": " + lastJob.error);
  if (const char* what = unsettledBy()) r += std::string("; still loading: ") + what;
  if (!messages.empty()) r += "; last message: " + messages.back().text;
  return r;
}

bool App::scriptJobProgressed() {
  if (!pipeline.isBusy()) return false;
  return pipeline.snapshot().done > 0;
}

bool App::scriptWidget(const std::string& name, float fx, float fy, float& x, float& y) {
  auto it = m_hooks.find(name);
  if (it == m_hooks.end() || it->second.first + 1 < m_frame) return false;
  const auto& r = it->second.second;
  x = r[0] + (r[2] - r[0]) * fx;
  y = r[1] + (r[3] - r[1]) * fy;
  return true;
}

void App::scriptView(const std::string& name) {
  if (name == "pipeline")
    switchView(View::Pipeline);
  else if (name == "browser")
    switchView(View::Browser);
  else if (name == "rating")
    switchView(View::Rating);
  else if (name == "results")
    switchView(View::Results);
  else
    throw engine::Error("unknown view '" + name + "'");
}

void App::scriptSet(const std::string& name, const std::string& v) {
  auto toInt = [&] { return std::stoll(v); };
  auto toD = [&] { return std::stod(v); };
  if (study && study->scriptSet(name, v)) return;
  if (name == "data")
    train.data = v;
  else if (name == "train.epochs")
    train.epochs = static_cast<int>(toInt());
  else if (name == "train.batch")
    train.batch = static_cast<int>(toInt());
  else if (name == "train.lr")
    train.lr = toD();
  else if (name == "train.image_size")
    train.imageSize = static_cast<int>(toInt());
  else if (name == "train.limit")
    train.limit = toInt();
  else if (name == "train.weights")
    train.weights = v;
  else if (name == "train.precision")
    train.precision = v;
  else if (name == "embed.batch")
    embed.batch = static_cast<int>(toInt());
  else if (name == "embed.precision")
    embed.precision = v;
  else if (name == "sae.features")
    sae.features = static_cast<int>(toInt());
  else if (name == "sae.epochs")
    sae.epochs = static_cast<int>(toInt());
  else if (name == "sae.batch")
    sae.batch = static_cast<int>(toInt());
  else if (name == "sae.lr")
    sae.lr = toD();
  else if (name == "sae.l1")
    sae.l1 = toD();
  else if (name == "sae.precision")
    sae.precision = v;
  else if (name == "device")
    runOpts.device = v;
  else if (name == "threads")
    runOpts.threads = static_cast<int>(toInt());
  else if (name == "seed")
    runOpts.seed = static_cast<uint64_t>(toInt());
  else if (name == "demo.out")
    demo.out = v;
  else if (name == "demo.count")
    demo.count = static_cast<int>(toInt());
  else if (name == "demo.size")
    demo.size = static_cast<int>(toInt());
  else if (name == "feature")
    m_browser.setFeature(toInt());
  else if (name == "rank")
    m_browser.rule = v == "raw" ? engine::RankRule::Raw : engine::RankRule::Seed;
  else if (name == "import.workspace")
    m_bar.importFields[WorkspaceBar::kImportWorkspace].value = v;
  else if (name == "import.data")
    m_bar.importFields[WorkspaceBar::kImportData].value = v;
  else if (name == "import.embeddings")
    m_bar.importFields[WorkspaceBar::kImportEmbeddings].value = v;
  else if (name == "import.sae")
    m_bar.importFields[WorkspaceBar::kImportSae].value = v;
  else if (name == "import.backbone")
    m_bar.importFields[WorkspaceBar::kImportBackbone].value = v;
  else
    throw engine::Error("unknown setting '" + name + "'");
}

nlohmann::json App::stateJson() {
  using nlohmann::json;
  json j;
  j["frames"] = m_frame;
  j["view"] = viewName(view);
  j["workspace"] = ws ? json(ws->dir()) : json(nullptr);
  j["stages"] = json::array();
  for (const auto& s : stages)
    j["stages"].push_back({{"name", s.name}, {"status", s.status}, {"detail", s.detail}});
  const char* idx[] = {"none", "missing", "loading", "ready", "failed"};
  j["index"] = idx[static_cast<int>(indexState)];
  j["index_error"] = indexError;
  j["browser"] = {{"feature", m_browser.feature()},
                  {"rank", engine::rankName(m_browser.rule)},
                  {"grid_loaded",
                   {{"dense", m_browser.gridLoaded(engine::FeatureKind::Dense)},
                    {"sparse", m_browser.gridLoaded(engine::FeatureKind::Sparse)}}},
                  {"selected_image", m_browser.selectedImage()},
                  {"cell_pixels", m_browser.cellPixels()}};
  j["job"] = {{"busy", pipeline.isBusy()},
              {"current", pipeline.currentName()},
              {"last",
               {{"id", lastJob.id},
                {"name", lastJob.name},
                {"state", engine::JobRunner::stateName(lastJob.state)},
                {"error", lastJob.error},
                {"seconds", lastJob.seconds}}}};
  j["messages"] = json::array();
  for (const auto& m : messages)
    j["messages"].push_back({{"level", m.level == Message::Error     ? "error"
                                       : m.level == Message::Warning ? "warning"
                                                                     : "info"},
                             {"text", m.text}});
  j["textures"] = liveTextureCount();
  j["seen"] = {{"dense", notes.seenDense.size()}, {"sparse", notes.seenSparse.size()}};
  j["notes"] = notes.notes.size();
  j["device"] = deviceDescription;
  j["sae_settings"] = engine::toJson(sae);  // what the pipeline view's Run would train
  j["scale"] = scale;
  {
    int ww = 0, wh = 0, fw = 0, fh = 0;
    if (m_window) {
      glfwGetWindowSize(m_window, &ww, &wh);
      glfwGetFramebufferSize(m_window, &fw, &fh);
    }
    j["window"] = {{"width", ww},
                   {"height", wh},
                   {"framebuffer_width", fw},
                   {"framebuffer_height", fh},
                   {"content_scale", m_contentScale}};
  }
  j["import"] = m_bar.importStateJson();
  j["script_error"] = m_script ? m_script->error() : "";
  if (study) j.update(study->stateJson());  // "study" (progress only, blind) and "results"
  // Widgets drawn in the last frame, in window pixels: tests crop screenshots with them.
  j["widgets"] = json::object();
  for (const auto& [name, fr] : m_hooks)
    if (fr.first + 1 >= m_frame)
      j["widgets"][name] = {fr.second[0], fr.second[1], fr.second[2], fr.second[3]};
  return j;
}

void App::scriptState(const std::string& file) {
  try {
    engine::writeFileAtomic(file, stateJson().dump(2) + "\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saescope: error: --state-out: %s\n", e.what());
    m_exitCode = 1;
  }
}

}  // namespace ui
