// engine/checkpoint.cpp — PyTorch and safetensors tensor files without LibTorch.
//
// [SECTION] Bytes, CRC-32, mapped files
// [SECTION] Zip reader (stored entries, zip64)
// [SECTION] Pickle VM (protocols 0-5, the subset torch.save emits and more)
// [SECTION] From unpickled objects to a StateDict
// [SECTION] torch.save zip format, legacy format
// [SECTION] safetensors
// [SECTION] Writer: pickle + zip as torch.save writes them
// [SECTION] Public API
#include "checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "error.h"
#include "fsutil.h"
#include "npy.h"

namespace engine {

namespace {

// =================================================================================================
// [SECTION] Bytes, CRC-32, mapped files
// =================================================================================================

uint16_t rd16(const uint8_t* p) {
  return uint16_t(p[0] | (p[1] << 8));
}
uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) {
  return uint64_t(rd32(p)) | (uint64_t(rd32(p + 4)) << 32);
}

void put16(std::string& s, uint16_t v) {
  s += char(v & 0xff);
  s += char(v >> 8);
}
void put32(std::string& s, uint32_t v) {
  put16(s, uint16_t(v & 0xffff));
  put16(s, uint16_t(v >> 16));
}
void put64(std::string& s, uint64_t v) {
  put32(s, uint32_t(v & 0xffffffffu));
  put32(s, uint32_t(v >> 32));
}

// CRC-32 (IEEE, reflected, as zip uses), eight bytes per step.
struct CrcTables {
  uint32_t t[8][256];
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};

uint32_t crc32(const uint8_t* p, size_t n) {
  static const CrcTables tables;
  const auto& t = tables.t;
  uint32_t c = 0xffffffffu;
  while (n >= 8) {
    const uint32_t a = rd32(p) ^ c;
    const uint32_t b = rd32(p + 4);
    c = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^
        t[3][b & 0xff] ^ t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

// A whole file, read-only: mapped when the OS lets us, read otherwise.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error("cannot read " + path + " (not a regular file)");
    }
    m_size = static_cast<size_t>(st.st_size);
    if (m_size > 0) {
      void* p = ::mmap(nullptr, m_size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) m_map = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
    if (m_size > 0 && !m_map) {
      m_copy = readFileBytes(path);
      m_size = m_copy.size();
    }
  }
  ~MappedFile() {
    if (m_map) ::munmap(const_cast<uint8_t*>(m_map), m_size);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return m_map ? m_map : m_copy.data(); }
  size_t size() const { return m_size; }

 private:
  const uint8_t* m_map = nullptr;
  std::vector<uint8_t> m_copy;
  size_t m_size = 0;
};

// A string from the file, fit for a one-line message: control bytes escaped, at most ~100 bytes.
std::string shown(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (out.size() >= 100) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  return out;
}

// a + b <= limit, without overflow.
bool fits(uint64_t a, uint64_t b, uint64_t limit) {
  return a <= limit && b <= limit - a;
}

// Output tensors may take at most this many bytes: views and zero strides can legitimately make
// tensors larger than their storage, but not without bound.
uint64_t outputBudget(size_t inputSize) {
  return uint64_t(inputSize) * 16 + (uint64_t(64) << 20);
}

// =================================================================================================
// [SECTION] Zip reader (stored entries, zip64)
// =================================================================================================

struct ZipEntry {
  std::string name;
  uint64_t localOffset = 0;
  uint64_t compressedSize = 0;
  uint64_t size = 0;
  uint32_t crc = 0;
  uint16_t method = 0;
  uint16_t flags = 0;
  bool verified = false;
};

class ZipReader {
 public:
  ZipReader(const uint8_t* data, size_t size, const std::string& file)
      : m_data(data), m_size(size), m_file(file) {
    parseCentralDirectory();
  }

  const std::vector<ZipEntry>& entries() const { return m_entries; }

  // The entry called `name`, or nullptr.
  ZipEntry* find(const std::string& name) {
    auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_entries[it->second];
  }

  // The bytes of `e`, CRC-checked the first time.
  const uint8_t* read(ZipEntry& e) {
    if (e.flags & 1) fail(shown(e.name) + " is encrypted");
    if (e.method != 0)
      fail(shown(e.name) + " is compressed (method " + std::to_string(e.method) +
           "); PyTorch writes uncompressed entries — was the file re-zipped?");
    if (e.compressedSize != e.size) fail(shown(e.name) + " has inconsistent sizes");
    const uint64_t off = e.localOffset;
    if (!fits(off, 30, m_size) || rd32(m_data + off) != 0x04034b50u)
      fail("bad local header for " + shown(e.name));
    const uint64_t dataOff = off + 30 + rd16(m_data + off + 26) + rd16(m_data + off + 28);
    if (!fits(dataOff, e.size, m_size)) fail(shown(e.name) + " extends past the end of the file");
    const uint8_t* p = m_data + dataOff;
    if (!e.verified) {
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // let fuzzers reach the pickle VM
      if (crc32(p, e.size) != e.crc) fail(shown(e.name) + " is corrupt (CRC mismatch)");
#endif
      e.verified = true;
    }
    return p;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(m_file + ": truncated or corrupt PyTorch checkpoint (" + what + ")");
  }

  void parseCentralDirectory() {
    if (m_size < 22) fail("too short for a zip file");
    // The end-of-central-directory record sits in the last 22 + 65535 bytes.
    int64_t eocd = -1;
    const int64_t lowest = std::max<int64_t>(0, int64_t(m_size) - 22 - 65535);
    for (int64_t i = int64_t(m_size) - 22; i >= lowest; --i) {
      if (rd32(m_data + i) == 0x06054b50u) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) fail("zip end record not found");
    const uint8_t* e = m_data + eocd;
    uint64_t count = rd16(e + 10);
    uint64_t cdSize = rd32(e + 12);
    uint64_t cdOffset = rd32(e + 16);
    // zip64: a locator right before the end record points at the zip64 end record.
    if (eocd >= 20 && rd32(m_data + eocd - 20) == 0x07064b50u) {
      const uint64_t z = rd64(m_data + eocd - 20 + 8);
      if (!fits(z, 56, m_size) || rd32(m_data + z) != 0x06064b50u) fail("bad zip64 end record");
      count = rd64(m_data + z + 32);
      cdSize = rd64(m_data + z + 40);
      cdOffset = rd64(m_data + z + 48);
    } else if (count == 0xffff || cdSize == 0xffffffffu || cdOffset == 0xffffffffu) {
      fail("zip64 end record missing");
    }
    if (!fits(cdOffset, cdSize, m_size)) fail("central directory outside the file");
    if (count > cdSize / 46) fail("central directory too small for its entry count");
    const uint8_t* cd = m_data + cdOffset;
    uint64_t pos = 0;
    m_entries.reserve(static_cast<size_t>(count));
    for (uint64_t n = 0; n < count; ++n) {
      if (!fits(pos, 46, cdSize) || rd32(cd + pos) != 0x02014b50u) fail("bad central directory");
      const uint8_t* h = cd + pos;
      ZipEntry en;
      en.flags = rd16(h + 8);
      en.method = rd16(h + 10);
      en.crc = rd32(h + 16);
      en.compressedSize = rd32(h + 20);
      en.size = rd32(h + 24);
      const uint16_t nameLen = rd16(h + 28), extraLen = rd16(h + 30), commentLen = rd16(h + 32);
      en.localOffset = rd32(h + 42);
      const uint64_t total = 46ull + nameLen + extraLen + commentLen;
      if (!fits(pos, total, cdSize)) fail("bad central directory");
      en.name.assign(reinterpret_cast<const char*>(h + 46), nameLen);
      parseZip64Extra(h + 46 + nameLen, extraLen, en);
      pos += total;
      if (m_index.emplace(en.name, m_entries.size()).second) m_entries.push_back(std::move(en));
    }
  }

