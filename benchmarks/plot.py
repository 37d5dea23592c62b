#!/usr/bin/env python3
"""Figures from longhaul benchmark rows (JSON lines).

Usage:
    python3 benchmarks/plot.py ROWS.jsonl [MORE.jsonl ...] -o DIR

Each input line is one JSON object (a row of `longhaul bench ... --json` or
`longhaul simulate --json`); blank lines and lines starting with '#' are ignored. The row's
"level" key says which figures it feeds; rows of another level (or none) are ignored with one
note on stderr. Missing, null and NaN values are skipped. Each written figure's path is printed
on stdout; the exit status is 0 when at least one figure was written, 1 otherwise (unreadable
file, a line that is not a JSON object, or no plottable rows).

Figures (PNG, dpi 120, written into DIR):

  level "kernel" (local attention kernels):
    kernel_tflops.png          one panel per mask: TFLOP/s (gflops / 1000) vs T, one line per
                               backend / dtype / pass (and H/H_kv/D when several occur).
                               sgemm rows and rows without T or gflops are skipped.
  level "distributed" (measured context parallelism):
    distributed_tflops.png     one panel per mask: forward TFLOP/s per rank vs P, one line per
                               strategy / layout (the LongCA-bench shape).
    predicted_vs_measured.png  planner (predicted_ms, o) and simulator (simulated_ms, x) against
                               the measured fwd_ms + bwd_ms, log-log, with y = x and a +-15% band;
                               the title and stdout give each predictor's median |pred/meas - 1|
                               and its worst row; stdout also gives them per strategy and P.
  level "simulated" (the simulator's virtual timings):
    simulated_tflops.png       masks with one tokens-per-GPU value (T/P; weak scaling): one panel
                               per mask, forward TFLOP/s per GPU vs P, one line per strategy.
    simulated_scaling_<mask>.png  masks with several T/P (a strong-scaling sweep): one column per
                               T; top row TFLOP/s per GPU vs P, bottom row peak memory per GPU
                               (GiB) vs P with the device memory dashed ("device_memory_gib").
    simulated_winner.png       with several T and several P: per mask, a (T, P) table of the
                               strategy with the highest forward TFLOP/s among feasible rows.

Keys read (others are ignored; "?" where a text key is missing):
  kernel:      level, mask, T, gflops, backend, dtype, pass, H, H_kv, D, wrong
  distributed: level, strategy, layout, mask, P, T, fwd_tflops_per_rank, fwd_ms, bwd_ms,
               predicted_ms, simulated_ms, wrong
  simulated:   level, strategy, layout, mask, P, T, fwd_tflops, peak_mib, note,
               device_memory_gib (optional)

A strategy has the same colour in every figure (ring, allgather, tokenring, ulysses, hybrid, rsa
first; others take the next colours).
"""
import argparse
import json
import math
import os
import statistics
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
except ImportError:  # reported by main(), so that --help works without matplotlib
    plt = None

PROG = "plot.py"
DPI = 120
LEVELS = ("kernel", "distributed", "simulated")
REQUIRED = {"kernel": "needs mask, T and gflops",
            "distributed": "needs strategy, mask, P and fwd_tflops_per_rank, "
                           "or fwd_ms + bwd_ms with predicted_ms / simulated_ms",
            "simulated": "needs strategy, mask, P, T and fwd_tflops"}
EXPECTED = "expected JSON lines with " + ", ".join(f'"level": "{k}" ({v})' for k, v in REQUIRED.items())
KNOWN_STRATEGIES = ("ring", "allgather", "tokenring", "ulysses", "hybrid", "rsa")
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
LAYOUT_STYLES = {"zigzag": "-", "striped": "--", "contiguous": ":"}
BAND = 0.15  # the shaded band of predicted_vs_measured.png: +-15 %


class PlotError(Exception):
    """An input problem: printed as one line and exit status 1."""


