#!/usr/bin/env bash
# The whole GPU check in one command: device and library versions, a build for
# this GPU, the test suite with TANDEM_REQUIRE_CUDA=1, compute-sanitizer over
# the GPU tests, the benchmarks, and one report (markdown + JSON).
#
#   tools/gpu-check.sh [options]
#
# Steps (each prints the exact commands it runs):
#   info       GPU name, driver, CUDA runtime/toolkit, cuBLAS, cuDNN versions
#              (nvidia-smi, nvcc and a small probe compiled with nvcc). Without
#              a usable GPU the script says so and exits 2 right here.
#   build      configure + build build/gpu-check for this GPU's architecture
#              (TANDEM_CUDA=ON, CMAKE_CUDA_ARCHITECTURES from nvidia-smi's
#              compute_cap), then shows where libtandem.so's CUDA libraries
#              come from (ldd)
#   tests      ctest over the whole suite with TANDEM_REQUIRE_CUDA=1; fails on
#              any failed or skipped test (except GPU_CHECK_ALLOWED_SKIPS)
#   sanitizer  compute-sanitizer memcheck over the GPU test cases, racecheck
#              and synccheck over the custom-kernel test cases; any report fails
#   bench      every tandem_bench_* in <build>/benchmarks, JSON into the report
#   report     tools/gpu_report.py writes <report>/gpu-report.md and .json from
#              whatever results the report directory holds (earlier partial
#              runs included, each with its time stamp)
#
# Options:
#   --build-dir DIR    use an existing CUDA build in DIR as it is (no configure,
#                      no build); default: configure and build build/gpu-check
#   --skip-build       use build/gpu-check (or --build-dir) as it is
#   --report-dir DIR   default: <build dir>/report
#   --skip-tests, --skip-sanitizer, --skip-bench   leave those steps out
#   --only STEPS       run only these steps (comma-separated: build, tests,
#                      sanitizer, bench); info and report always run
#   --quick            smaller sanitizer filters (float32 only, no gradcheck
#                      sweep, no CIFAR-sized layers)
#   --jobs N           build and ctest parallelism (default: JOBS or nproc)
#   -h, --help         this text
#
# Environment (time limits in seconds, applied with `timeout`):
#   GPU_CHECK_TIMEOUT_BUILD=3600   configure + build
#   GPU_CHECK_TIMEOUT_TESTS=1800   the whole ctest run
#   GPU_CHECK_TIMEOUT_SANITIZER=900   one compute-sanitizer run (one binary, one tool)
#   GPU_CHECK_SANITIZER_BUDGET=2400   all sanitizer runs together; runs that no
#                                     longer fit are reported as not run (a failure)
#   GPU_CHECK_TIMEOUT_BENCH=900    one benchmark binary
#   GPU_CHECK_BENCH_ARGS           extra Google Benchmark flags for every binary
#   GPU_CHECK_CUDA_ARCH            override the detected CMAKE_CUDA_ARCHITECTURES
#   GPU_CHECK_CMAKE_ARGS           extra configure arguments (split on spaces)
#   GPU_CHECK_ALLOWED_SKIPS        regex of test names allowed to skip on a GPU
#                                  (default: tests that only run without a device)
#   GPU_CHECK_SANITIZER_EXCLUDE    gtest patterns left out of every sanitizer run
#                                  (default: *OutOfMemory*, whose failing cudaMalloc
#                                  the sanitizer reports as an API error)
#   CUDA_HOME (default /usr/local/cuda), CUDNN_ROOT (a cuDNN outside the toolkit)
#
# Exit status: 0 every step that ran passed; 1 a step failed; 2 no usable GPU
# (after the info step); 3 a required tool is missing; 64 bad usage.
set -euo pipefail

