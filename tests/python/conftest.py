"""Fixtures the multi-rank Python tests share: the group they run over and its size."""
import os

import pytest

import longhaul


@pytest.fixture(scope="module")
def group():
    """The CP group: a torch ProcessGroup under torchrun (LONGHAUL_TEST_GROUP=torch), else None
    (the world of longhaul.init(): mpirun or one process)."""
    if os.environ.get("LONGHAUL_TEST_GROUP") == "torch":
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.group.WORLD
    longhaul.init(timeout=30, log_config=False)
    return None


@pytest.fixture(scope="module")
def world_size(group):
    return longhaul.as_group(group).size
