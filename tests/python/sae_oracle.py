"""Reference computations of the modern SAE variants for tests/test_sae.cpp (python3-torch).

usage: sae_oracle.py blocks   -> JSON: TopK, BatchTopK, batch threshold, JumpReLU, AuxK loss,
                                 parallel-gradient removal, decoder normalisation, geometric
                                 median, lr schedule, on fixed tensors
       sae_oracle.py train    -> JSON: a few training steps of topk, batchtopk and l1 from fixed
                                 initial weights and batches (inputs and results); topk-bf16
                                 and l1-bf16 with the products in bfloat16
       sae_oracle.py seed     -> JSON: the reference SAE's loss and gradients (autograd, float64)
                                 on a fixed batch of rows (with repeats) of fixed unit vectors;
                                 some features never fire
       sae_oracle.py auroc    -> JSON: random scores/labels with ties and scipy's Mann-Whitney AUROC
"""
import json
import math
import sys

import torch
import torch.nn.functional as F


def T(t):
    t = t.detach().to(torch.float64)
    return {"shape": list(t.shape), "data": t.flatten().tolist()}


def fixed(rows, cols, fn):
    return torch.tensor([[fn(i, j) for j in range(cols)] for i in range(rows)], dtype=torch.float32)


def topk_act(pre, k):
    v, i = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter(1, i, F.relu(v))


def batchtopk_act(pre, k):
    r = F.relu(pre).flatten()
    v, i = r.topk(k * pre.shape[0])
    return torch.zeros_like(r).scatter(0, i, v).view(pre.shape)


def batch_threshold(pre, k):
    r = F.relu(pre.detach()).flatten()
    return r.topk(k * pre.shape[0])[0].min().item()


def mm_in(bf16):
    """a @ b, or with the operands rounded to bfloat16 and the product back in fp32."""
    if bf16:
        return lambda a, b: (a.bfloat16() @ b.bfloat16()).float()
    return lambda a, b: a @ b


def auxk(pre, residual, wd, dead, kaux, mm=mm_in(False)):
    nd = int(dead.sum())
    if nd == 0 or kaux < 1:
        return torch.zeros(())
    k = min(kaux, nd)
    masked = pre.masked_fill(~dead.unsqueeze(0), float("-inf"))
    v, i = masked.topk(k, dim=1)
    z = torch.zeros_like(pre).scatter(1, i, F.relu(v))
    return ((mm(z, wd) - residual) ** 2).mean()


def remove_parallel(wd):
    unit = wd / wd.norm(dim=1, keepdim=True).clamp_min(1e-12)
    wd.grad -= (wd.grad * unit).sum(1, keepdim=True) * unit


def lr_factor(step, total, warmup, decay):
    n = max(total, 1)
    w, d_start = warmup * n, (1 - decay) * n
    f = 1.0
    if w > 0 and step < w:
        f = min(f, (step + 1) / w)
    if decay > 0 and step >= d_start:
        f = min(f, max(0.0, (n - step) / (n - d_start)))
    return f


def geometric_median(x, iters=8):
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(1e-8)
        m = (w.unsqueeze(1) * x).sum(0) / w.sum()
    return m


