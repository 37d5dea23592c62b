"""Hugging Face `transformers` models on longhaul context parallelism.

    import longhaul.integrations.transformers as lht          # registers attn_implementation="longhaul"
    cp = lht.ContextParallelAttention(strategy="ring", layout="zigzag")   # group: default the world
    model = LlamaForCausalLM(config, attn_implementation="longhaul")
    batch = lht.shard_batch(cp, input_ids, cu_seqlens)         # this rank's shard of a packed sequence
    with batch:                                                # the attention layers run on its plan
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    loss = batch.loss(logits)          # the unsharded model's mean loss, differentiable on every rank
    # or batch.model_loss(model): the same without the shard's [Tl, vocab] logits ever whole
    loss.backward(); cp.all_reduce_gradients(model)

Every attention layer of the model then runs `ContextParallel.attention` on the rank's shard:
causal within each packed document (cu_seqlens), the model's own scaling, GQA as the model has it,
and the layer's sliding window when its config sets one (Mistral/Qwen2-style: a query sees the
`sliding_window` keys up to itself). Positions restart at every document, so RoPE is right on
every shard. Labels are shifted on the global sequence before sharding (the next token of the
same document; a document's last token gets -100): do not pass `labels=` to the model, whose loss
shifts inside the shard. What the integration cannot run exactly raises ValueError at the first
forward, naming the layer — a 4-D attention mask, dropout in training, a non-causal layer or
config, logit softcapping, attention sinks, a position bias, a batch dimension other than 1, a
forward outside `with batch:` — or the padding (a 2-D attention mask with zeros): never a silent
fallback.
"""
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _C
from .._world import as_group, is_cuda_process_group
from ..context_parallel import ContextParallel, _check_scale, _integers
from ..gradients import all_reduce_gradients
from ..losses import linear_cross_entropy

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
        scale = _check_scale(scale)  # None: the default 1/sqrt(D)
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

    def model_loss(self, model, *, chunk_mib=256):
        """loss(model(input_ids=..., position_ids=...).logits) without the shard's [Tl, vocab]
        logits ever whole: the model's decoder gives its last hidden states and its output layer
        runs over chunks of rows (longhaul.linear_cross_entropy), so the memory of the head is
        chunk_mib, not Tl · vocab floats twice over. For causal LMs whose logits are their output
        layer's (Llama, Mistral, Qwen2/3, ...): a head with a bias, logit softcapping or a logit
        scale raises ValueError naming it. Runs the model under this batch (`with batch:` or not)."""
        head = _plain_output_layer(model)
        if getattr(_active, "batch", None) is self:
            hidden = model.get_decoder()(input_ids=self.input_ids, position_ids=self.position_ids).last_hidden_state
        else:
            with self:
                hidden = model.get_decoder()(input_ids=self.input_ids,
                                             position_ids=self.position_ids).last_hidden_state
        return linear_cross_entropy(hidden[0], head.weight, self.targets[0], chunk_mib=chunk_mib) / max(1, self.num_targets)

    def global_loss(self, logits):
        """The mean loss over the whole sequence, as a number (a collective)."""
        t = self.loss(logits).detach().reshape(1).to("cpu", torch.float64)
        return float(self.attention.all_reduce(t).item())


def _offsets(who, cu_seqlens, T=None):
    """Document offsets cu_seqlens as int64 [documents + 1] on their device, checked: integers rising
    from 0 (to T when given)."""
    cu = _integers(who, "cu_seqlens", cu_seqlens).reshape(-1).to(torch.int64)
    if cu.numel() < 2 or int(cu[0]) != 0 or (T is not None and int(cu[-1]) != T) or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"{who}: cu_seqlens must rise from 0 to T{'' if T is None else f' = {T}'}, "
                         f"got {cu.tolist()}")
    return cu


def shard_batch(attention, input_ids, cu_seqlens=None, labels=None, *, targets=None):
    """This rank's shard of a packed sequence input_ids [T] or [1, T] with global document offsets
    cu_seqlens [0, ..., T] (None: one document). labels (same shape, -100 to ignore; default
    input_ids) are shifted here: a token's target is the label of the next token of its document.
    targets: already shifted targets instead (e.g. a longhaul.data.DDSampler batch's). The shard's
    tensors are on input_ids' device (CPU or CUDA); cu_seqlens may be on either."""
    ids = _integers("shard_batch", "input_ids", input_ids)
    if not (ids.dim() == 1 or (ids.dim() == 2 and ids.shape[0] == 1)):
        raise ValueError(f"shard_batch: input_ids must be [T] or [1, T] (one packed sequence), "
                         f"got shape {tuple(ids.shape)}")
    shape, ids = ids.shape, ids.reshape(-1).to(torch.int64)
    T = ids.numel()
    cu = torch.tensor([0, T]) if cu_seqlens is None else _offsets("shard_batch", cu_seqlens, T).cpu()
    if labels is not None and targets is not None:
        raise ValueError("shard_batch: give labels (shifted here) or targets (already shifted), not both")

    def like_ids(name, x):
        t = _integers("shard_batch", name, x)
        if t.shape != shape:
            raise ValueError(f"shard_batch: {name} must have input_ids' shape {tuple(shape)}, got {tuple(t.shape)}")
        return t.reshape(-1).to(ids.device, torch.int64)

    if targets is not None:
        targets = like_ids("targets", targets)
    else:
        lab = ids if labels is None else like_ids("labels", labels)
        targets = torch.full((T,), IGNORE, dtype=torch.int64, device=ids.device)
        targets[:-1] = lab[1:]
        doc_end = cu[1:] - 1  # the last token of each document has no next token in it
        targets[doc_end[doc_end >= 0].to(ids.device)] = IGNORE
    plan = attention.plan(T, cu)
    return ShardedBatch(plan.shard(ids).unsqueeze(0), plan.doc_positions.to(ids.device).unsqueeze(0),
                        plan.shard(targets).unsqueeze(0), plan, attention, int((targets != IGNORE).sum()))