usage() { sed -n '2,56p' "$0" | sed 's/^# \{0,1\}//'; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

EXIT_FAIL=1
EXIT_NO_GPU=2
EXIT_NO_TOOL=3
EXIT_USAGE=64

build_dir=""
existing_build=0
report_dir=""
do_build=1
do_tests=1
do_sanitizer=1
do_bench=1
quick=0
jobs="${JOBS:-$(nproc)}"

die_usage() {
  echo "gpu-check: $*" >&2
  usage >&2
  exit "$EXIT_USAGE"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir)
      [[ $# -ge 2 ]] || die_usage "--build-dir needs a directory"
      build_dir="$2"
      existing_build=1
      shift
      ;;
    --build-dir=*)
      build_dir="${1#*=}"
      existing_build=1
      ;;
    --report-dir)
      [[ $# -ge 2 ]] || die_usage "--report-dir needs a directory"
      report_dir="$2"
      shift
      ;;
    --report-dir=*) report_dir="${1#*=}" ;;
    --skip-build) do_build=0 ;;
    --skip-tests) do_tests=0 ;;
    --skip-sanitizer) do_sanitizer=0 ;;
    --skip-bench) do_bench=0 ;;
    --quick) quick=1 ;;
    --only | --only=*)
      if [[ $1 == --only ]]; then
        [[ $# -ge 2 ]] || die_usage "--only needs a list of steps"
        only="$2"
        shift
      else
        only="${1#*=}"
      fi
      do_build=0 do_tests=0 do_sanitizer=0 do_bench=0
      IFS=',' read -ra only_steps <<<"$only"
      for s in "${only_steps[@]}"; do
        case "$s" in
          build) do_build=1 ;;
          tests) do_tests=1 ;;
          sanitizer) do_sanitizer=1 ;;
          bench) do_bench=1 ;;
          info | report) ;;
          *) die_usage "unknown step '$s' in --only" ;;
        esac
      done
      ;;
    --jobs)
      [[ $# -ge 2 ]] || die_usage "--jobs needs a number"
      jobs="$2"
      shift
      ;;
    --jobs=*) jobs="${1#*=}" ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die_usage "unknown option '$1'" ;;
  esac
  shift
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die_usage "--jobs/JOBS must be a positive number, not '$jobs'"
[[ $existing_build -eq 1 ]] && do_build=0

timeout_build="${GPU_CHECK_TIMEOUT_BUILD:-3600}"
timeout_tests="${GPU_CHECK_TIMEOUT_TESTS:-1800}"
timeout_sanitizer="${GPU_CHECK_TIMEOUT_SANITIZER:-900}"
sanitizer_budget="${GPU_CHECK_SANITIZER_BUDGET:-2400}"
timeout_bench="${GPU_CHECK_TIMEOUT_BENCH:-900}"
for v in timeout_build timeout_tests timeout_sanitizer sanitizer_budget timeout_bench; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die_usage "$v must be a positive number of seconds, not '${!v}'"
done
allowed_skips="${GPU_CHECK_ALLOWED_SKIPS-^ErrorTest\.CudaTensorWithoutADevice$}"  # empty: none
sanitizer_exclude="${GPU_CHECK_SANITIZER_EXCLUDE-*OutOfMemory*}"  # set but empty: exclude nothing

if [[ -z $build_dir ]]; then
  build_dir="$root/build/gpu-check"
fi
build_dir="$(realpath -m "$build_dir")"
[[ -n $report_dir ]] || report_dir="$build_dir/report"
report_dir="$(realpath -m "$report_dir")"

# ---- helpers -------------------------------------------------------------------

warn() { echo "gpu-check: WARNING: $*" >&2; }
section() {
  echo
  echo "==== gpu-check: $* ===="
}
# Prints a command the way a shell would take it back.
show_cmd() {
  local out="+"
  local a
  for a in "$@"; do out+=" $(printf '%q' "$a")"; done
  echo "$out"
}
# run_logged LOG TIMEOUT CMD...: prints the command, runs it under `timeout`
# with its output also appended to LOG; returns the command's status (124 or
# 137 when it ran out of time).
run_logged() {
  local logfile="$1" limit="$2"
  shift 2
  show_cmd "$@" | tee -a "$logfile"
  local rc=0
  timeout -k 30 "$limit" "$@" 2>&1 | tee -a "$logfile" || rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "gpu-check: TIMED OUT after ${limit} s: $1" | tee -a "$logfile"
  fi
  return "$rc"
}

# The per-step results live in the report directory, one line per step, so
# that a later partial run (--only bench) keeps the earlier ones for the report.
steps_file() { echo "$report_dir/steps.tsv"; }
record_step() {  # NAME STATUS DETAIL SECONDS
  local f
  f="$(steps_file)"
  touch "$f"
  local tmp="$f.tmp"
  grep -v -P "^$1\t" "$f" >"$tmp" || true
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "${3//$'\t'/ }" "$4" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$tmp"
  mv "$tmp" "$f"
}
declare -A step_status=()
declare -A step_detail=()
step_order=()
finish_step() {  # NAME STATUS DETAIL START_SECONDS
  step_status[$1]="$2"
  step_detail[$1]="$3"
  step_order+=("$1")
  record_step "$1" "$2" "$3" "$((SECONDS - $4))"
}

cache_value() {  # KEY: a value from the build's CMakeCache.txt
  sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt" 2>/dev/null | head -n 1
}

require_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "gpu-check: '$1' not found: $2" >&2
    exit "$EXIT_NO_TOOL"
  fi
}

require_tool timeout "install coreutils"
require_tool python3 "needed for the report (tools/gpu_report.py, standard library only)"
mkdir -p "$report_dir"
report_py="$root/tools/gpu_report.py"

# ---- step 1: device and versions ------------------------------------------------

