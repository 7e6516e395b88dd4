"""The reference Python pipeline (torch + torchvision, as the reference notebook does it), timed
for bench/cpu.sh. Each mode prints one JSON line with its timings; the caller measures the whole
process too (imports and data loading included).

usage: reference_pipeline.py train DATA SIZE BATCH THREADS WORKERS [PRECISION]
       reference_pipeline.py embed DATA SIZE BATCH THREADS WORKERS [PRECISION]
       reference_pipeline.py sae   EMBEDDINGS.npy THREADS [PRECISION] (one epoch, reference loss)
       reference_pipeline.py topk  EMBEDDINGS.npy SAE.pt THREADS      (top-16 of every feature)

PRECISION: fp32 (default, the notebook) or bf16, the usual PyTorch recipe for bf16 on a CPU with
AMX, as saescope's --precision bf16 does it: fine-tuning under torch.autocast with channels-last
(losses in fp32), embedding with a bf16 model and channels-last, the SAE's products in bf16.
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms


def loader(data, size, batch, workers, shuffle):
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Resize((size, size), antialias=True)])
    ds = torchvision.datasets.ImageFolder(data, transform=tf)
    return ds, torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=shuffle,
                                           num_workers=workers)


def backbone():
    m = torchvision.models.resnet18(weights=None)
    m.fc = torch.nn.Identity()
    return m


def train(data, size, batch, threads, workers, precision="fp32"):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ds, dl = loader(data, size, batch, workers, True)
    model = backbone().train()
    bf16 = precision == "bf16"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.time()
    for x, _ in dl:
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            e = model(x)
            e_rot = model(torch.rot90(x, 2, (2, 3)))
        e, e_rot = e.float(), e_rot.float()
        loss = F.cross_entropy(e @ e.T, torch.arange(len(x))) + F.mse_loss(e, -e_rot)
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = time.time() - t0
    return {"images": len(ds), "loop_seconds": s, "loop_images_per_s": len(ds) / s}


def embed(data, size, batch, threads, workers, precision="fp32"):
    torch.set_num_threads(threads)
    ds, dl = loader(data, size, batch, workers, False)
    model = backbone().eval()
    bf16 = precision == "bf16"
    if bf16:
        model = model.bfloat16().to(memory_format=torch.channels_last)
    out = []
    t0 = time.time()
    with torch.no_grad():
        for x, _ in dl:
            if bf16:
                x = x.bfloat16().contiguous(memory_format=torch.channels_last)
            out.append(model(x).float())
    np.save("/tmp/reference_embeddings.npy", torch.cat(out).numpy())
    s = time.time() - t0
    return {"images": len(ds), "loop_seconds": s, "loop_images_per_s": len(ds) / s}


class SAE(torch.nn.Module):
    def __init__(self, d, f, bf16=False):
        super().__init__()
        self.weight_encoder = torch.nn.Parameter(torch.randn(d, f))
        self.weight_decoder = torch.nn.Parameter(torch.randn(f, d))
        self.bias_encoder = torch.nn.Parameter(torch.zeros(f))
        self.bias_decoder = torch.nn.Parameter(torch.zeros(d))
        if bf16:
            self.mm = lambda a, b: (a.bfloat16() @ b.bfloat16()).float()
        else:
            self.mm = lambda a, b: a @ b

    def forward(self, x):
        f = F.relu(self.mm(x - self.bias_decoder, self.weight_encoder) + self.bias_encoder)
        return f, self.mm(f, self.weight_decoder) + self.bias_decoder


def sae(path, threads, precision="fp32"):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = F.normalize(torch.from_numpy(np.load(path)), dim=1)
    model = SAE(x.shape[1], 512, bf16=precision == "bf16")
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-4)
    t0 = time.time()
    for idx in torch.randperm(len(x)).split(512):
        xb = x[idx]
        f, x_hat = model(xb)
        loss = (xb - x_hat).norm() + 0.1 * f.abs().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"vectors": len(x), "epoch_seconds": time.time() - t0}


def sae_topk(path, threads, variant="topk"):
    """One epoch of a TopK / BatchTopK SAE as PyTorch code commonly writes it: 4,096 features,
    batch 4,096, k 16, AuxK (256 dead latents, weight 1/32), unit decoder rows with the gradient's
    parallel component removed, Adam; the batch threshold for the global one."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = F.normalize(torch.from_numpy(np.load(path)), dim=1)
    x = x - x.mean(0)
    x = x * (x.shape[1] ** 0.5 / x.norm(dim=1).mean())
    n, d = x.shape
    nf, k, kaux, alpha, batch = 4096, 16, 256, 1 / 32, 4096
    wd = F.normalize(torch.randn(nf, d), dim=1)
    W_d, W_e = torch.nn.Parameter(wd.clone()), torch.nn.Parameter(wd.t().clone())
    b_e, b_d = torch.nn.Parameter(torch.zeros(nf)), torch.nn.Parameter(x[:8192].median(0).values)
    opt = torch.optim.Adam([W_e, W_d, b_e, b_d], lr=2e-4 * (16384 / nf) ** 0.5)
    since = torch.zeros(nf, dtype=torch.long)
    theta = None
    t0 = time.time()
    for idx in torch.randperm(n).split(batch):
        xb = x[idx]
        pre = (xb - b_d) @ W_e + b_e
        if variant == "topk":
            v, i = pre.topk(k, dim=1)
            f = torch.zeros_like(pre).scatter(1, i, F.relu(v))
        else:
            r = F.relu(pre).flatten()
            v, i = r.topk(k * len(xb))
            f = torch.zeros_like(r).scatter(0, i, v).view_as(pre)
        xh = f @ W_d + b_d
        loss = ((xh - xb) ** 2).mean()
        dead = since >= n
        if dead.any():
            v, i = pre.masked_fill(~dead, float("-inf")).topk(min(kaux, int(dead.sum())), dim=1)
            z = torch.zeros_like(pre).scatter(1, i, F.relu(v))
            loss = loss + alpha * ((z @ W_d - (xb - xh).detach()) ** 2).mean()
        with torch.no_grad():
            tau = F.relu(pre).flatten().topk(k * len(xb)).values.min().item()
            theta = tau if theta is None else theta + 0.01 * (tau - theta)
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            u = F.normalize(W_d, dim=1)
            W_d.grad -= (W_d.grad * u).sum(1, keepdim=True) * u
        opt.step()
        with torch.no_grad():
            W_d.div_(W_d.norm(dim=1, keepdim=True))
            since += len(xb)
            since[(f > 0).any(0)] = 0
    return {"vectors": n, "features": nf, "epoch_seconds": time.time() - t0, "loss": loss.item()}


def topk(path, sae_path, threads):
    torch.set_num_threads(threads)
    x = F.normalize(torch.from_numpy(np.load(path)), dim=1)
    sd = torch.load(sae_path)
    t0 = time.time()
    with torch.no_grad():
        f = F.relu((x - sd["bias_decoder"]) @ sd["weight_encoder"] + sd["bias_encoder"])
        top = torch.topk(F.normalize(f, dim=1), 16, dim=0).indices
    return {"features": f.shape[1], "rows": len(x), "topk_seconds": time.time() - t0,
            "top_shape": list(top.shape)}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode in ("train", "embed"):
        data, size, batch, threads, workers = args[0], *map(int, args[1:5])
        r = (train if mode == "train" else embed)(data, size, batch, threads, workers, *args[5:])
    elif mode == "sae":
        r = sae(args[0], int(args[1]), *args[2:])
    elif mode == "sae-topk":
        r = sae_topk(args[0], int(args[1]), *args[2:])
    else:
        r = topk(args[0], args[1], int(args[2]))
    print(json.dumps({"mode": mode, "torch": torch.__version__, **r}))


if __name__ == "__main__":
    main()
