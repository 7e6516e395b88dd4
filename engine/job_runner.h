// engine/job_runner.h — one worker thread that runs queued jobs in order. Torch-free.
//
// Thread-safety: every method may be called from any thread (in practice: the UI thread submits,
// cancels and polls; the worker runs the jobs). Observers never wait on a running job: snapshot(),
// isBusy() and outcome() take a short lock and copy. The destructor cancels the running job,
// drops the queue and joins the worker (it never detaches), so it returns once the running job
// has reached its next checkStop().
//
// Failure semantics: a job that fails (throws anything but engine::Cancelled) drops the jobs queued
// behind it, because pipeline stages depend on the one before them ("Run all" = train, embed, sae).
// cancel() drops the queue itself; a job submitted after cancel() runs once the cancelled one
// has stopped. A job that returns normally is Done even if a stop came too late to interrupt it.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "job.h"

namespace engine {

class JobRunner {
 public:
  using JobFn = std::function<void(JobContext&)>;

  enum class State { Idle, Queued, Running, Done, Failed, Cancelled };
  static const char* stateName(State s);  // "idle", "queued", "running", "done", ...

  // What became of one job.
  struct Outcome {
    uint64_t id = 0;  // 0: no job has finished yet
    std::string name;
    State state = State::Idle;
    std::string error;  // one line for Failed; "cancelled" for Cancelled
    double seconds = 0;
  };

  JobRunner();
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Queues `fn` to run after the jobs already queued; returns its id (> 0). The job gets a fresh
  // JobContext; `setup` (optional) is called on it before the job starts, e.g. to set a log sink.
  uint64_t submit(const std::string& name, JobFn fn, std::function<void(JobContext&)> setup = {});
  // Requests stop of the running job and drops every queued one. Returns at once.
  void cancel();

  // True while a job runs or waits in the queue.
  bool isBusy() const;
  // Name and id of the running job ("" / 0 when none).
  std::string currentName() const;
  uint64_t currentId() const;
  size_t queued() const;
  // Progress of the running job, or of the last finished one when idle (empty before any job).
  ProgressSnapshot snapshot() const;
  // Log lines of the running (or last) job.
  std::vector<std::string> logLines() const;
  // The running (or last) job's context; observers may keep it alive for reading.
  std::shared_ptr<const JobContext> context() const;
  // The last finished job, and the state of job `id` (Idle when unknown).
  Outcome lastOutcome() const;
  State stateOf(uint64_t id) const;
  // Convenience views of lastOutcome().
  std::string lastError() const;
  bool lastCancelled() const;
  // Blocks until idle or `timeoutSeconds` passed; true when idle. For CLI tools and tests only:
  // the UI thread never calls it.
  bool waitIdle(double timeoutSeconds) const;

 private:
  struct Item {
    uint64_t id;
    std::string name;
    JobFn fn;
    std::function<void(JobContext&)> setup;
  };
  void loop();

  mutable std::mutex m_mutex;
  mutable std::condition_variable m_cv;      // wakes the worker
  mutable std::condition_variable m_idleCv;  // wakes waitIdle()
  std::deque<Item> m_queue;
  std::shared_ptr<JobContext> m_ctx;  // running or last job
  uint64_t m_nextId = 1;
  uint64_t m_runningId = 0;
  std::string m_runningName;
  Outcome m_last;
  std::map<uint64_t, State> m_states;  // recent jobs' final states (bounded)
  bool m_quit = false;
  std::thread m_thread;  // last member: started after everything above is constructed
};

}  // namespace engine
