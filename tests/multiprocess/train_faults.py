#!/usr/bin/env python3
"""Faults injected into a running `longhaul train` from outside, asserted by exit code and time.

    train_faults.py MODE LONGHAUL WORKDIR TORCHRUN_SH REPEATS MPIRUN [MPIRUN OPTIONS...]

MODE
  stop          mpirun, 2 ranks: rank 1 is stopped (SIGSTOP) after a checkpoint was saved. The job
                ends with 5 (rank 0's TimeoutError) within --timeout + 10 s.
  kill_write    mpirun, 2 ranks, a larger model: rank 0 is killed (SIGKILL) while it writes a
                checkpoint (its temporary file exists). The job ends non-zero within 10 s.
  kill_torchrun torchrun (c10d over Gloo), 2 ranks: rank 1 is killed after a checkpoint was saved.
                torchrun ends non-zero within --timeout + 10 s.
  stop_torchrun torchrun, 2 ranks: rank 1 is stopped. Rank 0 exits with 5 (TimeoutError) within
                --timeout + 10 s. In the first run torchrun ends non-zero once its 30 s grace for the
                stopped worker has passed (it sends SIGTERM, which a stopped process holds, then
                SIGKILL); in the later runs the test kills the stopped worker once rank 0 is gone,
                as a job manager would, and torchrun ends non-zero within --timeout + 10 s.
In every mode no rank process is left afterwards, and the checkpoint on disk is the last complete
one: the same command with --resume --stop-after 1 loads it and continues from a step >= 1.
Only the processes this test started (descendants of its launcher) are signalled.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

TIMEOUT_S = 3  # the runs' --timeout: every communication wait's deadline
GRACE_S = 10


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def descendants(pid):
    todo, seen = [pid], []
    while todo:
        for c in children(todo.pop()):
            seen.append(c)
            todo.append(c)
    return seen


def rank_of(pid):
    """The world rank of a longhaul process (mpirun's or torchrun's variable), None otherwise."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    if not exe.endswith("longhaul"):
        return None
    for key in (b"OMPI_COMM_WORLD_RANK", b"RANK"):
        if key in env:
            return int(env[key])
    return None


