"""Interruptions and concurrency through the command line (issue 7).

usage: test_resume.py SAESCOPE_BINARY DIR

- kill -9 during fine-tuning leaves no backbone.pt and a checkpoint; `train --resume` finishes
  with the same weights as an uninterrupted run (fixed seed, one thread) up to float noise, and
  the loss log has every step exactly once;
- Ctrl-C (SIGINT) saves a checkpoint on the spot (exit 130); `--resume` continues it likewise;
- `--resume` takes the settings from the checkpoint; a contradicting flag, or no checkpoint, is
  one clear error;
- a second saescope writing the same workspace is refused with a message naming the holder, and
  the lock goes away with the holder, even after kill -9;
- the SAE stage likewise: kill -9 (topk) and Ctrl-C (seed) leave a checkpoint and no SAE, and
  `sae --resume` ends with the same SAE as an uninterrupted run; contradicting flags, a sweep,
  changed embeddings or no checkpoint are one clear error each.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
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


def interrupt(cmd, ckpt, steps, sig, min_steps):
    """Starts `cmd`; once `ckpt` exists (kill -9) or `steps()` has `min_steps` logged steps
    (otherwise), sends `sig`. Returns the exit code and stderr."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if os.path.exists(ckpt) if sig == signal.SIGKILL else len(steps()) >= min_steps:
            break
        time.sleep(0.01)
    check(p.poll() is None, f"{cmd[1]} ended before it could be interrupted: {p.returncode}")
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def start_and_interrupt(binary, data, ws, sig, min_steps):
    """Starts `train`, waits for a checkpoint (or `min_steps` logged steps), sends `sig`."""
    extra = ["--checkpoint-steps", "3"] if sig == signal.SIGKILL else []
    return interrupt([binary, "train", "--data", data, "--workspace", ws, *TRAIN, *extra],
                     os.path.join(ws, "checkpoints", "train.ckpt"),  # written after train.json
                     lambda: log_steps(ws), sig, min_steps)


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


SAE_TOPK = ["--variant", "topk", "--features", "64", "--k", "4", "--batch", "32", "--steps", "1200",
            "--threads", "1", "--seed", "3"]
SAE_SEED = ["--variant", "seed", "--epochs", "300", "--batch", "32", "--threads", "1", "--seed", "4"]


def sae_steps(ws):
    path = os.path.join(ws, "logs", "sae.jsonl")
    return [json.loads(line)["step"] for line in open(path)] if os.path.exists(path) else []


def sae_interrupted(binary, ws, args, sig):
    """Starts `sae`, waits for its first checkpoint (kill -9) or 50 logged steps, sends `sig`."""
    return interrupt([binary, "sae", "--workspace", ws, *args],
                     os.path.join(ws, "checkpoints", "sae.ckpt"), lambda: sae_steps(ws), sig, 50)


def check_sae_resume(binary, d, trained):
    """The SAE stage's checkpoints, on copies of a workspace with embeddings."""
    def fresh(name):
        ws = os.path.join(d, name)
        shutil.copytree(trained, ws)
        return ws

    for variant, args, sig in (("topk", SAE_TOPK, signal.SIGKILL), ("seed", SAE_SEED, signal.SIGINT)):
        ref = fresh(f"sae-ref-{variant}")
        p = run(binary, "sae", "--workspace", ref, *args)
        check(p.returncode == 0, f"reference sae {variant}: {p.stderr[-1500:]}")
        n_steps = len(sae_steps(ref))
        ws = fresh(f"sae-{variant}")
        extra = ["--checkpoint-steps", "50"] if sig == signal.SIGKILL else []
        rc, err = sae_interrupted(binary, ws, [*args, *extra], sig)
        check(rc == (-signal.SIGKILL if sig == signal.SIGKILL else 130), f"sae {variant}: exit {rc}")
        check(os.path.exists(os.path.join(ws, "checkpoints", "sae.ckpt")), f"sae {variant}: no checkpoint")
        check(not os.path.exists(os.path.join(ws, "sae.pt")), f"sae {variant}: an interrupted run left sae.pt")
        if variant == "topk":
            p = run(binary, "sae", "--workspace", ws, "--resume", "--k", "8")
            check(p.returncode == 1 and "--k 8" in p.stderr and "sae.ckpt" in p.stderr
                  and len(p.stderr.strip().splitlines()) == 1, f"sae resume with another --k: {p.stderr}")
            p = run(binary, "sae", "--workspace", ws, "--resume", "--sweep-k", "4,8")
            check(p.returncode != 0 and "--resume" in p.stderr and "sweep" in p.stderr,
                  f"sae resume with a sweep: {p.stderr}")
        p = run(binary, "sae", "--workspace", ws, "--resume", "--threads", "1")
        check(p.returncode == 0 and "resuming" in p.stderr, f"sae {variant} resume: {p.stderr[-1500:]}")
        if p.returncode == 0:
            same_weights(os.path.join(ref, "sae.pt"), os.path.join(ws, "sae.pt"), f"sae {variant}")
            check(sae_steps(ws) == sae_steps(ref) and n_steps > 50,
                  f"sae {variant}: logged steps after resume differ from the reference")
        check(not os.path.exists(os.path.join(ws, "checkpoints")), f"sae {variant}: checkpoint outlived the run")

    # No checkpoint; changed embeddings.
    ws = fresh("sae-none")
    p = run(binary, "sae", "--workspace", ws, "--resume")
    check(p.returncode == 1 and "no SAE checkpoint" in p.stderr, f"sae resume without: {p.stderr}")
    rc, _ = sae_interrupted(binary, ws, [*SAE_TOPK, "--checkpoint-steps", "50"], signal.SIGKILL)
    x = np.load(os.path.join(ws, "embeddings.npy"))
    np.save(os.path.join(ws, "embeddings.npy"), x[::-1].copy())
    p = run(binary, "sae", "--workspace", ws, "--resume")
    check(p.returncode == 1 and "embeddings.npy" in p.stderr and "changed" in p.stderr,
          f"sae resume on other embeddings: {p.stderr}")
    check("Traceback" not in p.stderr and "terminate" not in p.stderr, p.stderr)


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

    # The SAE stage, on embeddings of the reference backbone.
    p = run(binary, "embed", "--workspace", ref, "--threads", "1")
    check(p.returncode == 0, f"embed: {p.stderr[-1500:]}")
    if p.returncode == 0:
        check_sae_resume(binary, d, ref)

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
