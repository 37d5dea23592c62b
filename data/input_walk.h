// The inputs of `longhaul prep`: files named on the command line, and directories walked
// recursively (files whose name matches a glob, in sorted path order, directories named in
// `exclude_dirs` left out). Nothing found is silently lost: what is left out is counted by reason.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace longhaul::data {

struct InputOptions {
  std::string glob = "*";                 // fnmatch pattern on the file name, for files inside directories
  std::vector<std::string> exclude_dirs;  // directory names not to walk into (e.g. site-packages)
  std::string format = "auto";            // auto (.jsonl/.ndjson → jsonl, else text), text or jsonl
  int64_t max_files = 0;                  // 0: all; else the first max_files (sorted) files
};

struct InputFile {
  std::string path;
  bool jsonl = false;
};

struct InputList {
  std::vector<InputFile> files;
  std::map<std::string, int64_t> left_out;  // reason → count (not matching the glob, excluded, …)
  std::vector<std::string> examples;        // the first few left-out paths with their reason
};

// Throws InvalidArgument when an input does not exist, the format is unknown, or no file is found.
InputList expand_inputs(const std::vector<std::string>& inputs, const InputOptions& options);

}  // namespace longhaul::data
