#include "main_queue.h"

#include <GLFW/glfw3.h>

namespace ui {

void MainQueue::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_items.push_back(std::move(fn));
  }
  glfwPostEmptyEvent();  // thread-safe; a no-op error when GLFW is not initialised
}

void MainQueue::drain() {
  std::vector<std::function<void()>> items;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    items.swap(m_items);
  }
  for (auto& fn : items) fn();
}

bool MainQueue::empty() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_items.empty();
}

}  // namespace ui
