"""`cmake --install` into a temporary prefix installs the binary, the desktop entry and its icons.

usage: import_install.py CMAKE BUILD_DIR PREFIX
"""
import configparser
import os
import shutil
import subprocess
import sys


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main():
    cmake, build, prefix = sys.argv[1:4]
    shutil.rmtree(prefix, ignore_errors=True)
    r = subprocess.run([cmake, "--install", build, "--prefix", prefix], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"cmake --install exited {r.returncode}: {r.stderr.strip()}")
    want = ["bin/saescope",
            "share/applications/saescope.desktop",
            "share/icons/hicolor/scalable/apps/saescope.svg",
            "share/icons/hicolor/256x256/apps/saescope.png",
            "share/saescope/assets/saescope.svg"]
    for w in want:
        if not os.path.isfile(os.path.join(prefix, w)):
            fail(f"{w} not installed under {prefix}")
    exe = os.path.join(prefix, "bin/saescope")
    if not os.access(exe, os.X_OK):
        fail("bin/saescope is not executable")
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("saescope "):
        fail(f"installed saescope --version: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(os.path.join(prefix, "share/applications/saescope.desktop"))
    e = entry["Desktop Entry"]
    for key, value in (("Type", "Application"), ("Icon", "saescope"), ("Terminal", "false")):
        if e.get(key) != value:
            fail(f"saescope.desktop: {key}={e.get(key)!r}, expected {value!r}")
    if not e.get("Exec", "").startswith("saescope"):
        fail("saescope.desktop: Exec must run saescope")
    png = open(os.path.join(prefix, "share/icons/hicolor/256x256/apps/saescope.png"), "rb").read(24)
    if png[:8] != b"\x89PNG\r\n\x1a\n" or int.from_bytes(png[16:20], "big") != 256:
        fail("saescope.png is not a 256 px PNG")
    validate = shutil.which("desktop-file-validate")
    if validate:
        r = subprocess.run([validate, os.path.join(prefix, "share/applications/saescope.desktop")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"desktop-file-validate: {r.stdout}{r.stderr}")
    print(f"install: {len(want)} files under {prefix}; --version: {r.stdout.strip() if not validate else 'ok'}")


if __name__ == "__main__":
    main()
