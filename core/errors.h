// longhaul's exception hierarchy. Policy (docs/errors.md): every error names what is wrong, the
// values involved and what was expected; nothing aborts the process from inside the library.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace longhaul {

// Base of everything longhaul throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller passed something invalid: a shape, dtype, device, count or option.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// A backend lacks an operation (or an operation on a device).
class Unsupported : public Error {
 public:
  using Error::Error;
};

// Communication failed: a peer is dead or stopped, a message does not match, a deadline passed.
class CommError : public Error {
 public:
  using Error::Error;
};

// A wait passed its deadline (a CommError, so callers that handle comm failures catch both).
class TimeoutError : public CommError {
 public:
  using CommError::CommError;
};

// A computation produced a non-finite value where training cannot continue (a NaN or infinite
// loss): the step was not applied.
class NumericalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace longhaul

// LH_CHECK(cond, parts...) throws InvalidArgument "<parts> (file:line)" when cond is false.
#define LH_CHECK(cond, ...)                                                                   \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      throw ::longhaul::InvalidArgument(::longhaul::detail::str_cat(__VA_ARGS__) + " (" +     \
                                        __FILE__ + ":" + std::to_string(__LINE__) + ")");     \
    }                                                                                         \
  } while (0)

// LH_CHECK_EQ(a, b, context...) prints both values when they differ.
#define LH_CHECK_EQ(a, b, ...)                                                                \
  LH_CHECK((a) == (b), __VA_ARGS__, ": expected " #a " == " #b ", got ", (a), " vs ", (b))
