"""Files for `saescope import`, written by Python's torch, and the reference ranking.

usage:
  import_oracle.py write OUT N D F    write embeddings, SAE and backbone files in every format
  import_oracle.py backbone WS ORIGINAL
        load WS/backbone.pt strictly into torchvision's resnet18 with fc = Identity and compare
        every tensor with ORIGINAL (as float32); exit 1 on a difference
  import_oracle.py topk SAESCOPE WS EMB SAE
        run `SAESCOPE topk --json` on the imported workspace WS for several dense and sparse
        features under both rules and compare with the reference ranking computed here from the
        ORIGINAL files EMB (any format written by `write`) and SAE; exit 1 on a mismatch.
"""
import collections
import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F


def write_safetensors(path, tensors):
    """A .safetensors file written by hand (struct + json), as the format specifies."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write(out, n, d, nf):
    torch.manual_seed(7)
    os.makedirs(out, exist_ok=True)
    # Embeddings with a few exact ties (duplicated rows) so the tie-break by index is exercised.
    emb = torch.randn(n, d)
    emb[5] = emb[3]
    emb16 = emb.half()
    torch.save(emb, os.path.join(out, "emb_f32.pt"))
    torch.save(emb16, os.path.join(out, "emb_f16.pt"))
    torch.save({"embeddings": emb}, os.path.join(out, "emb_dict.pt"))
    np.save(os.path.join(out, "emb_f32.npy"), emb.numpy())
    np.save(os.path.join(out, "emb_f16.npy"), emb16.numpy())
    write_safetensors(os.path.join(out, "emb_f16.safetensors"), {"embeddings": emb16})
    torch.save(torch.randn(n + 3, d), os.path.join(out, "emb_wrong_count.pt"))

    class SAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight_encoder = torch.nn.Parameter(torch.randn(d, nf))
            self.weight_decoder = torch.nn.Parameter(torch.randn(nf, d))
            self.bias_encoder = torch.nn.Parameter(torch.randn(nf) * 0.1)
            self.bias_decoder = torch.nn.Parameter(torch.randn(d) * 0.1)

    sae = SAE()
    sd = sae.state_dict()
    assert isinstance(sd, collections.OrderedDict)
    torch.save(sd, os.path.join(out, "sae_ordered.pt"))
    torch.save({k: v.clone() for k, v in sd.items()}, os.path.join(out, "sae_plain.pt"))
    torch.save(collections.OrderedDict((k, v.half()) for k, v in sd.items()),
               os.path.join(out, "sae_f16.pt"))
    write_safetensors(os.path.join(out, "sae.safetensors"), dict(sd))
    bad = collections.OrderedDict(sd)
    bad["weight_encoder"] = torch.randn(d + 1, nf)
    torch.save(bad, os.path.join(out, "sae_wrong_shape.pt"))
    other = {k: v for k, v in sd.items()}
    other["weight_encoder"] = torch.randn(d + 2, nf)
    other["weight_decoder"] = torch.randn(nf, d + 2)
    other["bias_decoder"] = torch.randn(d + 2)
    torch.save(other, os.path.join(out, "sae_other_dims.pt"))

    import torchvision
    m = torchvision.models.resnet18()
    bsd = m.state_dict()
    torch.save(bsd, os.path.join(out, "resnet18_fc.pth"), _use_new_zipfile_serialization=False)
    nofc = collections.OrderedDict((k, v) for k, v in bsd.items()
                                   if not k.startswith("fc.") and "num_batches_tracked" not in k)
    write_safetensors(os.path.join(out, "resnet18_f16.safetensors"),
                      {k: v.half() for k, v in nofc.items()})
    torch.save(nofc, os.path.join(out, "resnet18_nofc.pt"))


def reference_topk(values, k):
    order = torch.sort(values, descending=True, stable=True).indices[:k]
    return order.tolist(), values[order].tolist()


def load_any(path):
    if path.endswith(".npy"):
        return torch.from_numpy(np.load(path).astype(np.float32))
    if path.endswith(".safetensors"):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            dt = {"F32": np.float32, "F16": np.float16}[info["dtype"]]
            out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"]).copy())
        return out if len(out) > 1 else next(iter(out.values()))
    obj = torch.load(path)
    if isinstance(obj, dict) and "embeddings" in obj:
        return obj["embeddings"]
    return obj


def topk(binary, ws, emb_path, sae_path):
    emb = load_any(emb_path).float()
    sd = {k: v.float() for k, v in load_any(sae_path).items()}
    x = F.normalize(emb, dim=1)
    acts = F.relu((x - sd["bias_decoder"]) @ sd["weight_encoder"] + sd["bias_encoder"])
    cases = []
    for kind, values in (("dense", emb), ("sparse", acts)):
        nf = values.shape[1]
        for feat in sorted({0, 1, nf // 2, nf - 1}):
            for rule in ("seed", "raw"):
                col = (F.normalize(values, dim=1) if rule == "seed" else values)[:, feat]
                cases.append((kind, feat, rule, col))
    bad = 0
    for kind, feat, rule, col in cases:
        ref_idx, ref_val = reference_topk(col, 16)
        out = subprocess.run([binary, "topk", "--workspace", ws, "--kind", kind, "--feature",
                              str(feat), "--rank", rule, "--json"], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"FAIL {kind} {feat} {rule}: exit {out.returncode}: {out.stderr.strip()}")
            bad += 1
            continue
        got = json.loads(out.stdout)["images"]
        idx = [g["index"] for g in got]
        val = [g["score"] for g in got]
        if idx != ref_idx or not np.allclose(val, ref_val, rtol=1e-4, atol=1e-5):
            print(f"FAIL {kind} {feat} {rule}:\n  saescope {idx}\n  python   {ref_idx}")
            bad += 1
    print(f"topk: {len(cases) - bad}/{len(cases)} rankings equal the reference")
    return 1 if bad else 0


def backbone(ws, original):
    import torchvision
    m = torchvision.models.resnet18()
    m.fc = torch.nn.Identity()
    sd = torch.load(os.path.join(ws, "backbone.pt"))
    m.load_state_dict(sd, strict=True)
    ref = load_any(original)
    for k, v in ref.items():
        if k.startswith("fc."):
            if k in sd:
                print(f"FAIL: {k} kept in backbone.pt")
                return 1
            continue
        if sd[k].dtype != (torch.int64 if "num_batches" in k else torch.float32):
            print(f"FAIL: {k} is {sd[k].dtype}")
            return 1
        if not torch.equal(sd[k], v.to(sd[k].dtype)):
            print(f"FAIL: {k} differs")
            return 1
    print(f"backbone: {len(sd)} tensors load strictly into torchvision resnet18")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "backbone":
        sys.exit(backbone(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "topk":
        sys.exit(topk(*sys.argv[2:6]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
