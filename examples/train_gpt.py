"""A plain PyTorch GPT whose attention runs context-parallel through longhaul, trained on
dataset-decomposition batches (longhaul.data.DDSampler). Every rank of a CP group holds a shard of
each sequence; the CP groups split the steps' sequences (data parallel).

    mpirun -np 2 python examples/train_gpt.py                 # CP=2 over MPI
    torchrun --nproc-per-node 2 examples/train_gpt.py         # CP=2 over Gloo
    python examples/train_gpt.py --data tokens.h5 --cp 1      # a store made by `longhaul prep`
    mpirun -np 4 python examples/train_gpt.py --cp auto       # a CP degree per DD bucket (planner)
    python examples/train_gpt.py --device cuda                # one GPU, bf16 autocast
    python examples/train_gpt.py --device cuda --min-log2 13 --max-log2 15 --tokens-per-step 32768
           --doc-lengths 8192,40000 --docs 100 --dim 512 --heads 8 --kv-heads 4 --layers 4   # (one line) 8K-32K tokens
    mpirun -np 8 python examples/train_gpt.py --device cuda   # 8 GPUs: rank r on GPU local_rank % GPUs

--device cuda puts the model, the batches and the attention on the GPU of the rank (local_rank
modulo the GPUs torch sees); on several ranks the longhaul world must move CUDA tensors (NCCL:
one GPU per rank on each node, a build with NCCL), else it stops with the reason. --dtype
bfloat16 (the default on cuda) runs the forward under torch.autocast with float32 master weights
(attention in bf16); float32 is the default on cpu.

Without --data each rank writes the same small synthetic store (documents that repeat a random
phrase: after its first period, attention can copy the rest) to a temporary file, or holds it in
memory when longhaul was built without HDF5. Prints the loss and tokens/s of every step on rank 0,
and the mean tokens/s at the end.
"""
import argparse
import math
import os
import shutil
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import longhaul
from example_args import add_common_arguments, check_model, check_ranges, integers


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, steps=200, lr=1e-2)
    p.add_argument("--cp", default="0",
                   help="CP group size (default 0: the whole world), or auto: each DD bucket's degree from the planner")
    p.add_argument("--memory-gib", type=float, default=0.0, help="--cp auto: memory per rank for one attention layer")
    p.add_argument("--kernel-gflops", type=float, default=0.0,
                   help="--cp auto: the attention kernel's rate per rank (default: measured; required on cuda)")
    p.add_argument("--dense-gflops", type=float, default=0.0,
                   help="--cp auto: the dense layers' rate per rank (default: measured; required on cuda)")
    p.add_argument("--strategy", default="ring")
    p.add_argument("--layout", default="zigzag", help="zigzag, striped, contiguous or balanced")
    p.add_argument("--ulysses-degree", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the model, batches and attention run (cuda: GPU local_rank %% device count)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype: bfloat16 runs under torch.autocast with float32 master weights "
                        "(auto: bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--docs", type=int, default=400, help="synthetic store: number of documents")
    p.add_argument("--doc-lengths", default="40,300",
                   help="synthetic store: MIN,MAX document length (long buckets need documents at least as long)")
    args = p.parse_args()
    check_args(p, args)
    return args


def check_args(p, a):
    """Stops with a usage error, before any work, on arguments the example cannot run."""
    check_ranges(p, a, ("steps", "dim", "layers", "heads", "kv_heads", "ulysses_degree", "tokens_per_step", "docs"),
                 ("min_log2", "lr", "memory_gib", "kernel_gflops", "dense_gflops"))
    if a.cp != "auto" and not a.cp.isdigit():
        p.error(f"--cp must be auto or a CP group size (0: the whole world), got {a.cp!r}")
    check_model(p, a, "dim")
    lengths = integers(a.doc_lengths, ",", 2)
    if not (lengths and 0 < lengths[0] <= lengths[1]):
        p.error(f"--doc-lengths must be MIN,MAX with 0 < MIN <= MAX, got {a.doc_lengths!r}")


