// longhaul: the command-line tool. `longhaul <command> --help` describes each command.
#include <iostream>
#include <map>

#include "cli/cli.h"
#include "cli/output_check.h"

namespace {
const std::map<std::string, std::pair<int (*)(const std::vector<std::string>&), const char*>> kCommands = {
    {"plan", {longhaul::cli::cmd_plan, "predict time, bytes and memory per CP strategy; pick one"}},
    {"info", {longhaul::cli::cmd_info, "build configuration, backends, devices and threads"}},
    {"bench", {longhaul::cli::cmd_bench, "benchmarks: comm, attention, kernel, cp, long, cp-gpu, layer, data, dd-cp"}},
    {"prep", {longhaul::cli::cmd_prep, "text files, directories, JSON-lines to an HDF5 token store"}},
    {"simulate", {longhaul::cli::cmd_simulate, "run CP strategies' real schedules on a simulated cluster (up to 1024 ranks)"}},
    {"train", {longhaul::cli::cmd_train, "train a transformer with context parallelism (default: a built-in recall task)"}},
};

void usage(std::ostream& os) {
  os << "usage: longhaul <command> [options]   (longhaul <command> --help)\n\ncommands:\n";
  for (const auto& [name, cmd] : kCommands) os << "  " << name << "\t" << cmd.second << "\n";
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  auto it = kCommands.find(argv[1]);
  if (it == kCommands.end()) {
    std::cerr << "longhaul: unknown command '" << argv[1] << "'\n";
    usage(std::cerr);
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  int rc = 0;
  try {
    rc = it->second.first(args);
  } catch (const std::exception& e) {  // option errors, init failures
    std::cerr << "longhaul " << argv[1] << ": error: " << longhaul::cli::message_of(e) << std::endl;
    rc = longhaul::cli::exit_code_of(e);
  }
  return longhaul::cli::checked_exit(argv[1], rc);  // output lost to a full disk is an error too
}