def alive(pid):
    """Running or stopped; a zombie (dead, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(cond, what, limit_s=120):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit_s:
            fail(f"gave up after {limit_s} s waiting for {what}")
        time.sleep(0.001)


class Job:
    def __init__(self, cmd, log):
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=open(log + ".out", "w"), stderr=open(log + ".err", "w"),
                                     start_new_session=True)
        self.ranks = {}

    def find_ranks(self, n):
        def found():
            self.ranks = {r: p for p in descendants(self.proc.pid) if (r := rank_of(p)) is not None}
            return len(self.ranks) == n
        wait_for(found, f"{n} ranks of {self.log}")
        return self.ranks

    def wait(self, limit_s):
        try:
            return self.proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self):
        for pid in list(self.ranks.values()) + [self.proc.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def dump(self):
        for ext in (".out", ".err"):
            with open(self.log + ext) as f:
                sys.stdout.write(f.read()[-4000:])


def train_args(workdir, big):
    size = ["--dim", "256", "--layers", "4"] if big else ["--dim", "32", "--layers", "1"]
    return ["train", "--cp", "2", "--steps", "100000", *size, "--min-log2", "5", "--max-log2", "8",
            "--tokens-per-step", "1024", "--task-tokens", "16384", "--eval-docs", "4", "--threads", "1",
            "--save-every", "1", "--timeout", str(TIMEOUT_S), "--json", "--workdir", workdir]


def run_once(mode, longhaul, workdir, mpirun, torchrun, run):
    os.makedirs(workdir, exist_ok=True)
    for f in os.listdir(workdir):
        if f.startswith("checkpoint"):
            os.remove(os.path.join(workdir, f))
    ckpt = os.path.join(workdir, "checkpoint.lhc")
    args = train_args(workdir, big=(mode == "kill_write"))
    if mode.endswith("_torchrun"):
        launch = [torchrun, "2", longhaul]
    else:
        launch = [*mpirun, "-np", "2", longhaul]
    log = os.path.join(workdir, f"{mode}{run}")
    job = Job(launch + args, log)
    try:
        ranks = job.find_ranks(2)
        wait_for(lambda: os.path.exists(ckpt), "the first checkpoint")
        if mode == "kill_write":
            # The second write: its temporary file is named after the writer (rank 0).
            tmp = lambda: [f for f in os.listdir(workdir) if f.startswith("checkpoint.lhc.tmp.")]
            wait_for(lambda: tmp() != [], "a checkpoint being written")
            victim, sig, limit = int(tmp()[0].rsplit(".", 1)[1]), signal.SIGKILL, GRACE_S
            if victim != ranks[0]:
                fail(f"the checkpoint writer is pid {victim}, not rank 0 ({ranks[0]})")
        else:
            victim = ranks[1]
            sig = signal.SIGSTOP if mode.startswith("stop") else signal.SIGKILL
            limit = TIMEOUT_S + GRACE_S
        t0 = time.monotonic()
        os.kill(victim, sig)
        if mode == "stop_torchrun":
            # The survivor's deadline is what counts: torchrun then SIGTERMs the stopped worker,
            # which a stopped process only acts on when torchrun's 30 s grace ends in a SIGKILL.
            survivors = [p for p in ranks.values() if p != victim]
            wait_for(lambda: not any(alive(p) for p in survivors), "the survivors to exit", limit + 60)
            survivors_s = time.monotonic() - t0
            print(f"{mode} run {run}: survivors gone {survivors_s:.2f} s after the SIGSTOP", flush=True)
            if survivors_s > limit:
                fail(f"the survivors took {survivors_s:.2f} s, more than the limit {limit} s")
            if run == 1:
                limit += 35  # torchrun alone: its grace, then SIGKILL
            else:
                # As a cluster's job manager would: the stopped worker is killed, and torchrun,
                # which saw rank 0 fail, ends without waiting out its grace.
                os.kill(victim, signal.SIGKILL)
        rc = job.wait(limit + 60)
        elapsed = time.monotonic() - t0
        print(f"{mode} run {run}: {signal.Signals(sig).name} to pid {victim}; launcher exit code {rc} after "
              f"{elapsed:.2f} s (limit {limit} s)", flush=True)
        if rc is None:
            job.dump()
            fail("the job hung")
        if mode == "stop" and rc != 5:
            job.dump()
            fail(f"exit code {rc}, expected 5 (TimeoutError)")
        if mode == "stop_torchrun" and not re.search(r"exitcode\s*:\s*5\b", open(log + ".err").read()):
            job.dump()
            fail("torchrun does not report a worker that exited with 5 (TimeoutError)")
        if rc == 0:
            job.dump()
            fail("exit code 0 after a rank died")
        if elapsed > limit:
            job.dump()
            fail(f"took {elapsed:.2f} s, more than the limit {limit} s")
        time.sleep(0.5)
        left = [p for p in ranks.values() if alive(p)]
        if left:
            fail(f"rank processes {left} outlived the job")
        if mode == "kill_write" and not tmp():
            fail("the temporary file is gone: the kill did not land during the write")
    finally:
        job.cleanup()

    # The checkpoint left behind is complete: the same launch resumes from it for one step.
    resumed = Job(launch + args + ["--resume", "--stop-after", "1"], log + "_resume")
    try:
        rc = resumed.wait(300)
        if rc != 0:
            resumed.dump()
            fail(f"resuming from the checkpoint left by the fault failed (exit code {rc})")
        rows = [json.loads(l) for l in open(log + "_resume.out") if l.startswith("{") and '"loss"' in l]
        if not rows or rows[0]["step"] < 2:
            fail(f"the resumed run did not continue from a saved step: {rows[:1]}")
        print(f"{mode} run {run}: resumed at step {rows[0]['step']} from the checkpoint", flush=True)
    finally:
        resumed.cleanup()


def main():
    mode, longhaul, workdir, torchrun, repeats = sys.argv[1:6]
    repeats, mpirun = int(repeats), sys.argv[6:]
    if mode not in ("stop", "kill_write", "kill_torchrun", "stop_torchrun"):
        fail(f"unknown mode {mode}")
    for run in range(1, repeats + 1):
        run_once(mode, longhaul, workdir, mpirun, torchrun, run)
    print(f"train_faults ({mode}): {repeats} of {repeats} runs ended in time, checkpoint intact", flush=True)


if __name__ == "__main__":
    main()
