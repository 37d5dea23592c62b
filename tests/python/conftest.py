"""Fixtures the multi-rank Python tests share: the group they run over and its size. longhaul is
imported inside the fixtures, so that tests without the built module (test_plot.py) still load."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def world_with_short_deadline():
    """Creates the world first, with a 30 s deadline, so that a hung exchange fails the test
    instead of the job (longhaul.init keeps the first world's options; later calls that leave
    them out get that world)."""
    if os.environ.get("LONGHAUL_TEST_GROUP", "").startswith("torch"):
        return
    try:
        import longhaul
    except ImportError:  # tests that do not need the module (test_plot.py)
        return
    longhaul.init(timeout=30, log_config=False)


@pytest.fixture(scope="module")
def group():
    """The CP group: a torch ProcessGroup under torchrun (LONGHAUL_TEST_GROUP=torch), else None
    (the world of longhaul.init(): mpirun or one process). LONGHAUL_TEST_GROUP=torch_cuda_only makes
    a group with a backend for CUDA tensors alone (Gloo there, so it runs without a GPU): what
    init_process_group("nccl") gives, whose CPU tensors longhaul moves over a Gloo group of its own."""
    import longhaul
    kind = os.environ.get("LONGHAUL_TEST_GROUP", "")
    if kind.startswith("torch"):
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("cuda:gloo" if kind == "torch_cuda_only" else "gloo")
        return dist.group.WORLD
    longhaul.init(log_config=False)
    return None


@pytest.fixture(scope="module")
def world_size(group):
    import longhaul
    return longhaul.as_group(group).size
