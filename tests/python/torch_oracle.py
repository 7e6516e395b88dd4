"""Reference computations for tests/test_engine.cpp, with Debian's python3-torch/torchvision.

usage: torch_oracle.py losses            -> JSON of the fine-tuning and SAE losses on fixed tensors
       torch_oracle.py resnet OUTDIR     -> OUTDIR/resnet18.pt (torchvision state_dict without fc),
                                            OUTDIR/input.npy, OUTDIR/output.npy (eval forward),
                                            and prints the state_dict names and shapes as JSON
       torch_oracle.py resnet-train OUTDIR SIZE -> one fine-tuning step's numbers in train mode:
                                            OUTDIR/start.pt (weights), OUTDIR/input.npy [6,3,SIZE,SIZE],
                                            OUTDIR/grads.pt (each parameter's gradient of the loss),
                                            OUTDIR/after.pt (the state_dict after the two forwards:
                                            batch-norm running statistics); prints the losses
       torch_oracle.py resize IN.npy H W OUT.npy -> antialiased bilinear resize of [C,H,W] float
       torch_oracle.py imagefolder ROOT  -> torchvision ImageFolder's order of ROOT, one path a line
       torch_oracle.py torchvision-checkpoint FILE -> a full resnet18 state_dict (with fc)
       torch_oracle.py compare-backbone FULL BACKBONE -> BACKBONE == FULL without fc, strict load
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def fixed(rows, cols, fn):
    return torch.tensor([[fn(i, j) for j in range(cols)] for i in range(rows)], dtype=torch.float32)


def losses():
    B, D, Fdim = 6, 8, 5
    e = fixed(B, D, lambda i, j: 0.5 * math.sin(i * 7 + j * 3))
    e_rot = fixed(B, D, lambda i, j: 0.3 * math.cos(i * 5 + j))
    contrastive = F.cross_entropy(e @ e.T, torch.arange(B))
    orientation = F.mse_loss(e, -e_rot)
    # The reference SAE on fixed weights.
    w_e = fixed(D, Fdim, lambda i, j: 0.2 * math.sin(i + 2 * j))
    w_d = fixed(Fdim, D, lambda i, j: 0.1 * math.cos(3 * i + j))
    b_e = torch.tensor([0.05 * (j - 2) for j in range(Fdim)])
    b_d = torch.tensor([0.01 * j for j in range(D)])
    x = F.normalize(e, dim=1)
    f = F.relu((x - b_d) @ w_e + b_e)
    x_hat = f @ w_d + b_d
    recon = torch.norm(x - x_hat)
    sparsity = f.abs().sum()
    print(json.dumps({
        "contrastive": contrastive.item(), "orientation": orientation.item(),
        "total": (contrastive + orientation).item(),
        "sae_reconstruction": recon.item(), "sae_sparsity": sparsity.item(),
        "sae_total": (recon + 0.1 * sparsity).item(),
        "f": f.flatten().tolist(), "x_hat": x_hat.flatten().tolist(),
    }))


def resnet(outdir):
    import torchvision
    torch.manual_seed(3)
    m = torchvision.models.resnet18()
    m.fc = torch.nn.Identity()
    # Non-trivial BatchNorm statistics so eval mode is really exercised.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    m.eval()
    torch.save(m.state_dict(), f"{outdir}/resnet18.pt")
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = m(x)
    np.save(f"{outdir}/input.npy", x.numpy())
    np.save(f"{outdir}/output.npy", y.numpy())
    print(json.dumps([[k, list(v.shape), str(v.dtype)] for k, v in m.state_dict().items()]))


def resnet_train(outdir, size):
    """The reference fine-tuning step (DESIGN.md): both forwards in train mode, loss, backward."""
    import torchvision
    torch.manual_seed(4)
    m = torchvision.models.resnet18()
    m.fc = torch.nn.Identity()
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
                if name.startswith("layer4"):  # small embeddings: the contrastive loss stays > 0
                    mod.weight.uniform_(0.03, 0.08)
                    mod.bias.uniform_(-0.02, 0.02)
    torch.save(m.state_dict(), f"{outdir}/start.pt")
    m.train()
    x = torch.rand(6, 3, int(size), int(size), generator=torch.Generator().manual_seed(6))
    e, e_rot = m(x), m(x.flip([2, 3]))
    contrastive = F.cross_entropy(e @ e.T, torch.arange(6))
    orientation = F.mse_loss(e, -e_rot)
    (contrastive + orientation).backward()
    np.save(f"{outdir}/input.npy", x.numpy())
    torch.save({k: p.grad for k, p in m.named_parameters()}, f"{outdir}/grads.pt")
    torch.save(m.state_dict(), f"{outdir}/after.pt")
    print(json.dumps({"contrastive": contrastive.item(), "orientation": orientation.item()}))


def resize(src, h, w, dst):
    x = torch.from_numpy(np.load(src))[None]
    y = F.interpolate(x, size=(int(h), int(w)), mode="bilinear", align_corners=False, antialias=True)
    np.save(dst, y[0].numpy())


def imagefolder(root):
    """ImageFolder's order of a folder (relative paths, one per line)."""
    import os
    import torchvision
    ds = torchvision.datasets.ImageFolder(root, loader=lambda p: p)
    for path, _ in ds.samples:
        print(os.path.relpath(path, root))


def torchvision_checkpoint(path):
    """A full torchvision resnet18 state_dict (fc included), as torchvision saves its weights."""
    import torchvision
    torch.manual_seed(11)
    torch.save(torchvision.models.resnet18().state_dict(), path)


def compare_backbone(full, backbone):
    """backbone.pt must equal the full checkpoint without fc, and load strictly into resnet18."""
    import torchvision
    a, b = torch.load(full), torch.load(backbone)
    a = {k: v for k, v in a.items() if not k.startswith("fc.")}
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    m = torchvision.models.resnet18()
    m.fc = torch.nn.Identity()
    m.load_state_dict(b, strict=True)
    print("OK")


COMMANDS = {"losses": losses, "resnet": resnet, "resnet-train": resnet_train, "resize": resize, "imagefolder": imagefolder,
            "torchvision-checkpoint": torchvision_checkpoint, "compare-backbone": compare_backbone}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: torch_oracle.py {'|'.join(COMMANDS)} ARGS...")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
