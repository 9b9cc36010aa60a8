"""`gpu.py bundle`: builds here, without a GPU, one self-contained archive that
checks tandem on a GPU machine that has a driver and CUDA's libraries but no
toolchain for us (no OpenBLAS, GoogleTest, Google Benchmark, apt or internet).

  build  cmake --preset ci (Release, CUDA, sm_90: H100/H200) in build/ci
  stage  every test, benchmark and example binary, tandem_demo, tandem, the
         version probe and libtandem.so, stripped, RUNPATH $ORIGIN/../lib; every
         library they need that is neither glibc's nor CUDA's (followed to the
         end); libstdc++ and libgcc_s in lib/fallback (used only when the
         machine's own are older); run.sh, tools/gpu/*.py, benchmarks/*.py, the
         tests' fixtures, tests.tsv (the non-gtest tests) and MANIFEST
  check  ldd of every packed ELF file with only the bundle and CUDA's folders on
         the library path: nothing missing, nothing from elsewhere but glibc/CUDA
  pack   OUT/tandem-gpu-bundle.tar.xz, at most --max-mib MiB"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

from steps import ROOT, file_match, git_commit

NAME = "tandem-gpu-bundle"
# CUDA's own libraries come from the GPU machine (its toolkit or the nvidia-*
# Python wheels), never from the bundle: they must match its driver.
CUDA_LIB = re.compile(r"^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc[a-z-]*|nvJitLink|"
                      r"curand|cusparse|cufft|nvidia-ml)\.so")
# glibc's libraries: every Linux machine has its own.
GLIBC = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|ld-linux-x86-64|"
                   r"linux-vdso)\.so")
# The C++ runtime: packed, but used only when the machine's own is older.
FALLBACK = re.compile(r"^(libstdc\+\+|libgcc_s)\.so")
PROGRAMS = ("tandem_test_*", "tandem_bench_*", "tandem_example_*", "tandem_demo",
            "tandem_gpu_probe", "tandem")
RUN_SH = """#!/bin/sh
# The tandem GPU bundle's entry point: `run.sh --help` lists the options.
exec python3 "$(dirname "$0")/tools/gpu/gpu.py" run "$@"
"""


class Failed(Exception):
    pass


def say(msg):
    print(f"gpu-bundle: {msg}", flush=True)


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, **kw)


def cache(build_dir, key):
    return file_match(rf"^{re.escape(key)}:[A-Z]*=(.*)$", os.path.join(build_dir, "CMakeCache.txt"))


def stage_elf(src, dest_dir, runpath):
    """Copies src into dest_dir, strips it and sets its RUNPATH."""
    f = os.path.join(dest_dir, os.path.basename(src))
    shutil.copyfile(src, f)
    shutil.copymode(src, f)
    os.chmod(f, os.stat(f).st_mode | 0o200)
    if subprocess.run(["strip", "--strip-unneeded", f], stderr=subprocess.DEVNULL).returncode:
        sh("strip", f)
    sh("patchelf", "--set-rpath", runpath, f)
    return f


def ldd_deps(elf, env=None):
    """[(name, path or None, line)] of ldd's lines with '=>'."""
    p = subprocess.run(["ldd", elf], capture_output=True, text=True, env=env)
    deps = []
    for ln in (p.stdout + p.stderr).splitlines():
        if "=>" in ln:
            f = ln.split()
            path = f[2] if len(f) > 2 and f[2] != "not" else None
            deps.append((f[0], path, ln))
    return deps


def packed_elves(stage):
    return [f for f in sorted(glob.glob(f"{stage}/bin/*") + glob.glob(f"{stage}/lib/*.so*"))
            if os.path.isfile(f) and not os.path.islink(f)]


