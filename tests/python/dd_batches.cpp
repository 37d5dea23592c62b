// The C++ side of the Python sampler test (test_data.py): prints the batches of data::DDSampler
// and data::build_batch over a token store, one JSON object per line, from plain C++ (no Python
// binding involved), so the test compares two independent paths.
//   dd_batches STORE TOKENS_PER_STEP MIN_LOG2 MAX_LOG2 DP_SIZE DP_RANK CURRICULUM CYCLES SEED
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/hdf5/store_reader.h"
#include "data/sampler.h"

namespace {

template <typename T>
void print_list(const char* name, const std::vector<T>& v) {
  std::cout << ", \"" << name << "\": [";
  for (size_t i = 0; i < v.size(); ++i) std::cout << (i ? "," : "") << v[i];
  std::cout << "]";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace longhaul::data;
  if (argc != 10) {
    std::cerr << "usage: dd_batches STORE TOKENS_PER_STEP MIN_LOG2 MAX_LOG2 DP_SIZE DP_RANK CURRICULUM CYCLES SEED\n";
    return 2;
  }
  try {
    TokenStoreReader store(argv[1]);
    SamplerOptions o;
    o.tokens_per_step = std::stoll(argv[2]);
    o.dp_size = std::stoi(argv[5]);
    o.dp_rank = std::stoi(argv[6]);
    o.curriculum = curriculum_from_string(argv[7]);
    o.cycles = std::stoi(argv[8]);
    o.seed = std::stoull(argv[9]);
    auto dd = std::make_shared<Decomposition>(store.doc_offsets(), BucketRange{std::stoi(argv[3]), std::stoi(argv[4])});
    DDSampler sampler(dd, o);
    while (auto plan = sampler.next()) {
      Batch b = build_batch(store, std::move(*plan));
      std::cout << "{\"step\": " << b.plan.step << ", \"cycle\": " << b.plan.cycle << ", \"seq_len\": " << b.plan.seq_len;
      print_list("tokens", b.tokens);
      print_list("targets", b.targets);
      print_list("positions", b.positions);
      print_list("cu_seqlens", b.cu_seqlens);
      std::cout << "}\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "dd_batches: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
