#!/usr/bin/env bash
# run.sh of the tandem GPU bundle (packed by tools/gpu-bundle.sh from
# tools/gpu-bundle-run.sh): checks the prebuilt tandem on this machine's GPU,
# within a time budget, building nothing.
#
#   run.sh [--budget SECONDS] [--out DIR] [--report-dir DIR] [--only STEPS] [--quick]
#
# Steps, in this order, each capped by its share of the budget (a step or part
# of a step that the budget cuts off is recorded as NOT RUN, never as passed):
#   info       nvidia-smi, the version probe (CUDA runtime, driver, cuBLAS,
#              cuDNN: compiled-against and loaded), the libraries found. Without
#              a usable GPU: says so and exits 2 right here.
#   tests      every GoogleTest binary with TANDEM_REQUIRE_CUDA=1 (a skipped
#              GPU test fails) and TANDEM_SYNC_DEBUG=1 (a failing kernel is
#              named), in parallel; then the examples' smoke runs   (40%)
#   async      the GPU test cases again without TANDEM_SYNC_DEBUG     (10%)
#   sanitizer  compute-sanitizer memcheck over the GPU cases, racecheck and
#              synccheck over our kernels' cases                      (25%)
#   bench      every benchmark's CUDA cases, short                    (15%)
#   train      only with CIFAR-10 in the bundle (gpu-bundle.sh --cifar10) or
#              --cifar10 FILE: `tandem train --model resnet-fast --device cuda`
#              (10 epochs, its recipe) and `tandem bench train`; with what
#              the budget has left, at most --train-seconds
#   report     gpu-report.md + gpu-report.json (tools/gpu_report.py)
#
# Options:
#   --budget S       seconds for the whole run (default 420)
#   --out DIR        where the results are copied at the end, at most 8 files:
#                    gpu-report.md, gpu-report.json, run.log, report.tar.gz
#                    (default: $OUT when set, else none)
#   --report-dir D   the full report tree (default /tmp/tandem-gpu-report)
#   --only STEPS     comma-separated subset of tests,async,sanitizer,bench,train
#   --quick          smaller sanitizer filters (float32 only, no sweeps)
#   --cifar10 FILE   CIFAR-10 for the train step (default: the bundle's data/)
#   --train-seconds S  at most this long for the train step (default 180)
#   --bench-cpu      also the benchmarks' CPU cases (default: CUDA and the
#                    direct cuBLAS/cuDNN baselines only)
#   --without-gpu    go on past the info step when there is no GPU (to test
#                    the bundle itself on a machine without one: every GPU
#                    test then fails, as it should)
#   -h, --help       this text
#
# Libraries: the bundle's own (lib/), CUDA's from the toolkit (CUDA_HOME,
# /usr/local/cuda) and from the nvidia-* Python wheels next to PyTorch (cuDNN
# lives there), the driver's; lib/fallback (libstdc++, libgcc_s) only when the
# machine's own C++ runtime is older than the one tandem was built with.
#
# Exit status: 0 every step passed; 1 a step failed or did not run; 2 no
# usable GPU; 3 a library is missing; 64 bad usage.
set -euo pipefail

usage() { sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'; }

bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gc_name=gpu-bundle
# The steps shared with tools/gpu-check.sh; sourced before the options are
# read, since it sets their defaults (quick, allowed_skips, sanitizer_exclude).
# (In the bundle it is tools/gpu-lib.sh; in the source tree, next to this file.)
lib="$bundle/tools/gpu-lib.sh"
[[ -f $lib ]] || lib="$bundle/gpu-lib.sh"
# shellcheck source=tools/gpu-lib.sh
source "$lib"
budget=420
out_dir="${OUT:-}"
report_dir=/tmp/tandem-gpu-report
do_tests=1 do_async=1 do_sanitizer=1 do_bench=1
without_gpu=0
bench_cpu=0
cifar10=""
train_seconds=180
do_train=1

die_usage() {
  echo "gpu-bundle: $*" >&2
  usage >&2
  exit 64
}
need_arg() { [[ $2 -ge 2 ]] || die_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --budget)
      need_arg "$1" $#
      budget="$2"
      shift
      ;;
    --out)
      need_arg "$1" $#
      out_dir="$2"
      shift
      ;;
    --report-dir)
      need_arg "$1" $#
      report_dir="$2"
      shift
      ;;
    --only)
      need_arg "$1" $#
      do_tests=0 do_async=0 do_sanitizer=0 do_bench=0 do_train=0
      IFS=',' read -ra only_steps <<<"$2"
      for s in "${only_steps[@]}"; do
        case "$s" in
          tests) do_tests=1 ;;
          async) do_async=1 ;;
          sanitizer) do_sanitizer=1 ;;
          bench) do_bench=1 ;;
          train) do_train=1 ;;
          info | report) ;;
          *) die_usage "unknown step '$s' in --only" ;;
        esac
      done
      shift
      ;;
    --quick) quick=1 ;;
    --cifar10)
      need_arg "$1" $#
      cifar10="$2"
      shift
      ;;
    --train-seconds)
      need_arg "$1" $#
      train_seconds="$2"
      shift
      ;;
    --without-gpu) without_gpu=1 ;;
    --bench-cpu) bench_cpu=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die_usage "unknown option '$1'" ;;
  esac
  shift
