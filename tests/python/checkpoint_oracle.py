"""Reference oracle for engine/checkpoint and engine/npy (tests/test_checkpoint.cpp).

Real torch.save / numpy files are the ground truth:

  checkpoint_oracle.py write DIR
      Writes fixtures into DIR with Python's torch and numpy (plus hand-written safetensors,
      zip64 and crafted malformed files) and DIR/expect.json + DIR/expect.bin: for every fixture
      the entries (name, dtype, shape) and their C-contiguous bytes, offset/nbytes into the blob.
  checkpoint_oracle.py check-written DIR
      Loads the files the C++ side wrote, as listed in DIR/cpp_manifest.json, with torch.load
      (also weights_only=True) and numpy.load, and compares names, dtypes, shapes and values with
      the deterministic pattern both sides compute. Also checks zip CRCs and 64-byte alignment.
  checkpoint_oracle.py check-same A B [A B ...]
      torch.load each pair: B is an OrderedDict with A's tensors (a single tensor A counts as
      {"": A}) under the same keys in the same order, with the same dtypes, shapes and values.
  checkpoint_oracle.py resnet-strict FILE REFERENCE
      resnet18().load_state_dict(torch.load(FILE), strict=True) and values equal REFERENCE's.

Exits non-zero (with a message on stderr) on any mismatch.
"""
import collections
import io
import json
import os
import pickle
import random
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch

DTYPE_NAMES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32",
    torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool",
}
NAME_DTYPES = {v: k for k, v in DTYPE_NAMES.items()}


def fail(msg):
    print("checkpoint_oracle: " + msg, file=sys.stderr)
    sys.exit(1)


def raw_bytes(t):
    """C-contiguous little-endian bytes of a tensor, any dtype (bfloat16 included)."""
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes()


class Expect:
    def __init__(self):
        self.blob = bytearray()
        self.fixtures = {}
        self.errors = {}

    def add_tensors(self, file, named):
        entries = []
        for name, t in named:
            b = raw_bytes(t)
            entries.append({"name": name, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                            "offset": len(self.blob), "nbytes": len(b)})
            self.blob += b
        self.fixtures[file] = entries

    def add_array(self, file, a, name=""):
        a = np.asarray(a)
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        dt = {"f": "float", "i": "int", "u": "uint", "b": "bool"}[a.dtype.kind]
        dt = "bool" if dt == "bool" else dt + str(a.dtype.itemsize * 8)
        self.fixtures[file] = [{"name": name, "dtype": dt, "shape": list(a.shape),
                                "offset": len(self.blob), "nbytes": len(b)}]
        self.blob += b

    def save(self, d):
        with open(os.path.join(d, "expect.bin"), "wb") as f:
            f.write(self.blob)
        with open(os.path.join(d, "expect.json"), "w") as f:
            json.dump({"fixtures": self.fixtures, "errors": self.errors}, f, indent=1)


def mixed_state_dict():
    g = torch.Generator().manual_seed(1234)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["f64"] = torch.randn(2, 2, generator=g).double()
    sd["i64_scalar"] = torch.tensor(123456789012, dtype=torch.int64)  # 0-d
    sd["i64"] = torch.randint(-2**40, 2**40, (7,), generator=g, dtype=torch.int64)
    sd["i32"] = torch.randint(-2**30, 2**30, (2, 3), generator=g, dtype=torch.int32)
    sd["i16"] = torch.randint(-30000, 30000, (4,), generator=g, dtype=torch.int16)
    sd["i8"] = torch.randint(-128, 127, (6,), generator=g, dtype=torch.int8)
    sd["u8"] = torch.randint(0, 255, (2, 2, 2), generator=g, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True, True])
    base = torch.randn(4, 6, generator=g)
    sd["base"] = base
    sd["transposed"] = base.t()                # non-contiguous, same storage as "base"
    sd["rows_view"] = base[1:]                 # storage_offset 6, shared storage
    sd["strided"] = base[::2, 1::3]            # offset and steps in both dimensions
    sd["expanded"] = torch.arange(3.0).expand(4, 3)  # stride 0
    sd["empty"] = torch.zeros(0, 5)
    sd["f32_scalar"] = torch.tensor(2.5)
    sd["big"] = torch.randn(300, 250, generator=g)  # numel needs BININT
    sd["param"] = torch.nn.Parameter(torch.randn(3, generator=g))  # _rebuild_parameter
    sd["permuted"] = torch.randn(2, 3, 4, generator=g).permute(2, 0, 1)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])  # BUILD, as state_dict() has
    return sd


