// The `longhaul` command-line tool: one function per subcommand, and helpers they share.
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "launch/world.h"

namespace longhaul::cli {

namespace po = boost::program_options;

int cmd_info(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_plan(const std::vector<std::string>& args);
int cmd_prep(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);  // cli/cmd_train.cpp
int cmd_simulate(const std::vector<std::string>& args);  // cli/cmd_simulate.cpp
// `longhaul bench attention` (cli/cmd_bench_attention.cpp); `bench kernel` and `bench cp` are it
// with one level. default_levels: what runs without --level.
int bench_attention(const std::vector<std::string>& args, const std::vector<std::string>& default_levels);
// `longhaul bench data` (cli/cmd_bench_data.cpp).
int bench_data(const std::vector<std::string>& args);
// `longhaul bench dd-cp` (cli/cmd_bench_dd_cp.cpp).
int bench_dd_cp(const std::vector<std::string>& args);

// Options every command that builds a World shares: --backend, --timeout (sets opts.timeout;
// timeout_s holds the command's default), --threads.
void add_world_options(po::options_description& desc, InitOptions& opts, double& timeout_s);
// One flag vocabulary for every subcommand: --tokens, --heads, --kv-heads, --head-dim, --ranks,
// --window (--T, --H, --H-kv, --D, --P are accepted as abbreviations of the first five).
std::vector<std::string> with_canonical_flags(const std::vector<std::string>& args);
// Parses args (abbreviations expanded) into vm; prints help and returns false for --help.
bool parse(const std::vector<std::string>& args, const po::options_description& desc, po::variables_map& vm,
           const std::string& usage, const po::positional_options_description* positional = nullptr);
// --heads and --kv-heads of one command (and its --head-dim, where it has one): positive, and the
// query heads a whole number of groups per key/value head (GQA). The error names the flags, their
// values and, when --kv-heads was left at its default, says so: `--heads 4` alone against a
// default of 8 kv heads is the usual slip.
void check_head_counts(const po::variables_map& vm, const std::string& command, int64_t heads, int64_t kv_heads,
                       std::optional<int64_t> head_dim = std::nullopt);
// Every rank of `comm` runs `command` with the same options (each of desc's, as parsed into vm, or
// unset): ranks started with different arguments would train different models or meet in
// collectives of different sizes. One small all-reduce; otherwise an InvalidArgument on every
// rank naming the first option that differs.
void check_same_options(Communicator& comm, const po::options_description& desc, const po::variables_map& vm,
                        const std::string& command);
// One line to stderr in one write, at the end of the statement: `LogLine() << "train: " << n;`.
// mpirun forwards a rank's stdout and stderr apart, so a line written in pieces (std::cerr writes
// at every <<) can be cut by the stdout between them, and the ranks' lines interleave mid-line.
class LogLine {
 public:
  LogLine() = default;
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  ~LogLine() { std::cerr << (os_.str() + "\n") << std::flush; }
  template <typename T>
  LogLine& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  std::ostringstream os_;
};

// The tool's exit codes, by what went wrong (docs/errors.md): 1 an internal error (an ATen
// error that escaped translation, anything unexpected), 2 bad input (InvalidArgument, unknown
// options), 3 Unsupported, 4 CommError, 5 TimeoutError, 6 NumericalError (a non-finite loss),
// 7 out of memory (c10::OutOfMemoryError, which the ATen boundary also makes of std::bad_alloc).
int exit_code_of(const std::exception& e);
// The one-line message of an exception: ATen's errors without their C++ backtrace, "out of
// memory: ..." for torch's out-of-memory error.
std::string message_of(const std::exception& e);
// Runs body, printing an exception as "longhaul: error (rank R): ..." and returning its exit
// code. Keeps the World alive while the error is printed (its destructor may abort MPI).
int guarded(int rank, const std::function<int()>& body);

}  // namespace longhaul::cli
