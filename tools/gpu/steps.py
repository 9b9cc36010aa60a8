"""The steps `gpu.py check` (build on the GPU machine) and `gpu.py run` (the
prebuilt bundle) share: device info (nvidia-smi, the version probe), the
tests' JUnit results, compute-sanitizer, the benchmarks, and the report with
the summary. Each step records one line in REPORT_DIR/steps.tsv (name, status,
detail, seconds, time stamp); a step cut off by its time limit is recorded as
NOT RUN or TIMED OUT, never as PASS."""

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import report

EXIT_FAIL, EXIT_NO_GPU, EXIT_NO_TOOL, EXIT_USAGE = 1, 2, 3, 64
TIMED_OUT = (124, 137)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# GPU test cases, by name: the CUDA fixtures and parity suites, and the tests
# whose names say Cuda/Device. Running a CPU case under memcheck is harmless.
GPU_FILTER = "*Cuda*:*CUDA*:*cuda*:*Gpu*:*GPU*:*Parity*:*Device*"
# Tests that drive tandem's own kernels (elementwise, reduce, softmax, indexing,
# loss, random/dropout, pooling and batch norm, optimizer steps), for racecheck
# and synccheck; cuBLAS/cuDNN internals are not ours to check.
# The op registry's CUDA cases (Registry.CudaMatchesCpu) drive every op's
# kernels; the others are the kernel tests that stand beside it.
KERNEL_FILTER = ":".join([
    "*Registry.CudaMatchesCpu*", "*UnaryParity*", "*BinaryParity*", "*InPlaceParity*",
    "*VarSoftmaxParity*", "*IndexingParity*", "CudaTest.WhereParity", "CudaTest.LargeSums*",
    "CudaTest.Rand*", "CudaTest.Dropout*", "CudaTest.OutOfRangeIndices*", "*ScatterCudaTest*",
    "*CrossEntropyCudaTest*", "ConvCuda.Pooling*", "Nets.*OnCuda",
    "SGD.Cuda*", "Optimizers.Cuda*", "ClipGrad.Cuda*", "*GradcheckOps.CudaBackward*"])
# --quick: float32 only, no gradcheck sweep, no CIFAR-sized or large cases
# (the registry's *_cifar* and *_large records, the whole-net tests).
QUICK_EXCLUDE = "*float64*:*int64*:*GradcheckOps*:*_cifar*:*_large:*ResNetBlock*:*100Steps*"


def expected_gpu_skips(path=os.path.join(ROOT, "tests", "expected_skips.h")):
    """The skips a GPU run allows: the CudaPresent entries of the one list of
    expected skips (next to tools/ in the source tree and in the bundle), as an
    anchored regex; empty (none) when the list is absent."""
    if not os.path.exists(path):
        return ""
    entry = re.compile(r'^TANDEM_EXPECTED_SKIP\("([^"]*)", *CudaPresent,')
    with open(path) as f:
        names = [m.group(1) for m in map(entry.match, f) if m]
    names = [n.replace(".", "\\.").replace("*", ".*") for n in names]
    return f"^({'|'.join(names)})$" if names else ""


def show_cmd(cmd):
    """The command the way a shell would take it back."""
    return "+ " + " ".join(shlex.quote(str(a)) for a in cmd)


def execute(cmd, limit, env=None, log=None, out=None):
    """Runs cmd for at most limit seconds (then TERM to its process group, KILL
    10 s later) and returns its exit status, 124 when it ran out of time. Its
    output goes to the file object out, or else to the console and, appended,
    to the file log. A signal's death is 128 + its number, as in a shell."""
    sys.stdout.flush()
    p = subprocess.Popen([str(a) for a in cmd], env=env, start_new_session=True,
                         stdout=out if out else subprocess.PIPE, stderr=subprocess.STDOUT)
    expired = threading.Event()

    def kill():  # TERM, KILL 10 s later; then KILL whatever of the group is left
        expired.set()
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
            try:
                os.killpg(p.pid, sig)
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            except OSError:
                return

    timer = threading.Timer(limit, kill)
    timer.start()
    try:
        if not out:
            with p.stdout, open(log or os.devnull, "a") as lf:
                for line in iter(p.stdout.readline, b""):
                    sys.stdout.write(line.decode(errors="replace"))
                    lf.write(line.decode(errors="replace"))
        rc = p.wait()
    finally:
        timer.cancel()
    return 124 if expired.is_set() else 128 - rc if rc < 0 else rc


