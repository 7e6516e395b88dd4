"""Independent reference for the feature browser's per-feature extras (tests/test_feature_details.cpp).

usage: feature_details_oracle.py WS DETAILS.json
  WS            a workspace: embeddings.npy, sae.pt, images.txt, manifest.json (attributes_file)
  DETAILS.json  what saescope's FeatureIndex reports: {"dense"|"sparse": {"quantiles": [[...]]}}

Prints JSON: {"errors": [...quantile rule violations...],
              "attributes": [names], "corr": {"dense": [[r or null]], "sparse": ...},
              "nearest": [[[feature, cosine], ...] per sparse feature]}
Activations are recomputed from the arrays (numpy/torch), not taken from saescope.
"""
import csv
import json
import math
import os
import sys

import numpy as np
import torch

BINS = 512


def activations(ws):
    x = np.load(os.path.join(ws, "embeddings.npy")).astype(np.float32)
    sd = torch.load(os.path.join(ws, "sae.pt"))
    xn = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
    f = torch.relu((xn - sd["bias_decoder"]) @ sd["weight_encoder"] + sd["bias_encoder"])
    return {"dense": x.astype(np.float64), "sparse": f.numpy().astype(np.float64)}, sd


def check_quantiles(kind, acts, reported, errors):
    n_feat = acts.shape[1]
    if len(reported) != n_feat:
        errors.append(f"{kind}: {len(reported)} quantile lists for {n_feat} features")
        return
    for j in range(n_feat):
        col = acts[:, j]
        active_mask = np.isfinite(col) if kind == "dense" else col > 0
        active = np.sort(col[active_mask])
        samples = reported[j]
        if active.size == 0:
            if samples:
                errors.append(f"{kind} {j}: dead feature has quantile samples")
            continue
        if not samples:
            errors.append(f"{kind} {j}: no quantile samples for {active.size} active images")
            continue
        peak = float(np.abs(active).max())
        # Bin width: [0, h) or [-h, h) in BINS bins with h < 2 * peak.
        max_width = (4.0 if kind == "dense" else 2.0) * peak / BINS * (1 + 1e-5)
        prev_q, prev_index = -1.0, -1
        for s in samples:
            q, idx, a, lo, hi = s["q"], s["index"], s["activation"], s["lo"], s["hi"]
            tag = f"{kind} {j} q={q:.4f}"
            eps = 1e-5 * max(peak, 1e-12)
            if not q > prev_q:
                errors.append(f"{tag}: levels not ascending")
            if idx == prev_index:
                errors.append(f"{tag}: repeats the previous image")
            prev_q, prev_index = q, idx
            ref = col[idx]
            if abs(ref - a) > eps:
                errors.append(f"{tag}: activation {a} but image {idx} has {ref}")
            if not active_mask[idx]:
                errors.append(f"{tag}: image {idx} is not active")
            if not (lo - eps <= ref < hi + eps):
                errors.append(f"{tag}: activation {ref} outside its bin [{lo}, {hi})")
            if hi - lo > max_width or hi <= lo:
                errors.append(f"{tag}: bin [{lo}, {hi}) wider than {max_width}")
            exact = float(np.quantile(active, q, method="lower"))
            rank = int(math.floor(float(np.float32(q)) * (active.size - 1)))
            if exact != active[rank]:
                errors.append(f"{tag}: numpy 'lower' quantile {exact} != sorted[{rank}]")
            if not (lo - eps <= exact < hi + eps):
                errors.append(f"{tag}: exact quantile {exact} outside the bin [{lo}, {hi})")
            # The lowest-index image of the bin: no earlier active image lies inside it.
            earlier = col[:idx][active_mask[:idx]]
            inside = (earlier > lo + eps) & (earlier < hi - eps)
            if inside.any():
                errors.append(f"{tag}: an earlier image lies in the bin [{lo}, {hi})")


