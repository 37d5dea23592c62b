"""Hugging Face `transformers` models on longhaul context parallelism.

    import longhaul.integrations.transformers as lht          # registers attn_implementation="longhaul"
    cp = lht.ContextParallelAttention(strategy="ring", layout="zigzag")   # group: default the world
    model = LlamaForCausalLM(config, attn_implementation="longhaul")
    batch = lht.shard_batch(cp, input_ids, cu_seqlens)         # this rank's shard of a packed sequence
    with batch:                                                # the attention layers run on its plan
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    loss = batch.loss(logits)          # the unsharded model's mean loss, differentiable on every rank
    loss.backward(); cp.all_reduce_gradients(model)

Every attention layer of the model then runs `ContextParallel.attention` on the rank's shard:
causal within each packed document (cu_seqlens), the model's own scaling, GQA as the model has it,
and the layer's sliding window when its config sets one (Mistral/Qwen2-style: a query sees the
`sliding_window` keys up to itself). Positions restart at every document, so RoPE is right on
every shard. Labels are shifted on the global sequence before sharding (the next token of the
same document; a document's last token gets -100): do not pass `labels=` to the model, whose loss
shifts inside the shard. What the integration cannot run exactly raises ValueError naming the
layer at the first forward — a 4-D attention mask, dropout in training, a non-causal layer, a
batch dimension other than 1, a forward outside `with batch:` — never a silent fallback.
"""
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _C
from .._world import as_group, is_cuda_process_group
from ..context_parallel import ContextParallel
from ..gradients import all_reduce_gradients

IGNORE = -100
NAME = "longhaul"
_active = threading.local()  # the ShardedBatch of the forward in progress on this thread


class ContextParallelAttention:
    """The CP group and strategy the model's attention layers run on (one ContextParallel per
    softmax scale the model's layers use). device: "cpu" or "cuda", the model's device when group
    is a torch.distributed ProcessGroup (the attention and the gradients then go over its backend
    for that device, the plan and the loss over its CPU backend); the longhaul world (group=None)
    moves CUDA tensors itself in one process and on GPU ranks."""

    def __init__(self, strategy="ring", layout="zigzag", group=None, *, ulysses_degree=1, inner="ring",
                 device="cpu"):
        self.group = as_group(group)  # host-side: plans, the loss
        self._attention_group = as_group(group, "cuda") if is_cuda_process_group(group, device) else self.group
        self.strategy, self.layout = strategy, layout
        self._options = dict(ulysses_degree=ulysses_degree, inner=inner)
        self._by_scale = {}

    def cp(self, scale):
        scale = float(scale)
        if scale not in self._by_scale:
            self._by_scale[scale] = ContextParallel(self.strategy, self.layout, group=self._attention_group,
                                                    scale=scale, **self._options)
        return self._by_scale[scale]

    def plan(self, T, cu_seqlens):
        return _C.ShardPlan(int(T), torch.as_tensor(cu_seqlens).to("cpu", torch.int64), self.layout, self.group)

    def all_reduce(self, t):
        """Sums a CPU tensor over the group (in place; returns it)."""
        return self.group.all_reduce(t)

    def all_reduce_gradients(self, model):
        """Sums every parameter's gradient over the CP group (each rank holds its shard's part)."""
        params = [p for p in model.parameters() if p.requires_grad]
        on_cuda = bool(params) and params[0].is_cuda
        all_reduce_gradients(params, self._attention_group if on_cuda else self.group)


@dataclass
class ShardedBatch:
    """This rank's shard of one packed sequence (shard_batch)."""
    input_ids: torch.Tensor      # int64 [1, Tl]
    position_ids: torch.Tensor   # int64 [1, Tl]: positions inside each document
    targets: torch.Tensor        # int64 [1, Tl]: shifted on the global sequence, -100 where none
    plan: object                 # longhaul.ShardPlan
    attention: ContextParallelAttention
    num_targets: int             # targets over the whole sequence (every rank)

    def __enter__(self):
        if getattr(_active, "batch", None) is not None:
            raise ValueError("shard_batch: another sharded batch is already active on this thread")
        _active.batch = self
        return self

    def __exit__(self, *exc):
        _active.batch = None
        return False

    def loss(self, logits):
        """Σ cross-entropy over this shard's targets / the sequence's target count: summed over
        the CP group it is the unsharded model's mean loss (so are the gradients, once summed)."""
        flat = logits.reshape(-1, logits.shape[-1])
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()  # bf16/fp16 logits: the loss in float32, as transformers does
        local = F.cross_entropy(flat, self.targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
        return local / max(1, self.num_targets)

    def global_loss(self, logits):
        """The mean loss over the whole sequence, as a number (a collective)."""
        t = self.loss(logits).detach().reshape(1).to("cpu", torch.float64)
        return float(self.attention.all_reduce(t).item())


def shard_batch(attention, input_ids, cu_seqlens=None, labels=None, *, targets=None):
    """This rank's shard of a packed sequence input_ids [T] or [1, T] with global document offsets
    cu_seqlens [0, ..., T] (None: one document). labels (same shape, -100 to ignore; default
    input_ids) are shifted here: a token's target is the label of the next token of its document.
    targets: already shifted targets instead (e.g. a longhaul.data.DDSampler batch's). The shard's
    tensors are on input_ids' device (CPU or CUDA); cu_seqlens may be on either."""
    ids = torch.as_tensor(input_ids).reshape(-1).to(torch.int64)
    T = ids.numel()
    cu = torch.tensor([0, T]) if cu_seqlens is None else torch.as_tensor(cu_seqlens).reshape(-1).to("cpu", torch.int64)
    if cu.numel() < 2 or int(cu[0]) != 0 or int(cu[-1]) != T or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"shard_batch: cu_seqlens must rise from 0 to T = {T}, got {cu.tolist()}")
    if labels is not None and targets is not None:
        raise ValueError("shard_batch: give labels (shifted here) or targets (already shifted), not both")
    if targets is not None:
        targets = torch.as_tensor(targets).reshape(-1).to(ids.device, torch.int64)
        if targets.numel() != T:
            raise ValueError(f"shard_batch: targets have {targets.numel()} tokens, input_ids {T}")
    else:
        lab = ids if labels is None else torch.as_tensor(labels).reshape(-1).to(ids.device, torch.int64)
        if lab.numel() != T:
            raise ValueError(f"shard_batch: labels have {lab.numel()} tokens, input_ids {T}")
        targets = torch.full((T,), IGNORE, dtype=torch.int64, device=ids.device)
        targets[:-1] = lab[1:]
        doc_end = cu[1:] - 1  # the last token of each document has no next token in it
        targets[doc_end[doc_end >= 0].to(ids.device)] = IGNORE
    plan = attention.plan(T, cu)
    return ShardedBatch(plan.shard(ids).unsqueeze(0), plan.doc_positions.to(ids.device).unsqueeze(0),
                        plan.shard(targets).unsqueeze(0), plan, attention, int((targets != IGNORE).sum()))


