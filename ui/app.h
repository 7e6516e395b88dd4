// ui/app.h — the desktop app: window, frame loop, the model the views share, and the views.
//
// [SECTION] index
//   App            owns the window, the frame loop, the workers and the shared model
//   WorkspaceBar   open / create / recent workspaces, Import… dialog, in-app folder browser
//   PipelineView   stage settings, Run / Cancel, live progress and loss curves
//   BrowserView    dense vs sparse 4x4 grids, stats, notes, image detail (view_browser*.cpp)
//   StudyViews     blind rating study and its results (study_views.h, view_study/results.cpp)
//
// Threads: everything here runs on the UI thread, which owns the window and every GL object.
// Pipeline jobs run on m_pipeline (one worker, in order); feature-index loads on m_indexer; file
// writes of notes/seen on m_writer; images decode on m_images' pool. Workers hand results back as
// closures through m_queue, which the frame loop drains right after ImGui::NewFrame().
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/dataset.h"
#include "engine/features.h"
#include "engine/import.h"
#include "engine/job_runner.h"
#include "engine/pipeline.h"
#include "engine/workspace.h"
#include "feature_notes.h"
#include "gui_options.h"
#include "image_cache.h"
#include "main_queue.h"
#include "script.h"
#include "user_config.h"

struct GLFWwindow;
struct ImFont;

namespace ui {

class App;

enum class View { Pipeline, Browser, Rating, Results };
const char* viewName(View v);

// Immutable data of an opened workspace, loaded off the UI thread; shared with image producers.
struct WorkspaceData {
  std::string dir;
  std::string dataRoot;
  std::vector<std::string> images;                    // images.txt
  std::shared_ptr<const engine::FeatureIndex> index;  // null when embeddings are missing
  engine::Attributes attributes;                      // empty when the data set has none
  std::string attributesFile;
  // Recorded loss curves of the last runs (logs/<stage>.jsonl): stage → term → (steps, values).
  std::map<std::string, std::map<std::string, std::pair<std::vector<double>, std::vector<double>>>>
      curves;
  std::string absolutePath(int64_t row) const;
};

// A message shown in the app's banner (errors never leave the app as exceptions).
struct Message {
  enum Level { Info, Warning, Error } level = Info;
  std::string text;
};

// [SECTION] WorkspaceBar
class WorkspaceBar {
 public:
  explicit WorkspaceBar(App& app) : m_app(app) {}
  void draw();
  // The folder browser modal; `onPick` receives the chosen folder.
  void openFolderBrowser(const std::string& title, const std::string& start,
                         std::function<void(const std::string&)> onPick);
  void drawFolderBrowser();
  std::string pathInput;

  // The Import… dialog (button in this bar, Ctrl+I): a workspace, the image folder and up to
  // three artifact files, each checked as it is typed (existence on the UI thread; what a file
  // holds and how many images the folder has on App::checker). Import runs on App::pipeline.
  enum ImportSlot { kImportWorkspace, kImportData, kImportEmbeddings, kImportSae, kImportBackbone };
  static constexpr int kImportSlots = 5;
  struct ImportField {
    std::string value;             // what the user typed
    std::string checked;           // the value `status` describes
    std::string status;            // one line: what the path is, or what is wrong with it
    bool ok = true;                // false: the Import button stays disabled
    bool pending = false;          // a background check is running
    int64_t rows = -1, dims = -1;  // embeddings [rows, dims]; the data folder's image count (rows)
    int belongs = -1;              // a file of another kind: the slot it belongs in
  };
  std::array<ImportField, kImportSlots> importFields;
  void openImportDialog();
  void drawImportDialog();
  bool importDialogOpen() const { return m_importOpen; }
  // Files or folders dropped while the dialog is open fill its fields (checked as if typed).
  void importDrop(const std::vector<std::string>& paths);
  bool importChecksPending() const;
  // Empty when the fields can be imported, else the one line saying what is missing.
  std::string importBlocker() const;
  nlohmann::json importStateJson() const;

 private:
  void checkImportFields();  // re-checks the fields whose value changed
  App& m_app;
  bool m_importOpen = false, m_importOpenRequest = false;
  bool m_browserOpenRequest = false;
  std::string m_browserTitle, m_browserDir, m_newFolder, m_browserError;
  std::vector<std::string> m_browserEntries;
  std::function<void(const std::string&)> m_onPick;
  void listFolder(const std::string& dir);
};

// [SECTION] PipelineView
class PipelineView {
 public:
  explicit PipelineView(App& app) : m_app(app) {}
  void draw();