# ---- model ----------------------------------------------------------------------------------
def rope(x, positions, theta=10000.0):
    """Rotary embedding of x [T, H, D] at the positions inside each document (on x's device,
    computed in float32, returned in x's dtype)."""
    half = x.shape[-1] // 2
    freq = theta ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angle = positions.to(x.device, torch.float32)[:, None, None] * freq
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cp, plan, positions):
        T = x.shape[0]
        q = self.q(x).view(T, self.heads, self.head_dim)
        k, v = self.kv(x).view(T, 2, self.kv_heads, self.head_dim).unbind(1)
        q, k = rope(q, positions), rope(k, positions)
        out = cp.attention(q, k, v.contiguous(), plan, causal=True)  # the collective: every CP rank calls it
        return self.o(out.reshape(T, -1))


class Block(nn.Module):
    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.attn = Attention(dim, heads, kv_heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, cp, plan, positions):
        x = x + self.attn(self.norm1(x), cp, plan, positions)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, vocab, dim, layers, heads, kv_heads):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, kv_heads) for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens, cp, plan, positions):
        """tokens [Tl] and positions [Tl] (inside each document: plan.doc_positions) of this
        rank's shard, on the model's device."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cp, plan, positions)
        return self.head(self.norm(x))


# ---- training -------------------------------------------------------------------------------
def pick_device(args, world):
    """The rank's device: cpu, or its GPU (the world's choice: local_rank % GPUs), with checks
    that stop with the reason instead of failing inside a collective."""
    if args.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit(f"train_gpt: --device cuda, but torch sees no CUDA device (torch {torch.__version__}, "
                         f"CUDA {torch.version.cuda or 'not built'}); run with --device cpu")
    if not longhaul.info()["cuda_built"]:
        raise SystemExit("train_gpt: --device cuda, but this longhaul was built without CUDA "
                         "(LONGHAUL_WITH_CUDA=OFF); rebuild it with CUDA or run with --device cpu")
    index = world.device if world.device >= 0 else world.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    if world.world_size > 1 and "nccl" not in world.backend:
        raise SystemExit(f"train_gpt: --device cuda on {world.world_size} ranks needs a world that moves CUDA "
                         f"tensors (NCCL: a build with NCCL and one GPU per rank on each node), but this world is "
                         f"backend {world.backend} with {world.local_size} local ranks on "
                         f"{torch.cuda.device_count()} GPU(s); use fewer ranks per node or --device cpu")
    return torch.device("cuda", index)


def compute_dtype(args, device):
    if args.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, args.dtype)


def synthetic_store(args, tmp):
    """The example's embedded data: a file store where HDF5 is built, else the same documents in memory."""
    lo, hi = (int(x) for x in args.doc_lengths.split(","))
    if longhaul.info()["hdf5_built"]:
        return longhaul.data.write_synthetic_store(os.path.join(tmp, "tokens.h5"), n_docs=args.docs, seed=args.seed,
                                                   lengths=(lo, hi))
    return longhaul.data.synthetic_store(n_docs=args.docs, seed=args.seed, lengths=(lo, hi))


