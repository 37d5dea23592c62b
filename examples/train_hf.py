r"""A Hugging Face LlamaForCausalLM (small config, random init: nothing is downloaded) trained with
its attention context-parallel through longhaul (attn_implementation="longhaul"), on
dataset-decomposition batches from a token store. Every rank of a CP group holds a shard of each
step's packed sequence; CP groups split the step (data parallel) when --cp is below the world.

    mpirun -np 2 python examples/train_hf.py                   # CP=2 over MPI
    torchrun --nproc-per-node 2 examples/train_hf.py           # CP=2 over Gloo
    mpirun -np 4 python examples/train_hf.py --cp 2            # 2 CP groups of 2 ranks
    mpirun -np 2 python examples/train_hf.py --compare         # first step vs the unsharded model
    mpirun -np 2 python examples/train_hf.py --synthetic 8:16384:16384 --tokens-per-step 8192 \
        --min-log2 13 --max-log2 13                            # one 8K-token sequence per step
    python examples/train_hf.py --unsharded                    # the plain model (sdpa), the baseline

Without --data each rank writes the same small synthetic store to a temporary file. --compare
checks, before training, that the first step's loss and every parameter gradient (summed over the
CP group) equal those of the unsharded model with attn_implementation="sdpa" on the same packed
batch (relative 1e-9 in float64, 1e-4 in float32), and exits non-zero otherwise. Prints the loss of
every step and the throughput on rank 0.
"""
import argparse
import math
import os
import shutil
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers

import longhaul
import longhaul.integrations.transformers as lht
from example_args import add_common_arguments, check_model, check_ranges, integers

IGNORE = longhaul.data.IGNORE_TARGET


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, steps=100, lr=3e-3)
    p.add_argument("--synthetic", default="400:40:300", metavar="DOCS:MIN:MAX",
                   help="without --data: documents and their length range in the synthetic store")
    p.add_argument("--cp", type=int, default=0, help="ranks per CP group (default 0: the whole world)")
    p.add_argument("--strategy", default="ring", help="ring, tokenring, ulysses, allgather, hybrid")
    p.add_argument("--layout", default="zigzag", help="zigzag, striped or contiguous")
    p.add_argument("--unsharded", action="store_true",
                   help="no CP: the model with attn_implementation='sdpa' on each whole packed batch")
    p.add_argument("--compare", action="store_true", help="check the first step against the unsharded model")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--hidden", type=int, default=64)
    args = p.parse_args()
    check_args(p, args)
    return args


def check_args(p, a):
    """Stops with a usage error, before any work, on arguments the example cannot run."""
    check_ranges(p, a, ("steps", "hidden", "layers", "heads", "kv_heads", "tokens_per_step"), ("cp", "min_log2", "lr"))
    check_model(p, a, "hidden")
    synthetic = integers(a.synthetic, ":", 3)
    if not (synthetic and synthetic[0] > 0 and 0 < synthetic[1] <= synthetic[2]):
        p.error(f"--synthetic must be DOCS:MIN:MAX with DOCS > 0 and 0 < MIN <= MAX, got {a.synthetic!r}")


def build_model(args, vocab, attn_implementation):
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=2 ** args.max_log2, tie_word_embeddings=False)
    config._attn_implementation = attn_implementation
    torch.manual_seed(args.seed)  # the same initial parameters on every rank and in every mode
    return transformers.LlamaForCausalLM(config).to(getattr(torch, args.dtype))


def unsharded_loss_sum(model, batch):
    """Σ cross-entropy of the whole packed batch on the plain model (its explicit document mask)."""
    logits = model(input_ids=batch.tokens[None], position_ids=lht.document_positions(batch.cu_seqlens)[None],
                   attention_mask=lht.document_mask(batch.cu_seqlens)).logits[0]
    return F.cross_entropy(logits, batch.targets, ignore_index=IGNORE, reduction="sum")


def sharded_loss_sum(model, attention, batch):
    """Σ cross-entropy of this rank's shard (a collective over the CP group: every rank calls it)."""
    sharded = lht.shard_batch(attention, batch.tokens, batch.cu_seqlens, targets=batch.targets)
    with sharded:
        logits = model(input_ids=sharded.input_ids, position_ids=sharded.position_ids).logits
    return sharded.loss(logits) * sharded.num_targets


