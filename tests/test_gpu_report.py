#!/usr/bin/env python3
"""Tests of the GPU harness (tools/gpu/gpu.py): the report on synthetic results,
the steps it shares between check and run (steps.tsv, time limits, budgets,
filters), and every command's argument handling. Run by ctest (gpu_report);
standard library only.

The synthetic benchmark JSON uses the case names our benchmark programs
print (benchmarks/README.md), with random figures, so the report's ratios are
checked against values computed here.
"""

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_PY = os.path.join(ROOT, "tools", "gpu", "gpu.py")
sys.path.insert(0, os.path.dirname(GPU_PY))
import run as bundle_run  # noqa: E402
import steps  # noqa: E402


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


def read(path):
    with open(path) as f:
        return f.read()


def case(name, real_time, unit="us", **counters):
    b = {"name": name, "run_name": name, "run_type": "iteration", "iterations": 10,
         "real_time": real_time, "cpu_time": real_time, "time_unit": unit}
    b.update(counters)
    return b


def write_json(path, cases):
    with open(path, "w") as f:
        json.dump({"context": {"tandem_version": "test"}, "benchmarks": cases}, f)


JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="Linux" tests="4" failures="1" skipped="2">
  <testcase name="Tensor.Basics" classname="t" time="0.1" status="run"/>
  <testcase name="SGD.CudaStepMatchesCpu" classname="t" time="0.1" status="fail">
    <failure message="Failed"/>
  </testcase>
  <testcase name="Optimizers.CudaStepMatchesCpuAfter100Steps" classname="t" time="0" status="notrun">
    <skipped message="SKIP_REGULAR_EXPRESSION_MATCHED"/>
    <system-out>test_util.h:416: Skipped
no CUDA device: none found
</system-out>
  </testcase>
  <testcase name="ErrorTest.CudaTensorWithoutADevice" classname="t" time="0" status="notrun">
    <skipped message="SKIP_REGULAR_EXPRESSION_MATCHED"/>
  </testcase>
</testsuite>
"""


class JunitTest(unittest.TestCase):
    def test_failures_and_skips_are_counted_and_fail(self):
        with tempfile.TemporaryDirectory() as d:
            junit = os.path.join(d, "j.xml")
            with open(junit, "w") as f:
                f.write(JUNIT)
            out = os.path.join(d, "tests.json")
            r = run(sys.executable, GPU_PY, "junit", junit, "--allowed-skips",
                    r"^ErrorTest\.CudaTensorWithoutADevice$", "--out", out)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            res = json.loads(read(out))
            self.assertEqual(res["total"], 4)
            self.assertEqual(res["passed"], 1)
            self.assertEqual(res["failed"], ["SGD.CudaStepMatchesCpu"])
            self.assertEqual([s["name"] for s in res["skipped"]],
                             ["Optimizers.CudaStepMatchesCpuAfter100Steps"])
            self.assertEqual(res["skipped"][0]["reason"], "no CUDA device: none found")
            self.assertEqual([s["name"] for s in res["allowed_skips"]],
                             ["ErrorTest.CudaTensorWithoutADevice"])
            self.assertFalse(res["ok"])

    def test_all_passed_is_ok(self):
        with tempfile.TemporaryDirectory() as d:
            junit = os.path.join(d, "j.xml")
            with open(junit, "w") as f:
                f.write('<testsuite><testcase name="A.b" status="run"/>'
                        '<testcase name="A.c" status="run"/></testsuite>')
            r = run(sys.executable, GPU_PY, "junit", junit)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("2 tests: 2 passed, 0 failed", r.stdout)


GTEST_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1" disabled="0" errors="0" name="AllTests">
  <testsuite name="CudaTest" tests="3" failures="1" skipped="1">
    <testcase name="AddParity" status="run" result="completed" classname="CudaTest"/>
    <testcase name="SoftmaxParity" status="run" result="completed" classname="CudaTest">
      <failure message="x" type=""/>
    </testcase>
    <testcase name="Pinned" status="run" result="skipped" classname="CudaTest">
      <skipped message="test_util.h:12&#x0A;no CUDA device"/>
    </testcase>
  </testsuite>
</testsuites>
"""


