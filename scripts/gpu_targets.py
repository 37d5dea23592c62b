#!/usr/bin/env python3
"""The GPU targets, read off what scripts/gpu_check.sh wrote (its $OUT folder): every masked-area
ratio the kernel rows printed (documents and causal windows against the causal rate, forward and
forward + backward, per section of the kernel file: ragged cuDNN, FlashAttention-2 alone, the cuDNN
band route), the emulated-CP aggregate against the single kernel, one layer's tokens/s at P = 4
and 8 against P = 1, and `train --device cuda` tokens/s. Each line says the number, the target and
whether it is met; a file that is missing or holds no such row says so, and every target no row
measured (a section stopped at its time limit, a configuration that failed) is listed as not
measured, so the last line's count covers them all. Only the default routes' kernel rows decide a
kernel target: a section whose name sets a route (LONGHAUL_CUDA_...=) says what its rows would
decide. A row whose check found wrong elements, or whose number is not a number, decides nothing.

    python3 scripts/gpu_targets.py OUT_DIR
"""
import math
import os
import re
import sys

# (mask, dtype, pass) -> the least ratio to the causal rate the targets ask for. Full documents
# (`documents`) get verdicts where they ran; the expected list names causal documents, the family
# causal language models train on.
KERNEL_TARGETS = {
    ("documents", "bf16", "fwd"): 0.80, ("documents", "bf16", "fwd+bwd"): 0.70,
    ("causal_documents", "bf16", "fwd"): 0.80, ("causal_documents", "bf16", "fwd+bwd"): 0.70,
    ("causal_window", "bf16", "fwd"): 0.80, ("causal_window", "bf16", "fwd+bwd"): 0.70,
    ("causal_window", "fp32", "fwd"): 0.50, ("causal_window", "fp32", "fwd+bwd"): 0.50,
}
# The configurations the kernel targets name: (T, H, H_kv) x dtype, each mask and pass above.
KERNEL_SHAPES = [(16384, 16, 16), (16384, 64, 8), (131072, 16, 16), (131072, 64, 8)]
KERNEL_EXPECTED = [(mask, str(t), str(h), str(hkv), "bf16", pas) for mask in ("causal_documents", "causal_window")
                   for t, h, hkv in KERNEL_SHAPES for pas in ("fwd", "fwd+bwd")] + \
                  [("causal_window", "16384", "16", "16", "fp32", pas) for pas in ("fwd", "fwd+bwd")]
CP_TARGET = 0.85      # ring zigzag aggregate over the single kernel, T = 128K, P = 4 and 8
CP_EXPECTED = ["4", "8"]
CP_MAX_ERROR = 2e-2   # a bf16 row further than this from the single kernel's output is wrong
LAYER_TARGET = 0.85   # one layer's tokens/s at P = 4 over P = 1

RATIO = re.compile(r"^# (\w+) vs causal, (\w+) T=(\d+) H=(\d+)/(\d+) D=(\d+) (\w+) (\S+): .* = "
                   r"([0-9.e+-]+|-?nan|-?inf)x the causal rate")
DEFAULT_SECTION = "ragged cuDNN routes (default)"
ROUTE_OVERRIDE = "LONGHAUL_CUDA_"  # in a section's name: its rows ran with a route forced on or off
NOT_A_NUMBER = " (not a number: no verdict)"


def against(value, target, applies=True, counted=True):
    """' (target >= T: met)' or '... NOT met', or '' where no target applies to the row; a row of a
    route that is not the default says what it would decide ('would be met'), which is not counted."""
    if not applies:
        return ""
    if not counted:
        return f" (target >= {target}: would {'be met' if value >= target else 'NOT be met'}; not the default route)"
    return f" (target >= {target}: {'met' if value >= target else 'NOT met'})"


def num(cell):
    """A table cell as a number: the tables print '-' for NaN (and for a value they do not have)."""
    return float("nan") if cell in ("-", "nan", "-nan") else float(cell)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return None


def tables(lines):
    """Every whitespace table in the lines: (header columns, rows as dicts); a last `note` column
    may hold spaces."""
    out, header = [], None
    for line in lines:
        cells = line.split()
        if not cells or line.startswith("#"):
            header = None
            continue
        if cells[0] in ("strategy", "backend"):
            header = cells
            out.append((header, []))
        elif header and (len(cells) == len(header) or (len(cells) > len(header) and header[-1] == "note")):
            # A note (the last column) may hold spaces: the cells past the header's are its words.
            n = len(header) - 1
            out[-1][1].append(dict(zip(header, cells[:n] + [" ".join(cells[n:])])))
    return out