section "info: device, driver, toolkit and library versions"
info_start=$SECONDS
device_file="$report_dir/device.tsv"
: >"$device_file"
put() { printf '%s\t%s\n' "$1" "$2" >>"$device_file"; }
put "check_started" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put "host" "$(hostname 2>/dev/null || echo unknown)"
put "source_dir" "$root"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ $commit != unknown ]] && [[ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]]; then
  commit="$commit (with uncommitted changes)"
fi
put "commit" "$commit"
echo "source: $root, commit $commit"

cuda_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
nvcc=""
if [[ -x "$cuda_home/bin/nvcc" ]]; then
  nvcc="$cuda_home/bin/nvcc"
elif command -v nvcc >/dev/null 2>&1; then
  nvcc="$(command -v nvcc)"
  cuda_home="$(dirname "$(dirname "$(realpath "$nvcc")")")"
fi
sanitizer_bin=""
for s in "$cuda_home/bin/compute-sanitizer" "$cuda_home/compute-sanitizer/compute-sanitizer"; do
  if [[ -x $s ]]; then
    sanitizer_bin="$s"
    break
  fi
done
if [[ -z $sanitizer_bin ]] && command -v compute-sanitizer >/dev/null 2>&1; then
  sanitizer_bin="$(command -v compute-sanitizer)"
fi

gpu_ok=1
no_gpu_reason=""
compute_caps=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
  gpu_ok=0
  no_gpu_reason="nvidia-smi not found (no NVIDIA driver on this machine)"
  echo "nvidia-smi: not found"
else
  query=index,name,driver_version,compute_cap,memory.total,clocks.max.sm,clocks.max.memory,pci.bus_id
  show_cmd nvidia-smi --query-gpu="$query" --format=csv,noheader
  smi_rc=0
  smi_out="$(timeout 60 nvidia-smi --query-gpu="$query" --format=csv,noheader 2>&1)" || smi_rc=$?
  echo "$smi_out"
  if [[ $smi_rc -ne 0 ]] || ! grep -q '^[0-9]' <<<"$smi_out"; then
    gpu_ok=0
    no_gpu_reason="nvidia-smi lists no usable GPU (exit status $smi_rc)"
  else
    while IFS=',' read -r idx name driver cap mem sm_clk mem_clk bus; do
      trim() { sed 's/^ *//; s/ *$//' <<<"$1"; }
      idx="$(trim "$idx")"
      put "gpu${idx}_name" "$(trim "$name")"
      put "gpu${idx}_driver" "$(trim "$driver")"
      put "gpu${idx}_compute_cap" "$(trim "$cap")"
      put "gpu${idx}_memory" "$(trim "$mem")"
      put "gpu${idx}_max_sm_clock" "$(trim "$sm_clk")"
      put "gpu${idx}_max_mem_clock" "$(trim "$mem_clk")"
      put "gpu${idx}_pci_bus" "$(trim "$bus")"
      cap="$(trim "$cap")"
      if [[ $cap =~ ^[0-9]+\.[0-9]+$ ]]; then
        arch="${cap/./}"
        [[ ";$compute_caps;" == *";$arch;"* ]] || compute_caps="${compute_caps:+$compute_caps;}$arch"
      fi
    done < <(grep '^[0-9]' <<<"$smi_out")
    put "gpu_count" "$(grep -c '^[0-9]' <<<"$smi_out")"
  fi
fi

if [[ -n $nvcc ]]; then
  show_cmd "$nvcc" --version
  nvcc_out="$("$nvcc" --version 2>&1 || true)"
  echo "$nvcc_out"
  put "nvcc" "$nvcc"
  put "toolkit_version" "$(sed -n 's/.*release \([0-9.]*\).*/\1/p' <<<"$nvcc_out" | head -n 1)"
  put "toolkit_build" "$(grep -o 'V[0-9][0-9.]*' <<<"$nvcc_out" | head -n 1)"
else
  echo "nvcc: not found (CUDA_HOME=$cuda_home)"
  put "nvcc" "not found"
fi
put "compute_sanitizer" "${sanitizer_bin:-not found}"

