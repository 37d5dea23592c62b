"""longhaul.integrations.transformers: a Hugging Face model built with attn_implementation="longhaul"
runs every attention layer on this rank's shard. For LlamaForCausalLM and a sliding-window
MistralForCausalLM (small random configs, GQA 8:4; and a Qwen2 whose layers differ, one full and
one windowed), in float64 and float32, ring / tokenring /
ulysses × zigzag / contiguous, on a packed sequence of uneven documents (one shorter than a
chunk): the loss and every parameter gradient (summed over the group) equal the unsharded model
with attn_implementation="sdpa" and the explicit document mask. Unsupported inputs raise ValueError
naming the layer (or what is wrong: padding, several sequences, float token ids, bad offsets). Runs
in one process, under mpirun (2, 4 ranks) and torchrun (2, a Gloo group)."""
import copy

import pytest
import torch
import torch.nn.functional as F

try:
    import transformers
except ImportError:  # scripts/setup.sh installs it; a bare environment reports why this file did not run
    pytest.skip("transformers is not installed (pip install .[transformers]; scripts/setup.sh pins it)",
                allow_module_level=True)
import longhaul  # noqa: E402
import longhaul.integrations.transformers as lht  # noqa: E402

T = 71
CU = [0, 30, 33, 52, 71]  # uneven documents; 3 tokens is shorter than a chunk at P = 4
VOCAB = 61
WINDOW = 9


def config(family, dtype):
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=8,
                  num_key_value_heads=4, max_position_embeddings=128)
    if family == "llama":
        return transformers.LlamaConfig(**common)
    return transformers.MistralConfig(sliding_window=WINDOW, **common)


def model_pair(family, dtype):
    torch.manual_seed(0)
    cls = transformers.LlamaForCausalLM if family == "llama" else transformers.MistralForCausalLM
    cfg = config(family, dtype)
    ref_cfg, cp_cfg = copy.deepcopy(cfg), copy.deepcopy(cfg)
    ref_cfg._attn_implementation, cp_cfg._attn_implementation = "sdpa", lht.NAME
    ref = cls(ref_cfg).to(dtype)
    sharded = cls(cp_cfg).to(dtype)
    sharded.load_state_dict(ref.state_dict())
    return ref, sharded


def reference(ref, ids, family, mask=None):
    """Loss and gradients of the unsharded model on the packed sequence with its document mask
    (or `mask`: e.g. one per layer type)."""
    if mask is None:
        mask = lht.document_mask(CU, WINDOW if family == "mistral" else None)
    logits = ref(input_ids=ids[None], position_ids=lht.document_positions(CU)[None], attention_mask=mask).logits[0]
    cu = torch.tensor(CU)
    targets = torch.full((T,), -100)
    targets[:-1] = ids[1:]
    targets[cu[1:] - 1] = -100
    loss = F.cross_entropy(logits.float() if logits.dtype != torch.float64 else logits, targets, ignore_index=-100)
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in ref.parameters()]


CASES = [(family, strategy, layout) for family in ("llama", "mistral") for strategy in ("ring", "tokenring", "ulysses")
         for layout in ("zigzag", "contiguous")]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("family,strategy,layout", CASES, ids=["-".join(c) for c in CASES])
def test_loss_and_gradients_equal_the_unsharded_model(group, family, strategy, layout, dtype):
    ids = torch.randint(0, VOCAB, (T,), generator=torch.Generator().manual_seed(3))
    ref, sharded = model_pair(family, dtype)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    expect_sharded_run_equals(group, sharded, ids, strategy, layout, reference(ref, ids, family), tol)


