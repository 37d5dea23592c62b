"""longhaul: context-parallel attention for long sequences, from PyTorch.

    import longhaul
    world = longhaul.init()                                  # mpirun, torchrun, Slurm or one process
    cp = longhaul.ContextParallel(strategy="ring", layout="zigzag")
    plan = cp.plan(T, cu_seqlens)                            # cu_seqlens: global document offsets
    out = cp.attention(plan.shard(q), plan.shard(k), plan.shard(v), plan, causal=True)
    out.sum().backward()                                     # a collective, like the forward

Errors from the C++ library keep its message: ValueError for invalid arguments,
longhaul.CommError (longhaul.CommTimeout for a passed deadline) when communication fails.
"""
import atexit

import torch  # noqa: F401  (loads libtorch and libtorch_python, which the extension links)

from . import _C
from ._C import CommError, CommTimeout, Communicator, Mask, ShardPlan, World
from . import data
from .context_parallel import ContextParallel
from .degrees import CpDegrees
from .gradients import all_reduce_gradients
from .host_memory import HostCeiling
from .losses import linear_cross_entropy
from ._world import as_group, init, world

__version__ = _C.info()["version"]

# At exit, before the interpreter tears itself down, let go of the torch.distributed groups that
# live ContextParallel objects wrap: a group torch has destroyed is then torn down while the
# interpreter is whole (later, Gloo's destruction aborted the process).
if hasattr(_C, "release_process_groups"):
    atexit.register(_C.release_process_groups)


def keep_freed_host_memory():
    """Keep freed host memory in this process for the next training step (call it once, early).

    glibc hands a block above its mmap threshold (at most 32 MiB) back to the system at free, so a
    CPU step whose activations are larger faults in and zeroes all their pages again at every step.
    After this call malloc serves every block from its heap and keeps what is freed there: the
    resident set stays at the largest step's. Measured on 2 cores of an AMD EPYC, train_gpt.py at
    65536 tokens per step: 1.05-1.2x the tokens/s, a fifth of the page faults, 0.9 GB more resident
    memory at the peak. Returns False, changing
    nothing, where the C library is not glibc. The same as MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=-1 in the environment; `longhaul train` does it unless
    --release-host-memory.
    """
    return _C.keep_freed_host_memory()


def info():
    """The build configuration of longhaul (a dict), plus the torch this process runs."""
    d = _C.info()
    d["torch_runtime"] = torch.__version__
    return d


__all__ = ["init", "world", "as_group", "ContextParallel", "CpDegrees", "all_reduce_gradients", "Mask", "ShardPlan", "Communicator", "World", "CommError",
           "CommTimeout", "data", "info", "keep_freed_host_memory", "HostCeiling", "linear_cross_entropy"]
