#include "cli/cli.h"

#include <iostream>

namespace longhaul::cli {

void add_world_options(po::options_description& desc, InitOptions& opts, double& timeout_s) {
  desc.add_options()
      ("backend", po::value<std::string>()->default_value("auto")->notifier([&opts](const std::string& name) {
         opts.backend = backend_from_string(name);
       }),
       "communicator for CPU tensors: auto (mpi under mpirun, c10d under torchrun/Slurm, local alone), mpi, c10d "
       "or local; CUDA tensors go over NCCL when every local rank has its own GPU (auto), or always with nccl")
      ("timeout", po::value(&timeout_s)->default_value(300.0), "deadline of every communication wait, seconds")
      ("threads", po::value(&opts.threads)->default_value(0), "threads per rank (0: from the CPU affinity)");
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
  po::notify(vm);
  return true;
}

int guarded(int rank, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << "longhaul: error (rank " << rank << "): " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace longhaul::cli