def rezip(src, dst, prefix, zip64):
    """Rewrites a torch zip with another record prefix, by hand; zip64 fields everywhere."""
    z = zipfile.ZipFile(src)
    records = [(prefix + n.split("/", 1)[1], z.read(n)) for n in z.namelist()]
    out = bytearray()
    central = []
    for name, data in records:
        off = len(out)
        crc = zlib.crc32(data)
        nb = name.encode()
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
            sizes = (0xFFFFFFFF, 0xFFFFFFFF)
        else:
            extra = b""
            sizes = (len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc, sizes[0], sizes[1],
                           len(nb), len(extra)) + nb + extra + data
        central.append((nb, crc, len(data), off))
    cd_off = len(out)
    for nb, crc, size, off in central:
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, size, off)
            s32, o32 = 0xFFFFFFFF, 0xFFFFFFFF
        else:
            extra, s32, o32 = b"", size, off
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc, s32, s32,
                           len(nb), len(extra), 0, 0, 0, 0, o32) + nb + extra
    cd_size = len(out) - cd_off
    n = len(central)
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, 0)
    with open(dst, "wb") as f:
        f.write(out)


# --- hand-crafted pickles, as torch.save would write them but with chosen (bad) fields


class FakeStorage:
    def __init__(self, key, numel, stype):
        self.key, self.numel, self.stype = key, numel, stype


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False,
                     collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class CraftPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.stype, obj.key, "cpu", obj.numel)
        return None


class LegacyStorage:
    def __init__(self, key, numel, stype, view=None):
        self.key, self.numel, self.stype, self.view = key, numel, stype, view


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, LegacyStorage):
            return ("storage", obj.stype, obj.key, "cpu", obj.numel, obj.view)
        return None


class LegacyTensor:
    """Pickles as the old torch._utils._rebuild_tensor(storage, offset, size, stride)."""
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride))

    def __reduce__(self):
        return (torch._utils._rebuild_tensor, self.args)


def write_legacy_views(path):
    """A pre-1.6 style file by hand: storage views (view_metadata) and _rebuild_tensor (v1)."""
    root = LegacyStorage("1", 10, torch.FloatStorage)
    view = LegacyStorage("1", 10, torch.FloatStorage, view=("2", 2, 6))  # root[2:8]
    longs = LegacyStorage("3", 3, torch.LongStorage)
    obj = collections.OrderedDict([
        ("whole", LegacyTensor(root, 0, (10,), (1,))),
        ("in_view", LegacyTensor(view, 1, (2, 2), (2, 1))),  # view[1:5] = root[3:7]
        ("in_view_t", LegacyTensor(view, 0, (3, 2), (1, 3))),
        ("longs", LegacyTensor(longs, 1, (2,), (1,))),
    ])
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        LegacyPickler(f, protocol=2).dump(obj)
        pickle.dump(["1", "3"], f, protocol=2)
        f.write(struct.pack("<q", 10) + np.arange(10, dtype="<f4").tobytes())
        f.write(struct.pack("<q", 3) + np.array([-5, 2**40, 7], dtype="<i8").tobytes())


def craft(path, obj, storages, prefix="archive/", pkl_name="data.pkl", compress=False,
          protocol=2):
    buf = io.BytesIO()
    CraftPickler(buf, protocol=protocol).dump(obj)
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode) as z:
        if pkl_name:
            z.writestr(prefix + pkl_name, buf.getvalue())
        for key, data in storages.items():
            z.writestr(prefix + "data/" + key, data)
        z.writestr(prefix + "version", b"3\n")


def install_opaque_class():
    """somepkg.mod.Thing: a class unknown to the C++ reader, importable for torch.load here."""
    import types

    class Thing:
        pass
    Thing.__module__, Thing.__qualname__ = "somepkg.mod", "Thing"
    mod = types.ModuleType("somepkg.mod")
    mod.Thing = Thing
    sys.modules["somepkg"] = types.ModuleType("somepkg")
    sys.modules["somepkg.mod"] = mod
    return Thing


