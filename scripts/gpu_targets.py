#!/usr/bin/env python3
"""The GPU targets, read off what scripts/gpu_check.sh wrote (its $OUT folder): every masked-area
ratio the kernel rows printed (documents and causal windows against the causal rate, forward and
forward + backward, per section of the kernel file: ragged cuDNN, FlashAttention-2 alone, the cuDNN
band route), the emulated-CP aggregate against the single kernel, one layer's tokens/s at P = 4
and 8 against P = 1, and `train --device cuda` tokens/s. Each line says the number, the target and
whether it is met; a file that is missing or holds no such row says so.

    python3 scripts/gpu_targets.py OUT_DIR
"""
import os
import re
import sys

# (mask, dtype, pass) -> the least ratio to the causal rate the targets ask for.
KERNEL_TARGETS = {
    ("documents", "bf16", "fwd"): 0.80, ("documents", "bf16", "fwd+bwd"): 0.70,
    ("causal_documents", "bf16", "fwd"): 0.80, ("causal_documents", "bf16", "fwd+bwd"): 0.70,
    ("causal_window", "bf16", "fwd"): 0.80, ("causal_window", "bf16", "fwd+bwd"): 0.70,
    ("causal_window", "fp32", "fwd"): 0.50, ("causal_window", "fp32", "fwd+bwd"): 0.50,
}
CP_TARGET = 0.85      # ring zigzag aggregate over the single kernel, T = 128K, P = 4 and 8
LAYER_TARGET = 0.85   # one layer's tokens/s at P = 4 over P = 1

RATIO = re.compile(r"^# (\w+) vs causal, (\w+) T=(\d+) H=(\d+)/(\d+) D=(\d+) (\w+) (\S+): .* = ([0-9.e+-]+)x the causal rate")


def verdict(value, target):
    return "met" if value >= target else "NOT met"


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return None


def tables(lines):
    """Every whitespace table in the lines: (header columns, rows as dicts)."""
    out, header = [], None
    for line in lines:
        cells = line.split()
        if not cells or line.startswith("#"):
            header = None
            continue
        if cells[0] in ("strategy", "backend"):
            header = cells
            out.append((header, []))
        elif header and len(cells) == len(header):
            out[-1][1].append(dict(zip(header, cells)))
    return out


def kernel(lines):
    print("## kernel rows: masked-area rate over the causal rate (per section of the kernel file)")
    section, found = "ragged cuDNN routes (default)", 0
    for line in lines:
        m = RATIO.match(line)
        if m:
            mask, backend, t, h, hkv, d, dtype, pas, ratio = m.groups()
            target = KERNEL_TARGETS.get((mask, dtype, pas))
            if target is None:
                continue
            found += 1
            print(f"- [{section}] {mask} T={t} H={h}/{hkv} {dtype} {pas}: {float(ratio):.3f}x "
                  f"(target >= {target}: {verdict(float(ratio), target)})")
        elif line.startswith("# ") and not line.startswith(("# bench kernel", "# full vs causal", "# merge kernel",
                                                              "# exit")):
            section = line[2:].strip(" -")[:90]
    if not found:
        print("- no ratio rows (the kernel section did not run or failed)")


def cp(lines):
    print("## emulated CP on one GPU: aggregate over the single kernel")
    found = 0
    for _, rows in tables(lines):
        for r in rows:
            if r.get("strategy") in (None, "single") or "aggregate_over_single" not in r:
                continue
            found += 1
            ratio = float(r["aggregate_over_single"])
            targeted = r["strategy"] == "ring" and r["T"] == "131072"
            target = f" (target >= {CP_TARGET}: {verdict(ratio, CP_TARGET)})" if targeted else ""
            print(f"- {r['strategy']} {r['layout']} T={r['T']} P={r['P']}: {ratio:.3f}{target}"
                  + (f"; simulated {r['simulated_ms']} ms" if "simulated_ms" in r else ""))
    if not found:
        print("- no CP rows")


def layer(lines):
    print("## one transformer layer: tokens/s at P over P = 1")
    found = 0
    for header, rows in tables(lines):
        if "dim" not in header:  # a CP table, not a layer's
            continue
        single = next((float(r["tokens_per_s"]) for r in rows if r.get("P") == "1" and "tokens_per_s" in r), None)
        for r in rows:
            if single and r.get("P") not in (None, "1") and "tokens_per_s" in r:
                found += 1
                ratio = float(r["tokens_per_s"]) / single
                targeted = r["P"] == "4" and r["T"] == "131072"
                target = f" (target >= {LAYER_TARGET}: {verdict(ratio, LAYER_TARGET)})" if targeted else ""
                print(f"- {r['strategy']} T={r['T']} P={r['P']}: {ratio:.3f}{target}; wrong {r.get('wrong', '?')}")
    if not found:
        print("- no layer rows")


def train(lines):
    print("## longhaul train --device cuda")
    hits = [line for line in lines if "tokens/s (after" in line or line.startswith("# longhaul train")]
    for line in hits:
        print(f"- {line.strip()}")
    if not hits:
        print("- no tokens/s line")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    for name, report in (("kernel_cuda.txt", kernel), ("cp_gpu.txt", cp), ("layer_gpu.txt", layer),
                         ("train_gpu.txt", train)):
        lines = read(os.path.join(folder, name))
        if lines is None:
            print(f"## {name}: missing (its section did not run)")
        else:
            report(lines)


if __name__ == "__main__":
    main()