def main():
    args = parse_args()
    if not args.release_host_memory:
        longhaul.keep_freed_host_memory()  # before the first step's buffers
    world = longhaul.init()
    device = pick_device(args, world)
    dtype = compute_dtype(args, device)
    cp_arg = args.cp if args.cp == "auto" else (int(args.cp) or world.world_size)
    tmp = None
    if args.data:
        store = longhaul.data.TokenStore(args.data)
    else:  # each rank writes the same documents to its own file: no shared file system needed
        tmp = tempfile.mkdtemp(prefix="longhaul-gpt-")
        store = synthetic_store(args, tmp)

    # The CP group and ContextParallel of every degree in use, split once here.
    degrees = longhaul.CpDegrees(cp_arg, tokens_per_step=args.tokens_per_step, min_log2=args.min_log2,
                                 max_log2=args.max_log2, heads=args.heads, kv_heads=args.kv_heads,
                                 head_dim=args.dim // args.heads, layers=args.layers, dim=args.dim, vocab=store.vocab_size,
                                 strategy=args.strategy, layout=args.layout, ulysses_degree=args.ulysses_degree,
                                 memory_gib=args.memory_gib, kernel_gflops=args.kernel_gflops,
                                 dense_gflops=args.dense_gflops, device=args.device, dtype=dtype)

    torch.manual_seed(args.seed)  # the same initial parameters on every rank (after rank 0's measurements)
    model = GPT(store.vocab_size, args.dim, args.layers, args.heads, args.kv_heads).to(device)  # float32 master weights
    params = list(model.parameters())
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    if world.rank == 0:
        print(f"train_gpt: {world.world_size} ranks ({world.launcher}, {world.backend}), CP degree "
              f"{'auto (length:degree ' + degrees.describe() + ')' if cp_arg == 'auto' else degrees.describe()}, "
              f"{args.strategy}/{args.layout}, {sum(p.numel() for p in params)} parameters, {store.num_tokens} tokens, "
              f"device {device}, compute {str(dtype).removeprefix('torch.')}", flush=True)

    # On the CPU each step may grow this process by its share of what the host may give (a collective).
    ceiling = longhaul.HostCeiling(world.comm, enabled=device.type == "cpu" and not args.no_host_ceiling)
    data = longhaul.data.dd_batches(store, args.tokens_per_step, min_log2=args.min_log2, max_log2=args.max_log2,
                                    seed=args.seed, degrees=degrees)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    timed_tokens, timed_seconds, warmup = 0, 0.0, min(2, args.steps - 1)
    for step in range(1, args.steps + 1):
        with ceiling.step(f"step {step}"):
            t0 = time.perf_counter()
            batch = next(data)
            cp = degrees.cp_for(batch.seq_len)
            optim.zero_grad()
            loss_sum = torch.zeros(())
            tokens = targets = plan = None
            if batch.num_tokens:  # none when the step has fewer sequences than groups: only the syncs
                # The mask the attention applies (causal=True on the plan's documents); layout
                # balanced cuts the sequence by its area.
                mask = longhaul.Mask.causal_document(batch.cu_seqlens)
                plan = cp.plan(batch.num_tokens, batch.cu_seqlens, mask=mask)
                tokens, targets = plan.shard(batch.tokens), plan.shard(batch.targets)  # CPU int64
            local = float((targets != longhaul.data.IGNORE_TARGET).sum()) if plan is not None else 0.0
            n_targets = max(1.0, world.comm.all_reduce(torch.tensor([local])).item())
            if plan is not None:
                # The plan's tables (positions, offsets) are CPU tensors: the shard goes to the device.
                tokens, targets = tokens.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                positions = plan.doc_positions.to(device, non_blocking=True)
                with autocast:
                    logits = model(tokens, cp, plan, positions)
                loss_sum = F.cross_entropy(logits.float(), targets, ignore_index=longhaul.data.IGNORE_TARGET,
                                           reduction="sum")
                (loss_sum / n_targets).backward()
            # Sums over the world whatever the step's degree (a rank whose group had no sequence adds zeros).
            longhaul.all_reduce_gradients(params, world.comm)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            # On the host on every rank (an empty rank's zero too): one transport for the sum.
            loss = world.comm.all_reduce(loss_sum.detach().to("cpu", torch.float32).reshape(1)).item() / n_targets
        seconds = time.perf_counter() - t0  # the .item() above waited for the device
        if step > warmup:  # the first steps warm up (allocator, kernels, planner caches)
            timed_tokens, timed_seconds = timed_tokens + args.tokens_per_step, timed_seconds + seconds
        if world.rank == 0:
            print(f"step {step}/{args.steps} loss {loss:.4f} seq_len {batch.seq_len} cp {batch.cp_degree} "
                  f"({seconds:.2f} s, {args.tokens_per_step / seconds:.0f} tokens/s)", flush=True)
        if not math.isfinite(loss):
            raise SystemExit(f"loss is {loss} at step {step}")
    if world.rank == 0 and timed_seconds > 0:
        print(f"train_gpt: {timed_tokens / timed_seconds:.0f} tokens/s over the world ({world.world_size} ranks, "
              f"{device.type}, {str(dtype).removeprefix('torch.')}), steps {warmup + 1}-{args.steps}", flush=True)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