  void parseZip64Extra(const uint8_t* x, uint16_t len, ZipEntry& en) {
    size_t p = 0;
    while (p + 4 <= len) {
      const uint16_t id = rd16(x + p), sz = rd16(x + p + 2);
      if (p + 4 + sz > len) fail("bad extra field for " + shown(en.name));
      if (id == 0x0001) {
        const uint8_t* f = x + p + 4;
        size_t q = 0;
        auto take = [&](uint64_t& v) {
          if (q + 8 > sz) fail("bad zip64 extra field for " + shown(en.name));
          v = rd64(f + q);
          q += 8;
        };
        if (en.size == 0xffffffffu) take(en.size);
        if (en.compressedSize == 0xffffffffu) take(en.compressedSize);
        if (en.localOffset == 0xffffffffu) take(en.localOffset);
      }
      p += 4 + sz;
    }
  }

  const uint8_t* m_data;
  size_t m_size;
  const std::string& m_file;
  std::vector<ZipEntry> m_entries;
  std::unordered_map<std::string, size_t> m_index;
};

// =================================================================================================
// [SECTION] Pickle VM
// =================================================================================================

// What an unpickled object is; Obj::ref indexes the side table named in the comment.
enum class Kind : uint8_t {
  None,
  Bool,     // Obj::i
  Int,      // Obj::i
  BigInt,   // m_strs: the raw little-endian bytes of an int beyond int64
  Float,    // Obj::f
  Str,      // m_strs
  Bytes,    // m_strs
  Tuple,    // m_seqs
  List,     // m_seqs
  Dict,     // m_seqs, alternating key, value
  Set,      // m_seqs
  Global,   // m_globals: (module, name)
  Storage,  // m_storages
  Tensor,   // m_tensors
  Object,   // m_objects: an instance of a class we do not model
};

struct Obj {
  Kind kind = Kind::None;
  uint32_t ref = 0;
  int64_t i = 0;
  double f = 0;
};

// A typed view of a storage record: torch.save's ('storage', type, key, location, numel).
struct StorageRef {
  std::string key;       // the root storage's key: "<prefix>data/<key>" in a zip file
  std::string typeName;  // "torch.FloatStorage", for messages
  bool known = false;    // dtype is one TensorData can hold
  DType dtype = DType::Float32;
  size_t elemSize = 0;     // 0: unknown storage type
  int64_t viewOffset = 0;  // legacy storage views: elements into the root storage
  int64_t viewNumel = -1;  // -1: the whole root storage
};

struct TensorRef {
  uint32_t storage = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape, stride;
};

struct ObjectRef {
  uint32_t callable = 0;   // the class or function
  uint32_t dictItems = 0;  // a Dict object holding SETITEM(S) applied to the instance
  bool hasDictItems = false;
};

constexpr size_t kMaxDims = 64;

// Storage type name (torch.<Name>Storage) → element type.
bool storageDType(const std::string& module, const std::string& name, StorageRef& s) {
  s.typeName = module + "." + name;
  if (module != "torch" && module != "torch.cuda" && module != "torch.storage") return false;
  static const struct {
    const char* name;
    DType dtype;
    bool known;
    size_t size;
  } kTable[] = {
      {"FloatStorage", DType::Float32, true, 4},
      {"DoubleStorage", DType::Float64, true, 8},
      {"HalfStorage", DType::Float16, true, 2},
      {"BFloat16Storage", DType::BFloat16, true, 2},
      {"LongStorage", DType::Int64, true, 8},
      {"IntStorage", DType::Int32, true, 4},
      {"ShortStorage", DType::Int16, true, 2},
      {"CharStorage", DType::Int8, true, 1},
      {"ByteStorage", DType::UInt8, true, 1},
      {"BoolStorage", DType::Bool, true, 1},
      {"UntypedStorage", DType::UInt8, true, 1},
      {"ComplexFloatStorage", DType::Float32, false, 8},
      {"ComplexDoubleStorage", DType::Float32, false, 16},
      {"QInt8Storage", DType::Int8, false, 1},
      {"QUInt8Storage", DType::UInt8, false, 1},
      {"QInt32Storage", DType::Int32, false, 4},
      {"QUInt4x2Storage", DType::UInt8, false, 1},
      {"QUInt2x4Storage", DType::UInt8, false, 1},
  };
  for (const auto& row : kTable) {
    if (name == row.name) {
      s.dtype = row.dtype;
      s.known = row.known;
      s.elemSize = row.size;
      return true;
    }
  }
  return false;
}

class Unpickler {
 public:
  enum class PidMode { None, Zip, Legacy };

  // `what` names the pickle in messages ("data.pkl"); `file` the file.
  Unpickler(const uint8_t* data, size_t size, const std::string& file, std::string what,
            PidMode mode)
      : m_data(data), m_size(size), m_file(file), m_what(std::move(what)), m_mode(mode) {
    newObj(Kind::None);  // id 0 is None
  }

  // Runs one pickle starting at `pos` to its STOP; returns the result and advances `pos`.
  uint32_t load(size_t& pos) {
    m_pos = pos;
    m_stack.clear();
    m_marks.clear();
    m_memo.clear();
    const uint32_t r = run();
    pos = m_pos;
    return r;
  }

  const Obj& obj(uint32_t id) const { return m_objs[id]; }
  const std::vector<uint32_t>& seq(uint32_t id) const { return m_seqs[m_objs[id].ref]; }
  const std::string& str(uint32_t id) const { return m_strs[m_objs[id].ref]; }
  const std::pair<std::string, std::string>& global(uint32_t id) const {
    return m_globals[m_objs[id].ref];
  }
  const ObjectRef& object(uint32_t id) const { return m_objects[m_objs[id].ref]; }
  const TensorRef& tensor(uint32_t id) const { return m_tensors[m_objs[id].ref]; }
  const StorageRef& storageOf(const TensorRef& t) const { return m_storages[t.storage]; }
  const std::vector<StorageRef>& storages() const { return m_storages; }

  // The key/value seq of a dict-like object (a dict, or an unknown class filled by SETITEM), or
  // nullptr.
  const std::vector<uint32_t>* dictItems(uint32_t id) const {
    const Obj& o = m_objs[id];
    if (o.kind == Kind::Dict) return &m_seqs[o.ref];
    if (o.kind == Kind::Object && m_objects[o.ref].hasDictItems)
      return &m_seqs[m_objs[m_objects[o.ref].dictItems].ref];
    return nullptr;
  }

  // A short description of an object's type for messages: "list", "torchvision...ResNet".
  std::string typeName(uint32_t id) const {
    const Obj& o = m_objs[id];
    switch (o.kind) {
      case Kind::None:
        return "None";
      case Kind::Bool:
        return "bool";
      case Kind::Int:
      case Kind::BigInt:
        return "int";
      case Kind::Float:
        return "float";
      case Kind::Str:
        return "str";
      case Kind::Bytes:
        return "bytes";
      case Kind::Tuple:
        return "tuple";
      case Kind::List:
        return "list";
      case Kind::Dict:
        return "dict";
      case Kind::Set:
        return "set";
      case Kind::Global:
        return "class";
      case Kind::Storage:
        return "storage";
      case Kind::Tensor:
        return "tensor";
      case Kind::Object: {
        const uint32_t c = m_objects[o.ref].callable;
        if (m_objs[c].kind == Kind::Global)
          return shown(global(c).first + "." + global(c).second) + " object";
        return "object";
      }
    }
    return "object";
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(m_file + ": corrupt PyTorch checkpoint (" + m_what + " at byte " +
                std::to_string(m_opPos) + ": " + what + ")");
  }