def blocks():
    B, Fd, D, k = 4, 9, 5, 2
    pre = fixed(B, Fd, lambda i, j: math.sin(1.3 * i + 0.7 * j * j + 0.2))
    wd = fixed(Fd, D, lambda i, j: math.cos(0.9 * i + 1.7 * j))
    residual = fixed(B, D, lambda i, j: 0.5 * math.sin(i * 2 + j))
    dead = torch.tensor([j % 3 == 0 for j in range(Fd)])
    grad = fixed(Fd, D, lambda i, j: math.sin(i + 0.3 * j))
    w = wd.clone().requires_grad_(True)
    w.grad = grad.clone()
    with torch.no_grad():
        remove_parallel(w)
    wn = wd / wd.norm(dim=1, keepdim=True)
    x = fixed(7, 3, lambda i, j: math.sin(i * 3.1 + j) + (5.0 if i == 6 else 0.0))
    theta = 0.4
    print(json.dumps({
        "pre": T(pre), "k": k, "wd": T(wd), "residual": T(residual),
        "dead": [bool(v) for v in dead], "grad": T(grad), "gm_x": T(x), "theta": theta,
        "topk": T(topk_act(pre, k)), "batchtopk": T(batchtopk_act(pre, k)),
        "batch_threshold": batch_threshold(pre, k),
        "jumprelu": T(pre * (pre > theta).float()),
        "aux": auxk(pre, residual, wd, dead, 2).item(),
        "aux_all": auxk(pre, residual, wd, dead, 100).item(),
        "grad_projected": T(w.grad), "wd_normalised": T(wn),
        "geometric_median": T(geometric_median(x)),
        "lr_factors": [lr_factor(s, 10, 0.2, 0.3) for s in range(10)],
    }))


def train_variant(variant, bf16=False):
    mm = mm_in(bf16)
    D, Fd, B, steps = 6, 10, 5, 4
    k, kaux, alpha, dead_after = 2, 4, 1.0 / 32, 5
    lr, warmup, decay, l1, l1_warmup, clip, ema = 1e-2, 0.25, 0.5, 0.3, 0.5, 0.0, 0.5
    if variant == "l1":
        clip = 1.0
        warmup = 0.0
    we = fixed(D, Fd, lambda i, j: 0.4 * math.sin(0.7 * i + 1.1 * j + 0.3))
    wd = fixed(Fd, D, lambda i, j: 0.5 * math.cos(1.3 * i + 0.5 * j))
    if variant != "l1":
        wd = wd / wd.norm(dim=1, keepdim=True)
    be = torch.tensor([0.02 * (j - 4) for j in range(Fd)])
    bd = torch.tensor([0.03 * j - 0.05 for j in range(D)])
    xs = [fixed(B, D, lambda i, j, s=s: math.sin(0.9 * i + 1.9 * j + 0.7 * s) * (1 + 0.1 * s))
          for s in range(steps)]
    init = {"we": T(we), "wd": T(wd), "be": T(be), "bd": T(bd)}
    params = [p.clone().requires_grad_(True) for p in (we, wd, be, bd)]
    W_e, W_d, b_e, b_d = params
    # The C++ module's parameter order: weight_encoder, weight_decoder, bias_encoder, bias_decoder.
    opt = torch.optim.Adam(params, lr=lr)
    since = torch.zeros(Fd, dtype=torch.long)
    theta, have = 0.0, False
    log = []
    for step in range(steps):
        x = xs[step]
        cur = lr * lr_factor(step, steps, warmup, decay)
        for g in opt.param_groups:
            g["lr"] = cur
        pre = mm(x - b_d, W_e) + b_e
        aux = torch.zeros(())
        if variant == "l1":
            f = F.relu(pre)
            xh = mm(f, W_d) + b_d
            recon = ((xh - x) ** 2).sum(1).mean()
            ramp = min(1.0, (step + 1) / (l1_warmup * steps))
            sp = (f * W_d.norm(dim=1).unsqueeze(0)).sum(1).mean()
            total = recon + (l1 * ramp) * sp
        else:
            f = topk_act(pre, k) if variant == "topk" else batchtopk_act(pre, k)
            xh = mm(f, W_d) + b_d
            recon = ((xh - x) ** 2).mean()
            dead = since >= dead_after
            aux = auxk(pre, (x - xh).detach(), W_d, dead, kaux, mm)
            total = recon + alpha * aux
            tau = batch_threshold(pre, k)
            theta = theta + ema * (tau - theta) if have else tau
            have = True
        opt.zero_grad()
        total.backward()
        with torch.no_grad():
            if variant != "l1":
                remove_parallel(W_d)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        with torch.no_grad():
            if variant != "l1":
                W_d.div_(W_d.norm(dim=1, keepdim=True).clamp_min(1e-12))
            fired = (f > 0).any(0)
            since += B
            since[fired] = 0
        log.append({"loss": total.item(), "recon": recon.item(), "aux": aux.item(),
                    "l0": (f > 0).sum(1).double().mean().item(), "lr": cur})
    return {"config": {"D": D, "F": Fd, "k": k, "k_aux": kaux, "aux_alpha": alpha,
                       "dead_after": dead_after, "lr": lr, "lr_warmup": warmup, "lr_decay": decay,
                       "l1": l1, "l1_warmup": l1_warmup, "grad_clip": clip, "threshold_ema": ema,
                       "steps": steps},
            "init": init, "xs": [T(x) for x in xs], "log": log,
            "final": {"we": T(W_e), "wd": T(W_d), "be": T(b_e), "bd": T(b_d),
                      "since": since.tolist(), "threshold": theta}}