done
[[ $budget =~ ^[1-9][0-9]*$ ]] || die_usage "--budget must be a positive number of seconds, not '$budget'"
[[ $train_seconds =~ ^[1-9][0-9]*$ ]] || die_usage "--train-seconds must be a positive number, not '$train_seconds'"

report_py="$bundle/tools/gpu_report.py"
mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"
rm -rf "${report_dir:?}"/*
exec > >(tee "$report_dir/run.log") 2>&1

t0=$SECONDS
reserve=15  # kept for the report
left() { echo $((budget - (SECONDS - t0) - reserve)); }
# The seconds a step may use: its share of the budget, at most what is left.
cap() {  # PERCENT
  local share=$((budget * $1 / 100)) l
  l="$(left)"
  echo $((share < l ? share : l))
}

copy_out() {
  local rc=$?
  [[ -n $out_dir ]] || return 0
  mkdir -p "$out_dir"
  local f
  for f in gpu-report.md gpu-report.json; do
    [[ -f $report_dir/$f ]] && cp "$report_dir/$f" "$out_dir/"
  done
  tar -C "$(dirname "$report_dir")" -czf "$out_dir/report.tar.gz" "$(basename "$report_dir")" 2>/dev/null || true
  sleep 0.2  # let tee finish the log
  cp "$report_dir/run.log" "$out_dir/run.log" 2>/dev/null || true
  return "$rc"
}
trap copy_out EXIT

# ---- libraries ----------------------------------------------------------------------

lib_dirs=()
add_dir() { [[ -d $1 ]] && [[ " ${lib_dirs[*]} " != *" $1 "* ]] && lib_dirs+=("$1"); return 0; }
find_libraries() {
  section "libraries"
  local d
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    add_dir "$d"
  done
  # The nvidia-* wheels (cuDNN, cuBLAS, the runtime) of the Python that has them.
  local py wheel_dirs
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    wheel_dirs="$("$py" - <<'PY' 2>/dev/null || true
import glob, os, sys
seen = set()
for p in sys.path:
    for lib in sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib")) +
                      glob.glob(os.path.join(p, "nvidia", "cu*", "lib64"))):
        if lib not in seen and glob.glob(os.path.join(lib, "lib*.so*")):
            seen.add(lib)
            print(lib)
PY
)"
    while read -r d; do [[ -n $d ]] && add_dir "$d"; done <<<"$wheel_dirs"
  done
  add_dir /usr/local/nvidia/lib64
  add_dir /usr/local/nvidia/lib
  local joined
  joined="$(
    IFS=:
    echo "${lib_dirs[*]}"
  )"
  export LD_LIBRARY_PATH="$joined${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local lib
  lib="$(find "$bundle/lib" -maxdepth 1 -name 'libtandem.so.*.*' | head -n 1)"
  # The machine's C++ runtime unless it is older than ours.
  if ldd "$lib" 2>&1 | grep -qE "(GLIBCXX|CXXABI|GCC)_[0-9.]+' not found|lib(stdc\+\+|gcc_s)[^ ]* => not found"; then
    echo "C++ runtime: this machine's is older than tandem's; using the bundle's lib/fallback"
    export LD_LIBRARY_PATH="$bundle/lib/fallback:$LD_LIBRARY_PATH"
  else
    echo "C++ runtime: this machine's"
  fi
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "libtandem's libraries (ldd):"
  local ldd_out
  ldd_out="$(ldd "$lib" 2>&1 || true)"
  grep -E 'cudart|cublas|cudnn|libcuda\.|openblas|gomp|stdc\+\+|not found' <<<"$ldd_out" | sed 's/^/  /' || true
  put "lib_search_path" "$LD_LIBRARY_PATH"
  local l where
  for l in cudart cublas cublasLt cudnn openblas stdc++; do
    where="$(awk -v l="lib$l." 'index($1, l) == 1 {print $3; exit}' <<<"$ldd_out")"
    [[ -n $where ]] && put "lib_$l" "$where"
  done
  # Every symbol bound now: a cuDNN or cuBLAS older than the headers tandem was
  # built with shows here as an undefined symbol, not as a crash mid-test.
  local undefined
  undefined="$(LD_BIND_NOW=1 ldd -r "$lib" 2>&1 | grep 'undefined symbol' || true)"
  if [[ -n $undefined ]]; then
    echo "$undefined" | head -n 20 | sed 's/^/  /'
    ldd_out="$ldd_out"$'\n'"symbols not found: $(wc -l <<<"$undefined") (above)"
  fi
  if grep -q 'not found' <<<"$ldd_out"; then
    echo "$gc_name: libtandem.so needs libraries that are not on this machine (above)." >&2
    echo "$gc_name: CUDA's come from CUDA_HOME/lib64 or the nvidia-* Python wheels; set CUDA_HOME" >&2
    echo "$gc_name: or LD_LIBRARY_PATH to where libcudart.so.13, libcublas.so.13 and libcudnn.so.9 are." >&2
    finish_step info FAIL "libraries missing: $(grep 'not found' <<<"$ldd_out" | awk '{print $1}' | tr '\n' ' ')" "$t0"
    exit "$EXIT_NO_TOOL"
  fi
}

# ---- step 1: info ---------------------------------------------------------------------

manifest() { sed -n "s/^$1\t//p" "$bundle/MANIFEST" 2>/dev/null | head -n 1; }

step_info() {
  section "info: device, driver, toolkit and library versions (budget ${budget} s)"
  gc_init "$bundle (prebuilt bundle, built $(manifest built) on $(manifest built_on))" "$(manifest commit)"
  put "bundle_cuda_compiler" "$(manifest cuda_compiler)"
  put "bundle_cudnn_headers" "$(manifest cudnn_headers)"
  find_libraries
  gc_find_cuda_tools
  gc_smi_info
  gc_run_probe "$bundle/bin/tandem_gpu_probe"
  # cuDNN older than the headers: tandem calls only cuDNN 9.0's API, so any
  # cuDNN 9 works; say so rather than hide it.
  local hdr rt
  hdr="$(sed -n 's/^cudnn_header\t//p' "$report_dir/device.tsv" | head -n 1)"
  rt="$(sed -n 's/^cudnn_runtime\t//p' "$report_dir/device.tsv" | head -n 1)"
  if [[ -n $hdr && -n $rt ]] && ((rt < hdr)); then
    echo "cuDNN: loaded $rt is older than the headers ($hdr) tandem was built with; tandem uses" \
      "only the cuDNN 9.0 API, so any cuDNN 9.x serves (docs/gpu-runs.md)"
    put "cudnn_note" "loaded $rt older than headers $hdr (supported: cuDNN 9.0 API only)"
  fi
  if [[ $gpu_ok -eq 0 && $without_gpu -eq 1 ]]; then
    echo "$gc_name: NO GPU ($no_gpu_reason); going on (--without-gpu): GPU tests will fail"
    put "gpu" "none (--without-gpu): $no_gpu_reason"
    finish_step info "NO GPU" "$no_gpu_reason (--without-gpu)" "$t0"
    return
  fi
  gc_finish_info "$t0"
}

# ---- step 2: the tests ------------------------------------------------------------------

# A JUnit file with one failing case, for a binary that left no results.
junit_failure() {  # FILE NAME MESSAGE
  python3 - "$@" <<'PY'
import sys
from xml.sax.saxutils import quoteattr
path, name, msg = sys.argv[1:4]
with open(path, "w") as f:
    f.write(f'<testsuites><testsuite name="bundle"><testcase name={quoteattr(name)} classname="">'
            f'<failure message={quoteattr(msg)}/></testcase></testsuite></testsuites>\n')
PY
}
junit_pass() {  # FILE NAME
  printf '<testsuites><testsuite name="bundle"><testcase name="%s" classname="" status="run"/></testsuite></testsuites>\n' "$2" >"$1"
}

# Runs every tandem_test_* binary (with FILTER) in parallel, results in DIR.
run_gtests() {  # DIR LIMIT FILTER ENV...
  local dir="$1" limit="$2" filter="$3"
  shift 3
  mkdir -p "$dir"
  local jobs
  jobs="$(nproc)"
  ((jobs <= 8)) || jobs=8
  local deadline=$((SECONDS + limit)) bin name pids=() running p
  for bin in "$bundle"/bin/tandem_test_*; do
    name="$(basename "$bin")"
    # At most $jobs at once. Waits name their pids: a bare `wait` would also
    # wait for the process substitution that tees the log, forever.
    while true; do
      running=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
      ((running >= jobs)) || break
      sleep 0.5
    done
    local l=$((deadline - SECONDS))
    if ((l < 5)); then
      junit_failure "$dir/$name.xml" "$name (NOT RUN: budget)" "not run: the time budget was used up"
      continue
    fi
    (
      rc=0
      env "$@" timeout -k 5 "$l" "$bin" --gtest_filter="$filter" --gtest_output="xml:$dir/$name.xml" \
        >"$dir/$name.log" 2>&1 || rc=$?
      if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        rm -f "$dir/$name.xml"
        junit_failure "$dir/$name.xml" "$name (TIMED OUT after $l s)" "timed out; see $name.log"
      elif [[ ! -s $dir/$name.xml ]]; then
        junit_failure "$dir/$name.xml" "$name (crashed: exit status $rc)" "no results; see $name.log"
      fi
      echo "  $name: exit status $rc"
    ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
}

# The tests' fixtures travel in the bundle, not at the path compiled in.
export TANDEM_TEST_SOURCE_DIR="$bundle/tests"
TANDEM_TEST_PYTHON3="$(command -v python3 || true)"
export TANDEM_TEST_PYTHON3

step_tests() {
  local limit
  limit="$(cap 40)"
  if ((limit < 20)); then
    skip_step tests "the budget left ${limit} s"
    return
  fi
  section "tests: every test binary with TANDEM_REQUIRE_CUDA=1 TANDEM_SYNC_DEBUG=1 (cap ${limit} s)"
  local start=$SECONDS dir="$report_dir/tests"
  run_gtests "$dir" "$((limit - 10))" '*' TANDEM_REQUIRE_CUDA=1 TANDEM_SYNC_DEBUG=1
  # The examples' smoke runs (tests.tsv: name, program, arguments).
  local scratch="$report_dir/scratch" tname prog args l rc
  mkdir -p "$scratch"
  while IFS=$'\t' read -r tname prog args; do
    [[ -n $tname ]] || continue
    l=$((limit - (SECONDS - start)))
    if ((l < 5)); then
      junit_failure "$dir/ex-$tname.xml" "$tname (NOT RUN: budget)" "not run: the time budget was used up"
      continue
    fi
    rc=0
    # shellcheck disable=SC2086
    TANDEM_REQUIRE_CUDA=1 timeout -k 5 "$l" "$bundle/bin/$prog" ${args//@SCRATCH@/$scratch} \
      >"$dir/ex-$tname.log" 2>&1 || rc=$?
    echo "  $tname: exit status $rc"
    if [[ $rc -eq 0 ]]; then
      junit_pass "$dir/ex-$tname.xml" "$tname"
    else
      junit_failure "$dir/ex-$tname.xml" "$tname" "exit status $rc; see ex-$tname.log"
    fi
  done <"$bundle/tests.tsv"
  gc_tests_result tests "$start" "" "$dir"/*.xml
  # The failures' output, so that run.log names them.
  grep -h -B2 -A12 '^\[  FAILED  \]\|Failure$' "$dir"/*.log 2>/dev/null | head -n 200 || true
}

step_async() {
  local limit
  limit="$(cap 10)"
  if ((limit < 20)); then
    skip_step tests_async "the budget left ${limit} s"
    return
  fi
  section "async: the GPU test cases without TANDEM_SYNC_DEBUG (cap ${limit} s)"
  local start=$SECONDS
  run_gtests "$report_dir/tests_async" "$limit" "$gpu_filter" TANDEM_REQUIRE_CUDA=1 TANDEM_SYNC_DEBUG=0
  gc_tests_result tests_async "$start" "" "$report_dir/tests_async"/*.xml
}

step_sanitizer() {
  local limit
  limit="$(cap 25)"
  if ((limit < 30)); then
    skip_step sanitizer "the budget left ${limit} s"
    return
  fi
  gc_sanitizer "$sanitizer_bin" "$bundle/bin" "$limit" "$limit"
}

step_bench() {
  local limit
  limit="$(cap 15)"
  if ((limit < 20)); then
    skip_step bench "the budget left ${limit} s"
    return
  fi
  local n per filter=()
  n="$(find "$bundle/bin" -maxdepth 1 -name 'tandem_bench_*' | wc -l)"
  # A binary may take twice its even share (they differ); each still ends
  # within what the budget has left.
  per=$((2 * limit / (n > 0 ? n : 1)))
  ((per >= 20)) || per=20
  # The device's CPU is not the one the CPU figures are quoted for: CUDA cases
  # and the direct library baselines only, unless --bench-cpu.
  [[ $bench_cpu -eq 1 ]] || filter=(--benchmark_filter=-/cpu/)
  # Google Benchmark 1.7 (the bundle's) takes the minimum time in seconds.
  # tandem_bench_ops: one size (16M) per case (TANDEM_BENCH_QUICK).
  TANDEM_BENCH_QUICK=1 gc_bench "$bundle/bin" "$limit" "$per" --benchmark_min_time=0.05 \
    ${filter[@]+"${filter[@]}"}
}

# resnet-fast on the real CIFAR-10 on the GPU (issue 14's 10-epoch run) and the
# CPU-vs-GPU training-step benchmark, when the bundle carries the data.
step_train() {
  local data="$cifar10"
  [[ -n $data ]] || data="$(find "$bundle/data" -maxdepth 1 -type f 2>/dev/null | head -n 1)"
  if [[ -z $data ]]; then
    echo "$gc_name: no CIFAR-10 in the bundle and no --cifar10: the train step is left out"
    return
  fi
  local limit
  limit="$(left)"
  ((limit < train_seconds)) || limit=$train_seconds
  if ((limit < 30)); then
    skip_step train "the budget left ${limit} s"
    return
  fi
  section "train: resnet-fast on CIFAR-10 ($data) on the GPU (cap ${limit} s)"
  local start=$SECONDS dir="$report_dir/train" rc=0
  mkdir -p "$dir"
  run_logged "$dir/train.log" "$limit" env TANDEM_DATA_DIR="$dir/cache" "$bundle/bin/tandem" train \
    --model resnet-fast --device cuda --data "$data" --out "$dir/run" || rc=$?
  local detail
  detail="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("test accuracy %.4f" % r["test_accuracy"])' \
    "$dir/run/results.json" 2>/dev/null || echo "no results.json")"
  detail="$detail, $((SECONDS - start)) s with the import"
  cp "$dir/run/metrics.csv" "$dir/" 2>/dev/null || true
  local l
  l="$(left)"
  if ((l > 20)); then
    run_logged "$dir/bench.log" "$((l < 60 ? l : 60))" "$bundle/bin/tandem" bench train \
      --model resnet-fast --batch-size 512 --steps 10 --json >"$dir/bench-train.json" || true
  fi
  case "$rc" in
    0) finish_step train PASS "$detail" "$start" ;;
    124 | 137) finish_step train "TIMED OUT" "after $limit s; $detail" "$start" ;;
    *) finish_step train FAIL "exit status $rc; $detail" "$start" ;;
  esac
}

step_info
[[ $do_tests -eq 1 ]] && step_tests
[[ $do_async -eq 1 ]] && step_async
[[ $do_sanitizer -eq 1 ]] && step_sanitizer
[[ $do_bench -eq 1 ]] && step_bench
[[ $do_train -eq 1 ]] && step_train
reserve=0
overall=0
gc_report_and_summary tests tests_async sanitizer bench || overall=$?
echo "$gc_name: $((SECONDS - t0)) s of the ${budget} s budget used"
exit "$overall"