 private:
  // --- objects
  uint32_t newObj(Kind k, uint32_t ref = 0, int64_t i = 0, double f = 0) {
    if (m_objs.size() >= 0xfffffff0u) fail("too many objects");
    m_objs.push_back(Obj{k, ref, i, f});
    return uint32_t(m_objs.size() - 1);
  }
  uint32_t newSeq(Kind k, std::vector<uint32_t> items = {}) {
    m_seqs.push_back(std::move(items));
    return newObj(k, uint32_t(m_seqs.size() - 1));
  }
  uint32_t newStr(Kind k, std::string s) {
    m_strs.push_back(std::move(s));
    return newObj(k, uint32_t(m_strs.size() - 1));
  }
  uint32_t newInt(int64_t v) { return newObj(Kind::Int, 0, v); }
  uint32_t newGlobal(std::string module, std::string name) {
    m_globals.emplace_back(std::move(module), std::move(name));
    return newObj(Kind::Global, uint32_t(m_globals.size() - 1));
  }
  uint32_t newObject(uint32_t callable) {
    m_objects.push_back(ObjectRef{callable, 0, false});
    return newObj(Kind::Object, uint32_t(m_objects.size() - 1));
  }

  // --- input
  const uint8_t* take(size_t n) {
    if (n > m_size - m_pos) fail("pickle ends early (truncated file?)");
    const uint8_t* p = m_data + m_pos;
    m_pos += n;
    return p;
  }
  std::string takeLine() {
    const size_t limit = std::min(m_size - m_pos, size_t(4096));
    const void* nl = std::memchr(m_data + m_pos, '\n', limit);
    if (!nl) fail("unterminated text field");
    const size_t n = size_t(static_cast<const uint8_t*>(nl) - (m_data + m_pos));
    std::string s(reinterpret_cast<const char*>(m_data + m_pos), n);
    m_pos += n + 1;
    return s;
  }
  std::string takeString(uint64_t n) {
    if (n > m_size - m_pos) fail("string runs past the end (truncated file?)");
    const uint8_t* p = take(size_t(n));
    return std::string(reinterpret_cast<const char*>(p), size_t(n));
  }
  int64_t parseIntText(const std::string& s) {
    std::string t = s;
    if (!t.empty() && t.back() == 'L') t.pop_back();
    if (t.empty() || t.size() > 19) fail("bad integer text");
    size_t i = 0;
    bool neg = false;
    if (t[0] == '-' || t[0] == '+') {
      neg = t[0] == '-';
      i = 1;
    }
    if (i == t.size()) fail("bad integer text");
    int64_t v = 0;
    for (; i < t.size(); ++i) {
      if (t[i] < '0' || t[i] > '9') fail("bad integer text");
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, t[i] - '0', &v))
        fail("integer text too large");
    }
    return neg ? -v : v;
  }

  // --- stack (the part above the innermost MARK, as Python's unpickler sees it)
  size_t floor() const { return m_marks.empty() ? 0 : m_marks.back(); }
  void push(uint32_t id) { m_stack.push_back(id); }
  uint32_t pop() {
    if (m_stack.size() <= floor()) fail("stack underflow");
    const uint32_t v = m_stack.back();
    m_stack.pop_back();
    return v;
  }
  uint32_t top() const {
    if (m_stack.size() <= floor()) fail("stack underflow");
    return m_stack.back();
  }
  std::vector<uint32_t> popMark() {
    if (m_marks.empty()) fail("MARK missing");
    const size_t m = m_marks.back();
    m_marks.pop_back();
    std::vector<uint32_t> items(m_stack.begin() + static_cast<std::ptrdiff_t>(m), m_stack.end());
    m_stack.resize(m);
    return items;
  }

  void memoPut(uint64_t idx) { m_memo[idx] = top(); }
  void memoGet(uint64_t idx) {
    auto it = m_memo.find(idx);
    if (it == m_memo.end()) fail("memo entry " + std::to_string(idx) + " missing");
    push(it->second);
  }

  // --- containers
  void appendTo(uint32_t target, const std::vector<uint32_t>& items) {
    const Obj& o = m_objs[target];
    if (o.kind == Kind::List || o.kind == Kind::Set) {
      auto& s = m_seqs[o.ref];
      s.insert(s.end(), items.begin(), items.end());
    } else if (o.kind != Kind::Object) {
      fail("APPEND to a " + typeName(target));
    }  // an unknown class: Python would call its append(); we keep nothing
  }
  void setItems(uint32_t target, const std::vector<uint32_t>& kv) {
    if (kv.size() % 2) fail("odd number of items for a dict");
    const Kind kind = m_objs[target].kind;
    const uint32_t ref = m_objs[target].ref;
    uint32_t dict = target;
    if (kind == Kind::Object) {
      // An unknown class filled like a dict (a dict subclass): keep the items.
      if (!m_objects[ref].hasDictItems) {
        const uint32_t d = newSeq(Kind::Dict);
        m_objects[ref].dictItems = d;
        m_objects[ref].hasDictItems = true;
      }
      dict = m_objects[ref].dictItems;
    } else if (kind != Kind::Dict) {
      fail("SETITEM on a " + typeName(target));
    }
    auto& s = m_seqs[m_objs[dict].ref];
    s.insert(s.end(), kv.begin(), kv.end());
  }

  // --- persistent ids and calls
  uint32_t persistentLoad(uint32_t pid) {
    if (m_mode == PidMode::None) fail("unexpected persistent id");
    if (m_objs[pid].kind != Kind::Tuple) fail("persistent id is not a tuple");
    const std::vector<uint32_t> t = seq(pid);
    if (t.empty() || m_objs[t[0]].kind != Kind::Str) fail("bad persistent id");
    const std::string& tag = str(t[0]);
    if (tag == "module" && m_mode == PidMode::Legacy) {
      // ('module', class, source file, source): legacy whole-module pickles.
      return t.size() > 1 ? t[1] : 0;
    }
    if (tag != "storage" || t.size() < 5) fail("unsupported persistent id '" + shown(tag) + "'");
    const Obj& type = m_objs[t[1]];
    if (type.kind != Kind::Global) fail("storage type is not a class");
    StorageRef s;
    const auto& g = global(t[1]);
    storageDType(g.first, g.second, s);
    const Obj& key = m_objs[t[2]];
    if (key.kind == Kind::Str) {
      s.key = str(t[2]);
    } else if (key.kind == Kind::Int) {
      s.key = std::to_string(key.i);
    } else {
      fail("storage key is not a string");
    }
    if (m_objs[t[4]].kind != Kind::Int || m_objs[t[4]].i < 0) fail("bad storage size");
    const int64_t numel = m_objs[t[4]].i;
    if (m_mode == PidMode::Legacy && t.size() >= 6 && m_objs[t[5]].kind == Kind::Tuple) {
      // view_metadata = (view_key, offset, view_size) into the root storage `key`.
      const auto& v = seq(t[5]);
      if (v.size() != 3 || m_objs[v[1]].kind != Kind::Int || m_objs[v[2]].kind != Kind::Int ||
          m_objs[v[1]].i < 0 || m_objs[v[2]].i < 0)
        fail("bad storage view");
      s.viewOffset = m_objs[v[1]].i;
      s.viewNumel = m_objs[v[2]].i;
    } else if (m_mode == PidMode::Legacy) {
      s.viewNumel = numel;
    }
    m_storages.push_back(std::move(s));
    return newObj(Kind::Storage, uint32_t(m_storages.size() - 1));
  }

  bool isGlobal(uint32_t id, const char* module, const char* name) const {
    if (m_objs[id].kind != Kind::Global) return false;
    const auto& g = global(id);
    return g.first == module && g.second == name;
  }

  // Ints of a size or stride tuple.
  std::vector<int64_t> intTuple(uint32_t id, const char* what) {
    const Kind k = m_objs[id].kind;
    if (k != Kind::Tuple && k != Kind::List)
      fail(std::string("tensor ") + what + " is not a tuple");
    const auto& s = seq(id);
    if (s.size() > kMaxDims) fail(std::string("tensor has too many dimensions"));
    std::vector<int64_t> out;
    out.reserve(s.size());
    for (uint32_t v : s) {
      if (m_objs[v].kind != Kind::Int || m_objs[v].i < 0) fail(std::string("bad tensor ") + what);
      out.push_back(m_objs[v].i);
    }
    return out;
  }

  uint32_t call(uint32_t callable, uint32_t args, int depth = 0) {
    if (depth > 4) fail("tensor rebuild nested too deeply");
    const Obj& c = m_objs[callable];
    if (c.kind != Kind::Global) return newObject(callable);
    const auto& g = global(callable);
    const bool argsTuple = m_objs[args].kind == Kind::Tuple;
    const std::vector<uint32_t> a = argsTuple ? seq(args) : std::vector<uint32_t>{};

    if ((g.first == "collections" && g.second == "OrderedDict") ||
        ((g.first == "builtins" || g.first == "__builtin__") && g.second == "dict")) {
      if (!a.empty() && m_objs[a[0]].kind == Kind::Dict)  // OrderedDict(d): share d's items
        return newObj(Kind::Dict, m_objs[a[0]].ref);
      return newSeq(Kind::Dict);
    }
    if (g.first == "torch._utils" &&
        (g.second == "_rebuild_tensor_v2" || g.second == "_rebuild_tensor")) {
      if (!argsTuple || a.size() < 4) fail("bad arguments to " + shown(g.second));
      if (m_objs[a[0]].kind != Kind::Storage) fail("tensor without a storage");
      if (m_objs[a[1]].kind != Kind::Int || m_objs[a[1]].i < 0) fail("bad tensor storage offset");
      TensorRef t;
      t.storage = m_objs[a[0]].ref;
      t.offset = m_objs[a[1]].i;
      t.shape = intTuple(a[2], "size");
      t.stride = intTuple(a[3], "stride");
      if (t.shape.size() != t.stride.size()) fail("tensor size and stride differ in length");
      m_tensors.push_back(std::move(t));
      return newObj(Kind::Tensor, uint32_t(m_tensors.size() - 1));
    }
    if (g.first == "torch._utils" &&
        (g.second == "_rebuild_parameter" || g.second == "_rebuild_parameter_with_state")) {
      if (argsTuple && !a.empty() && m_objs[a[0]].kind == Kind::Tensor) return a[0];
      return newObject(callable);
    }
    if (g.first == "torch._tensor" &&
        (g.second == "_rebuild_from_type_v2" || g.second == "_rebuild_from_type")) {
      // (func, type, args, state): a tensor subclass rebuilt by func(*args).
      if (argsTuple && a.size() >= 3 && m_objs[a[2]].kind == Kind::Tuple)
        return call(a[0], a[2], depth + 1);
      return newObject(callable);
    }
    if (g.first == "torch" && g.second == "Size") {
      if (argsTuple && a.size() == 1 && m_objs[a[0]].kind == Kind::Tuple) return a[0];
      return newObject(callable);
    }
    return newObject(callable);
  }

  uint32_t run();

  const uint8_t* m_data;
  size_t m_size;
  const std::string& m_file;
  std::string m_what;
  PidMode m_mode;
  size_t m_pos = 0;
  size_t m_opPos = 0;

  std::vector<Obj> m_objs;
  std::vector<std::vector<uint32_t>> m_seqs;
  std::vector<std::string> m_strs;
  std::vector<std::pair<std::string, std::string>> m_globals;
  std::vector<StorageRef> m_storages;
  std::vector<TensorRef> m_tensors;
  std::vector<ObjectRef> m_objects;

  std::vector<uint32_t> m_stack;
  std::vector<size_t> m_marks;
  std::unordered_map<uint64_t, uint32_t> m_memo;
};

