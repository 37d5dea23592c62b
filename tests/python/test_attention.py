"""longhaul.ContextParallel.attention against torch SDPA on the gathered tensors, on every rank of
a group: under mpirun (the world of longhaul.init()) or under torchrun with a torch.distributed
Gloo group passed as `group=` (LONGHAUL_TEST_GROUP=torch). Forward output and the gradients of
q, k and v, for every strategy x layout x mask, float64 and float32, with and without GQA. Every
rank builds the same global tensors from a fixed seed; tolerances: reference.assert_close."""
import os
import socket

import pytest
import torch

import longhaul
from reference import assert_close, dense_mask, family_mask, sdpa_with_grads

T, H, D = 67, 4, 8                    # odd T: shards of unequal length
DOCS = [0, 29, 40, 67]                # three packed documents
MIN_CHUNK = 4                         # small, so that zigzag cuts documents at this T
MASKS = {                             # name: (causal, documents, window)
    "full": (False, None, None),
    "causal": (True, None, None),
    "documents": (False, DOCS, None),
    "causal_documents": (True, DOCS, None),
    "window": (False, None, (5, 3)),
    "causal_documents_window": (True, DOCS, (7, 2)),  # right > 0: causality still matters
}
LAYOUTS = ["zigzag", "striped", "contiguous"]
# The long-context families: name -> (param, param2) at this T.
FAMILIES = {"full_document": (0, 0), "causal_document": (0, 0), "share_question": (0, 0),
            "causal_blockwise": (0, 0), "prefix_lm_causal": (20, 0), "prefix_lm_document": (5, 0),
            "sliding_window": (6, 0), "sliding_window_causal": (6, 0), "global_sliding_window": (6, 4),
            "block_causal_document": (7, 0)}
# (dtype, H_kv): MHA and GQA in float64, GQA in float32.
PRECISIONS = [(torch.float64, 4), (torch.float64, 2), (torch.float32, 2)]


@pytest.fixture(scope="module")
def P(world_size):
    return world_size


def test_world_matches_the_launcher(group):
    if group is not None:  # torchrun: the torch group wrapped
        import torch.distributed as dist
        g = longhaul.as_group(group)
        assert (g.rank, g.size, g.backend) == (dist.get_rank(), dist.get_world_size(), "c10d-gloo")
        return
    world = longhaul.init()
    assert world.launcher == "mpirun" and world.backend == "mpi"
    assert world.rank == int(os.environ["OMPI_COMM_WORLD_RANK"])
    assert world.world_size == int(os.environ["OMPI_COMM_WORLD_SIZE"]) == world.comm.size
    assert world.local_rank == int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"])
    if longhaul.info()["nccl_built"] and not torch.cuda.is_available():  # every rank's GPU was gathered
        assert world.nccl == "off (rank 0 on host %s sees no CUDA device)" % socket.gethostname(), world.nccl


def test_splits_of_two_wrappers_of_one_group_meet_apart(group, world_size):
    """Every as_group(torch group) is a wrapper of its own; their splits must not meet on each
    other's keys in the group's store (nor, for a group without a CPU backend, make a second Gloo
    group beside it)."""
    for _ in range(3):
        comm = longhaul.as_group(group)
        color = comm.rank % 2
        sub = comm.split(color, comm.rank)
        t = torch.ones(1, dtype=torch.float64)
        sub.all_reduce(t)
        assert t.item() == sub.size == len(range(color, world_size, 2))


_problems = {}


def problem(mask_name, dtype, h_kv):
    """Global q, k, v, dout and SDPA's results (float64 reference, and naive in `dtype`)."""
    key = (mask_name, dtype, h_kv)
    if key not in _problems:
        g = torch.Generator().manual_seed(1234)
        q, k, v, dout = (torch.randn(T, h, D, generator=g, dtype=torch.float64).to(dtype) for h in (H, h_kv, h_kv, H))
        causal, docs, window = MASKS[mask_name]
        mask = dense_mask(T, docs, causal, window)
        ref = sdpa_with_grads(q.double(), k.double(), v.double(), dout.double(), mask)
        naive = None if dtype == torch.float64 else sdpa_with_grads(q, k, v, dout, mask)
        _problems[key] = (q, k, v, dout, ref, naive)
    return _problems[key]