def write_safetensors(path, named, metadata=None, order=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
             torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
    for name, t in named:
        b = raw_bytes(t)
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def cmd_write(d):
    torch.manual_seed(0)
    ex = Expect()

    sd = mixed_state_dict()
    torch.save(sd, os.path.join(d, "mixed.pt"))
    ex.add_tensors("mixed.pt", sd.items())
    torch.save(sd, os.path.join(d, "mixed_proto4.pt"), pickle_protocol=4)
    ex.add_tensors("mixed_proto4.pt", sd.items())
    torch.save(sd, os.path.join(d, "mixed_legacy.pt"), _use_new_zipfile_serialization=False)
    ex.add_tensors("mixed_legacy.pt", sd.items())

    for name, zip64 in (("mixed_zip64.pt", True), ("mixed_archive.pt", False)):
        rezip(os.path.join(d, "mixed.pt"), os.path.join(d, name), "archive/", zip64)
        back = torch.load(os.path.join(d, name))  # the rewrite must still be a valid checkpoint
        for k in sd:
            if not torch.equal(back[k], sd[k]):
                fail("rezip changed " + k)
        ex.add_tensors(name, sd.items())

    write_legacy_views(os.path.join(d, "legacy_views.pt"))
    lv = torch.load(os.path.join(d, "legacy_views.pt"))
    ex.add_tensors("legacy_views.pt", lv.items())

    import torchvision
    m = torchvision.models.resnet18()
    rsd = m.state_dict()
    torch.save(rsd, os.path.join(d, "resnet18.pt"))
    ex.add_tensors("resnet18.pt", rsd.items())

    plain = {"weight": torch.randn(2, 3), "epoch": 3, "name": "plain", "none": None,
             "nested": {"lr": 0.1, "betas": (0.9, 0.999)},
             "bias": torch.arange(3, dtype=torch.int32)}
    torch.save(plain, os.path.join(d, "plain_dict.pt"))
    ex.add_tensors("plain_dict.pt", [("weight", plain["weight"]), ("bias", plain["bias"])])

    single = torch.randn(4, 5).t()
    torch.save(single, os.path.join(d, "single.pt"))
    ex.add_tensors("single.pt", [("", single)])

    small = collections.OrderedDict([("a.weight", torch.randn(3, 2)), ("a.bias", torch.zeros(3))])
    opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))])
    torch.save({"epoch": 5, "state_dict": small, "optimizer": opt.state_dict()},
               os.path.join(d, "training_state_dict.pt"))
    ex.add_tensors("training_state_dict.pt", small.items())
    torch.save({"model": small, "step": 7}, os.path.join(d, "training_model.pt"))
    ex.add_tensors("training_model.pt", small.items())
    torch.save(collections.OrderedDict(), os.path.join(d, "empty_state.pt"))
    ex.add_tensors("empty_state.pt", [])

    # A crafted, valid checkpoint with an unknown GLOBAL beside the tensors: must be ignored.
    Opaque = install_opaque_class()
    st = FakeStorage("0", 6, torch.FloatStorage)
    vals = np.arange(6, dtype="<f4")
    craft(os.path.join(d, "crafted_ok.pt"),
          {"t": FakeTensor(st, 2, (2, 2), (1, 2)), "thing": Opaque(), "x": 1.5},
          {"0": vals.tobytes()})
    ok = torch.load(os.path.join(d, "crafted_ok.pt"))
    ex.add_tensors("crafted_ok.pt", [("t", ok["t"])])

    # numpy
    rng = np.random.default_rng(7)
    arrays = {
        "f4.npy": rng.standard_normal((3, 5)).astype("<f4"),
        "f8.npy": rng.standard_normal((4,)).astype("<f8"),
        "f2.npy": rng.standard_normal((2, 3)).astype("<f2"),
        "i8.npy": rng.integers(-2**50, 2**50, (3, 2)).astype("<i8"),
        "i4.npy": rng.integers(-2**30, 2**30, (5,)).astype("<i4"),
        "i2.npy": rng.integers(-30000, 30000, (2, 2)).astype("<i2"),
        "i1.npy": rng.integers(-128, 127, (9,)).astype("|i1"),
        "u1.npy": rng.integers(0, 255, (3, 3)).astype("|u1"),
        "b1.npy": rng.integers(0, 2, (7,)).astype("|b1"),
        "scalar.npy": np.array(3.25, dtype="<f4"),
        "empty.npy": np.zeros((0, 4), dtype="<f4"),
        "fortran.npy": np.asfortranarray(rng.standard_normal((3, 4, 5)).astype("<f4")),
        "fortran2d.npy": np.asfortranarray(rng.integers(0, 100, (4, 6)).astype("<i8")),
    }
    for name, a in arrays.items():
        np.save(os.path.join(d, name), a)
        ex.add_array(name, a)
    for name, version in (("v2.npy", (2, 0)), ("v3.npy", (3, 0))):
        a = rng.standard_normal((2, 3)).astype("<f4")
        with open(os.path.join(d, name), "wb") as f:
            np.lib.format.write_array(f, a, version=version)
        ex.add_array(name, a)
    np.save(os.path.join(d, "big_endian.npy"), np.arange(4, dtype=">f4"))
    ex.errors["big_endian.npy"] = "big-endian"
    np.save(os.path.join(d, "structured.npy"), np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))
    ex.errors["structured.npy"] = "structured"
    np.save(os.path.join(d, "complex.npy"), np.zeros(3, dtype="<c8"))
    ex.errors["complex.npy"] = "unsupported .npy dtype"

    # safetensors, written by hand (the package may be absent)
    st_named = [("w", torch.randn(2, 3)), ("h", torch.randn(4).half()),
                ("b", torch.randn(3).bfloat16()), ("d", torch.randn(2).double()),
                ("l", torch.tensor([1, -2, 3**30], dtype=torch.int64)),
                ("i", torch.tensor([[1, -2]], dtype=torch.int32)),
                ("s", torch.tensor([7, -8], dtype=torch.int16)),
                ("c", torch.tensor([-1, 2], dtype=torch.int8)),
                ("u", torch.tensor([250, 3], dtype=torch.uint8)),
                ("m", torch.tensor([True, False])), ("scalar", torch.tensor(1.5)),
                ("none", torch.zeros(0, 3))]
    write_safetensors(os.path.join(d, "tensors.safetensors"), st_named,
                      metadata={"format": "pt"})
    ex.add_tensors("tensors.safetensors", st_named)

    # malformed torch checkpoints: (file, substring of the expected message)
    def bad(name, obj, storages, msg, **kw):
        craft(os.path.join(d, name), obj, storages, **kw)
        ex.errors[name] = msg

    f4 = np.arange(8, dtype="<f4").tobytes()
    s8 = FakeStorage("0", 8, torch.FloatStorage)
    bad("bad_offset.pt", {"t": FakeTensor(s8, 100, (2,), (1,))}, {"0": f4}, "past the end")
    bad("bad_stride.pt", {"t": FakeTensor(s8, 0, (3, 3), (3, 1))}, {"0": f4}, "past the end")
    bad("bad_overflow.pt", {"t": FakeTensor(s8, 0, (2**62, 2**62), (1, 1))}, {"0": f4},
        "absurd shape")
    bad("bad_huge.pt", {"t": FakeTensor(s8, 0, (2**40,), (0,))}, {"0": f4}, "far larger")
    bad("bad_negative.pt", {"t": FakeTensor(s8, 0, (-1,), (1,))}, {"0": f4}, "bad tensor size")
    bad("bad_missing_storage.pt", {"t": FakeTensor(FakeStorage("7", 8, torch.FloatStorage), 0,
                                                   (2,), (1,))}, {"0": f4}, "missing")
    bad("bad_dtype.pt", {"t": FakeTensor(FakeStorage("0", 1, torch.ComplexFloatStorage), 0,
                                         (1,), (1,))}, {"0": f4}, "ComplexFloatStorage")
    bad("bad_no_pickle.pt", {}, {"0": f4}, "data.pkl", pkl_name=None)
    bad("bad_compressed.pt", {"t": FakeTensor(s8, 0, (2,), (1,))}, {"0": f4 * 50}, "compressed",
        compress=True)
    bad("bad_list.pt", [FakeTensor(s8, 0, (2,), (1,))], {"0": f4}, "list")
    bad("bad_no_tensors.pt", {"epoch": 3, "lr": 0.1}, {}, "no tensors")
    bad("bad_size_mismatch.pt", {"t": FakeTensor(s8, 0, (2,), (1, 1))}, {"0": f4},
        "size and stride")
    # A pickle stack underflow: SETITEMS with nothing under the mark to set into.
    with zipfile.ZipFile(os.path.join(d, "bad_underflow.pt"), "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02(X\x01\x00\x00\x00aK\x01u.")
        z.writestr("archive/version", b"3\n")
    ex.errors["bad_underflow.pt"] = "stack underflow"
    with zipfile.ZipFile(os.path.join(d, "bad_opcode.pt"), "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02\xff.")
    ex.errors["bad_opcode.pt"] = "opcode 0xff"
    # A CRC mismatch: flip one data byte of a stored record after zipping.
    craft(os.path.join(d, "bad_crc.pt"), {"t": FakeTensor(s8, 0, (8,), (1,))}, {"0": f4})
    raw = bytearray(open(os.path.join(d, "bad_crc.pt"), "rb").read())
    pos = raw.find(f4)
    raw[pos + 5] ^= 0x40
    open(os.path.join(d, "bad_crc.pt"), "wb").write(raw)
    ex.errors["bad_crc.pt"] = "CRC"
    with open(os.path.join(d, "bad_random.bin"), "wb") as f:
        f.write(random.Random(3).randbytes(5000))
    ex.errors["bad_random.bin"] = "not a PyTorch checkpoint, .npy or .safetensors file"
    open(os.path.join(d, "bad_empty.bin"), "wb").close()
    ex.errors["bad_empty.bin"] = "empty file"

    # Mutants of a small checkpoint's pickle, re-zipped with a correct CRC so the pickle VM sees
    # them: the reader must return or throw engine::Error, never crash.
    small_sd = collections.OrderedDict([("w", torch.randn(2, 3)), ("v", torch.randn(3)[1:]),
                                        ("n", torch.tensor(5))])
    small_sd._metadata = collections.OrderedDict([("", {"version": 1}), ("x", {"version": 2})])
    torch.save(small_sd, os.path.join(d, "small.pt"))
    ex.add_tensors("small.pt", small_sd.items())
    zs = zipfile.ZipFile(os.path.join(d, "small.pt"))
    names = zs.namelist()
    pkl = zs.read(names[0])
    others = [(n, zs.read(n)) for n in names[1:]]
    os.makedirs(os.path.join(d, "mutants"), exist_ok=True)
    r = random.Random(11)
    count = 0
    for i in range(len(pkl)):
        for variant in range(3):
            p = bytearray(pkl)
            if variant == 0:
                p[i] = r.randrange(256)
            elif variant == 1:
                p[i] = p[i] ^ (1 << r.randrange(8))
            else:
                del p[i:i + r.randrange(1, 6)]
            with zipfile.ZipFile(os.path.join(d, "mutants", "%05d.pt" % count), "w") as z:
                z.writestr(names[0], bytes(p))
                for n, b in others:
                    z.writestr(n, b)
            count += 1
    ex.fixtures["mutants"] = [{"name": "count", "dtype": "int64", "shape": [count],
                               "offset": 0, "nbytes": 0}]
    ex.save(d)


