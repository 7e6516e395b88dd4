#include "npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "error.h"
#include "fsutil.h"

namespace engine {

namespace {

// A string from the file, fit for a one-line message.
std::string shown(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (out.size() >= 40) return out + "...";
    out += (c < 0x20 || c == 0x7f) ? '?' : char(c);
  }
  return out;
}

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kMaxHeaderLen = 1 << 20;  // numpy itself refuses headers over 10,000 bytes

std::string errnoText() {
  return std::strerror(errno);
}

// Random-access bytes: a file or a buffer in memory.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly `n` bytes at `offset`, or throws.
  virtual void readAt(uint64_t offset, void* dst, size_t n) const = 0;
};

class FileSource : public Source {
 public:
  explicit FileSource(const std::string& path) : m_path(path) {
    m_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (m_fd < 0) throw Error("cannot open " + path + ": " + errnoText());
    struct stat st {};
    if (::fstat(m_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(m_fd);
      throw Error("cannot read " + path + " (not a regular file)");
    }
    m_size = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override { ::close(m_fd); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return m_size; }

  void readAt(uint64_t offset, void* dst, size_t n) const override {
    auto* p = static_cast<uint8_t*>(dst);
    while (n > 0) {
      const ssize_t r = ::pread(m_fd, p, n, static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw Error("cannot read " + m_path + ": " + errnoText());
      }
      if (r == 0) throw Error(m_path + ": file ended early (truncated .npy file?)");
      p += r;
      n -= static_cast<size_t>(r);
      offset += static_cast<uint64_t>(r);
    }
  }

 private:
  std::string m_path;
  int m_fd = -1;
  uint64_t m_size = 0;
};

class MemorySource : public Source {
 public:
  MemorySource(const uint8_t* data, size_t size, const std::string& name)
      : m_data(data), m_size(size), m_name(name) {}
  uint64_t size() const override { return m_size; }
  void readAt(uint64_t offset, void* dst, size_t n) const override {
    if (offset > m_size || n > m_size - offset)
      throw Error(m_name + ": file ended early (truncated .npy file?)");
    if (n > 0) std::memcpy(dst, m_data + offset, n);
  }

 private:
  const uint8_t* m_data;
  size_t m_size;
  const std::string& m_name;
};

// --- the header: a Python dict literal such as
//     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }

struct PyValue {
  enum Kind { Str, Bool, None, Int, Seq } kind = None;
  std::string s;
  bool b = false;
  int64_t i = 0;
  std::vector<PyValue> items;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : m_t(text), m_path(path) {}

  std::vector<std::pair<std::string, PyValue>> parseDict() {
    std::vector<std::pair<std::string, PyValue>> out;
    expect('{');
    while (true) {
      skipSpace();
      if (peek() == '}') {
        ++m_p;
        break;
      }
      PyValue key = value(0);
      if (key.kind != PyValue::Str) fail("a dict key is not a string");
      expect(':');
      out.emplace_back(key.s, value(0));
      skipSpace();
      if (peek() == ',') {
        ++m_p;
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(m_path + ": malformed .npy header (" + what + ")");
  }
  char peek() const { return m_p < m_t.size() ? m_t[m_p] : '\0'; }
  void skipSpace() {
    while (m_p < m_t.size() && (m_t[m_p] == ' ' || m_t[m_p] == '\t' || m_t[m_p] == '\n')) ++m_p;
  }
  void expect(char c) {
    skipSpace();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++m_p;
  }
  bool word(const char* w) {
    const size_t n = std::strlen(w);
    if (m_t.compare(m_p, n, w) != 0) return false;
    m_p += n;
    return true;
  }

  PyValue value(int depth) {
    if (depth > 8) fail("nested too deeply");
    skipSpace();
    PyValue v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      ++m_p;
      const size_t end = m_t.find(c, m_p);
      if (end == std::string::npos) fail("unterminated string");
      v.kind = PyValue::Str;
      v.s = m_t.substr(m_p, end - m_p);
      m_p = end + 1;
    } else if (c == '(' || c == '[') {
      const char close = c == '(' ? ')' : ']';
      ++m_p;
      v.kind = PyValue::Seq;
      while (true) {
        skipSpace();
        if (peek() == close) {
          ++m_p;
          break;
        }
        if (v.items.size() > 64) fail("too many items");
        v.items.push_back(value(depth + 1));
        skipSpace();
        if (peek() == ',') {
          ++m_p;
        } else if (peek() != close) {
          fail(std::string("expected ',' or '") + close + "'");
        }
      }
    } else if (word("True")) {
      v.kind = PyValue::Bool;
      v.b = true;
    } else if (word("False")) {
      v.kind = PyValue::Bool;
    } else if (word("None")) {
      v.kind = PyValue::None;
    } else if (c >= '0' && c <= '9') {
      v.kind = PyValue::Int;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v.i, 10, &v.i) ||
            __builtin_add_overflow(v.i, peek() - '0', &v.i))
          fail("a dimension is too large");
        ++m_p;
      }
      if (peek() == 'L') ++m_p;  // Python 2 long literal
    } else {
      fail("unexpected character");
    }
    return v;
  }

