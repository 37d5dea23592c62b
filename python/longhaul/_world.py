"""The job's processes: longhaul.init() and the group a ContextParallel runs over."""
import atexit

from . import _C

_atexit_registered = False


def init(backend="auto", timeout=None, threads=None, log_config=True):
    """Detects the launcher (mpirun, torchrun, Slurm, or one process), builds the world
    communicator and sets the thread counts. Returns a World (rank, world_size, local_rank,
    local_size, launcher, backend, threads, device, nccl, comm). Later calls return the same world.

    backend: auto (mpi under mpirun, c10d/Gloo under torchrun or Slurm, local for one process),
    mpi, c10d, local or nccl. With auto, CUDA tensors go over NCCL when every rank has a GPU of its
    own (the ranks' GPU UUIDs are compared); World.nccl says whether and why. timeout: the deadline
    in seconds of every communication wait (None: 300). threads: intra-op threads per rank (None or
    0: the cores of this rank's share of the node). A later call returns the same world; it may
    leave the options out or repeat them, and a different backend, timeout or threads is an error.
    """
    global _atexit_registered
    w = _C.init(backend, None if timeout is None else float(timeout), None if threads is None else int(threads),
                bool(log_config))
    if not _atexit_registered:
        # Finalise MPI while the interpreter is whole, not during its teardown.
        atexit.register(_C.shutdown)
        _atexit_registered = True
    return w


def world():
    """The world of longhaul.init() (initialising it with the defaults if needed)."""
    return init(log_config=False)  # the existing world, if there is one


def _device_type(device):
    if isinstance(device, str) and device in ("cpu", "cuda"):
        return device
    try:
        import torch
        kind = torch.device(device).type
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"device must be cpu or cuda (or a torch.device of those), got {device!r}") from e
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    return kind


def is_cuda_process_group(group, device):
    """Whether `group` is a torch.distributed ProcessGroup whose CUDA backend (NCCL) the tensors of
    `device` must go over: a longhaul Communicator (the world included) moves them itself."""
    return group is not None and not isinstance(group, _C.Communicator) and _device_type(device) == "cuda"


def as_group(group=None, device="cpu", timeout=None):
    """A longhaul Communicator from None (the world), a Communicator, or a
    torch.distributed.ProcessGroup (its backend for `device`, wrapped: "cpu" or "cuda", or a
    torch.device / "cuda:N", of which only the type counts). CPU tensors take the group's CPU
    backend; a group that has none (init_process_group("nccl")) gets a Gloo group of the same
    ranks, made at its first wrap on every rank and kept while it lives. Wrapped for "cuda", the
    communicator moves CUDA tensors over the group's CUDA backend and CPU tensors over that CPU
    side."""
    device = _device_type(device)
    if group is None:
        return world().comm
    if isinstance(group, _C.Communicator):
        return group
    if not hasattr(_C, "from_process_group"):
        raise ValueError("longhaul was built without the c10d backend (LONGHAUL_WITH_C10D): "
                         "it cannot run over a torch.distributed ProcessGroup")
    try:
        return _C.from_process_group(group, device, timeout)
    except TypeError as e:
        raise TypeError(f"group must be None, a longhaul.Communicator or a torch.distributed.ProcessGroup, "
                        f"got {type(group).__name__}") from e
