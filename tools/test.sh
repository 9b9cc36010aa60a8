#!/usr/bin/env bash
# The project's test command (what CI runs through .ci/run).
#
#   tools/test.sh              setup, then three builds, each built and tested:
#                                build/emu  the emulated CUDA device (preset
#                                           "emu", src/emu): the whole suite,
#                                           every CUDA test run on the CPU
#                                           under the emulator's checkers with
#                                           TANDEM_REQUIRE_CUDA=1 (needs CUDA's
#                                           headers, not a GPU)
#                                build/ci   CUDA AUTO, sm_90 only (preset "ci"):
#                                           the library (nvcc keeps compiling
#                                           every kernel), tools, examples and
#                                           benchmarks; tested: the programs
#                                           whose behaviour differs in a CUDA
#                                           build without a device, and the
#                                           tools' tests (the whole suite with
#                                           --no-emu)
#                                build/cpu  CPU-only, TANDEM_CUDA=OFF (preset "cpu"):
#                                           only the test programs whose
#                                           behaviour differs without the CUDA
#                                           backend (no-device errors, build
#                                           info, the data and checkpoint
#                                           paths with CUDA stubs) and the
#                                           installed package
#   tools/test.sh --cpu-only   only the CPU-only build, with the whole suite
#   tools/test.sh --gpu        build/gpu (TANDEM_CUDA=ON, the machine's own GPU
#                              architecture) instead of build/ci, the whole
#                              suite with TANDEM_REQUIRE_CUDA=1: a GPU test that
#                              finds no usable device fails instead of skipping
#   tools/test.sh --asan       also build/asan (CPU-only, ASan + UBSan, Debug)
#                              and build/emu-asan (every kernel's tests on the
#                              emulated device under ASan + UBSan)
#   tools/test.sh --no-emu     skip the emulated device
#   tools/test.sh --no-setup   do not run tools/setup.sh first
#
# Environment: JOBS (default: nproc) for build and ctest parallelism.
# Exits non-zero if any configure, build or test step fails; every build is
# still attempted so that one report covers them all.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

run_setup=1
cuda_preset=ci
run_cuda=1
run_asan=0
run_emu=1
for arg in "$@"; do
  case "$arg" in
    --cpu-only)
      run_cuda=0
      run_emu=0
      ;;
    --no-emu) run_emu=0 ;;
    --gpu) cuda_preset=gpu ;;
    --asan) run_asan=1 ;;
    --no-setup) run_setup=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "test.sh: unknown option '$arg'" >&2
      usage >&2
      exit 2
      ;;
  esac
done
if [[ $run_cuda -eq 0 && $cuda_preset == gpu ]]; then
  echo "test.sh: --gpu and --cpu-only contradict each other" >&2
  exit 2
fi

jobs="${JOBS:-$(nproc)}"
# The CPU-only build's test programs when a CUDA build runs too (see above).
cpu_subset="tandem_test_errors;tandem_test_build_info;tandem_test_tensor;tandem_test_data;tandem_test_serialize"
# What the emulated device runs under ASan + UBSan (--asan): every kernel (the
# op registry's CUDA cases and the kernel tests beside it).
emu_asan_subset="tandem_test_cuda;tandem_test_registry;tandem_test_emu;tandem_test_emu_libs"

if [[ $run_setup -eq 1 ]]; then
  "$root/tools/setup.sh"
fi

# Formatting is part of the test: tools/format.sh fixes what this reports.
format_status="ok"
if ! "$root/tools/format.sh" --check; then
  format_status="FAILED (run tools/format.sh)"
fi

presets=()
# The emulated device needs CUDA's headers only (no nvcc, no GPU).
if [[ $run_emu -eq 1 ]]; then
  if [[ -f /usr/local/cuda/include/cuda_runtime.h || -f /usr/include/cuda_runtime.h ]]; then
    presets+=(emu)
  else
    echo "test.sh: no CUDA headers (/usr/local/cuda/include); skipping the emulated device"
    run_emu=0
  fi
fi
[[ $run_cuda -eq 1 ]] && presets+=("$cuda_preset")
presets+=(cpu)
[[ $run_asan -eq 1 ]] && presets+=(asan)
[[ $run_asan -eq 1 && $run_emu -eq 1 ]] && presets+=(emu-asan)

declare -A result
total_tests=0
total_failed=0
total_skipped=0
overall=0