def run_case(group, strategy, layout, mask_name, dtype, h_kv, ulysses_degree=1):
    q, k, v, dout, ref, naive = problem(mask_name, dtype, h_kv)
    causal, docs, window = MASKS[mask_name]
    cp = longhaul.ContextParallel(strategy, layout, ulysses_degree=ulysses_degree, group=group)
    plan = cp.plan(T, docs, min_chunk=MIN_CHUNK)
    ql, kl, vl = (plan.shard(x).requires_grad_() for x in (q, k, v))
    out = cp.attention(ql, kl, vl, plan, causal=causal, window=window)
    assert out.dtype == dtype and out.shape == (plan.local_rows, H, D)
    (out * plan.shard(dout)).sum().backward()
    got = [plan.unshard(x.detach()) for x in (out, ql.grad, kl.grad, vl.grad)]
    what = f"{strategy}/{layout}/{mask_name}/{dtype}/H_kv={h_kv} P={plan.P} rank {plan.rank}"
    for name, ours, r, n in zip(("out", "dq", "dk", "dv"), got, ref, naive or (None,) * 4):
        assert_close(ours, r, n, f"{what} {name}")


@pytest.mark.parametrize("dtype,h_kv", PRECISIONS, ids=lambda p: str(p).replace("torch.", ""))
@pytest.mark.parametrize("mask_name", [m for m in MASKS if m != "full"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("strategy", ["ring", "tokenring", "allgather", "ulysses"])
def test_matches_sdpa(group, strategy, layout, mask_name, dtype, h_kv):
    run_case(group, strategy, layout, mask_name, dtype, h_kv)


@pytest.mark.parametrize("dtype,h_kv", PRECISIONS, ids=lambda p: str(p).replace("torch.", ""))
@pytest.mark.parametrize("mask_name", ["full", "causal"])  # the 2021 baseline has no other masks
@pytest.mark.parametrize("layout", LAYOUTS)
def test_rsa_matches_sdpa(group, layout, mask_name, dtype, h_kv):
    run_case(group, "rsa", layout, mask_name, dtype, h_kv)


@pytest.mark.parametrize("dtype,h_kv", PRECISIONS, ids=lambda p: str(p).replace("torch.", ""))
@pytest.mark.parametrize("mask_name", ["causal", "causal_documents", "causal_documents_window"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_hybrid_matches_sdpa(group, P, layout, mask_name, dtype, h_kv):
    if P < 4:
        pytest.skip(f"hybrid needs 2 Ulysses groups of 2 ranks: 4 ranks, this run has {P} "
                    f"(python_mpi_np4 runs it; C++ hybrid on CPU: tests/unit/cp_test.cpp)")
    run_case(group, "hybrid", layout, mask_name, dtype, h_kv, ulysses_degree=2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("strategy", ["ring", "ulysses"])
def test_low_precision_matches_sdpa(group, strategy, dtype):
    run_case(group, strategy, "zigzag", "causal_documents", dtype, 2)


def family(name):
    param, param2 = FAMILIES[name]
    return longhaul.Mask.family(name, T, DOCS, param, param2), family_mask(name, T, DOCS, param, param2)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_masks_match_their_definition(name):
    mask, dense = family(name)
    assert torch.equal(mask.dense(), dense), name
    assert mask.area(0, T, 0, T) == int(dense.sum()) and mask.length == T


_family_problems = {}


@pytest.mark.parametrize("layout", LAYOUTS + ["balanced"])
@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("strategy", ["ring", "tokenring", "allgather", "ulysses"])
def test_family_matches_sdpa(group, strategy, name, layout):
    """Every family and layout (balanced: cut by the mask's area) against SDPA with the dense mask."""
    mask, dense = family(name)
    if name not in _family_problems:
        g = torch.Generator().manual_seed(99)
        q, k, v, dout = (torch.randn(T, h, D, generator=g, dtype=torch.float64) for h in (H, 2, 2, H))
        _family_problems[name] = (q, k, v, dout, sdpa_with_grads(q, k, v, dout, dense))
    check_mask_against_sdpa(group, strategy, layout, mask, _family_problems[name], f"{strategy}/{layout}/{name}")


def check_mask_against_sdpa(group, strategy, layout, mask, problem, label, cu_seqlens=None):
    """CP attention with `mask` on problem = (q, k, v, dout, SDPA's (out, dq, dk, dv)): forward and
    gradients, unsharded, against SDPA's."""
    q, k, v, dout, ref = problem
    cp = longhaul.ContextParallel(strategy, layout, group=group)
    plan = cp.plan(T, cu_seqlens, min_chunk=MIN_CHUNK, mask=mask)
    ql, kl, vl = (plan.shard(x).requires_grad_() for x in (q, k, v))
    out = cp.attention(ql, kl, vl, plan, mask=mask)
    (out * plan.shard(dout)).sum().backward()
    got = [plan.unshard(x.detach()) for x in (out, ql.grad, kl.grad, vl.grad)]
    for what, ours, r in zip(("out", "dq", "dk", "dv"), got, ref):
        assert_close(ours, r, None, f"{label} P={plan.P} rank {plan.rank} {what}")


# Two sequences packed back to back, as a training step packs them: [0, 40) holds documents
# [0, 29) and [29, 40), [40, 67) one document.
SEQUENCES = [0, 40, 67]


def packed_family_mask(name, param, param2):
    """The packed family's definition: nothing across SEQUENCES; the families without documents on
    each document (the prefix and the global tokens cut to it), share_question and
    causal_blockwise on each sequence's documents, the document families on DOCS."""
    dense = torch.zeros(T, T, dtype=torch.bool)
    if name in ("share_question", "causal_blockwise"):
        units = [(b, e, [c - b for c in DOCS if b <= c <= e]) for b, e in zip(SEQUENCES, SEQUENCES[1:])]
    elif name.endswith("_document"):
        return family_mask(name, T, DOCS, param, param2)
    else:
        units = [(b, e, None) for b, e in zip(DOCS, DOCS[1:])]
    for b, e, cu in units:
        n = e - b
        p = min(param, n) if name == "prefix_lm_causal" else param
        dense[b:e, b:e] = family_mask(name, n, cu, p, min(param2, n))
    return dense


@pytest.mark.parametrize("name", list(FAMILIES) + ["full", "causal"])
def test_packed_family_keeps_sequences_apart(name):
    param, param2 = FAMILIES.get(name, (0, 0))
    mask = longhaul.Mask.packed_family(name, SEQUENCES, DOCS, param, param2)
    assert torch.equal(mask.dense(), packed_family_mask(name, param, param2)), mask.describe()
    assert not mask.dense()[40:, :40].any() and not mask.dense()[:40, 40:].any()


def test_packed_family_matches_sdpa(group):
    """A packed general family (share_question on each sequence) through CP, against SDPA."""
    mask = longhaul.Mask.packed_family("share_question", SEQUENCES, DOCS)
    g = torch.Generator().manual_seed(5)
    q, k, v, dout = (torch.randn(T, h, D, generator=g, dtype=torch.float64) for h in (H, 2, 2, H))
    ref = sdpa_with_grads(q, k, v, dout, packed_family_mask("share_question", 0, 0))
    check_mask_against_sdpa(group, "ring", "zigzag", mask, (q, k, v, dout, ref), "packed share_question", DOCS)


def test_mask_errors_raise_value_error(group):
    with pytest.raises(ValueError, match="share visible pairs|both hold query"):
        longhaul.Mask.from_slices(10, [(0, 5, 0, 5, "full"), (3, 8, 0, 8, "causal")])
    with pytest.raises(ValueError, match="window w must be > 0"):
        longhaul.Mask.sliding_window(10, 0)
    cp = longhaul.ContextParallel("ring", "balanced", group=group)
    with pytest.raises(ValueError, match="needs the mask|for_mask"):
        cp.plan(T)
    plan = cp.plan(T, mask=longhaul.Mask.causal(T))
    q = torch.randn(plan.local_rows, H, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="either mask= or causal="):
        cp.attention(q, q, q, plan, causal=True, mask=longhaul.Mask.causal(T))
    with pytest.raises(ValueError, match="defined on"):
        cp.attention(q, q, q, plan, mask=longhaul.Mask.causal(T + 1))


def test_plan_covers_the_sequence(group, P):
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan = cp.plan(T, torch.tensor(DOCS), min_chunk=MIN_CHUNK)
    assert plan.P == P and plan.T == T and plan.cu_seqlens.tolist() == DOCS
    everyone = plan.unshard(plan.positions)  # each rank's rows, back in global order
    assert everyone.tolist() == list(range(T))
    doc_start = torch.tensor(DOCS)[torch.bucketize(plan.positions, torch.tensor(DOCS)[1:], right=True)]
    assert torch.equal(plan.doc_positions, plan.positions - doc_start)
    lc = plan.local_cu_seqlens
    assert lc[0] == 0 and lc[-1] == plan.local_rows and bool((lc[1:] >= lc[:-1]).all())
    x = torch.randn(T, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(plan.unshard(plan.shard(x)), x)


def test_wrong_shape_raises_value_error(group):
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan = cp.plan(T)
    q = torch.randn(plan.local_rows, H, D, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"q must be \[.*, H, D\]"):
        cp.attention(q[:, 0], q, q, plan)
    with pytest.raises(ValueError, match="k and v must both be"):
        cp.attention(q, q[:-1], q[:-1], plan)
    with pytest.raises(ValueError, match="window"):
        cp.attention(q, q, q, plan, window=(1, 2, 3))


def test_ulysses_heads_not_divisible_raises_value_error(group, P):
    cp = longhaul.ContextParallel("ulysses", "zigzag", group=group)
    plan = cp.plan(T)
    h = P + 1  # H % P != 0
    q = torch.randn(plan.local_rows, h, D, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"needs H % U == 0.*Degrees that work"):
        cp.attention(q, q, q, plan)


def test_bad_options_raise_value_error(group):
    with pytest.raises(ValueError, match="unknown strategy 'spiral'"):
        longhaul.ContextParallel("spiral", group=group)
    with pytest.raises(ValueError, match="unknown layout 'diagonal'"):
        longhaul.ContextParallel("ring", "diagonal", group=group)
    with pytest.raises(ValueError, match="cu_seqlens ends at"):
        longhaul.ContextParallel("ring", group=group).plan(T, [0, 10, T + 1])
    with pytest.raises(TypeError, match="group must be"):
        longhaul.ContextParallel("ring", group="world")
    # Offsets and counts that are not integers are refused, not truncated (10.5 was taken as 10).
    cp = longhaul.ContextParallel("ring", group=group)
    with pytest.raises(ValueError, match="plan: cu_seqlens must hold integers, got dtype torch.float32"):
        cp.plan(T, [0.0, 10.5, float(T)])
    with pytest.raises(ValueError, match="plan: T must be an integer, got 37.9"):
        cp.plan(37.9)
    with pytest.raises(ValueError, match="plan: min_chunk must be an integer, got True"):
        cp.plan(T, min_chunk=True)
    assert cp.plan(torch.tensor(T), torch.tensor([0, 10, T], dtype=torch.int32)).T == T


def test_ranks_that_disagree_on_the_scale_all_raise(group):
    """Scales that differ by rank used to give a mixed answer with no error."""
    plan = longhaul.ContextParallel("ring", "zigzag", group=group).plan(T)
    cp = longhaul.ContextParallel("ring", "zigzag", group=group, scale=0.1 if plan.rank == 0 else 0.2)
    q = torch.randn(plan.local_rows, H, D, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"disagrees with rank 0 on scale \(0\.2 vs 0\.1\)"):
        cp.attention(q, q, q, plan, causal=True)


def test_unshard_of_shards_that_differ_raises_on_every_rank(group):
    """The gather matches bytes only: a dtype or width that differs by rank used to give a
    truncated message on one rank and garbage on the other."""
    plan = longhaul.ContextParallel("ring", "zigzag", group=group).plan(T)
    other = plan.rank == 1
    x = torch.zeros(plan.local_rows, 3, dtype=torch.float64 if other else torch.float32)
    with pytest.raises(ValueError, match=r"disagrees with rank 0 on dtype \(this rank, \d+, has (Float|Double)\)"):
        plan.unshard(x)
    with pytest.raises(ValueError, match=r"disagrees with rank 0 on size of dimension 1 \(4 vs 3\)"):
        plan.unshard(torch.zeros(plan.local_rows, 4 if other else 3))
    with pytest.raises(ValueError, match="disagrees with rank 0 on dimensions"):
        plan.unshard(torch.zeros(plan.local_rows, 2, 3) if other else torch.zeros(plan.local_rows, 6))
    x = torch.arange(T * 2, dtype=torch.float64).reshape(T, 2)
    assert torch.equal(plan.unshard(plan.shard(x)), x)


def test_gradients_of_models_that_differ_raise_on_every_rank(group):
    lin = torch.nn.Linear(3, 3 + longhaul.as_group(group).rank % 2, dtype=torch.float64)
    lin(torch.randn(2, 3, dtype=torch.float64)).sum().backward()
    with pytest.raises(ValueError, match="all_reduce_gradients: the ranks' gradients have between 12 and 16 elements"):
        longhaul.all_reduce_gradients(lin.parameters(), group)


def test_low_precision_gradients_are_summed_in_float32(group, world_size):
    """bfloat16 gradients: the sum is rounded once, not after every addition. Element e is 256 on
    rank e % P and 1 elsewhere; 256 + 1 rounds back to 256 in bfloat16, so a running sum in
    bfloat16 loses ones from 3 ranks on (MPI's and Gloo's native sums did)."""
    rank = longhaul.as_group(group).rank
    p = torch.nn.Parameter(torch.zeros(world_size, 2, dtype=torch.bfloat16))
    grad = torch.ones(world_size, 2, dtype=torch.float64)
    grad[rank] = 256
    p.grad = grad.to(torch.bfloat16)
    longhaul.all_reduce_gradients([p], group)
    want = torch.full((world_size, 2), 256.0 + world_size - 1, dtype=torch.float64).to(torch.bfloat16)
    assert torch.equal(p.grad, want), (p.grad[:, 0].tolist(), want[0, 0].item())


def test_ranks_that_disagree_on_the_strategy_name_it(group):
    plan = longhaul.ContextParallel("ring", "zigzag", group=group).plan(T)
    strategy = "ring" if plan.rank == 0 else "tokenring"
    cp = longhaul.ContextParallel(strategy, "zigzag", group=group)
    q = torch.randn(plan.local_rows, H, D, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"disagrees with rank 0 on strategy \(this rank, {plan.rank}, has {strategy}\)"):
        cp.attention(q, q, q, plan, causal=True)


def test_ranks_that_disagree_all_raise(group):
    """A rank with other head counts: every rank gets the error (none waits for the others)."""
    cp = longhaul.ContextParallel("ring", "zigzag", group=group)
    plan = cp.plan(T)
    h = 4 if plan.rank == 0 else 2
    q = torch.randn(plan.local_rows, h, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="disagrees with rank 0"):
        cp.attention(q, q, q, plan)
