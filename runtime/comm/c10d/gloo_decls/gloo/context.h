// Declarations only (see ../README.md): the torch wheel ships ProcessGroupGloo.hpp but not Gloo's
// headers. ProcessGroupGloo holds Gloo objects only through pointers, so declarations suffice.
#pragma once

#include <chrono>

namespace gloo {
class Context {
 public:
  // Named by an inline ProcessGroupGloo member that longhaul never calls directly (it goes through
  // the c10d::Backend vtable, emitted in libtorch_cpu): declared, never defined or referenced here.
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
