"""Context-parallel attention as a torch.autograd.Function over the C++ forward and backward."""
import math
import operator

import torch

from . import _C
from ._world import as_group


class _Attention(torch.autograd.Function):
    """out = attention(q, k, v) over the group; backward runs the strategy's backward (a collective)."""

    @staticmethod
    def forward(ctx, q, k, v, cp, plan, causal, window, mask):
        out, lse = cp.forward(q, k, v, plan, causal, window, mask)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.cp, ctx.plan, ctx.causal, ctx.window, ctx.mask = cp, plan, causal, window, mask
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable  # the C++ backward is not differentiable: say so, not a zero
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        # The group agreed on this call in forward: its backward skips the agreement collective.
        dq, dk, dv = ctx.cp.backward_of_agreed_forward(dout, q, k, v, out, lse, ctx.plan, ctx.causal, ctx.window,
                                                       ctx.mask)
        return dq, dk, dv, None, None, None, None, None


def _check_window(window):
    if window is None:
        return None
    try:
        left, right = window
        if any(isinstance(b, bool) or getattr(b, "dtype", None) == torch.bool for b in (left, right)):
            raise TypeError
        return operator.index(left), operator.index(right)  # integers only: 1.5 is not truncated
    except (TypeError, ValueError):
        raise ValueError(f"window must be None or (left, right) with inclusive integer bounds, "
                         f"got {window!r}") from None


def _integers(who, name, x):
    """x as a tensor of integers (any integer dtype): float, complex or boolean values (token ids,
    offsets) are refused, not truncated."""
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{who}: {name} must hold integers, got dtype {t.dtype}")
    return t


def _count(who, name, x):
    """A count (T, min_chunk) as an int: 37.9 or True is refused, not truncated."""
    if isinstance(x, bool) or getattr(x, "dtype", None) == torch.bool:
        raise ValueError(f"{who}: {name} must be an integer, got {x!r}")
    try:
        return operator.index(x)
    except TypeError:
        raise ValueError(f"{who}: {name} must be an integer, got {x!r}") from None


def _check_scale(scale):
    """The softmax scale as a float, or None (the default 1/sqrt(D))."""
    if scale is None:
        return None
    try:
        value = math.nan if isinstance(scale, (bool, str, bytes)) else float(scale)
    except (TypeError, ValueError, RuntimeError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"scale must be a positive finite number or None, got {scale!r}")
    return value


def _same_device_and_dtype(q, k, v):
    """q, k, v on one device, in the autocast dtype of that device when autocast is on there."""
    if not (q.device == k.device == v.device):
        raise ValueError(f"attention: q, k and v must be on one device, got {q.device}, {k.device} and {v.device}")
    kind = q.device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind) and torch.float64 not in (q.dtype, k.dtype, v.dtype):
        dtype = torch.get_autocast_dtype(kind)  # as autocast casts an op's inputs: float64 left alone
        return q.to(dtype), k.to(dtype), v.to(dtype)
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention: q, k and v must share a dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    return q, k, v


class ContextParallel:
    """Attention over a sequence sharded across a context-parallel group.

    strategy: ring, tokenring, ulysses, hybrid, allgather or rsa. layout: zigzag, striped,
    contiguous or balanced (equal chunks placed so every rank has about the same masked area; its
    plan needs the mask: cp.plan(T, mask=...)). ulysses_degree: heads are split over groups of this many ranks (hybrid). group:
    None (the world of longhaul.init()), a longhaul.Communicator or a torch.distributed
    ProcessGroup. inner: the strategy across Ulysses groups (hybrid: ring or tokenring).
    scale: the softmax scale, default 1/sqrt(D). device: "cpu" or "cuda", the tensors' device when
    group is a torch.distributed ProcessGroup (its backend for that device is wrapped: NCCL for
    "cuda"); a longhaul Communicator (the world included) is used as it is: the world of one
    process moves CUDA tensors, and so does a GPU rank's world (one GPU per rank, NCCL built).
    """

    def __init__(self, strategy="ring", layout="zigzag", ulysses_degree=1, group=None, *, inner="ring",
                 overlap=True, scale=None, device="cpu"):
        scale = _check_scale(scale)
        self.group = as_group(group, device)
        self._cp = _C.ContextParallel(self.group, strategy, layout, int(ulysses_degree), inner, bool(overlap),
                                      0.0 if scale is None else scale)  # 0: the C++ default

    @property
    def strategy(self):
        return self._cp.strategy

    @property
    def layout(self):
        return self._cp.layout

    def plan(self, T, cu_seqlens=None, min_chunk=64, mask=None):
        """The ShardPlan of a packed sequence of T tokens (cu_seqlens: global document offsets
        [0, ..., T], or None for one document) for this rank of the group. mask: a longhaul.Mask
        whose documents (if any) the plan takes; layout balanced needs it."""
        if cu_seqlens is not None:  # host-side offsets (a CUDA tensor is copied once, here)
            cu_seqlens = _integers("plan", "cu_seqlens", cu_seqlens).to("cpu", torch.int64)
        return _C.ShardPlan(_count("plan", "T", T), cu_seqlens, self.layout, self.group,
                            _count("plan", "min_chunk", min_chunk), mask)

    def attention(self, q, k, v, plan, causal=False, window=None, mask=None):
        """Attention of this rank's shards q [Tl, H, D], k and v [Tl, H_kv, D] (H % H_kv == 0)
        under the plan's documents, causal or not, and an inclusive (left, right) window; or
        under `mask`, a longhaul.Mask (any family: longhaul.Mask.share_question(cu), ...).
        Returns out [Tl, H, D]; differentiable in q, k and v. Every rank of the group calls it.

        q, k and v sit on one device (CPU, or CUDA with a group that moves CUDA tensors: the world
        of one process, a GPU rank's world, or a ProcessGroup wrapped with device="cuda"). Under
        torch.autocast for their device the attention runs in the autocast dtype (as SDPA does);
        otherwise q, k and v must share a dtype."""
        q, k, v = _same_device_and_dtype(q, k, v)
        with torch.autocast(q.device.type, enabled=False):  # the C++ ops run in the dtype given
            return _Attention.apply(q, k, v, self._cp, plan, bool(causal), _check_window(window), mask)

    def __repr__(self):
        return f"<longhaul.ContextParallel {self.strategy}/{self.layout} over {self.group!r}>"
