#include "train/checkpoint.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "data/files.h"
#include "core/errors.h"
#include "core/fnv1a.h"

namespace longhaul::train {
namespace {

constexpr char kMagic[8] = {'L', 'H', 'C', 'K', 'P', 'T', '0', '1'};

uint64_t fnv1a(const char* p, size_t n) { return Fnv1a().bytes(p, n).value(); }

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return 0;
    case at::kDouble: return 1;
    case at::kLong: return 2;
    case at::kByte: return 3;
    default: throw InvalidArgument(std::string("checkpoint: cannot store dtype ") + c10::toString(t));
  }
}

at::ScalarType dtype_of(int code) {
  static const at::ScalarType types[] = {at::kFloat, at::kDouble, at::kLong, at::kByte};
  LH_CHECK(code >= 0 && code < 4, "unknown tensor dtype code ", code);
  return types[code];
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// Bounds-checked reading of the records.
struct Reader {
  const std::string& buf;
  size_t pos, end;
  const std::string& path;
  void need(size_t n) {
    if (n > end - pos)
      throw InvalidArgument("checkpoint " + path + ": malformed record at byte " + std::to_string(pos));
  }
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string bytes(size_t n) {
    need(n);
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
};

}  // namespace

const std::string& CheckpointFile::string(const std::string& key) const {
  auto it = strings.find(key);
  if (it == strings.end()) throw InvalidArgument("checkpoint: entry '" + key + "' is missing");
  return it->second;
}

const at::Tensor& CheckpointFile::tensor(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  throw InvalidArgument("checkpoint: tensor '" + name + "' is missing");
}

void write_checkpoint(const std::string& path, const CheckpointFile& c) {
  std::string out(kMagic, 8);
  put<uint64_t>(out, 0);  // total, patched below
  for (const auto& [name, value] : c.strings) {
    put<uint8_t>(out, 1);
    put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    out += name;
    put<uint64_t>(out, value.size());
    out += value;
  }
  for (const auto& [name, t0] : c.tensors) {
    at::Tensor t = t0.detach().cpu().contiguous();
    put<uint8_t>(out, 2);
    put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    out += name;
    put<uint8_t>(out, static_cast<uint8_t>(dtype_code(t.scalar_type())));
    put<uint32_t>(out, static_cast<uint32_t>(t.dim()));
    for (int64_t s : t.sizes()) put<int64_t>(out, s);
    const uint64_t n = t.numel() * t.element_size();
    put<uint64_t>(out, n);
    if (n > 0) out.append(static_cast<const char*>(t.data_ptr()), n);
  }
  const uint64_t total = out.size() + 8;
  std::memcpy(&out[8], &total, 8);
  put<uint64_t>(out, fnv1a(out.data(), out.size()));

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error("checkpoint: cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t w = ::write(fd, out.data() + done, out.size() - done);
    if (w < 0) {
      const int e = errno;
      ::close(fd);
      data::files::remove(tmp);
      throw Error("checkpoint: writing " + tmp + " failed: " + std::strerror(e));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    data::files::remove(tmp);
    throw Error("checkpoint: cannot flush " + tmp + ": " + std::strerror(errno));
  }
  if (int e = data::files::rename(tmp, path)) {
    data::files::remove(tmp);
    throw Error("checkpoint: cannot rename " + tmp + " to " + path + ": " + std::strerror(e));
  }
}

CheckpointFile read_checkpoint(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InvalidArgument("checkpoint " + path + ": cannot open it (missing or unreadable)");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string buf = ss.str();
  if (buf.size() < 16 || std::memcmp(buf.data(), kMagic, 8) != 0)
    throw InvalidArgument("checkpoint " + path + ": not a longhaul checkpoint (bad magic; expected LHCKPT01)");
  uint64_t total;
  std::memcpy(&total, buf.data() + 8, 8);
  if (buf.size() < total)
    throw InvalidArgument("checkpoint " + path + ": truncated (" + std::to_string(buf.size()) + " of " +
                          std::to_string(total) + " bytes)");
  if (buf.size() != total || total < 24)
    throw InvalidArgument("checkpoint " + path + ": corrupt (" + std::to_string(buf.size()) +
                          " bytes, the header says " + std::to_string(total) + ")");
  uint64_t hash;
  std::memcpy(&hash, buf.data() + total - 8, 8);
  if (hash != fnv1a(buf.data(), total - 8))
    throw InvalidArgument("checkpoint " + path + ": corrupt (checksum mismatch)");

  CheckpointFile c;
  Reader r{buf, 16, total - 8, path};
  while (r.pos < r.end) {
    const uint8_t kind = r.get<uint8_t>();
    const std::string name = r.bytes(r.get<uint32_t>());
    if (kind == 1) {
      c.strings[name] = r.bytes(r.get<uint64_t>());
    } else if (kind == 2) {
      const int code = r.get<uint8_t>();
      LH_CHECK(code < 4, "checkpoint ", path, ": tensor '", name, "' has unknown dtype code ", code,
               " (expected 0 float32, 1 float64, 2 int64, 3 uint8)");
      const at::ScalarType dt = dtype_of(code);
      // Sizes and byte count are checked against the file before anything is allocated: a
      // corrupt record must not ask for terabytes.
      const uint32_t ndim = r.get<uint32_t>();
      r.need(size_t(ndim) * 8);
      std::vector<int64_t> sizes(ndim);
      // The product of the non-zero sizes (a tensor's largest stride, which must fit even when a
      // zero size makes it empty); numel is that product, or 0.
      uint64_t strides = 1;
      bool overflow = false, empty = false;
      for (auto& s : sizes) {
        s = r.get<int64_t>();
        LH_CHECK(s >= 0 && s <= (int64_t(1) << 48), "checkpoint ", path, ": tensor '", name, "' has a size ", s,
                 " outside [0, 2^48]");
        empty = empty || s == 0;
        overflow = overflow || (s > 0 && strides > (uint64_t(1) << 60) / uint64_t(s));
        if (!overflow && s > 0) strides *= uint64_t(s);
      }
      const uint64_t numel = empty ? 0 : strides;
      const uint64_t n = r.get<uint64_t>();
      const uint64_t elem = c10::elementSize(dt);
      LH_CHECK(!overflow && numel <= n / elem && numel * elem == n, "checkpoint ", path, ": tensor '", name,
               "' has ", n, " bytes for sizes ", c10::IntArrayRef(sizes), " of ", elem, "-byte elements");
      r.need(n);
      at::Tensor t = at::empty(sizes, dt);
      if (n > 0) std::memcpy(t.data_ptr(), buf.data() + r.pos, n);  // an empty tensor has no data pointer
      r.pos += n;
      c.tensors.emplace_back(name, t);
    } else {
      throw InvalidArgument("checkpoint " + path + ": unknown record kind " + std::to_string(kind));
    }
  }
  return c;
}

}  // namespace longhaul::train