# cuDNN: the toolkit's own, CUDNN_ROOT, the system's, or the one a pip wheel
# (nvidia-cudnn-cu13, next to PyTorch) brings. Sets cudnn_include / cudnn_lib.
cudnn_include=""
cudnn_lib=""
find_cudnn() {
  local dirs=()
  [[ -n ${CUDNN_ROOT:-} ]] && dirs+=("$CUDNN_ROOT")
  dirs+=("$cuda_home" /usr /usr/local)
  local py_cudnn
  py_cudnn="$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)"
  [[ -n $py_cudnn ]] && dirs+=("$py_cudnn")
  local d inc lib
  for d in "${dirs[@]}"; do
    inc=""
    lib=""
    for i in "$d/include" "$d/include/x86_64-linux-gnu"; do
      [[ -f $i/cudnn.h ]] && inc="$i" && break
    done
    for l in "$d/lib64" "$d/lib" "$d/lib/x86_64-linux-gnu" "$d/targets/x86_64-linux/lib"; do
      if [[ -e $l/libcudnn.so ]]; then
        lib="$l/libcudnn.so"
        break
      fi
      local cand
      cand="$(find "$l" -maxdepth 1 -name 'libcudnn.so.[0-9]*' 2>/dev/null | sort | head -n 1)"
      if [[ -n $cand ]]; then
        lib="$cand"
        break
      fi
    done
    if [[ -n $inc && -n $lib ]]; then
      cudnn_include="$inc"
      cudnn_lib="$lib"
      return 0
    fi
  done
  return 1
}
if find_cudnn; then
  echo "cuDNN: headers $cudnn_include, library $cudnn_lib"
else
  echo "cuDNN: not found (set CUDNN_ROOT)"
fi
put "cudnn_library_found" "${cudnn_lib:-not found}"

# A small probe, compiled with nvcc against the shared runtime: versions the
# headers were built with and the versions the loaded libraries report.
probe_dir="$build_dir/gpu-check-probe"
probe_ok=0
if [[ -n $nvcc ]]; then
  mkdir -p "$probe_dir"
  cat >"$probe_dir/probe.cpp" <<'CPP'
// Written by tools/gpu-check.sh: prints CUDA runtime, driver, cuBLAS and cuDNN
// versions (compiled-against and loaded) and the devices the runtime sees.
#include <cstdio>
#include <cuda_runtime.h>
#include <cublas_api.h>
#ifdef PROBE_CUDNN
#include <cudnn.h>
#endif
int main() {
  int v = 0;
  std::printf("cudart_header\t%d\n", CUDART_VERSION);
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) std::printf("cudart_runtime\t%d\n", v);
  v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess) std::printf("cuda_driver_api\t%d\n", v);
  std::printf("cublas_header\t%d\n", CUBLAS_VERSION);
  int ma = 0, mi = 0, pa = 0;
  if (cublasGetProperty(MAJOR_VERSION, &ma) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &mi) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &pa) == CUBLAS_STATUS_SUCCESS)
    std::printf("cublas_runtime\t%d\n", ma * 10000 + mi * 100 + pa);
#ifdef PROBE_CUDNN
  std::printf("cudnn_header\t%d\n", CUDNN_VERSION);
  std::printf("cudnn_runtime\t%zu\n", cudnnGetVersion());
  std::printf("cudnn_cudart\t%zu\n", cudnnGetCudartVersion());
#endif
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    std::printf("runtime_devices\t0\nruntime_error\t%s: %s\n", cudaGetErrorName(e),
                cudaGetErrorString(e));
    return 0;
  }
  std::printf("runtime_devices\t%d\n", n);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    std::printf("dev%d_name\t%s\ndev%d_cc\t%d.%d\ndev%d_sms\t%d\ndev%d_mem_bytes\t%zu\n", i, p.name,
                i, p.major, p.minor, i, p.multiProcessorCount, i, p.totalGlobalMem);
    std::printf("dev%d_l2_bytes\t%d\ndev%d_bus_bits\t%d\n", i, p.l2CacheSize, i, p.memoryBusWidth);
  }
  return 0;
}
CPP
  probe_cmd=("$nvcc" -O1 -std=c++17 -cudart shared -o "$probe_dir/probe" "$probe_dir/probe.cpp" -lcublas)
  if [[ -n $cudnn_lib ]]; then
    probe_cmd+=(-DPROBE_CUDNN -I"$cudnn_include" "$cudnn_lib" -Xlinker "-rpath=$(dirname "$cudnn_lib")")
  fi
  show_cmd "${probe_cmd[@]}"
  if timeout 300 "${probe_cmd[@]}"; then
    show_cmd "$probe_dir/probe"
    probe_rc=0
    probe_out="$(timeout 60 "$probe_dir/probe" 2>&1)" || probe_rc=$?
    echo "$probe_out"
    if [[ $probe_rc -eq 0 ]]; then
      probe_ok=1
      grep -P '^[a-z0-9_]+\t' <<<"$probe_out" >>"$device_file" || true
      echo "probe's libraries:"
      ldd "$probe_dir/probe" | grep -E 'cudart|cublas|cudnn|libcuda\.|not found' || true
    fi
  else
    warn "the version probe did not compile; library versions are taken from the headers only"
  fi
