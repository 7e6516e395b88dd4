#include "job_runner.h"

#include <chrono>

#include "error.h"

namespace engine {

namespace {
constexpr size_t kKeptStates = 256;
}

const char* JobRunner::stateName(State s) {
  switch (s) {
    case State::Idle:
      return "idle";
    case State::Queued:
      return "queued";
    case State::Running:
      return "running";
    case State::Done:
      return "done";
    case State::Failed:
      return "failed";
    case State::Cancelled:
      return "cancelled";
  }
  return "idle";
}

JobRunner::JobRunner() : m_thread([this] { loop(); }) {}

JobRunner::~JobRunner() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_quit = true;
    m_queue.clear();
    if (m_ctx && m_runningId) m_ctx->requestStop();
  }
  m_cv.notify_all();
  m_thread.join();
}

uint64_t JobRunner::submit(const std::string& name, JobFn fn,
                           std::function<void(JobContext&)> setup) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    id = m_nextId++;
    m_queue.push_back(Item{id, name, std::move(fn), std::move(setup)});
  }
  m_cv.notify_all();
  return id;
}

void JobRunner::cancel() {
  std::lock_guard<std::mutex> lock(m_mutex);
  for (const Item& it : m_queue) m_states[it.id] = State::Cancelled;
  m_queue.clear();
  if (m_ctx && m_runningId) m_ctx->requestStop();
  m_idleCv.notify_all();
}

bool JobRunner::isBusy() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_runningId != 0 || !m_queue.empty();
}

std::string JobRunner::currentName() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_runningName;
}

uint64_t JobRunner::currentId() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_runningId;
}

size_t JobRunner::queued() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_queue.size();
}

ProgressSnapshot JobRunner::snapshot() const {
  std::shared_ptr<JobContext> ctx;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    ctx = m_ctx;
  }
  return ctx ? ctx->snapshot() : ProgressSnapshot{};
}

std::vector<std::string> JobRunner::logLines() const {
  std::shared_ptr<JobContext> ctx;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    ctx = m_ctx;
  }
  return ctx ? ctx->logLines() : std::vector<std::string>{};
}

std::shared_ptr<const JobContext> JobRunner::context() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_ctx;
}

JobRunner::Outcome JobRunner::lastOutcome() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_last;
}

JobRunner::State JobRunner::stateOf(uint64_t id) const {
  std::lock_guard<std::mutex> lock(m_mutex);
  if (id != 0 && id == m_runningId) return State::Running;
  for (const Item& it : m_queue)
    if (it.id == id) return State::Queued;
  auto f = m_states.find(id);
  return f == m_states.end() ? State::Idle : f->second;
}

std::string JobRunner::lastError() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_last.error;
}

bool JobRunner::lastCancelled() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_last.state == State::Cancelled;
}

bool JobRunner::waitIdle(double timeoutSeconds) const {
  std::unique_lock<std::mutex> lock(m_mutex);
  return m_idleCv.wait_for(lock, std::chrono::duration<double>(timeoutSeconds),
                           [this] { return m_runningId == 0 && m_queue.empty(); });
}

void JobRunner::loop() {
  std::unique_lock<std::mutex> lock(m_mutex);
  for (;;) {
    m_cv.wait(lock, [this] { return m_quit || !m_queue.empty(); });
    if (m_quit) return;
    Item item = std::move(m_queue.front());
    m_queue.pop_front();
    auto ctx = std::make_shared<JobContext>();
    m_ctx = ctx;
    m_runningId = item.id;
    m_runningName = item.name;
    lock.unlock();

    Outcome out;
    out.id = item.id;
    out.name = item.name;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      if (item.setup) item.setup(*ctx);
      ctx->checkStop();  // cancel() between dequeue and start
      item.fn(*ctx);
      out.state = State::Done;
    } catch (const Cancelled&) {
      out.state = State::Cancelled;
      out.error = "cancelled";
    } catch (const std::exception& e) {
      out.state = State::Failed;
      out.error = e.what();
    } catch (...) {
      out.state = State::Failed;
      out.error = "unknown error";
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    item.fn = nullptr;  // release captures on the worker, outside the lock

    lock.lock();
    // cancel() already dropped the queue; jobs submitted after it must still run.
    if (out.state == State::Failed) {
      for (const Item& it : m_queue) m_states[it.id] = State::Cancelled;
      m_queue.clear();
    }
    m_states[out.id] = out.state;
    while (m_states.size() > kKeptStates) m_states.erase(m_states.begin());
    m_last = std::move(out);
    m_runningId = 0;
    m_runningName.clear();
    m_idleCv.notify_all();
  }
}

}  // namespace engine
