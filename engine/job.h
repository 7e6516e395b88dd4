// engine/job.h — progress, cancellation and logging shared by a running job and its observers.
//
// Thread-safety: a JobContext is written by the one worker thread that runs the job and read by
// any number of observer threads (the UI thread, a terminal progress printer). Every method is
// safe to call from any thread. Observers never block the worker for longer than a copy.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace engine {

// One point of a loss curve: the step and the named values at that step.
struct CurvePoint {
  int64_t step = 0;
  std::map<std::string, double> values;
};

// An immutable copy of a job's progress, as an observer sees it.
struct ProgressSnapshot {
  std::string stage;        // "train", "embed", "sae", "topk", "demo-data", ...
  std::string unit;         // what `step` counts: "images", "vectors", ...
  int64_t done = 0;         // units done in this stage
  int64_t total = 0;        // units in this stage (0: unknown)
  double rate = 0;          // units per second (smoothed)
  double elapsed = 0;       // seconds since the stage began
  double eta = -1;          // seconds left, -1 when unknown
  std::map<std::string, double> latest;  // latest loss terms and metrics
  std::vector<CurvePoint> curve;          // this stage's curve (bounded, downsampled)
  std::string device;       // "cpu (2 threads)", "cuda:0 NVIDIA H100 ..."
  uint64_t version = 0;     // grows on every update
};

class JobContext {
 public:
  using LogSink = std::function<void(const std::string&)>;
  JobContext();

  // --- called by the job (worker thread) ---
  // Starts a stage: resets done/rate/curve.
  void beginStage(const std::string& stage, int64_t total, const std::string& unit);
  // Adds `n` units done; `values` (may be empty) is recorded as the latest loss terms and, every
  // call, as a curve point at `step`.
  void advance(int64_t n, const std::map<std::string, double>& values = {}, int64_t step = -1);
  // Counts `n` units as done before this run (a resumed stage): progress moves, the rate does not.
  void skip(int64_t n);
  void setDevice(const std::string& device);
  // Writes a line to the log sink (terminal / GUI log) and keeps it for log().
  void log(const std::string& line);
  // Throws engine::Cancelled when a stop was requested. Jobs call it at least once per batch.
  void checkStop() const;

  // --- called by anyone ---
  void requestStop() { m_stop.store(true); }
  bool stopRequested() const { return m_stop.load(); }
  ProgressSnapshot snapshot() const;
  // The stage's elapsed seconds and rate as of the last advance(): cheap, where snapshot() copies
  // the whole loss curve (up to 4,000 points of named values), which a step loop need not do.
  struct Timing {
    double elapsed = 0, rate = 0;
  };
  Timing timing() const;
  uint64_t version() const { return m_version.load(); }
  std::vector<std::string> logLines() const;
  // Sets where log lines go (in addition to being kept). Call before the job starts.
  void setLogSink(LogSink sink);

 private:
  mutable std::mutex m_mutex;
  ProgressSnapshot m_snap;
  std::chrono::steady_clock::time_point m_stageStart;
  std::chrono::steady_clock::time_point m_lastRateTime;
  int64_t m_lastRateDone = 0;
  int64_t m_skipped = 0;  // units counted by skip()
  std::vector<std::string> m_log;
  LogSink m_sink;
  std::atomic<bool> m_stop{false};
  std::atomic<uint64_t> m_version{0};
};

// Formats seconds as "1:02:03" / "02:03".
std::string formatDuration(double seconds);

}  // namespace engine