fi
if [[ $probe_ok -eq 0 ]]; then
  # No probe: at least the versions the headers declare.
  ver_define() { sed -n "s/^#define $1  *\([0-9][0-9]*\).*/\1/p" "$2" 2>/dev/null | head -n 1; }
  lib_version() {  # HEADER MAJOR_MACRO MINOR_MACRO PATCH_MACRO
    local ma mi pa
    ma="$(ver_define "$2" "$1")" mi="$(ver_define "$3" "$1")" pa="$(ver_define "$4" "$1")"
    [[ -n $ma && -n $mi ]] && echo "$((ma * 10000 + mi * 100 + ${pa:-0}))"
  }
  v="$(lib_version "$cuda_home/include/cublas_api.h" CUBLAS_VER_MAJOR CUBLAS_VER_MINOR CUBLAS_VER_PATCH || true)"
  [[ -z $v ]] || put "cublas_header" "$v"
  v="$(ver_define CUDART_VERSION "$cuda_home/include/cuda_runtime_api.h" || true)"
  [[ -z $v ]] || put "cudart_header" "$v"
  if [[ -n $cudnn_include ]]; then
    v="$(lib_version "$cudnn_include/cudnn_version.h" CUDNN_MAJOR CUDNN_MINOR CUDNN_PATCHLEVEL || true)"
    [[ -z $v ]] || put "cudnn_header" "$v"
  fi
fi
if [[ $gpu_ok -eq 1 && $probe_ok -eq 1 ]] && grep -qP '^runtime_devices\t0$' "$device_file"; then
  gpu_ok=0
  no_gpu_reason="nvidia-smi lists a GPU but the CUDA runtime sees none: $(sed -n 's/^runtime_error\t//p' "$device_file")"
fi

if [[ $gpu_ok -eq 0 ]]; then
  put "gpu" "none: $no_gpu_reason"
  finish_step info "NO GPU" "$no_gpu_reason" "$info_start"
  echo
  echo "gpu-check: NO GPU: $no_gpu_reason."
  echo "gpu-check: nothing to check here; run this on a machine with an NVIDIA GPU and its driver"
  echo "gpu-check: (the CPU-only checks are tools/test.sh). Exit status $EXIT_NO_GPU."
  exit "$EXIT_NO_GPU"
fi
put "gpu" "yes"
finish_step info PASS "$(sed -n 's/^gpu0_name\t//p' "$device_file"), sm_${compute_caps//;/ sm_}" "$info_start"

# ---- step 2: build ---------------------------------------------------------------

lib_ok=1
show_libraries() {
  local lib
  lib="$(find "$build_dir" -maxdepth 2 -name 'libtandem.so*' -type f 2>/dev/null | sort | head -n 1)"
  if [[ -z $lib ]]; then
    echo "libtandem.so: not found under $build_dir"
    lib_ok=0
    return
  fi
  echo "build: $build_dir"
  echo "  CMAKE_BUILD_TYPE=$(cache_value CMAKE_BUILD_TYPE)  TANDEM_CUDA=$(cache_value TANDEM_CUDA)" \
    " CMAKE_CUDA_ARCHITECTURES=$(cache_value CMAKE_CUDA_ARCHITECTURES)"
  echo "  CMAKE_CUDA_COMPILER=$(cache_value CMAKE_CUDA_COMPILER)"
  echo "  TANDEM_CUDNN_LIBRARY=$(cache_value TANDEM_CUDNN_LIBRARY)"
  echo "libraries $lib loads (ldd):"
  show_cmd ldd "$lib"
  local ldd_out
  ldd_out="$(ldd "$lib" 2>&1 || true)"
  grep -E 'cudart|cublas|cudnn|libcuda\.|openblas|gomp|not found' <<<"$ldd_out" | sed 's/^/  /' || true
  if grep -q 'not found' <<<"$ldd_out"; then
    lib_ok=0
    warn "libtandem.so has libraries the loader cannot find (above)"
  fi
  {
    echo "build_dir	$build_dir"
    echo "build_type	$(cache_value CMAKE_BUILD_TYPE)"
    echo "cuda_architectures	$(cache_value CMAKE_CUDA_ARCHITECTURES)"
    for l in cudart cublas cublasLt cudnn openblas; do
      local where
      where="$(awk -v l="lib$l." 'index($1, l) == 1 {print $3; exit}' <<<"$ldd_out")"
      [[ -n $where ]] && echo "lib_${l}	$where"
    done
  } >>"$device_file"
}

