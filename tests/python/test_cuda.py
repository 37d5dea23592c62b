"""The module on CUDA tensors: longhaul.ContextParallel.attention on one rank (the world of one
process) and CP over 2 thread-ranks of one process sharing the GPU (longhaul._C.local_world),
against torch SDPA with an explicit boolean mask, forward and the gradients of q, k and v, in
bfloat16 and float32 (TF32 off); the attention under torch.autocast; a torch NCCL process group as
the CP group; and
examples/train_gpt.py --device cuda, whose loss falls. Skipped, with the reason, where torch sees
no CUDA device or longhaul was built without CUDA (scripts/gpu_python.sh runs it on a GPU machine).

Tolerance: max |longhaul - SDPA in float64| <= max(TOL[dtype] * max|ref|, 2 * the error of SDPA
run in the same dtype on the same inputs): bf16 ~2e-2 relative, fp32 1e-4."""
import os
import re
import subprocess
import sys
import threading

import pytest
import torch

import longhaul
from reference import dense_mask, sdpa

# Collected and skipped test by test (pytest exits 0, -rs prints the reason), not a module skip (exit 5).
pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason=f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda or 'not built'}) "
                              "sees none; scripts/gpu_python.sh runs these on a GPU machine"),
    pytest.mark.skipif(not longhaul.info()["cuda_built"], reason="longhaul was built without CUDA (LONGHAUL_WITH_CUDA=OFF)"),
]

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train_gpt.py")
T, H, H_KV, D = 1000, 8, 2, 64        # GQA; T gives shards of unequal length on 2 ranks
DOCS = [0, 317, 640, 1000]
MASKS = {"causal": (True, None), "documents": (False, DOCS), "causal_documents": (True, DOCS)}
TOL = {torch.bfloat16: 2e-2, torch.float32: 1e-4}
DTYPES = [torch.bfloat16, torch.float32]


