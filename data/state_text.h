// The text form of a sampler's state: a header line "longhaul-<kind>-state 1", then one line per
// key: "key v1 v2 …" (integers). Readable in a checkpoint, exact, independent of the platform.
#pragma once

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace longhaul::data {

class StateWriter {
 public:
  explicit StateWriter(const std::string& kind);
  StateWriter& put(const std::string& key, const std::vector<int64_t>& values);
  StateWriter& put(const std::string& key, int64_t value) { return put(key, std::vector<int64_t>{value}); }
  std::string str() const { return os_.str(); }

 private:
  std::ostringstream os_;
};

class StateReader {
 public:
  // Throws InvalidArgument when the text is not a state of this kind and version.
  StateReader(const std::string& text, const std::string& kind);
  const std::vector<int64_t>& list(const std::string& key) const;  // throws when the key is missing
  int64_t get(const std::string& key) const;                        // exactly one value

 private:
  std::string kind_;
  std::map<std::string, std::vector<int64_t>> values_;
};

}  // namespace longhaul::data