def note(message):
    print(f"{PROG}: note: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------- reading

def read_rows(paths):
    """All JSON objects of the files, in order; '#' and blank lines skipped."""
    rows = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except (OSError, UnicodeDecodeError) as e:
            raise PlotError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}")
        for lineno, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise PlotError(f"{path}, line {lineno}: not JSON ({e.msg} at column {e.colno})")
            if not isinstance(row, dict):
                raise PlotError(f"{path}, line {lineno}: not a JSON object (a row is {{\"key\": value, ...}})")
            rows.append(row)
    return rows


def split_levels(rows):
    """{level: rows} for the known levels; one stderr note for the rest."""
    by_level = {level: [] for level in LEVELS}
    unknown = {}
    for row in rows:
        level = row.get("level")
        if level in by_level:
            by_level[level].append(row)
        else:
            name = repr(level) if level is not None else "missing"
            unknown[name] = unknown.get(name, 0) + 1
    if unknown:
        what = ", ".join(f"{name} ({plural(n, 'row')})" for name, n in sorted(unknown.items()))
        note(f"ignored rows of unknown level: {what}; known levels: {', '.join(LEVELS)}")
    return by_level


def num(row, key):
    """The row's finite number under key, or None (missing, null, NaN, '-', not a number)."""
    value = row.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def text(row, key, default="?"):
    value = row.get(key)
    return default if value is None else str(value)


def note_wrong(level, rows):
    n = sum(1 for row in rows if (num(row, "wrong") or 0) > 0)  # -1: not checked (--no-check)
    if n:
        note(f"{plural(n, level + ' row')} with wrong > 0 (plotted anyway)")


# ---------------------------------------------------------------------------------- formatting

def fmt_tokens(n):
    """131072 -> '128K', 1048576 -> '1M', 1536 -> '1.5K'."""
    for div, suffix in ((2 ** 30, "G"), (2 ** 20, "M"), (2 ** 10, "K")):
        if n >= div:
            return f"{n / div:.4g}{suffix}"
    return f"{n:.4g}"


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt_int(n):
    return f"{n:.0f}"


def strategy_colours(rows):
    """Fixed colours for the known strategies, the next ones for the others (sorted)."""
    others = sorted({text(r, "strategy") for r in rows} - set(KNOWN_STRATEGIES))
    names = list(KNOWN_STRATEGIES) + others
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def strategy_rank(colours, strategy):
    """Legend order: the colour mapping's order (known strategies first)."""
    names = list(colours)
    return names.index(strategy) if strategy in names else len(names)


def lighten(colour, amount=0.55):
    r, g, b = to_rgb(colour)
    return (1 - amount + amount * r, 1 - amount + amount * g, 1 - amount + amount * b)


# ---------------------------------------------------------------------------------- plotting helpers

def median_by_x(points):
    """Sorted xs and the median y of each x (repeated runs, several files)."""
    ys = {}
    for x, y in points:
        ys.setdefault(x, []).append(y)
    xs = sorted(ys)
    return xs, [statistics.median(ys[x]) for x in xs]


def log2_axis(ax, values, fmt):
    """Log2 x axis with ticks only at the values present."""
    values = sorted(set(values))
    ax.set_xscale("log", base=2)
    ax.set_xticks(values, [fmt(v) for v in values])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if len(values) == 1:
        ax.set_xlim(values[0] / 1.6, values[0] * 1.6)


