#!/usr/bin/env bash
# Builds, here and without a GPU, one self-contained archive that checks tandem
# on a GPU machine that has a driver and CUDA's libraries but no compiler
# toolchain for us (no OpenBLAS, GoogleTest, Google Benchmark, apt or internet):
#
#   tools/gpu-bundle.sh [options]
#
# Steps:
#   build   configure + build the "ci" preset (Release, CUDA ON, sm_90: Hopper,
#           H100/H200; tests, benchmarks, examples, tools) in build/ci
#   stage   copy every test, benchmark and example binary, tandem_demo, the
#           version probe and libtandem.so into a staging tree; add every
#           shared library they need that is not glibc and not CUDA's (OpenBLAS,
#           gfortran, quadmath, gomp, Google Benchmark, libjpeg, ...); libstdc++
#           and libgcc_s go to lib/fallback, used only when the machine's own
#           are too old; strip; set RUNPATHs to $ORIGIN/../lib
#   check   ldd every packed ELF file with only the bundle and CUDA's folders
#           on the library path: nothing may be missing, nothing may come from
#           outside them but glibc and the CUDA libraries
#   pack    BUNDLE.tar.xz with run.sh (tools/gpu-bundle-run.sh), gpu-lib.sh,
#           gpu_report.py, benchmarks/*.py, the ctest list of the non-gtest
#           tests, and MANIFEST (commit, versions, sizes); fails above the
#           size limit
#
# On the GPU machine (docs/gpu-runs.md has the exact device call):
#   tar -xJf tandem-gpu-bundle.tar.xz -C /tmp && /tmp/tandem-gpu-bundle/run.sh --budget 300
#
# Options:
#   --build-dir DIR   an existing CUDA build to pack (default: build/ci)
#   --skip-build      pack the build as it is, do not (re)build it
#   --out DIR         where the archive goes (default: build/gpu-bundle; the
#                     device call carries this folder)
#   --max-mib N       size limit of the archive in MiB (default 60: the device
#                     tool carries 64 MiB in all, the working tree included)
#   --cifar10 FILE    also pack FILE (a CIFAR-10 source that `tandem train
#                     --data` takes, e.g. ../shared/data/cifar10-jpeg.tar.xz,
#                     18 MB) as data/: run.sh then trains resnet-fast on the
#                     GPU for the "train" step
#   --jobs N          build parallelism (default: JOBS or nproc)
#   -h, --help        this text
#
# Exit status: 0 packed and checked; 1 a step failed; 64 bad usage.
set -euo pipefail

usage() { sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build_dir="$root/build/ci"
do_build=1
out_dir="$root/build/gpu-bundle"
max_mib=60
cifar10=""
jobs="${JOBS:-$(nproc)}"

die_usage() {
  echo "gpu-bundle: $*" >&2
  usage >&2
  exit 64
}
need_arg() { [[ $2 -ge 2 ]] || die_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir)
      need_arg "$1" $#
      build_dir="$(realpath -m "$2")"
      shift
      ;;
    --skip-build) do_build=0 ;;
    --out)
      need_arg "$1" $#
      out_dir="$(realpath -m "$2")"
      shift
      ;;
    --max-mib)
      need_arg "$1" $#
      max_mib="$2"
      shift
      ;;
    --jobs)
      need_arg "$1" $#
      jobs="$2"
      shift
      ;;
    --cifar10)
      need_arg "$1" $#
      cifar10="$(realpath -m "$2")"
      [[ -f $cifar10 ]] || die_usage "--cifar10: no file $2"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die_usage "unknown option '$1'" ;;
  esac
  shift
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die_usage "--jobs must be a positive number, not '$jobs'"
[[ $max_mib =~ ^[1-9][0-9]*$ ]] || die_usage "--max-mib must be a positive number, not '$max_mib'"

name=tandem-gpu-bundle
stage_root="$out_dir-stage"  # outside out_dir: the device call carries out_dir alone
stage="$stage_root/$name"
archive="$out_dir/$name.tar.xz"

say() { echo "gpu-bundle: $*"; }
fail() {
  echo "gpu-bundle: FAILED: $*" >&2
  exit 1
}
for tool in patchelf xz strip ldd python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found (tools/setup.sh installs it)"
done

# CUDA's own libraries come from the GPU machine (its toolkit or the nvidia-*
# Python wheels), never from the bundle: they must match its driver.
cuda_lib_re='^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc[a-z-]*|nvJitLink|curand|cusparse|cufft|nvidia-ml)\.so'
# glibc's libraries: every Linux machine has its own.
glibc_re='^(libc|libm|libdl|libpthread|librt|libutil|libresolv|ld-linux-x86-64|linux-vdso)\.so'
# The C++ runtime: packed, but used only when the machine's own is older.
fallback_re='^(libstdc\+\+|libgcc_s)\.so'

step_build() {
  [[ $do_build -eq 1 ]] || return 0
  say "build: cmake --preset ci (build/ci, sm_90)"
  [[ $build_dir == "$root/build/ci" ]] ||
    fail "--build-dir without --skip-build: only the ci preset (build/ci) is built here"
  cmake --preset ci >/dev/null
  cmake --build --preset ci -j "$jobs"
}

