"""longhaul.CpDegrees and DDSampler(degrees=) on every rank of a group (mpirun: longhaul's world;
torchrun: a torch Gloo group, LONGHAUL_TEST_GROUP=torch): the planner's table is the same on every
rank and each degree's group has that many ranks; a tiny float64 model trained with a degree per
bucket reaches the same losses and parameters as with fixed CP = W and fixed CP = 1 on the same
batches; bad arguments and ranks that disagree raise ValueError on every rank."""
import os
import tempfile

import pytest
import torch
import torch.nn.functional as F

import longhaul

VOCAB = 20
# Fixed rates: the table must not depend on this machine's speed (64:1, 128:2 for W = 2 and 4).
PLAN = dict(min_log2=6, max_log2=7, heads=4, kv_heads=2, head_dim=8, layers=1, dim=32, vocab=VOCAB,
            kernel_gflops=30.0, dense_gflops=60.0)


@pytest.fixture(scope="module")
def W(world_size):
    return world_size


@pytest.fixture(scope="module")
def store():
    """The same documents of 64..256 tokens on every rank, in this rank's own file."""
    g = torch.Generator().manual_seed(5)
    docs = [torch.randint(0, VOCAB - 1, (int(n),), generator=g).tolist() + [VOCAB - 1]
            for n in torch.randint(63, 256, (60,), generator=g)]
    d = tempfile.mkdtemp(prefix="longhaul-degrees-")
    path = os.path.join(d, "tokens.h5")
    longhaul.data.write_store(path, docs, vocab_size=VOCAB, eos_id=VOCAB - 1, tokenizer="test")
    return longhaul.data.TokenStore(path)


def test_auto_table_agrees_and_groups_have_degree_ranks(group, W):
    if W < 2:
        pytest.skip("needs 2 or more ranks (run under mpirun or torchrun)")
    d = longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, **PLAN)
    assert (d.degree(64), d.degree(128)) == (1, 2), d.describe()
    assert d.describe() == "64:1 128:2"
    assert d.degree(32) == 1 and d.degree(4096) == 2  # outside the buckets: the nearest one's
    for L in (64, 128):
        assert d.cp_for(L).group.size == d.degree(L)
        assert d.share_of(L) == (W // d.degree(L), longhaul.as_group(group).rank // d.degree(L))


class Tiny(torch.nn.Module):
    """Embedding, one context-parallel attention layer, output head; float64."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 32, dtype=torch.float64)
        self.qkv = torch.nn.Linear(32, 32 + 2 * 16, bias=False, dtype=torch.float64)
        self.head = torch.nn.Linear(32, VOCAB, bias=False, dtype=torch.float64)

    def forward(self, tokens, cp, plan):
        x = self.embed(tokens)
        q, k, v = self.qkv(x).split([32, 16, 16], dim=-1)
        T = tokens.numel()
        out = cp.attention(q.reshape(T, 4, 8), k.reshape(T, 2, 8).contiguous(), v.reshape(T, 2, 8).contiguous(),
                           plan, causal=True)
        return self.head(x + out.reshape(T, 32))


def train(store, group, W, cp, steps=5):
    """Losses and final parameters of `steps` SGD steps on the DD batches, groups of each step's degree."""
    degrees = longhaul.CpDegrees(cp, tokens_per_step=64 * W, group=group, **PLAN)
    comm = longhaul.as_group(group)
    torch.manual_seed(0)
    model = Tiny()
    params = list(model.parameters())
    sampler = longhaul.data.DDSampler(store, 64 * W, min_log2=6, max_log2=7, seed=1, degrees=degrees)
    losses, used = [], set()
    for _, batch in zip(range(steps), sampler):
        used.add(batch.cp_degree)
        for p in params:
            p.grad = None
        loss_sum = torch.zeros((), dtype=torch.float64)
        n = torch.zeros(1, dtype=torch.float64)
        if batch.num_tokens:
            cpx = degrees.cp_for(batch.seq_len)
            plan = cpx.plan(batch.num_tokens, batch.cu_seqlens)
            targets = plan.shard(batch.targets)
            n += float((targets != longhaul.data.IGNORE_TARGET).sum())
        n = comm.all_reduce(n)
        if batch.num_tokens:
            logits = model(plan.shard(batch.tokens), cpx, plan)
            loss_sum = F.cross_entropy(logits, targets, ignore_index=longhaul.data.IGNORE_TARGET, reduction="sum")
            (loss_sum / n).backward()
        flat = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), dtype=torch.float64)
                          for p in params])
        comm.all_reduce(flat)
        with torch.no_grad():
            off = 0
            for p in params:
                p -= 0.5 * flat[off:off + p.numel()].view_as(p)
                off += p.numel()
        losses.append(comm.all_reduce(loss_sum.detach().reshape(1)).item() / n.item())
    return losses, [p.detach().clone() for p in params], used


def test_auto_equals_fixed_cp_w_and_cp_1(store, group, W):
    if W < 2:
        pytest.skip("needs 2 or more ranks (run under mpirun or torchrun)")
    auto_losses, auto_params, used = train(store, group, W, "auto")
    assert used == {1, 2}, f"the steps should run on 1 and 2 ranks, ran on {used}"
    for fixed in (W, 1):
        losses, params, used = train(store, group, W, fixed)
        assert used == {fixed}
        # float64: only the order of the sums differs (CP ranks, groups).
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(auto_losses), rtol=1e-12, atol=0)
        for a, b in zip(params, auto_params):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_compute_dtype_sizes_the_plan(group, W):
    """bf16 attention holds and moves half the bytes of float32: the planner's memory of every
    option says so (a bf16 GPU run planned as float32 was refused buckets that fit)."""
    f32 = longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, **PLAN)
    bf16 = longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, dtype=torch.bfloat16, **PLAN)
    for a, b in zip(f32.table, bf16.table):
        for oa, ob in zip(a["options"], b["options"]):
            assert oa["degree"] == ob["degree"]
            assert 0 < ob["memory_bytes"] < oa["memory_bytes"], (a["length"], oa, ob)
    with pytest.raises(ValueError, match=r"dtype must be a floating torch.dtype .* got torch.int64"):
        longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, dtype=torch.int64, **PLAN)


def test_bad_arguments_are_named_on_every_rank(group, W):
    bad = next(c for c in (3, 5, 7) if W % c)
    with pytest.raises(ValueError, match=f"cp {bad} does not divide the world of {W} ranks"):
        longhaul.CpDegrees(bad, tokens_per_step=64 * W, group=group, **PLAN)
    with pytest.raises(ValueError, match=r"bucket 2\^6 \(64 tokens\): no CP degree .* fits the memory limit"):
        longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, memory_gib=1e-9, **PLAN)
    # A GPU run is not planned with rates measured on the CPU (raised before any collective).
    on_cpu_rates = dict(PLAN, kernel_gflops=0.0)
    with pytest.raises(ValueError, match=r"auto on device 'cuda': give kernel_gflops and dense_gflops"):
        longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, device="cuda", **on_cpu_rates)
    if W < 2:
        return
    rank = longhaul.as_group(group).rank
    plan = dict(PLAN)
    if rank == 1:  # compute is free on rank 1: it plans no CP at all
        plan.update(kernel_gflops=1e9, dense_gflops=1e9)
    with pytest.raises(ValueError, match=r"ranks disagree on the CP degree of bucket 2\^7"):
        longhaul.CpDegrees("auto", tokens_per_step=64 * W, group=group, **plan)
