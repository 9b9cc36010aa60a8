# shellcheck shell=bash
# The steps that tools/gpu-check.sh (build on the GPU machine) and the GPU
# bundle's run.sh (tools/gpu-bundle.sh: prebuilt here, run there) share. Sourced,
# never run. The caller sets, before calling gc_init:
#   gc_name      prefix of messages ("gpu-check", "gpu-bundle")
#   report_dir   where device.tsv, steps.tsv, tests.json, sanitizer.tsv,
#                bench/*.json and the report go
#   report_py    path of gpu_report.py
# Step functions record one line each in report_dir/steps.tsv (name, status,
# detail, seconds, time stamp); a step cut off by its time limit is recorded
# as NOT RUN or TIMED OUT, never as PASS.

EXIT_FAIL=1
EXIT_NO_GPU=2
EXIT_NO_TOOL=3
EXIT_USAGE=64

# ---- helpers ----------------------------------------------------------------------

warn() { echo "$gc_name: WARNING: $*" >&2; }
section() {
  echo
  echo "==== $gc_name: $* ===="
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
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$logfile" || rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "$gc_name: TIMED OUT after ${limit} s: $1" | tee -a "$logfile"
  fi
  return "$rc"
}
require_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "$gc_name: '$1' not found: $2" >&2
    exit "$EXIT_NO_TOOL"
  fi
}

# The per-step results live in the report directory, one line per step, so
# that a later partial run (--only bench) keeps the earlier ones for the report.
declare -A step_status=()
declare -A step_detail=()
step_order=()
record_step() {  # NAME STATUS DETAIL SECONDS
  local f="$report_dir/steps.tsv"
  touch "$f"
  local tmp="$f.tmp"
  grep -v -P "^$1\t" "$f" >"$tmp" || true
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "${3//$'\t'/ }" "$4" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$tmp"
  mv "$tmp" "$f"
}
finish_step() {  # NAME STATUS DETAIL START_SECONDS
  step_status[$1]="$2"
  step_detail[$1]="$3"
  step_order+=("$1")
  record_step "$1" "$2" "$3" "$((SECONDS - $4))"
}
# A step the time budget left no room for.
skip_step() {  # NAME WHY
  finish_step "$1" "NOT RUN" "$2" "$SECONDS"
}

put() { printf '%s\t%s\n' "$1" "$2" >>"$report_dir/device.tsv"; }

gc_init() {  # SOURCE_DESCRIPTION COMMIT
  require_tool timeout "install coreutils"
  require_tool python3 "needed for the report (gpu_report.py, standard library only)"
  mkdir -p "$report_dir"
  : >"$report_dir/device.tsv"
  put "check_started" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  put "host" "$(hostname 2>/dev/null || echo unknown)"
  put "source_dir" "$1"
  put "commit" "$2"
  echo "source: $1, commit $2"
}

# ---- step 1: device and versions ----------------------------------------------

# nvidia-smi's view of the GPUs into device.tsv. Sets gpu_ok, no_gpu_reason and
# compute_caps ("90" or "80;90").
gpu_ok=1
no_gpu_reason=""
compute_caps=""
gc_smi_info() {
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    gpu_ok=0
    no_gpu_reason="nvidia-smi not found (no NVIDIA driver on this machine)"
    echo "nvidia-smi: not found"
    return
  fi
  local query=index,name,driver_version,compute_cap,memory.total,clocks.max.sm,clocks.max.memory,pci.bus_id
  show_cmd nvidia-smi --query-gpu="$query" --format=csv,noheader
  local smi_rc=0 smi_out
  smi_out="$(timeout 60 nvidia-smi --query-gpu="$query" --format=csv,noheader 2>&1)" || smi_rc=$?
  echo "$smi_out"
  if [[ $smi_rc -ne 0 ]] || ! grep -q '^[0-9]' <<<"$smi_out"; then
    gpu_ok=0
    no_gpu_reason="nvidia-smi lists no usable GPU (exit status $smi_rc)"
    return
  fi
  local idx name driver cap mem sm_clk mem_clk bus
  trim() { sed 's/^ *//; s/ *$//' <<<"$1"; }
  while IFS=',' read -r idx name driver cap mem sm_clk mem_clk bus; do
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
      local arch="${cap/./}"
      [[ ";$compute_caps;" == *";$arch;"* ]] || compute_caps="${compute_caps:+$compute_caps;}$arch"
    fi
  done < <(grep '^[0-9]' <<<"$smi_out")
  put "gpu_count" "$(grep -c '^[0-9]' <<<"$smi_out")"
}

