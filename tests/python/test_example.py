"""examples/train_gpt.py trains under a launcher and its loss falls. LONGHAUL_EXAMPLE_LAUNCH picks
the launcher: mpirun (default) or torchrun, 2 ranks (CP=2)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train_gpt.py")
STEPS = 100


def launch_command():
    launcher = os.environ.get("LONGHAUL_EXAMPLE_LAUNCH", "mpirun")
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    mpirun = os.environ.get("LONGHAUL_MPIRUN", "mpirun")
    if not shutil.which(mpirun):
        pytest.skip(f"{mpirun} not found: the example needs 2 ranks (python_example_torchrun runs it under torchrun)")
    return [mpirun, "--oversubscribe", "--bind-to", "none", "-np", "2", sys.executable]


def test_example_loss_falls():
    cmd = launch_command() + [EXAMPLE, "--steps", str(STEPS)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}"
    losses = [float(x) for x in re.findall(rf"^step \d+/{STEPS} loss ([0-9.]+)", run.stdout, re.M)]
    assert len(losses) == STEPS, run.stdout
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"loss: first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last < first - 0.5, f"the loss did not fall: {losses}"


def test_example_auto_degrees():
    """--cp auto: the 256-token bucket (one sequence per step) runs on both ranks, the shorter ones
    on one rank each (the synthetic documents are 40-300 tokens long), and the loss falls."""
    steps = 60
    cmd = launch_command() + [EXAMPLE, "--steps", str(steps), "--cp", "auto", "--tokens-per-step", "256",
                              "--min-log2", "6", "--max-log2", "8"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}"
    assert "CP degree auto (length:degree 64:1 128:1 256:2)" in run.stdout, run.stdout
    rows = re.findall(rf"^step \d+/{steps} loss ([0-9.]+) seq_len (\d+) cp (\d+)", run.stdout, re.M)
    assert len(rows) == steps, run.stdout
    assert {(int(L), int(c)) for _, L, c in rows} <= {(64, 1), (128, 1), (256, 2)}
    assert {int(c) for _, _, c in rows} == {1, 2}, "both degrees should occur in 60 steps"
    losses = [float(x) for x, _, _ in rows]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10, losses
