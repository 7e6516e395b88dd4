#!/usr/bin/python3
"""Regenerates the fuzzers' seed corpora in tests/fuzz/corpus/<target>/.

Run with Debian's python3 (torch, PIL, numpy):  /usr/bin/python3 tests/fuzz/make_corpus.py
Pass --saescope build/app/saescope (the default when it exists) to take the manifest seed from a
real workspace (demo-data + run on 64 images); without it the manifest corpus keeps its files.

Everything is deterministic (fixed seeds, fixed timestamps, paths normalised) except the legacy
torch.save files, whose storage keys are object addresses chosen by torch.
"""
import argparse
import collections
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def out_dir(target):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    return d


def write(target, name, data):
    with open(os.path.join(out_dir(target), name), "wb") as f:
        f.write(data)


# --- images -----------------------------------------------------------------------------------
def pattern(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x ^ y) * 16 % 256], -1)
    noise = rng.integers(0, 32, size=(h, w, 3))
    return ((base + noise) % 256).astype(np.uint8)


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def make_images():
    rgb = Image.fromarray(pattern(12, 9, 1), "RGB")
    write("fuzz_image", "rgb.png", encode(rgb, "PNG"))
    write("fuzz_image", "grey.png", encode(rgb.convert("L"), "PNG"))
    write("fuzz_image", "rgba.png", encode(rgb.convert("RGBA"), "PNG"))
    write("fuzz_image", "palette.png", encode(rgb.convert("P", palette=Image.ADAPTIVE, colors=8), "PNG"))
    g16 = Image.fromarray((pattern(6, 5, 2)[..., 0].astype(np.uint16) * 257), "I;16")
    write("fuzz_image", "grey16.png", encode(g16, "PNG"))
    write("fuzz_image", "split_idat.png", split_idat(encode(rgb, "PNG")))
    write("fuzz_image", "baseline.jpg", encode(rgb, "JPEG", quality=80))
    write("fuzz_image", "progressive.jpg", encode(rgb, "JPEG", quality=70, progressive=True))
    write("fuzz_image", "grey.jpg", encode(rgb.convert("L"), "JPEG", quality=75))
    write("fuzz_image", "subsample420.jpg", encode(Image.fromarray(pattern(17, 11, 3)), "JPEG",
                                                   quality=60, subsampling=2))
    write("fuzz_image", "rgb.bmp", encode(Image.fromarray(pattern(5, 3, 4)), "BMP"))
    write("fuzz_image", "palette.bmp", encode(rgb.convert("P", palette=Image.ADAPTIVE, colors=4), "BMP"))
    write("fuzz_image", "grey.pgm", encode(rgb.convert("L"), "PPM"))
    write("fuzz_image", "rgb.ppm", encode(Image.fromarray(pattern(4, 4, 5)), "PPM"))
    g16a = np.asarray(g16, dtype=np.uint16)  # PIL writes no 16-bit PGM: big-endian samples by hand
    write("fuzz_image", "grey16.pgm", b"P5\n# 16-bit\n6 5\n65535\n" + g16a.astype(">u2").tobytes())
    write("fuzz_image", "anim.gif", encode(rgb.convert("P", palette=Image.ADAPTIVE, colors=16), "GIF"))
    write("fuzz_image", "one.png", encode(Image.new("RGB", (1, 1), (200, 10, 30)), "PNG"))


def split_idat(data):
    """The same PNG with its image data split over two IDAT chunks (a path stb handles apart)."""
    sig, rest = data[:8], data[8:]
    chunks, i = [], 0
    while i < len(rest):
        n = struct.unpack(">I", rest[i:i + 4])[0]
        chunks.append((rest[i + 4:i + 8], rest[i + 8:i + 8 + n]))
        i += 12 + n
    out = bytearray(sig)
    for typ, body in chunks:
        parts = [body[:len(body) // 2], body[len(body) // 2:]] if typ == b"IDAT" else [body]
        for p in parts:
            out += struct.pack(">I", len(p)) + typ + p + struct.pack(">I", zlib.crc32(typ + p))
    return bytes(out)


# --- tensor files -----------------------------------------------------------------------------
def torch_bytes(obj, zip_format=True):
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=zip_format)
    return b.getvalue()


def safetensors_bytes(tensors, metadata=None):
    codes = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.int32: "I32",
             np.uint8: "U8", np.bool_: "BOOL", np.float64: "F64", np.int8: "I8", np.int16: "I16"}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[a.dtype.type], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def make_checkpoints():
    torch.manual_seed(0)
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    sd = collections.OrderedDict([
        ("encoder.weight", torch.randn(4, 3)),
        ("encoder.bias", torch.zeros(4)),
        ("half", torch.randn(2, 2).half()),
        ("bf16", torch.randn(3).bfloat16()),
        ("steps", torch.tensor(7, dtype=torch.int64)),
        ("mask", torch.tensor([True, False, True])),
    ])
    base = torch.arange(10, dtype=torch.float32)
    views = collections.OrderedDict([("all", base), ("tail", base[4:]), ("strided", base[::3]),
                                     ("transposed", t.t())])
    write("fuzz_checkpoint", "tensor.pt", torch_bytes(t))
    write("fuzz_checkpoint", "state_dict.pt", torch_bytes(sd))
    write("fuzz_checkpoint", "plain_dict.pt", torch_bytes(dict(sd)))
    write("fuzz_checkpoint", "shared_views.pt", torch_bytes(views))
    write("fuzz_checkpoint", "training.pt",
          torch_bytes({"epoch": 3, "state_dict": sd, "optimizer": {"lr": 1e-3, "betas": (0.9, 0.99)},
                       "note": "x"}))
    write("fuzz_checkpoint", "legacy_state_dict.pt", torch_bytes(sd, zip_format=False))
    write("fuzz_checkpoint", "legacy_tensor.pt", torch_bytes(t, zip_format=False))
    write("fuzz_checkpoint", "f32.npy", npy_bytes(np.arange(6, dtype=np.float32).reshape(2, 3)))
    write("fuzz_checkpoint", "f16_3d.npy", npy_bytes(np.ones((2, 1, 3), dtype=np.float16)))
    write("fuzz_checkpoint", "fortran.npy",
          npy_bytes(np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))))
    write("fuzz_checkpoint", "big_endian.npy", npy_bytes(np.arange(4, dtype=">f4")))
    rng = np.random.default_rng(0)
    write("fuzz_checkpoint", "model.safetensors", safetensors_bytes(
        {"W_enc": rng.standard_normal((3, 4)).astype(np.float32),
         "b_enc": np.zeros(4, np.float16), "count": np.array([5], np.int64),
         "flags": np.array([1, 0], np.bool_)}, metadata={"format": "pt"}))