def expect_sharded_run_equals(group, sharded, ids, strategy, layout, want, tol):
    """The sharded model's loss and every gradient (summed over the group) equal want = (loss, grads)."""
    want_loss, want_grads = want
    attention = lht.ContextParallelAttention(strategy, layout, group)
    batch = lht.shard_batch(attention, ids, CU)
    with batch:
        logits = sharded(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    batch.loss(logits).backward()
    attention.all_reduce_gradients(sharded)
    torch.testing.assert_close(torch.tensor(batch.global_loss(logits), dtype=torch.float64),
                               torch.tensor(want_loss, dtype=torch.float64), **tol)
    for (name, p), g in zip(sharded.named_parameters(), want_grads):
        torch.testing.assert_close(p.grad, g, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("strategy,layout", [("ring", "zigzag"), ("ulysses", "contiguous")])
def test_layers_of_different_types_each_keep_their_own_mask(group, strategy, layout):
    """Qwen2 with a sliding window from layer 1 on (layer_types full, sliding): each layer gets its
    own window (or none), as the unsharded model with a mask per layer type, in float64."""
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=8,
                  num_key_value_heads=4, max_position_embeddings=128)
    cfg = transformers.Qwen2Config(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, **common)
    assert list(cfg.layer_types) == ["full_attention", "sliding_attention"]
    torch.manual_seed(0)
    ref_cfg, cp_cfg = copy.deepcopy(cfg), copy.deepcopy(cfg)
    ref_cfg._attn_implementation, cp_cfg._attn_implementation = "sdpa", lht.NAME
    ref = transformers.Qwen2ForCausalLM(ref_cfg).double()
    sharded = transformers.Qwen2ForCausalLM(cp_cfg).double()
    sharded.load_state_dict(ref.state_dict())
    ids = torch.randint(0, VOCAB, (T,), generator=torch.Generator().manual_seed(4))
    masks = {"full_attention": lht.document_mask(CU), "sliding_attention": lht.document_mask(CU, WINDOW)}
    expect_sharded_run_equals(group, sharded, ids, strategy, layout, reference(ref, ids, "qwen2", masks),
                              dict(rtol=1e-9, atol=1e-12))


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_model_loss_equals_the_loss_of_the_logits(group, family):
    """batch.model_loss(model) (the head over chunks of rows, never the shard's logits whole) equals
    batch.loss(model(...).logits): the loss and every gradient, float64, inside `with batch:` or
    not; chunks of 3 rows here."""
    ids = torch.randint(0, VOCAB, (T,), generator=torch.Generator().manual_seed(6))
    _, a = model_pair(family, torch.float64)
    b = copy.deepcopy(a)
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    batch = lht.shard_batch(attention, ids, CU)
    with batch:
        want = batch.loss(a(input_ids=batch.input_ids, position_ids=batch.position_ids).logits)
    want.backward()
    got = batch.model_loss(b, chunk_mib=3 * VOCAB * 8 / 2**20)
    got.backward()
    with batch:  # inside the batch too
        assert torch.allclose(batch.model_loss(b).detach(), got.detach(), rtol=1e-12)
    tol = dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got.detach(), want.detach(), **tol)
    for (name, p), q in zip(b.named_parameters(), a.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **tol, msg=lambda m: f"{name}: {m}")


def test_model_loss_refuses_heads_that_transform_their_logits(group):
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=8,
                  num_key_value_heads=4, max_position_embeddings=128)
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    batch = lht.shard_batch(attention, torch.arange(T) % VOCAB, CU)
    for cls, cfg, what in (
            (transformers.CohereForCausalLM, transformers.CohereConfig(logit_scale=0.5, **common), "config.logit_scale = 0.5"),
            (transformers.GraniteForCausalLM, transformers.GraniteConfig(logits_scaling=4.0, **common),
             "config.logits_scaling = 4.0")):
        cfg._attn_implementation = lht.NAME
        with pytest.raises(ValueError, match=f"model_loss: {cls.__name__} transforms its logits \\({what}\\)"):
            batch.model_loss(cls(cfg))


def test_shard_batch_shifts_labels_on_the_global_sequence(group):
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    ids = torch.arange(T) % VOCAB
    batch = lht.shard_batch(attention, ids, CU)
    rows = batch.plan.positions
    cu = torch.tensor(CU)
    last = set((cu[1:] - 1).tolist())
    for r, t, p in zip(rows.tolist(), batch.targets[0].tolist(), batch.position_ids[0].tolist()):
        assert t == (-100 if r in last else int(ids[r + 1])), (r, t)
        assert p == r - int(cu[(cu <= r).nonzero().max()])
    assert batch.num_targets == T - (len(CU) - 1)


