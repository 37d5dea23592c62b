"""longhaul.linear_cross_entropy (the output head and its loss over chunks of rows) against
torch's cross_entropy on the whole logits: the loss and the gradients of hidden and weight, any
leading shape, rows without a target, float64 / float32 / bfloat16 heads, sum and mean; bad input
named."""
import pytest
import torch
import torch.nn.functional as F

import longhaul


def case(dtype, shape=(3, 13), d=16, vocab=29):
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(*shape, d, generator=g, dtype=torch.float64).to(dtype)
    weight = torch.randn(vocab, d, generator=g, dtype=torch.float64).to(dtype)
    targets = torch.randint(vocab, shape, generator=g)
    targets.view(-1)[::5] = -100  # every fifth row has no target
    return hidden, weight, targets


def loss_and_grads(fn, hidden, weight):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w)
    (loss * 0.61).backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6), (torch.bfloat16, 2e-2)],
                         ids=["fp64", "fp32", "bf16"])
@pytest.mark.parametrize("chunk_mib", [29 * 8 / 2**20, 1e-9, 256])  # 2 rows (fp32: 1), 1 row, all rows
def test_equals_cross_entropy_on_the_whole_logits(dtype, tol, chunk_mib, reduction):
    hidden, weight, targets = case(dtype)
    loss_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    def whole(h, w):
        logits = (h @ w.T).to(loss_dtype)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)

    def chunked(h, w):
        return longhaul.linear_cross_entropy(h, w, targets, chunk_mib=chunk_mib, reduction=reduction)

    want, got = loss_and_grads(whole, hidden, weight), loss_and_grads(chunked, hidden, weight)
    assert got[0].dtype == loss_dtype and got[1].dtype == dtype and got[2].dtype == dtype
    for what, g, w in zip(("loss", "d_hidden", "d_weight"), got, want):
        torch.testing.assert_close(g.double(), w.double(), rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


def test_bad_input_is_named():
    hidden, weight, targets = case(torch.float32)
    with pytest.raises(ValueError, match=r"targets must have hidden's leading shape \(3, 13\), got \(39,\)"):
        longhaul.linear_cross_entropy(hidden, weight, targets.reshape(-1))
    with pytest.raises(ValueError, match="targets must hold integers"):
        longhaul.linear_cross_entropy(hidden, weight, targets.float())
    bad = targets.clone()
    bad[1, 2] = 29
    with pytest.raises(ValueError, match=r"target 29 of row 15 outside \[0, vocab = 29\)"):
        longhaul.linear_cross_entropy(hidden, weight, bad)
    with pytest.raises(ValueError, match="hidden must be \\[N, d\\] and weight \\[V, d\\]"):
        longhaul.linear_cross_entropy(hidden, weight.T, targets)
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean', got 'none'"):
        longhaul.linear_cross_entropy(hidden, weight, targets, reduction="none")
    with pytest.raises(ValueError, match="chunk_mib must be > 0, got 0"):
        longhaul.linear_cross_entropy(hidden, weight, targets, chunk_mib=0)