def plain_log_labels(axis):
    """Log-axis labels as plain numbers (500, 1000, 2000), minor ticks labelled at 2 and 5."""
    def minor(v, _):
        mantissa = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
        return f"{v:g}" if round(mantissa, 6) in (2, 5) else ""
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def panel_grid(n, width=5.0, height=3.8, max_cols=3):
    """A figure with n panels (unused grid cells hidden), constrained layout."""
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.8),
                             squeeze=False, layout="constrained")
    flat = [ax for line in axes for ax in line]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def figure_legend(fig, axes, ncol=4):
    """One legend below the panels with every distinct label of the axes."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:  # as many columns as fit the figure's width (about 0.075 in per character at 9 pt)
        column_in = 0.075 * max(len(label) for label in seen) + 0.7
        ncol = max(1, min(ncol, len(seen), int(fig.get_figwidth() // column_in)))
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center",
                   ncol=ncol, fontsize=9, frameon=False)


def save(fig, outdir, name):
    path = os.path.join(outdir, name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(path)
    return path


def varying(rows, keys):
    """The keys among `keys` that take more than one value in rows."""
    return [k for k in keys if len({str(r.get(k)) for r in rows}) > 1]


def varies_within(rows, group_keys, key_fn):
    """Whether key_fn(row) takes several values inside one group of rows with equal group_keys."""
    seen = {}
    for row in rows:
        seen.setdefault(tuple(str(row.get(k)) for k in group_keys), set()).add(key_fn(row))
    return any(len(values) > 1 for values in seen.values())


def size_split(rows, group_keys):
    """Where rows of one group (equal group_keys) have several T: a function naming a row's line,
    by T ('T=1M') or by tokens per rank ('8K per rank'), whichever gives fewer lines; else one
    that names none (None)."""
    if not all(num(r, "T") for r in rows) or not varies_within(rows, group_keys, lambda r: num(r, "T")):
        return lambda row: None
    if len({num(r, "T") for r in rows}) <= len({tokens_per_rank(r) for r in rows}):
        return lambda row: f"T={fmt_tokens(num(row, 'T'))}"
    return lambda row: f"{fmt_tokens(tokens_per_rank(row))} per rank"


def tokens_per_rank(row):
    return num(row, "T") / num(row, "P")


def masks_of(rows):
    return sorted({text(r, "mask") for r in rows})


# ---------------------------------------------------------------------------------- kernel

def kernel_rows(rows):
    keep = []
    for row in rows:
        mask = text(row, "mask", "")
        if mask in ("", "-", "sgemm") or num(row, "gflops") is None:
            continue
        T = num(row, "T")
        if T is None or T <= 0:
            continue
        keep.append(row)
    return keep


def plot_kernel(rows, outdir):
    rows = kernel_rows(rows)
    if not rows:
        return []
    shape_keys = varying(rows, ["H", "H_kv", "D"])

    def series(row):
        label = f"{text(row, 'backend')} {text(row, 'dtype')}"
        if shape_keys:
            label += f" H/H_kv/D {text(row, 'H')}/{text(row, 'H_kv')}/{text(row, 'D')}"
        return label, text(row, "pass")

    colour_of = {}
    for row in rows:
        colour_of.setdefault(series(row)[0], PALETTE[len(colour_of) % len(PALETTE)])
    masks = masks_of(rows)
    fig, axes = panel_grid(len(masks))
    for ax, mask in zip(axes, masks):
        lines = {}
        mask_rows = [r for r in rows if text(r, "mask") == mask]
        for row in mask_rows:
            lines.setdefault(series(row), []).append((num(row, "T"), num(row, "gflops") / 1000))
        for (label, pass_), points in sorted(lines.items()):
            xs, ys = median_by_x(points)
            ax.plot(xs, ys, marker="o", color=colour_of[label],
                    linestyle="-" if pass_ == "fwd" else "--", label=f"{label} {pass_}")
        log2_axis(ax, [num(r, "T") for r in mask_rows], fmt_tokens)
        ax.set_ylim(bottom=0)
        ax.set_title(f"mask: {mask}")
        ax.set_xlabel("sequence length T (tokens)")
        ax.set_ylabel("TFLOP/s (masked area)")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Local attention kernel throughput (solid: fwd, dashed: fwd+bwd)")
    figure_legend(fig, axes)
    return [save(fig, outdir, "kernel_tflops.png")]


# ---------------------------------------------------------------------------------- distributed

def plot_distributed_tflops(rows, outdir, colours):
    rows = [r for r in rows if num(r, "P") and num(r, "fwd_tflops_per_rank") is not None]
    if not rows:
        return []
    split = size_split(rows, ["strategy", "layout", "mask", "P"])
    masks = masks_of(rows)
    fig, axes = panel_grid(len(masks))
    for ax, mask in zip(axes, masks):
        mask_rows = [r for r in rows if text(r, "mask") == mask]
        lines = {}
        for row in mask_rows:
            key = (text(row, "strategy"), text(row, "layout"), split(row))
            lines.setdefault(key, []).append((num(row, "P"), num(row, "fwd_tflops_per_rank")))
        order = sorted(lines, key=lambda key: (strategy_rank(colours, key[0]), str(key)))
        for strategy, layout, size in order:
            xs, ys = median_by_x(lines[(strategy, layout, size)])
            label = f"{strategy} / {layout}" + (f" / {size}" if size else "")
            ax.plot(xs, ys, marker="o", color=colours.get(strategy, "black"),
                    linestyle=LAYOUT_STYLES.get(layout, "-."), label=label)
        log2_axis(ax, [num(r, "P") for r in mask_rows], fmt_int)
        ax.set_ylim(bottom=0)
        ax.set_title(f"mask: {mask}")
        ax.set_xlabel("ranks P")
        ax.set_ylabel("forward TFLOP/s per rank")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Measured context parallelism: forward throughput per rank")
    figure_legend(fig, axes)
    return [save(fig, outdir, "distributed_tflops.png")]


def prediction_points(rows, key):
    """[(measured_ms, predicted_ms, row)] for the rows with both times and key."""
    points = []
    for row in rows:
        fwd, bwd, pred = num(row, "fwd_ms"), num(row, "bwd_ms"), num(row, key)
        if fwd is not None and bwd is not None and pred is not None and fwd + bwd > 0 and pred > 0:
            points.append((fwd + bwd, pred, row))
    return points


def row_name(row):
    return f"{text(row, 'strategy')}/{text(row, 'layout')}/{text(row, 'mask')} P={fmt_int(num(row, 'P') or 0)}"


def prediction_stats(points):
    """(median |pred/meas - 1|, the worst signed pred/meas - 1, its row)."""
    errors = [(pred / meas - 1, row) for meas, pred, row in points]
    worst, worst_row = max(errors, key=lambda error_row: abs(error_row[0]))
    return statistics.median(abs(e) for e, _ in errors), worst, worst_row


def prediction_summary(name, points):
    """The stdout line: median |pred/meas - 1| and the worst row, or that there is none."""
    if not points:
        return f"predicted vs measured ({name}): no rows with a value"
    median, worst, row = prediction_stats(points)
    return (f"predicted vs measured ({name}): median |pred/meas - 1| = {100 * median:.1f}% over "
            f"{plural(len(points), 'row')}; worst {100 * worst:+.1f}% at {row_name(row)}")


def title_line(name, points):
    if not points:
        return f"{name}: no values"
    median, worst, row = prediction_stats(points)
    return (f"{name}: median |pred/meas − 1| {100 * median:.1f}% ({plural(len(points), 'row')}), "
            f"worst {100 * worst:+.1f}% at {row_name(row)}")


def plot_predicted_vs_measured(rows, outdir, colours):
    predictors = [("planner", "predicted_ms", "o"), ("simulator", "simulated_ms", "x")]
    points = {name: prediction_points(rows, key) for name, key, _ in predictors}
    summaries = [prediction_summary(name, points[name]) for name, _, _ in predictors]
    if not any(points.values()):
        note("no distributed rows with fwd_ms, bwd_ms and predicted_ms or simulated_ms: "
             "predicted_vs_measured.png not written")
        return []
    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    strategies = set()
    for name, _, marker in predictors:
        for meas, pred, row in points[name]:
            strategy = text(row, "strategy")
            strategies.add(strategy)
            ax.scatter(meas, pred, marker=marker, s=45, color=colours.get(strategy, "black"),
                       facecolors="none" if marker == "o" else None, linewidths=1.5)
    values = [v for pts in points.values() for meas, pred, _ in pts for v in (meas, pred)]
    lo, hi = min(values) / 1.3, max(values) * 1.3
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
    ax.fill_between([lo, hi], [lo * (1 - BAND), hi * (1 - BAND)], [lo * (1 + BAND), hi * (1 + BAND)],
                    color="grey", alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    plain_log_labels(ax.xaxis)
    plain_log_labels(ax.yaxis)
    ax.set_xlabel("measured fwd + bwd time (ms)")
    ax.set_ylabel("predicted fwd + bwd time (ms)")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colours.get(s, "black"), linewidth=6, label=s)
               for s in sorted(strategies, key=lambda s: strategy_rank(colours, s))]
    handles += [Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="",
                       label="planner (predicted_ms)"),
                Line2D([], [], color="black", marker="x", linestyle="", label="simulator (simulated_ms)"),
                Line2D([], [], color="black", linewidth=1, label="y = x"),
                Patch(color="grey", alpha=0.2, label=f"±{100 * BAND:.0f}%")]
    ax.legend(handles=handles, fontsize=9, loc="upper left")
    ax.set_title("\n".join(["Predicted vs measured time (fwd + bwd per step)"] +
                           [title_line(name, points[name]) for name, _, _ in predictors]), fontsize=9.5)
    for line in summaries + per_strategy_table(points):
        print(line)
    return [save(fig, outdir, "predicted_vs_measured.png")]


def per_strategy_table(points):
    """Lines of a table: per strategy and P, each predictor's median |pred/meas - 1| and worst row."""
    groups = {}
    for name, pts in points.items():
        for point in pts:
            row = point[2]
            groups.setdefault((text(row, "strategy"), num(row, "P") or 0), {}).setdefault(name, []).append(point)
    lines = [f"{'strategy':10s} {'P':>4s} {'rows':>4s}" +
             "".join(f"  {name + ': median':>17s}  {'worst (mask, p/m)':30s}" for name in points)]
    for strategy, p in sorted(groups, key=lambda key: (key[1], key[0])):
        cells = []
        for name in points:
            pts = groups[(strategy, p)].get(name, [])
            if not pts:
                cells.append(f"  {'-':>17s}  {'':30s}")
                continue
            median, worst, row = prediction_stats(pts)
            cells.append(f"  {100 * median:16.1f}%  {text(row, 'mask'):22s} {1 + worst:7.2f}")
        count = max(len(pts) for pts in groups[(strategy, p)].values())
        lines.append(f"{strategy:10s} {fmt_int(p):>4s} {count:4d}" + "".join(cells))
    return lines


