"""`gpu.py check`: the whole GPU check on a machine with a GPU and a toolchain.

steps (each prints the exact commands it runs):
  info       GPU name, driver, CUDA runtime/toolkit, cuBLAS, cuDNN versions
             (nvidia-smi, nvcc and the version probe compiled with nvcc);
             without a usable GPU it says so and exits 2 right here
  build      configure + build build/gpu-check for this GPU's architecture
             (TANDEM_CUDA=ON, CMAKE_CUDA_ARCHITECTURES from nvidia-smi's
             compute_cap), then where libtandem.so's CUDA libraries come from
  tests      ctest over the whole suite with TANDEM_REQUIRE_CUDA=1; fails on any
             failed or skipped test (except GPU_CHECK_ALLOWED_SKIPS)
  sanitizer  compute-sanitizer memcheck over the GPU test cases, racecheck and
             synccheck over the custom-kernel test cases; any report fails
  bench      every tandem_bench_* in <build>/benchmarks, JSON into the report
  report     <report>/gpu-report.md and .json from whatever the report
             directory holds (earlier partial runs included)

environment (time limits in seconds):
  GPU_CHECK_TIMEOUT_BUILD=3600      configure + build
  GPU_CHECK_TIMEOUT_TESTS=1800      the whole ctest run
  GPU_CHECK_TIMEOUT_SANITIZER=900   one compute-sanitizer run (one binary, one tool)
  GPU_CHECK_SANITIZER_BUDGET=2400   all sanitizer runs together; runs that no
                                    longer fit are reported as not run (a failure)
  GPU_CHECK_TIMEOUT_BENCH=900       one benchmark binary
  GPU_CHECK_BENCH_ARGS              extra Google Benchmark flags for every binary
  GPU_CHECK_CUDA_ARCH               override the detected CMAKE_CUDA_ARCHITECTURES
  GPU_CHECK_CMAKE_ARGS              extra configure arguments (split on spaces)
  GPU_CHECK_ALLOWED_SKIPS           regex of tests allowed to skip on a GPU (default:
                                    the CudaPresent entries of tests/expected_skips.h)
  GPU_CHECK_SANITIZER_EXCLUDE       gtest patterns left out of every sanitizer run
                                    (default *OutOfMemory*: its failing cudaMalloc is
                                    an API error to the sanitizer)
  CUDA_HOME (default /usr/local/cuda), CUDNN_ROOT (a cuDNN outside the toolkit)"""

import glob
import os
import re
import shutil
import sys
import time

from steps import ROOT, TIMED_OUT, Harness, execute, file_match, git_commit, output, show_cmd

LIB_LINES = r"cudart|cublas|cudnn|libcuda\.|openblas|gomp|not found"


def cache_value(build_dir, key):
    """A value from the build's CMakeCache.txt, or ""."""
    return file_match(rf"^{re.escape(key)}:[A-Z]*=(.*)$", os.path.join(build_dir, "CMakeCache.txt"))


def find_cudnn(cuda_home):
    """(include dir, library) of cuDNN: CUDNN_ROOT, the toolkit's, the system's or
    a pip wheel's (nvidia-cudnn-cu13, next to PyTorch); (None, None) if none."""
    dirs = [os.environ["CUDNN_ROOT"]] if os.environ.get("CUDNN_ROOT") else []
    dirs += [cuda_home, "/usr", "/usr/local"]
    rc, wheel = output([sys.executable, "-c", "import nvidia.cudnn as m; print(list(m.__path__)[0])"])
    if rc == 0 and wheel.strip():
        dirs.append(wheel.strip())
    for d in dirs:
        inc = next((i for i in (f"{d}/include", f"{d}/include/x86_64-linux-gnu")
                    if os.path.isfile(f"{i}/cudnn.h")), None)
        lib = None
        for ld in (f"{d}/lib64", f"{d}/lib", f"{d}/lib/x86_64-linux-gnu",
                   f"{d}/targets/x86_64-linux/lib"):
            cands = [f"{ld}/libcudnn.so"] if os.path.exists(f"{ld}/libcudnn.so") else \
                sorted(glob.glob(f"{ld}/libcudnn.so.[0-9]*"))
            if cands:
                lib = cands[0]
                break
        if inc and lib:
            return inc, lib
    return None, None


def header_version(path, *names):
    """One define's value (CUDART_VERSION), or for (major, minor, patch) defines
    major*10000 + minor*100 + patch; None when the header lacks them."""
    v = [file_match(rf"^#define {n}  *([0-9]+)", path) for n in names]
    if not v[0] or (len(v) > 1 and not v[1]):
        return None
    return int(v[0]) if len(v) == 1 else int(v[0]) * 10000 + int(v[1]) * 100 + int(v[2] or 0)


