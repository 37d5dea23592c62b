#include "data/state_text.h"

#include "core/errors.h"

namespace longhaul::data {

StateWriter::StateWriter(const std::string& kind) { os_ << "longhaul-" << kind << "-state 1\n"; }

StateWriter& StateWriter::put(const std::string& key, const std::vector<int64_t>& values) {
  os_ << key;
  for (int64_t v : values) os_ << ' ' << v;
  os_ << '\n';
  return *this;
}

StateWriter& StateWriter::put_options(const NamedOptions& options) {
  for (const auto& [name, value] : options) put("option." + name, value);
  return *this;
}

StateReader::StateReader(const std::string& text, const std::string& kind) : kind_(kind) {
  std::istringstream is(text);
  std::string header, version;
  is >> header >> version;
  LH_CHECK(header == "longhaul-" + kind + "-state" && version == "1", "sampler state: expected a 'longhaul-", kind,
           "-state 1' text, got one starting with '", text.substr(0, 40), "'");
  std::string line;
  std::getline(is, line);
  while (std::getline(is, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    std::vector<int64_t> vals;
    int64_t v;
    while (ls >> v) vals.push_back(v);
    LH_CHECK(ls.eof(), "sampler state (", kind, "): line '", line.substr(0, 60), "' holds a value that is not an integer");
    values_[key] = std::move(vals);
  }
}

const std::vector<int64_t>& StateReader::list(const std::string& key) const {
  auto it = values_.find(key);
  LH_CHECK(it != values_.end(), "sampler state (", kind_, "): key '", key, "' is missing");
  return it->second;
}

int64_t StateReader::get(const std::string& key) const {
  const auto& v = list(key);
  LH_CHECK(v.size() == 1, "sampler state (", kind_, "): key '", key, "' should hold one value, holds ", v.size());
  return v[0];
}

void StateReader::expect_options(const std::string& who, const NamedOptions& options, const Speller& spell) const {
  for (const auto& option : options) {
    const std::string& name = option.first;  // a plain reference: lambdas below capture it
    const int64_t value = option.second;
    auto it = values_.find("option." + name);
    if (it == values_.end()) continue;
    LH_CHECK(it->second.size() == 1, "sampler state (", kind_, "): key 'option.", name, "' should hold one value, holds ",
             it->second.size());
    const int64_t saved = it->second[0];
    if (saved == value) continue;
    const auto text = [&](int64_t v) { return spell ? spell(name, v) : std::to_string(v); };
    throw InvalidArgument(who + ": the saved state was made with " + name + " " + text(saved) + ", this sampler has " +
                          name + " " + text(value) + "; resume with the options of the run that saved it");
  }
}

}  // namespace longhaul::data