  const std::string& m_t;
  const std::string& m_path;
  size_t m_p = 0;
};

// numpy descr → DType, or throws.
DType parseDescr(const std::string& d, const std::string& path) {
  if (d.size() < 3) throw Error(path + ": unsupported .npy dtype '" + shown(d) + "'");
  const char order = d[0];
  const std::string code = d.substr(1);
  const bool oneByte = code == "i1" || code == "u1" || code == "b1";
  if (order == '>' && !oneByte)
    throw Error(path + ": big-endian .npy data ('" + shown(d) +
                "') is not supported; save it with arr.astype(arr.dtype.newbyteorder('<'))");
  if (order != '<' && order != '|' && order != '=' && order != '>')
    throw Error(path + ": unsupported .npy dtype '" + shown(d) + "'");
  if (code == "f4") return DType::Float32;
  if (code == "f8") return DType::Float64;
  if (code == "f2") return DType::Float16;
  if (code == "i8") return DType::Int64;
  if (code == "i4") return DType::Int32;
  if (code == "i2") return DType::Int16;
  if (code == "i1") return DType::Int8;
  if (code == "u1") return DType::UInt8;
  if (code == "b1") return DType::Bool;
  throw Error(path + ": unsupported .npy dtype '" + shown(d) +
              "' (saescope reads float16/32/64, int8/16/32/64, uint8 and bool)");
}

const char* descrOf(DType t) {
  switch (t) {
    case DType::Float32:
      return "<f4";
    case DType::Float64:
      return "<f8";
    case DType::Float16:
      return "<f2";
    case DType::Int64:
      return "<i8";
    case DType::Int32:
      return "<i4";
    case DType::Int16:
      return "<i2";
    case DType::Int8:
      return "|i1";
    case DType::UInt8:
      return "|u1";
    case DType::Bool:
      return "|b1";
    case DType::BFloat16:
      return nullptr;
  }
  return nullptr;
}

// Byte count of `shape` × `elemSize`, or throws naming `path` when it overflows.
uint64_t checkedBytes(const std::vector<int64_t>& shape, size_t elemSize, const std::string& path) {
  uint64_t n = elemSize;
  for (int64_t d : shape) {
    if (d < 0) throw Error(path + ": negative dimension in shape");
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      throw Error(path + ": shape is too large (element count overflows)");
  }
  return n;
}

NpyInfo parseHeader(const Source& f, const std::string& path) {
  uint8_t pre[12];
  if (f.size() < 10) throw Error(path + ": not a .npy file (too short)");
  f.readAt(0, pre, f.size() >= 12 ? 12 : 10);
  if (std::memcmp(pre, kMagic, kMagicLen) != 0) throw Error(path + ": not a .npy file");
  const uint8_t major = pre[6];
  size_t headerLen = 0;
  size_t start = 0;
  if (major == 1) {
    headerLen = pre[8] | (size_t(pre[9]) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (f.size() < 12) throw Error(path + ": truncated .npy header");
    headerLen = pre[8] | (size_t(pre[9]) << 8) | (size_t(pre[10]) << 16) | (size_t(pre[11]) << 24);
    start = 12;
  } else {
    throw Error(path + ": unsupported .npy format version " + std::to_string(major) +
                " (saescope reads 1.0, 2.0 and 3.0)");
  }
  if (headerLen > kMaxHeaderLen || start + headerLen > f.size())
    throw Error(path + ": truncated or corrupt .npy header");
  std::string text(headerLen, '\0');
  f.readAt(start, text.data(), headerLen);

  HeaderParser parser(text, path);
  NpyInfo info;
  bool haveDescr = false, haveOrder = false, haveShape = false;
  for (auto& kv : parser.parseDict()) {
    const PyValue& v = kv.second;
    if (kv.first == "descr") {
      if (v.kind != PyValue::Str)
        throw Error(path +
                    ": structured .npy arrays are not supported (need a plain numeric dtype)");
      info.dtype = parseDescr(v.s, path);
      haveDescr = true;
    } else if (kv.first == "fortran_order") {
      if (v.kind != PyValue::Bool) throw Error(path + ": malformed .npy header (fortran_order)");
      info.fortranOrder = v.b;
      haveOrder = true;
    } else if (kv.first == "shape") {
      if (v.kind != PyValue::Seq) throw Error(path + ": malformed .npy header (shape)");
      for (const PyValue& d : v.items) {
        if (d.kind != PyValue::Int) throw Error(path + ": malformed .npy header (shape)");
        info.shape.push_back(d.i);
      }
      haveShape = true;
    }
  }
  if (!haveDescr || !haveOrder || !haveShape)
    throw Error(path + ": malformed .npy header (needs descr, fortran_order and shape)");
  info.dataOffset = start + headerLen;
  const uint64_t bytes = checkedBytes(info.shape, dtypeSize(info.dtype), path);
  if (bytes > f.size() - info.dataOffset)
    throw Error(path + ": truncated .npy file (header promises " + std::to_string(bytes) +
                " bytes of data, the file holds " + std::to_string(f.size() - info.dataOffset) +
                ")");
  return info;
}

std::string makeHeader(DType dtype, const std::vector<int64_t>& shape, const std::string& path) {
  const char* descr = descrOf(dtype);
  if (!descr)
    throw Error("cannot write " + path + ": numpy has no " + std::string(dtypeName(dtype)) +
                " dtype (convert the tensor to float32 first)");
  std::string dict = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw Error("cannot write " + path + ": negative dimension in shape");
    dict += (i ? ", " : "") + std::to_string(shape[i]);
  }
  if (shape.size() == 1) dict += ",";
  dict += "), }";
  // Pad with spaces and end with '\n' so that the data starts on a 64-byte boundary.
  size_t total = 10 + dict.size() + 1;
  const size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  if (dict.size() > 65535) throw Error("cannot write " + path + ": too many dimensions");
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  out += dict;
  return out;
}

}  // namespace