class GtestXmlTest(unittest.TestCase):
    def test_gtest_files_are_merged_with_full_names(self):
        with tempfile.TemporaryDirectory() as d:
            a = os.path.join(d, "a.xml")
            b = os.path.join(d, "b.xml")
            bad = os.path.join(d, "crashed.xml")
            with open(a, "w") as f:
                f.write(GTEST_XML)
            with open(b, "w") as f:
                f.write('<testsuites><testsuite name="T"><testcase name="ok" classname="T" '
                        'status="run" result="completed"/></testsuite></testsuites>')
            with open(bad, "w") as f:
                f.write("<testsuites><testsu")  # a binary killed mid-write
            out = os.path.join(d, "tests.json")
            r = run(sys.executable, GPU_PY, "junit", a, b, bad, "--out", out)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            res = json.loads(read(out))
            self.assertEqual(res["total"], 5)
            self.assertEqual(res["passed"], 2)
            self.assertEqual(res["failed"][0], "CudaTest.SoftmaxParity")
            self.assertIn("crashed.xml (unreadable results", res["failed"][1])
            self.assertEqual([s["name"] for s in res["skipped"]], ["CudaTest.Pinned"])


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        bench = os.path.join(self.dir, "bench")
        os.makedirs(bench)
        rnd = random.Random(1234)
        self.v = v = {k: rnd.uniform(0.5, 2.0) for k in (
            "copy16", "relu16", "copy_d2d", "adam_multi", "adam_per", "adam_step",
            "sgemm", "matmul", "cudnn", "conv", "lenet_cpu", "lenet_gpu")}
        write_json(os.path.join(bench, "tandem_bench_ops.json"), [
            case("copy_raw/cuda/16777216/manual_time", 100, bytes_per_second=v["copy16"] * 1e12),
            case("relu/cuda/16777216/manual_time", 100, bytes_per_second=v["relu16"] * 1e12),
            case("sigmoid/cuda/16777216/manual_time", 100, error_occurred=True,
                 error_message="no CUDA device"),
        ])
        write_json(os.path.join(bench, "tandem_bench_gemm.json"), [
            case("cublas_sgemm/cuda/2048/manual_time", v["sgemm"] * 1000, FLOPS=1e13),
            case("matmul_f32/cuda/2048/manual_time", v["matmul"] * 1000, FLOPS=1e13),
        ])
        write_json(os.path.join(bench, "tandem_bench_conv.json"), [
            case("conv_fwd/cudnn_direct/64x32/manual_time", v["cudnn"] * 100),
            case("conv_fwd/cuda/64x32/manual_time", v["conv"] * 100),
            case("train_step/lenet/cpu/real_time", v["lenet_cpu"], "ms",
                 items_per_second=16 / (v["lenet_cpu"] * 1e-3)),
            case("train_step/lenet/cuda/manual_time", v["lenet_gpu"] * 10, "us",
                 items_per_second=128 / (v["lenet_gpu"] * 1e-5)),
        ])
        n = 10000000
        write_json(os.path.join(bench, "tandem_bench_optim.json"), [
            case(f"copy_d2d/cuda/{n}/manual_time", 50, bytes_per_second=v["copy_d2d"] * 1e12),
            case(f"adam_multi_tensor/cuda/{n}/manual_time", v["adam_multi"] * 100,
                 bytes_per_second=28 * n / (v["adam_multi"] * 1e-4)),
            case(f"adam_per_tensor/cuda/{n}/manual_time", v["adam_per"] * 100,
                 bytes_per_second=28 * n / (v["adam_per"] * 1e-4)),
            case(f"adam_step/cuda/{n}/manual_time", v["adam_step"] * 100,
                 bytes_per_second=28 * n / (v["adam_step"] * 1e-4)),
        ])
        with open(os.path.join(self.dir, "device.tsv"), "w") as f:
            f.write("gpu0_name\tNVIDIA H100 80GB HBM3\ngpu0_compute_cap\t9.0\n"
                    "commit\tabc1234\ncudart_runtime\t13000\ncudnn_runtime\t91400\n")
        with open(os.path.join(self.dir, "steps.tsv"), "w") as f:
            f.write("info\tPASS\tH100\t1\t2026-01-01T00:00:00Z\n"
                    "sanitizer\tFAIL\t1 of 2 runs clean\t30\t2026-01-01T00:01:00Z\n")
        with open(os.path.join(self.dir, "sanitizer.tsv"), "w") as f:
            f.write("tool\tbinary\tstatus\terrors\tseconds\tcases\tlog\n"
                    "memcheck\ttandem_test_cuda\tPASS\t0\t10\t40\tx.log\n"
                    "racecheck\ttandem_test_optim\tFAIL (sanitizer errors)\t3\t20\t5\ty.log\n")
        r = run(sys.executable, GPU_PY, "report", self.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.report = json.loads(read(os.path.join(self.dir, "gpu-report.json")))
        self.md = read(os.path.join(self.dir, "gpu-report.md"))

    def tearDown(self):
        self.tmp.cleanup()

    def test_kernel_families_against_copy_of_the_same_size(self):
        fams = {f["family"]: f for f in self.report["benchmarks"]["kernel_families"]["families"]}
        self.assertIn("relu", fams)
        self.assertNotIn("sigmoid", fams)  # errored: not a measurement
        self.assertAlmostEqual(fams["relu"]["at_largest_size"],
                               self.v["relu16"] / self.v["copy16"], places=9)
        errors = self.report["benchmarks"]["errors"]
        self.assertEqual([e["name"] for e in errors], ["sigmoid/cuda/16777216/manual_time"])

    def test_gemm_and_conv_against_the_direct_calls(self):
        g = self.report["benchmarks"]["gemm_vs_cublas"]["cases"]
        self.assertEqual(len(g), 1)
        self.assertEqual(g[0]["tandem"], "matmul_f32/cuda/2048/manual_time")
        self.assertAlmostEqual(g[0]["time_ratio"], self.v["matmul"] / self.v["sgemm"], places=9)
        c = self.report["benchmarks"]["conv_vs_cudnn"]["cases"]
        self.assertEqual(len(c), 1)
        self.assertEqual(c[0]["tandem"], "conv_fwd/cuda/64x32/manual_time")
        self.assertAlmostEqual(c[0]["time_ratio"], self.v["conv"] / self.v["cudnn"], places=9)

    def test_optimizer_against_copy_and_per_tensor(self):
        rows = {r["name"].split("/")[0]: r
                for r in self.report["benchmarks"]["optimizer_steps"]["cases"]}
        v = self.v
        multi = rows["adam_multi_tensor"]
        self.assertEqual(multi["copy"], "copy_d2d/cuda/10000000/manual_time")
        self.assertAlmostEqual(multi["fraction_of_copy"],
                               28e7 / (v["adam_multi"] * 1e-4) / (v["copy_d2d"] * 1e12), places=9)
        self.assertAlmostEqual(multi["speedup_vs_per_tensor"], v["adam_per"] / v["adam_multi"],
                               places=9)
        self.assertAlmostEqual(rows["adam_step"]["speedup_vs_per_tensor"],
                               v["adam_per"] / v["adam_step"], places=9)
        self.assertIsNone(rows["adam_per_tensor"]["speedup_vs_per_tensor"])

    def test_nets_cpu_over_gpu(self):
        rows = self.report["benchmarks"]["nets_cpu_vs_gpu"]["cases"]
        self.assertEqual(len(rows), 1)
        lenet = rows[0]
        self.assertEqual(lenet["net"], "lenet")
        cpu_ns, gpu_ns = self.v["lenet_cpu"] * 1e6, self.v["lenet_gpu"] * 1e4
        self.assertAlmostEqual(lenet["step_time_ratio_cpu_over_gpu"], cpu_ns / gpu_ns, places=9)
        self.assertAlmostEqual(lenet["cpu_batch"], 16, places=6)
        self.assertAlmostEqual(lenet["gpu_batch"], 128, places=6)

    def test_markdown_has_every_section_and_the_failures(self):
        for title in ("## Device and versions", "## Steps", "## compute-sanitizer",
                      "### Copy bandwidth", "### Custom kernels", "### GEMM against direct cuBLAS",
                      "### Convolution against direct cuDNN", "### Fused optimizer steps",
                      "### LeNet and ResNet-block"):
            self.assertIn(title, self.md)
        self.assertIn("NVIDIA H100 80GB HBM3", self.md)
        self.assertIn("FAIL (sanitizer errors)", self.md)
        self.assertIn("9.14.0", self.md)  # cuDNN 91400
        self.assertIn("13.0", self.md)  # CUDA runtime 13000


class EmptyReportTest(unittest.TestCase):
    def test_nothing_measured_says_so(self):
        with tempfile.TemporaryDirectory() as d:
            r = run(sys.executable, GPU_PY, "report", d)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            md = read(os.path.join(d, "gpu-report.md"))
            self.assertIn("not run (no benchmark JSON", md)

    def test_unreadable_benchmark_json_counts_as_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "tandem_bench_ops.json"), "w") as f:
                f.write('{"benchmarks": [')  # truncated
            r = run(sys.executable, GPU_PY, "bench-errors", d)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), "1")


