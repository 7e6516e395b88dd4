#!/usr/bin/env bash
# Installs everything saescope needs to build, run and test, from Debian 12 packages.
# Run as root (or with sudo). Safe to run again.
set -euo pipefail
packages=(
  build-essential cmake pkg-config ccache git
  libtorch-dev libopenblas0-pthread          # LibTorch 1.13 (CPU); OpenBLAS instead of the slow reference BLAS
  libdnnl-dev                                # oneDNN's headers (LibTorch's own oneDNN): Winograd convolutions
  libglfw3-dev libimgui-dev libgl-dev libepoxy-dev fonts-dejavu-core
  libstb-dev nlohmann-json3-dev doctest-dev libboost-math-dev
  xvfb xauth x11-xserver-utils              # GUI tests and screenshots (xrdb sets Xft.dpi for HiDPI)
  python3 python3-torch python3-torchvision python3-scipy python3-pandas python3-numpy python3-pil
  clang libclang-rt-14-dev llvm              # libFuzzer targets (scripts/fuzz.sh), llvm-symbolizer
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
