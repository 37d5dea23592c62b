// Checks of the context-parallel strategies against the single-process float64 reference,
// written once against the Communicator interface and run on local thread-ranks (tests/unit)
// and under mpirun (tests/multiprocess). Each function is collective over `comm`.
#pragma once

#include <string>

#include "parallel/context_parallel.h"

namespace longhaul::testing {

struct CpCase {
  Strategy strategy = Strategy::Ring;
  Layout layout = Layout::Zigzag;
  std::string mask = "causal";  // full, causal, documents, causal_documents, causal_window, or a family
  int64_t T = 1000, H = 4, H_kv = 2, D = 32;
  at::ScalarType dtype = at::kDouble;
  int ulysses_degree = 1;             // hybrid
  Strategy inner = Strategy::Ring;    // hybrid
  c10::Device device = c10::Device(c10::kCPU);  // where the shards live (the reference runs on the CPU)
};
std::string describe(const CpCase& c);

// The masks a strategy supports (RSA: full and causal).
std::vector<std::string> masks_for(Strategy s);
// The mask of a case name at length T (a family name: masks::make with test parameters).
Mask mask_for(const std::string& name, int64_t T);
// The long-context families beyond full and causal (every strategy but rsa takes them).
const std::vector<std::string>& family_cases();

// forward out/lse and backward dq/dk/dv on every rank's shard equal the reference's.
void check_against_reference(Communicator& comm, const CpCase& c);
// All strategies × layouts × supported masks × GQA ratios (1 and H/H_kv = 2) on `comm`.
void check_all_cases(Communicator& comm, Strategy s, int64_t T);
// Every layout × supported mask in float64, float32 and bfloat16 (GQA 2:1) with the shards on
// `device` (CUDA: the local backend on one GPU).
void check_device_cases(Communicator& comm, Strategy s, int64_t T, c10::Device device);
// Every family of family_cases() × every layout (balanced included), GQA 2:1, float64.
void check_family_cases(Communicator& comm, Strategy s, int64_t T);
// Hybrid with Ulysses degree u (dividing the group size), inner ring and tokenring, every
// layout × mask, GQA 2:1.
void check_hybrid_cases(Communicator& comm, int u, int64_t T);
// A small model (projections → attention → weighted sum) trained through ContextParallel::attention
// gives the parameter gradients of the single-process computation (SDPA in float64 by autograd).
void check_autograd_model(Communicator& comm, Strategy s, Layout l);
// Two identical calls give bitwise identical results (CPU, fixed ranks and threads).
void check_bitwise_reproducible(Communicator& comm, Strategy s);
// NaN and ±inf planted in q, k or v (causal and full masks, GQA 2:1): every rank finishes forward
// and backward; outputs and gradients are non-finite only where SDPA's math backend is too, agree
// with it where both are finite, and every output that depends on a NaN is NaN. Hybrid: degree u;
// dtype: the shards' (float32 takes the kernels' vectorised max and exp).
void check_nonfinite_inputs(Communicator& comm, Strategy s, int u = 1, at::ScalarType dtype = at::kDouble);
// Ranks that disagree on a dimension get an error naming the rank and the field.
void check_disagreement_is_an_error(Communicator& comm);
// Ranks agree for 3 calls, then rank 1 changes T: every rank gets the named error within 2 s.
void check_later_disagreement_is_an_error(Communicator& comm);
// Rank 1 alone passes invalid arguments (q rows other than the plan's; k in another dtype; rows
// from a plan cut with another min_chunk): it throws its own error, and every other rank an error
// naming rank 1, within 2 s (not at the deadline, not a transport error, not a wrong result).
void check_one_invalid_rank_fails_every_rank_at_once(Communicator& comm);

}  // namespace longhaul::testing