def plot_distributed(rows, outdir, colours):
    if not rows:
        return []
    note_wrong("distributed", rows)
    return plot_distributed_tflops(rows, outdir, colours) + plot_predicted_vs_measured(rows, outdir, colours)


# ---------------------------------------------------------------------------------- simulated

def infeasible(row):
    return text(row, "note", "-").startswith("infeasible")


def sim_label_fn(rows):
    """Line labels: the strategy, plus the layout where one strategy has several at a point."""
    with_layout = varies_within(rows, ["strategy", "mask", "P", "T"], lambda r: text(r, "layout"))
    return lambda r: text(r, "strategy") + (f" / {text(r, 'layout')}" if with_layout else "")


def draw_strategy_lines(ax, rows, y_of, colours, label_of):
    """One line per label over P (median of repeated rows); rows without a y are skipped."""
    lines = {}
    for row in rows:
        y = y_of(row)
        if y is not None:
            lines.setdefault(label_of(row), ([], text(row, "strategy")))[0].append((num(row, "P"), y))
    for label in sorted(lines, key=lambda label: (strategy_rank(colours, lines[label][1]), label)):
        points, strategy = lines[label]
        xs, ys = median_by_x(points)
        ax.plot(xs, ys, marker="o", color=colours.get(strategy, "black"), label=label)


