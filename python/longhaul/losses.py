"""The output head and its cross-entropy over chunks of rows (the C++ train/linear_cross_entropy.h).

A shard of Tl tokens over a vocabulary of V makes Tl·V logits; a plain head keeps them, their
log-softmax and their gradient, which at long context outweighs the rest of the step (64K tokens
and V = 128K: 32 GiB each in float32). Here each chunk of rows forms its logits, its part of the
loss and (when training) their gradient, which it turns at once into its rows of ∂hidden and its
term of ∂weight: the [Tl, V] block never exists whole.
"""
import torch

from . import _C
from .context_parallel import _integers


def linear_cross_entropy(hidden, weight, targets, *, chunk_mib=256, ignore_index=-100, reduction="sum"):
    """cross_entropy(hidden @ weight.T, targets) without forming the logits whole.

    hidden [..., d] (any leading shape), weight [vocab, d] (an output layer without bias, e.g. a
    causal LM's lm_head.weight, tied or not), targets [...] (hidden's leading shape; ignore_index
    where a row has no target). The matmuls run in weight's dtype (hidden is cast to it), the logits
    and the softmax in float32 (float64 for a float64 weight). Chunks of rows whose logits take at
    most chunk_mib MiB. reduction: "sum", or "mean" over the rows with a target. Differentiable
    with respect to hidden and weight (the gradient of the logits is formed in the forward, so the
    backward costs two scalings).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"linear_cross_entropy: reduction must be 'sum' or 'mean', got {reduction!r}")
    if not chunk_mib > 0:
        raise ValueError(f"linear_cross_entropy: chunk_mib must be > 0, got {chunk_mib!r}")
    t = _integers("linear_cross_entropy", "targets", targets)
    if hidden.dim() < 1 or t.shape != hidden.shape[:-1]:
        raise ValueError(f"linear_cross_entropy: targets must have hidden's leading shape {tuple(hidden.shape[:-1])}, "
                         f"got {tuple(t.shape)}")
    t = t.reshape(-1).to(hidden.device, torch.int64)
    loss = _C.linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, t, int(chunk_mib * (1 << 20)),
                                   int(ignore_index))
    if reduction == "mean":
        loss = loss / max(1, int((t != ignore_index).sum()))
    return loss
