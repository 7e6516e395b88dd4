#!/usr/bin/env bash
# Run HERE (Debian 12, dependencies installed): copies the header-only dependencies that a bare GPU
# machine lacks (nlohmann/json, the Boost.Math headers saescope uses, stb, doctest) and libstb
# into .device/deps, a prefix that bench/gpu.sh passes to CMake. .device/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device/deps
rm -rf "$out" && mkdir -p "$out/include" "$out/lib"
cp -r /usr/include/nlohmann "$out/include/"
cp -r /usr/include/doctest "$out/include/"
mkdir -p "$out/include/stb" && cp /usr/include/stb/*.h "$out/include/stb/"
cp -L /usr/lib/x86_64-linux-gnu/libstb.so "$out/lib/libstb.so"
cp -L /usr/lib/x86_64-linux-gnu/libstb.so "$out/lib/$(objdump -p /usr/lib/x86_64-linux-gnu/libstb.so | awk "/SONAME/{print \$2}")"
# Only the Boost headers that the engine's sources actually include.
for src in engine/stats.cpp engine/ratings.cpp; do
  g++ -std=c++17 -M -I. -I/usr/include/stb "$src" | tr ' \\' '\n\n' | grep '^/usr/include/boost/' || true
done | sort -u | while read -r h; do
  mkdir -p "$out/include/$(dirname "${h#/usr/include/}")"
  cp "$h" "$out/include/${h#/usr/include/}"
done
du -sh "$out"
