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

gc_name=gpu-check
# The steps shared with the GPU bundle's run.sh; sourced before the options are
# read, since it sets their defaults (quick, allowed_skips, sanitizer_exclude).
# shellcheck source=tools/gpu-lib.sh
source "$root/tools/gpu-lib.sh"

build_dir=""
existing_build=0
report_dir=""
do_build=1
do_tests=1
do_sanitizer=1
do_bench=1
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

[[ -z $build_dir ]] && build_dir="$root/build/gpu-check"
build_dir="$(realpath -m "$build_dir")"
[[ -n $report_dir ]] || report_dir="$build_dir/report"
report_dir="$(realpath -m "$report_dir")"
report_py="$root/tools/gpu_report.py"

cache_value() {  # KEY: a value from the build's CMakeCache.txt
  sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt" 2>/dev/null | head -n 1
}

# ---- step 1: device and versions ------------------------------------------------

section "info: device, driver, toolkit and library versions"
info_start=$SECONDS
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ $commit != unknown ]] && [[ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]]; then
  commit="$commit (with uncommitted changes)"
fi
gc_init "$root" "$commit"

gc_find_cuda_tools
gc_smi_info

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

# The version probe (tools/gpu_probe.cpp), compiled with nvcc against the
# shared runtime: versions the headers were built with and the versions the
# loaded libraries report.
probe_dir="$build_dir/gpu-check-probe"
if [[ -n $nvcc ]]; then
  mkdir -p "$probe_dir"
  probe_cmd=("$nvcc" -O1 -std=c++17 -cudart shared -o "$probe_dir/probe" "$root/tools/gpu_probe.cpp" -lcublas)
  if [[ -n $cudnn_lib ]]; then
    probe_cmd+=(-DPROBE_CUDNN -I"$cudnn_include" "$cudnn_lib" -Xlinker "-rpath=$(dirname "$cudnn_lib")")
  fi
  show_cmd "${probe_cmd[@]}"
  if timeout 300 "${probe_cmd[@]}"; then
    gc_run_probe "$probe_dir/probe"
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
gc_finish_info "$info_start"

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
  } >>"$report_dir/device.tsv"
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
  extra=""
  if [[ $ctest_rc -eq 124 || $ctest_rc -eq 137 ]]; then
    extra="TIMED OUT after ${timeout_tests} s"
  elif [[ $ctest_rc -ne 0 ]]; then
    extra="ctest exit status $ctest_rc"
  fi
  if [[ -f $junit ]]; then
    gc_tests_result tests "$tests_start" "$extra" "$junit"
  else
    finish_step tests FAIL "ctest wrote no JUnit file${extra:+; $extra}" "$tests_start"
  fi
fi

# ---- steps 4-6: sanitizer, benchmarks, report (tools/gpu-lib.sh) --------------------

if [[ $do_sanitizer -eq 1 ]]; then
  gc_sanitizer "$sanitizer_bin" "$build_dir/tests" "$sanitizer_budget" "$timeout_sanitizer"
fi
if [[ $do_bench -eq 1 ]]; then
  bench_args=()
  if [[ -n ${GPU_CHECK_BENCH_ARGS:-} ]]; then
    read -ra bench_args <<<"$GPU_CHECK_BENCH_ARGS"
  fi
  # No overall budget here: each binary has its own limit.
  gc_bench "$build_dir/benchmarks" 1000000 "$timeout_bench" ${bench_args[@]+"${bench_args[@]}"}
fi
overall=0
gc_report_and_summary build tests sanitizer bench || overall=$?
exit "$overall"