def info(h, build_dir):
    h.section("info: device, driver, toolkit and library versions")
    start = time.monotonic()
    h.init(ROOT, git_commit(ROOT))
    h.find_cuda_tools()
    h.smi_info()
    inc, lib = find_cudnn(h.cuda_home)
    print(f"cuDNN: headers {inc}, library {lib}" if lib else "cuDNN: not found (set CUDNN_ROOT)")
    h.put("cudnn_library_found", lib or "not found")
    # The version probe, compiled with nvcc against the shared runtime: versions the
    # headers were built with and the versions the loaded libraries report.
    if h.nvcc:
        probe = os.path.join(build_dir, "gpu-check-probe", "probe")
        os.makedirs(os.path.dirname(probe), exist_ok=True)
        cmd = [h.nvcc, "-O1", "-std=c++17", "-cudart", "shared", "-o", probe,
               os.path.join(ROOT, "tools", "gpu", "probe.cpp"), "-lcublas"]
        if lib:
            cmd += ["-DPROBE_CUDNN", f"-I{inc}", lib, "-Xlinker",
                    f"-rpath={os.path.dirname(lib)}"]
        print(show_cmd(cmd))
        if execute(cmd, 300) == 0:
            h.run_probe(probe)
        else:
            h.warn("the version probe did not compile; library versions are taken from the "
                   "headers only")
    if not h.probe_ok:  # at least the versions the headers declare
        inc_dir = os.path.join(h.cuda_home, "include")
        for key, v in (
                ("cublas_header", header_version(f"{inc_dir}/cublas_api.h", "CUBLAS_VER_MAJOR",
                                                 "CUBLAS_VER_MINOR", "CUBLAS_VER_PATCH")),
                ("cudart_header", header_version(f"{inc_dir}/cuda_runtime_api.h", "CUDART_VERSION")),
                ("cudnn_header", inc and header_version(f"{inc}/cudnn_version.h", "CUDNN_MAJOR",
                                                        "CUDNN_MINOR", "CUDNN_PATCHLEVEL"))):
            if v:
                h.put(key, v)
    h.finish_info(start)
    return inc, lib


def show_libraries(h, build_dir):
    """Where libtandem.so's libraries come from (ldd) into the console and
    device.tsv; False when it is missing or a library is not found."""
    libs = sorted(p for p in glob.glob(f"{build_dir}/libtandem.so*") +
                  glob.glob(f"{build_dir}/*/libtandem.so*") if not os.path.islink(p))
    if not libs:
        print(f"libtandem.so: not found under {build_dir}")
        return False
    c = lambda k: cache_value(build_dir, k)  # noqa: E731
    print(f"build: {build_dir}")
    print(f"  CMAKE_BUILD_TYPE={c('CMAKE_BUILD_TYPE')}  TANDEM_CUDA={c('TANDEM_CUDA')}  "
          f"CMAKE_CUDA_ARCHITECTURES={c('CMAKE_CUDA_ARCHITECTURES')}")
    print(f"  CMAKE_CUDA_COMPILER={c('CMAKE_CUDA_COMPILER')}")
    print(f"  TANDEM_CUDNN_LIBRARY={c('TANDEM_CUDNN_LIBRARY')}")
    print(f"libraries {libs[0]} loads (ldd):")
    print(show_cmd(["ldd", libs[0]]))
    h.put("build_dir", build_dir)
    h.put("build_type", c("CMAKE_BUILD_TYPE"))
    h.put("cuda_architectures", c("CMAKE_CUDA_ARCHITECTURES"))
    out = h.libraries(libs[0], LIB_LINES, ("cudart", "cublas", "cublasLt", "cudnn", "openblas"))
    if "not found" in out:
        h.warn("libtandem.so has libraries the loader cannot find (above)")
        return False
    return True


def build(h, build_dir, jobs, timeout, cudnn):
    h.section(f"build: {build_dir} (TANDEM_CUDA=ON)")
    start = time.monotonic()
    if not shutil.which("cmake"):
        h.fail_tool("cmake", "install CMake 3.24 or newer")
    log = os.path.join(h.dir, "build.log")
    open(log, "w").close()
    arch = os.environ.get("GPU_CHECK_CUDA_ARCH") or ";".join(h.compute_caps) or "native"
    cmd = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", "-DTANDEM_CUDA=ON",
           f"-DCMAKE_CUDA_ARCHITECTURES={arch}", "-DTANDEM_BUILD_TESTS=ON",
           "-DTANDEM_BUILD_BENCHMARKS=ON", "-DTANDEM_BUILD_TOOLS=ON"]
    if not os.path.exists(f"{build_dir}/CMakeCache.txt") and shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    if h.nvcc:
        cmd.append(f"-DCMAKE_CUDA_COMPILER={h.nvcc}")
    inc, lib = cudnn
    # A cuDNN outside the toolkit (CUDNN_ROOT, a pip wheel) is named explicitly.
    if lib and not os.path.dirname(lib).startswith(os.path.join(h.cuda_home, "lib")):
        cmd += [f"-DTANDEM_CUDNN_LIBRARY={lib}", f"-DTANDEM_CUDNN_INCLUDE_DIR={inc}"]
    cmd += os.environ.get("GPU_CHECK_CMAKE_ARGS", "").split()
    status, detail = "PASS", f"architectures {arch}"
    if h.run_logged(log, timeout, cmd):
        status, detail = "FAIL", f"configure failed (log: {log})"
    else:
        left = max(1, int(timeout - (time.monotonic() - start)))
        if h.run_logged(log, left, ["cmake", "--build", build_dir, "-j", str(jobs)]):
            status, detail = "FAIL", f"build failed or timed out (log: {log})"
    if status == "PASS" and not show_libraries(h, build_dir):
        status, detail = "FAIL", "libtandem.so missing or its libraries not found"
    h.finish_step("build", status, detail, start)
    return status == "PASS"


