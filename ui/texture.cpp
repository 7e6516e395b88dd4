#include "texture.h"

#include <GL/gl.h>

#include <utility>
#include <vector>

namespace ui {

namespace {
std::vector<unsigned> g_retired;  // UI thread only
int g_live = 0;
}  // namespace

Texture::Texture(const engine::Image& img) {
  if (img.empty() || (img.channels != 3 && img.channels != 4)) return;
  GLint previous = 0;
  glGetIntegerv(GL_TEXTURE_BINDING_2D, &previous);
  GLuint id = 0;
  glGenTextures(1, &id);
  glBindTexture(GL_TEXTURE_2D, id);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  const GLenum fmt = img.channels == 4 ? GL_RGBA : GL_RGB;
  glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, img.width, img.height, 0, fmt, GL_UNSIGNED_BYTE,
               img.pixels.data());
  glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
  glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(previous));
  m_id = id;
  m_width = img.width;
  m_height = img.height;
  ++g_live;
}

Texture::~Texture() {
  retire();
}

Texture::Texture(Texture&& o) noexcept
    : m_id(std::exchange(o.m_id, 0u)), m_width(o.m_width), m_height(o.m_height) {}

Texture& Texture::operator=(Texture&& o) noexcept {
  if (this != &o) {
    retire();
    m_id = std::exchange(o.m_id, 0u);
    m_width = o.m_width;
    m_height = o.m_height;
  }
  return *this;
}

void Texture::retire() {
  if (m_id) {
    g_retired.push_back(m_id);
    --g_live;
  }
  m_id = 0;
}

void freeRetiredTextures() {
  if (g_retired.empty()) return;
  glDeleteTextures(static_cast<GLsizei>(g_retired.size()), g_retired.data());
  g_retired.clear();
}

int liveTextureCount() {
  return g_live;
}

}  // namespace ui
