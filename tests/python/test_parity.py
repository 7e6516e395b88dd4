"""Parity of a saescope workspace with the reference Python formulation (DESIGN.md).

usage: test_parity.py SAESCOPE_BINARY WORKSPACE

Checks, with Debian's torch/torchvision as the oracle:
  * backbone.pt loads strictly into torchvision's resnet18 with fc = Identity, and reproduces
    embeddings.npy (eval mode, images at their native size) to 1e-3 relative;
  * sae.pt loads into the reference SparseAutoencoder;
  * `saescope topk --json` equals the reference ranking (indices exactly, scores to 1e-4) for
    dense and sparse features under both ranking rules.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image


class SparseAutoencoder(torch.nn.Module):
    """The reference SAE: x̄ = x − b_d; f = ReLU(x̄ W_e + b_e); x̂ = f W_d + b_d."""

    def __init__(self, d, f):
        super().__init__()
        self.weight_encoder = torch.nn.Parameter(torch.randn(d, f))
        self.weight_decoder = torch.nn.Parameter(torch.randn(f, d))
        self.bias_encoder = torch.nn.Parameter(torch.zeros(f))
        self.bias_decoder = torch.nn.Parameter(torch.zeros(d))

    def encode(self, x):
        return F.relu((x - self.bias_decoder) @ self.weight_encoder + self.bias_encoder)

    def forward(self, x):
        f = self.encode(x)
        return f @ self.weight_decoder + self.bias_decoder, f


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def reference_topk(values, k):
    """Top k of a column, descending, ties by lower index (a stable sort)."""
    order = torch.sort(values, descending=True, stable=True).indices[:k]
    return order.tolist(), values[order].tolist()


def main():
    binary, ws = sys.argv[1], sys.argv[2]
    manifest = json.load(open(os.path.join(ws, "manifest.json")))
    root = manifest["data_root"]
    paths = [l.rstrip("\n") for l in open(os.path.join(ws, "images.txt")) if l.strip()]
    emb = np.load(os.path.join(ws, "embeddings.npy"))
    if emb.dtype != np.float32 or emb.shape != (len(paths), 512):
        fail(f"embeddings.npy is {emb.dtype} {emb.shape}, expected float32 ({len(paths)}, 512)")

    # Backbone: strict load into torchvision, same images at native size, eval mode.
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load(os.path.join(ws, "backbone.pt")), strict=True)
    model.eval()
    to_tensor = torchvision.transforms.ToTensor()
    with torch.no_grad():
        batch = torch.stack([to_tensor(Image.open(os.path.join(root, p)).convert("RGB")) for p in paths])
        ref = torch.cat([model(batch[i:i + 64]) for i in range(0, len(batch), 64)]).numpy()
    err = np.abs(ref - emb).max() / np.abs(ref).max()
    print(f"backbone: max |python - saescope| / max |python| = {err:.2e} over {len(paths)} images")
    if not err <= 1e-3:
        fail(f"embeddings differ from torchvision by {err:.2e} relative (> 1e-3)")

    # SAE: reference module, strict.
    sd = torch.load(os.path.join(ws, "sae.pt"))
    d, nf = sd["weight_encoder"].shape
    sae = SparseAutoencoder(d, nf)
    sae.load_state_dict(sd, strict=True)
    x = F.normalize(torch.from_numpy(emb), dim=1)
    with torch.no_grad():
        f = sae.encode(x)
    columns = {
        ("dense", "seed"): F.normalize(torch.from_numpy(emb), dim=1),
        ("dense", "raw"): torch.from_numpy(emb),
        ("sparse", "seed"): F.normalize(f, dim=1),
        ("sparse", "raw"): f,
    }
    checked = 0
    for (kind, rank), values in columns.items():
        n_features = values.shape[1]
        active = (values > 0).sum(0)
        # First, last, a few in between, and the most active feature.
        feats = sorted({0, 1, n_features // 3, n_features - 1, int(active.argmax())})
        for feat in feats:
            out = subprocess.run([binary, "topk", "--workspace", ws, "--kind", kind, "--feature",
                                  str(feat), "--k", "16", "--rank", rank, "--json"],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                fail(f"topk {kind} {feat} {rank} exited {out.returncode}: {out.stderr}")
            got = json.loads(out.stdout)
            if got["kind"] != kind or got["feature"] != feat or len(got["images"]) != 16:
                fail(f"topk {kind} {feat}: bad header or length: {out.stdout[:200]}")
            idx, scores = reference_topk(values[:, feat], 16)
            got_idx = [im["index"] for im in got["images"]]
            got_scores = [im["score"] for im in got["images"]]
            if any(abs(a - b) > 1e-4 for a, b in zip(scores, got_scores)):
                fail(f"topk {kind} {feat} {rank}: scores {got_scores} != reference {scores}")
            # Where scores tie within float noise the order may legitimately differ.
            for i, (a, b) in enumerate(zip(idx, got_idx)):
                if a != b and abs(values[a, feat] - values[b, feat]) > 1e-6:
                    fail(f"topk {kind} {feat} {rank}: index {i}: {got_idx} != reference {idx}")
            for im in got["images"]:
                if im["path"] != paths[im["index"]]:
                    fail(f"topk path {im['path']} is not images.txt line {im['index']}")
            checked += 1
    print(f"topk: {checked} feature rankings equal the reference")
    print("OK")


if __name__ == "__main__":
    main()