namespace detail {

void copyStrided(const uint8_t* src, size_t elemSize, const std::vector<int64_t>& shape,
                 const std::vector<int64_t>& strides, int64_t offset, uint8_t* dst) {
  const size_t nd = shape.size();
  for (int64_t d : shape)
    if (d == 0) return;
  if (nd == 0) {
    std::memcpy(dst, src + offset * static_cast<int64_t>(elemSize), elemSize);
    return;
  }
  const int64_t inner = shape[nd - 1];
  const int64_t innerStride = strides[nd - 1];
  std::vector<int64_t> idx(nd, 0);
  int64_t base = offset;  // element offset of idx[0..nd-2], idx[nd-1] = 0
  while (true) {
    if (innerStride == 1) {
      std::memcpy(dst, src + base * static_cast<int64_t>(elemSize),
                  static_cast<size_t>(inner) * elemSize);
      dst += static_cast<size_t>(inner) * elemSize;
    } else {
      for (int64_t i = 0; i < inner; ++i) {
        std::memcpy(dst, src + (base + i * innerStride) * static_cast<int64_t>(elemSize), elemSize);
        dst += elemSize;
      }
    }
    // Odometer over the outer dimensions.
    size_t k = nd - 1;
    while (k > 0) {
      --k;
      if (++idx[k] < shape[k]) {
        base += strides[k];
        break;
      }
      base -= strides[k] * (shape[k] - 1);
      idx[k] = 0;
      if (k == 0) return;
    }
    if (nd == 1) return;
  }
}

}  // namespace detail

namespace {
TensorData readNpyFrom(const Source& f, const std::string& path) {
  const NpyInfo info = parseHeader(f, path);
  TensorData t;
  t.dtype = info.dtype;
  t.shape = info.shape;
  const size_t bytes = static_cast<size_t>(checkedBytes(info.shape, dtypeSize(info.dtype), path));
  t.bytes.resize(bytes);
  if (bytes > 0) f.readAt(info.dataOffset, t.bytes.data(), bytes);
  if (info.fortranOrder && info.shape.size() > 1) {
    // Element (i0, i1, ...) sits at i0 + s0*i1 + s0*s1*i2 + ... in Fortran order.
    std::vector<int64_t> strides(info.shape.size());
    int64_t s = 1;
    for (size_t i = 0; i < info.shape.size(); ++i) {
      strides[i] = s;
      s *= info.shape[i];
    }
    std::vector<uint8_t> c(bytes);
    detail::copyStrided(t.bytes.data(), dtypeSize(t.dtype), t.shape, strides, 0, c.data());
    t.bytes.swap(c);
  }
  return t;
}
}  // namespace

NpyInfo readNpyHeader(const std::string& path) {
  FileSource f(path);
  return parseHeader(f, path);
}

TensorData readNpy(const std::string& path) {
  FileSource f(path);
  return readNpyFrom(f, path);
}

namespace detail {
TensorData readNpyFromMemory(const uint8_t* data, size_t size, const std::string& name) {
  MemorySource f(data, size, name);
  return readNpyFrom(f, name);
}
}  // namespace detail