def stage_tree(args, stage):
    build = args.build_dir
    say(f"stage: {stage}")
    if not os.path.exists(f"{build}/CMakeCache.txt"):
        raise Failed(f"{build} is not a CMake build directory")
    with open(f"{build}/include/tandem/config.h") as f:
        if "TANDEM_WITH_CUDA 1" not in f.read():
            raise Failed(f"{build} was built without the CUDA backend")
    arch = cache(build, "CMAKE_CUDA_ARCHITECTURES")
    if not {"90", "90-real", "90a"} & set(arch.split(";")):
        raise Failed(f"{build} is built for CUDA architectures '{arch}', not sm_90 (Hopper)")
    shutil.rmtree(os.path.dirname(stage), ignore_errors=True)
    for d in ("bin", "lib/fallback", "tools/gpu", "benchmarks", "tests"):
        os.makedirs(f"{stage}/{d}")
    libs = [p for p in glob.glob(f"{build}/libtandem.so.*.*") + glob.glob(
        f"{build}/*/libtandem.so.*.*") if os.path.isfile(p) and not os.path.islink(p)]
    if not libs:
        raise Failed(f"no libtandem.so in {build}")
    lib = stage_elf(libs[0], f"{stage}/lib", "$ORIGIN")
    # The soname link the binaries ask for.
    soname = sh("patchelf", "--print-soname", lib, capture_output=True, text=True).stdout.strip()
    if soname != os.path.basename(lib):
        os.symlink(os.path.basename(lib), f"{stage}/lib/{soname}")
    bins = sorted(p for d in ("tests", "benchmarks", "examples", "tools") for pat in PROGRAMS
                  for p in glob.glob(f"{build}/{d}/{pat}")
                  if os.path.isfile(p) and os.access(p, os.X_OK))
    if not bins:
        raise Failed(f"no test, benchmark or example binaries in {build}")
    for b in bins:
        stage_elf(b, f"{stage}/bin", "$ORIGIN/../lib")
    if not os.access(f"{stage}/bin/tandem_gpu_probe", os.X_OK):
        raise Failed("tandem_gpu_probe was not built (tools/CMakeLists.txt)")
    say(f"stage: {len(bins)} programs and {os.path.basename(lib)}")

    # Every library they need that the GPU machine may lack, followed to the end
    # (a packed library's own needs too).
    changed = True
    while changed:
        changed = False
        for elf in packed_elves(stage):
            for dep, path, _ in ldd_deps(elf):
                base = os.path.basename(dep)
                if GLIBC.match(base) or CUDA_LIB.match(base) or base.startswith("libtandem.so"):
                    continue
                if os.path.exists(f"{stage}/lib/{base}") or \
                        os.path.exists(f"{stage}/lib/fallback/{base}"):
                    continue
                if not path or not os.path.isfile(path):
                    raise Failed(f"{os.path.basename(elf)} needs {base}, which is not found here")
                if FALLBACK.match(base):
                    shutil.copyfile(path, f"{stage}/lib/fallback/{base}")
                else:
                    f = stage_elf(path, f"{stage}/lib", "$ORIGIN")
                    os.rename(f, f"{stage}/lib/{base}")
                say(f"stage: + {base} (from {path})")
                changed = True

    with open(f"{stage}/run.sh", "w") as f:
        f.write(RUN_SH)
    os.chmod(f"{stage}/run.sh", 0o755)
    for p in glob.glob(f"{ROOT}/tools/gpu/*.py"):
        shutil.copy(p, f"{stage}/tools/gpu/")
    for p in glob.glob(f"{ROOT}/benchmarks/*.py"):
        shutil.copy(p, f"{stage}/benchmarks/")
    # Test fixtures the test programs read at run time (TANDEM_TEST_SOURCE_DIR).
    shutil.copytree(f"{ROOT}/tests/data", f"{stage}/tests/data")
    for p in ("safetensors_ref.py", "expected_skips.h"):
        shutil.copy(f"{ROOT}/tests/{p}", f"{stage}/tests/")
    if args.cifar10:
        os.makedirs(f"{stage}/data")
        shutil.copy(args.cifar10, f"{stage}/data/")
        say(f"stage: + data/{os.path.basename(args.cifar10)} "
            f"({os.path.getsize(args.cifar10) // 2**20} MiB)")
    write_ctest_list(build, stage)
    write_manifest(build, stage)


def write_ctest_list(build, stage):
    """The tests that are not GoogleTest binaries (the examples' smoke runs), as
    name<TAB>program<TAB>arguments..., build-tree paths made @SCRATCH@ files."""
    p = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build, capture_output=True, text=True)
    if p.returncode:
        raise Failed(f"ctest --show-only failed in {build}")
    rows = []
    for t in json.loads(p.stdout).get("tests", []):
        cmd = t.get("command") or []
        prog = os.path.basename(cmd[0]) if cmd else ""
        # gtest cases run per binary; only programs packed in bin/ can run there.
        if not cmd or prog.startswith("tandem_test_") or not os.path.exists(f"{stage}/bin/{prog}"):
            continue
        args = ["@SCRATCH@/" + os.path.basename(a) if a.startswith(build) else a for a in cmd[1:]]
        rows.append("\t".join([t["name"], prog] + args) + "\n")
    with open(f"{stage}/tests.tsv", "w") as f:
        f.writelines(rows)
    say(f"stage: {len(rows)} non-gtest tests listed in tests.tsv")


