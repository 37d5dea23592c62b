// The cuDNN band route's graphs (attention/cuda/route_cudnn_band.cpp) through cudnn-frontend's own
// validation for Hopper (sm 90) and lowering to cuDNN's operation graph, which need no GPU: every
// window form the block planner gives a group (and the full and causal documents whose backward
// the route runs for ragged cuDNN), MHA and GQA, fp16 and bf16, forward and backward,
// piece counts and sides that round up. A graph this cuDNN's support surface refuses fails here,
// not first in a GPU session's probe (validation alone passed a batch stride that lowering, with
// the tensors' sizes in bytes, refuses).
#include <gtest/gtest.h>
#include <longhaul/config.h>

#include <string>

#include "attention/cuda/route_cudnn_band.h"

namespace longhaul {
namespace {

TEST(CudnnBandGraph, EveryWindowFormTheRouteBuildsValidatesForHopper) {
#if !LONGHAUL_WITH_CUDNN_FRONTEND
  GTEST_SKIP() << "built without the cudnn-frontend headers (scripts/setup.sh installs nvidia-cudnn-frontend); "
                  "a GPU run probes the route instead";
#else
  struct Form {
    int64_t left, right;
    const char* what;
  };
  struct Sides {
    int64_t pieces, max_q, max_kv;
  };
  for (const Form f : {Form{1023, 0, "causal window"}, Form{7, 2, "two-sided window"},
                       Form{63, -1, "lower bound only"}, Form{-1, 0, "causal, bottom-right"},
                       Form{-1, -1, "full (documents' backward)"}})
    for (const Sides s : {Sides{1, 16384, 16384}, Sides{5, 300, 900}, Sides{3, 900, 300}, Sides{100, 8192, 8192}})
      for (const int64_t kv_heads : {8, 2})
        for (const bool bf16 : {true, false})
          for (const bool backward : {false, true}) {
            cuda::BandGraphShape g;
            g.bf16 = bf16;
            g.pieces = s.pieces, g.max_q = s.max_q, g.max_kv = s.max_kv;
            g.heads = 8, g.kv_heads = kv_heads, g.head_dim = 128;
            g.left = f.left, g.right = f.right, g.backward = backward;
            EXPECT_EQ(cuda::validate_band_graph(g, 90), "")
                << f.what << ", " << s.pieces << " pieces of up to " << s.max_q << " x " << s.max_kv << ", H 8:"
                << kv_heads << (bf16 ? " bf16" : " fp16") << (backward ? " backward" : " forward");
          }
  // The check has teeth: a shape outside cuDNN's support surface is refused, with its reason.
  cuda::BandGraphShape too_wide;
  too_wide.head_dim = 512;
  too_wide.backward = true;
  EXPECT_NE(cuda::validate_band_graph(too_wide, 90), "");
#endif
}

}  // namespace
}  // namespace longhaul