def pattern(dtype, numel, salt):
    """The values the C++ test writes: the same formula as patternTensor() there."""
    i = np.arange(numel, dtype=np.int64)
    if dtype == "bool":
        return torch.from_numpy((i + salt) % 3 == 0)
    v = (i * 37 + salt) % 101
    if dtype == "uint8":
        return torch.from_numpy(v.astype(np.uint8))
    v = v - 50
    if dtype in ("float32", "float64", "float16", "bfloat16"):
        return torch.from_numpy(v.astype(np.float64) / 8).to(NAME_DTYPES[dtype])
    return torch.from_numpy(v).to(NAME_DTYPES[dtype])


def check_zip(path):
    with zipfile.ZipFile(path) as z:
        badcrc = z.testzip()
        if badcrc is not None:
            fail("%s: CRC error in %s" % (path, badcrc))
        raw = open(path, "rb").read()
        for info in z.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                fail("%s: %s is compressed" % (path, info.filename))
            h = info.header_offset
            n, e = struct.unpack("<HH", raw[h + 26:h + 30])
            if (h + 30 + n + e) % 64 != 0:
                fail("%s: record %s is not 64-byte aligned" % (path, info.filename))
        names = z.namelist()
        for required in ("archive/data.pkl", "archive/version"):
            if required not in names:
                fail("%s: no %s" % (path, required))
        if z.read("archive/version") != b"3\n":
            fail("%s: version record is %r" % (path, z.read("archive/version")))


