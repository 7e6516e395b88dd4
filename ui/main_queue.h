// ui/main_queue.h — closures handed from worker threads to the UI thread.
//
// Thread-safety: post() from any thread; drain() only on the UI thread, right after
// ImGui::NewFrame() (ImHex's doLater): results are applied there, textures uploaded there.
#pragma once
#include <functional>
#include <mutex>
#include <vector>

namespace ui {

class MainQueue {
 public:
  // Queues `fn` for the UI thread and wakes the frame loop (glfwPostEmptyEvent).
  void post(std::function<void()> fn);
  // Runs every closure queued so far, in order. UI thread.
  void drain();
  bool empty() const;

 private:
  mutable std::mutex m_mutex;
  std::vector<std::function<void()>> m_items;
};

}  // namespace ui