if [[ $do_build -eq 1 ]]; then
  section "build: $build_dir (TANDEM_CUDA=ON)"
  build_start=$SECONDS
  require_tool cmake "install CMake 3.24 or newer"
  build_log="$report_dir/build.log"
  : >"$build_log"
  arch="${GPU_CHECK_CUDA_ARCH:-${compute_caps:-native}}"
  configure=(cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON
    "-DCMAKE_CUDA_ARCHITECTURES=$arch" -DTANDEM_BUILD_TESTS=ON -DTANDEM_BUILD_BENCHMARKS=ON
    -DTANDEM_BUILD_TOOLS=ON)
  if [[ ! -f $build_dir/CMakeCache.txt ]] && command -v ninja >/dev/null 2>&1; then
    configure+=(-G Ninja)
  fi
  [[ -n $nvcc ]] && configure+=("-DCMAKE_CUDA_COMPILER=$nvcc")
  # A cuDNN outside the toolkit (CUDNN_ROOT, a pip wheel) is named explicitly.
  if [[ -n $cudnn_lib && $(dirname "$cudnn_lib") != "$cuda_home"/lib* ]]; then
    configure+=("-DTANDEM_CUDNN_LIBRARY=$cudnn_lib" "-DTANDEM_CUDNN_INCLUDE_DIR=$cudnn_include")
  fi
  if [[ -n ${GPU_CHECK_CMAKE_ARGS:-} ]]; then
    read -ra extra_args <<<"$GPU_CHECK_CMAKE_ARGS"
    configure+=("${extra_args[@]}")
  fi
  build_status=PASS
  build_detail="architectures $arch"
  if ! run_logged "$build_log" "$timeout_build" "${configure[@]}"; then
    build_status=FAIL
    build_detail="configure failed (log: $build_log)"
  else
    left=$((timeout_build - (SECONDS - build_start)))
    ((left > 0)) || left=1
    if ! run_logged "$build_log" "$left" cmake --build "$build_dir" -j "$jobs"; then
      build_status=FAIL
      build_detail="build failed or timed out (log: $build_log)"
    fi
  fi
  if [[ $build_status == PASS ]]; then
    show_libraries
    if [[ $lib_ok -eq 0 ]]; then
      build_status=FAIL
      build_detail="libtandem.so missing or its libraries not found"
    fi
  fi
  finish_step build "$build_status" "$build_detail" "$build_start"
  if [[ $build_status != PASS ]]; then
    do_tests=0 do_sanitizer=0 do_bench=0
    warn "no usable build: tests, sanitizer and benchmarks are not run"
  fi
else
  section "build: using the existing build $build_dir"
  if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    echo "gpu-check: $build_dir is not a CMake build directory (no CMakeCache.txt)" >&2
    build_start=$SECONDS
    finish_step build FAIL "no build at $build_dir" "$build_start"
    do_tests=0 do_sanitizer=0 do_bench=0
  else
    if ! grep -q 'TANDEM_WITH_CUDA 1' "$build_dir/include/tandem/config.h" 2>/dev/null; then
      warn "$build_dir was built without the CUDA backend: every GPU test will fail"
    fi
    made_in="$(cache_value CMAKE_CACHEFILE_DIR)"
    if [[ -n $made_in && $(realpath -m "$made_in") != "$build_dir" ]]; then
      warn "$build_dir was configured in $made_in: ctest's files name that path;" \
        "the binaries find libtandem.so here through LD_LIBRARY_PATH"
      lib_dir="$(dirname "$(find "$build_dir" -maxdepth 2 -name 'libtandem.so*' | head -n 1)")"
      export LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    build_start=$SECONDS
    show_libraries
    if [[ $lib_ok -eq 1 ]]; then
      finish_step build PASS "existing build $build_dir, not rebuilt" "$build_start"
    else
      finish_step build FAIL "existing build $build_dir: libtandem.so missing or its libraries not found" "$build_start"
    fi
  fi
fi

# ---- step 3: the test suite -------------------------------------------------------

if [[ $do_tests -eq 1 ]]; then
  section "tests: ctest in $build_dir with TANDEM_REQUIRE_CUDA=1"
  tests_start=$SECONDS
  require_tool ctest "install CMake"
  tests_log="$report_dir/ctest.log"
  junit="$report_dir/ctest-junit.xml"
  : >"$tests_log"
  rm -f "$junit"
  ctest_rc=0
  run_logged "$tests_log" "$timeout_tests" env TANDEM_REQUIRE_CUDA=1 \
    ctest --test-dir "$build_dir" -j "$jobs" --output-on-failure --no-tests=error \
    --output-junit "$junit" || ctest_rc=$?
  tests_status=PASS
  if [[ -f $junit ]]; then
    show_cmd python3 "$report_py" junit "$junit" --allowed-skips "$allowed_skips" --out "$report_dir/tests.json"
    junit_rc=0
    python3 "$report_py" junit "$junit" --allowed-skips "$allowed_skips" \
      --out "$report_dir/tests.json" || junit_rc=$?
    tests_detail="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"])' "$report_dir/tests.json" 2>/dev/null || echo "no summary")"
    [[ $junit_rc -eq 0 ]] || tests_status=FAIL
  else
    tests_detail="ctest wrote no JUnit file"
    tests_status=FAIL
  fi
  if [[ $ctest_rc -ne 0 ]]; then
    tests_status=FAIL
    if [[ $ctest_rc -eq 124 || $ctest_rc -eq 137 ]]; then
      tests_detail="TIMED OUT after ${timeout_tests} s; $tests_detail"
    else
      tests_detail="ctest exit status $ctest_rc; $tests_detail"
    fi
  fi
  finish_step tests "$tests_status" "$tests_detail" "$tests_start"