def plot_simulated_tflops(rows, masks, outdir, colours, label_of):
    fig, axes = panel_grid(len(masks))
    for ax, mask in zip(axes, masks):
        mask_rows = [r for r in rows if text(r, "mask") == mask]
        tpr = tokens_per_rank(mask_rows[0])
        draw_strategy_lines(ax, [r for r in mask_rows if num(r, "fwd_tflops") is not None],
                            lambda r: num(r, "fwd_tflops"), colours, label_of)
        log2_axis(ax, [num(r, "P") for r in mask_rows], fmt_int)
        ax.set_ylim(bottom=0)
        ax.set_title(f"mask: {mask} ({fmt_tokens(tpr)} tokens per GPU)")
        ax.set_xlabel("GPUs P")
        ax.set_ylabel("forward TFLOP/s per GPU")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Simulated weak scaling: forward throughput per GPU")
    figure_legend(fig, axes)
    return save(fig, outdir, "simulated_tflops.png")


def plot_simulated_scaling(rows, mask, outdir, colours, label_of):
    Ts = sorted({num(r, "T") for r in rows})
    Ps = [num(r, "P") for r in rows]
    fig, axes = plt.subplots(2, len(Ts), figsize=(3.6 * len(Ts) + 0.5, 7.5), squeeze=False,
                             sharex=True, sharey="row", layout="constrained")
    device = [num(r, "device_memory_gib") for r in rows if num(r, "device_memory_gib") is not None]

    def peak_gib(row):
        return None if num(row, "peak_mib") is None else num(row, "peak_mib") / 1024

    for col, T in enumerate(Ts):
        col_rows = [r for r in rows if num(r, "T") == T]
        top, bottom = axes[0][col], axes[1][col]
        draw_strategy_lines(top, [r for r in col_rows if num(r, "fwd_tflops") is not None],
                            lambda r: num(r, "fwd_tflops"), colours, label_of)
        draw_strategy_lines(bottom, col_rows, peak_gib, colours, label_of)
        for row in col_rows:  # infeasible points: their memory is why
            if infeasible(row) and peak_gib(row) is not None:
                bottom.scatter(num(row, "P"), peak_gib(row), marker="x", s=80, zorder=3,
                               color=colours.get(text(row, "strategy"), "black"))
        if device:
            bottom.axhline(max(device), color="black", linestyle="--", linewidth=1,
                           label=f"device memory ({max(device):.0f} GiB)")
        top.set_title(f"T = {fmt_tokens(T)} tokens")
        bottom.set_xlabel("GPUs P")
        for ax in (top, bottom):
            log2_axis(ax, Ps, fmt_int)
            ax.grid(True, alpha=0.3)
    axes[0][0].set_ylim(bottom=0)
    axes[1][0].set_yscale("log")  # strategies differ by orders of magnitude
    peaks = [peak_gib(r) for r in rows if peak_gib(r)] + device
    if peaks:
        axes[1][0].set_ylim(top=2 * max(peaks))
    axes[1][0].yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axes[0][0].set_ylabel("forward TFLOP/s per GPU")
    axes[1][0].set_ylabel("peak memory per GPU (GiB)")
    if any(infeasible(r) and peak_gib(r) is not None for r in rows):
        axes[1][0].scatter([], [], marker="x", color="black", label="infeasible (note)")
    fig.suptitle(f"Simulated strong scaling, mask {mask}")
    figure_legend(fig, [ax for line in axes for ax in line], ncol=7)
    return save(fig, outdir, f"simulated_scaling_{safe_name(mask)}.png")