void readNpyRows(const std::string& path, const NpyInfo& info, int64_t firstRow, int64_t rows,
                 void* dst) {
  if (info.shape.empty()) throw Error(path + ": a 0-d .npy array has no rows");
  if (info.fortranOrder && info.shape.size() > 1)
    throw Error(path +
                ": rows of a Fortran-order .npy array cannot be streamed; re-save it with "
                "np.save(path, np.ascontiguousarray(a))");
  if (firstRow < 0 || rows < 0 || firstRow > info.shape[0] || rows > info.shape[0] - firstRow)
    throw Error(path + ": rows [" + std::to_string(firstRow) + ", " +
                std::to_string(firstRow + rows) + ") are outside the array's " +
                std::to_string(info.shape[0]) + " rows");
  std::vector<int64_t> rowShape(info.shape.begin() + 1, info.shape.end());
  const uint64_t rowBytes = checkedBytes(rowShape, dtypeSize(info.dtype), path);
  FileSource f(path);
  const uint64_t total = checkedBytes(info.shape, dtypeSize(info.dtype), path);
  if (info.dataOffset > f.size() || total > f.size() - info.dataOffset)
    throw Error(path + ": truncated .npy file (or it changed since its header was read)");
  if (rows == 0 || rowBytes == 0) return;
  f.readAt(info.dataOffset + static_cast<uint64_t>(firstRow) * rowBytes, dst,
           static_cast<size_t>(static_cast<uint64_t>(rows) * rowBytes));
}

void writeNpy(const std::string& path, const TensorData& t) {
  const std::string header = makeHeader(t.dtype, t.shape, path);
  const uint64_t bytes = checkedBytes(t.shape, dtypeSize(t.dtype), path);
  if (bytes != t.bytes.size())
    throw Error("cannot write " + path + ": tensor " + t.shapeString() + " " + dtypeName(t.dtype) +
                " holds " + std::to_string(t.bytes.size()) + " bytes, expected " +
                std::to_string(bytes));
  std::vector<uint8_t> buf(header.size() + t.bytes.size());
  std::memcpy(buf.data(), header.data(), header.size());
  if (!t.bytes.empty()) std::memcpy(buf.data() + header.size(), t.bytes.data(), t.bytes.size());
  writeFileAtomic(path, buf.data(), buf.size());
}

// --- NpyRowWriter

NpyRowWriter::NpyRowWriter(const std::string& path, DType dtype, int64_t cols, int64_t rowsExpected)
    : m_path(path), m_rowsExpected(rowsExpected) {
  static std::atomic<unsigned> counter{0};
  if (cols < 0 || rowsExpected < 0) throw Error("cannot write " + path + ": negative array shape");
  const std::string header = makeHeader(dtype, {rowsExpected, cols}, path);
  m_rowBytes = static_cast<size_t>(checkedBytes({cols}, dtypeSize(dtype), path));
  checkedBytes({rowsExpected, cols}, dtypeSize(dtype), path);
  const std::filesystem::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path(), ec);
  m_tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (m_fd < 0)
    throw Error("cannot create " + m_tmp + ": " + errnoText() + " (is the folder writable?)");
  try {
    writeAllToFd(m_fd, header.data(), header.size(), path);
  } catch (...) {
    ::close(m_fd);
    ::unlink(m_tmp.c_str());
    throw;
  }
}

NpyRowWriter::~NpyRowWriter() {
  if (m_fd >= 0) ::close(m_fd);
  if (!m_committed) ::unlink(m_tmp.c_str());
}

void NpyRowWriter::append(const void* rows, int64_t n) {
  if (m_committed || m_fd < 0) throw Error("cannot write " + m_path + ": writer already closed");
  if (n < 0 || n > m_rowsExpected - m_rows)
    throw Error("cannot write " + m_path + ": " + std::to_string(m_rows + n) + " rows exceed the " +
                std::to_string(m_rowsExpected) + " announced");
  writeAllToFd(m_fd, rows, static_cast<size_t>(n) * m_rowBytes, m_path);
  m_rows += n;
}

void NpyRowWriter::commit() {
  if (m_committed || m_fd < 0) throw Error("cannot write " + m_path + ": writer already closed");
  if (m_rows != m_rowsExpected)
    throw Error("cannot write " + m_path + ": " + std::to_string(m_rows) + " rows written, " +
                std::to_string(m_rowsExpected) + " expected");
  if (::fsync(m_fd) != 0) throw Error("cannot flush " + m_path + ": " + errnoText());
  const int fd = m_fd;
  m_fd = -1;
  if (::close(fd) != 0) throw Error("cannot write " + m_path + ": " + errnoText());
  if (::rename(m_tmp.c_str(), m_path.c_str()) != 0)
    throw Error("cannot replace " + m_path + ": " + errnoText());
  m_committed = true;
}

}  // namespace engine