uint32_t Unpickler::run() {
  while (true) {
    m_opPos = m_pos;
    const uint8_t op = *take(1);
    switch (op) {
      case 0x80: {  // PROTO
        if (*take(1) > 5) fail("unsupported pickle protocol");
        break;
      }
      case 0x95:
        take(8);
        break;  // FRAME: a hint for buffered readers
      case '.':
        return pop();  // STOP
      case '(':
        m_marks.push_back(m_stack.size());
        break;
      case '0':  // POP
        if (m_stack.size() > floor()) {
          m_stack.pop_back();
        } else {
          popMark();
        }
        break;
      case '1':
        popMark();
        break;  // POP_MARK
      case '2':
        push(top());
        break;  // DUP
      case 'N':
        push(0);
        break;
      case 0x88:
        push(newObj(Kind::Bool, 0, 1));
        break;
      case 0x89:
        push(newObj(Kind::Bool, 0, 0));
        break;
      case 'I': {  // INT (text); "01"/"00" are True/False
        const std::string s = takeLine();
        if (s == "01" || s == "00") {
          push(newObj(Kind::Bool, 0, s == "01"));
        } else {
          push(newInt(parseIntText(s)));
        }
        break;
      }
      case 'L':
        push(newInt(parseIntText(takeLine())));
        break;     // LONG (text)
      case 'F': {  // FLOAT (text)
        const std::string s = takeLine();
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) fail("bad float text");
        push(newObj(Kind::Float, 0, 0, v));
        break;
      }
      case 'J':
        push(newInt(int32_t(rd32(take(4)))));
        break;  // BININT
      case 'K':
        push(newInt(*take(1)));
        break;  // BININT1
      case 'M':
        push(newInt(rd16(take(2))));
        break;      // BININT2
      case 0x8a:    // LONG1
      case 0x8b: {  // LONG4
        uint64_t n = op == 0x8a ? *take(1) : rd32(take(4));
        if (op == 0x8b && int32_t(n) < 0) fail("negative LONG4 length");
        if (n > m_size - m_pos) fail("pickle ends early (truncated file?)");
        const uint8_t* p = take(size_t(n));
        if (n == 0) {
          push(newInt(0));
          break;
        }
        const bool neg = p[n - 1] & 0x80;
        bool fits64 = true;  // bytes beyond the 8th are pure sign extension
        for (uint64_t k = 8; k < n; ++k)
          if (p[k] != (neg ? 0xff : 0x00)) fits64 = false;
        if (n > 8 && bool(p[7] & 0x80) != neg) fits64 = false;
        if (!fits64) {
          push(newStr(Kind::BigInt, std::string(reinterpret_cast<const char*>(p), size_t(n))));
          break;
        }
        uint64_t v = neg ? ~uint64_t(0) : 0;
        for (uint64_t k = 0; k < std::min<uint64_t>(n, 8); ++k) {
          v &= ~(uint64_t(0xff) << (8 * k));
          v |= uint64_t(p[k]) << (8 * k);
        }
        push(newInt(int64_t(v)));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
        double v;
        std::memcpy(&v, &bits, 8);
        push(newObj(Kind::Float, 0, 0, v));
        break;
      }
      case 'T': {  // BINSTRING
        const int32_t n = int32_t(rd32(take(4)));
        if (n < 0) fail("negative string length");
        push(newStr(Kind::Str, takeString(uint64_t(n))));
        break;
      }
      case 'U':
        push(newStr(Kind::Str, takeString(*take(1))));
        break;  // SHORT_BINSTRING
      case 'X':
        push(newStr(Kind::Str, takeString(rd32(take(4)))));
        break;  // BINUNICODE
      case 0x8c:
        push(newStr(Kind::Str, takeString(*take(1))));
        break;  // SHORT_BINUNICODE
      case 0x8d:
        push(newStr(Kind::Str, takeString(rd64(take(8)))));
        break;  // BINUNICODE8
      case 'V':
        push(newStr(Kind::Str, takeLine()));
        break;  // UNICODE (raw-unicode-escape)
      case 'C':
        push(newStr(Kind::Bytes, takeString(*take(1))));
        break;  // SHORT_BINBYTES
      case 'B':
        push(newStr(Kind::Bytes, takeString(rd32(take(4)))));
        break;    // BINBYTES
      case 0x8e:  // BINBYTES8
      case 0x96:  // BYTEARRAY8
        push(newStr(Kind::Bytes, takeString(rd64(take(8)))));
        break;
      case ')':
        push(newSeq(Kind::Tuple));
        break;  // EMPTY_TUPLE
      case 't':
        push(newSeq(Kind::Tuple, popMark()));
        break;
      case 0x85:    // TUPLE1
      case 0x86:    // TUPLE2
      case 0x87: {  // TUPLE3
        const size_t n = size_t(op - 0x84);
        std::vector<uint32_t> items(n);
        for (size_t k = n; k-- > 0;) items[k] = pop();
        push(newSeq(Kind::Tuple, std::move(items)));
        break;
      }
      case ']':
        push(newSeq(Kind::List));
        break;  // EMPTY_LIST
      case 'l':
        push(newSeq(Kind::List, popMark()));
        break;
      case 'a': {  // APPEND
        const uint32_t v = pop();
        appendTo(top(), {v});
        break;
      }
      case 'e': {  // APPENDS
        const std::vector<uint32_t> items = popMark();
        appendTo(top(), items);
        break;
      }
      case '}':
        push(newSeq(Kind::Dict));
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        std::vector<uint32_t> items = popMark();
        if (items.size() % 2) fail("odd number of items for a dict");
        push(newSeq(Kind::Dict, std::move(items)));
        break;
      }
      case 's': {  // SETITEM
        const uint32_t v = pop();
        const uint32_t k = pop();
        setItems(top(), {k, v});
        break;
      }
      case 'u': {  // SETITEMS
        const std::vector<uint32_t> items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f:
        push(newSeq(Kind::Set));
        break;      // EMPTY_SET
      case 0x90: {  // ADDITEMS
        const std::vector<uint32_t> items = popMark();
        appendTo(top(), items);
        break;
      }
      case 0x91:
        push(newSeq(Kind::Set, popMark()));
        break;     // FROZENSET
      case 'c': {  // GLOBAL
        std::string module = takeLine();
        std::string name = takeLine();
        push(newGlobal(std::move(module), std::move(name)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const uint32_t name = pop();
        const uint32_t module = pop();
        if (m_objs[name].kind != Kind::Str || m_objs[module].kind != Kind::Str)
          fail("STACK_GLOBAL needs two strings");
        push(newGlobal(str(module), str(name)));
        break;
      }
      case 'R': {  // REDUCE
        const uint32_t args = pop();
        const uint32_t callable = pop();
        push(call(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        const uint32_t args = pop();
        const uint32_t cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();      // kwargs
        const uint32_t args = pop();
        const uint32_t cls = pop();
        push(call(cls, args));
        break;
      }
      case 'o': {  // OBJ: MARK cls args... OBJ
        const std::vector<uint32_t> items = popMark();
        if (items.empty()) fail("OBJ without a class");
        push(newObject(items[0]));
        break;
      }
      case 'i': {  // INST: MARK args... INST module\nname\n
        std::string module = takeLine();
        std::string name = takeLine();
        popMark();
        push(newObject(newGlobal(std::move(module), std::move(name))));
        break;
      }
      case 'b': {  // BUILD: obj.__setstate__(state); dict and tensor states are irrelevant here
        pop();
        top();
        break;
      }
      case 'p':
        memoPut(uint64_t(parseIntText(takeLine())));
        break;  // PUT
      case 'q':
        memoPut(*take(1));
        break;  // BINPUT
      case 'r':
        memoPut(rd32(take(4)));
        break;  // LONG_BINPUT
      case 0x94:
        memoPut(m_memo.size());
        break;  // MEMOIZE
      case 'g':
        memoGet(uint64_t(parseIntText(takeLine())));
        break;  // GET
      case 'h':
        memoGet(*take(1));
        break;  // BINGET
      case 'j':
        memoGet(rd32(take(4)));
        break;  // LONG_BINGET
      case 'P':
        push(persistentLoad(newStr(Kind::Str, takeLine())));
        break;  // PERSID
      case 'Q':
        push(persistentLoad(pop()));
        break;  // BINPERSID
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", op);
        fail(std::string("unsupported pickle opcode ") + buf);
      }
    }
  }
}

// =================================================================================================
// [SECTION] From unpickled objects to a StateDict
// =================================================================================================

using NamedTensors = std::vector<std::pair<std::string, uint32_t>>;  // name → Tensor object id

// The string-keyed tensors of a dict-like object, in insertion order (a repeated key keeps its
// first position and its last value, as in Python).
NamedTensors tensorsOf(const Unpickler& u, const std::vector<uint32_t>& kv) {
  NamedTensors out;
  std::unordered_map<std::string, size_t> pos;
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    if (u.obj(kv[i]).kind != Kind::Str) continue;
    const std::string& k = u.str(kv[i]);
    const bool isTensor = u.obj(kv[i + 1]).kind == Kind::Tensor;
    auto it = pos.find(k);
    if (it != pos.end()) {
      if (isTensor) {
        out[it->second].second = kv[i + 1];
      } else {  // overwritten by a non-tensor
        out[it->second].second = 0;
      }
    } else if (isTensor) {
      pos.emplace(k, out.size());
      out.emplace_back(k, kv[i + 1]);
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const auto& e) { return e.second == 0; }),
            out.end());
  return out;
}