# Runs the version probe (tools/gpu_probe.cpp, built) and keeps its key/value
# lines in device.tsv. Sets probe_ok; a runtime that sees no device clears gpu_ok.
probe_ok=0
gc_run_probe() {  # PROBE_BINARY
  local probe="$1" probe_rc=0 probe_out
  show_cmd "$probe"
  probe_out="$(timeout 60 "$probe" 2>&1)" || probe_rc=$?
  echo "$probe_out"
  if [[ $probe_rc -ne 0 ]]; then
    warn "the version probe failed (exit status $probe_rc)"
    return
  fi
  probe_ok=1
  grep -P '^[a-z0-9_]+\t' <<<"$probe_out" >>"$report_dir/device.tsv" || true
  echo "probe's libraries:"
  ldd "$probe" | grep -E 'cudart|cublas|cudnn|libcuda\.|not found' | sed 's/^/  /' || true
  if [[ $gpu_ok -eq 1 ]] && grep -qP '^runtime_devices\t0$' <<<"$probe_out"; then
    gpu_ok=0
    no_gpu_reason="nvidia-smi lists a GPU but the CUDA runtime sees none: $(sed -n 's/^runtime_error\t//p' <<<"$probe_out")"
  fi
}

# Ends step 1: without a GPU, says so and exits EXIT_NO_GPU.
gc_finish_info() {  # START_SECONDS
  if [[ $gpu_ok -eq 0 ]]; then
    put "gpu" "none: $no_gpu_reason"
    finish_step info "NO GPU" "$no_gpu_reason" "$1"
    echo
    echo "$gc_name: NO GPU: $no_gpu_reason."
    echo "$gc_name: nothing to check here; run this on a machine with an NVIDIA GPU and its driver"
    echo "$gc_name: (the CPU-only checks are tools/test.sh). Exit status $EXIT_NO_GPU."
    exit "$EXIT_NO_GPU"
  fi
  put "gpu" "yes"
  finish_step info PASS "$(sed -n 's/^gpu0_name\t//p' "$report_dir/device.tsv"), sm_${compute_caps//;/ sm_}" "$1"
}

# ---- the test results -------------------------------------------------------------

# tests.json from one or more JUnit files (ctest's or gtest's); records step NAME.
gc_tests_result() {  # NAME START_SECONDS EXTRA_DETAIL JUNIT...
  local name="$1" start="$2" extra="$3"
  shift 3
  local status=PASS detail junit_rc=0 json="$report_dir/$name.json"
  show_cmd python3 "$report_py" junit "$@" --allowed-skips "$allowed_skips" --out "$json"
  python3 "$report_py" junit "$@" --allowed-skips "$allowed_skips" --out "$json" || junit_rc=$?
  detail="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"])' "$json" 2>/dev/null || echo "no summary")"
  [[ $junit_rc -eq 0 ]] || status=FAIL
  [[ -z $extra ]] || {
    status=FAIL
    detail="$extra; $detail"
  }
  finish_step "$name" "$status" "$detail" "$start"
}

# ---- compute-sanitizer -------------------------------------------------------------

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
sanitizer_exclude="${GPU_CHECK_SANITIZER_EXCLUDE-*OutOfMemory*}"  # set but empty: exclude nothing
# The skips a GPU run allows: the CudaPresent entries of the one list of
# expected skips, tests/expected_skips.h (next to tools/ in the source tree
# and in the bundle), as an anchored regex; empty (none) if the list is absent.
gc_expected_gpu_skips() {
  local list
  list="$(dirname "${BASH_SOURCE[0]}")/../tests/expected_skips.h"
  [[ -f $list ]] || return 0
  sed -n 's/^TANDEM_EXPECTED_SKIP("\([^"]*\)", *CudaPresent,.*/\1/p' "$list" |
    sed 's/[.]/\\./g; s/[*]/.*/g' | paste -sd '|' | sed 's/^\(..*\)$/^(\1)$/'
}
allowed_skips="${GPU_CHECK_ALLOWED_SKIPS-$(gc_expected_gpu_skips)}"  # empty: none
quick=0

# gtest filter: positive patterns, then '-' and the negative ones.
make_filter() {  # POSITIVE
  local neg="$sanitizer_exclude"
  [[ $quick -eq 1 ]] && neg="${neg:+$neg:}$quick_exclude"
  if [[ -n $neg ]]; then echo "$1-$neg"; else echo "$1"; fi
}