 private:
  void drawSettings();
  void drawProgress();
  void drawRecordedCurves();
  void drawDemoPopup();
  App& m_app;
  bool m_demoOpen = false;
  // Last snapshot of the pipeline job, refreshed when its version changes.
  engine::ProgressSnapshot m_snap;
  uint64_t m_snapVersion = 0;
  const void* m_snapCtx = nullptr;
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> m_series;
  std::vector<std::string> m_log;
};

// [SECTION] BrowserView
class BrowserView {
 public:
  explicit BrowserView(App& app) : m_app(app) {}
  void draw();
  // Shows feature `id` (clamped), marks it seen.
  void setFeature(int64_t id);
  int64_t feature() const { return m_feature; }
  engine::RankRule rule = engine::RankRule::Seed;
  // Grid textures of the current feature ready (or failed) for both kinds present.
  bool gridsSettled();
  bool gridLoaded(engine::FeatureKind k);
  int64_t selectedImage() const { return m_detailRow; }
  // Side of one thumbnail in the grid texture, in pixels: grows with the UI scale (up to 2x).
  int cellPixels() const;

 private:
  void drawToolbar(int64_t count);
  void drawPanel(engine::FeatureKind kind, float width, float height);
  void drawMissing();
  void drawDetail();
  void handleKeys(int64_t count);
  std::string gridKey(engine::FeatureKind k, int64_t id) const;
  const Texture* requestGrid(engine::FeatureKind k, int64_t id, bool prefetchOnly);
  int padPixels() const;
  // Per-feature extras (view_browser_extras.cpp): quantile strip, correlations, neighbours.
  float extrasHeight(float width) const;
  void drawCorrelations(engine::FeatureKind kind, float width, float height);
  void drawExtras(engine::FeatureKind kind, float width);
  std::string stripKey(engine::FeatureKind k, int64_t id) const;
  const Texture* requestStrip(engine::FeatureKind k, int64_t id, bool prefetchOnly);

  App& m_app;
  int64_t m_feature = 0;
  int64_t m_jumpTo = 0;
  bool m_focusJump = false;
  // Image detail
  int64_t m_detailRow = -1;
  engine::FeatureKind m_detailKind = engine::FeatureKind::Dense;
  bool m_detailOpenRequest = false;
  // Note being edited (saved when the field loses focus after an edit)
  std::string m_noteBuf[2];
  int64_t m_noteFor = -1;
  // Strongest sparse features of the detail image (computed once per opened image)
  std::vector<std::pair<int64_t, float>> m_strong;
  int64_t m_strongRow = -1;
  // Extras shown (toolbar "Details"); nearest features of m_nearFor (computed once per feature)
  bool m_showExtras = true;
  std::vector<engine::NearFeature> m_near;
  int64_t m_nearFor = -1;
  const engine::FeatureIndex* m_nearIndex = nullptr;
};

// [SECTION] StudyViews (study_views.h: the blind study's Rating and Results tabs)
class StudyViews;
void drawRatingView(App& app);
void drawResultsView(App& app);

// [SECTION] App
class App : public ScriptHost {
 public:
  explicit App(GuiOptions opts);
  ~App() override;
  // Opens the window and runs the frame loop. Returns the exit code.
  int run();

  // --- model, UI thread ---
  GuiOptions opts;
  UserConfig config;
  float scale = 1;
  ImFont* fontLarge = nullptr;
  View view = View::Pipeline;
  bool viewRequest = false;  // switch the tab bar to `view` in the next frame

  std::optional<engine::Workspace> ws;
  std::vector<engine::StageStatus> stages;
  std::shared_ptr<const WorkspaceData> data;  // null while loading or without workspace
  enum class IndexState { None, Missing, Loading, Ready, Failed } indexState = IndexState::None;
  std::string indexError;
  FeatureNotes notes;

  engine::TrainConfig train;
  engine::EmbedConfig embed;
  engine::SaeConfig sae;
  engine::RunOptions runOpts;
  struct DemoSettings {
    std::string out;
    int count = 512;
    int size = 64;
    uint64_t seed = 0;
  } demo;
  std::string deviceDescription;  // what runOpts.device resolves to (computed off-thread)

  // Outcome of the last pipeline job, as the UI saw it.
  engine::JobRunner::Outcome lastJob;
  std::vector<Message> messages;

  ImageCache images{2, size_t(256) << 20};
  MainQueue queue;
  engine::JobRunner pipeline;         // train / embed / sae / demo data, in order
  engine::JobRunner indexer;          // feature index and workspace data loads
  engine::JobRunner writer;           // notes.json / seen.json / ui_state.json writes, in order
  engine::JobRunner checker;          // the Import… dialog's file checks (latest request only)
  std::unique_ptr<StudyViews> study;  // the blind study's state (Rating and Results tabs)

