"""`gpu.py run` (the bundle's run.sh): checks the prebuilt tandem on this
machine's GPU within a time budget, building nothing.

steps, in this order, each capped by its share of the budget (what the
budget cuts off is recorded as NOT RUN, never as passed):
  info       nvidia-smi, the version probe (CUDA runtime, driver, cuBLAS, cuDNN:
             compiled-against and loaded), the libraries found; without a
             usable GPU it says so and exits 2 right here
  tests      every GoogleTest binary with TANDEM_REQUIRE_CUDA=1 (a skipped GPU
             test fails) and TANDEM_SYNC_DEBUG=1, in parallel; then the
             examples' smoke runs                                  (40%)
  async      the GPU test cases again without TANDEM_SYNC_DEBUG    (10%)
  sanitizer  compute-sanitizer memcheck over the GPU cases, racecheck and
             synccheck over our kernels' cases                     (25%)
  bench      every benchmark's CUDA cases, short                   (15%)
  train      only with CIFAR-10 in the bundle (bundle --cifar10) or --cifar10:
             `tandem train --model resnet-fast --device cuda` and `tandem bench
             train`, with what the budget has left, at most --train-seconds
  report     gpu-report.md + gpu-report.json

libraries: the bundle's own (lib/), CUDA's from the toolkit (CUDA_HOME,
/usr/local/cuda) and from the nvidia-* Python wheels (cuDNN lives there), the
driver's; lib/fallback (libstdc++, libgcc_s) only when the machine's own C++
runtime is older than the one tandem was built with."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from xml.sax.saxutils import quoteattr

from steps import EXIT_NO_TOOL, GPU_FILTER, ROOT, TIMED_OUT, Harness, execute, output, tsv_value

BUNDLE = ROOT  # run.sh sits at the top of the unpacked bundle, tools/gpu/ below it
RESERVE = 15  # seconds kept for the report

# The nvidia-* wheels (cuDNN, cuBLAS, the runtime) of a Python that has them.
WHEEL_DIRS = r"""
import glob, os, sys
seen = set()
for p in sys.path:
    for lib in sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib")) +
                      glob.glob(os.path.join(p, "nvidia", "cu*", "lib64"))):
        if lib not in seen and glob.glob(os.path.join(lib, "lib*.so*")):
            seen.add(lib)
            print(lib)