# compute-sanitizer memcheck over the GPU cases of every tandem_test_* in
# TEST_DIR, then racecheck and synccheck over the kernel cases. Runs that no
# longer fit in BUDGET seconds are recorded as NOT RUN (a failure).
gc_sanitizer() {  # SANITIZER_BINARY TEST_DIR BUDGET PER_RUN_LIMIT
  local sanitizer_bin="$1" test_dir="$2" budget="$3" per_run="$4"
  section "sanitizer: compute-sanitizer memcheck, racecheck, synccheck (budget ${budget} s)"
  local san_start=$SECONDS san_tsv="$report_dir/sanitizer.tsv" san_logs="$report_dir/sanitizer"
  mkdir -p "$san_logs"
  rm -f "$san_logs"/*.log
  printf 'tool\tbinary\tstatus\terrors\tseconds\tcases\tlog\n' >"$san_tsv"
  local san_status=PASS san_detail="" san_runs=0 san_failed=0 not_run=0
  if [[ -z $sanitizer_bin ]]; then
    finish_step sanitizer FAIL "compute-sanitizer not found" "$san_start"
    return
  fi
  local test_bins=()
  mapfile -t test_bins < <(find "$test_dir" -maxdepth 1 -type f -name 'tandem_test_*' -perm -u+x 2>/dev/null | sort)
  if [[ ${#test_bins[@]} -eq 0 ]]; then
    finish_step sanitizer FAIL "no tandem_test_* binaries in $test_dir" "$san_start"
    return
  fi
  local tool filter bin name cases left logf limit rc errors st run_start
  for tool in memcheck racecheck synccheck; do
    if [[ $tool == memcheck ]]; then filter="$(make_filter "$gpu_filter")"; else filter="$(make_filter "$kernel_filter")"; fi
    for bin in "${test_bins[@]}"; do
      name="$(basename "$bin")"
      # Which cases the filter selects in this binary (none: nothing to run).
      cases="$(TANDEM_REQUIRE_CUDA=1 timeout 60 "$bin" --gtest_list_tests --gtest_filter="$filter" 2>/dev/null | grep -c '^  ' || true)"
      [[ $cases -gt 0 ]] || continue
      left=$((budget - (SECONDS - san_start)))
      logf="$san_logs/$tool-$name.log"
      san_runs=$((san_runs + 1))
      if ((left < 20)); then
        echo "$gc_name: sanitizer budget (${budget} s) used up: $tool $name not run"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "NOT RUN (budget)" "" 0 "$cases" "" >>"$san_tsv"
        not_run=$((not_run + 1))
        continue
      fi
      limit=$((left < per_run ? left : per_run))
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
        124 | 137) st="TIMED OUT after ${limit} s" ;;
        *) st="FAIL (exit status $rc: test failures under the sanitizer)" ;;
      esac
      [[ $rc -eq 0 ]] || san_failed=$((san_failed + 1))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "$st" "${errors:-?}" \
        "$((SECONDS - run_start))" "$cases" "$logf" >>"$san_tsv"
    done
  done
  local quick_note=""
  [[ $quick -eq 0 ]] || quick_note=" (--quick filters)"
  if [[ $san_runs -eq 0 ]]; then
    san_status=FAIL
    san_detail="no test case matched the sanitizer filters"
  else
    san_detail="$((san_runs - san_failed - not_run)) of $san_runs runs clean, $san_failed failed, $not_run not run (budget)$quick_note"
    if [[ $san_failed -gt 0 ]]; then
      san_status=FAIL
    elif [[ $not_run -gt 0 ]]; then
      san_status=INCOMPLETE
    fi
  fi
  finish_step sanitizer "$san_status" "$san_detail" "$san_start"
  column -t -s $'\t' "$san_tsv" 2>/dev/null || cat "$san_tsv"
}

# ---- benchmarks ----------------------------------------------------------------------

# Every tandem_bench_* in BENCH_DIR, Google Benchmark JSON into report_dir/bench.
# Binaries that no longer fit in BUDGET seconds are recorded as not run.
gc_bench() {  # BENCH_DIR BUDGET PER_BINARY_LIMIT [BENCHMARK FLAGS...]
  local bench_dir="$1" budget="$2" per_bin="$3"
  shift 3
  section "bench: every tandem_bench_* in $bench_dir (budget ${budget} s)"
  local bench_start=$SECONDS bench_out="$report_dir/bench"
  mkdir -p "$bench_out"
  rm -f "$bench_out"/*.json "$bench_out"/*.log
  local bench_bins=()
  mapfile -t bench_bins < <(find "$bench_dir" -maxdepth 1 -type f -name 'tandem_bench_*' -perm -u+x 2>/dev/null | sort)
  local bench_status=PASS bench_detail="" bench_failed=() not_run=() bin name rc left limit
  if [[ ${#bench_bins[@]} -eq 0 ]]; then
    finish_step bench FAIL "no tandem_bench_* binaries in $bench_dir" "$bench_start"
    return
  fi
  for bin in "${bench_bins[@]}"; do
    name="$(basename "$bin")"
    left=$((budget - (SECONDS - bench_start)))
    if ((left < 10)); then
      not_run+=("$name")
      continue
    fi
    limit=$((left < per_bin ? left : per_bin))
    rc=0
    run_logged "$bench_out/$name.log" "$limit" "$bin" \
      --benchmark_out="$bench_out/$name.json" --benchmark_out_format=json "$@" || rc=$?
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
      bench_failed+=("$name (timed out after $limit s)")
    elif [[ $rc -ne 0 ]]; then
      bench_failed+=("$name (exit status $rc)")
    fi
  done
  # Cases that reported an error (SkipWithError) count as failures too.
  local errored
  errored="$(python3 "$report_py" bench-errors "$bench_out" || echo "?")"
  bench_detail="${#bench_bins[@]} binaries, ${#bench_failed[@]} failed, ${#not_run[@]} not run (budget), $errored cases with errors"
  [[ ${#bench_failed[@]} -eq 0 ]] || bench_detail="$bench_detail: ${bench_failed[*]}"
  [[ ${#not_run[@]} -eq 0 ]] || bench_detail="$bench_detail; not run: ${not_run[*]}"
  if [[ ${#bench_failed[@]} -gt 0 || $errored != 0 ]]; then
    bench_status=FAIL
  elif [[ ${#not_run[@]} -gt 0 ]]; then
    bench_status=INCOMPLETE
  fi
  finish_step bench "$bench_status" "$bench_detail" "$bench_start"
}

# ---- report and summary ----------------------------------------------------------------

# Writes the report, prints the summary of the steps of this invocation (and
# those in EXPECTED_STEPS that did not run) and returns the exit status.
gc_report_and_summary() {  # EXPECTED_STEPS...
  section "report"
  local report_status=PASS
  show_cmd python3 "$report_py" report "$report_dir"
  if ! python3 "$report_py" report "$report_dir"; then
    report_status=FAIL
    warn "the report generator failed"
  fi
  echo
  echo "==== $gc_name summary ===="
  local overall=0 s
  for s in "${step_order[@]}"; do
    printf '  %-12s %-10s %s\n' "$s" "${step_status[$s]}" "${step_detail[$s]}"
    [[ ${step_status[$s]} == PASS ]] || overall=$EXIT_FAIL
  done
  for s in "$@"; do
    [[ -n ${step_status[$s]:-} ]] || printf '  %-12s %-10s %s\n' "$s" "-" "not run in this invocation"
  done
  [[ $report_status == PASS ]] || overall=$EXIT_FAIL
  echo "  report:      $report_dir/gpu-report.md (and .json)"
  if [[ $overall -eq 0 ]]; then
    echo "$gc_name: every step that ran passed"
  else
    echo "$gc_name: FAILED (or incomplete: a step not run counts as not passed)"
  fi
  return "$overall"
}

# ---- CUDA tools -------------------------------------------------------------------------

# Sets cuda_home, nvcc (empty when absent) and sanitizer_bin (empty when absent).
gc_find_cuda_tools() {
  cuda_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
  nvcc=""
  if [[ -x "$cuda_home/bin/nvcc" ]]; then
    nvcc="$cuda_home/bin/nvcc"
  elif command -v nvcc >/dev/null 2>&1; then
    nvcc="$(command -v nvcc)"
    cuda_home="$(dirname "$(dirname "$(realpath "$nvcc")")")"
  fi
  sanitizer_bin=""
  local s
  for s in "$cuda_home/bin/compute-sanitizer" "$cuda_home/compute-sanitizer/compute-sanitizer"; do
    if [[ -x $s ]]; then
      sanitizer_bin="$s"
      break
    fi
  done
  if [[ -z $sanitizer_bin ]] && command -v compute-sanitizer >/dev/null 2>&1; then
    sanitizer_bin="$(command -v compute-sanitizer)"
  fi
  put "compute_sanitizer" "${sanitizer_bin:-not found}"
  if [[ -n $nvcc ]]; then
    local nvcc_out
    nvcc_out="$("$nvcc" --version 2>&1 || true)"
    echo "nvcc: $nvcc ($(grep -o 'release [0-9.]*, V[0-9.]*' <<<"$nvcc_out" | head -n 1))"
    put "nvcc" "$nvcc"
    put "toolkit_version" "$(sed -n 's/.*release \([0-9.]*\).*/\1/p' <<<"$nvcc_out" | head -n 1)"
    put "toolkit_build" "$(grep -o 'V[0-9][0-9.]*' <<<"$nvcc_out" | head -n 1)"
  else
    echo "nvcc: not found (CUDA_HOME=$cuda_home)"
    put "nvcc" "not found"
  fi
}
