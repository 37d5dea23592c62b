// HDF5 calls, checked (STYLE: one checks header per dependency). HDF5's own printing of its error
// stack is switched off; a failing call throws longhaul::Error with the call, HDF5's innermost
// messages, file:line and what was being done. Handles close themselves (Handle).
#pragma once

#include <hdf5.h>

#include <string>

#include "core/errors.h"

namespace longhaul::data::h5 {

// Switches off HDF5's automatic error printing on the calling thread (HDF5 keeps it per thread).
void quiet();
// HDF5's current error stack as one line ("H5Fopen: unable to open file: truncated file: …").
std::string error_stack();

[[noreturn]] void fail(const char* call, const std::string& context, const char* file, int line);

// A hid_t that is closed with the right H5?close when it goes out of scope.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns HDF5's status (negative: the close failed, e.g. a write-back error).
  herr_t reset() {
    herr_t rc = 0;
    if (id_ >= 0 && close_) rc = close_(id_);
    id_ = H5I_INVALID_HID;
    return rc;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

}  // namespace longhaul::data::h5

// Evaluates an HDF5 call; a negative result throws longhaul::Error naming the call and context.
#define LH_CHECK_HDF5(call, ...)                                                                   \
  ([&]() {                                                                                         \
    auto lh_rc_ = (call);                                                                          \
    if (lh_rc_ < 0)                                                                                \
      ::longhaul::data::h5::fail(#call, ::longhaul::detail::str_cat(__VA_ARGS__), __FILE__, __LINE__); \
    return lh_rc_;                                                                                 \
  }())
