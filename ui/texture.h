// ui/texture.h — GL textures owned by the UI thread.
//
// Thread-safety: UI thread only (the thread that owns the GL context). A Texture is move-only;
// destroying it does not delete the GL name at once but retires it: the name is deleted by
// freeRetiredTextures(), which the frame loop calls after ImGui has rendered the frame that may
// still reference it (Polyscope's rule: a texture lives until the frame that draws it rendered).
#pragma once
#include <cstdint>

#include "engine/image.h"

namespace ui {

class Texture {
 public:
  Texture() = default;
  // Uploads an RGB or RGBA 8-bit image (linear filtering, clamped). Empty image: empty texture.
  explicit Texture(const engine::Image& img);
  ~Texture();
  Texture(Texture&& o) noexcept;
  Texture& operator=(Texture&& o) noexcept;
  Texture(const Texture&) = delete;
  Texture& operator=(const Texture&) = delete;

  bool valid() const { return m_id != 0; }
  int width() const { return m_width; }
  int height() const { return m_height; }
  // For ImGui::Image / ImDrawList::AddImage.
  void* imguiId() const { return reinterpret_cast<void*>(static_cast<uintptr_t>(m_id)); }
  size_t bytes() const { return static_cast<size_t>(m_width) * m_height * 4; }

 private:
  void retire();
  unsigned m_id = 0;
  int m_width = 0, m_height = 0;
};

// Deletes the GL names of textures destroyed since the last call. Frame loop, after Render.
void freeRetiredTextures();
// Number of textures alive (for the state dump and tests).
int liveTextureCount();

}  // namespace ui
