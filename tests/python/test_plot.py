"""benchmarks/plot.py, run as a script on data/bench_attention_sample.jsonl (rows of the three
levels: kernel, distributed, simulated): every figure is written as a real PNG and the
predicted-vs-measured summary is printed; a line that is not JSON and a file with no plottable
rows fail with a message naming the problem. Needs matplotlib, not the built longhaul module."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="benchmarks/plot.py draws with matplotlib "
                                         "(scripts/setup.sh installs it: pip install matplotlib)")

ROOT = Path(__file__).resolve().parents[2]
PLOT = ROOT / "benchmarks" / "plot.py"
SAMPLE = Path(__file__).resolve().parent / "data" / "bench_attention_sample.jsonl"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The sample's simulated rows have several tokens per GPU (T/P) for both masks: scaling figures.
SAMPLE_FIGURES = ["kernel_tflops.png", "distributed_tflops.png", "predicted_vs_measured.png",
                  "simulated_scaling_causal.png", "simulated_scaling_causal_document_long.png",
                  "simulated_winner.png"]
SUMMARY = re.compile(r"^predicted vs measured \((planner|simulator)\): median \|pred/meas - 1\| = "
                     r"\d+\.\d% over \d+ rows?; worst [+-]\d+\.\d% at \S+/\S+/\S+ P=\d+$", re.M)


def run_plot(*args):
    return subprocess.run([sys.executable, str(PLOT), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def assert_png(path):
    assert path.is_file(), f"{path.name} was not written"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert len(data) > 10_000, f"{path.name} is only {len(data)} bytes"


def sample_rows():
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_sample_writes_every_figure(tmp_path):
    result = run_plot(SAMPLE, "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    for name in SAMPLE_FIGURES:
        assert_png(tmp_path / name)
        assert str(tmp_path / name) in result.stdout.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SAMPLE_FIGURES)
    assert sorted(m.group(1) for m in SUMMARY.finditer(result.stdout)) == ["planner", "simulator"], result.stdout


def test_weak_scaling_rows_give_the_tflops_figure(tmp_path):
    """Simulated rows at one T/P (8K tokens per GPU) only: simulated_tflops.png, no scaling figure."""
    weak = [r for r in sample_rows() if r["level"] == "simulated" and r["T"] == 8192 * r["P"]]
    rows = tmp_path / "weak.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in weak))
    out = tmp_path / "figures"
    result = run_plot(rows, "-o", out)
    assert result.returncode == 0, result.stderr
    assert_png(out / "simulated_tflops.png")
    assert not list(out.glob("simulated_scaling_*.png"))


def test_broken_line_names_file_and_line(tmp_path):
    rows = tmp_path / "broken.jsonl"
    rows.write_text("# a comment\n\n" + json.dumps(sample_rows()[0]) + "\n{\"level\": \"kernel\", \"T\": \n")
    result = run_plot(rows, "-o", tmp_path / "figures")
    assert result.returncode != 0
    assert str(rows) in result.stderr and "line 4" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.jsonl"
    result = run_plot(missing, "-o", tmp_path / "figures")
    assert result.returncode != 0
    assert str(missing) in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_only_unknown_levels_fail_with_a_message(tmp_path):
    rows = tmp_path / "unknown.jsonl"
    rows.write_text('{"level": "comm", "op": "ring", "bytes": 1024, "time_us": 3.5}\n'
                    '{"op": "all_to_all", "bytes": 2048, "time_us": 7.0}\n')
    result = run_plot(rows, "-o", tmp_path / "figures")
    assert result.returncode != 0
    assert "'comm'" in result.stderr, result.stderr  # the note on the ignored level
    assert "no plottable rows" in result.stderr and '"level": "kernel"' in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