def existing_build(h, build_dir):
    h.section(f"build: using the existing build {build_dir}")
    start = time.monotonic()
    if not os.path.exists(f"{build_dir}/CMakeCache.txt"):
        print(f"gpu-check: {build_dir} is not a CMake build directory (no CMakeCache.txt)",
              file=sys.stderr)
        h.finish_step("build", "FAIL", f"no build at {build_dir}", start)
        return False
    if not file_match(r"(TANDEM_WITH_CUDA 1)", f"{build_dir}/include/tandem/config.h"):
        h.warn(f"{build_dir} was built without the CUDA backend: every GPU test will fail")
    made_in = cache_value(build_dir, "CMAKE_CACHEFILE_DIR")
    if made_in and os.path.realpath(made_in) != build_dir:
        h.warn(f"{build_dir} was configured in {made_in}: ctest's files name that path; the "
               "binaries find libtandem.so here through LD_LIBRARY_PATH")
        libs = glob.glob(f"{build_dir}/libtandem.so*") + glob.glob(f"{build_dir}/*/libtandem.so*")
        if libs:
            os.environ["LD_LIBRARY_PATH"] = ":".join(
                [os.path.dirname(libs[0])] + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p])
    if show_libraries(h, build_dir):
        h.finish_step("build", "PASS", f"existing build {build_dir}, not rebuilt", start)
        return True
    h.finish_step("build", "FAIL", f"existing build {build_dir}: libtandem.so missing or its "
                  "libraries not found", start)
    return False


def tests(h, build_dir, jobs, timeout):
    h.section(f"tests: ctest in {build_dir} with TANDEM_REQUIRE_CUDA=1")
    start = time.monotonic()
    if not shutil.which("ctest"):
        h.fail_tool("ctest", "install CMake")
    log, junit = os.path.join(h.dir, "ctest.log"), os.path.join(h.dir, "ctest-junit.xml")
    open(log, "w").close()
    if os.path.exists(junit):
        os.remove(junit)
    rc = h.run_logged(log, timeout, [
        "ctest", "--test-dir", build_dir, "-j", str(jobs), "--output-on-failure",
        "--no-tests=error", "--output-junit", junit],
        env=dict(os.environ, TANDEM_REQUIRE_CUDA="1"))
    extra = f"TIMED OUT after {timeout} s" if rc in TIMED_OUT else \
        f"ctest exit status {rc}" if rc else ""
    if os.path.exists(junit):
        h.tests_result("tests", start, extra, [junit])
    else:
        h.finish_step("tests", "FAIL", "ctest wrote no JUnit file" + (f"; {extra}" if extra else ""),
                      start)


def main(args, timeouts):
    """args: gpu.py check's options; timeouts: the GPU_CHECK_* limits in seconds."""
    if args.build_dir:
        args.skip_build = True
    build_dir = os.path.realpath(args.build_dir or os.path.join(ROOT, "build", "gpu-check"))
    report_dir = os.path.realpath(args.report_dir or os.path.join(build_dir, "report"))
    todo = args.steps
    h = Harness("gpu-check", report_dir, args.quick)
    cudnn = info(h, build_dir)
    if "build" in todo and not args.skip_build:
        ok = build(h, build_dir, args.jobs, timeouts["build"], cudnn)
        if not ok:
            h.warn("no usable build: tests, sanitizer and benchmarks are not run")
    else:
        ok = existing_build(h, build_dir)
    if ok and "tests" in todo:
        tests(h, build_dir, args.jobs, timeouts["tests"])
    if ok and "sanitizer" in todo:
        h.sanitizer_step(os.path.join(build_dir, "tests"), timeouts["sanitizer_budget"],
                         timeouts["sanitizer"])
    if ok and "bench" in todo:
        # No overall budget here: each binary has its own limit.
        h.bench_step(os.path.join(build_dir, "benchmarks"), 1000000, timeouts["bench"],
                     os.environ.get("GPU_CHECK_BENCH_ARGS", "").split())
    return h.report_and_summary(["build", "tests", "sanitizer", "bench"])