// The last value under string key `key`, or 0 (None).
uint32_t lookup(const Unpickler& u, const std::vector<uint32_t>& kv, const char* key) {
  uint32_t v = 0;
  for (size_t i = 0; i + 1 < kv.size(); i += 2)
    if (u.obj(kv[i]).kind == Kind::Str && u.str(kv[i]) == key) v = kv[i + 1];
  return v;
}

bool findStateDict(const Unpickler& u, uint32_t id, int depth, NamedTensors& out) {
  const auto* kv = u.dictItems(id);
  if (!kv) return false;
  out = tensorsOf(u, *kv);
  if (!out.empty() || kv->empty()) return true;
  if (depth >= 4) return false;
  for (const char* key : {"state_dict", "model"}) {
    const uint32_t v = lookup(u, *kv, key);
    if (v && findStateDict(u, v, depth + 1, out) && !out.empty()) return true;
  }
  out.clear();
  return false;
}

// The tensors the pickle's result holds; throws a helpful message when there are none.
NamedTensors extractTensors(const Unpickler& u, uint32_t root, const std::string& file,
                            const std::string& hint) {
  if (u.obj(root).kind == Kind::Tensor) return {{"", root}};
  NamedTensors out;
  if (findStateDict(u, root, 0, out)) return out;
  if (const auto* kv = u.dictItems(root)) {
    std::string keys;
    size_t n = 0;
    for (size_t i = 0; i + 1 < kv->size(); i += 2) {
      if (u.obj((*kv)[i]).kind != Kind::Str) continue;
      if (n++ == 6) {
        keys += ", ...";
        break;
      }
      keys += (keys.empty() ? "" : ", ") + shown(u.str((*kv)[i]));
    }
    throw Error(file + ": no tensors found in the saved dict (keys: " + keys +
                "); expected a state_dict" + hint);
  }
  throw Error(file + ": holds a " + u.typeName(root) +
              ", not a state_dict; in Python, save model.state_dict() instead" + hint);
}

// Where a root storage's bytes are: a zip record or a stretch of a legacy file.
struct StorageBytes {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
};

