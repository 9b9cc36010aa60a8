#!/usr/bin/env bash
# ctest gpu_bundle: packs the GPU bundle from this build (python3
# tools/gpu/gpu.py bundle --skip-build), unpacks it elsewhere and runs its run.sh in a clean
# environment. On a machine without a GPU run.sh must find every library,
# write its results and exit 2 ("no usable GPU") after the info step.
#   tests/gpu_bundle_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
# ctest registers it only for the builds the bundle packs (sm_90, with tools
# and benchmarks), so it never skips: on a machine with a GPU the GPU is hidden
# from run.sh (CUDA_VISIBLE_DEVICES=""), whose probe then sees no device and
# must take the same no-GPU path.
set -euo pipefail
src="$1" build="$2" work="$3"

arch="$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$build/CMakeCache.txt")"
if [[ ";$arch;" != *";90;"* ]] || [[ ! -x $build/tools/tandem_gpu_probe ]] ||
  ! ls "$build"/benchmarks/tandem_bench_* >/dev/null 2>&1; then
  echo "FAIL: the bundle packs a built sm_90 tree with tools and benchmarks (this one: '$arch');" \
    "build all targets first" >&2
  exit 1
fi

rm -rf "$work"
mkdir -p "$work"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

python3 "$src/tools/gpu/gpu.py" bundle --skip-build --build-dir "$build" --out "$work/out" --jobs 2 \
  >"$work/bundle.log" 2>&1 || {
  cat "$work/bundle.log"
  fail "gpu.py bundle failed"
}
tail -n 4 "$work/bundle.log"
archive="$work/out/tandem-gpu-bundle.tar.xz"
[[ -f $archive ]] || fail "no archive"
(($(stat -c %s "$archive") <= 60 * 1024 * 1024)) || fail "the archive is over 60 MiB"

mkdir -p "$work/unpacked"
tar -xJf "$archive" -C "$work/unpacked"
b="$work/unpacked/tandem-gpu-bundle"
for f in run.sh MANIFEST tests.tsv tools/gpu/gpu.py tools/gpu/steps.py tools/gpu/run.py tools/gpu/report.py \
  bin/tandem_gpu_probe \
  bin/tandem_test_cuda lib/fallback/libstdc++.so.6 tests/safetensors_ref.py tests/expected_skips.h \
  tests/data/safetensors; do
  [[ -e $b/$f ]] || fail "the bundle lacks $f"
done
ls "$b"/lib/libopenblas* >/dev/null 2>&1 || fail "the bundle lacks OpenBLAS"
grep -q 'example_' "$b/tests.tsv" || fail "tests.tsv lists no examples"
grep -q 'tools/gpu/gpu.py" run' "$b/run.sh" || fail "run.sh does not start tools/gpu/gpu.py run"
env -i PATH=/usr/bin:/bin bash "$b/run.sh" --help | grep -q -- '--budget' || fail "run.sh --help failed"
# Nothing points back into this build tree.
if grep -rl --binary-files=text "$build" "$b/bin" "$b/lib" >/dev/null 2>&1; then
  fail "packed files still name the build tree $build: $(grep -rl --binary-files=text "$build" "$b/bin" "$b/lib" | head -n 3)"
fi

rc=0
env -i PATH=/usr/bin:/bin HOME="$work" CUDA_VISIBLE_DEVICES= bash "$b/run.sh" --budget 60 --out "$work/result" \
  --report-dir "$work/report" >"$work/run.out" 2>&1 || rc=$?
cat "$work/run.out"
[[ $rc -eq 2 ]] || fail "run.sh exited $rc, not 2 (no GPU)"
grep -q "NO GPU" "$work/run.out" || fail "run.sh did not say NO GPU"
grep -q "libtandem's libraries" "$work/run.out" || fail "run.sh did not show the libraries"
if grep -q "=> not found\|symbols not found" "$work/run.out"; then
  fail "a library of libtandem.so was not found"
fi
for f in run.log report.tar.gz; do
  [[ -s $work/result/$f ]] || fail "run.sh did not leave $f in --out"
done
grep -qP '^info\tNO GPU\t' "$work/report/steps.tsv" || fail "steps.tsv does not record the info step"
grep -qP '^cudnn_header\t' "$work/report/device.tsv" || fail "the probe did not report cuDNN"
echo "PASS: bundle packed ($(du -h "$archive" | cut -f1)), unpacked, no-GPU exit 2 with results"
