"""Interruptions and concurrency through the command line (issue 7).

usage: test_resume.py SAESCOPE_BINARY DIR

- kill -9 during fine-tuning leaves no backbone.pt and a checkpoint; `train --resume` finishes
  with the same weights as an uninterrupted run (fixed seed, one thread) up to float noise, and
  the loss log has every step exactly once;
- Ctrl-C (SIGINT) saves a checkpoint on the spot (exit 130); `--resume` continues it likewise;
- `--resume` takes the settings from the checkpoint; a contradicting flag, or no checkpoint, is
  one clear error;
- a second saescope writing the same workspace is refused with a message naming the holder, and
  the lock goes away with the holder, even after kill -9.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import torch

FAILURES = []
TRAIN = ["--image-size", "64", "--batch", "32", "--epochs", "3", "--threads", "1", "--seed", "5",
         "--lr", "1e-3", "--weights", "none"]


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg)


def run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=900)


def log_steps(ws):
    path = os.path.join(ws, "logs", "train.jsonl")
    if not os.path.exists(path):
        return []
    steps = []
    for line in open(path):
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass
    return steps


def start_and_interrupt(binary, data, ws, sig, min_steps):
    """Starts `train`, waits for a checkpoint (or `min_steps` logged steps), sends `sig`."""
    extra = ["--checkpoint-steps", "3"] if sig == signal.SIGKILL else []
    p = subprocess.Popen([binary, "train", "--data", data, "--workspace", ws, *TRAIN, *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = os.path.join(ws, "checkpoints", "train.ckpt")  # written after train.json
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        ready = os.path.exists(ckpt) if sig == signal.SIGKILL else len(log_steps(ws)) >= min_steps
        if ready:
            break
        time.sleep(0.02)
    check(p.poll() is None, f"train ended before it could be interrupted: {p.returncode}")
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def same_weights(a, b, what):
    sa, sb = torch.load(a), torch.load(b)
    check(list(sa) == list(sb), f"{what}: different keys")
    worst = 0.0
    for k in sa:
        if sa[k].is_floating_point():
            scale = max(sa[k].abs().max().item(), 1e-6)
            worst = max(worst, (sa[k] - sb[k]).abs().max().item() / scale)
        else:
            check(torch.equal(sa[k], sb[k]), f"{what}: {k} differs")
    print(f"{what}: max relative difference to the uninterrupted run {worst:.2e}")
    check(worst < 1e-4, f"{what}: weights differ by {worst:.2e} (relative)")


def main():
    binary, d = sys.argv[1], sys.argv[2]
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    data = os.path.join(d, "demo")
    p = run(binary, "demo-data", "--out", data, "--count", "192", "--size", "64", "--seed", "2")
    check(p.returncode == 0, f"demo-data: {p.stderr}")

    # The uninterrupted reference: 3 epochs x 6 batches = 18 steps.
    ref = os.path.join(d, "ref")
    p = run(binary, "train", "--data", data, "--workspace", ref, *TRAIN)
    check(p.returncode == 0, f"reference train: {p.stderr[-1500:]}")
    check(not os.path.exists(os.path.join(ref, "checkpoints")), "a finished run left its checkpoint")
    n_steps = len(log_steps(ref))
    check(n_steps == 18, f"reference logged {n_steps} steps, expected 18")

    # kill -9 after the first periodic checkpoint.
    ws = os.path.join(d, "killed")
    rc, err = start_and_interrupt(binary, data, ws, signal.SIGKILL, 0)
    check(rc == -signal.SIGKILL, f"expected death by SIGKILL, got {rc}")
    check(not os.path.exists(os.path.join(ws, "backbone.pt")), "a killed run left a backbone.pt")
    check(not [f for f in os.listdir(ws) if ".tmp" in f], "a killed run left temporary files")
    # --resume alone: the settings come from the checkpoint.
    p = run(binary, "train", "--workspace", ws, "--resume", "--threads", "1")
    check(p.returncode == 0, f"resume after kill -9: {p.stderr[-1500:]}")
    check("resuming" in p.stderr, "resume does not say where it resumes")
    if p.returncode == 0:
        same_weights(os.path.join(ref, "backbone.pt"), os.path.join(ws, "backbone.pt"), "kill -9")
        check(log_steps(ws) == list(range(18)), f"log steps after resume: {log_steps(ws)}")
        m = json.load(open(os.path.join(ws, "manifest.json")))
        check(m["stages"]["train"]["status"] == "done", "resumed stage not done")
        check(m["stages"]["train"]["steps"] == 18, f"steps {m['stages']['train']['steps']}")
    check(not os.path.exists(os.path.join(ws, "checkpoints")), "the checkpoint outlived the run")

    # Ctrl-C: the checkpoint is written on the spot.
    ws = os.path.join(d, "sigint")
    rc, err = start_and_interrupt(binary, data, ws, signal.SIGINT, 8)
    check(rc == 130, f"Ctrl-C exit {rc}: {err[-500:]}")
    check("--resume" in err, f"Ctrl-C does not mention --resume: {err[-500:]}")
    check(os.path.exists(os.path.join(ws, "checkpoints", "train.ckpt")), "no checkpoint after Ctrl-C")
    m = json.load(open(os.path.join(ws, "manifest.json")))
    check(m["stages"]["train"]["status"] == "cancelled", f"status {m['stages']['train']['status']}")

    # Wrong settings and a missing checkpoint: one clear line each.
    p = run(binary, "train", "--data", data, "--workspace", ws, *TRAIN[:-4], "--lr", "1e-4",
            "--weights", "none", "--resume")
    check(p.returncode == 1 and "lr" in p.stderr and "train.ckpt" in p.stderr
          and len(p.stderr.strip().splitlines()) <= 3, f"resume with another --lr: {p.stderr}")
    p = run(binary, "train", "--data", data, "--workspace", os.path.join(d, "fresh"), *TRAIN,
            "--resume")
    check(p.returncode == 1 and "no training checkpoint" in p.stderr, f"resume without: {p.stderr}")
    check("Traceback" not in p.stderr and "terminate" not in p.stderr, p.stderr)

    p = run(binary, "train", "--data", data, "--workspace", ws, *TRAIN, "--resume")
    check(p.returncode == 0, f"resume after Ctrl-C: {p.stderr[-1500:]}")
    if p.returncode == 0:
        same_weights(os.path.join(ref, "backbone.pt"), os.path.join(ws, "backbone.pt"), "Ctrl-C")
        check(log_steps(ws) == list(range(18)), f"log steps after resume: {log_steps(ws)}")

    # Two writers on one workspace: the second is refused, naming the first.
    ws = os.path.join(d, "locked")
    long = [a if a != "3" else "200" for a in TRAIN]  # --epochs 200: runs until killed
    holder = subprocess.Popen([binary, "train", "--data", data, "--workspace", ws, *long],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not log_steps(ws):
        time.sleep(0.05)
    manifest_before = open(os.path.join(ws, "manifest.json")).read()
    for args in (["train", "--data", data, "--workspace", ws, *TRAIN],
                 ["sae", "--workspace", ws],
                 ["import", "--data", data, "--workspace", ws, "--sae", os.path.join(ref, "backbone.pt")]):
        p = run(binary, *args)
        first = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        if args[0] == "import":  # the import's own checks may fail first; it must not write
            check(p.returncode != 0, f"import into a locked workspace succeeded: {p.stderr}")
            continue
        check(p.returncode == 1 and "in use by another saescope" in first
              and f"pid {holder.pid}" in first and "saescope train" in first,
              f"second writer ({args[0]}): {p.returncode} {p.stderr[-600:]}")
    check(open(os.path.join(ws, "manifest.json")).read() == manifest_before,
          "a refused writer changed the manifest")
    holder.kill()
    holder.wait()
    p = run(binary, "sae", "--workspace", ws)  # the lock died with its holder
    check("in use" not in p.stderr, f"the lock outlived a killed holder: {p.stderr}")

    print("FAILURES:" if FAILURES else "OK", *FAILURES, sep="\n  ")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