template <typename Resolve>
StateDict materialize(const Unpickler& u, const NamedTensors& named, const std::string& file,
                      uint64_t budget, Resolve&& resolve) {
  StateDict sd;
  sd.reserve(named.size());
  uint64_t total = 0;
  for (const auto& [name, id] : named) {
    const TensorRef& t = u.tensor(id);
    const StorageRef& s = u.storageOf(t);
    const std::string label = name.empty() ? "the tensor" : "tensor '" + shown(name) + "'";
    if (!s.known)
      throw Error(file + ": " + label + " has storage type " + shown(s.typeName) +
                  ", which saescope cannot read (float, int and bool tensors only)");
    TensorData out;
    out.dtype = s.dtype;
    out.shape = t.shape;
    const uint64_t es = s.elemSize;
    uint64_t numel = 1;
    for (int64_t d : t.shape)
      if (__builtin_mul_overflow(numel, uint64_t(d), &numel))
        throw Error(file + ": " + label + " has an absurd shape (element count overflows)");
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, es, &bytes) || !fits(total, bytes, budget))
      throw Error(file + ": " + label + " " + out.shapeString() +
                  " is far larger than the file's data (corrupt checkpoint?)");
    total += bytes;
    if (numel > 0) {
      const StorageBytes root = resolve(s.key, label);
      // Highest element the view addresses, relative to the (legacy) storage view.
      uint64_t last = uint64_t(t.offset);
      for (size_t k = 0; k < t.shape.size(); ++k) {
        uint64_t step = 0;
        if (__builtin_mul_overflow(uint64_t(t.shape[k] - 1), uint64_t(t.stride[k]), &step) ||
            __builtin_add_overflow(last, step, &last))
          throw Error(file + ": " + label + " has an absurd stride");
      }
      const uint64_t viewNumel = s.viewNumel >= 0 ? uint64_t(s.viewNumel) : root.size / es;
      uint64_t endByte = 0;  // one past the last byte addressed, in the root storage
      if (last >= viewNumel || __builtin_add_overflow(last + 1, uint64_t(s.viewOffset), &endByte) ||
          __builtin_mul_overflow(endByte, es, &endByte) || endByte > root.size)
        throw Error(file + ": " + label + " " + out.shapeString() + " (offset " +
                    std::to_string(t.offset) + ") reaches past the end of its storage " +
                    shown(s.key) + " (corrupt checkpoint?)");
      out.bytes.resize(size_t(bytes));
      detail::copyStrided(root.data + uint64_t(s.viewOffset) * es, size_t(es), t.shape, t.stride,
                          t.offset, out.bytes.data());
    }
    sd.emplace_back(name, std::move(out));
  }
  return sd;
}

// =================================================================================================
// [SECTION] torch.save zip format, legacy format
// =================================================================================================

// pickle: PROTO 2, LONG1 10 bytes: the magic number 0x1950a86a20f9469cfc6c.
constexpr uint8_t kLegacyMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool isZip(const uint8_t* d, size_t n) {
  return n >= 4 && rd32(d) == 0x04034b50u;
}
bool isLegacyTorch(const uint8_t* d, size_t n) {
  return n >= 2 + sizeof kLegacyMagic && d[0] == 0x80 &&
         std::memcmp(d + 2, kLegacyMagic, sizeof kLegacyMagic) == 0;
}
bool isNpy(const uint8_t* d, size_t n) {
  return n >= 6 && std::memcmp(d, "\x93NUMPY", 6) == 0;
}
bool isSafetensors(const uint8_t* d, size_t n) {
  if (n < 10) return false;
  const uint64_t len = rd64(d);
  return len >= 2 && len <= n - 8 && d[8] == '{';
}

StateDict readZipCheckpoint(const uint8_t* data, size_t size, const std::string& file) {
  ZipReader zip(data, size, file);
  if (zip.entries().empty()) throw Error(file + ": empty zip file, not a PyTorch checkpoint");
  const std::string& first = zip.entries().front().name;
  const size_t slash = first.find('/');
  const std::string prefix = slash == std::string::npos ? "" : first.substr(0, slash + 1);
  ZipEntry* pkl = zip.find(prefix + "data.pkl");
  const bool torchScript = zip.find(prefix + "constants.pkl") != nullptr;
  if (!pkl) {
    if (torchScript)
      throw Error(file +
                  ": a TorchScript archive without data.pkl; save model.state_dict() "
                  "with torch.save instead");
    throw Error(file + ": a zip file without " + shown(prefix) +
                "data.pkl, not a PyTorch checkpoint (or a corrupt one)");
  }
  if (ZipEntry* bo = zip.find(prefix + "byteorder")) {
    const uint8_t* p = zip.read(*bo);
    if (std::string(reinterpret_cast<const char*>(p), size_t(bo->size)) == "big")
      throw Error(file + ": a big-endian checkpoint; saescope reads little-endian ones");
  }
  const uint8_t* pk = zip.read(*pkl);
  Unpickler u(pk, size_t(pkl->size), file, "data.pkl", Unpickler::PidMode::Zip);
  size_t pos = 0;
  const uint32_t root = u.load(pos);
  const NamedTensors named = extractTensors(
      u, root, file,
      torchScript ? " (this looks like a TorchScript archive: save model.state_dict() instead)"
                  : "");
  return materialize(u, named, file, outputBudget(size),
                     [&](const std::string& key, const std::string& label) {
                       ZipEntry* e = zip.find(prefix + "data/" + key);
                       if (!e)
                         throw Error(file + ": storage " + shown(prefix + "data/" + key) + " of " +
                                     label + " is missing (truncated or corrupt checkpoint)");
                       const uint8_t* p = zip.read(*e);
                       return StorageBytes{p, e->size};
                     });
}

StateDict readLegacyCheckpoint(const uint8_t* data, size_t size, const std::string& file) {
  Unpickler u(data, size, file, "legacy pickle", Unpickler::PidMode::Legacy);
  size_t pos = 0;
  u.load(pos);  // magic number, checked by the caller's sniffing
  const uint32_t proto = u.load(pos);
  if (u.obj(proto).kind != Kind::Int || u.obj(proto).i != 1001)
    throw Error(file + ": unsupported legacy PyTorch checkpoint version");
  const uint32_t sysInfo = u.load(pos);
  if (const auto* kv = u.dictItems(sysInfo)) {
    const uint32_t le = lookup(u, *kv, "little_endian");
    if (le && u.obj(le).kind == Kind::Bool && u.obj(le).i == 0)
      throw Error(file + ": a big-endian checkpoint; saescope reads little-endian ones");
  }
  const uint32_t root = u.load(pos);
  const NamedTensors named = extractTensors(u, root, file, "");
  const uint32_t keys = u.load(pos);
  if (u.obj(keys).kind != Kind::List)
    throw Error(file + ": corrupt legacy PyTorch checkpoint (storage key list)");

  // Element size per root storage key, from the storages the pickle referenced.
  std::unordered_map<std::string, size_t> elemSize;
  for (const StorageRef& s : u.storages()) elemSize.emplace(s.key, s.elemSize);
  // After the pickles: for each key, an int64 element count and the raw data.
  std::unordered_map<std::string, StorageBytes> where;
  for (uint32_t k : u.seq(keys)) {
    if (u.obj(k).kind != Kind::Str)
      throw Error(file + ": corrupt legacy PyTorch checkpoint (storage key list)");
    const std::string& key = u.str(k);
    auto es = elemSize.find(key);
    if (es == elemSize.end())
      throw Error(file + ": corrupt legacy PyTorch checkpoint (unknown storage " + shown(key) +
                  ")");
    if (es->second == 0)
      throw Error(file + ": legacy checkpoint storage " + shown(key) +
                  " has a type saescope cannot read");
    if (!fits(pos, 8, size))
      throw Error(file + ": truncated legacy PyTorch checkpoint (storage " + shown(key) +
                  " missing)");
    const uint64_t numel = rd64(data + pos);
    pos += 8;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(es->second), &bytes) || !fits(pos, bytes, size))
      throw Error(file + ": truncated legacy PyTorch checkpoint (storage " + shown(key) +
                  " is cut short)");
    where[key] = StorageBytes{data + pos, bytes};
    pos += size_t(bytes);
  }
  return materialize(u, named, file, outputBudget(size),
                     [&](const std::string& key, const std::string& label) {
                       auto it = where.find(key);
                       if (it == where.end())
                         throw Error(file + ": the data of " + label +
                                     " is missing (truncated or corrupt checkpoint)");
                       return it->second;
                     });
}

