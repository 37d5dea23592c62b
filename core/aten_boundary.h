// ATen errors at longhaul's public entry points. A torch operation that fails inside longhaul
// raises a c10::Error; callers of longhaul catch one hierarchy (core/errors.h), so the entry
// points translate: ValueError, TypeError and IndexError → InvalidArgument, NotImplementedError →
// Unsupported, anything else → Error, each "WHERE: ATen: <message without the C++ backtrace>".
// An out-of-memory error keeps torch's own type (callers free memory and retry on that type); the
// CPU allocator's failure, a plain c10::Error in torch, and std::bad_alloc become that type too.
#pragma once

#include <c10/util/Exception.h>

#include <new>
#include <string>
#include <utility>

#include "core/errors.h"

namespace longhaul {

// Rethrows the exception in flight (call it inside `catch (...)`), translated when it is an ATen
// error; longhaul's own errors and anything else pass unchanged. Entry points whose body is long
// use it in a function-try-block: `R f(...) try { ... } catch (...) { rethrow_from_aten("f"); }`.
[[noreturn]] inline void rethrow_from_aten(const char* where) {
  try {
    throw;
  } catch (const c10::OutOfMemoryError&) {
    throw;
  } catch (const std::bad_alloc& e) {
    throw c10::OutOfMemoryError({where, __FILE__, static_cast<uint32_t>(__LINE__)},
                                std::string(where) + ": out of host memory (" + e.what() + ")");
  } catch (const c10::Error& e) {
    // torch's CPU allocator reports a failed allocation as a plain enforce failure.
    if (e.msg().find("can't allocate memory") != std::string::npos)
      throw c10::OutOfMemoryError({where, __FILE__, static_cast<uint32_t>(__LINE__)},
                                  std::string(where) + ": " + e.what_without_backtrace());
    const std::string msg = std::string(where) + ": ATen: " + e.what_without_backtrace();
    if (dynamic_cast<const c10::ValueError*>(&e) || dynamic_cast<const c10::TypeError*>(&e) ||
        dynamic_cast<const c10::IndexError*>(&e))
      throw InvalidArgument(msg);
    if (dynamic_cast<const c10::NotImplementedError*>(&e)) throw Unsupported(msg);
    throw Error(msg);
  }
}

template <typename Body>
decltype(auto) aten_boundary(const char* where, Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (...) {
    rethrow_from_aten(where);
  }
}

}  // namespace longhaul