def compare_first_step(args, model, attention, batch, world):
    """The sharded loss and gradients (summed over the CP group) vs the unsharded model's."""
    plain = build_model(args, model.config.vocab_size, "sdpa")
    plain.load_state_dict(model.state_dict())
    n = float((batch.targets != IGNORE).sum())
    want = unsharded_loss_sum(plain, batch) / n
    want.backward()
    got = sharded_loss_sum(model, attention, batch) / n
    got.backward()
    longhaul.all_reduce_gradients(model.parameters(), attention.group)
    got = attention.group.all_reduce(got.detach().reshape(1).double()).item()
    tol = 1e-9 if args.dtype == "float64" else 1e-4
    worst, where = abs(got - want.item()) / abs(want.item()), "loss"
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        rel = ((p.grad - q.grad).norm() / q.grad.norm().clamp_min(1e-30)).item()
        if rel > worst:
            worst, where = rel, name
    model.zero_grad(set_to_none=True)
    if world.rank == 0:
        print(f"compare: loss sharded {got:.12g} unsharded {want.item():.12g}, largest relative difference "
              f"{worst:.2e} ({where}), tolerance {tol:.0e}", flush=True)
    if not worst <= tol:
        raise SystemExit(f"compare: rank {world.rank}: the sharded step differs from the unsharded model: "
                         f"{where} relative {worst:.3e} > {tol:.0e}")


def main():
    args = parse_args()
    if not args.release_host_memory:
        longhaul.keep_freed_host_memory()  # before the first step's buffers
    world = longhaul.init()
    cp_size = 1 if args.unsharded else (args.cp or world.world_size)
    tmp = None
    if args.data:
        store = longhaul.data.TokenStore(args.data)
    else:  # each rank writes the same documents to its own file: no shared file system needed
        tmp = tempfile.mkdtemp(prefix="longhaul-hf-")
        n_docs, lo, hi = (int(x) for x in args.synthetic.split(":"))
        store = longhaul.data.write_synthetic_store(os.path.join(tmp, "tokens.h5"), n_docs, seed=args.seed,
                                                    lengths=(lo, hi))

    # The step's sequences are split over W / cp_size groups (--unsharded: one rank per group,
    # plain data parallelism; in one process it is the baseline of the sharded runs).
    degrees = longhaul.CpDegrees(cp_size, tokens_per_step=args.tokens_per_step, min_log2=args.min_log2,
                                 max_log2=args.max_log2, heads=args.heads, kv_heads=args.kv_heads,
                                 head_dim=args.hidden // args.heads, strategy=args.strategy, layout=args.layout)
    cp = degrees.cp_for(2 ** args.max_log2)
    attention = lht.ContextParallelAttention(args.strategy, args.layout, cp.group)
    model = build_model(args, store.vocab_size, "sdpa" if args.unsharded else lht.NAME)
    params = list(model.parameters())
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    if world.rank == 0:
        mode = "unsharded (sdpa)" if args.unsharded else f"CP {cp_size} ({args.strategy}/{args.layout})"
        print(f"train_hf: LlamaForCausalLM {sum(p.numel() for p in params)} parameters, {args.dtype}, "
              f"{world.world_size} ranks ({world.launcher}, {world.backend}), {mode}, {store.num_tokens} tokens",
              flush=True)

    # Each step may grow this process by its share of what the host may give (a collective).
    ceiling = longhaul.HostCeiling(world.comm, enabled=not args.no_host_ceiling)
    data = longhaul.data.dd_batches(store, args.tokens_per_step, min_log2=args.min_log2, max_log2=args.max_log2,
                                    seed=args.seed, degrees=degrees)
    timed_tokens, timed_s = 0, 0.0
    for step in range(1, args.steps + 1):
        with ceiling.step(f"step {step}"):
            batch = next(data)
            if step == 1 and args.compare and not args.unsharded and batch.num_tokens:
                compare_first_step(args, model, attention, batch, world)
            t0 = time.perf_counter()
            optim.zero_grad(set_to_none=True)
            local = float((batch.targets != IGNORE).sum())  # this group's targets, counted once per group
            n_targets = max(1.0, world.comm.all_reduce(torch.tensor([local / cp_size], dtype=torch.float64)).item())
            loss_sum = torch.zeros((), dtype=torch.float64)
            if batch.num_tokens:  # none when the step has fewer sequences than groups: only the syncs
                loss_sum = (unsharded_loss_sum(model, batch) if args.unsharded
                            else sharded_loss_sum(model, attention, batch))
                (loss_sum / n_targets).backward()
            # The world's sum: every rank's shard part and every group's sequences.
            longhaul.all_reduce_gradients(params, world.comm)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            loss = world.comm.all_reduce(loss_sum.detach().double().reshape(1)).item() / n_targets
        elapsed = time.perf_counter() - t0
        if step > 2:  # the first steps warm up allocators and thread pools
            timed_tokens, timed_s = timed_tokens + args.tokens_per_step, timed_s + elapsed
        if world.rank == 0:
            print(f"step {step}/{args.steps} loss {loss:.12f} seq_len {batch.seq_len} ({elapsed:.3f} s)", flush=True)
        if not math.isfinite(loss):
            raise SystemExit(f"loss is {loss} at step {step}")
    if world.rank == 0 and timed_s > 0:
        print(f"throughput: {timed_tokens / timed_s:.0f} tokens/s (steps 3-{args.steps}, {timed_tokens} tokens)",
              flush=True)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
