"""The module in one process: build information, the one-rank world, attention on one rank
against SDPA, the exception mapping."""
import os

import pytest
import torch

import longhaul
from reference import assert_close, dense_mask, sdpa_with_grads


def test_info_describes_the_build():
    info = longhaul.info()
    assert info["version"] == longhaul.__version__
    assert info["python_built"] is True
    assert "local" in info["backends"]
    assert {"cuda_built", "cudnn_band_built", "mpi_built", "nccl_built", "hdf5_built", "c10d_built", "torch_built",
            "torch_runtime"} <= set(info)
    if info["cuda_built"]:  # the window kernel's switch, LONGHAUL_CUDA_BAND (unset here: FlashAttention-2)
        assert info["cuda_band"] == os.environ.get("LONGHAUL_CUDA_BAND", "flash")
        assert info["cuda_varlen"] == os.environ.get("LONGHAUL_CUDA_VARLEN", "auto")  # ragged cuDNN where faster
    # The extension was built against the torch it runs with (same pybind11 internals, same ABI).
    assert info["torch_built"].split("+")[0] == torch.__version__.split("+")[0]


def test_init_single_process():
    world = longhaul.init(log_config=False)
    assert (world.rank, world.world_size, world.local_rank) == (0, 1, 0)
    assert world.launcher == "single process" and world.backend == "local"
    assert world.nccl == "off (one rank: no CUDA tensor travels between ranks)" or not longhaul.info()["nccl_built"]
    again = longhaul.init()
    assert again.comm.size == 1 and longhaul.world().rank == 0
    with pytest.raises(ValueError, match="already exists with backend local"):
        longhaul.init(backend="mpi")
    # A later call may repeat the world's options or leave them out, not change them.
    same = longhaul.init(timeout=world.comm.timeout, threads=0, log_config=False)
    assert same.comm.timeout == world.comm.timeout
    with pytest.raises(ValueError, match=r"already exists with timeout .* cannot change it to 7 s"):
        longhaul.init(timeout=7)
    with pytest.raises(ValueError, match="already exists with threads=0 .* cannot change it to 3"):
        longhaul.init(threads=3)
    with pytest.raises(ValueError, match="timeout"):
        longhaul.init(timeout=float("nan"))


def test_one_rank_attention_matches_sdpa():
    cp = longhaul.ContextParallel("ring", "zigzag")
    g = torch.Generator().manual_seed(0)
    T, docs = 50, [0, 20, 50]
    q, dout = (torch.randn(T, 4, 16, generator=g, dtype=torch.float64) for _ in range(2))
    k, v = (torch.randn(T, 1, 16, generator=g, dtype=torch.float64) for _ in range(2))  # MQA
    plan = cp.plan(T, docs)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = cp.attention(*leaves, plan, causal=True, window=(9, 0))
    out.backward(dout)
    ref = sdpa_with_grads(q, k, v, dout, dense_mask(T, docs, True, (9, 0)))
    for ours, r, name in zip([out.detach()] + [x.grad for x in leaves], ref, ["out", "dq", "dk", "dv"]):
        assert_close(ours, r, None, name)


def test_exception_types():
    assert issubclass(longhaul.CommError, RuntimeError)
    assert issubclass(longhaul.CommTimeout, longhaul.CommError)
    cp = longhaul.ContextParallel("ring", "zigzag")
    x = torch.randn(8, 2, 4)
    with pytest.raises(ValueError, match=r"ShardPlan uses layout striped but this ContextParallel was built for zigzag"):
        cp.attention(x, x, x, longhaul.ContextParallel("ring", "striped").plan(8))
    with pytest.raises(ValueError, match="ShardPlan: T must be >= 0"):
        cp.plan(-1)


def test_memory_store_feeds_the_sampler():
    """Documents in memory (every build, HDF5 or not): the DD sampler reads them like a file store."""
    docs = longhaul.data.synthetic_documents(n_docs=50, vocab=16, seed=3, lengths=(64, 200))
    store = longhaul.data.MemoryStore(docs, vocab_size=17, eos_id=16)
    assert (store.num_documents, store.num_tokens) == (50, sum(map(len, docs)))
    assert store.read(0, len(docs[0])).tolist() == docs[0]
    batch = next(iter(longhaul.data.DDSampler(store, 256, min_log2=6, max_log2=7)))
    assert batch.num_tokens == 256 and int(batch.cu_seqlens[-1]) == 256
    with pytest.raises(ValueError, match="1-D sequence"):
        longhaul.data.MemoryStore([[[1, 2]]], vocab_size=17, eos_id=16)


