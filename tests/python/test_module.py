"""The module in one process: build information, the one-rank world, attention on one rank
against SDPA, the exception mapping."""
import pytest
import torch

import longhaul
from reference import assert_close, dense_mask, sdpa_with_grads


def test_info_describes_the_build():
    info = longhaul.info()
    assert info["version"] == longhaul.__version__
    assert info["python_built"] is True
    assert "local" in info["backends"]
    assert {"cuda_built", "mpi_built", "nccl_built", "hdf5_built", "c10d_built", "torch_built",
            "torch_runtime"} <= set(info)
    # The extension was built against the torch it runs with (same pybind11 internals, same ABI).
    assert info["torch_built"].split("+")[0] == torch.__version__.split("+")[0]


def test_init_single_process():
    world = longhaul.init(log_config=False)
    assert (world.rank, world.world_size, world.local_rank) == (0, 1, 0)
    assert world.launcher == "single process" and world.backend == "local"
    again = longhaul.init()
    assert again.comm.size == 1 and longhaul.world().rank == 0
    with pytest.raises(ValueError, match="already exists with backend local"):
        longhaul.init(backend="mpi")


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
