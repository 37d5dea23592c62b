"""A CP degree per dataset-decomposition bucket, and the group and ContextParallel of each.

    degrees = longhaul.CpDegrees("auto", tokens_per_step=4096, min_log2=6, max_log2=11,
                                 heads=4, kv_heads=2, head_dim=16, layers=2, dim=64, vocab=65)
    for batch in longhaul.data.DDSampler(store, 4096, min_log2=6, max_log2=11, degrees=degrees):
        cp = degrees.cp_for(batch.seq_len)          # the ContextParallel of this step's degree
        plan = cp.plan(batch.num_tokens, batch.cu_seqlens, mask=...)
        ...                                          # an empty batch (num_tokens == 0) only syncs
        world.comm.all_reduce(grads)                 # gradients over the WHOLE world, every step

cp="auto": the bucket planner (the C++ parallel/bucket_planner.h, the same as `longhaul train
--cp auto`) picks, for each bucket of length L, the degree c (a divisor of the world) with the
fastest predicted step on the busiest rank that fits memory_gib; cp=N: every bucket on N ranks.
dtype: the attention's compute dtype (torch.bfloat16 under bf16 autocast): its element size is
what the planner's memory check and messages count, as `longhaul train --dtype` does.
device: the attention tensors' device when group is a torch ProcessGroup ("cuda": its NCCL
backend, whole group only); the longhaul world moves CUDA tensors itself (one process, GPU ranks).
For each degree in use the group is split once, here, into W/c groups of c consecutive ranks.
Every rank must pass the same arguments: the table is checked across ranks, and a rank that
differs raises ValueError on every rank (nothing hangs).
"""
import torch

from . import _C
from ._world import as_group, is_cuda_process_group
from .context_parallel import ContextParallel


