"""Run under torchrun: a ContextParallel over a torch Gloo group is still alive when the script
destroys the group and exits. longhaul lets go of the group at interpreter exit (atexit), so torch
tears it down while the interpreter is whole; held into the interpreter's teardown, Gloo's
destruction aborted the process (std::terminate) in 8 of 12 runs. Prints what it did."""
import torch
import torch.distributed as dist

import longhaul

dist.init_process_group("gloo")
T = 256
torch.manual_seed(0)
q = torch.randn(T, 4, 16, requires_grad=True)
k, v = torch.randn(T, 2, 16), torch.randn(T, 2, 16)
cp = longhaul.ContextParallel(strategy="ring", layout="zigzag", group=dist.group.WORLD)
plan = cp.plan(T, torch.tensor([0, 100, 256]))
out = cp.attention(plan.shard(q), plan.shard(k), plan.shard(v), plan, causal=True)
out.sum().backward()
lin = torch.nn.Linear(2, 2)
lin(torch.ones(2)).sum().backward()
longhaul.all_reduce_gradients(lin.parameters(), group=dist.group.WORLD)
dist.destroy_process_group()  # cp, plan and out stay alive until the interpreter exits
print("destroyed the group; exiting with a ContextParallel alive", flush=True)
