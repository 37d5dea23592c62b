"""Gradient sums over a group: each rank of a CP group (or of any grouping of a step) holds only
its shard's part of every parameter's gradient."""
import torch

from ._world import as_group


def all_reduce_gradients(params, group=None):
    """Sums the gradients of `params` over `group` (None: the world) in one flat all-reduce; a
    parameter without a gradient (its rank had nothing to compute) counts as zeros. The sum runs
    on the parameters' device (one device and dtype for all: the flat buffer's); a
    torch.distributed ProcessGroup is wrapped for that device (NCCL for CUDA parameters).
    bfloat16 and float16 gradients are summed in float32 and rounded once, on every backend."""
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    devices, dtypes = {p.device for p in params}, {p.dtype for p in params}
    if len(devices) > 1 or len(dtypes) > 1:
        raise ValueError(f"all_reduce_gradients: parameters on {sorted(map(str, devices))} in "
                         f"{sorted(map(str, dtypes))}: one device and one dtype expected")
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    g = as_group(group, params[0].device.type)
    _check_same_size(g, flat)
    g.all_reduce(flat)
    off = 0
    for p in params:
        p.grad = flat[off:off + p.numel()].view_as(p).clone()
        off += p.numel()


_DTYPE_CODES = {torch.float32: 1, torch.float64: 2, torch.bfloat16: 3, torch.float16: 4}


def _check_same_size(group, flat):
    """Ranks whose models differ would meet in an all-reduce of different sizes: a transport error
    on one rank and a wait until the deadline on the others. One small max-reduce of (n, -n) and
    the dtype's code names it on every rank instead."""
    n, code = flat.numel(), _DTYPE_CODES.get(flat.dtype, 0)
    extremes = torch.tensor([n, -n, code, -code], dtype=torch.int64, device=flat.device)
    group.all_reduce(extremes, "max")
    most, least, high, low = int(extremes[0]), -int(extremes[1]), int(extremes[2]), -int(extremes[3])
    if most != least:
        raise ValueError(f"all_reduce_gradients: the ranks' gradients have between {least} and {most} elements "
                         f"(this rank {n}): every rank must hold the same parameters")
    if high != low:
        raise ValueError(f"all_reduce_gradients: the ranks' gradients differ in dtype (this rank {flat.dtype}): "
                         "every rank must hold the same parameters")
