#include "cli/cli.h"

#include <c10/util/Exception.h>

#include "core/aten_boundary.h"
#include "core/errors.h"
#include "longhaul/config.h"
#include "runtime/comm/agreement.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif

#include <cmath>
#include <iostream>
#include <sstream>

namespace longhaul::cli {

// More threads than any machine's cores only slows a rank down (and creating them takes minutes).
constexpr int kMostThreads = 1024;

void add_world_options(po::options_description& desc, InitOptions& opts, double& timeout_s) {
  desc.add_options()
      ("backend", po::value<std::string>()->default_value("auto")->notifier([&opts](const std::string& name) {
         opts.backend = backend_from_string(name);
       }),
       "communicator for CPU tensors: auto (mpi under mpirun, c10d under torchrun/Slurm, local alone), mpi, c10d "
       "or local; CUDA tensors go over NCCL when every local rank has its own GPU (auto), or always with nccl")
      ("timeout", po::value(&timeout_s)->default_value(timeout_s)->notifier([&opts](double s) {
         opts.timeout = timeout_of_seconds(s, "--timeout");
       }),
       "deadline of every communication wait, seconds (inf: none)")
      ("threads", po::value(&opts.threads)->default_value(0)->notifier([](int n) {
         LH_CHECK(n >= 0 && n <= kMostThreads, "--threads ", n, ": expected 0 (from the CPU affinity) to ", kMostThreads);
       }),
       "threads per rank (0: from the CPU affinity)");
}

std::vector<std::string> with_canonical_flags(const std::vector<std::string>& args) {
  static const std::vector<std::pair<std::string, std::string>> kAbbreviations = {
      {"--T", "--tokens"}, {"--H", "--heads"}, {"--H-kv", "--kv-heads"}, {"--D", "--head-dim"}, {"--P", "--ranks"}};
  std::vector<std::string> out;
  for (const auto& a : args) {
    std::string t = a;
    for (const auto& [abbrev, name] : kAbbreviations) {
      if (a == abbrev) t = name;
      else if (a.rfind(abbrev + "=", 0) == 0) t = name + a.substr(abbrev.size());
    }
    out.push_back(t);
  }
  return out;
}

bool parse(const std::vector<std::string>& args, const po::options_description& desc, po::variables_map& vm,
           const std::string& usage, const po::positional_options_description* positional) {
  po::options_description all(desc);
  all.add_options()("help,h", "show this help");
  auto parser = po::command_line_parser(with_canonical_flags(args)).options(all);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\n" << all << std::endl;
    return false;
  }
  // No option of any subcommand means anything by NaN (and a NaN would pass every range check).
  for (const auto& [name, value] : vm)
    if (const double* x = boost::any_cast<double>(&value.value()); x && std::isnan(*x))
      throw InvalidArgument("--" + name + " nan: expected a number");
  po::notify(vm);
  return true;
}

void check_head_counts(const po::variables_map& vm, const std::string& command, int64_t heads, int64_t kv_heads,
                       std::optional<int64_t> head_dim) {
  LH_CHECK(heads >= 1 && kv_heads >= 1, command, ": --heads ", heads, " and --kv-heads ", kv_heads,
           ": expected numbers >= 1");
  const bool kv_defaulted = vm.count("kv-heads") && vm["kv-heads"].defaulted();
  LH_CHECK(heads % kv_heads == 0, command, ": --heads ", heads, " is not a multiple of --kv-heads ", kv_heads,
           kv_defaulted ? " (its default)" : "", ": every key/value head serves the same number of query heads; ",
           "pass a --kv-heads that divides ", heads, " (", heads, " for no GQA)");
  LH_CHECK(!head_dim || *head_dim >= 1, command, ": --head-dim ", head_dim.value_or(0), ": expected a number >= 1");
}

namespace {

// An option's parsed value as text: the types the subcommands' options use.
template <typename T>
bool append_if(const boost::any& v, std::string& out) {
  if (const T* x = boost::any_cast<T>(&v)) {
    std::ostringstream s;
    s << *x;
    out = s.str();
    return true;
  }
  if (const auto* xs = boost::any_cast<std::vector<T>>(&v)) {
    std::ostringstream s;
    for (const T& x : *xs) s << x << " ";
    out = s.str();
    return true;
  }
  return false;
}

std::string value_text(const po::variable_value& v) {
  std::string out = "(a value of another type)";
  const boost::any& a = v.value();
  append_if<std::string>(a, out) || append_if<int>(a, out) || append_if<int64_t>(a, out) ||
      append_if<uint64_t>(a, out) || append_if<double>(a, out) || append_if<bool>(a, out) || append_if<long long>(a, out);
  return out;
}

}  // namespace

void check_same_options(Communicator& comm, const po::options_description& desc, const po::variables_map& vm,
                        const std::string& command) {
  std::vector<AgreedField> fields;
  for (const auto& option : desc.options()) {
    const std::string& name = option->long_name();
    const auto it = vm.find(name);
    fields.push_back(AgreedField::of_text("--" + name, it == vm.end() ? "no value" : value_text(it->second)));
  }
  check_ranks_agree(comm, at::Device(at::kCPU), fields, "longhaul " + command,
                    "every rank must be started with the same options");
}

int exit_code_of(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return 7;  // std::bad_alloc too: guarded()'s boundary converts it
  if (dynamic_cast<const NumericalError*>(&e)) return 6;
  if (dynamic_cast<const TimeoutError*>(&e)) return 5;
  if (dynamic_cast<const CommError*>(&e)) return 4;
  if (dynamic_cast<const Unsupported*>(&e)) return 3;
  if (dynamic_cast<const InvalidArgument*>(&e) || dynamic_cast<const po::error*>(&e)) return 2;
  return 1;
}

std::string message_of(const std::exception& e) {
  if (const auto* oom = dynamic_cast<const c10::OutOfMemoryError*>(&e))
    return std::string("out of memory: ") + oom->what_without_backtrace();
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e))
    return std::string("internal error in ATen: ") + c10->what_without_backtrace();
  return e.what();
}

int guarded(int rank, const std::function<int()>& body) {
  try {
    // ATen errors that no entry point below translated get the same types here, hence the same
    // exit codes (a ValueError inside torch is bad input: 2); out of memory stays torch's type.
    return aten_boundary("longhaul", body);
  } catch (const std::exception& e) {
    // One write (LogLine): the ranks' lines that mpirun merges would otherwise interleave mid-line
    // (2 of 20 lines over five 4-rank runs).
    LogLine() << "longhaul: error (rank " << rank << "): " << message_of(e);
#if LONGHAUL_WITH_MPI
    mpi::set_abort_code(exit_code_of(e));  // an aborted MPI job ends with this code too
#endif
    return exit_code_of(e);
  }
}

}  // namespace longhaul::cli