fi

# ---- step 4: compute-sanitizer ---------------------------------------------------

# GPU test cases, by name: the CUDA fixtures and parity suites, and the tests
# whose names say Cuda/Device. Running a CPU case under memcheck is harmless.
gpu_filter='*Cuda*:*CUDA*:*cuda*:*Gpu*:*GPU*:*Parity*:*Device*'
# Tests that drive tandem's own kernels (elementwise, reduce, softmax, indexing,
# loss, random/dropout, pooling and batch norm, optimizer steps), for racecheck
# and synccheck; cuBLAS/cuDNN internals are not ours to check.
kernel_filter='*UnaryParity*:*BinaryParity*:*InPlaceParity*:*ReduceParity*:*VarSoftmaxParity*'
kernel_filter+=':*IndexingParity*:CudaTest.WhereParity:CudaTest.LargeSums*:CudaTest.Rand*'
kernel_filter+=':CudaTest.Dropout*:CudaTest.OutOfRangeIndices*:*ScatterCudaTest*:*CrossEntropyCudaTest*'
kernel_filter+=':ConvCuda.Pooling*:ConvCuda.ForwardAndBackward*:Nets.*OnCuda:SGD.Cuda*'
kernel_filter+=':Optimizers.Cuda*:ClipGrad.Cuda*:*GradcheckOps.CudaBackward*'
quick_exclude='*float64*:*int64*:*GradcheckOps*:*CifarSized*:*ResNetBlock*:*100Steps*'

# gtest filter: positive patterns, then '-' and the negative ones.
make_filter() {  # POSITIVE
  local neg="$sanitizer_exclude"
  [[ $quick -eq 1 ]] && neg="${neg:+$neg:}$quick_exclude"
  if [[ -n $neg ]]; then echo "$1-$neg"; else echo "$1"; fi
}

if [[ $do_sanitizer -eq 1 ]]; then
  section "sanitizer: compute-sanitizer memcheck, racecheck, synccheck"
  san_start=$SECONDS
  san_tsv="$report_dir/sanitizer.tsv"
  san_logs="$report_dir/sanitizer"
  mkdir -p "$san_logs"
  rm -f "$san_logs"/*.log
  printf 'tool\tbinary\tstatus\terrors\tseconds\tcases\tlog\n' >"$san_tsv"
  san_status=PASS
  san_runs=0
  san_failed=0
  if [[ -z $sanitizer_bin ]]; then
    san_status=FAIL
    san_detail="compute-sanitizer not found (looked in $cuda_home/bin, $cuda_home/compute-sanitizer and PATH)"
  else
    mapfile -t test_bins < <(find "$build_dir/tests" -maxdepth 1 -type f -name 'tandem_test_*' -perm -u+x 2>/dev/null | sort)
    [[ ${#test_bins[@]} -gt 0 ]] || {
      san_status=FAIL
      san_detail="no tandem_test_* binaries in $build_dir/tests"
    }
    for tool in memcheck racecheck synccheck; do
      if [[ $tool == memcheck ]]; then filter="$(make_filter "$gpu_filter")"; else filter="$(make_filter "$kernel_filter")"; fi
      for bin in "${test_bins[@]}"; do
        name="$(basename "$bin")"
        # Which cases the filter selects in this binary (none: nothing to run).
        cases="$(TANDEM_REQUIRE_CUDA=1 timeout 120 "$bin" --gtest_list_tests --gtest_filter="$filter" 2>/dev/null | grep -c '^  ' || true)"
        [[ $cases -gt 0 ]] || continue
        used=$((SECONDS - san_start))
        left=$((sanitizer_budget - used))
        logf="$san_logs/$tool-$name.log"
        san_runs=$((san_runs + 1))
        if ((left < 30)); then
          echo "gpu-check: sanitizer budget (${sanitizer_budget} s) used up: $tool $name not run"
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "NOT RUN (budget)" "" 0 "$cases" "" >>"$san_tsv"
          san_failed=$((san_failed + 1))
          continue
        fi
        limit=$((left < timeout_sanitizer ? left : timeout_sanitizer))
        : >"$logf"
        run_start=$SECONDS
        rc=0
        # --error-exitcode 86 tells a sanitizer report apart from a failing test (1).
        run_logged "$logf" "$limit" env TANDEM_REQUIRE_CUDA=1 "$sanitizer_bin" --tool "$tool" \
          --error-exitcode 86 --print-limit 50 "$bin" --gtest_filter="$filter" \
          --gtest_brief=1 || rc=$?
        errors="$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$logf" | tail -n 1)"
        if [[ -z $errors ]]; then
          errors="$(sed -n 's/.*RACECHECK SUMMARY: .*(\([0-9]*\) error.*/\1/p' "$logf" | tail -n 1)"
        fi
        case "$rc" in
          0) st=PASS ;;
          86) st="FAIL (sanitizer errors)" ;;
          124 | 137) st="FAIL (timed out after ${limit} s)" ;;
          *) st="FAIL (exit status $rc: test failures under the sanitizer)" ;;
        esac
        [[ $rc -eq 0 ]] || san_failed=$((san_failed + 1))
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "$st" "${errors:-?}" \
          "$((SECONDS - run_start))" "$cases" "$logf" >>"$san_tsv"
      done
    done
    if [[ ${san_status} == PASS ]]; then
      [[ $san_runs -gt 0 ]] || {
        san_status=FAIL
        san_detail="no test case matched the sanitizer filters"
      }
      [[ $san_failed -eq 0 ]] || san_status=FAIL
      quick_note=""
      [[ $quick -eq 0 ]] || quick_note=" (--quick filters)"
      san_detail="${san_detail:-$((san_runs - san_failed)) of $san_runs runs clean$quick_note}"
    fi
  fi
  finish_step sanitizer "$san_status" "$san_detail" "$san_start"
  column -t -s $'\t' "$san_tsv" 2>/dev/null || cat "$san_tsv"