def kernel(lines, seen):
    """Masked-area rate over the causal rate, per section of the kernel file."""
    section, default = DEFAULT_SECTION, True
    for line in lines:
        m = RATIO.match(line)
        if m:
            mask, backend, t, h, hkv, _d, dtype, pas, ratio = m.groups()
            target = KERNEL_TARGETS.get((mask, dtype, pas))
            if target is None:
                continue
            ratio = float(ratio)
            row = f"[{section}] {mask} T={t} H={h}/{hkv} {dtype} {pas}: {ratio:.3f}x"
            if backend != "cuda":  # exact_cuda: the exact path against its own causal rate
                yield f"{row} ({backend}, against its own causal rate: no verdict)"
            elif "one document at this T" in line:  # causal's or full's area: no verdict on documents
                yield row + " (one document at this T: no verdict)"
            elif "(WRONG" in line:
                yield row + " " + line[line.index("(WRONG"):].rstrip(")") + ": no verdict)"
            elif not math.isfinite(ratio):
                yield row + NOT_A_NUMBER
            else:
                if default:
                    seen.add(("kernel", mask, t, h, hkv, dtype, pas))
                yield row + against(ratio, target, counted=default)
        elif line.startswith("# ") and " vs causal, " not in line and not line.startswith(
                ("# bench", "# [", "# merge kernel", "# exit")):
            header = line[2:].strip(" -")
            section, default = header[:90], ROUTE_OVERRIDE not in header  # the whole header: it may be long


def cp(lines, seen):
    """Emulated CP on one GPU: aggregate over the single kernel."""
    for _, rows in tables(lines):
        for r in rows:
            if r.get("strategy") not in (None, "single") and "aggregate_over_single" in r:
                ratio = num(r["aggregate_over_single"])
                error = r.get("max_rel_err")  # absent in tables without the check
                wrong = error is not None and not num(error) <= CP_MAX_ERROR  # a NaN is wrong too
                applies = r["strategy"] == "ring" and r["T"] == "131072" and r.get("layout") == "zigzag"
                if applies and not wrong and math.isfinite(ratio):
                    seen.add(("cp", r["P"]))
                verdict = (f" (WRONG: max_rel_err {num(error):g} > {CP_MAX_ERROR:g}, no verdict)" if wrong
                           else NOT_A_NUMBER if not math.isfinite(ratio)
                           else against(ratio, CP_TARGET, applies))
                yield (f"{r['strategy']} {r['layout']} T={r['T']} P={r['P']}: {ratio:.3f}" + verdict
                       + (f"; simulated {r['simulated_ms']} ms" if "simulated_ms" in r else ""))


def layer(lines, seen):
    """One transformer layer: tokens/s at P over P = 1."""
    for header, rows in tables(lines):
        if "dim" not in header:  # a CP table, not a layer's
            continue
        single = next((num(r["tokens_per_s"]) for r in rows if r.get("P") == "1" and "tokens_per_s" in r), None)
        for r in rows:
            if single and r.get("P") not in (None, "1") and "tokens_per_s" in r:
                ratio = num(r["tokens_per_s"]) / single
                applies = r["P"] == "4" and r["T"] == "131072"
                wrong = r.get("wrong", "?")  # not "0": the P row differs from P = 1 (or was not checked)
                if applies and wrong == "0" and math.isfinite(ratio):
                    seen.add(("layer", "4"))
                verdict = (f" (WRONG: wrong {wrong}, no verdict)" if wrong != "0"
                           else NOT_A_NUMBER if not math.isfinite(ratio)
                           else against(ratio, LAYER_TARGET, applies) + f"; wrong {wrong}")
                yield f"{r['strategy']} T={r['T']} P={r['P']}: {ratio:.3f}" + verdict


def train(lines, seen):
    """longhaul train --device cuda: tokens/s."""
    if any("tokens/s (after" in line for line in lines):
        seen.add(("train",))
    return (line.strip() for line in lines if "tokens/s (after" in line or line.startswith("# longhaul train"))


def unmeasured(seen):
    """The targets no row above measured (a row without a verdict measures none)."""
    for mask, t, h, hkv, dtype, pas in KERNEL_EXPECTED:
        if ("kernel", mask, t, h, hkv, dtype, pas) not in seen:
            yield f"kernel {mask} T={t} H={h}/{hkv} {dtype} {pas} (target >= {KERNEL_TARGETS[(mask, dtype, pas)]})"
    for p in CP_EXPECTED:
        if ("cp", p) not in seen:
            yield f"cp-gpu ring zigzag T=131072 P={p} (target >= {CP_TARGET})"
    if ("layer", "4") not in seen:
        yield f"layer ring T=131072 P=4 (target >= {LAYER_TARGET})"
    if ("train",) not in seen:
        yield "train --device cuda tokens/s"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    seen, verdicts = set(), []
    for name, report in (("kernel_cuda.txt", kernel), ("cp_gpu.txt", cp), ("layer_gpu.txt", layer),
                         ("train_gpu.txt", train)):
        lines = read(os.path.join(folder, name))
        if lines is None:
            print(f"## {name}: missing (its section did not run)")
            continue
        print(f"## {report.__doc__.rstrip('.')}")
        found = list(report(lines, seen))
        verdicts += found
        for line in found or [f"no such rows in {name} (its section failed?)"]:
            print(f"- {line}")
    missing = list(unmeasured(seen))
    if missing:
        print("## Targets no row measured")
        for line in missing:
            print(f"- {line}: not measured")
    met = sum(": met)" in v for v in verdicts)
    not_met = sum("NOT met" in v for v in verdicts)
    print(f"## {met} target lines met, {not_met} NOT met, {len(missing)} targets not measured")


if __name__ == "__main__":
    main()