def safe_name(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_simulated_winner(rows, outdir, colours, label_of):
    feasible = [r for r in rows if num(r, "fwd_tflops") is not None and not infeasible(r)]
    Ts = sorted({num(r, "T") for r in rows})
    Ps = sorted({num(r, "P") for r in rows})
    masks = masks_of(rows)
    fig, axes = panel_grid(len(masks), width=max(4.0, 1.5 * len(Ps) + 1.5),
                           height=max(3.0, 0.7 * len(Ts) + 1.5), max_cols=2)
    for ax, mask in zip(axes, masks):
        best = {}
        for row in feasible:
            if text(row, "mask") == mask:
                cell = (num(row, "T"), num(row, "P"))
                if cell not in best or num(row, "fwd_tflops") > num(best[cell], "fwd_tflops"):
                    best[cell] = row
        image = [[lighten(colours.get(text(best[(T, P)], "strategy"), "black")) if (T, P) in best
                  else (0.93, 0.93, 0.93) for P in Ps] for T in Ts]
        ax.imshow(image, origin="lower", aspect="auto")
        for i, T in enumerate(Ts):
            for j, P in enumerate(Ps):
                row = best.get((T, P))
                label = f"{label_of(row)}\n{num(row, 'fwd_tflops'):.0f}" if row else "–"
                ax.text(j, i, label, ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(Ps)), [fmt_int(P) for P in Ps])
        ax.set_yticks(range(len(Ts)), [fmt_tokens(T) for T in Ts])
        ax.set_xlabel("GPUs P")
        ax.set_ylabel("sequence length T (tokens)")
        ax.set_title(f"mask: {mask}")
    fig.suptitle("Fastest feasible strategy per (T, P), forward TFLOP/s per GPU (–: none)")
    return save(fig, outdir, "simulated_winner.png")


