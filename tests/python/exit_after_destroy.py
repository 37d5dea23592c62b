"""Run under torchrun. Mode `wrapped` (the default): a ContextParallel over a torch Gloo group is
still alive when the script destroys the group and exits. longhaul lets go of the group at
interpreter exit (atexit), so torch tears it down while the interpreter is whole; held into the
interpreter's teardown, Gloo's destruction aborted the process (std::terminate) in 8 of 12 runs.
Mode `world`: longhaul's own world (longhaul.init() under torchrun: a Gloo group longhaul makes
over the launcher's store) is let go of at exit the same way: a handler registered before the
package's runs after it (atexit is last-in, first-out) and finds the world released. Prints what
it did; exits 3 when the world was not released."""
import atexit
import os
import sys

mode = sys.argv[1] if len(sys.argv) > 1 else "wrapped"


def world_released_at_exit():
    try:
        world.comm.all_reduce(torch.ones(1))
    except longhaul.CommError as e:
        if "released when the interpreter exited" in str(e):
            print("the world was released at exit", flush=True)
            return
        print(f"FAIL: unexpected error after the exit handler: {e}", flush=True)
    else:
        print("FAIL: longhaul's world still worked after its exit handler", flush=True)
    os._exit(3)


if mode == "world":
    atexit.register(world_released_at_exit)  # before longhaul's own handler: runs after it

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import longhaul  # noqa: E402

T = 256
torch.manual_seed(0)
q = torch.randn(T, 4, 16, requires_grad=True)
k, v = torch.randn(T, 2, 16), torch.randn(T, 2, 16)
if mode == "world":
    world = longhaul.init(log_config=False)
    assert world.backend.startswith("c10d"), world.backend
    cp = longhaul.ContextParallel(strategy="ring", layout="zigzag")
else:
    dist.init_process_group("gloo")
    cp = longhaul.ContextParallel(strategy="ring", layout="zigzag", group=dist.group.WORLD)
plan = cp.plan(T, torch.tensor([0, 100, 256]))
out = cp.attention(plan.shard(q), plan.shard(k), plan.shard(v), plan, causal=True)
out.sum().backward()
if mode == "world":
    print("exiting with longhaul's world and a ContextParallel over it alive", flush=True)
else:
    lin = torch.nn.Linear(2, 2)
    lin(torch.ones(2)).sum().backward()
    longhaul.all_reduce_gradients(lin.parameters(), group=dist.group.WORLD)
    dist.destroy_process_group()  # cp, plan and out stay alive until the interpreter exits
    print("destroyed the group; exiting with a ContextParallel alive", flush=True)