fi

# ---- step 5: benchmarks ------------------------------------------------------------

if [[ $do_bench -eq 1 ]]; then
  section "bench: every tandem_bench_* in $build_dir/benchmarks"
  bench_start=$SECONDS
  bench_out="$report_dir/bench"
  mkdir -p "$bench_out"
  rm -f "$bench_out"/*.json "$bench_out"/*.log
  mapfile -t bench_bins < <(find "$build_dir/benchmarks" -maxdepth 1 -type f -name 'tandem_bench_*' -perm -u+x 2>/dev/null | sort)
  bench_args=()
  if [[ -n ${GPU_CHECK_BENCH_ARGS:-} ]]; then
    read -ra bench_args <<<"$GPU_CHECK_BENCH_ARGS"
  fi
  bench_status=PASS
  bench_failed=()
  if [[ ${#bench_bins[@]} -eq 0 ]]; then
    bench_status=FAIL
    bench_detail="no tandem_bench_* binaries in $build_dir/benchmarks"
  fi
  for bin in "${bench_bins[@]}"; do
    name="$(basename "$bin")"
    rc=0
    run_logged "$bench_out/$name.log" "$timeout_bench" "$bin" \
      --benchmark_out="$bench_out/$name.json" --benchmark_out_format=json \
      ${bench_args[@]+"${bench_args[@]}"} || rc=$?
    if [[ $rc -ne 0 ]]; then
      bench_failed+=("$name (exit status $rc)")
    fi
  done
  if [[ ${#bench_bins[@]} -gt 0 ]]; then
    # Cases that reported an error (SkipWithError) count as failures too.
    errored="$(python3 "$report_py" bench-errors "$bench_out" || echo "?")"
    bench_detail="${#bench_bins[@]} binaries, ${#bench_failed[@]} failed, $errored cases with errors"
    if [[ ${#bench_failed[@]} -gt 0 || $errored != 0 ]]; then
      bench_status=FAIL
      [[ ${#bench_failed[@]} -eq 0 ]] || bench_detail="$bench_detail: ${bench_failed[*]}"
    fi
  fi
  finish_step bench "$bench_status" "$bench_detail" "$bench_start"
fi

# ---- step 6: report and summary ------------------------------------------------------

section "report"
report_status=PASS
show_cmd python3 "$report_py" report "$report_dir"
if ! python3 "$report_py" report "$report_dir"; then
  report_status=FAIL
  warn "the report generator failed"
fi

echo
echo "==== gpu-check summary ===="
overall=0
for s in "${step_order[@]}"; do
  printf '  %-10s %-6s %s\n' "$s" "${step_status[$s]}" "${step_detail[$s]}"
  [[ ${step_status[$s]} == PASS ]] || overall=$EXIT_FAIL
done
for s in build tests sanitizer bench; do
  [[ -n ${step_status[$s]:-} ]] || printf '  %-10s %-6s %s\n' "$s" "-" "not run in this invocation"
done
[[ $report_status == PASS ]] || overall=$EXIT_FAIL
echo "  report:    $report_dir/gpu-report.md (and .json)"
if [[ $overall -eq 0 ]]; then
  echo "gpu-check: every step that ran passed"
else
  echo "gpu-check: FAILED"
fi
exit "$overall"