def output(cmd, timeout=60, env=None):
    """(exit status, stdout + stderr) of a short command; 124 when it timed out."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return 124, ""
    except OSError as e:
        return 127, f"{e}\n"


def tsv_value(path, key):
    """The (first) value of key in a file of key<TAB>value lines, or ""."""
    return next((ln[1] for ln in report.read_tsv(path) if len(ln) > 1 and ln[0] == key), "")


def file_match(pattern, path, flags=re.M):
    """The first group of pattern in the file at path, or ""."""
    try:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read(), flags)
    except OSError:
        return ""
    return m.group(1) if m else ""


def append(path, line, echo=False):
    if echo:
        print(line)
    with open(path, "a") as f:
        f.write(line + "\n")


def now_utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Harness:
    """One invocation's report directory, its steps and the device it found."""

    def __init__(self, name, report_dir, quick=False):
        self.name, self.dir, self.quick = name, report_dir, quick
        self.steps = {}  # name -> (status, detail), in the order they ran
        self.gpu_ok, self.no_gpu_reason, self.compute_caps = True, "", []
        self.probe_ok = False
        self.nvcc = self.sanitizer = None
        self.cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or \
            "/usr/local/cuda"
        skips = os.environ.get("GPU_CHECK_ALLOWED_SKIPS")
        self.allowed_skips = expected_gpu_skips() if skips is None else skips  # "": none
        self.sanitizer_exclude = os.environ.get("GPU_CHECK_SANITIZER_EXCLUDE", "*OutOfMemory*")

    # ---- messages, steps, device.tsv ----

    def warn(self, msg):
        print(f"{self.name}: WARNING: {msg}", file=sys.stderr)

    def section(self, title):
        print(f"\n==== {self.name}: {title} ====")

    def fail_tool(self, tool, hint):
        print(f"{self.name}: '{tool}' not found: {hint}", file=sys.stderr)
        sys.exit(EXIT_NO_TOOL)

    def run_logged(self, log, limit, cmd, env=None):
        """execute() with the command shown and the output also appended to log."""
        append(log, show_cmd(cmd), echo=True)
        rc = execute(cmd, limit, env=env, log=log)
        if rc in TIMED_OUT:
            append(log, f"{self.name}: TIMED OUT after {limit} s: {cmd[0]}", echo=True)
        return rc

    def finish_step(self, name, status, detail, start):
        """Records a step here and in steps.tsv, replacing an earlier line of the
        same step, so that a later partial run (--only bench) keeps the others."""
        self.steps.pop(name, None)
        self.steps[name] = (status, detail)
        path = os.path.join(self.dir, "steps.tsv")
        lines = []
        if os.path.exists(path):
            with open(path) as f:
                lines = [ln for ln in f if not ln.startswith(name + "\t")]
        seconds = int(time.monotonic() - start)
        lines.append(f"{name}\t{status}\t{detail.replace(chr(9), ' ')}\t{seconds}\t{now_utc()}\n")
        with open(path + ".tmp", "w") as f:
            f.writelines(lines)
        os.replace(path + ".tmp", path)

    def skip_step(self, name, why):
        """A step the time budget left no room for."""
        self.finish_step(name, "NOT RUN", why, time.monotonic())

    def put(self, key, value):
        append(os.path.join(self.dir, "device.tsv"), f"{key}\t{value}")

    def device(self, key):
        return tsv_value(os.path.join(self.dir, "device.tsv"), key)

    def init(self, source, commit):
        os.makedirs(self.dir, exist_ok=True)
        open(os.path.join(self.dir, "device.tsv"), "w").close()
        self.put("check_started", now_utc())
        self.put("host", os.uname().nodename or "unknown")
        self.put("source_dir", source)
        self.put("commit", commit)
        print(f"source: {source}, commit {commit}")

    # ---- step 1: device and versions ----

    def find_cuda_tools(self):
        """nvcc and compute-sanitizer, from CUDA_HOME or the PATH."""
        nvcc = os.path.join(self.cuda_home, "bin", "nvcc")
        if os.access(nvcc, os.X_OK):
            self.nvcc = nvcc
        elif shutil.which("nvcc"):
            self.nvcc = shutil.which("nvcc")
            self.cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(self.nvcc)))
        for s in (os.path.join(self.cuda_home, "bin", "compute-sanitizer"),
                  os.path.join(self.cuda_home, "compute-sanitizer", "compute-sanitizer")):
            if os.access(s, os.X_OK):
                self.sanitizer = s
                break
        self.sanitizer = self.sanitizer or shutil.which("compute-sanitizer")
        self.put("compute_sanitizer", self.sanitizer or "not found")
        if not self.nvcc:
            print(f"nvcc: not found (CUDA_HOME={self.cuda_home})")
            self.put("nvcc", "not found")
            return
        rel = re.search(r"release ([0-9.]+), (V[0-9.]+)", output([self.nvcc, "--version"])[1])
        print(f"nvcc: {self.nvcc} ({'release %s, %s' % rel.groups() if rel else ''})")
        self.put("nvcc", self.nvcc)
        self.put("toolkit_version", rel.group(1) if rel else "")
        self.put("toolkit_build", rel.group(2) if rel else "")

    def smi_info(self):
        """nvidia-smi's view of the GPUs into device.tsv; a machine without one
        clears gpu_ok."""
        if not shutil.which("nvidia-smi"):
            self.gpu_ok = False
            self.no_gpu_reason = "nvidia-smi not found (no NVIDIA driver on this machine)"
            print("nvidia-smi: not found")
            return
        query = ("index,name,driver_version,compute_cap,memory.total,clocks.max.sm,"
                 "clocks.max.memory,pci.bus_id")
        cmd = ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"]
        print(show_cmd(cmd))
        rc, out = output(cmd)
        print(out, end="")
        rows = [ln for ln in out.splitlines() if ln[:1].isdigit()]
        if rc != 0 or not rows:
            self.gpu_ok = False
            self.no_gpu_reason = f"nvidia-smi lists no usable GPU (exit status {rc})"
            return
        keys = ("name", "driver", "compute_cap", "memory", "max_sm_clock", "max_mem_clock",
                "pci_bus")
        for row in rows:
            idx, *vals = [v.strip() for v in row.split(",")]
            for k, v in zip(keys, vals):
                self.put(f"gpu{idx}_{k}", v)
            cap = vals[2] if len(vals) > 2 else ""
            if re.fullmatch(r"[0-9]+\.[0-9]+", cap) and cap.replace(".", "") not in \
                    self.compute_caps:
                self.compute_caps.append(cap.replace(".", ""))
        self.put("gpu_count", len(rows))

    def run_probe(self, probe):
        """The version probe's key/value lines into device.tsv; a runtime that
        sees no device clears gpu_ok."""
        print(show_cmd([probe]))
        rc, out = output([probe])
        print(out, end="")
        if rc != 0:
            self.warn(f"the version probe failed (exit status {rc})")
            return
        self.probe_ok = True
        kv = [ln for ln in out.splitlines() if re.match(r"[a-z0-9_]+\t", ln)]
        for ln in kv:
            self.put(*ln.split("\t", 1))
        print("probe's libraries:")
        self.libraries(probe, r"cudart|cublas|cudnn|libcuda\.|not found")
        if self.gpu_ok and "runtime_devices\t0" in kv:
            err = next((ln.split("\t", 1)[1] for ln in kv if ln.startswith("runtime_error\t")),
                       "")
            self.gpu_ok = False
            self.no_gpu_reason = f"nvidia-smi lists a GPU but the CUDA runtime sees none: {err}"

    def finish_info(self, start):
        """Ends step 1: without a GPU, says so and exits EXIT_NO_GPU."""
        if not self.gpu_ok:
            self.put("gpu", f"none: {self.no_gpu_reason}")
            self.finish_step("info", "NO GPU", self.no_gpu_reason, start)
            print(f"\n{self.name}: NO GPU: {self.no_gpu_reason}.")
            print(f"{self.name}: nothing to check here; run this on a machine with an NVIDIA "
                  "GPU and its driver")
            print(f"{self.name}: (the CPU-only checks are tools/test.sh). Exit status "
                  f"{EXIT_NO_GPU}.")
            sys.exit(EXIT_NO_GPU)
        self.put("gpu", "yes")
        caps = " ".join("sm_" + c for c in self.compute_caps)
        self.finish_step("info", "PASS", f"{self.device('gpu0_name')}, {caps}", start)

    def libraries(self, lib, pattern, record=()):
        """Prints the lines of `ldd lib` that match pattern, records where each
        library named in record comes from (lib_NAME in device.tsv) and returns
        ldd's output."""
        out = output(["ldd", lib])[1]
        for ln in out.splitlines():
            if re.search(pattern, ln):
                print("  " + ln)
        for name in record:
            where = [f[2] for f in map(str.split, out.splitlines())
                     if len(f) >= 3 and f[0].startswith(f"lib{name}.")]
            if where:
                self.put(f"lib_{name}", where[0])
        return out

    # ---- the tests ----

    def tests_result(self, name, start, extra, junit_files):
        """NAME.json from JUnit files (ctest's or gtest's); records step NAME."""
        res = report.junit(junit_files, self.allowed_skips, os.path.join(self.dir, name + ".json"))
        status = "PASS" if res["ok"] and not extra else "FAIL"
        detail = f"{extra}; {res['summary']}" if extra else res["summary"]
        self.finish_step(name, status, detail, start)

    # ---- compute-sanitizer ----

    def make_filter(self, positive):
        """gtest filter: positive patterns, then '-' and the negative ones."""
        neg = ":".join(p for p in (self.sanitizer_exclude, self.quick and QUICK_EXCLUDE) if p)
        return f"{positive}-{neg}" if neg else positive

    def sanitizer_step(self, test_dir, budget, per_run):
        """memcheck over the GPU cases of every tandem_test_* in test_dir, then
        racecheck and synccheck over the kernel cases. Runs that no longer fit in
        budget seconds are recorded as NOT RUN (budget)."""
        self.section("sanitizer: compute-sanitizer memcheck, racecheck, synccheck "
                     f"(budget {budget} s)")
        start = time.monotonic()
        logs = os.path.join(self.dir, "sanitizer")
        os.makedirs(logs, exist_ok=True)
        for f in glob.glob(os.path.join(logs, "*.log")):
            os.remove(f)
        rows = [["tool", "binary", "status", "errors", "seconds", "cases", "log"]]
        tsv = os.path.join(self.dir, "sanitizer.tsv")

        def write_tsv():
            with open(tsv, "w") as f:
                f.writelines("\t".join(map(str, r)) + "\n" for r in rows)

        write_tsv()
        if not self.sanitizer:
            return self.finish_step("sanitizer", "FAIL", "compute-sanitizer not found", start)
        bins = executables(test_dir, "tandem_test_*")
        if not bins:
            return self.finish_step("sanitizer", "FAIL",
                                    f"no tandem_test_* binaries in {test_dir}", start)
        env = dict(os.environ, TANDEM_REQUIRE_CUDA="1")
        runs = failed = not_run = 0
        for tool in ("memcheck", "racecheck", "synccheck"):
            filt = self.make_filter(GPU_FILTER if tool == "memcheck" else KERNEL_FILTER)
            for b in bins:
                name = os.path.basename(b)
                cases = count_cases(b, filt, env)
                if not cases:
                    continue
                left = int(budget - (time.monotonic() - start))
                runs += 1
                if left < 20:
                    print(f"{self.name}: sanitizer budget ({budget} s) used up: {tool} {name} "
                          "not run")
                    rows.append([tool, name, "NOT RUN (budget)", "", 0, cases, ""])
                    not_run += 1
                    write_tsv()
                    continue
                limit = min(left, per_run)
                log = os.path.join(logs, f"{tool}-{name}.log")
                open(log, "w").close()
                t = time.monotonic()
                # --error-exitcode 86 tells a sanitizer report apart from a failing test (1).
                rc = self.run_logged(log, limit, [
                    self.sanitizer, "--tool", tool, "--error-exitcode", "86", "--print-limit",
                    "50", b, f"--gtest_filter={filt}", "--gtest_brief=1"], env=env)
                with open(log, errors="replace") as f:
                    text = f.read()
                errors = re.findall(r"ERROR SUMMARY: ([0-9]+) error", text) or \
                    re.findall(r"RACECHECK SUMMARY: .*\(([0-9]+) error", text)
                st = {0: "PASS", 86: "FAIL (sanitizer errors)"}.get(
                    rc, f"TIMED OUT after {limit} s" if rc in TIMED_OUT else
                    f"FAIL (exit status {rc}: test failures under the sanitizer)")
                failed += rc != 0
                rows.append([tool, name, st, errors[-1] if errors else "?",
                             int(time.monotonic() - t), cases, log])
                write_tsv()
        if runs == 0:
            status, detail = "FAIL", "no test case matched the sanitizer filters"
        else:
            detail = (f"{runs - failed - not_run} of {runs} runs clean, {failed} failed, "
                      f"{not_run} not run (budget){' (--quick filters)' if self.quick else ''}")
            status = "FAIL" if failed else "INCOMPLETE" if not_run else "PASS"
        self.finish_step("sanitizer", status, detail, start)
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())

    # ---- benchmarks ----

    def bench_step(self, bench_dir, budget, per_binary, flags, env=None):
        """Every tandem_bench_* in bench_dir, Google Benchmark JSON into bench/.
        Binaries that no longer fit in budget seconds are recorded as not run."""
        self.section(f"bench: every tandem_bench_* in {bench_dir} (budget {budget} s)")
        start = time.monotonic()
        out = os.path.join(self.dir, "bench")
        os.makedirs(out, exist_ok=True)
        for f in glob.glob(os.path.join(out, "*.json")) + glob.glob(os.path.join(out, "*.log")):
            os.remove(f)
        bins = executables(bench_dir, "tandem_bench_*")
        if not bins:
            return self.finish_step("bench", "FAIL", f"no tandem_bench_* binaries in {bench_dir}",
                                    start)
        failed, not_run = [], []
        for b in bins:
            name = os.path.basename(b)
            left = int(budget - (time.monotonic() - start))
            if left < 10:
                not_run.append(name)
                continue
            limit = min(left, per_binary)
            rc = self.run_logged(os.path.join(out, name + ".log"), limit, [
                b, f"--benchmark_out={out}/{name}.json", "--benchmark_out_format=json"] + flags,
                env=env)
            if rc in TIMED_OUT:
                failed.append(f"{name} (timed out after {limit} s)")
            elif rc:
                failed.append(f"{name} (exit status {rc})")
        # Cases that reported an error (SkipWithError) count as failures too.
        errored = report.bench_errors(out)
        detail = (f"{len(bins)} binaries, {len(failed)} failed, {len(not_run)} not run (budget), "
                  f"{errored} cases with errors")
        if failed:
            detail += ": " + " ".join(failed)
        if not_run:
            detail += "; not run: " + " ".join(not_run)
        status = "FAIL" if failed or errored else "INCOMPLETE" if not_run else "PASS"
        self.finish_step("bench", status, detail, start)

    # ---- report and summary ----

    def report_and_summary(self, expected):
        """Writes the report, prints the summary of this invocation's steps (and
        of those in expected that did not run); returns the exit status."""
        self.section("report")
        overall = 0
        try:
            report.write_report(self.dir)
        except Exception as e:  # the report must not hide the steps' results
            overall = EXIT_FAIL
            self.warn(f"the report generator failed: {e!r}")
        print(f"\n==== {self.name} summary ====")
        for s, (status, detail) in self.steps.items():
            print(f"  {s:<12} {status:<10} {detail}")
            overall = overall if status == "PASS" else EXIT_FAIL
        for s in expected:
            if s not in self.steps:
                print(f"  {s:<12} {'-':<10} not run in this invocation")
        print(f"  report:      {self.dir}/gpu-report.md (and .json)")
        print(f"{self.name}: " + ("every step that ran passed" if overall == 0 else
                                  "FAILED (or incomplete: a step not run counts as not passed)"))
        return overall


def executables(folder, pattern):
    return sorted(p for p in glob.glob(os.path.join(folder, pattern))
                  if os.path.isfile(p) and os.access(p, os.X_OK))


def count_cases(binary, gtest_filter, env):
    """How many test cases the filter selects in a gtest binary."""
    out = output([binary, "--gtest_list_tests", f"--gtest_filter={gtest_filter}"], env=env)[1]
    return sum(1 for ln in out.splitlines() if ln.startswith("  "))


def git_commit(root, porcelain_args=()):
    """The short commit of root, with a note when the tree has changes."""
    rc, commit = output(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    if rc:
        return "unknown"
    rc, changes = output(["git", "-C", root, "status", "--porcelain"] + list(porcelain_args))
    return commit.strip() + (" (with uncommitted changes)" if rc == 0 and changes.strip() else "")