def correlations(ws, acts):
    manifest = json.load(open(os.path.join(ws, "manifest.json")))
    attr_file = manifest.get("attributes_file", "")
    if not attr_file:
        return [], {}
    with open(attr_file, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    table = {r[0]: [float(v) for v in r[1:]] for r in body}
    images = [line for line in open(os.path.join(ws, "images.txt")).read().splitlines() if line]
    matched = [i for i, p in enumerate(images) if os.path.basename(p) in table]
    vals = np.array([table[os.path.basename(images[i])] for i in matched])
    all_vals = np.array(list(table.values()))
    names, cols = [], []
    for c, name in enumerate(header[1:]):
        if not np.all(np.isin(all_vals[:, c], [-1.0, 1.0])):
            continue  # a numeric factor, not a binary attribute
        if np.unique(vals[:, c]).size < 2:
            continue  # constant over the images of the workspace
        names.append(name)
        cols.append(c)
    out = {}
    for kind, a in acts.items():
        sel = a[matched]
        mat = []
        for j in range(sel.shape[1]):
            row = []
            for c in cols:
                if np.std(sel[:, j]) == 0:
                    row.append(None)
                else:
                    row.append(float(np.corrcoef(sel[:, j], vals[:, c])[0, 1]))
            mat.append(row)
        out[kind] = mat
    return names, out


def nearest(sd, k=8):
    w = sd["weight_decoder"].double().numpy()
    norms = np.linalg.norm(w, axis=1)
    valid = norms > 0
    u = np.where(valid[:, None], w / np.where(valid, norms, 1)[:, None], 0)
    cos = u @ u.T
    result = []
    for j in range(w.shape[0]):
        if not valid[j]:
            result.append([])
            continue
        cand = [(float(cos[j, i]), i) for i in range(w.shape[0]) if i != j and valid[i]]
        cand.sort(key=lambda t: (-t[0], t[1]))
        result.append([[i, c] for c, i in cand[:k]])
    return result


def check_stats(kind, acts, reported, errors):
    """Per-feature stats and histogram: 32 equal bins over the reported [lo, hi), which must hold
    every value (sparse: the active ones, the zeros counted in the first bin)."""
    if len(reported) != acts.shape[1]:
        errors.append(f"{kind}: {len(reported)} stats for {acts.shape[1]} features")
        return
    for j, st in enumerate(reported):
        col = acts[:, j]
        tag = f"{kind} {j} stats"
        if st["active"] != int((col > 0).sum()):
            errors.append(f"{tag}: active {st['active']} != {int((col > 0).sum())}")
        for key, want in (("min", col.min()), ("max", col.max()), ("mean", col.mean())):
            if abs(st[key] - want) > 1e-5 * max(1.0, abs(want)):
                errors.append(f"{tag}: {key} {st[key]} != {want}")
        lo, hi, counts = st["lo"], st["hi"], st["histogram"]
        binned = col if kind == "dense" else col[col > 0]
        if sum(counts) != col.size:
            errors.append(f"{tag}: histogram holds {sum(counts)} of {col.size} values")
        if binned.size == 0:
            continue
        if not (lo <= binned.min() and binned.max() < hi):
            errors.append(f"{tag}: values [{binned.min()}, {binned.max()}] outside [{lo}, {hi})")
            continue
        # Fitted to the values (sparse: from 0): not much wider than they spread.
        span = binned.max() - (0.0 if kind == "sparse" else binned.min())
        if hi - lo > 3 * span + 2 * (hi - lo) / len(counts):
            errors.append(f"{tag}: range [{lo}, {hi}) not fitted to values spanning {span}")
        want, _ = np.histogram(binned, bins=len(counts), range=(lo, hi))
        if kind == "sparse":
            want[0] += col.size - binned.size
        # Dense values are the embeddings themselves: exact. Sparse ones are recomputed here, and
        # a value within float noise of a bin edge may land in the neighbouring bin.
        off = int(np.abs(np.asarray(counts) - want).sum())
        if off > (0 if kind == "dense" else 2):
            errors.append(f"{tag}: histogram {counts} != numpy {want.tolist()}")


def main():
    ws, details_path = sys.argv[1], sys.argv[2]
    details = json.load(open(details_path))
    acts, sd = activations(ws)
    errors = []
    for kind in ("dense", "sparse"):
        check_quantiles(kind, acts[kind], details[kind]["quantiles"], errors)
        if "stats" in details[kind]:
            check_stats(kind, acts[kind], details[kind]["stats"], errors)
    names, corr = correlations(ws, acts)
    print(json.dumps({"errors": errors[:50], "attributes": names, "corr": corr,
                      "nearest": nearest(sd)}))


if __name__ == "__main__":
    main()