def test_shard_batch_takes_already_shifted_targets(group):
    """A DD batch's targets are shifted already: shard_batch(targets=) shards them unchanged."""
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    ids = torch.arange(T) % VOCAB
    targets = torch.randint(-1, VOCAB, (T,), generator=torch.Generator().manual_seed(5)).clamp_min(-100)
    targets[targets < 0] = -100
    batch = lht.shard_batch(attention, ids, CU, targets=targets)
    assert torch.equal(batch.targets[0], targets[batch.plan.positions])
    assert batch.num_targets == int((targets != -100).sum())
    with pytest.raises(ValueError, match="labels .* or targets .*, not both"):
        lht.shard_batch(attention, ids, CU, labels=ids, targets=targets)
    with pytest.raises(ValueError, match=r"targets must have input_ids' shape \(71,\), got \(70,\)"):
        lht.shard_batch(attention, ids, CU, targets=targets[:-1])


def test_unsupported_inputs_name_the_layer(group):
    _, sharded = model_pair("llama", torch.float64)
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    ids = torch.randint(0, VOCAB, (T,), generator=torch.Generator().manual_seed(3))
    batch = lht.shard_batch(attention, ids, CU)
    with pytest.raises(ValueError, match=r"LlamaAttention \(layer 0\): run the model inside `with shard_batch"):
        sharded(input_ids=batch.input_ids, position_ids=batch.position_ids)
    mask = torch.ones(1, 1, batch.input_ids.shape[1], batch.input_ids.shape[1], dtype=torch.bool)
    with batch, pytest.raises(ValueError, match=r"layer 0\): an explicit attention mask"):
        sharded(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask)
    with batch, pytest.raises(ValueError, match="batch size must be 1"):
        sharded(input_ids=batch.input_ids.repeat(2, 1), position_ids=batch.position_ids.repeat(2, 1))
    with pytest.raises(ValueError, match="cu_seqlens must rise from 0 to T"):
        lht.shard_batch(attention, ids, [0, 10, 5, T])


def small_model(cls, cfg_cls, **extra):
    """A 1-layer model of a family on the longhaul attention (random weights, float64)."""
    torch.manual_seed(0)
    cfg = cfg_cls(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=128, **extra)
    cfg._attn_implementation = lht.NAME
    return cls(cfg).to(torch.float64)


def test_arguments_that_change_the_attention_are_refused(group):
    """Gemma2's logit softcapping, GPT-OSS's attention sinks, a config made bidirectional (and the
    like) would be ignored: refused."""
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    ids = torch.randint(0, VOCAB, (T,), generator=torch.Generator().manual_seed(3))
    batch = lht.shard_batch(attention, ids, CU)
    gemma2 = small_model(transformers.Gemma2ForCausalLM, transformers.Gemma2Config, attn_logit_softcapping=50.0)
    gpt_oss = small_model(transformers.GptOssForCausalLM, transformers.GptOssConfig, num_local_experts=2,
                          num_experts_per_tok=1, layer_types=["full_attention"])
    bidirectional = small_model(transformers.LlamaForCausalLM, transformers.LlamaConfig, is_causal=False)
    for model, match in ((gemma2, r"Gemma2Attention \(layer 0\): softcap= \(attention logit softcapping\)"),
                         (gpt_oss, r"GptOssAttention \(layer 0\): s_aux= \(attention sinks\)"),
                         (bidirectional, r"LlamaAttention \(layer 0\): only causal")):
        with batch, pytest.raises(ValueError, match=match):
            model(input_ids=batch.input_ids, position_ids=batch.position_ids)

    # The interface itself: arguments that change the result are refused, harmless ones accepted.
    _, sharded = model_pair("llama", torch.float64)
    layer = sharded.model.layers[0].self_attn
    Tl = batch.plan.local_rows
    q, kv = torch.randn(1, 8, Tl, 4, dtype=torch.float64), torch.randn(1, 4, Tl, 4, dtype=torch.float64)
    with batch:
        want, _ = lht.longhaul_attention(layer, q, kv, kv, None, scaling=0.5)
        got, _ = lht.longhaul_attention(layer, q, kv, kv, None, scaling=0.5, softcap=None, s_aux=None, is_causal=True,
                                        position_ids=batch.position_ids, output_attentions=False, use_cache=True)
        assert torch.equal(got, want)
        bias = torch.zeros(1, 8, Tl, Tl, dtype=torch.float64)
        for bad, match in ((dict(softcap=30.0), "softcap="), (dict(s_aux=torch.zeros(8)), "s_aux="),
                           (dict(sinks=torch.zeros(8)), "sinks="), (dict(position_bias=bias), "position_bias="),
                           (dict(head_mask=torch.ones(8)), "head_mask="),
                           (dict(cu_seq_lens_q=torch.tensor([0, Tl])), "cu_seq_lens_q="),
                           (dict(is_causal=False), "only causal"), (dict(output_attentions=True), "output_attentions")):
            with pytest.raises(ValueError, match=r"LlamaAttention \(layer 0\): .*" + match):
                lht.longhaul_attention(layer, q, kv, kv, None, **bad)
        with pytest.raises(ValueError, match=r"layer 0\): scale must be a positive finite number or None, got -1.0"):
            lht.longhaul_attention(layer, q, kv, kv, None, scaling=-1.0)


