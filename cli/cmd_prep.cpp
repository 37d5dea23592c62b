// `longhaul prep INPUT... -o OUT.h5`: text files, directories and JSON-lines to a token store.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "core/report.h"
#include "cli/cli.h"
#include "longhaul/config.h"
#include "core/errors.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/prep.h"
#endif

namespace longhaul::cli {

#if LONGHAUL_WITH_HDF5
namespace {

// "\rprep [########------] 812/1790 files  14.2 MB  61.3 MB/s" on stderr.
void draw_progress(const data::PrepProgress& p) {
  const int width = 24;
  const int done = p.files_total ? static_cast<int>(width * p.files_done / p.files_total) : 0;
  std::fprintf(stderr, "\rprep [%s%s] %lld/%lld files  %.1f MB  %.1f MB/s ", std::string(done, '#').c_str(),
               std::string(width - done, '-').c_str(), static_cast<long long>(p.files_done),
               static_cast<long long>(p.files_total), double(p.bytes) / 1e6,
               p.seconds > 0 ? double(p.bytes) / 1e6 / p.seconds : 0.0);
  std::fflush(stderr);
}

void print_json(const data::PrepSummary& s) {
  std::vector<report::Row> rows;
  int64_t skipped = 0;
  for (const auto& [why, n] : s.skipped) skipped += n;
  rows.push_back(report::Row()
                     .add("output", s.output)
                     .add("files", s.files)
                     .add("documents", s.documents)
                     .add("tokens", s.tokens)
                     .add("input_mb", double(s.input_bytes) / 1e6)
                     .add("seconds", s.seconds)
                     .add("mb_per_s", s.mb_per_s())
                     .add("skipped", skipped));
  for (const auto& [why, n] : s.skipped) rows.push_back(report::Row().add("skipped_reason", why).add("count", n));
  for (const auto& [why, n] : s.left_out) rows.push_back(report::Row().add("not_taken_reason", why).add("count", n));
  const auto& h = s.lengths;
  for (size_t k = 0; k < h.docs().size(); ++k)
    if (h.docs()[k])
      rows.push_back(report::Row().add("length_log2", int64_t(k)).add("documents", h.docs()[k]).add("tokens", h.tokens()[k]));
  report::print_json(std::cout, rows);
}

}  // namespace
#endif

int cmd_prep(const std::vector<std::string>& args) {
#if LONGHAUL_WITH_HDF5
  data::PrepOptions o;
  bool json = false, quiet = false;
  po::options_description desc("longhaul prep");
  desc.add_options()
      ("input", po::value(&o.inputs)->multitoken(), "text files, JSON-lines files or directories (also positional)")
      ("output,o", po::value(&o.output), "the token store to write (HDF5)")
      ("glob", po::value(&o.input.glob)->default_value(o.input.glob), "files to take inside directories (fnmatch on the name)")
      ("exclude-dir", po::value(&o.input.exclude_dirs)->multitoken(), "directory names not to walk into (repeatable)")
      ("format", po::value(&o.input.format)->default_value(o.input.format),
       "auto (.jsonl/.ndjson as JSON-lines, else text), text or jsonl")
      ("field", po::value(&o.field)->default_value(o.field), "JSON-lines: the key holding each document's text")
      ("tokenizer", po::value(&o.tokenizer)->default_value(o.tokenizer), "bytes (vocab 256 + EOS)")
      ("max-files", po::value(&o.input.max_files)->default_value(0), "take only the first N files (0: all)")
      ("chunk-tokens", po::value(&o.writer.chunk_tokens)->default_value(o.writer.chunk_tokens), "HDF5 chunk of /tokens")
      ("deflate", po::value(&o.writer.deflate_level)->default_value(o.writer.deflate_level),
       "deflate level 0-9 after shuffle (0: uncompressed)")
      ("quiet,q", po::bool_switch(&quiet), "no progress bar")
      ("json", po::bool_switch(&json), "the summary as JSON lines");
  po::positional_options_description pos;
  pos.add("input", -1);
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "longhaul prep INPUT... -o OUT.h5 [--glob '*.txt'] [--format auto|text|jsonl] [--field text]\n"
             "  A text file is one document; a JSON-lines file one document per line. Every document ends\n"
             "  with EOS. Empty or binary files and bad JSON-lines records are skipped and counted.",
             &pos))
    return 0;
  LH_CHECK(!o.output.empty(), "prep: no output file given (-o OUT.h5)");
  if (!quiet && !json && isatty(STDERR_FILENO)) o.progress = draw_progress;
  data::PrepSummary s = data::prep(o);
  if (o.progress) std::fprintf(stderr, "\n");
  if (json)
    print_json(s);
  else
    std::cout << s.text();
  return 0;
#else
  (void)args;
  throw Unsupported("longhaul prep: this build has no HDF5 token store (configure with -DLONGHAUL_WITH_HDF5=ON; "
                    "apt-get install libhdf5-dev)");
#endif
}

}  // namespace longhaul::cli
