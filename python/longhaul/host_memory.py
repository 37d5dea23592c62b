"""Each process's share of its host's memory as a ceiling on the steps of a CPU training loop.

Linux overcommits memory: a step that the RAM, or the job's memory cgroup (Slurm, Docker,
Kubernetes), cannot hold gets no failed allocation; the kernel's OOM killer ends the process
(SIGKILL, exit 137, nothing said). Under a HostCeiling each step may grow the process by its share
of what the host may still give at that step (MemAvailable, or less under a memory cgroup; the
run's processes on the host and in the cgroup share it), so such a step fails as an allocation and
raises torch.OutOfMemoryError naming the step, what the process held and might add, and what bounds
it. `longhaul train` runs its steps the same way (docs/train.md).
"""
import contextlib

import torch

from . import _C
from ._world import as_group

# torch's words for a failed host allocation (its CPU allocator raises a plain RuntimeError).
_ALLOCATION_FAILURES = ("can't allocate memory", "std::bad_alloc", "Cannot allocate memory")


def _is_allocation_failure(error):
    return isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and
                                              any(words in str(error) for words in _ALLOCATION_FAILURES))


class HostCeiling:
    """Made once on every rank of `group` (None: the world), a collective; then, around each step,
    `with ceiling.step(f"step {n}"):`.

    Thread-ranks of one process share one limit, so a world of local thread-ranks has none
    (`limited` is False and `why_not` says why); so has `enabled=False`. Steps on a GPU live in
    device memory: use it for CPU training.
    """

    def __init__(self, group=None, enabled=True):
        comm = as_group(group)
        self._rank = comm.rank
        self._share = _C.host_share(comm) if enabled else None

    @property
    def limited(self):
        return self._share is not None and self._share.limited

    @property
    def why_not(self):
        if self._share is None:
            return "disabled"
        return self._share.why_not

    def __repr__(self):
        return f"HostCeiling({self._share!r})" if self._share is not None else "HostCeiling(disabled)"

    @contextlib.contextmanager
    def step(self, stage="a step"):
        """Runs the block under this process's share of what its host may give now (read again at
        every step). A host allocation that fails in it raises torch.OutOfMemoryError naming
        `stage` ("step 12"), from the allocator's error."""
        if not self.limited:
            yield
            return
        now = _C.host_share_now(self._share)
        held = _C.data_segment_bytes()
        limit = _C.DataLimit(int(now.bytes))
        try:
            yield
        except (MemoryError, RuntimeError) as error:
            if not _is_allocation_failure(error):
                raise
            raise torch.OutOfMemoryError(
                f"longhaul: {stage} ran out of memory on rank {self._rank} ({str(error).splitlines()[0]}); "
                f"{_C.describe_step_share(held, now)}, so that a step the host cannot hold fails here and not under "
                f"the OOM killer. Fewer tokens per rank fit: fewer tokens per step, more micro-batches or a higher "
                f"CP degree; HostCeiling(enabled=False) runs the steps without it") from error
        finally:
            limit.release()