"""


def tee_console(path):
    """Sends stdout and stderr, this process's and its children's, through `tee
    path` as well; returns the function that stops it."""
    sys.stdout.flush()
    tee = subprocess.Popen(["tee", path], stdin=subprocess.PIPE)
    saved = os.dup(1), os.dup(2)
    for fd in (1, 2):
        os.dup2(tee.stdin.fileno(), fd)

    def stop():
        sys.stdout.flush()
        for fd in (1, 2):
            os.dup2(saved[fd - 1], fd)
        tee.stdin.close()
        try:
            tee.wait(5)  # (a process left behind may still hold the pipe)
        except subprocess.TimeoutExpired:
            pass

    return stop


def junit_file(path, name, failure=None):
    """A JUnit file of one case: passed, or failed with the message failure."""
    case = (f"<failure message={quoteattr(failure)}/></testcase>" if failure else "</testcase>")
    with open(path, "w") as f:
        f.write(f'<testsuites><testsuite name="bundle"><testcase name={quoteattr(name)} '
                f'classname="" status="run">{case}</testsuite></testsuites>\n')


class BundleRun:
    def __init__(self, args):
        self.args = args
        self.h = Harness("gpu-bundle", args.report_dir, args.quick)
        self.t0 = time.monotonic()
        self.reserve = RESERVE

    def elapsed(self):
        return int(time.monotonic() - self.t0)

    def left(self):
        return self.args.budget - self.elapsed() - self.reserve

    def cap(self, percent):
        """The seconds a step may use: its share of the budget, at most what is left."""
        return min(self.args.budget * percent // 100, self.left())

    def manifest(self, key):
        return tsv_value(os.path.join(BUNDLE, "MANIFEST"), key)

    # ---- step 1: info ----

    def find_libraries(self):
        """LD_LIBRARY_PATH: CUDA's toolkit, the nvidia-* wheels, the driver's; the
        bundle's lib/fallback only when this machine's C++ runtime is older."""
        h = self.h
        h.section("libraries")
        dirs = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64"),
                "/usr/local/cuda/lib64", "/usr/local/cuda/lib",
                "/usr/local/cuda/targets/x86_64-linux/lib"]
        for py in ("python3", "/opt/torch/.venv/bin/python3"):
            if shutil.which(py):
                dirs += output([py, "-c", WHEEL_DIRS])[1].splitlines()  # (an error is no folder)
        dirs += ["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"]
        dirs = [d for i, d in enumerate(dirs) if os.path.isdir(d) and d not in dirs[:i]]
        old = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = ":".join(dirs + ([old] if old else []))
        lib = (glob.glob(os.path.join(BUNDLE, "lib", "libtandem.so.*.*")) or [""])[0]
        if re.search(r"(GLIBCXX|CXXABI|GCC)_[0-9.]+' not found|lib(stdc\+\+|gcc_s)[^ ]* => not found",
                     output(["ldd", lib])[1]):
            print("C++ runtime: this machine's is older than tandem's; using the bundle's "
                  "lib/fallback")
            os.environ["LD_LIBRARY_PATH"] = os.path.join(BUNDLE, "lib", "fallback") + ":" + \
                os.environ["LD_LIBRARY_PATH"]
        else:
            print("C++ runtime: this machine's")
        print(f"LD_LIBRARY_PATH={os.environ['LD_LIBRARY_PATH']}")
        print("libtandem's libraries (ldd):")
        h.put("lib_search_path", os.environ["LD_LIBRARY_PATH"])
        out = h.libraries(lib, r"cudart|cublas|cudnn|libcuda\.|openblas|gomp|stdc\+\+|not found",
                          ("cudart", "cublas", "cublasLt", "cudnn", "openblas", "stdc++"))
        # Every symbol bound now: a cuDNN or cuBLAS older than the headers tandem was
        # built with shows here as an undefined symbol, not as a crash mid-test.
        undefined = [ln for ln in output(["ldd", "-r", lib], env=dict(os.environ, LD_BIND_NOW="1"))[
            1].splitlines() if "undefined symbol" in ln]
        for ln in undefined[:20]:
            print("  " + ln)
        missing = [ln.split()[0] for ln in out.splitlines() if "not found" in ln]
        if undefined:
            missing.append(f"symbols not found: {len(undefined)} (above)")
        if missing:
            for msg in ("libtandem.so needs libraries that are not on this machine (above).",
                        "CUDA's come from CUDA_HOME/lib64 or the nvidia-* Python wheels; set "
                        "CUDA_HOME",
                        "or LD_LIBRARY_PATH to where libcudart.so.13, libcublas.so.13 and "
                        "libcudnn.so.9 are."):
                print(f"{h.name}: {msg}", file=sys.stderr)
            h.finish_step("info", "FAIL", "libraries missing: " + " ".join(missing), self.t0)
            sys.exit(EXIT_NO_TOOL)

    def info(self):
        h = self.h
        h.section(f"info: device, driver, toolkit and library versions (budget "
                  f"{self.args.budget} s)")
        h.init(f"{BUNDLE} (prebuilt bundle, built {self.manifest('built')} on "
               f"{self.manifest('built_on')})", self.manifest("commit"))
        h.put("bundle_cuda_compiler", self.manifest("cuda_compiler"))
        h.put("bundle_cudnn_headers", self.manifest("cudnn_headers"))
        self.find_libraries()
        h.find_cuda_tools()
        h.smi_info()
        h.run_probe(os.path.join(BUNDLE, "bin", "tandem_gpu_probe"))
        # cuDNN older than the headers: tandem calls only cuDNN 9.0's API, so any
        # cuDNN 9 works; say so rather than hide it.
        hdr, rt = h.device("cudnn_header"), h.device("cudnn_runtime")
        if hdr.isdigit() and rt.isdigit() and int(rt) < int(hdr):
            print(f"cuDNN: loaded {rt} is older than the headers ({hdr}) tandem was built with; "
                  "tandem uses only the cuDNN 9.0 API, so any cuDNN 9.x serves (docs/gpu-runs.md)")
            h.put("cudnn_note", f"loaded {rt} older than headers {hdr} (supported: cuDNN 9.0 API "
                  "only)")
        if not h.gpu_ok and self.args.without_gpu:
            print(f"{h.name}: NO GPU ({h.no_gpu_reason}); going on (--without-gpu): GPU tests "
                  "will fail")
            h.put("gpu", f"none (--without-gpu): {h.no_gpu_reason}")
            h.finish_step("info", "NO GPU", f"{h.no_gpu_reason} (--without-gpu)", self.t0)
            return
        h.finish_info(self.t0)

    # ---- the tests ----

    def run_gtests(self, out_dir, limit, gtest_filter, env):
        """Every tandem_test_* (with gtest_filter), up to 8 at once, JUnit XML into
        out_dir; a binary that leaves no results counts as one failed case."""
        os.makedirs(out_dir, exist_ok=True)
        deadline = time.monotonic() + limit
        env = dict(os.environ, **env)

        def one(binary):
            name = os.path.basename(binary)
            xml = os.path.join(out_dir, name + ".xml")
            left = int(deadline - time.monotonic())
            if left < 5:
                return junit_file(xml, f"{name} (NOT RUN: budget)",
                                  "not run: the time budget was used up")
            with open(os.path.join(out_dir, name + ".log"), "w") as log:
                rc = execute([binary, f"--gtest_filter={gtest_filter}",
                              f"--gtest_output=xml:{xml}"], left, env=env, out=log)
            if rc in TIMED_OUT:
                junit_file(xml, f"{name} (TIMED OUT after {left} s)", f"timed out; see {name}.log")
            elif not os.path.exists(xml) or not os.path.getsize(xml):
                junit_file(xml, f"{name} (crashed: exit status {rc})", f"no results; see {name}.log")
            print(f"  {name}: exit status {rc}")

        with ThreadPoolExecutor(max_workers=min(len(os.sched_getaffinity(0)), 8)) as pool:
            list(pool.map(one, sorted(glob.glob(os.path.join(BUNDLE, "bin", "tandem_test_*")))))

    def tests(self):
        limit = self.cap(40)
        if limit < 20:
            return self.h.skip_step("tests", f"the budget left {limit} s")
        self.h.section("tests: every test binary with TANDEM_REQUIRE_CUDA=1 TANDEM_SYNC_DEBUG=1 "
                       f"(cap {limit} s)")
        start = time.monotonic()
        out_dir = os.path.join(self.h.dir, "tests")
        self.run_gtests(out_dir, limit - 10, "*",
                        {"TANDEM_REQUIRE_CUDA": "1", "TANDEM_SYNC_DEBUG": "1"})
        # The examples' smoke runs (tests.tsv: name, program, arguments).
        scratch = os.path.join(self.h.dir, "scratch")
        os.makedirs(scratch, exist_ok=True)
        with open(os.path.join(BUNDLE, "tests.tsv")) as f:
            rows = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
        for name, prog, *args in rows:
            xml = os.path.join(out_dir, f"ex-{name}.xml")
            left = int(limit - (time.monotonic() - start))
            if left < 5:
                junit_file(xml, f"{name} (NOT RUN: budget)", "not run: the time budget was used up")
                continue
            with open(os.path.join(out_dir, f"ex-{name}.log"), "w") as log:
                rc = execute([os.path.join(BUNDLE, "bin", prog)] +
                             [a.replace("@SCRATCH@", scratch) for a in args], left,
                             env=dict(os.environ, TANDEM_REQUIRE_CUDA="1"), out=log)
            print(f"  {name}: exit status {rc}")
            junit_file(xml, name, f"exit status {rc}; see ex-{name}.log" if rc else None)
        self.h.tests_result("tests", start, "", sorted(glob.glob(os.path.join(out_dir, "*.xml"))))
        print_failures(sorted(glob.glob(os.path.join(out_dir, "*.log"))))

    def tests_async(self):
        limit = self.cap(10)
        if limit < 20:
            return self.h.skip_step("tests_async", f"the budget left {limit} s")
        self.h.section(f"async: the GPU test cases without TANDEM_SYNC_DEBUG (cap {limit} s)")
        start = time.monotonic()
        out_dir = os.path.join(self.h.dir, "tests_async")
        self.run_gtests(out_dir, limit, GPU_FILTER,
                        {"TANDEM_REQUIRE_CUDA": "1", "TANDEM_SYNC_DEBUG": "0"})
        self.h.tests_result("tests_async", start, "",
                            sorted(glob.glob(os.path.join(out_dir, "*.xml"))))

    def sanitizer(self):
        limit = self.cap(25)
        if limit < 30:
            return self.h.skip_step("sanitizer", f"the budget left {limit} s")
        self.h.sanitizer_step(os.path.join(BUNDLE, "bin"), limit, limit)

    def bench(self):
        limit = self.cap(15)
        if limit < 20:
            return self.h.skip_step("bench", f"the budget left {limit} s")
        n = len(glob.glob(os.path.join(BUNDLE, "bin", "tandem_bench_*")))
        # A binary may take twice its even share (they differ); each still ends
        # within what the budget has left.
        per = max(20, 2 * limit // max(n, 1))
        # Google Benchmark 1.7 (the bundle's) takes the minimum time in seconds. The
        # device's CPU is not the one the CPU figures are quoted for: CUDA cases and
        # the direct library baselines only, unless --bench-cpu.
        flags = ["--benchmark_min_time=0.05"]
        if not self.args.bench_cpu:
            flags.append("--benchmark_filter=-/cpu/")
        # tandem_bench_ops: one size (16M) per case (TANDEM_BENCH_QUICK).
        self.h.bench_step(os.path.join(BUNDLE, "bin"), limit, per, flags,
                          env=dict(os.environ, TANDEM_BENCH_QUICK="1"))

    def train(self):
        """resnet-fast on the real CIFAR-10 on the GPU (issue 14's 10-epoch run) and
        the CPU-vs-GPU training-step benchmark, when the bundle carries the data."""
        h = self.h
        data = self.args.cifar10 or next(
            (p for p in sorted(glob.glob(os.path.join(BUNDLE, "data", "*"))) if os.path.isfile(p)),
            None)
        if not data:
            print(f"{h.name}: no CIFAR-10 in the bundle and no --cifar10: the train step is left "
                  "out")
            return
        limit = min(self.left(), self.args.train_seconds)
        if limit < 30:
            return h.skip_step("train", f"the budget left {limit} s")
        h.section(f"train: resnet-fast on CIFAR-10 ({data}) on the GPU (cap {limit} s)")
        start = time.monotonic()
        d = os.path.join(h.dir, "train")
        os.makedirs(d, exist_ok=True)
        tandem = os.path.join(BUNDLE, "bin", "tandem")
        rc = h.run_logged(os.path.join(d, "train.log"), limit, [
            tandem, "train", "--model", "resnet-fast", "--device", "cuda", "--data", data,
            "--out", os.path.join(d, "run")], env=dict(os.environ, TANDEM_DATA_DIR=f"{d}/cache"))
        try:
            with open(os.path.join(d, "run", "results.json")) as f:
                detail = "test accuracy %.4f" % json.load(f)["test_accuracy"]
        except (OSError, ValueError, KeyError):
            detail = "no results.json"
        detail += f", {int(time.monotonic() - start)} s with the import"
        if os.path.exists(os.path.join(d, "run", "metrics.csv")):
            shutil.copy(os.path.join(d, "run", "metrics.csv"), d)
        left = self.left()
        if left > 20:
            with open(os.path.join(d, "bench-train.json"), "w") as out:
                execute([tandem, "bench", "train", "--model", "resnet-fast", "--batch-size", "512",
                         "--steps", "10", "--json"], min(left, 60), out=out)
        if rc == 0:
            h.finish_step("train", "PASS", detail, start)
        elif rc in TIMED_OUT:
            h.finish_step("train", "TIMED OUT", f"after {limit} s; {detail}", start)
        else:
            h.finish_step("train", "FAIL", f"exit status {rc}; {detail}", start)

    def copy_out(self, out_dir):
        """gpu-report.md/.json, run.log and report.tar.gz of the whole tree into out_dir."""
        os.makedirs(out_dir, exist_ok=True)
        for f in ("gpu-report.md", "gpu-report.json", "run.log"):
            if os.path.exists(os.path.join(self.h.dir, f)):
                shutil.copy(os.path.join(self.h.dir, f), out_dir)
        subprocess.run(["tar", "-C", os.path.dirname(self.h.dir), "-czf",
                        os.path.join(out_dir, "report.tar.gz"), os.path.basename(self.h.dir)],
                       stderr=subprocess.DEVNULL)


def print_failures(logs, limit=200):
    """The failures' output (2 lines before, 12 after), so that run.log names them."""
    shown = 0
    for path in logs:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
        keep = set()
        for i, ln in enumerate(lines):
            if ln.startswith("[  FAILED  ]") or ln.endswith("Failure"):
                keep.update(range(max(0, i - 2), min(len(lines), i + 13)))
        for i in sorted(keep):
            if shown >= limit:
                return
            print(lines[i])
            shown += 1


def main(args):
    """args: gpu.py run's options; returns the exit status."""
    args.report_dir = os.path.realpath(args.report_dir or "/tmp/tandem-gpu-report")
    os.makedirs(args.report_dir, exist_ok=True)
    for p in glob.glob(os.path.join(args.report_dir, "*")):
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
    out_dir = args.out if args.out is not None else os.environ.get("OUT", "")
    stop_tee = tee_console(os.path.join(args.report_dir, "run.log"))
    r = BundleRun(args)
    # The tests' fixtures travel in the bundle, not at the path compiled in.
    os.environ["TANDEM_TEST_SOURCE_DIR"] = os.path.join(BUNDLE, "tests")
    os.environ["TANDEM_TEST_PYTHON3"] = shutil.which("python3") or ""
    rc = EXIT_NO_TOOL
    try:
        r.info()
        for step in ("tests", "async", "sanitizer", "bench", "train"):
            if step in args.steps:
                getattr(r, "tests_async" if step == "async" else step)()
        r.reserve = 0
        rc = r.h.report_and_summary(["tests", "tests_async", "sanitizer", "bench"])
        print(f"{r.h.name}: {r.elapsed()} s of the {args.budget} s budget used")
    except SystemExit as e:
        rc = e.code
    finally:
        stop_tee()
        if out_dir:
            r.copy_out(out_dir)
    return rc