def _dense_flops_per_token(dim, heads, kv_heads, head_dim, layers, vocab, hidden):
    """Forward + backward FLOPs per token of a decoder's projections, SwiGLU MLP and output head."""
    hidden = hidden or (8 * dim // 3 + 15) // 16 * 16
    per_layer = dim * (heads + 2 * kv_heads) * head_dim + dim * heads * head_dim + 3 * dim * hidden
    return 6.0 * (per_layer * layers + dim * vocab)


def _element_bytes(dtype):
    """Bytes per element of the attention's compute dtype (what it holds and moves)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"CpDegrees: dtype must be a floating torch.dtype (the attention's compute dtype, e.g. "
                         f"torch.bfloat16 under autocast), got {dtype!r}")
    return torch.empty((), dtype=dtype).element_size()


class CpDegrees:
    """The CP degree of every sequence length, with a ContextParallel per degree (module doc)."""

    def __init__(self, cp="auto", *, tokens_per_step, min_log2, max_log2, heads, kv_heads, head_dim, layers=1,
                 dim=None, vocab=0, hidden=0, strategy="ring", layout="zigzag", ulysses_degree=1,
                 memory_gib=0.0, network="this-machine", kernel_gflops=0.0, dense_gflops=0.0, group=None,
                 device="cpu", dtype=torch.float32):
        # The planning and agreement collectives move CPU tensors; the attention's group moves
        # tensors of `device` (a longhaul Communicator moves both where it can: the world of one
        # process, a GPU rank's world).
        elem_bytes = _element_bytes(dtype)  # raised on every rank alike, before any collective
        self.group = as_group(group)
        world, rank = self.group.size, self.group.rank
        self.min_log2, self.max_log2 = int(min_log2), int(max_log2)
        self.table = []
        if cp == "auto":
            if str(device).startswith("cuda") and (kernel_gflops <= 0 or dense_gflops <= 0):
                # The same arguments on every rank, so every rank raises: nothing hangs.
                raise ValueError(f"CpDegrees auto on device {device!r}: give kernel_gflops and dense_gflops (the "
                                 "planner's rates are measured on the CPU only, which would plan a GPU run with "
                                 "CPU speeds)")
            dim = dim or heads * head_dim
            # Every rank measures at once (ranks of a host compete for it as in training); the
            # slowest rank's rate is everyone's. dense: a GEMM of the MLP's shape (give the
            # model's own rate when known: norms, activations and autograd make it lower).
            if kernel_gflops <= 0:
                kernel_gflops = self._slowest(lambda: _C.measure_kernel_gflops(heads, kv_heads, head_dim, 1024))
            if dense_gflops <= 0:
                dense_gflops = self._slowest(
                    lambda: _C.measure_dense_gflops(2048, dim, hidden or (8 * dim // 3 + 15) // 16 * 16))
            self.kernel_gflops, self.dense_gflops = kernel_gflops, dense_gflops
            error = None
            try:
                self.table = _C.plan_bucket_degrees(
                    world, int(tokens_per_step), self.min_log2, self.max_log2, int(heads), int(kv_heads),
                    int(head_dim), int(layers), strategy, layout, float(kernel_gflops),
                    _dense_flops_per_token(dim, heads, kv_heads, head_dim, layers, vocab, hidden), float(dense_gflops),
                    float(memory_gib), network, elem_bytes)
            except ValueError as e:
                error = str(e)
            self._agree(error)
            self._by_bucket = [b["degree"] for b in self.table]
            self.fixed = None
        else:
            c = int(cp)
            if c < 1 or world % c:
                raise ValueError(f"CpDegrees: cp {cp} does not divide the world of {world} ranks "
                                 f"(use a divisor of {world}, or 'auto')")
            self.fixed = c
        self._cps = {}
        wrap_torch_group = is_cuda_process_group(group, device)
        for c in sorted(set(self._by_bucket) if self.fixed is None else {self.fixed}):
            if wrap_torch_group:  # its NCCL backend, whole: longhaul splits only Gloo groups
                if c != world:
                    raise NotImplementedError(
                        f"CpDegrees: CP degree {c} on CUDA over a torch ProcessGroup of {world} ranks: only the "
                        "whole group is wrapped for CUDA; pass group=None (the longhaul world, NCCL on GPU ranks) "
                        "or one ProcessGroup per CP group")
                sub = as_group(group, device)
            else:
                sub = self.group if c == world else self.group.split(rank // c, rank)
            self._cps[c] = ContextParallel(strategy, layout, ulysses_degree=ulysses_degree, group=sub)

    def _slowest(self, measure):
        t = torch.tensor([float(measure())], dtype=torch.float64)
        return float(self.group.all_reduce(t, "min").item())

    def _agree(self, error):
        n = self.max_log2 - self.min_log2 + 1
        lo = torch.full((n,), -1.0, dtype=torch.float64)
        for i, b in enumerate(self.table):
            lo[i] = float(b["degree"])
        hi = lo.clone()
        self.group.all_reduce(lo, "min")
        self.group.all_reduce(hi, "max")
        if error:
            raise ValueError(f"CpDegrees auto: {error}")
        for i in range(n):
            if lo[i] != hi[i]:
                a = "a rank could not plan it" if lo[i] < 0 else str(int(lo[i]))
                raise ValueError(f"CpDegrees auto: ranks disagree on the CP degree of bucket 2^{self.min_log2 + i}: "
                                 f"{a} vs {int(hi[i])} (every rank must pass the same arguments)")

    def degree(self, seq_len):
        """Ranks per CP group for sequences of seq_len tokens (the nearest bucket's outside them)."""
        if self.fixed is not None:
            return self.fixed
        k = max(int(seq_len), 1).bit_length() - 1
        return self._by_bucket[min(max(k - self.min_log2, 0), len(self._by_bucket) - 1)]

    def share_of(self, seq_len):
        """(groups, this rank's group) of the degree of seq_len: which share of a step this rank runs."""
        c = self.degree(seq_len)
        return self.group.size // c, self.group.rank // c

    def cp_for(self, seq_len):
        """The ContextParallel over this rank's group of the degree of seq_len."""
        return self._cps[self.degree(seq_len)]

    def describe(self):
        """'64:1 128:1 2048:2' (length:degree per bucket), or the fixed degree."""
        if self.fixed is not None:
            return str(self.fixed)
        return " ".join(f"{b['length']}:{b['degree']}" for b in self.table)

    def __repr__(self):
        return f"<longhaul.CpDegrees {self.describe()} over {self.group!r}>"
