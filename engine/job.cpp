#include "job.h"

#include <cmath>
#include <cstdio>

#include "error.h"

namespace engine {

namespace {
constexpr size_t kMaxCurvePoints = 4000;
}

JobContext::JobContext() : m_stageStart(std::chrono::steady_clock::now()) {}

void JobContext::beginStage(const std::string& stage, int64_t total, const std::string& unit) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_snap.stage = stage;
  m_snap.unit = unit;
  m_snap.total = total;
  m_snap.done = 0;
  m_snap.rate = 0;
  m_snap.elapsed = 0;
  m_snap.eta = -1;
  m_snap.latest.clear();
  m_snap.curve.clear();
  m_stageStart = m_lastRateTime = std::chrono::steady_clock::now();
  m_lastRateDone = 0;
  m_skipped = 0;
  m_snap.version = ++m_version;
}

void JobContext::skip(int64_t n) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_snap.done += n;
  m_lastRateDone += n;
  m_skipped += n;
  m_snap.version = ++m_version;
}

void JobContext::advance(int64_t n, const std::map<std::string, double>& values, int64_t step) {
  std::lock_guard<std::mutex> lock(m_mutex);
  const auto now = std::chrono::steady_clock::now();
  m_snap.done += n;
  m_snap.elapsed = std::chrono::duration<double>(now - m_stageStart).count();
  const double dt = std::chrono::duration<double>(now - m_lastRateTime).count();
  if (dt >= 0.5 || m_snap.rate == 0) {
    const double inst = dt > 0 ? (m_snap.done - m_lastRateDone) / dt : 0;
    // Exponential smoothing keeps the rate steady; the overall mean takes over early on.
    const double overall = m_snap.elapsed > 0 ? (m_snap.done - m_skipped) / m_snap.elapsed : 0;
    m_snap.rate = (m_snap.rate == 0 || m_snap.elapsed < 3) ? overall : 0.7 * m_snap.rate + 0.3 * inst;
    if (dt > 0) {
      m_lastRateTime = now;
      m_lastRateDone = m_snap.done;
    }
  }
  if (m_snap.total > 0 && m_snap.rate > 0)
    m_snap.eta = std::max(0.0, (m_snap.total - m_snap.done) / m_snap.rate);
  if (!values.empty()) {
    for (const auto& kv : values) m_snap.latest[kv.first] = kv.second;
    CurvePoint p;
    p.step = step >= 0 ? step : static_cast<int64_t>(m_snap.curve.size());
    p.values = values;
    m_snap.curve.push_back(std::move(p));
    if (m_snap.curve.size() > kMaxCurvePoints) {
      // Halve the resolution: keep every second point.
      std::vector<CurvePoint> thinned;
      thinned.reserve(kMaxCurvePoints / 2 + 1);
      for (size_t i = 0; i < m_snap.curve.size(); i += 2) thinned.push_back(m_snap.curve[i]);
      m_snap.curve.swap(thinned);
    }
  }
  m_snap.version = ++m_version;
}

void JobContext::setDevice(const std::string& device) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_snap.device = device;
  m_snap.version = ++m_version;
}

void JobContext::log(const std::string& line) {
  LogSink sink;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_log.push_back(line);
    sink = m_sink;
  }
  if (sink) sink(line);
}

void JobContext::checkStop() const {
  if (m_stop.load()) throw Cancelled();
}

ProgressSnapshot JobContext::snapshot() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_snap;
}

JobContext::Timing JobContext::timing() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return {m_snap.elapsed, m_snap.rate};
}

std::vector<std::string> JobContext::logLines() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_log;
}

void JobContext::setLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_sink = std::move(sink);
}

std::string formatDuration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace engine
