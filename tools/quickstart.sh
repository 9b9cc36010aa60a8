#!/usr/bin/env bash
# First steps: installs the build dependencies, builds tandem (Release, the CUDA
# backend when a toolkit is found) in build/default and runs the demo, which
# prints the build configuration, runs a few ops on the GPU when one is usable
# (else on the CPU) and times a 1024x1024 matmul.
#
# Environment: JOBS (default: nproc) for build parallelism.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${JOBS:-$(nproc)}"

"$root/tools/setup.sh"
cmake --preset default
cmake --build --preset default -j "$jobs" --target tandem_demo
echo
exec "$root/build/default/tools/tandem_demo"
