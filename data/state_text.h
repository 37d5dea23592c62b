// The text form of a sampler's state: a header line "longhaul-<kind>-state 1", then one line per
// key: "key v1 v2 …" (integers). Readable in a checkpoint, exact, independent of the platform.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace longhaul::data {

// The options a state was saved under, by name ("seed", "dp_size"…): a restore under other options
// names the one that changed instead of only failing a fingerprint.
using NamedOptions = std::vector<std::pair<std::string, int64_t>>;

class StateWriter {
 public:
  explicit StateWriter(const std::string& kind);
  StateWriter& put(const std::string& key, const std::vector<int64_t>& values);
  StateWriter& put(const std::string& key, int64_t value) { return put(key, std::vector<int64_t>{value}); }
  StateWriter& put_options(const NamedOptions& options);  // one "option.<name> value" line each
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
  // Throws InvalidArgument naming the first of `options` whose saved value differs: "<who>: the
  // saved state was made with seed 1, this sampler has seed 2; …". `spell` writes a value (an
  // enum's name); by default the number. States written before the options were named have none
  // of them, and pass.
  using Speller = std::function<std::string(const std::string& name, int64_t value)>;
  void expect_options(const std::string& who, const NamedOptions& options, const Speller& spell = {}) const;

 private:
  std::string kind_;
  std::map<std::string, std::vector<int64_t>> values_;
};

}  // namespace longhaul::data
