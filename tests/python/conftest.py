"""Fixtures the multi-rank Python tests share: the group they run over and its size. longhaul is
imported inside the fixtures, so that tests without the built module (test_plot.py) still load."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def world_with_short_deadline():
    """Creates the world first, with a 30 s deadline, so that a hung exchange fails the test
    instead of the job (longhaul.init keeps the first world's options; later calls that leave
    them out get that world)."""
    if os.environ.get("LONGHAUL_TEST_GROUP") == "torch":
        return
    try:
        import longhaul
    except ImportError:  # tests that do not need the module (test_plot.py)
        return
    longhaul.init(timeout=30, log_config=False)


@pytest.fixture(scope="module")
def group():
    """The CP group: a torch ProcessGroup under torchrun (LONGHAUL_TEST_GROUP=torch), else None
    (the world of longhaul.init(): mpirun or one process)."""
    import longhaul
    if os.environ.get("LONGHAUL_TEST_GROUP") == "torch":
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.group.WORLD
    longhaul.init(log_config=False)
    return None


@pytest.fixture(scope="module")
def world_size(group):
    import longhaul
    return longhaul.as_group(group).size