  // --- actions, UI thread ---
  // Opens (create: makes) the workspace; errors become a message. Returns success.
  bool openWorkspace(const std::string& dir, bool create);
  void closeWorkspace();
  void reloadWorkspace();  // manifest and stages
  // Settings of each stage from the manifest (what the workspace was last run with).
  void applyManifestSettings();
  void loadWorkspaceData();  // images, feature index, attributes (background)
  // Queues stages; `which` is "all", "train", "embed" or "sae".
  void runStages(const std::string& which);
  void generateDemoData();
  void cancelJob();
  void refreshDevice();
  void message(Message::Level level, const std::string& text);
  // Saves notes.json / seen.json on the writer thread.
  void saveNotes();
  void markSeen(int64_t id);
  void switchView(View v);
  // Opens a dropped or typed path: a workspace folder opens, an image folder becomes the data.
  void openPath(const std::string& path);
  // Imports on the pipeline worker (engine::runImport); `unclassified` files go into cfg's
  // embeddings/sae/backbone by what they hold. A workspace other than the open one is opened
  // when the import is done; the feature index reloads.
  void startImport(const engine::ImportConfig& cfg, const std::vector<std::string>& unclassified);
  // The Import… dialog: open? and files dropped while it is (they fill its fields).
  bool importDialogOpen() const { return m_bar.importDialogOpen(); }
  void importDrop(const std::vector<std::string>& paths) { m_bar.importDrop(paths); }
  // What the user looks at now (saved to WS/ui_state.json when it changes).
  WorkspaceUiState uiState() const;
  // Records the last ImGui item under `name` for scripted clicks.
  void hook(const char* name);
  bool settled() { return unsettledBy() == nullptr; }
  // What the app is still loading or writing (nullptr when settled).
  const char* unsettledBy();
  nlohmann::json stateJson();

  // --- ScriptHost ---
  bool scriptSettled() override { return settled(); }
  bool scriptJobBusy() override { return pipeline.isBusy(); }
  bool scriptJobProgressed() override;
  std::string scriptWaitReport() override;
  bool scriptWidget(const std::string& name, float fx, float fy, float& x, float& y) override;
  void scriptSet(const std::string& name, const std::string& value) override;
  void scriptView(const std::string& name) override;
  void scriptScreenshot(const std::string& file) override { m_screenshotFile = file; }
  void scriptState(const std::string& file) override;
  void scriptQuit() override { m_quit = true; }
  void scriptDrop(const std::vector<std::string>& paths) override;
  void scriptResize(int width, int height) override;

 private:
  bool initWindow();
  void shutdownWindow();
  void setupStyle();
  void frame();
  void drawMain();
  void drawStatusBar();
  void drawMessages();
  void drawShortcuts();
  void pollJobs();
  bool captureScreenshot(const std::string& file);
  // Saves WS/ui_state.json on the writer thread once the state has held for a second (`now`:
  // at once, e.g. before the workspace closes).
  void saveUiState(bool now);
  bool persistUi() const { return opts.screenshot.empty(); }  // one-shot renders leave no trace

  GLFWwindow* m_window = nullptr;
  WorkspaceBar m_bar{*this};
  PipelineView m_pipelineView{*this};
  BrowserView m_browser{*this};
  std::unique_ptr<ScriptRunner> m_script;
  std::map<std::string, std::pair<uint64_t, std::array<float, 4>>> m_hooks;  // name → frame, rect
  uint64_t m_frame = 0;
  uint64_t m_wsGeneration = 0;  // results for an older workspace are dropped
  uint64_t m_seenOutcome = 0;
  std::string m_openAfterImport;  // workspace to open when the running import is done
  bool m_switchAfterImport = false;
  float m_contentScale = 1;    // the window's content scale (GLFW), whatever --scale says
  WorkspaceUiState m_uiSaved;  // last state written (or read) for the open workspace
  WorkspaceUiState m_uiPending;
  std::chrono::steady_clock::time_point m_uiChanged;
  bool m_viewRestored = false;  // openWorkspace() restored the workspace's last view
  bool m_uiWriteWarned = false;
  bool m_dataStale = false;  // embed/sae finished: reload the index when the queue is idle
  bool m_quit = false;
  bool m_showShortcuts = false;
  std::string m_screenshotFile;
  bool m_screenshotDone = false;
  int m_exitCode = 0;
  std::chrono::steady_clock::time_point m_start;
  friend class BrowserView;
  friend class PipelineView;
  friend class WorkspaceBar;
};

}  // namespace ui
