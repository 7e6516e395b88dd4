"""The whole pipeline on CUDA through the CLI (ctest label gpu; needs a GPU).

usage: test_gpu_cli.py SAESCOPE_BINARY DIR
fp32 on CUDA must reproduce a CPU embedding of the same backbone to 1e-3 relative; bf16, fp16 and
tf32 must train to a finite loss; the manifest must record the GPU and the precision.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr[-3000:])
        sys.exit(f"FAIL: {' '.join(args[1:3])} exited {p.returncode}")
    return p


def main():
    binary, d = sys.argv[1], sys.argv[2]
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    demo = os.path.join(d, "demo")
    run(binary, "demo-data", "--out", demo, "--count", "96", "--size", "64")
    for prec in ("fp32", "bf16", "fp16", "tf32"):
        ws = os.path.join(d, "ws-" + prec)
        run(binary, "run", "--data", demo, "--workspace", ws, "--image-size", "64", "--batch", "32",
            "--sae-epochs", "3", "--sae-batch", "32", "--precision", prec, "--device", "cuda")
        m = json.load(open(os.path.join(ws, "manifest.json")))
        for stage in ("train", "embed", "sae"):
            assert m["stages"][stage]["status"] == "done", (prec, stage)
            assert m["stages"][stage]["device"].startswith("cuda"), m["stages"][stage]["device"]
        assert isinstance(m["stages"]["train"]["final"]["loss"], float), m["stages"]["train"]["final"]
        if prec == "fp16":  # loss scaling ran; the SAE trained in fp32 (its products: fp32 or bf16)
            assert m["stages"]["train"]["loss_scale"] > 0, m["stages"]["train"]
            assert m["stages"]["train"]["overflow_steps"] < m["stages"]["train"]["steps"], m["stages"]["train"]
            assert m["stages"]["sae"]["config"].get("precision", "fp32") == "fp32", m["stages"]["sae"]["config"]
        if prec == "tf32":  # every stage, the SAE too, ran with TF32 and records it
            for stage in ("train", "embed", "sae"):
                assert m["stages"][stage]["config"]["precision"] == "tf32", m["stages"][stage]["config"]
        print(prec, "on", m["stages"]["train"]["device"], "final loss", m["stages"]["train"]["final"]["loss"])
    # fp16 embeddings of the fp32 backbone near the fp32 ones.
    ws = os.path.join(d, "ws-fp32")
    full = np.load(os.path.join(ws, "embeddings.npy"))
    run(binary, "embed", "--workspace", ws, "--device", "cuda", "--precision", "fp16")
    half = np.load(os.path.join(ws, "embeddings.npy"))
    rel = np.abs(half - full).max() / np.abs(full).max()
    print(f"embeddings, max relative difference fp16 vs fp32 on CUDA: {rel:.2e}")
    assert rel < 3e-2, rel
    run(binary, "embed", "--workspace", ws, "--device", "cuda", "--precision", "tf32")
    tf32 = np.load(os.path.join(ws, "embeddings.npy"))
    rel = np.abs(tf32 - full).max() / np.abs(full).max()
    print(f"embeddings, max relative difference tf32 vs fp32 on CUDA: {rel:.2e}")
    assert rel < 1e-2, rel
    run(binary, "embed", "--workspace", ws, "--device", "cuda")
    gpu = np.load(os.path.join(ws, "embeddings.npy"))
    run(binary, "embed", "--workspace", ws, "--device", "cpu")
    cpu = np.load(os.path.join(ws, "embeddings.npy"))
    rel = np.abs(gpu - cpu).max() / np.abs(cpu).max()
    print(f"embeddings, max relative difference CUDA vs CPU: {rel:.2e}")
    assert rel < 1e-3, rel
    print("OK")


if __name__ == "__main__":
    main()
