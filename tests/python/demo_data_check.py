"""Checks a `saescope demo-data` folder the way a CelebA user would read it (pandas + PIL).

usage: demo_data_check.py DIR COUNT SIZE FORMAT ATTRS FACTORS
  ATTRS, FACTORS: the expected column names, comma-separated, in order.

Prints one JSON object (frequencies, pixel effect sizes, rotation error) on stdout; exits 1
with "FAIL: ..." lines on stderr when a check fails. The pixel checks read the attribute and
factor columns from the CSV and measure the image files, so they fail when a CSV row does not
describe the image it names.
"""
import json
import os
import sys

import numpy as np
import pandas as pd
from PIL import Image

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def main():
    root, count, size, fmt, attrs, factors = sys.argv[1:7]
    count, size = int(count), int(size)
    attrs, factors = attrs.split(","), factors.split(",")
    ext = "png" if fmt == "png" else "jpg"
    img_dir = os.path.join(root, "img_align_celeba", "img_align_celeba")
    report = {}

    # --- list_attr_celeba.csv -------------------------------------------------------------
    df = pd.read_csv(os.path.join(root, "list_attr_celeba.csv"))
    check(list(df.columns) == ["image_id"] + attrs + factors, f"columns are {list(df.columns)}")
    check(len(df) == count, f"{len(df)} rows, expected {count}")
    expected_ids = [f"{i:06d}.{ext}" for i in range(1, count + 1)]
    check(list(df["image_id"]) == expected_ids, "image_id is not 000001.. in order")
    files = sorted(os.listdir(img_dir))
    check(files == expected_ids, f"image files ({len(files)}) do not match image_id")
    for a in attrs:
        check(df[a].dtype.kind == "i", f"{a} is not an integer column")
        check(set(df[a].unique()) <= {-1, 1}, f"{a} has values other than 1/-1")
    for f in factors:
        check(df[f].dtype.kind in "if", f"{f} is not numeric")
        check(not df[f].isna().any(), f"{f} has missing values")
    report["rows"] = len(df)
    report["frequencies"] = {a: float((df[a] == 1).mean()) for a in attrs}

    # --- list_eval_partition.csv ----------------------------------------------------------
    part = pd.read_csv(os.path.join(root, "list_eval_partition.csv"))
    check(list(part.columns) == ["image_id", "partition"], f"partition columns {list(part.columns)}")
    check(list(part["image_id"]) == expected_ids, "partition image_id mismatch")
    check(set(part["partition"].unique()) <= {0, 1, 2}, "partition values other than 0/1/2")
    shares = [float((part["partition"] == k).mean()) for k in range(3)]
    report["partition_shares"] = shares
    if count >= 100:
        check(abs(shares[0] - 0.8) < 0.02 and abs(shares[1] - 0.1) < 0.02, f"partition {shares}")

    # --- images -----------------------------------------------------------------------------
    imgs = np.zeros((count, size, size, 3), np.float32)
    for i, name in enumerate(expected_ids):
        with Image.open(os.path.join(img_dir, name)) as im:
            check(im.size == (size, size), f"{name} is {im.size}, expected {size}x{size}")
            check(im.mode == "RGB", f"{name} mode is {im.mode}")
            check(im.format == ("PNG" if ext == "png" else "JPEG"), f"{name} format {im.format}")
            imgs[i] = np.asarray(im.convert("RGB").resize((size, size)), np.float32) / 255.0

    if count >= 300:
        report["effects"] = pixel_effects(df, imgs, size)
        report["rotation_error_deg_p90"] = rotation_error(df, imgs, size)

    print(json.dumps(report))
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    return 1 if failures else 0


def to_pixel(df, size, u, v):
    """Face-frame point (u right, v down) -> pixel coordinates for every row (the CSV factors)."""
    a = np.radians(df["rotation_deg"].to_numpy())
    c, s = np.cos(a), np.sin(a)
    k = 0.5 * size * df["scale"].to_numpy()
    x = size * (0.5 + df["offset_x"].to_numpy()) + k * (u * c + v * s)
    y = size * (0.5 + df["offset_y"].to_numpy()) + k * (-u * s + v * c)
    return x, y


