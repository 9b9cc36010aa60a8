#!/usr/bin/env bash
# The main job in one command: installs the build dependencies
# (tools/setup.sh), builds the `tandem` command-line tool (preset "default":
# Release, the CUDA backend when a toolkit is found) and trains the default
# model on CIFAR-10 into runs/<date-time>:
#
#   tools/train.sh                         # --model auto: resnet-fast on a GPU, lenet on a CPU
#   tools/train.sh --epochs 3 --out runs/x # any `tandem train` option is passed on
#
# CIFAR-10 comes as data::prepare_cifar10 gets it: the cache
# ($TANDEM_DATA_DIR/cifar10 or ~/.cache/tandem/cifar10), else $TANDEM_CIFAR10,
# else a download. When neither TANDEM_CIFAR10 nor --data is given and
# ../shared/data/cifar10-jpeg.tar.xz exists next to the checkout, that copy is
# used (converted once into the cache).
#
# Environment: JOBS (default: nproc) for build parallelism.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="${JOBS:-$(nproc)}"

step_setup() { "$root/tools/setup.sh"; }

step_build() {
  cmake --preset default
  cmake --build --preset default -j "$jobs" --target tandem_cli
}

# Points TANDEM_CIFAR10 at the shared copy when nothing else is configured.
step_data_source() {
  local shared="$root/../shared/data/cifar10-jpeg.tar.xz"
  local arg
  for arg in "$@"; do
    case "$arg" in --data | --data=* | --synthetic | --synthetic=* | --resume | --resume=*) return 0 ;; esac
  done
  if [[ -z "${TANDEM_CIFAR10:-}" && -f "$shared" ]]; then
    export TANDEM_CIFAR10="$shared"
    echo "train.sh: TANDEM_CIFAR10=$shared (the shared copy next to the checkout)"
  fi
}

step_train() {
  # Without --out, `tandem train` makes a new runs/<date-time> (never an
  # existing run's directory).
  echo
  exec "$root/build/default/tools/tandem" train "$@"
}

step_setup
step_build
step_data_source "$@"
step_train "$@"