@pytest.fixture(scope="module", autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def problem(dtype, mask_name, seed=0):
    """Global q, k, v, dout on the GPU in dtype, the mask, SDPA in float64 and in dtype."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v, dout = (torch.randn(T, h, D, generator=g, device="cuda", dtype=torch.float32).to(dtype)
                     for h in (H, H_KV, H_KV, H))
    causal, docs = MASKS[mask_name]
    mask = dense_mask(T, docs, causal).cuda()
    return (q, k, v, dout), mask, grads_of(sdpa, (q, k, v), dout, mask, torch.float64), grads_of(sdpa, (q, k, v),
                                                                                                  dout, mask, dtype)


def grads_of(fn, qkv, dout, mask, dtype):
    leaves = [x.detach().to(dtype).requires_grad_() for x in qkv]
    out = fn(*leaves, mask)
    out.backward(dout.to(dtype))
    return [out.detach()] + [x.grad for x in leaves]


def check(got, ref64, naive, dtype, what):
    for name, a, r, n in zip(["out", "dq", "dk", "dv"], got, ref64, naive):
        assert a.device.type == "cuda" and a.dtype == dtype, f"{what} {name}: {a.device} {a.dtype}"
        a, r, n = a.double(), r.double(), n.double()
        err = (a - r).abs().max().item()
        bound = max(TOL[dtype] * max(1.0, r.abs().max().item()), 2 * (n - r).abs().max().item())
        assert err <= bound, f"{what} {name}: max error {err:.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp32"])
def test_one_rank_attention_on_cuda_matches_sdpa(dtype, mask_name):
    longhaul.init(log_config=False)
    (q, k, v, dout), mask, ref64, naive = problem(dtype, mask_name)
    causal, docs = MASKS[mask_name]
    cp = longhaul.ContextParallel("ring", "zigzag")
    plan = cp.plan(T, torch.tensor(docs, device="cuda") if docs else None)  # offsets on the GPU: copied once
    assert plan.positions.device.type == "cpu"  # the plan's tables stay on the host
    leaves = [plan.shard(x).requires_grad_() for x in (q, k, v)]
    assert all(x.is_cuda for x in leaves)
    out = cp.attention(*leaves, plan, causal=causal)
    out.backward(plan.shard(dout))
    got = [plan.unshard(x.detach()) for x in [out] + [x.grad for x in leaves]]
    check(got, ref64, naive, dtype, f"1 rank {mask_name}")


def test_attention_under_autocast_runs_in_bf16():
    """float32 q, k, v under torch.autocast(cuda, bf16): the attention runs in bf16 (as SDPA does
    there); the gradients come back in float32."""
    longhaul.init(log_config=False)
    (q, k, v, dout), mask, ref64, naive = problem(torch.float32, "causal_documents", seed=1)
    cp = longhaul.ContextParallel("ring", "zigzag")
    plan = cp.plan(T, DOCS)
    leaves = [plan.shard(x).requires_grad_() for x in (q, k, v)]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = cp.attention(*leaves, plan, causal=True)
    assert out.dtype == torch.bfloat16
    out.float().backward(plan.shard(dout))
    assert all(x.grad.dtype == torch.float32 for x in leaves)
    naive16 = grads_of(sdpa, (q, k, v), dout, mask, torch.bfloat16)
    got = [plan.unshard(out.detach())] + [plan.unshard(x.grad.to(torch.bfloat16)) for x in leaves]
    check(got, ref64, naive16, torch.bfloat16, "autocast")


def test_device_mismatch_is_a_clear_error():
    longhaul.init(log_config=False)
    cp = longhaul.ContextParallel("ring", "zigzag")
    plan = cp.plan(64)
    x = torch.randn(64, 2, 16, device="cuda")
    with pytest.raises(ValueError, match="must be on one device"):
        cp.attention(x, x.cpu(), x, plan)


def test_torch_nccl_group_as_the_cp_group(tmp_path):
    """A torch.distributed NCCL group (a world of one on this GPU) as the CP group, device="cuda":
    every collective of the attention, the ranks' call-agreement check included, moves CUDA
    tensors only (NCCL moves no CPU tensor), and the result is SDPA's."""
    import torch.distributed as dist
    if not dist.is_nccl_available() or not hasattr(longhaul._C, "from_process_group"):
        pytest.skip("torch without NCCL, or longhaul built without its torch.distributed bindings")
    longhaul.init(log_config=False)
    (q, k, v, dout), mask, ref64, naive = problem(torch.bfloat16, "causal_documents", seed=3)
    dist.init_process_group("nccl", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1,
                            device_id=torch.device("cuda", torch.cuda.current_device()))
    try:
        cp = longhaul.ContextParallel("ring", "zigzag", group=dist.group.WORLD, device="cuda")
        plan = cp.plan(T, DOCS)
        leaves = [plan.shard(x).requires_grad_() for x in (q, k, v)]
        out = cp.attention(*leaves, plan, causal=True)
        out.backward(plan.shard(dout))
        got = [plan.unshard(x.detach()) for x in [out] + [x.grad for x in leaves]]
    finally:
        dist.destroy_process_group()
    check(got, ref64, naive, torch.bfloat16, "torch NCCL group of one")


def run_ranks(n, fn):
    """fn(rank, comm) on n threads, one thread-rank each of a local world; returns their results."""
    comms = longhaul._C.local_world(n, timeout=60.0)
    results, errors = [None] * n, []

    def body(r):
        try:
            torch.cuda.set_device(0)
            results[r] = fn(r, comms[r])
        except BaseException as e:  # noqa: BLE001 (re-raised below with the rank)
            errors.append((r, e))

    threads = [threading.Thread(target=body, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread-rank did not finish in 120 s"
    if errors:
        r, e = errors[0]
        raise AssertionError(f"rank {r}: {type(e).__name__}: {e}") from e
    return results


@pytest.mark.parametrize("strategy,layout", [("ring", "zigzag"), ("tokenring", "contiguous"), ("ulysses", "zigzag"),
                                             ("allgather", "striped")])
@pytest.mark.parametrize("mask_name", ["causal", "causal_documents"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp32"])
def test_two_thread_ranks_on_one_gpu_match_sdpa(dtype, mask_name, strategy, layout):
    """CP over 2 thread-ranks sharing the GPU: each thread calls the strategy's forward and
    backward itself (autograd's one CUDA worker thread would run the two ranks' backwards one
    after the other, and a collective needs both at once)."""
    (q, k, v, dout), mask, ref64, naive = problem(dtype, mask_name, seed=2)
    causal, docs = MASKS[mask_name]

    def rank(r, comm):
        cp = longhaul.ContextParallel(strategy, layout, group=comm)
        plan = cp.plan(T, docs)
        ql, kl, vl, dl = (plan.shard(x) for x in (q, k, v, dout))
        out, lse = cp._cp.forward(ql, kl, vl, plan, causal, None, None)
        dq, dk, dv = cp._cp.backward(dl, ql, kl, vl, out, lse, plan, causal, None, None)
        return [plan.unshard(x) for x in (out, dq, dk, dv)]  # collectives on CUDA tensors too

    got = run_ranks(2, rank)
    for r in range(2):
        check(got[r], ref64, naive, dtype, f"{strategy}/{layout} P=2 rank {r} {mask_name}")


def test_example_trains_on_cuda():
    """examples/train_gpt.py --device cuda (one process, bf16 autocast): 20 steps, the loss falls,
    and it reports its device and tokens/s."""
    steps = 20
    cmd = [sys.executable, EXAMPLE, "--device", "cuda", "--steps", str(steps), "--tokens-per-step", "4096"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}"
    assert re.search(r"device cuda:\d+, compute bfloat16", run.stdout), run.stdout
    losses = [float(x) for x in re.findall(rf"^step \d+/{steps} loss ([0-9.]+) .* tokens/s\)$", run.stdout, re.M)]
    assert len(losses) == steps, run.stdout
    assert re.search(r"^train_gpt: \d+ tokens/s over the world", run.stdout, re.M), run.stdout
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"loss: first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last < first - 0.5, f"the loss did not fall: {losses}"  # about 4.2 -> 3.1 on the CPU
