"""The arguments the examples share, and their checks: a usage error before any work on values they
cannot run."""


def add_common_arguments(p, steps, lr):
    """The data, model-shape, batch and optimiser flags both examples take (defaults: steps, lr)."""
    p.add_argument("--data", help="token store (HDF5, longhaul prep); default: a synthetic one")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--tokens-per-step", type=int, default=1024)
    p.add_argument("--min-log2", type=int, default=5)
    p.add_argument("--max-log2", type=int, default=7)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--release-host-memory", action="store_true",
                   help="give freed host memory back to the system at once (glibc's policy); by default the "
                        "process keeps it for the next step (longhaul.keep_freed_host_memory)")
    p.add_argument("--no-host-ceiling", action="store_true",
                   help="run the CPU steps without a ceiling; by default each step may grow a process by its share "
                        "of what its host (or the job's memory cgroup) may still give, past which it raises "
                        "torch.OutOfMemoryError naming the step instead of being killed (longhaul.HostCeiling)")


def check_ranges(p, a, positive, non_negative):
    """Every name in `positive` > 0 and every one in `non_negative` >= 0 (attribute names of a)."""
    for names, ok, what in ((positive, lambda x: x > 0, "positive"), (non_negative, lambda x: x >= 0, "0 or more")):
        for name in names:
            if not ok(getattr(a, name)):
                p.error(f"--{name.replace('_', '-')} must be {what}, got {getattr(a, name)}")


def check_model(p, a, width_name):
    """The width (attribute width_name) is heads times an even head size, heads divide by KV heads,
    and the length buckets are in order."""
    width = getattr(a, width_name)
    if width % a.heads or width // a.heads % 2:
        p.error(f"--{width_name} {width} must be --heads {a.heads} times an even head size (rotary embedding)")
    if a.heads % a.kv_heads:
        p.error(f"--heads {a.heads} must be divisible by --kv-heads {a.kv_heads}")
    if a.min_log2 > a.max_log2:
        p.error(f"--min-log2 {a.min_log2} must not exceed --max-log2 {a.max_log2}")


def integers(text, sep, count):
    """text split at sep into `count` integers, or None when it is not that."""
    try:
        values = [int(x) for x in text.split(sep)]
    except ValueError:
        return None
    return values if len(values) == count else None