def test_padding_masks_are_refused_and_all_ones_masks_accepted(group):
    """transformers builds no mask for an attention without a mask function: a 2-D padding mask
    would be dropped silently. longhaul's refuses zeros; an all-ones mask changes nothing."""
    _, sharded = model_pair("mistral", torch.float64)  # its sliding-window mask goes through the same function
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    ids = torch.randint(0, VOCAB, (T,), generator=torch.Generator().manual_seed(3))
    batch = lht.shard_batch(attention, ids, CU)
    Tl = batch.input_ids.shape[1]
    with batch:
        want = sharded(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
        ones = sharded(input_ids=batch.input_ids, position_ids=batch.position_ids,
                       attention_mask=torch.ones(1, Tl, dtype=torch.int64)).logits
    torch.testing.assert_close(ones, want, rtol=0, atol=0)
    padded = torch.ones(1, Tl, dtype=torch.int64)
    padded[0, 0] = 0
    with batch, pytest.raises(ValueError, match="padding .* is not supported; pack documents with cu_seqlens"):
        sharded(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=padded)
    with batch, pytest.raises(ValueError, match=r"layer 0\): an explicit attention mask"):
        sharded(input_ids=batch.input_ids, position_ids=batch.position_ids,
                attention_mask=torch.ones(1, 1, Tl, Tl, dtype=torch.bool))


def test_shard_batch_refuses_what_it_would_flatten_or_truncate(group):
    attention = lht.ContextParallelAttention("ring", "zigzag", group)
    ids = torch.arange(T) % VOCAB
    with pytest.raises(ValueError, match=r"input_ids must be \[T\] or \[1, T\] .*got shape \(2, 71\)"):
        lht.shard_batch(attention, torch.stack([ids, ids]), [0, 2 * T])
    with pytest.raises(ValueError, match="input_ids must hold integers, got dtype torch.float32"):
        lht.shard_batch(attention, ids.float(), CU)
    with pytest.raises(ValueError, match="labels must hold integers, got dtype torch.float64"):
        lht.shard_batch(attention, ids, CU, labels=ids.double() + 0.5)
    with pytest.raises(ValueError, match="targets must hold integers, got dtype torch.float32"):
        lht.shard_batch(attention, ids, CU, targets=ids.float())
    with pytest.raises(ValueError, match=r"labels must have input_ids' shape \(1, 71\), got \(71, 1\)"):
        lht.shard_batch(attention, ids[None], CU, labels=ids[:, None])
    with pytest.raises(ValueError, match="cu_seqlens must hold integers, got dtype torch.float32"):
        lht.shard_batch(attention, ids, torch.tensor(CU, dtype=torch.float32))
    batch = lht.shard_batch(attention, ids[None], CU, labels=ids[None])  # [1, T] as well as [T]
    assert torch.equal(batch.targets, lht.shard_batch(attention, ids, CU).targets)


@pytest.mark.parametrize("fn", [lht.document_positions, lht.document_mask])
def test_document_helpers_check_the_offsets(fn):
    for bad in ([0, 30, 20, 71], [5, 30, 71], [0], [0.0, 30.5, 71.0]):
        with pytest.raises(ValueError, match=rf"{fn.__name__}: cu_seqlens must (rise from 0 to T, got|hold integers)"):
            fn(bad)
    assert fn([0, 3, 5]).shape[-1] == 5