# Copies FILE to DEST_DIR, strips it and sets its RUNPATH.
stage_elf() {  # FILE DEST_DIR RUNPATH
  local f="$2/$(basename "$1")"
  cp -L "$1" "$f"
  chmod u+w "$f"
  strip --strip-unneeded "$f" 2>/dev/null || strip "$f"
  patchelf --set-rpath "$3" "$f"
}

step_stage() {
  say "stage: $stage"
  [[ -f $build_dir/CMakeCache.txt ]] || fail "$build_dir is not a CMake build directory"
  grep -q 'TANDEM_WITH_CUDA 1' "$build_dir/include/tandem/config.h" ||
    fail "$build_dir was built without the CUDA backend"
  local arch
  arch="$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$build_dir/CMakeCache.txt")"
  [[ ";$arch;" == *";90;"* || ";$arch;" == *";90-real;"* || ";$arch;" == *";90a;"* ]] ||
    fail "$build_dir is built for CUDA architectures '$arch', not sm_90 (Hopper)"
  rm -rf "$stage_root"
  mkdir -p "$stage"/{bin,lib/fallback,tools,benchmarks}
  local lib
  lib="$(find "$build_dir" -maxdepth 2 -name 'libtandem.so.*.*' -type f | head -n 1)"
  [[ -n $lib ]] || fail "no libtandem.so in $build_dir"
  stage_elf "$lib" "$stage/lib" '$ORIGIN'
  # The soname link the binaries ask for.
  local soname
  soname="$(patchelf --print-soname "$stage/lib/$(basename "$lib")")"
  [[ $soname == "$(basename "$lib")" ]] || ln -sf "$(basename "$lib")" "$stage/lib/$soname"
  local bins=() b
  mapfile -t bins < <(find "$build_dir/tests" "$build_dir/benchmarks" "$build_dir/examples" "$build_dir/tools" \
    -maxdepth 1 -type f -perm -u+x \( -name 'tandem_test_*' -o -name 'tandem_bench_*' \
    -o -name 'tandem_example_*' -o -name 'tandem_demo' -o -name 'tandem_gpu_probe' -o -name 'tandem' \) 2>/dev/null | sort)
  [[ ${#bins[@]} -gt 0 ]] || fail "no test, benchmark or example binaries in $build_dir"
  for b in "${bins[@]}"; do stage_elf "$b" "$stage/bin" '$ORIGIN/../lib'; done
  [[ -x $stage/bin/tandem_gpu_probe ]] || fail "tandem_gpu_probe was not built (tools/CMakeLists.txt)"
  say "stage: ${#bins[@]} programs and $(basename "$lib")"

  # Every library they need that the GPU machine may lack, followed to the end
  # (a packed library's own needs too).
  local changed=1 elf dep path base
  while [[ $changed -eq 1 ]]; do
    changed=0
    for elf in "$stage"/bin/* "$stage"/lib/*.so*; do
      [[ -f $elf && ! -L $elf ]] || continue
      while read -r dep _ path _; do
        base="$(basename "$dep")"
        [[ $base =~ $glibc_re || $base =~ $cuda_lib_re || $base == libtandem.so* ]] && continue
        [[ -e $stage/lib/$base || -e $stage/lib/fallback/$base ]] && continue
        [[ -n $path && $path != "not" && -f $path ]] || fail "$(basename "$elf") needs $base, which is not found here"
        if [[ $base =~ $fallback_re ]]; then
          cp -L "$path" "$stage/lib/fallback/$base"
        else
          stage_elf "$path" "$stage/lib" '$ORIGIN'
          [[ $(basename "$path") == "$base" ]] || mv "$stage/lib/$(basename "$path")" "$stage/lib/$base"
        fi
        say "stage: + $base (from $path)"
        changed=1
      done < <(ldd "$elf" 2>/dev/null | awk '/=>/ {print $1, $2, $3, $4}')
    done
  done

  cp "$root/tools/gpu-bundle-run.sh" "$stage/run.sh"
  chmod +x "$stage/run.sh"
  cp "$root/tools/gpu-lib.sh" "$root/tools/gpu_report.py" "$stage/tools/"
  find "$root/benchmarks" -maxdepth 1 -name '*.py' -exec cp {} "$stage/benchmarks/" \;
  # Test fixtures the test programs read at run time (TANDEM_TEST_SOURCE_DIR).
  mkdir -p "$stage/tests"
  cp -r "$root/tests/data" "$stage/tests/"
  cp "$root/tests/safetensors_ref.py" "$root/tests/expected_skips.h" "$stage/tests/"
  if [[ -n $cifar10 ]]; then
    mkdir -p "$stage/data"
    cp "$cifar10" "$stage/data/"
    say "stage: + data/$(basename "$cifar10") ($(du -h "$cifar10" | cut -f1))"
  fi
  write_ctest_list
  write_manifest
}

# The tests that are not GoogleTest binaries (the examples' smoke runs), as
# "name<TAB>program<TAB>arguments..." with build-tree paths made relative.
write_ctest_list() {
  local json="$stage_root/ctest.json"
  (cd "$build_dir" && ctest --show-only=json-v1) >"$json" 2>/dev/null ||
    fail "ctest --show-only failed in $build_dir"
  python3 - "$json" "$build_dir" "$stage/bin" >"$stage/tests.tsv" <<'PY'
import json, os, sys
data = json.load(open(sys.argv[1]))
build, bindir = sys.argv[2], sys.argv[3]
for t in data.get("tests", []):
    cmd = t.get("command") or []
    if not cmd:
        continue
    prog = os.path.basename(cmd[0])
    # gtest cases run per binary; only programs packed in bin/ can run there.
    if prog.startswith("tandem_test_") or not os.path.exists(os.path.join(bindir, prog)):
        continue
    # Build-tree paths (output files) become files in a scratch folder there.
    args = ["@SCRATCH@/" + os.path.basename(a) if a.startswith(build) else a for a in cmd[1:]]
    print("\t".join([t["name"], prog] + args))
PY
  say "stage: $(wc -l <"$stage/tests.tsv") non-gtest tests listed in tests.tsv"
}

write_manifest() {
  local commit
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [[ $commit != unknown && -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then
    commit="$commit (with uncommitted changes)"
  fi
  cache() { sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt" | head -n 1; }
  local cudnn_h
  cudnn_h="$(cache TANDEM_CUDNN_INCLUDE_DIR)/cudnn_version.h"
  ver() { sed -n "s/^#define $1  *\([0-9][0-9]*\).*/\1/p" "$cudnn_h" | head -n 1; }
  {
    printf 'commit\t%s\n' "$commit"
    printf 'built\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'built_on\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
    printf 'cuda_architectures\t%s\n' "$(cache CMAKE_CUDA_ARCHITECTURES)"
    printf 'cuda_compiler\t%s\n' "$(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")/nvcc \1/p' \
      "$build_dir"/CMakeFiles/*/CMakeCUDACompiler.cmake 2>/dev/null | head -n 1)"
    printf 'cudnn_headers\t%s.%s.%s\n' "$(ver CUDNN_MAJOR)" "$(ver CUDNN_MINOR)" "$(ver CUDNN_PATCHLEVEL)"
    printf 'build_type\t%s\n' "$(cache CMAKE_BUILD_TYPE)"
    printf 'libstdcxx\t%s\n' "$(strings "$stage"/lib/fallback/libstdc++.so.6 2>/dev/null | grep -o '^GLIBCXX_[0-9.]*' | sort -V | tail -n 1)"
  } >"$stage/MANIFEST"
  (cd "$stage" && find . -type f -printf '%s\t%p\n' | sort -k2) >>"$stage/MANIFEST.files"
}

# Every packed ELF file, resolved with only the bundle and CUDA on the library
# path: missing libraries fail, and so does one found outside the bundle that
# is neither glibc's nor CUDA's.
step_check() {
  say "check: ldd with only the bundle and CUDA's libraries"
  local cuda_dirs=/usr/local/cuda/lib64:/usr/local/cuda/lib:/usr/local/cuda/targets/x86_64-linux/lib
  local bad=0 elf line base path
  for elf in "$stage"/bin/* "$stage"/lib/*.so*; do
    [[ -f $elf && ! -L $elf ]] || continue
    while read -r line; do
      base="$(awk '{print $1}' <<<"$line")"
      path="$(awk '{print $3}' <<<"$line")"
      if [[ $line == *"not found"* ]]; then
        echo "  $(basename "$elf"): $base not found" >&2
        bad=1
      elif [[ $path == "$stage"/* || $(basename "$base") =~ $glibc_re || $(basename "$base") =~ $cuda_lib_re ]]; then
        :
      elif [[ $(basename "$base") =~ $fallback_re ]]; then
        :  # the machine's own C++ runtime, or lib/fallback (run.sh decides)
      else
        echo "  $(basename "$elf"): $base comes from $path, outside the bundle" >&2
        bad=1
      fi
    done < <(env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$cuda_dirs" ldd "$elf" 2>&1 | grep '=>')
  done
  [[ $bad -eq 0 ]] || fail "the bundle is not self-contained (above)"
}

step_pack() {
  mkdir -p "$out_dir"
  rm -f "$archive"
  say "pack: $archive"
  tar -C "$stage_root" -cf - "$name" | xz -T"$jobs" -6 >"$archive"
  local bytes limit
  bytes="$(stat -c %s "$archive")"
  limit=$((max_mib * 1024 * 1024))
  say "pack: $((bytes / 1024 / 1024)) MiB ($bytes bytes), limit $max_mib MiB;" \
    "unpacked $(du -sm "$stage" | cut -f1) MiB"
  ((bytes <= limit)) || fail "the archive is over the limit of $max_mib MiB"
}

step_build
step_stage
step_check
step_pack
say "done: $archive"
say "device call: see docs/gpu-runs.md (carry build/gpu-bundle, run run.sh --budget SECONDS)"