def test_two_thread_ranks_of_a_local_world():
    """longhaul._C.local_world(2): one group of thread-ranks in this process; each thread runs the
    strategy's forward and backward on its shard and matches SDPA on the whole sequence."""
    import threading
    T, docs = 70, [0, 33, 70]
    g = torch.Generator().manual_seed(5)
    q, dout = (torch.randn(T, 4, 8, generator=g, dtype=torch.float64) for _ in range(2))
    k, v = (torch.randn(T, 2, 8, generator=g, dtype=torch.float64) for _ in range(2))
    comms = longhaul._C.local_world(2, timeout=30.0)
    assert [(c.rank, c.size, c.backend) for c in comms] == [(0, 2, "local"), (1, 2, "local")]
    results, errors = [None, None], []

    def rank(r):
        try:
            cp = longhaul.ContextParallel("ring", "zigzag", group=comms[r])
            plan = cp.plan(T, docs, min_chunk=4)
            ql, kl, vl, dl = (plan.shard(x) for x in (q, k, v, dout))
            out, lse = cp._cp.forward(ql, kl, vl, plan, True, None, None)
            grads = cp._cp.backward(dl, ql, kl, vl, out, lse, plan, True, None, None)
            results[r] = [plan.unshard(x) for x in (out, *grads)]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    ref = sdpa_with_grads(q, k, v, dout, dense_mask(T, docs, True))
    for got in results:
        for ours, r, name in zip(got, ref, ["out", "dq", "dk", "dv"]):
            assert_close(ours, r, None, name)


def test_device_arguments():
    with pytest.raises(ValueError, match="device must be cpu or cuda"):
        longhaul.as_group(None, device="tpu")
    assert longhaul.as_group(None, device=torch.device("cpu")) is not None
    cp = longhaul.ContextParallel("ring", "zigzag")
    plan = cp.plan(16)
    x = torch.randn(16, 2, 4)
    with pytest.raises(ValueError, match="share a dtype"):
        cp.attention(x, x.double(), x, plan)
    # Under CPU autocast the attention runs in the autocast dtype, the gradients in the inputs'.
    leaves = [x.clone().requires_grad_() for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cp.attention(*leaves, plan, causal=True)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(l.grad.dtype == torch.float32 for l in leaves)
    # float64 stays float64 under autocast, as autocast leaves it for every op.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cp.attention(x.double(), x.double(), x.double(), plan, causal=True).dtype == torch.float64


# Run in a child process: the malloc policy is the process's, and the check needs glibc's own first.
_HOST_MEMORY_CHILD = r"""
import ctypes, torch, longhaul

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
block = 64 << 20  # floats: 256 MiB, 8 times glibc's largest mmap threshold
mapped = libc.mallinfo2().hblkhd
t = torch.empty(block)
assert libc.mallinfo2().hblkhd >= mapped + 4 * block, "glibc's policy should mmap the block"
del t
assert longhaul.keep_freed_host_memory() is True
mapped = libc.mallinfo2().hblkhd
t = torch.ones(block)
assert libc.mallinfo2().hblkhd == mapped, "the block was mmap'd after keep_freed_host_memory()"
heap = libc.mallinfo2().arena
assert heap >= 4 * block, heap
del t
assert libc.mallinfo2().arena == heap, "freeing the block gave the heap's top back to the system"
print("kept", heap)
"""


def test_keep_freed_host_memory_serves_large_tensors_from_the_heap():
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("keep_freed_host_memory changes glibc's malloc policy; this C library is "
                    f"{platform.libc_ver()[0] or 'unknown'} (it returns False there)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own policy first
    r = subprocess.run([sys.executable, "-c", _HOST_MEMORY_CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("kept ")


def test_host_ceiling_names_a_step_the_host_cannot_hold():
    import resource

    ceiling = longhaul.HostCeiling()
    assert ceiling.limited, ceiling.why_not  # one process: it has its own limit
    assert "over 1 process on this host" in repr(ceiling)
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with ceiling.step("step 1"):
        assert resource.getrlimit(resource.RLIMIT_DATA)[0] != resource.RLIM_INFINITY
        x = torch.ones(1 << 20)  # 4 MiB fits
    assert resource.getrlimit(resource.RLIMIT_DATA) == before, "the ceiling outlived its step"
    # More than the host may give: a failed allocation, named, instead of the OOM killer.
    too_much = int(longhaul._C.host_share_now(ceiling._share).bytes) + (1 << 30)
    with pytest.raises(torch.OutOfMemoryError) as caught:
        with ceiling.step("step 2"):
            torch.empty(too_much, dtype=torch.uint8)
    message = str(caught.value)
    assert "longhaul: step 2 ran out of memory on rank 0 (" in message, message
    assert "can't allocate memory" in message, message
    assert "each process might add" in message and "over 1 process on this host" in message, message
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    # Other errors pass through as they are.
    with pytest.raises(ValueError, match="not memory"):
        with ceiling.step("step 3"):
            raise ValueError("not memory")
    with pytest.raises(RuntimeError, match="shape"):
        with ceiling.step("step 4"):
            x.view(3, -1, 7)
    off = longhaul.HostCeiling(enabled=False)
    assert not off.limited and off.why_not == "disabled"
    with off.step("step 5"):
        assert resource.getrlimit(resource.RLIMIT_DATA) == before