def plot_simulated(rows, outdir, colours):
    rows = [r for r in rows if num(r, "P") and num(r, "T") and text(r, "mask", "") != ""]
    plotted = [r for r in rows if num(r, "fwd_tflops") is not None]
    if not plotted:
        return []
    label_of = sim_label_fn(rows)
    weak, strong = [], []
    for mask in masks_of(plotted):
        n_tpr = len({tokens_per_rank(r) for r in rows if text(r, "mask") == mask})
        (strong if n_tpr > 1 else weak).append(mask)
    paths = []
    if weak:
        paths.append(plot_simulated_tflops(plotted, weak, outdir, colours, label_of))
    for mask in strong:
        paths.append(plot_simulated_scaling([r for r in rows if text(r, "mask") == mask],
                                            mask, outdir, colours, label_of))
    if len({num(r, "T") for r in plotted}) > 1 and len({num(r, "P") for r in plotted}) > 1:
        paths.append(plot_simulated_winner(plotted, outdir, colours, label_of))
    return paths


# ---------------------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description="PNG figures from longhaul benchmark rows (JSON lines).",
        epilog="Figures and the keys read per level: see the module docstring (pydoc benchmarks/plot.py).")
    parser.add_argument("inputs", nargs="+", metavar="ROWS.jsonl", help="JSON-lines files of rows")
    parser.add_argument("-o", "--outdir", required=True, metavar="DIR", help="where the PNG files go (created)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if plt is None:
            raise PlotError("matplotlib is not installed: python3 -m pip install matplotlib "
                            "(scripts/setup.sh installs it)")
        by_level = split_levels(read_rows(args.inputs))
        os.makedirs(args.outdir, exist_ok=True)
        colours = strategy_colours(by_level["distributed"] + by_level["simulated"])
        note_wrong("kernel", by_level["kernel"])
        plotters = {"kernel": lambda rows: plot_kernel(rows, args.outdir),
                    "distributed": lambda rows: plot_distributed(rows, args.outdir, colours),
                    "simulated": lambda rows: plot_simulated(rows, args.outdir, colours)}
        paths = []
        for level, plot in plotters.items():
            written = plot(by_level[level])
            if by_level[level] and not written:
                note(f"{plural(len(by_level[level]), level + ' row')}, none plottable ({REQUIRED[level]})")
            paths += written
        if not paths:
            raise PlotError(f"no plottable rows in {', '.join(args.inputs)}: {EXPECTED}")
    except PlotError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