def document_positions(cu_seqlens):
    """int64 [T]: each token's position inside its document (0 at every document start), on
    cu_seqlens' device."""
    cu = torch.as_tensor(cu_seqlens).reshape(-1).to(torch.int64)
    return torch.arange(int(cu[-1]), device=cu.device) - torch.repeat_interleave(cu[:-1], cu[1:] - cu[:-1])


def document_mask(cu_seqlens, sliding_window=None):
    """bool [1, 1, T, T]: what the longhaul attention computes, as an explicit mask for the
    unsharded model (attn_implementation="sdpa") on the whole packed sequence: causal inside each
    document, and q - k < sliding_window when given. For checks only: it is T x T. On
    cu_seqlens' device."""
    cu = torch.as_tensor(cu_seqlens).reshape(-1).to(torch.int64)
    T = int(cu[-1])
    doc = torch.repeat_interleave(torch.arange(cu.numel() - 1, device=cu.device), cu[1:] - cu[:-1])
    q, k = torch.arange(T, device=cu.device)[:, None], torch.arange(T, device=cu.device)[None, :]
    allowed = (doc[:, None] == doc[None, :]) & (k <= q)
    if sliding_window:
        allowed &= q - k < int(sliding_window)
    return allowed[None, None]


def _layer_name(module):
    idx = getattr(module, "layer_idx", None)
    return f"{type(module).__name__}" + (f" (layer {idx})" if idx is not None else "")


def longhaul_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                       **kwargs):
    """transformers' attention interface: query [1, H, Tl, D], key/value [1, H_kv, Tl, D] of this
    rank's shard → ([1, Tl, H, D], None)."""
    batch = getattr(_active, "batch", None)
    where = _layer_name(module)
    if not isinstance(batch, ShardedBatch):
        raise ValueError(f"longhaul attention in {where}: run the model inside `with shard_batch(...):` "
                         "(the plan of the shard it runs on)")
    if attention_mask is not None:
        raise ValueError(f"longhaul attention in {where}: an explicit attention mask "
                         f"({tuple(attention_mask.shape)}) is not supported; pack documents with cu_seqlens")
    if dropout:
        raise ValueError(f"longhaul attention in {where}: attention dropout {dropout} is not supported")
    if not getattr(module, "is_causal", True):
        raise ValueError(f"longhaul attention in {where}: only causal (decoder) attention is supported")
    if query.shape[0] != 1:
        raise ValueError(f"longhaul attention in {where}: batch size must be 1 (one packed sequence), "
                         f"got {query.shape[0]}")
    if query.shape[2] != batch.plan.local_rows:
        raise ValueError(f"longhaul attention in {where}: {query.shape[2]} query rows, the shard has "
                         f"{batch.plan.local_rows}")
    q = query[0].transpose(0, 1)
    k = key[0].transpose(0, 1).contiguous()
    v = value[0].transpose(0, 1).contiguous()
    window = (int(sliding_window) - 1, 0) if sliding_window else None
    cp = batch.attention.cp(scaling if scaling is not None else query.shape[-1] ** -0.5)
    try:
        out = cp.attention(q.contiguous(), k, v, batch.plan, causal=True, window=window)
    except (ValueError, NotImplementedError) as e:  # e.g. heads that Ulysses cannot split over the group
        raise type(e)(f"longhaul attention in {where}: {e}") from e
    return out.unsqueeze(0), None


def _register():
    from transformers import AttentionInterface
    AttentionInterface.register(NAME, longhaul_attention)


_register()

__all__ = ["ContextParallelAttention", "ShardedBatch", "shard_batch", "document_positions", "document_mask", "longhaul_attention", "NAME"]