def write_manifest(build, stage):
    cudnn_h = os.path.join(cache(build, "TANDEM_CUDNN_INCLUDE_DIR"), "cudnn_version.h")
    compilers = glob.glob(f"{build}/CMakeFiles/*/CMakeCUDACompiler.cmake")
    nvcc = file_match(r'^set\(CMAKE_CUDA_COMPILER_VERSION "(.*)"\)', compilers[0]) if compilers else ""
    # The newest C++ runtime version the packed libstdc++ provides.
    glibcxx = re.findall(r"\x00GLIBCXX_([0-9][0-9.]*)\x00",
                         file_match(r"(.*)", f"{stage}/lib/fallback/libstdc++.so.6", re.S))
    rows = [("commit", git_commit(ROOT, ["--untracked-files=no"])),
            ("built", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            ("built_on", file_match(r'^PRETTY_NAME="?([^"\n]*)', "/etc/os-release")),
            ("cuda_architectures", cache(build, "CMAKE_CUDA_ARCHITECTURES")),
            ("cuda_compiler", f"nvcc {nvcc}" if nvcc else ""),
            ("cudnn_headers", ".".join(file_match(rf"^#define {n}  *([0-9]+)", cudnn_h) for n in (
                "CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL"))),
            ("build_type", cache(build, "CMAKE_BUILD_TYPE")),
            ("libstdcxx", "GLIBCXX_" + max(glibcxx, key=lambda v: [int(x) for x in v.split(".")
                                                                   if x]) if glibcxx else "")]
    with open(f"{stage}/MANIFEST", "w") as f:
        f.writelines(f"{k}\t{v}\n" for k, v in rows)
    files = sorted(os.path.relpath(os.path.join(d, n), stage) for d, _, ns in os.walk(stage)
                   for n in ns if not os.path.islink(os.path.join(d, n)))
    with open(f"{stage}/MANIFEST.files", "w") as f:
        f.writelines(f"{os.path.getsize(os.path.join(stage, p))}\t./{p}\n" for p in files)


def check(stage):
    """Every packed ELF file resolved with only the bundle and CUDA on the library
    path: a missing library fails, and so does one found outside the bundle that
    is neither glibc's nor CUDA's."""
    say("check: ldd with only the bundle and CUDA's libraries")
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/usr/local/cuda/lib64:/usr/local/cuda/lib:"
           "/usr/local/cuda/targets/x86_64-linux/lib"}
    bad = False
    for elf in packed_elves(stage):
        for dep, path, line in ldd_deps(elf, env):
            base = os.path.basename(dep)
            if "not found" in line:
                print(f"  {os.path.basename(elf)}: {dep} not found", file=sys.stderr)
                bad = True
            elif not (path and path.startswith(stage + "/") or GLIBC.match(base) or
                      CUDA_LIB.match(base) or FALLBACK.match(base)):
                # (the C++ runtime: the machine's own or lib/fallback; run.sh decides)
                print(f"  {os.path.basename(elf)}: {dep} comes from {path}, outside the bundle",
                      file=sys.stderr)
                bad = True
    if bad:
        raise Failed("the bundle is not self-contained (above)")


def pack(args, stage, archive):
    os.makedirs(args.out, exist_ok=True)
    if os.path.exists(archive):
        os.remove(archive)
    say(f"pack: {archive}")
    with open(archive, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", os.path.dirname(stage), "-cf", "-", NAME],
                               stdout=subprocess.PIPE)
        xz = subprocess.run(["xz", f"-T{args.jobs}", "-6"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        if tar.wait() or xz.returncode:
            raise Failed("tar | xz failed")
    size = os.path.getsize(archive)
    unpacked = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(stage) for n in ns
                   if not os.path.islink(os.path.join(d, n)))
    say(f"pack: {size // 2**20} MiB ({size} bytes), limit {args.max_mib} MiB; unpacked "
        f"{unpacked // 2**20} MiB")
    if size > args.max_mib * 2**20:
        raise Failed(f"the archive is over the limit of {args.max_mib} MiB")


def main(args):
    """args: gpu.py bundle's options; returns the exit status."""
    args.build_dir = os.path.realpath(args.build_dir or f"{ROOT}/build/ci")
    args.out = os.path.realpath(args.out or f"{ROOT}/build/gpu-bundle")
    stage = f"{args.out}-stage/{NAME}"  # outside out: the device call carries out alone
    archive = f"{args.out}/{NAME}.tar.xz"
    try:
        for tool in ("patchelf", "xz", "strip", "ldd", "tar"):
            if not shutil.which(tool):
                raise Failed(f"'{tool}' not found (tools/setup.sh installs it)")
        if not args.skip_build:
            say("build: cmake --preset ci (build/ci, sm_90)")
            if args.build_dir != os.path.realpath(f"{ROOT}/build/ci"):
                raise Failed("--build-dir without --skip-build: only the ci preset (build/ci) "
                             "is built here")
            sh("cmake", "--preset", "ci", cwd=ROOT, stdout=subprocess.DEVNULL)
            sh("cmake", "--build", "--preset", "ci", "-j", str(args.jobs), cwd=ROOT)
        stage_tree(args, stage)
        check(stage)
        pack(args, stage, archive)
    except (Failed, subprocess.CalledProcessError, OSError) as e:
        print(f"gpu-bundle: FAILED: {e}", file=sys.stderr)
        return 1
    say(f"done: {archive}")
    say("device call: see docs/gpu-runs.md (carry build/gpu-bundle, run run.sh --budget SECONDS)")
    return 0
