#!/usr/bin/env bash
# Installs the system packages tandem needs to build, test and benchmark on
# Debian 12 / Ubuntu. Idempotent: when everything is already installed it only
# asks dpkg and exits, without touching the network.
#
# The CUDA toolkit is not installed here: the library builds CPU-only without
# it, and with it (at /usr/local/cuda or on PATH) the CUDA backend is built too.
#
#   tools/setup.sh           what building and testing need
#   tools/setup.sh --bench   also python3-torch, for benchmarks/cpu_vs_pytorch.py
set -euo pipefail

packages=(
  cmake
  ninja-build
  g++
  pkg-config
  clang-format
  libopenblas-dev
  libopenblas-openmp-dev  # OpenBLAS on OpenMP's threads (one pool with tandem's loops)
  libsleef-dev         # vectorised exp/log/tanh for the CPU backend (src/cpu/vec_math.cpp)
  libdnnl-dev          # oneDNN: CPU convolution, pooling, batch norm
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  libjpeg62-turbo-dev  # image decoding for the data pipeline (JPEG)
  libpng-dev           # image decoding for the data pipeline (PNG)
  curl                 # downloading CIFAR-10 (prepare_cifar10)
  nlohmann-json3-dev   # checkpoint headers (safetensors JSON, JSON model files)
  clang                # the libFuzzer target of the checkpoint parser (tools/fuzz.sh)
  python3              # the GPU harness (tools/gpu/gpu.py) and its test
  patchelf             # tools/gpu/gpu.py bundle: RUNPATHs of the packed binaries
  xz-utils             # .tar.xz image archives (tar runs xz); the GPU bundle archive
  libcli11-dev         # command-line parsing of the tandem tool (tools/cli)
  libgloo-dev          # collectives of tandem::dist on CPUs (Gloo, TCP transport; src/dist)
)
# --bench: also what benchmarks/cpu_vs_pytorch.py compares against (Debian's
# PyTorch 1.13, CPU). The tests never need it.
for arg in "$@"; do
  case "$arg" in
    --bench) packages+=(python3-torch) ;;
    *) echo "setup: unknown option '$arg' (known: --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} system packages are installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing packages (${missing[*]}) and no apt-get on this system;" \
    "install their equivalents by hand" >&2
  exit 1
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