def cmd_check_written(d):
    manifest = json.load(open(os.path.join(d, "cpp_manifest.json")))
    for item in manifest:
        path = os.path.join(d, item["file"])
        entries = item["entries"]
        if item["kind"] == "torch":
            check_zip(path)
            for weights_only in (False, True):
                obj = torch.load(path, weights_only=weights_only)
                if type(obj) is not collections.OrderedDict:
                    fail("%s: loaded a %s, not an OrderedDict" % (path, type(obj)))
                if list(obj.keys()) != [e["name"] for e in entries]:
                    fail("%s: keys %s differ from %s" % (path, list(obj.keys()),
                                                         [e["name"] for e in entries]))
                for e in entries:
                    t = obj[e["name"]]
                    if not isinstance(t, torch.Tensor):
                        fail("%s: %s is a %s" % (path, e["name"], type(t)))
                    if DTYPE_NAMES[t.dtype] != e["dtype"] or list(t.shape) != e["shape"]:
                        fail("%s: %s is %s %s, expected %s %s" % (
                            path, e["name"], t.dtype, list(t.shape), e["dtype"], e["shape"]))
                    if not t.is_contiguous():
                        fail("%s: %s is not contiguous" % (path, e["name"]))
                    want = pattern(e["dtype"], t.numel(), e["salt"]).reshape(t.shape)
                    if not torch.equal(t, want):
                        fail("%s: values of %s differ" % (path, e["name"]))
        else:  # npy
            a = np.load(path)
            e = entries[0]
            if str(a.dtype) != e["dtype"] or list(a.shape) != e["shape"]:
                fail("%s: is %s %s, expected %s %s" % (path, a.dtype, list(a.shape),
                                                        e["dtype"], e["shape"]))
            want = pattern(e["dtype"], a.size, e["salt"]).numpy().reshape(a.shape)
            if not np.array_equal(a, want):
                fail("%s: values differ" % path)
            with open(path, "rb") as f:
                head = f.read(10)
            if (10 + struct.unpack("<H", head[8:10])[0]) % 64 != 0:
                fail("%s: header not padded to 64 bytes" % path)
    print("checked %d files" % len(manifest))