class ArgumentsTest(unittest.TestCase):
    COMMANDS = ("check", "bundle", "run", "report", "junit", "bench-errors")

    def test_every_command_has_help(self):
        r = run(sys.executable, GPU_PY, "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in self.COMMANDS:
            self.assertIn(c, r.stdout)
            h = run(sys.executable, GPU_PY, c, "--help")
            self.assertEqual(h.returncode, 0, c + h.stderr)
            self.assertIn(f"usage: gpu.py {c}", h.stdout)
        self.assertIn("compute-sanitizer", run(sys.executable, GPU_PY, "check", "-h").stdout)
        self.assertIn("--skip-build", run(sys.executable, GPU_PY, "bundle", "-h").stdout)
        self.assertIn("--budget", run(sys.executable, GPU_PY, "run", "-h").stdout)

    def usage_error(self, *args, says=None, env=None):
        r = run(sys.executable, GPU_PY, *args, env=env)
        self.assertEqual(r.returncode, 64, f"{args}: {r.stdout}{r.stderr}")
        self.assertIn("usage: gpu.py", r.stderr)
        if says:
            self.assertIn(says, r.stderr)

    def test_bad_usage_exits_64(self):
        self.usage_error()
        self.usage_error("no-such-command")
        for c in ("check", "bundle", "run"):
            self.usage_error(c, "--no-such-option", says="--no-such-option")
        self.usage_error("check", "--only", "tests,nonsense", says="unknown step 'nonsense'")
        self.usage_error("check", "--only", "train", says="unknown step 'train'")
        self.usage_error("check", "--jobs", "zero", says="--jobs")
        self.usage_error("check", env=dict(os.environ, GPU_CHECK_TIMEOUT_TESTS="-1"),
                         says="GPU_CHECK_TIMEOUT_TESTS must be a positive number")
        self.usage_error("run", "--budget", "soon", says="must be a positive number of seconds")
        self.usage_error("run", "--budget", "-5", says="must be a positive number of seconds")
        self.usage_error("run", "--budget", "0", says="--budget")
        self.usage_error("run", "--train-seconds", "-1", says="--train-seconds")
        self.usage_error("run", "--only", "tests,nonsense", says="unknown step 'nonsense'")
        self.usage_error("run", "--only", "build", says="unknown step 'build'")
        self.usage_error("bundle", "--max-mib", "0", says="--max-mib")
        self.usage_error("bundle", "--cifar10", os.path.join(ROOT, "no-such-file"),
                         says="--cifar10: no file")
        self.usage_error("report")
        self.usage_error("junit")

    def test_check_without_a_gpu_exits_2_after_the_info_step(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "bin")
            os.makedirs(fake)
            smi = os.path.join(fake, "nvidia-smi")
            with open(smi, "w") as f:
                f.write("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
            os.chmod(smi, 0o755)
            env = dict(os.environ, PATH=fake + ":/usr/bin:/bin", CUDA_HOME=os.path.join(d, "none"))
            r = run(sys.executable, GPU_PY, "check", "--build-dir", os.path.join(d, "build"),
                    "--report-dir", os.path.join(d, "report"), env=env)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("NO GPU: nvidia-smi lists no usable GPU (exit status 6)", r.stdout)
            tsv = read(os.path.join(d, "report", "steps.tsv")).split("\t")
            self.assertEqual(tsv[:2], ["info", "NO GPU"])
            self.assertIn("gpu\tnone: nvidia-smi lists no usable GPU",
                          read(os.path.join(d, "report", "device.tsv")))


class StepsTest(unittest.TestCase):
    """The shared steps in-process; their console output is kept out of the way."""

    def setUp(self):
        quiet = contextlib.redirect_stdout(io.StringIO())
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)

    def test_a_step_replaces_its_earlier_line_and_keeps_the_others(self):
        with tempfile.TemporaryDirectory() as d:
            h = steps.Harness("t", d)
            h.finish_step("bench", "FAIL", "first\ttry", time.monotonic())
            h.finish_step("tests", "PASS", "x", time.monotonic())
            h.finish_step("bench", "PASS", "second", time.monotonic())
            lines = [ln.split("\t") for ln in read(os.path.join(d, "steps.tsv")).splitlines()]
            self.assertEqual([ln[:3] for ln in lines], [["tests", "PASS", "x"],
                                                        ["bench", "PASS", "second"]])
            self.assertEqual(list(h.steps), ["tests", "bench"])
            # Only the steps of this invocation decide the exit status.
            self.assertEqual(h.report_and_summary(["sanitizer"]), 0)
            h.skip_step("sanitizer", "the budget left 3 s")
            self.assertEqual(h.report_and_summary([]), 1)
            self.assertIn("NOT RUN", read(os.path.join(d, "gpu-report.md")))

    def test_a_command_past_its_limit_is_killed_and_says_timed_out(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "log")
            t = time.monotonic()
            rc = steps.execute(["sh", "-c", "echo started; sleep 30"], 1, log=log)
            self.assertEqual(rc, 124)
            self.assertLess(time.monotonic() - t, 15)
            self.assertIn("started", read(log))
            n = random.randint(1, 100)
            self.assertEqual(steps.execute(["sh", "-c", f"exit {n}"], 10, log=log), n)
            self.assertEqual(steps.execute(["sh", "-c", "kill -9 $$"], 10, log=log), 137)

    def test_sanitizer_filters(self):
        with tempfile.TemporaryDirectory() as d:
            os.environ.pop("GPU_CHECK_SANITIZER_EXCLUDE", None)
            h = steps.Harness("t", d)
            self.assertEqual(h.make_filter("*Cuda*"), "*Cuda*-*OutOfMemory*")
            h.quick = True
            self.assertEqual(h.make_filter("A.*"), "A.*-*OutOfMemory*:" + steps.QUICK_EXCLUDE)
            h.sanitizer_exclude, h.quick = "", False
            self.assertEqual(h.make_filter("A.*"), "A.*")

    def test_every_sanitizer_pattern_names_tests_that_exist(self):
        # A renamed or deleted test must not leave a pattern of the kernel
        # tests that selects nothing (its kernels would silently lose racecheck
        # and synccheck). GPU_FILTER's patterns are broad on purpose.
        import fnmatch
        import glob
        import re
        names = set()
        for path in glob.glob(os.path.join(ROOT, "tests", "**", "*.cpp"), recursive=True):
            with open(path, encoding="utf-8") as f:
                names.update(f"{a}.{b}" for a, b in
                             re.findall(r"^TEST(?:_F|_P)?\(\s*(\w+),\s*(\w+)\)", f.read(), re.M))
        self.assertGreater(len(names), 500)
        for pattern in steps.KERNEL_FILTER.split(":"):
            with self.subTest(pattern=pattern):
                self.assertTrue(any(fnmatch.fnmatchcase(n, pattern) for n in names),
                                f"no test in tests/ matches the sanitizer pattern {pattern}")

    def test_allowed_gpu_skips_are_the_cudapresent_entries(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "expected_skips.h")
            with open(path, "w") as f:
                f.write('TANDEM_EXPECTED_SKIP("*", NoCuda, "any CUDA test without a device")\n'
                        'TANDEM_EXPECTED_SKIP("A.B*", CudaPresent, "only without a device")\n'
                        'TANDEM_EXPECTED_SKIP("C.D", Asan, "not under ASan")\n')
            self.assertEqual(steps.expected_gpu_skips(path), r"^(A\.B.*)$")
            self.assertEqual(steps.expected_gpu_skips(os.path.join(d, "none.h")), "")

    def test_a_step_the_budget_has_no_room_for_is_not_run(self):
        with tempfile.TemporaryDirectory() as d:
            args = argparse.Namespace(report_dir=d, quick=False, budget=random.randint(16, 49),
                                      bench_cpu=False)
            r = bundle_run.BundleRun(args)
            r.tests()  # 40% of under 50 s: under the 20 s a test run needs
            r.sanitizer()
            lines = read(os.path.join(d, "steps.tsv")).splitlines()
            self.assertEqual([ln.split("\t")[:2] for ln in lines],
                             [["tests", "NOT RUN"], ["sanitizer", "NOT RUN"]])
            self.assertEqual(r.h.report_and_summary(["tests"]), 1)


if __name__ == "__main__":
    unittest.main()
