"""The examples train under a launcher: examples/train_gpt.py's loss falls (fixed and auto CP
degrees); examples/train_hf.py (a transformers Llama on longhaul CP) matches the unsharded model at
its first step and over 20 AdamW steps in float64, and its loss falls. LONGHAUL_EXAMPLE_LAUNCH picks
the launcher: mpirun (default) or torchrun; LONGHAUL_EXAMPLE_RANKS the ranks (default 2)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
EXAMPLE = os.path.join(EXAMPLES, "train_gpt.py")
EXAMPLE_HF = os.path.join(EXAMPLES, "train_hf.py")
STEPS = 100
RANKS = os.environ.get("LONGHAUL_EXAMPLE_RANKS", "2")


def launch_command():
    launcher = os.environ.get("LONGHAUL_EXAMPLE_LAUNCH", "mpirun")
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", RANKS]
    mpirun = os.environ.get("LONGHAUL_MPIRUN", "mpirun")
    if not shutil.which(mpirun):
        pytest.skip(f"{mpirun} not found: the example needs {RANKS} ranks (python_example_torchrun runs it under torchrun)")
    return [mpirun, "--oversubscribe", "--bind-to", "none", "-np", RANKS, sys.executable]


def run_example(cmd, timeout=240):
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def step_losses(stdout, steps):
    losses = [float(x) for x in re.findall(rf"^step \d+/{steps} loss ([0-9.]+)", stdout, re.M)]
    assert len(losses) == steps, stdout
    return losses


def test_example_loss_falls():
    losses = step_losses(run_example(launch_command() + [EXAMPLE, "--steps", str(STEPS)]), STEPS)
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


def test_one_process_example_device_cuda_without_a_gpu_stops_with_the_reason():
    """--device cuda where torch sees no GPU: exit 1 with the reason, before any data or model
    (on a GPU machine, tests/python/test_cuda.py trains on the GPU instead)."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: tests/python/test_cuda.py covers --device cuda")
    run = subprocess.run([sys.executable, EXAMPLE, "--device", "cuda", "--steps", "1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "--device cuda, but torch sees no CUDA device" in run.stderr, run.stderr


# ---- examples/train_hf.py -------------------------------------------------------------------
HF_STEPS = 20


def needs_transformers():
    pytest.importorskip("transformers", reason="transformers is not installed (pip install .[transformers]; "
                                               "scripts/setup.sh pins it): examples/train_hf.py needs it")


@pytest.fixture(scope="module")
def unsharded_losses():
    """20 AdamW steps of the plain model (sdpa, whole packed batches) in one process, float64."""
    needs_transformers()
    out = run_example([sys.executable, EXAMPLE_HF, "--unsharded", "--dtype", "float64", "--steps", str(HF_STEPS)])
    return step_losses(out, HF_STEPS)


@pytest.mark.parametrize("strategy,layout", [("ring", "zigzag"), ("tokenring", "contiguous"), ("ulysses", "zigzag")])
def test_hf_example_equals_unsharded_training(unsharded_losses, strategy, layout):
    """CP over every rank, float64: the first step's loss and gradients match the unsharded model
    (--compare, relative 1e-9) and the 20 losses of AdamW training equal the unsharded run's within 1e-8."""
    cmd = launch_command() + [EXAMPLE_HF, "--dtype", "float64", "--steps", str(HF_STEPS), "--compare",
                              "--strategy", strategy, "--layout", layout]
    out = run_example(cmd)
    assert re.search(r"^compare: .* largest relative difference \S+ .* tolerance 1e-09", out, re.M), out
    losses = step_losses(out, HF_STEPS)
    for step, (got, want) in enumerate(zip(losses, unsharded_losses), 1):
        assert abs(got - want) <= 1e-8 * abs(want), f"step {step}: CP loss {got!r}, unsharded {want!r}"
    print(f"{strategy}/{layout}: largest loss difference "
          f"{max(abs(a - b) for a, b in zip(losses, unsharded_losses)):.2e} over {HF_STEPS} steps")


def test_hf_example_data_parallel_groups_loss_falls():
    """float32 training on groups of half the ranks (two CP groups split each step, when RANKS
    allows) compares its first step and its loss falls."""
    needs_transformers()
    steps = 60
    cp = max(1, int(RANKS) // 2)
    out = run_example(launch_command() + [EXAMPLE_HF, "--steps", str(steps), "--cp", str(cp), "--compare"])
    assert f"CP {cp} (ring/zigzag)" in out, out
    losses = step_losses(out, steps)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.3, losses


def test_hf_example_rejects_a_cp_size_that_does_not_divide_the_world():
    needs_transformers()
    bad = int(RANKS) + 1
    run = subprocess.run(launch_command() + [EXAMPLE_HF, "--steps", "1", "--cp", str(bad)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert f"cp {bad} does not divide the world of {RANKS} ranks" in run.stdout + run.stderr, run.stderr


# ---- arguments the examples cannot run: a usage error right after parsing -------------------
BAD_ARGUMENTS = [
    (EXAMPLE, ["--dim", "30", "--heads", "4"], "--dim 30 must be --heads 4 times an even head size"),
    (EXAMPLE, ["--heads", "4", "--kv-heads", "3"], "--heads 4 must be divisible by --kv-heads 3"),
    (EXAMPLE, ["--doc-lengths", "5"], "--doc-lengths must be MIN,MAX with 0 < MIN <= MAX, got '5'"),
    (EXAMPLE, ["--min-log2", "8", "--max-log2", "7"], "--min-log2 8 must not exceed --max-log2 7"),
    (EXAMPLE, ["--steps", "-1"], "--steps must be positive, got -1"),
    (EXAMPLE, ["--cp", "-2"], "--cp must be auto or a CP group size"),
    (EXAMPLE_HF, ["--synthetic", "50:300:40"], "--synthetic must be DOCS:MIN:MAX with DOCS > 0 and 0 < MIN <= MAX"),
    (EXAMPLE_HF, ["--tokens-per-step", "0"], "--tokens-per-step must be positive, got 0"),
]


@pytest.mark.parametrize("example,args,message", BAD_ARGUMENTS,
                         ids=[f"{os.path.basename(e)} {' '.join(a)}" for e, a, _ in BAD_ARGUMENTS])
def test_one_process_examples_reject_arguments_they_cannot_run(example, args, message):
    if example == EXAMPLE_HF:
        needs_transformers()
    run = subprocess.run([sys.executable, example] + args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr  # argparse's usage error, before any work
    assert message in run.stderr, run.stderr
