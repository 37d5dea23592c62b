// The head and its loss over chunks of rows (train/linear_cross_entropy.h) against the plain
// head (logits whole, at::cross_entropy_loss): the loss and both gradients for any chunk size,
// rows without a target, float64 / float32 / bfloat16 matmuls, without autograd; bad input named.
// And a whole run whose passes are cut into 3-row chunks trains as the plain head does.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"
#include "tests/common/expect_error.h"
#include "tests/common/train_local.h"
#include "train/linear_cross_entropy.h"

namespace longhaul::train {
namespace {

struct Case {
  at::Tensor hidden, weight, targets;
};

Case make_case(at::ScalarType dtype, int64_t n = 37, int64_t d = 8, int64_t vocab = 11) {
  at::manual_seed(5);
  Case c{at::randn({n, d}, at::kDouble).to(dtype), at::randn({vocab, d}, at::kDouble).to(dtype),
         at::randint(vocab, {n}, at::kLong)};
  c.targets.index_put_({at::arange(0, n, 4)}, -100);  // every 4th row has no target
  return c;
}

struct Grads {
  double loss;
  at::Tensor d_hidden, d_weight;
};

// loss · 0.37 backward (the gradient coming in is scaled, as a step's 1 / targets does).
template <typename F>
Grads loss_and_grads(const Case& c, F loss_of) {
  at::Tensor h = c.hidden.clone().requires_grad_(), w = c.weight.clone().requires_grad_();
  at::Tensor loss = loss_of(h, w);
  (loss * 0.37).backward();
  return {loss.item<double>(), h.grad(), w.grad()};
}

Grads plain(const Case& c, at::ScalarType loss_dtype) {
  return loss_and_grads(c, [&](const at::Tensor& h, const at::Tensor& w) {
    return at::cross_entropy_loss(at::mm(h, w.t()).to(loss_dtype), c.targets, {}, at::Reduction::Sum, -100);
  });
}

TEST(LossChunks, EqualThePlainHeadForEveryChunkSize) {
  for (const auto& [dtype, loss_dtype, tol] :
       {std::tuple{at::kDouble, at::kDouble, 1e-12}, std::tuple{at::kFloat, at::kFloat, 2e-6},
        std::tuple{at::kBFloat16, at::kFloat, 2e-2}}) {
    const Case c = make_case(dtype);
    const at::ScalarType ld = loss_dtype;  // a structured binding cannot be captured before C++20
    const Grads want = plain(c, ld);
    for (int64_t rows : {1, 5, 36, 37, 1000}) {
      const Grads got = loss_and_grads(c, [&](const at::Tensor& h, const at::Tensor& w) {
        return linear_cross_entropy_sum(h, w, c.targets, ld, rows);
      });
      const std::string what = std::string(c10::toString(dtype)) + ", chunks of " + std::to_string(rows);
      EXPECT_NEAR(got.loss, want.loss, tol * std::abs(want.loss)) << what;
      ASSERT_EQ(got.d_hidden.scalar_type(), dtype) << what;
      ASSERT_EQ(got.d_weight.scalar_type(), dtype) << what;
      EXPECT_TRUE(at::allclose(got.d_hidden.to(at::kDouble), want.d_hidden.to(at::kDouble), tol, tol)) << what;
      EXPECT_TRUE(at::allclose(got.d_weight.to(at::kDouble), want.d_weight.to(at::kDouble), tol, tol)) << what;
    }
  }
}

TEST(LossChunks, RowsWithoutTargetsAndNoAutograd) {
  Case c = make_case(at::kDouble);
  c.targets.fill_(-100);
  const Grads none = loss_and_grads(c, [&](const at::Tensor& h, const at::Tensor& w) {
    return linear_cross_entropy_sum(h, w, c.targets, at::kDouble, 4);
  });
  EXPECT_EQ(none.loss, 0.0);
  EXPECT_EQ(none.d_hidden.abs().max().item<double>(), 0.0);
  EXPECT_EQ(none.d_weight.abs().max().item<double>(), 0.0);
  // Without autograd: the loss alone, no graph.
  const Case d = make_case(at::kDouble);
  at::Tensor h = d.hidden.clone().requires_grad_();
  at::Tensor loss;
  {
    at::NoGradGuard no_grad;
    loss = linear_cross_entropy_sum(h, d.weight, d.targets, at::kDouble, 3);
  }
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_NEAR(loss.item<double>(), plain(d, at::kDouble).loss, 1e-12 * std::abs(loss.item<double>()));
  // An empty pass.
  EXPECT_EQ(linear_cross_entropy_sum(d.hidden.narrow(0, 0, 0), d.weight, d.targets.narrow(0, 0, 0), at::kDouble, 3)
                .item<double>(),
            0.0);
}

TEST(LossChunks, BadInputIsNamed) {
  using testing::expect_error;
  const Case c = make_case(at::kFloat);
  at::Tensor t = c.targets.clone();
  t[6] = 11;
  expect_error([&] { linear_cross_entropy_sum(c.hidden, c.weight, t, at::kFloat, 4); },
               "target 11 of row 6 outside [0, vocab = 11)");
  expect_error([&] { linear_cross_entropy_sum(c.hidden, c.weight.t(), c.targets, at::kFloat, 4); },
               "hidden must be [N, d] and weight [V, d]");
  expect_error([&] { linear_cross_entropy_sum(c.hidden, c.weight, c.targets.narrow(0, 0, 5), at::kFloat, 4); },
               "targets must be int64 [N = 37]");
  expect_error([&] { linear_cross_entropy_sum(c.hidden, c.weight, c.targets, at::kFloat, 0); },
               "chunk_rows must be >= 1, got 0");
  expect_error([&] { linear_cross_entropy_sum(c.hidden, c.weight, c.targets, at::kHalf, 4); },
               "the loss dtype must be float32 or float64");
}

// A run whose passes are cut into chunks of 3 rows trains as the plain head (loss_chunk_bytes 0:
// logits whole, torch's cross-entropy) and as one chunk per pass (the default at this vocabulary).
TEST(LossChunks, ARunInSmallChunksTrainsAsThePlainHead) {
  for (Precision p : {Precision::Fp64, Precision::Fp32, Precision::Bf16}) {
    TrainOptions plain = testing_local::tiny_options(2, Strategy::Ring), one = plain, small = plain;
    plain.model.precision = one.model.precision = small.model.precision = p;
    plain.loss_chunk_bytes = 0;
    small.loss_chunk_bytes = 3 * plain.model.vocab * int64_t(c10::elementSize(master_dtype(p)));
    const testing::TrainRun a = testing_local::run(2, plain, 4);
    // bf16 rounds each chunk's matmuls on their own (measured 6e-6 on the loss, 1.3e-3 on a
    // parameter: AdamW's normalised steps move a parameter of tiny gradient by up to lr, 1e-3, a step).
    const double loss_tol = p == Precision::Bf16 ? 1e-4 : testing::kLossTol;
    const double param_tol = p == Precision::Bf16 ? 5e-3 : testing::kParamTol;
    testing::expect_same_run(a, testing_local::run(2, small, 4), std::string("chunks of 3 rows, ") + to_string(p),
                             loss_tol, param_tol);
    testing::expect_same_run(a, testing_local::run(2, one, 4), std::string("one chunk, ") + to_string(p), loss_tol,
                             param_tol);
  }
}

}  // namespace
}  // namespace longhaul::train