# Reads an attribute of the <testsuite> element of a ctest JUnit file.
junit_attr() {
  sed -n "s/^[[:space:]]*$1=\"\\([0-9]*\\)\".*/\\1/p" "$2" | head -n 1
}

# `tandem check --device cuda --quick` on the emulated device: every op record,
# forward and backward, against the CPU (a few seconds). Fails unless the
# device really was the (emulated) GPU.
check_ops_on_emu() {
  local log="$root/build/emu/tandem-check.log"
  "$root/build/emu/tools/tandem" check --device cuda --quick >"$log" 2>&1
  local rc=$?
  tail -n 1 "$log"
  [[ $rc -eq 0 ]] && grep -q "checks on cuda" "$log"
}

for preset in "${presets[@]}"; do
  echo
  echo "==== [$preset] configure, build, test (build/$preset, -j$jobs) ===="
  start=$SECONDS
  junit="$root/build/$preset/ctest-junit.xml"
  status=ok
  # The whole suite unless a branch below narrows it (also clearing a subset
  # an earlier configure of this build directory left in its cache).
  configure_args=(-DTANDEM_TESTS_ONLY=)
  if [[ $preset == ci ]]; then
    # build/emu runs the whole suite (the CPU tests and every CUDA test, on
    # the emulated device); build/ci keeps nvcc compiling everything and
    # runs what differs in a CUDA build without a device.
    if [[ $run_emu -eq 1 ]]; then
      configure_args=("-DTANDEM_TESTS_ONLY=$cpu_subset")
    else
      configure_args=(-DTANDEM_TESTS_ONLY=)
    fi
  elif [[ $preset == emu-asan ]]; then
    # Every kernel runs in tandem_test_registry (every op record on the
    # device) and tandem_test_cuda (the kernel tests beside the registry);
    # the emulator's own tests and its libraries' tests complete the cover.
    configure_args=("-DTANDEM_TESTS_ONLY=$emu_asan_subset")
  elif [[ $preset == cpu ]]; then
    if [[ $run_cuda -eq 1 ]]; then
      configure_args=("-DTANDEM_TESTS_ONLY=$cpu_subset" -DTANDEM_BUILD_EXAMPLES=OFF
        -DTANDEM_BUILD_BENCHMARKS=OFF)
    else
      configure_args=(-DTANDEM_TESTS_ONLY= -DTANDEM_BUILD_EXAMPLES=ON -DTANDEM_BUILD_BENCHMARKS=ON)
    fi
  fi
  if ! cmake --preset "$preset" ${configure_args[@]+"${configure_args[@]}"}; then
    status="configure FAILED"
  elif ! cmake --build --preset "$preset" -j "$jobs"; then
    status="build FAILED"
  else
    rm -f "$junit"
    test_env=()
    # TANDEM_REQUIRE_CUDA=1 makes GPU test cases fail rather than skip when no
    # device is usable (tests/test_util.h). Other skips stay legitimate there
    # (e.g. tests of the no-device error path skip on a GPU machine).
    [[ $preset == gpu ]] && test_env=(env TANDEM_REQUIRE_CUDA=1)
    if ! "${test_env[@]}" ctest --preset "$preset" -j "$jobs" --output-junit "$junit"; then
      status="tests FAILED"
    fi
    if [[ $preset == emu && -x build/emu/tools/tandem ]] && ! check_ops_on_emu; then
      status="tandem check FAILED (build/emu/tandem-check.log); $status"
    fi
    if [[ -f "$junit" ]]; then
      n=$(junit_attr tests "$junit")
      f=$(junit_attr failures "$junit")
      s=$(junit_attr skipped "$junit")
      total_tests=$((total_tests + ${n:-0}))
      total_failed=$((total_failed + ${f:-0}))
      total_skipped=$((total_skipped + ${s:-0}))
      status="$status (${n:-?} tests, ${f:-?} failed, ${s:-?} skipped)"
    fi
  fi
  [[ $status == ok* ]] || overall=1
  result[$preset]="$status, $((SECONDS - start)) s"
done

echo
echo "==== test.sh summary ===="
printf '  %-8s %s\n' format "$format_status"
[[ $format_status == ok ]] || overall=1
for preset in "${presets[@]}"; do
  printf '  %-8s %s\n' "$preset" "${result[$preset]}"
done
if [[ $overall -ne 0 ]]; then
  echo "test.sh: FAILED"
else
  echo "test.sh: all builds and tests passed"
fi
echo "total: $((total_tests - total_failed - total_skipped)) passed, ${total_failed} failed, ${total_skipped} skipped"
exit "$overall"
