#!/usr/bin/env bash
# The libFuzzer target of the checkpoint parser (tests/fuzz/fuzz_safetensors.cpp),
# compiled with clang++ directly: the parser (src/serialize/safetensors_format.cpp)
# and tandem::Error are all it needs, under ASan + UBSan.
#
#   tools/fuzz.sh check [--cxx CXX]                 exit 0 if CXX supports -fsanitize=fuzzer
#   tools/fuzz.sh build --out BIN [--cxx CXX]       compile the target
#   tools/fuzz.sh run --bin BIN [--seconds N] [--work DIR] [--seed S]
#                                                   fuzz for N seconds (default 20) from the
#                                                   seed corpus tests/data/safetensors/{good,bad},
#                                                   copied to DIR/corpus (default build/fuzz);
#                                                   crashes are written to DIR/crash-*;
#                                                   libFuzzer's seed S (default 1, so a
#                                                   run repeats; 0: a random one)
#   tools/fuzz.sh [--seconds N]                     build build/fuzz/fuzz_safetensors and run
#
# CXX defaults to clang++. ctest runs `run` for 20 s when CMake found a CXX that
# passes `check` (tests/CMakeLists.txt).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cxx=clang++
out=""
bin=""
seconds=20
work="$root/build/fuzz"
seed=1

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

fuzz_check() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
    >"$tmp/probe.cpp"
  "$cxx" -fsanitize=fuzzer "$tmp/probe.cpp" -o "$tmp/probe" >/dev/null 2>&1
}

fuzz_build() {
  mkdir -p "$(dirname "$out")"
  "$cxx" -std=c++17 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I "$root/include" -I "$root/src" \
    "$root/tests/fuzz/fuzz_safetensors.cpp" \
    "$root/src/serialize/safetensors_format.cpp" \
    "$root/src/core/error.cpp" \
    -o "$out"
  echo "fuzz.sh: built $out"
}

fuzz_run() {
  rm -rf "$work/corpus"  # each run starts from the seed corpus alone
  mkdir -p "$work/corpus"
  cp "$root"/tests/data/safetensors/good/* "$root"/tests/data/safetensors/bad/* "$work/corpus/"
  # -max_len: the seeds are small; 64 KiB leaves room to grow headers.
  "$bin" "$work/corpus" -dict="$root/tests/fuzz/safetensors.dict" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -seed="$seed" -artifact_prefix="$work/" -print_final_stats=1
  echo "fuzz.sh: $seconds s without a finding ($(ls "$work/corpus" | wc -l) inputs in $work/corpus)"
}

cmd=all
if [[ $# -gt 0 && "$1" != -* ]]; then
  cmd="$1"
  shift
fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cxx) cxx="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

case "$cmd" in
  check) fuzz_check ;;
  build)
    [[ -n "$out" ]] || { echo "fuzz.sh: build needs --out" >&2; exit 2; }
    fuzz_build
    ;;
  run)
    [[ -n "$bin" ]] || { echo "fuzz.sh: run needs --bin" >&2; exit 2; }
    fuzz_run
    ;;
  all)
    if ! fuzz_check; then
      echo "fuzz.sh: $cxx does not support -fsanitize=fuzzer (install clang)" >&2
      exit 2
    fi
    out="$work/fuzz_safetensors"
    bin="$out"
    fuzz_build
    fuzz_run
    ;;
  *) echo "fuzz.sh: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
