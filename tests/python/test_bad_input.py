"""What longhaul refuses, or gets right, where it used to run silently wrong: a second derivative
of the attention (its backward is not differentiable), a softmax scale that is not a positive
finite number, a window with non-integer bounds, windows and bands past any sequence, areas past
int64, documents given twice, a head dim of 0, masks and plans whose documents differ, tokens
outside the vocabulary; an allocation that fails is torch's out-of-memory error. Runs in one
process and under a launcher."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import longhaul

T, H, D = 24, 2, 8


def shards(cp, requires_grad=False):
    plan = cp.plan(T)
    g = torch.Generator().manual_seed(0)
    q, k, v = (plan.shard(torch.randn(T, H, D, generator=g, dtype=torch.float64)) for _ in range(3))
    return plan, q.requires_grad_(requires_grad), k, v


def test_double_backward_raises(group):
    """The first derivative with create_graph=True is right; differentiating it again raises
    (it used to give a gradient without a grad_fn: a silent zero second derivative)."""
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan, q, k, v = shards(cp, requires_grad=True)
    out = cp.attention(q, k, v, plan, causal=True)
    g, = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    g_once, = torch.autograd.grad(cp.attention(q, k, v, plan, causal=True).pow(2).sum(), q)
    torch.testing.assert_close(g.detach(), g_once, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()


@pytest.mark.parametrize("scale", [0, 0.0, -0.5, math.nan, math.inf, -math.inf, True, "0.5", torch.tensor([1.0, 2.0])],
                         ids=lambda s: repr(s))
def test_scale_must_be_positive_and_finite(group, scale):
    with pytest.raises(ValueError, match="scale must be a positive finite number or None, got"):
        longhaul.ContextParallel("ring", "zigzag", group=group, scale=scale)


def test_scale_none_is_the_default_and_a_number_is_used(group):
    default = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan, q, k, v = shards(default)
    out = default.attention(q, k, v, plan, causal=True)
    same = longhaul.ContextParallel("ring", "zigzag", group=group, scale=np.float64(D ** -0.5))
    torch.testing.assert_close(same.attention(q, k, v, plan, causal=True), out, rtol=1e-12, atol=1e-14)
    other = longhaul.ContextParallel("ring", "zigzag", group=group, scale=2)
    assert not torch.allclose(other.attention(q, k, v, plan, causal=True), out)


@pytest.mark.parametrize("window", [(1.5, 2), (3, 0.0), (True, 0), (torch.tensor(2.0), 0), ("3", 0),
                                    (np.float64(3), 0)], ids=lambda w: repr(w))
def test_window_bounds_must_be_integers(group, window):
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan, q, k, v = shards(cp)
    with pytest.raises(ValueError, match="window must be None or \\(left, right\\) with inclusive integer bounds"):
        cp.attention(q, k, v, plan, causal=True, window=window)


def test_window_takes_integer_scalars(group):
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan, q, k, v = shards(cp)
    want = cp.attention(q, k, v, plan, causal=True, window=(3, 0))
    for window in ((np.int64(3), 0), (torch.tensor(3), torch.tensor(0, dtype=torch.int32))):
        torch.testing.assert_close(cp.attention(q, k, v, plan, causal=True, window=window), want, rtol=0, atol=0)


def test_a_window_past_any_sequence_bounds_nothing(group):
    """sys.maxsize is a natural "no bound": it used to overflow i + window and hide every key."""
    M = longhaul.Mask
    assert torch.equal(M.causal().window(sys.maxsize, 0).dense(5), M.causal().dense(5))
    assert torch.equal(M.sliding_window(10, sys.maxsize).dense(), M.full(10).dense())
    assert torch.equal(M.from_slices(10, [(0, 10, 0, 10, (-2**63, 2**63 - 1))]).dense(), M.full(10).dense())
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan, q, k, v = shards(cp)
    torch.testing.assert_close(cp.attention(q, k, v, plan, causal=True, window=(sys.maxsize, 0)),
                               cp.attention(q, k, v, plan, causal=True), rtol=0, atol=0)


def test_an_area_past_int64_is_refused_and_up_to_it_exact():
    with pytest.raises(ValueError, match="wider than 2\\^31 positions on a side"):
        longhaul.Mask.causal(2**40).area(0, 2**40, 0, 2**40)
    n = 2**31
    assert longhaul.Mask.causal(n).area(0, n, 0, n) == n * (n + 1) // 2


def test_documents_of_documents_keep_pairs_inside_both():
    M = longhaul.Mask
    a, b = [0, 12, 17, 37], [0, 18, 37]
    for base in (M.causal(), M.full(), M.share_question([0, 5, 20, 37])):
        twice = base.documents(a).documents(b).dense(37)
        assert torch.equal(twice, base.documents(a).dense(37) & base.documents(b).dense(37)), base


def test_dense_takes_the_masks_own_length():
    with pytest.raises(ValueError, match=r"T = 20 but the mask is defined on \[0, 10\)"):
        longhaul.Mask.causal(10).dense(20)
    with pytest.raises(ValueError, match="give T for a mask without a length"):
        longhaul.Mask.causal().dense()


def test_a_head_dim_of_zero_is_refused(group):
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan, q, k, v = shards(cp)
    with pytest.raises(ValueError, match="head dim D >= 1"):
        cp.attention(q[..., :0], k[..., :0], v[..., :0], plan)


def test_an_empty_sequence_on_every_strategy(group):
    for strategy in ("rsa", "ring", "allgather", "tokenring", "ulysses"):
        cp = longhaul.ContextParallel(strategy, "zigzag", group=group)
        q = torch.randn(0, 4, 4, dtype=torch.float64, requires_grad=True)
        out = cp.attention(q, q, q, cp.plan(0), causal=True)
        out.sum().backward()
        assert out.shape == (0, 4, 4) and q.grad.shape == (0, 4, 4), strategy


def test_documents_of_the_mask_and_the_plan_must_agree(group):
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan = cp.plan(37, [0, 10, 37])
    x = torch.randn(plan.local_rows, 2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"offset 1 is 20 in the mask, 10 in the plan .*longhaul.Mask on "
                                         r"plan.cu_seqlens"):
        cp.attention(x, x, x, plan, mask=longhaul.Mask.causal_document([0, 20, 37]))
    with pytest.raises(ValueError, match="give the documents once"):
        cp.plan(37, [0, 10, 37], mask=longhaul.Mask.causal_document([0, 20, 37]))


def _write_store(tmp_path):
    if not hasattr(longhaul.data, "TokenStore"):
        pytest.skip("built without HDF5 (no write_store)")
    path = str(tmp_path / "tokens.h5")

    def write(docs, vocab_size, eos_id):
        longhaul.data.write_store(path, docs, vocab_size=vocab_size, eos_id=eos_id)
        return longhaul.data.TokenStore(path)
    return write


@pytest.mark.parametrize("kind", ["memory", "hdf5"])
def test_stores_take_only_token_ids_of_their_vocabulary(kind, tmp_path):
    """MemoryStore and write_store refuse what is not a token id, never cast it: float ids (1.7
    was written as 1), ids past int32 (2**32 + 5 was written as 5), booleans, ids outside the
    vocabulary. A write_store that fails leaves the file it would have replaced as it was."""
    store = longhaul.data.MemoryStore if kind == "memory" else _write_store(tmp_path)
    before = store([[4, 5, 6]], vocab_size=10, eos_id=9)
    for docs, what in (([[1, 2, 300]], "token 300 .*of document 0 .*outside \\[0, vocab_size = 10\\)"),
                       ([[1], [1, -2, 9]], "token -2 .*of document 1"),
                       ([[2**40]], "token 1099511627776 at position 0 of document 0 does not fit a token id"),
                       ([np.array([2**32 + 5, 3])], "token 4294967301 at position 0 of document 0"),
                       ([[1], [1.7, 2.2]], "document 1 holds float64 values; token ids must be integers"),
                       ([np.array([True, False])], "document 0 holds bool values"),
                       ([np.zeros((2, 2), dtype=np.int64)], "document 0 must be a 1-D sequence of token ids")):
        with pytest.raises(ValueError, match=what):
            store(docs, vocab_size=10, eos_id=9)
    with pytest.raises(ValueError, match="vocab_size (must be >= 1, got 0|0 outside \\[1, 2\\^31\\])"):
        store([[0]], vocab_size=0, eos_id=0)
    if kind == "hdf5":  # a failed write leaves the store it would have replaced, and no temporary file
        assert os.listdir(tmp_path) == ["tokens.h5"]
        assert longhaul.data.TokenStore(str(tmp_path / "tokens.h5")).document(0).tolist() == [4, 5, 6]
    assert before.num_tokens == 3
    made = store([[1, 2], [], np.array([3], dtype=np.uint8)], vocab_size=10, eos_id=9)
    assert made.num_tokens == 3 and made.num_documents == 3


@pytest.mark.skipif(not hasattr(longhaul.data, "TokenStore"), reason="built without HDF5 (no TokenStore)")
def test_a_token_store_path_that_is_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory, expected a token store file"):
        longhaul.data.TokenStore(str(tmp_path))


_OUT_OF_MEMORY = """
import resource, torch, longhaul
T = 2 ** 18
cp = longhaul.ContextParallel("ring", "zigzag")
plan = cp.plan(T)
q, k, v = (plan.shard(torch.randn(T, 1, 64)) for _ in range(3))
small = cp.plan(1024)
cp.attention(*(x[:1024].contiguous() for x in (q, k, v)), small, causal=True)  # thread pools before the cap
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (16 << 20), resource.RLIM_INFINITY))
try:
    cp.attention(q, k, v, plan, causal=True)  # its output alone is 64 MiB
except torch.OutOfMemoryError as e:
    print("torch.OutOfMemoryError:", e)
"""


def test_a_failed_allocation_is_torchs_out_of_memory_error():
    """An allocation that fails inside longhaul (here torch's CPU allocator, in an address space
    capped 16 MiB above what the process maps) reaches Python as torch.OutOfMemoryError, the type
    training code catches to free memory and retry, naming the entry point."""
    run = subprocess.run([sys.executable, "-c", _OUT_OF_MEMORY], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("torch.OutOfMemoryError: ContextParallel::forward: "), run.stdout + run.stderr
    assert "can't allocate memory" in run.stdout