def cmd_check_same(a, b):
    install_opaque_class()
    x, y = torch.load(a), torch.load(b)
    if isinstance(x, torch.Tensor):
        x = collections.OrderedDict([("", x)])
    xt = [(k, v) for k, v in x.items() if isinstance(v, torch.Tensor)]
    if type(y) is not collections.OrderedDict:
        fail("%s: loaded a %s, not an OrderedDict" % (b, type(y)))
    if [k for k, _ in xt] != list(y.keys()):
        fail("%s vs %s: keys differ: %s vs %s" % (a, b, [k for k, _ in xt], list(y.keys())))
    for k, v in xt:
        w = y[k]
        if v.dtype != w.dtype or v.shape != w.shape or not torch.equal(v, w):
            fail("%s vs %s: %s differs: %s %s vs %s %s" % (a, b, k, v.dtype, list(v.shape), w.dtype,
                                                 list(w.shape)))
    print("%s: same %d tensors" % (b, len(xt)))


def cmd_resnet_strict(path, reference):
    import torchvision
    m = torchvision.models.resnet18()
    sd = torch.load(path)
    m.load_state_dict(sd, strict=True)
    ref = torch.load(reference)
    got = m.state_dict()
    for k, v in ref.items():
        if not torch.equal(got[k], v) or got[k].dtype != v.dtype:
            fail("resnet18 %s differs after load_state_dict" % k)
    print("resnet18 loads strictly, %d tensors equal" % len(ref))


def main():
    if len(sys.argv) < 3:
        fail("usage: checkpoint_oracle.py write|check-written|check-same|resnet-strict ...")
    cmd = sys.argv[1]
    if cmd == "write":
        cmd_write(sys.argv[2])
    elif cmd == "check-written":
        cmd_check_written(sys.argv[2])
    elif cmd == "check-same":
        args = sys.argv[2:]
        if len(args) % 2:
            fail("check-same needs pairs of files")
        for a, b in zip(args[::2], args[1::2]):
            cmd_check_same(a, b)
    elif cmd == "resnet-strict":
        cmd_resnet_strict(sys.argv[2], sys.argv[3])
    else:
        fail("unknown command " + cmd)


if __name__ == "__main__":
    main()
