// Declarations only (see ../../README.md): the virtuals ProcessGroupGloo::GlooStore overrides.
// longhaul never constructs a GlooStore (torch does, inside libtorch_cpu), so this class's vtable
// is never emitted here. GLOO_STORE_HAS_STORE_V2 stays undefined: the optional overrides are
// left out.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {
namespace rendezvous {
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) = 0;
};
}  // namespace rendezvous
}  // namespace gloo