def _plain_output_layer(model):
    """The model's output layer, when its logits are that layer's output and nothing else."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not hasattr(head, "weight") or not hasattr(model, "get_decoder"):
        raise ValueError(f"model_loss: {type(model).__name__} has no output layer and decoder "
                         "(a transformers causal LM has both)")
    if getattr(head, "bias", None) is not None:
        raise ValueError(f"model_loss: {type(model).__name__}'s output layer has a bias; use loss(model(...).logits)")
    cfg = getattr(model, "config", None)
    for name, neutral in (("final_logit_softcapping", None), ("logit_scale", 1.0), ("logits_scaling", 1.0)):
        value = getattr(cfg, name, neutral)
        if value is not None and value != neutral:
            raise ValueError(f"model_loss: {type(model).__name__} transforms its logits (config.{name} = {value}); "
                             "use loss(model(...).logits)")
    return head


def document_positions(cu_seqlens):
    """int64 [T]: each token's position inside its document (0 at every document start), on
    cu_seqlens' device."""
    cu = _offsets("document_positions", cu_seqlens)
    return torch.arange(int(cu[-1]), device=cu.device) - torch.repeat_interleave(cu[:-1], cu[1:] - cu[:-1])


def document_mask(cu_seqlens, sliding_window=None):
    """bool [1, 1, T, T]: what the longhaul attention computes, as an explicit mask for the
    unsharded model (attn_implementation="sdpa") on the whole packed sequence: causal inside each
    document, and q - k < sliding_window when given. For checks only: it is T x T. On
    cu_seqlens' device."""
    cu = _offsets("document_mask", cu_seqlens)
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


# Arguments that models of transformers pass to their attention function and that change its
# result, which longhaul does not compute: refused when given (not None), never ignored.
_CHANGES_THE_RESULT = {
    "softcap": "attention logit softcapping",
    "s_aux": "attention sinks",
    "sinks": "attention sinks",
    "position_bias": "an additive position bias",
    "attention_bias": "an additive attention bias",
    "head_mask": "a head mask",
    "indices": "sparse attention indices",
    "block_indices": "sparse attention indices",
    "cu_seq_lens_q": "packed documents: give them to shard_batch as cu_seqlens",
    "cu_seq_lens_k": "packed documents: give them to shard_batch as cu_seqlens",
}


def longhaul_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                       is_causal=None, **kwargs):
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
    for name, what in _CHANGES_THE_RESULT.items():
        if kwargs.get(name) is not None:
            raise ValueError(f"longhaul attention in {where}: {name}= ({what}) is not supported")
    if kwargs.get("output_attentions"):
        raise ValueError(f"longhaul attention in {where}: output_attentions=True is not supported "
                         "(the attention weights are never formed)")
    if dropout:
        raise ValueError(f"longhaul attention in {where}: attention dropout {dropout} is not supported")
    if not (getattr(module, "is_causal", True) if is_causal is None else is_causal):
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
    try:
        cp = batch.attention.cp(scaling if scaling is not None else query.shape[-1] ** -0.5)
        out = cp.attention(q.contiguous(), k, v, batch.plan, causal=True, window=window)
    except (ValueError, NotImplementedError) as e:  # e.g. heads that Ulysses cannot split over the group
        raise type(e)(f"longhaul attention in {where}: {e}") from e
    return out.unsqueeze(0), None


def longhaul_mask(*args, attention_mask=None, **kwargs):
    """transformers' mask interface for NAME: no mask (the plan's documents are the mask), and a
    2-D padding mask with zeros refused (without a mask function of NAME, transformers would drop it)."""
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("longhaul attention: padding (an attention_mask with zeros) is not supported; "
                         "pack documents with cu_seqlens")
    return None


def _register():
    from transformers import AttentionInterface, AttentionMaskInterface
    AttentionInterface.register(NAME, longhaul_attention)
    AttentionMaskInterface.register(NAME, longhaul_mask)


_register()

__all__ = ["ContextParallelAttention", "ShardedBatch", "shard_batch", "document_positions", "document_mask",
           "longhaul_attention", "longhaul_mask", "NAME"]
