#include "data/hdf5/prep.h"


#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>

#include "data/files.h"
#include "data/hdf5/pending_store.h"
#include "data/json_field.h"
#include "data/tokenizer.h"
#include "core/errors.h"

namespace longhaul::data {
namespace {

constexpr size_t kBlock = size_t(1) << 20;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

class Prep {
 public:
  Prep(const PrepOptions& o, TokenStoreWriter& w, const Tokenizer& tok, PrepSummary& s)
      : o_(o), w_(w), tok_(tok), s_(s), buf_(kBlock) {}

  void skip(const std::string& reason, const std::string& where) {
    ++s_.skipped[reason];
    if (s_.examples.size() < 10) s_.examples.push_back(where + ": " + reason);
  }

  void end_document(int64_t tokens) {
    const int32_t eos = static_cast<int32_t>(tok_.eos_id());
    w_.append(&eos, 1);
    w_.end_document();
    ++s_.documents;
    s_.lengths.add(tokens + 1);
  }

  void text_file(const std::string& path) {
    File f(std::fopen(path.c_str(), "rb"));
    if (!f) return skip(std::string("unreadable (") + std::strerror(errno) + ")", path);
    int64_t doc_tokens = 0;
    bool first = true;
    for (;;) {
      const size_t n = std::fread(buf_.data(), 1, buf_.size(), f.get());
      if (std::ferror(f.get())) {
        // Tokens of this file may already be in the writer: a document cannot be taken back.
        throw Error("prep: read error in '" + path + "' after " + std::to_string(s_.input_bytes) +
                    " bytes: " + std::strerror(errno));
      }
      if (first) {
        if (n == 0) return skip("empty file", path);
        if (std::memchr(buf_.data(), '\0', n)) return skip("binary file (NUL byte in its first 1 MiB)", path);
        first = false;
      }
      if (n == 0) break;
      encode_append(buf_.data(), n);
      doc_tokens += static_cast<int64_t>(tokens_.size());
      s_.input_bytes += static_cast<int64_t>(n);
      tick();
    }
    end_document(doc_tokens);
  }

  void jsonl_file(const std::string& path) {
    File f(std::fopen(path.c_str(), "rb"));
    if (!f) return skip(std::string("unreadable (") + std::strerror(errno) + ")", path);
    std::string line, value, err;
    int64_t line_no = 0;
    auto record = [&] {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::string where = path + ":" + std::to_string(line_no);
      if (line.find_first_not_of(" \t") == std::string::npos) return skip("jsonl: blank line", where);
      const JsonFieldStatus st = json_string_field(line, o_.field, value, &err);
      if (st == JsonFieldStatus::Invalid) return skip("jsonl: invalid JSON", where + " (" + err + ")");
      if (st != JsonFieldStatus::Ok) return skip(std::string("jsonl: ") + to_string(st) + " ('" + o_.field + "')", where);
      if (value.empty()) return skip("jsonl: empty document", where);
      encode_append(value.data(), value.size());
      end_document(static_cast<int64_t>(tokens_.size()));
    };
    for (;;) {
      const size_t n = std::fread(buf_.data(), 1, buf_.size(), f.get());
      if (std::ferror(f.get())) throw Error("prep: read error in '" + path + "': " + std::strerror(errno));
      if (n == 0) break;
      s_.input_bytes += static_cast<int64_t>(n);
      size_t at = 0;
      while (at < n) {
        const char* nl = static_cast<const char*>(std::memchr(buf_.data() + at, '\n', n - at));
        const size_t end = nl ? static_cast<size_t>(nl - buf_.data()) : n;
        line.append(buf_.data() + at, end - at);
        at = end + (nl ? 1 : 0);
        if (nl) {
          record();
          line.clear();
        }
      }
      tick();
    }
    if (!line.empty()) record();  // a last line without a newline
  }

  void tick(bool force = false) {
    if (!o_.progress) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && std::chrono::duration<double>(now - last_).count() < o_.progress_interval_s) return;
    last_ = now;
    PrepProgress p;
    p.files_done = files_done;
    p.files_total = files_total;
    p.bytes = s_.input_bytes;
    p.documents = s_.documents;
    p.tokens = w_.tokens();
    p.seconds = std::chrono::duration<double>(now - start).count();
    o_.progress(p);
  }

  int64_t files_done = 0, files_total = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

 private:
  void encode_append(const char* text, size_t n) {
    tokens_.clear();
    tok_.encode(text, n, tokens_);
    w_.append(tokens_.data(), static_cast<int64_t>(tokens_.size()));
  }

  const PrepOptions& o_;
  TokenStoreWriter& w_;
  const Tokenizer& tok_;
  PrepSummary& s_;
  std::vector<char> buf_;
  std::vector<int32_t> tokens_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace

PrepSummary prep(const PrepOptions& o) {
  LH_CHECK(!o.output.empty(), "prep: no output file given (-o OUT.h5)");
  auto tok = make_tokenizer(o.tokenizer);
  InputList inputs = expand_inputs(o.inputs, o.input);  // before anything is written
  files::check_writable_file(o.output, "prep: the output");
  for (const auto& f : inputs.files)
    LH_CHECK(!files::same_file(f.path, o.output), "prep: the output ", o.output, " is also an input (", f.path,
             "); writing it would destroy that input");
  PrepSummary s;
  s.output = o.output;
  s.left_out = inputs.left_out;
  s.examples = inputs.examples;
  PendingStore out(o.output, {tok->name(), tok->vocab_size(), tok->eos_id()}, o.writer);
  Prep p(o, out.writer(), *tok, s);
  p.files_total = static_cast<int64_t>(inputs.files.size());
  for (const auto& f : inputs.files) {
    f.jsonl ? p.jsonl_file(f.path) : p.text_file(f.path);
    ++p.files_done;
    ++s.files;
    p.tick();
  }
  LH_CHECK(s.documents > 0, "prep: the ", s.files, " input file(s) hold no document (all skipped: see the reasons",
           s.examples.empty() ? std::string() : ", e.g. " + s.examples.front(), ")");
  out.commit();
  s.tokens = out.writer().tokens();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - p.start).count();
  p.tick(true);
  return s;
}

std::string PrepSummary::text() const {
  char line[256];
  std::string out;
  std::snprintf(line, sizeof line, "prep: %s: %lld documents, %lld tokens from %lld files (%.1f MB) in %.2f s (%.1f MB/s)\n",
                output.c_str(), static_cast<long long>(documents), static_cast<long long>(tokens),
                static_cast<long long>(files), double(input_bytes) / 1e6, seconds, mb_per_s());
  out += line;
  int64_t n_skipped = 0;
  for (const auto& [why, n] : skipped) n_skipped += n;
  out += "skipped: " + std::to_string(n_skipped) + "\n";
  for (const auto& [why, n] : skipped) out += "  " + std::to_string(n) + "  " + why + "\n";
  if (!left_out.empty()) {
    out += "not taken:\n";
    for (const auto& [why, n] : left_out) out += "  " + std::to_string(n) + "  " + why + "\n";
  }
  if (!examples.empty()) {
    out += "examples:\n";
    for (const auto& e : examples) out += "  " + e + "\n";
  }
  out += "document lengths (tokens, EOS included):\n" + lengths.table();
  return out;
}

}  // namespace longhaul::data