StateDict readTorchFromMemory(const uint8_t* data, size_t size, const std::string& file) {
  if (isZip(data, size)) return readZipCheckpoint(data, size, file);
  if (isLegacyTorch(data, size)) return readLegacyCheckpoint(data, size, file);
  if (size == 0) throw Error(file + ": empty file, not a PyTorch checkpoint");
  throw Error(file + ": not a PyTorch checkpoint (neither torch.save's zip nor its legacy format)");
}

// =================================================================================================
// [SECTION] safetensors
// =================================================================================================

bool safetensorsDType(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> kTable[] = {
      {"F32", DType::Float32}, {"F16", DType::Float16}, {"BF16", DType::BFloat16},
      {"F64", DType::Float64}, {"I64", DType::Int64},   {"I32", DType::Int32},
      {"I16", DType::Int16},   {"I8", DType::Int8},     {"U8", DType::UInt8},
      {"BOOL", DType::Bool}};
  for (const auto& [name, t] : kTable) {
    if (s == name) {
      out = t;
      return true;
    }
  }
  return false;
}

StateDict readSafetensorsFromMemory(const uint8_t* data, size_t size, const std::string& file) {
  if (size < 8) throw Error(file + ": not a safetensors file (too short)");
  const uint64_t headerLen = rd64(data);
  if (headerLen > size - 8)
    throw Error(file + ": truncated or not a safetensors file (header length " +
                std::to_string(headerLen) + " exceeds the file)");
  if (headerLen > (uint64_t(100) << 20))
    throw Error(file + ": safetensors header over 100 MB (corrupt file?)");
  const auto* begin = reinterpret_cast<const char*>(data + 8);
  const nlohmann::ordered_json header =
      nlohmann::ordered_json::parse(begin, begin + headerLen, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    throw Error(file + ": corrupt safetensors file (header is not a JSON object)");
  const uint8_t* body = data + 8 + headerLen;
  const uint64_t bodySize = size - 8 - headerLen;

  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  StateDict sd;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const auto& v = item.value();
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& what) {
      return Error(file + ": corrupt safetensors entry '" + shown(name) + "' (" + what + ")");
    };
    if (!v.is_object()) throw bad("not an object");
    const auto dt = v.find("dtype"), sh = v.find("shape"), off = v.find("data_offsets");
    if (dt == v.end() || sh == v.end() || off == v.end() || !dt->is_string() || !sh->is_array() ||
        !off->is_array() || off->size() != 2)
      throw bad("needs dtype, shape and data_offsets");
    TensorData t;
    if (!safetensorsDType(dt->get<std::string>(), t.dtype))
      throw Error(file + ": safetensors entry '" + shown(name) + "' has dtype " +
                  shown(dt->get<std::string>()) + ", which saescope cannot read");
    if (sh->size() > kMaxDims) throw bad("too many dimensions");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) throw bad("bad shape");
      const uint64_t n = d.get<uint64_t>();
      if (n > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, n, &numel))
        throw bad("shape overflows");
      t.shape.push_back(int64_t(n));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      throw bad("bad data_offsets");
    const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dtypeSize(t.dtype)), &bytes))
      throw bad("shape overflows");
    if (b > e || e > bodySize)
      throw Error(file + ": truncated or corrupt safetensors file (entry '" + shown(name) +
                  "' lies outside the data)");
    if (e - b != bytes) throw bad("data_offsets do not match dtype and shape");
    ranges.push_back({b, e, name});
    sd.emplace_back(name, std::move(t));
  }
  // Entries must not share bytes (the format forbids it; it also bounds our allocation).
  std::vector<Range> sorted = ranges;
  std::sort(sorted.begin(), sorted.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i].begin < sorted[i - 1].end)
      throw Error(file + ": corrupt safetensors file (entries '" + shown(sorted[i - 1].name) +
                  "' and '" + shown(sorted[i].name) + "' overlap)");
  for (size_t i = 0; i < sd.size(); ++i) {
    const uint64_t n = ranges[i].end - ranges[i].begin;
    sd[i].second.bytes.assign(body + ranges[i].begin, body + ranges[i].begin + n);
  }
  return sd;
}

// =================================================================================================
// [SECTION] Writer: pickle + zip as torch.save writes them
// =================================================================================================

const char* storageTypeName(DType t) {
  switch (t) {
    case DType::Float32:
      return "FloatStorage";
    case DType::Float64:
      return "DoubleStorage";
    case DType::Float16:
      return "HalfStorage";
    case DType::BFloat16:
      return "BFloat16Storage";
    case DType::Int64:
      return "LongStorage";
    case DType::Int32:
      return "IntStorage";
    case DType::Int16:
      return "ShortStorage";
    case DType::Int8:
      return "CharStorage";
    case DType::UInt8:
      return "ByteStorage";
    case DType::Bool:
      return "BoolStorage";
  }
  return "FloatStorage";
}