# --- ratings ----------------------------------------------------------------------------------
def make_ratings():
    def line(trial, kind, feature, rating, **extra):
        r = {"session": "study-1", "rater": "ann", "trial": trial, "kind": kind,
             "feature": feature, "rating": rating, "skipped": rating is None}
        r.update(extra)
        return json.dumps(r)

    study = [line(i, k, f, r, seed=3, sae="seed-f512-l0.1-s0", study_format=1,
                  time="2026-11-27T10:00:%02dZ" % i, response_ms=900 + 37 * i)
             for i, (k, f, r) in enumerate([("sparse", 17, 5), ("dense", 4, 2), ("dense", 9, None),
                                            ("sparse", 3, 7)])]
    write("fuzz_ratings", "study.jsonl", ("\n".join(study) + "\n").encode())
    write("fuzz_ratings", "minimal.jsonl",
          b'{"session":"s","rater":"b","trial":0,"kind":"dense","feature":0,"rating":1}\n\n'
          b'{"session":"s","rater":"b","trial":1,"kind":"sparse","feature":2,"rating":null}\n')
    write("fuzz_ratings", "crlf_cut.jsonl", (study[0] + "\r\n" + study[1][:40]).encode())
    write("fuzz_ratings", "unicode.jsonl", (json.dumps(
        {"session": "s\u00e9", "rater": "\u6e2c\u8a66", "trial": -1, "kind": "sparse",
         "feature": 9007199254740993, "rating": 4.0, "note": {"a": [1, 2.5, None]}},
        ensure_ascii=False) + "\n").encode())


# --- manifests --------------------------------------------------------------------------------
def normalise(obj):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("created", "modified", "time", "started", "finished") and isinstance(v, str):
                v = "2026-11-27T10:00:00Z"
            elif k in ("seconds", "elapsed") and isinstance(v, float):
                v = 1.5
            out[k] = normalise(v)
        return out
    if isinstance(obj, list):
        return [normalise(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        return "/data/" + os.path.basename(obj)
    return obj


def make_manifests(saescope):
    write("fuzz_manifest", "fresh.json",
          b'{"format": 1, "saescope_version": "0.1.0", "created": "2026-11-27T10:00:00Z", '
          b'"stages": {}}\n')
    write("fuzz_manifest", "stages.json", json.dumps(
        {"format": 1, "data_root": "/data/faces", "image_count": 3,
         "stages": {"train": {"status": "done", "summary": "1 epoch"},
                    "embed": {"status": "failed"}, "sae": {"status": "running"}}},
        indent=2).encode())
    if not saescope:
        print("manifest: no saescope binary; kept the real-workspace seed as it is")
        return
    with tempfile.TemporaryDirectory() as tmp:
        data, ws = os.path.join(tmp, "data"), os.path.join(tmp, "ws")
        subprocess.run([saescope, "demo-data", "--out", data, "--count", "64", "--size", "32",
                        "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([saescope, "run", "--data", data, "--workspace", ws, "--epochs", "1",
                        "--image-size", "32", "--sae-epochs", "2", "--features", "64",
                        "--weights", "none", "--threads", "1", "--seed", "0"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(ws, "manifest.json")) as f:
            m = normalise(json.load(f))
        write("fuzz_manifest", "workspace.json", (json.dumps(m, indent=2, sort_keys=True) + "\n").encode())
        # One image of the demo data as one more image seed.
        shutil.copy(first_png(data), os.path.join(out_dir("fuzz_image"), "demo.png"))


def first_png(root):
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith(".png"):
                return os.path.join(d, f)
    raise SystemExit("demo-data wrote no png")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.path.join(ROOT, "build", "app", "saescope")
    ap.add_argument("--saescope", default=default if os.access(default, os.X_OK) else "",
                    help="saescope binary for the real-workspace manifest seed ('' to skip)")
    args = ap.parse_args()
    make_images()
    make_checkpoints()
    make_ratings()
    make_manifests(args.saescope)
    total = 0
    for d, _, files in os.walk(CORPUS):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    print("corpus: %s, %d bytes" % (CORPUS, total))


if __name__ == "__main__":
    sys.exit(main())
