#include "data/input_walk.h"

#include <fnmatch.h>

#include <algorithm>

#include "data/files.h"
#include "core/errors.h"

namespace longhaul::data {

namespace {
bool jsonl_name(const std::string& p) {
  auto ends = [&](const std::string& s) { return p.size() >= s.size() && p.compare(p.size() - s.size(), s.size(), s) == 0; };
  return ends(".jsonl") || ends(".ndjson");
}

void leave_out(InputList& list, const std::string& reason, const std::string& path) {
  ++list.left_out[reason];
  if (list.examples.size() < 10) list.examples.push_back(path + ": " + reason);
}
}  // namespace

InputList expand_inputs(const std::vector<std::string>& inputs, const InputOptions& o) {
  LH_CHECK(o.format == "auto" || o.format == "text" || o.format == "jsonl", "prep: unknown input format '", o.format,
           "', expected auto, text or jsonl");
  LH_CHECK(!inputs.empty(), "prep: no inputs given, expected files or directories");
  InputList list;
  auto add = [&](const std::string& p) {
    list.files.push_back({p, o.format == "jsonl" || (o.format == "auto" && jsonl_name(p))});
  };
  for (const auto& in : inputs) {
    LH_CHECK(files::exists(in), "prep: input '", in, "' does not exist");
    if (!files::is_directory(in)) {  // named explicitly: taken whatever the glob says
      add(in);
      continue;
    }
    files::walk(in, [&](const std::string& path, const std::string& name, char kind, const std::string& error) {
      switch (kind) {
        case 'd':
          if (std::find(o.exclude_dirs.begin(), o.exclude_dirs.end(), name) != o.exclude_dirs.end()) {
            leave_out(list, "excluded directory (not walked)", path);
            return false;
          }
          return true;
        case 'f':
          if (fnmatch(o.glob.c_str(), name.c_str(), 0) != 0)
            ++list.left_out["not matching --glob " + o.glob];
          else
            add(path);
          return true;
        case 'e':
          leave_out(list, "unreadable (" + error + ")", path);
          return true;
        default:
          leave_out(list, "not a regular file", path);
          return true;
      }
    });
  }
  if (o.max_files > 0 && static_cast<int64_t>(list.files.size()) > o.max_files) {
    list.left_out["beyond --max-files"] += static_cast<int64_t>(list.files.size()) - o.max_files;
    list.files.resize(static_cast<size_t>(o.max_files));
  }
  LH_CHECK(!list.files.empty(), "prep: no input files found in the ", inputs.size(), " input(s) (glob '", o.glob,
           "'); expected at least one file");
  return list;
}

}  // namespace longhaul::data
