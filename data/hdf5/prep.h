// `longhaul prep`: text files, directories and JSON-lines to a token store, with bounded memory
// (1 MiB read blocks and the writer's buffers; a JSON-lines record is held whole).
//   text file  → one document (its bytes), unless it is empty or binary (a NUL byte in its first
//                block): then it is skipped and counted
//   .jsonl     → one document per line: the string value of --field; blank lines, invalid JSON,
//                a missing or non-string field and empty strings are skipped and counted
//   unreadable → skipped and counted with the system's reason
// Every document ends with EOS. The store is written to OUT.tmp.<pid> and renamed to OUT at the
// end, so a failed run leaves no half-written OUT behind.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/hdf5/store_writer.h"
#include "data/input_walk.h"
#include "data/length_histogram.h"

namespace longhaul::data {

struct PrepProgress {
  int64_t files_done = 0, files_total = 0, bytes = 0, documents = 0, tokens = 0;
  double seconds = 0;
};

struct PrepOptions {
  std::vector<std::string> inputs;
  std::string output;
  InputOptions input;
  std::string field = "text";  // JSON-lines: the key whose string value is the document
  std::string tokenizer = "bytes";
  StoreWriterOptions writer;
  std::function<void(const PrepProgress&)> progress;  // called every progress_interval_s and at the end
  double progress_interval_s = 0.25;
};

struct PrepSummary {
  std::string output;
  int64_t files = 0, documents = 0, tokens = 0, input_bytes = 0;
  double seconds = 0;
  std::map<std::string, int64_t> skipped;  // reason → count (files or JSON-lines records)
  std::map<std::string, int64_t> left_out;  // inputs not taken (glob, excluded directories, …)
  std::vector<std::string> examples;        // the first few skipped or left-out items, with the reason
  LengthHistogram lengths;                  // document lengths in tokens (EOS included)
  double mb_per_s() const { return seconds > 0 ? double(input_bytes) / 1e6 / seconds : 0.0; }
  std::string text() const;                 // the summary `longhaul prep` prints
};

PrepSummary prep(const PrepOptions& options);

}  // namespace longhaul::data