def probe(df, imgs, size, points, rad=0.02):
    """Mean colour over a small patch around each face-frame point, per image: [N, 3]."""
    n = len(df)
    acc = np.zeros((n, 3), np.float32)
    cnt = 0
    for u, v in points:
        for du in (-rad, 0, rad):
            for dv in (-rad, 0, rad):
                x, y = to_pixel(df, size, u + du, v + dv)
                xi = np.clip(np.floor(x).astype(int), 0, size - 1)
                yi = np.clip(np.floor(y).astype(int), 0, size - 1)
                acc += imgs[np.arange(n), yi, xi]
                cnt += 1
    return acc / cnt


def lum(c):
    return 0.299 * c[:, 0] + 0.587 * c[:, 1] + 0.114 * c[:, 2]


def sat(c):
    mx, mn = c.max(1), c.min(1)
    return (mx - mn) / np.maximum(mx, 1e-6)


def effect(vals, mask):
    """Cohen's d of vals between mask and ~mask."""
    a, b = vals[mask], vals[~mask]
    sd = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float((a.mean() - b.mean()) / max(sd, 1e-9))


def pixel_effects(df, imgs, size):
    on = lambda name: (df[name] == 1).to_numpy()
    cheek = probe(df, imgs, size, [(-0.12, 0.1), (0.12, 0.1)])
    effects = {}
    # A hat is saturated cloth above the head, where there is only background otherwise.
    effects["Wearing_Hat"] = effect(sat(probe(df, imgs, size, [(0, -0.74)])), on("Wearing_Hat"))
    # Pale skin is brighter skin.
    effects["Pale_Skin"] = effect(lum(cheek), on("Pale_Skin"))
    # Blond hair is brighter than black hair (no hat, not bald).
    hair = lum(probe(df, imgs, size, [(0, -0.55)]))
    m = ~on("Wearing_Hat") & ~on("Bald") & (on("Blond_Hair") | on("Black_Hair"))
    effects["Blond_vs_Black_Hair"] = effect(hair[m], on("Blond_Hair")[m])
    # A beard puts hair colour where the jaw's skin would be.
    chin = probe(df, imgs, size, [(0, 0.43), (-0.2, 0.33), (0.2, 0.33)])
    effects["No_Beard"] = effect(np.abs(chin - cheek).sum(1), on("No_Beard"))
    for name, want in [("Wearing_Hat", 2.0), ("Pale_Skin", 1.5), ("Blond_vs_Black_Hair", 3.0)]:
        check(effects[name] > want, f"{name}: effect size {effects[name]:.2f} <= {want}")
    check(effects["No_Beard"] < -1.0, f"No_Beard: effect size {effects['No_Beard']:.2f}")
    return effects


def rotation_error(df, imgs, size):
    """Finds each face's mirror-symmetry axis and compares its tilt with rotation_deg."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    errors = []
    for i in range(min(len(df), 100)):
        r = df.iloc[i]
        cx, cy = size * (0.5 + r["offset_x"]), size * (0.5 + r["offset_y"])
        rad = 0.25 * size * r["scale"]
        m = (xx - cx) ** 2 + (yy - cy) ** 2 < rad * rad
        qx, qy, val = xx[m] - cx, yy[m] - cy, imgs[i][m]
        best = None
        for th in np.arange(-30, 30.01, 0.5):
            a = np.radians(th)
            dx, dy = -np.sin(a), -np.cos(a)  # the face's "up" after a counter-clockwise turn
            dot = qx * dx + qy * dy
            px = np.clip(np.round(cx + 2 * dot * dx - qx - 0.5).astype(int), 0, size - 1)
            py = np.clip(np.round(cy + 2 * dot * dy - qy - 0.5).astype(int), 0, size - 1)
            err = np.abs(imgs[i][py, px] - val).sum()
            if best is None or err < best[0]:
                best = (err, th)
        errors.append(abs(best[1] - r["rotation_deg"]))
    p90 = float(np.percentile(errors, 90))
    check(p90 < 4.0, f"rotation: 90th percentile error {p90:.1f} deg")
    return p90


if __name__ == "__main__":
    sys.exit(main())