class PickleWriter {
 public:
  std::string out;
  void op(char c) { out += c; }
  void global(const char* module, const char* name) {
    out += 'c';
    out += module;
    out += '\n';
    out += name;
    out += '\n';
  }
  void unicode(const std::string& s) {  // BINUNICODE
    out += 'X';
    put32(out, uint32_t(s.size()));
    out += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      out += 'K';
      out += char(v);
    } else if (v >= 0 && v < 65536) {
      out += 'M';
      put16(out, uint16_t(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out += 'J';
      put32(out, uint32_t(int32_t(v)));
    } else {  // LONG1: minimal two's complement, little-endian
      std::string b;
      uint64_t u = uint64_t(v);
      for (int k = 0; k < 8; ++k) b += char((u >> (8 * k)) & 0xff);
      while (b.size() > 1) {
        const auto last = uint8_t(b[b.size() - 1]), prev = uint8_t(b[b.size() - 2]);
        if ((last == 0 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
          b.pop_back();
        } else {
          break;
        }
      }
      out += char(0x8a);
      out += char(b.size());
      out += b;
    }
  }
  void tuple(const std::vector<int64_t>& xs) {
    if (xs.empty()) {
      op(')');
      return;
    }
    if (xs.size() > 3) op('(');
    for (int64_t x : xs) integer(x);
    op(xs.size() == 1   ? char(0x85)
       : xs.size() == 2 ? char(0x86)
       : xs.size() == 3 ? char(0x87)
                        : 't');
  }
};

// data.pkl for an OrderedDict of tensors, storage i holding tensor i.
std::string statePickle(const StateDict& sd) {
  PickleWriter w;
  w.op(char(0x80));
  w.op(2);
  w.global("collections", "OrderedDict");
  w.op(')');
  w.op('R');
  if (!sd.empty()) {
    w.op('(');
    for (size_t i = 0; i < sd.size(); ++i) {
      const TensorData& t = sd[i].second;
      std::vector<int64_t> stride(t.shape.size());
      int64_t s = 1;
      for (size_t k = t.shape.size(); k-- > 0;) {
        stride[k] = s;
        s *= std::max<int64_t>(t.shape[k], 1);
      }
      w.unicode(sd[i].first);
      w.global("torch._utils", "_rebuild_tensor_v2");
      w.op('(');
      {
        w.op('(');
        w.unicode("storage");
        w.global("torch", storageTypeName(t.dtype));
        w.unicode(std::to_string(i));
        w.unicode("cpu");
        w.integer(t.numel());
        w.op('t');
        w.op('Q');  // BINPERSID
      }
      w.integer(0);
      w.tuple(t.shape);
      w.tuple(stride);
      w.op(char(0x89));  // requires_grad False
      w.global("collections", "OrderedDict");
      w.op(')');
      w.op('R');  // backward hooks
      w.op('t');
      w.op('R');
    }
    w.op('u');
  }
  w.op('.');
  return w.out;
}

struct Record {
  std::string name;
  const uint8_t* data;
  uint64_t size;
};

std::string zipRecords(const std::vector<Record>& records, bool forceZip64) {
  constexpr uint32_t kMax32 = 0xffffffffu;
  struct Written {
    uint64_t offset;
    uint32_t crc;
  };
  std::vector<Written> written;
  uint64_t total = 0;
  for (const Record& r : records) total += r.size + 30 + r.name.size() + 20 + 64 + 46 + 28;
  std::string out;
  out.reserve(size_t(total + 200));
  for (const Record& r : records) {
    const uint64_t offset = out.size();
    const uint32_t crc = crc32(r.data, size_t(r.size));
    const bool big = forceZip64 || r.size >= kMax32;
    put32(out, 0x04034b50u);
    put16(out, big ? 45 : 20);  // version needed
    put16(out, 0);              // flags
    put16(out, 0);              // stored
    put16(out, 0);              // time
    put16(out, 0);              // date
    put32(out, crc);
    put32(out, big ? kMax32 : uint32_t(r.size));
    put32(out, big ? kMax32 : uint32_t(r.size));
    put16(out, uint16_t(r.name.size()));
    // Extra: zip64 sizes if needed, then PyTorch's "FB" padding so the data is 64-byte aligned.
    const size_t zip64Len = big ? 20 : 0;
    const uint64_t unpadded = offset + 30 + r.name.size() + zip64Len + 4;
    const size_t pad = size_t((64 - unpadded % 64) % 64);
    put16(out, uint16_t(zip64Len + 4 + pad));
    out += r.name;
    if (big) {
      put16(out, 0x0001);
      put16(out, 16);
      put64(out, r.size);
      put64(out, r.size);
    }
    put16(out, 0x4246);  // "FB"
    put16(out, uint16_t(pad));
    out.append(pad, 'Z');
    if (r.size > 0) out.append(reinterpret_cast<const char*>(r.data), size_t(r.size));
    written.push_back({offset, crc});
  }
  const uint64_t cdOffset = out.size();
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    const bool bigSize = forceZip64 || r.size >= kMax32;
    const bool bigOffset = forceZip64 || written[i].offset >= kMax32;
    put32(out, 0x02014b50u);
    put16(out, 45);  // made by
    put16(out, bigSize || bigOffset ? 45 : 20);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put32(out, written[i].crc);
    put32(out, bigSize ? kMax32 : uint32_t(r.size));
    put32(out, bigSize ? kMax32 : uint32_t(r.size));
    put16(out, uint16_t(r.name.size()));
    const uint16_t extra = uint16_t((bigSize ? 16 : 0) + (bigOffset ? 8 : 0));
    put16(out, extra ? uint16_t(extra + 4) : 0);
    put16(out, 0);  // comment
    put16(out, 0);  // disk
    put16(out, 0);  // internal attributes
    put32(out, 0);  // external attributes
    put32(out, bigOffset ? kMax32 : uint32_t(written[i].offset));
    out += r.name;
    if (extra) {
      put16(out, 0x0001);
      put16(out, extra);
      if (bigSize) {
        put64(out, r.size);
        put64(out, r.size);
      }
      if (bigOffset) put64(out, written[i].offset);
    }
  }
  const uint64_t cdSize = out.size() - cdOffset;
  const uint64_t count = records.size();
  const bool big = forceZip64 || count >= 0xffff || cdOffset >= kMax32 || cdSize >= kMax32;
  if (big) {
    const uint64_t z = out.size();
    put32(out, 0x06064b50u);
    put64(out, 44);  // size of the rest of this record
    put16(out, 45);
    put16(out, 45);
    put32(out, 0);
    put32(out, 0);
    put64(out, count);
    put64(out, count);
    put64(out, cdSize);
    put64(out, cdOffset);
    put32(out, 0x07064b50u);  // locator
    put32(out, 0);
    put64(out, z);
    put32(out, 1);
  }
  put32(out, 0x06054b50u);
  put16(out, 0);
  put16(out, 0);
  put16(out, big ? 0xffff : uint16_t(count));
  put16(out, big ? 0xffff : uint16_t(count));
  put32(out, big ? kMax32 : uint32_t(cdSize));
  put32(out, big ? kMax32 : uint32_t(cdOffset));
  put16(out, 0);
  return out;
}

StateDict readFromMemory(const uint8_t* d, size_t n, const std::string& file) {
  if (isZip(d, n) || isLegacyTorch(d, n)) return readTorchFromMemory(d, n, file);
  if (isNpy(d, n)) return {{"", detail::readNpyFromMemory(d, n, file)}};
  if (isSafetensors(d, n)) return readSafetensorsFromMemory(d, n, file);
  throw Error(file + ": " + (n == 0 ? "empty file, " : "") +
              "not a PyTorch checkpoint, .npy or .safetensors file");
}

}  // namespace

// =================================================================================================
// [SECTION] Public API
// =================================================================================================

namespace detail {
std::string torchCheckpointBytes(const StateDict& sd, bool forceZip64) {
  std::unordered_set<std::string> names;
  for (const auto& [name, t] : sd) {
    if (!names.insert(name).second)
      throw Error("cannot save a state_dict with the name '" + shown(name) + "' twice");
    uint64_t bytes = dtypeSize(t.dtype);
    for (int64_t d : t.shape)
      if (d < 0 || __builtin_mul_overflow(bytes, uint64_t(d), &bytes))
        throw Error("cannot save tensor '" + shown(name) + "': bad shape " + t.shapeString());
    if (bytes != t.bytes.size())
      throw Error("cannot save tensor '" + shown(name) + "': " + t.shapeString() + " " +
                  dtypeName(t.dtype) + " needs " + std::to_string(bytes) + " bytes, it holds " +
                  std::to_string(t.bytes.size()));
  }
  const std::string pickle = statePickle(sd);
  static const char kByteOrder[] = "little";
  static const char kVersion[] = "3\n";
  std::vector<Record> records;
  records.push_back(
      {"archive/data.pkl", reinterpret_cast<const uint8_t*>(pickle.data()), pickle.size()});
  records.push_back({"archive/byteorder", reinterpret_cast<const uint8_t*>(kByteOrder), 6});
  for (size_t i = 0; i < sd.size(); ++i)
    records.push_back({"archive/data/" + std::to_string(i), sd[i].second.bytes.data(),
                       sd[i].second.bytes.size()});
  records.push_back({"archive/version", reinterpret_cast<const uint8_t*>(kVersion), 2});
  return zipRecords(records, forceZip64);
}
}  // namespace detail

StateDict readTorchCheckpoint(const std::string& path) {
  MappedFile f(path);
  return readTorchFromMemory(f.data(), f.size(), path);
}

void writeTorchCheckpoint(const std::string& path, const StateDict& sd) {
  std::string bytes;
  try {
    bytes = detail::torchCheckpointBytes(sd, false);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  writeFileAtomic(path, bytes.data(), bytes.size());
}

StateDict readSafetensors(const std::string& path) {
  MappedFile f(path);
  return readSafetensorsFromMemory(f.data(), f.size(), path);
}

StateDict readTensorFile(const std::string& path) {
  MappedFile f(path);
  return readFromMemory(f.data(), f.size(), path);
}

StateDict readTensorFileFromMemory(const void* data, size_t size, const std::string& name) {
  return readFromMemory(static_cast<const uint8_t*>(data), size, name);
}

}  // namespace engine
