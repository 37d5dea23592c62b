"""The reference the Python tests compare longhaul with: torch's scaled_dot_product_attention on
the gathered (global) tensors under a dense boolean mask built from the mask predicate of
docs/design.md's conventions, written here independently of longhaul."""
import torch
import torch.nn.functional as F


def dense_mask(T, cu_seqlens=None, causal=False, window=None):
    """[T, T] bool: query i sees key j."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = torch.ones(T, T, dtype=torch.bool)
    if cu_seqlens is not None:
        doc = torch.bucketize(torch.arange(T), torch.as_tensor(cu_seqlens)[1:], right=True)
        visible &= doc[:, None] == doc[None, :]
    if causal:
        visible &= j <= i
    if window is not None:
        left, right = window
        visible &= (i - j <= left) & (j - i <= right)
    return visible



def family_mask(name, T, cu_seqlens, param=0, param2=0):
    """[T, T] bool of a long-context mask family, from its definition (query i, key j, documents
    [c_d, c_{d+1})): param is the window w, the prefix or the block size; param2 the global tokens."""
    cu = torch.as_tensor(cu_seqlens if cu_seqlens is not None else [0, T])
    pos = torch.arange(T)
    doc = torch.bucketize(pos, cu[1:], right=True)
    i, j = pos[:, None], pos[None, :]
    di, dj = doc[:, None], doc[None, :]
    same, causal = di == dj, j <= i
    n = len(cu) - 1
    if name == "full":
        return torch.ones(T, T, dtype=torch.bool)
    if name == "causal":
        return causal
    if name == "full_document":
        return same
    if name == "causal_document":
        return same & causal
    if name == "share_question":
        if n == 1:
            return causal
        head = (di <= 1) & (dj <= 1) & causal  # question + first answer: one causal block
        return head | ((di >= 2) & ((dj == 0) | (same & causal)))
    if name == "causal_blockwise":
        return (same & causal) | ((di == n - 1) & (j < cu[n - 1]))
    if name == "prefix_lm_causal":
        return causal | ((i < param) & (j < param))
    if name == "prefix_lm_document":
        start = cu[doc]
        end = torch.minimum(start + param, cu[doc + 1])
        return same & (causal | ((i < end[:, None]) & (j < end[:, None])))
    if name == "sliding_window":
        return (i - j).abs() <= param
    if name == "sliding_window_causal":
        return ((i - j) >= 0) & ((i - j) <= param)
    if name == "global_sliding_window":
        return (i < param2) | (j < param2) | ((i - j).abs() <= param)
    if name == "block_causal_document":
        bi, bj = (pos - cu[doc])[:, None] // param, (pos - cu[doc])[None, :] // param
        return same & (bj <= bi)
    raise ValueError(f"unknown family {name}")

def sdpa(q, k, v, mask):
    """Attention of [T, H, D] q and [T, H_kv, D] k, v (GQA by repeating each KV head H/H_kv times)."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask)
    return out.transpose(0, 1)


def sdpa_with_grads(q, k, v, dout, mask):
    """(out, dq, dk, dv) of SDPA for the upstream gradient dout, in the inputs' dtype."""
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = sdpa(q, k, v, mask)
    out.backward(dout)
    return out.detach(), q.grad, k.grad, v.grad


# Tolerance rule (flash-attention's). float64: longhaul and SDPA agree to
# 1e-9 of the largest reference value. Lower precision: with ref = SDPA in float64 on the same
# (rounded) inputs, longhaul's max error may be at most 4x that of SDPA run naively in the tested
# dtype, plus a floor of a few units in the last place for the cases where SDPA happens to be exact.
FLOOR = {torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def assert_close(ours, ref64, naive, what):
    ours, ref64 = ours.double(), ref64.double()
    scale = max(1.0, ref64.abs().max().item())
    err = (ours - ref64).abs().max().item()
    if naive is None:
        bound = 1e-9 * scale
    else:
        bound = 4 * (naive.double() - ref64).abs().max().item() + FLOOR[naive.dtype] * scale
    assert err <= bound, f"{what}: max error {err:.3g} > bound {bound:.3g}"