def seed_step():
    """The reference loss ‖x − x̂‖ + λ Σ|f| of DESIGN.md and its gradients, in float64."""
    N, D, Fd, B, l1 = 50, 24, 40, 37, 0.1
    x = fixed(N, D, lambda i, j: math.sin(0.37 * i * j + 0.9 * i + 1.3 * j) + 0.1 * math.cos(i))
    x = F.normalize(x, dim=1)
    rows = [(7 * i + 3) % N for i in range(B)]
    rows[5] = rows[6]  # a row twice in the batch
    we = fixed(D, Fd, lambda i, j: 0.3 * math.sin(1.7 * i + 0.4 * j + 0.2))
    wd = fixed(Fd, D, lambda i, j: 0.2 * math.cos(0.8 * i + 1.4 * j))
    be = torch.tensor([0.05 * math.sin(j) - (5.0 if j % 9 == 4 else 0.0) for j in range(Fd)])
    bd = torch.tensor([0.02 * j - 0.2 for j in range(D)])
    params = [t.double().clone().requires_grad_(True) for t in (we, wd, be, bd)]
    W_e, W_d, b_e, b_d = params
    xb = x.double()[rows]
    f = F.relu((xb - b_d) @ W_e + b_e)
    recon = (xb - (f @ W_d + b_d)).norm()
    sparsity = f.abs().sum()
    total = recon + l1 * sparsity
    total.backward()
    return {"x": T(x), "rows": rows, "l1": l1,
            "init": {"we": T(we), "wd": T(wd), "be": T(be), "bd": T(bd)},
            "loss": total.item(), "recon": recon.item(), "sparsity": sparsity.item(),
            "l0": (f > 0).sum(1).double().mean().item(),
            "never_fire": int(((f > 0).sum(0) == 0).sum()),
            "grad": {"we": T(W_e.grad), "wd": T(W_d.grad), "be": T(b_e.grad), "bd": T(b_d.grad)}}


def auroc():
    from scipy.stats import mannwhitneyu
    g = torch.Generator().manual_seed(5)
    n = 300
    # Rounded scores: many ties; a weak signal.
    labels = (torch.rand(n, generator=g) < 0.3)
    scores = torch.round(torch.randn(n, generator=g) * 2 + labels.float()) / 2
    pos, neg = scores[labels].numpy(), scores[~labels].numpy()
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    print(json.dumps({"scores": scores.tolist(), "labels": [int(v) for v in labels],
                      "auroc": float(u) / (len(pos) * len(neg))}))


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "blocks":
        blocks()
    elif what == "train":
        runs = {v: train_variant(v) for v in ("topk", "batchtopk", "l1")}
        runs.update({v + "-bf16": train_variant(v, bf16=True) for v in ("topk", "l1")})
        print(json.dumps(runs))
    elif what == "seed":
        print(json.dumps(seed_step()))
    elif what == "auroc":
        auroc()
