#!/usr/bin/env python3
"""tandem's GPU harness (Python 3.9+, standard library only).

  check         the whole GPU check on a machine with a GPU and a toolchain:
                versions, a build for this GPU, the tests, compute-sanitizer,
                the benchmarks and one report
  bundle        builds here, without a GPU, the self-contained archive that
                checks a GPU machine without a toolchain (docs/gpu-runs.md)
  run           inside the unpacked bundle (its run.sh): the same steps within
                a time budget, building nothing
  report, junit, bench-errors   the report's parts on their own

Exit status: 0 every step that ran passed; 1 a step failed or did not run;
2 no usable GPU (after the info step); 3 a required tool or library is
missing; 64 bad usage."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bundle  # noqa: E402
import check  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import steps  # noqa: E402

CHECK_STEPS = ("build", "tests", "sanitizer", "bench")
RUN_STEPS = ("tests", "async", "sanitizer", "bench", "train")

CHECK_HELP = """steps (each prints the exact commands it runs):
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

RUN_HELP = """steps, in this order, each capped by its share of the budget (what the
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


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), not argparse's 2, which means "no GPU"."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(steps.EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive(what):
    def parse(s):
        if not s.isdigit() or int(s) < 1:
            raise argparse.ArgumentTypeError(f"must be a positive number{what}, not '{s}'")
        return int(s)
    return parse


def step_list(s):
    return [x for x in s.split(",") if x]


def parents():
    """The options several commands share, each declared once."""
    def parent(*options):
        p = argparse.ArgumentParser(add_help=False)
        for flags, kw in options:
            p.add_argument(*flags, **kw)
        return p

    jobs = os.environ.get("JOBS") or str(os.cpu_count() or 1)
    return {
        "report_dir": parent((["--report-dir"], dict(
            metavar="DIR", help="the report tree (check: <build dir>/report; run: "
            "/tmp/tandem-gpu-report)"))),
        "only": parent((["--only"], dict(
            type=step_list, metavar="STEPS", help="run only these steps (comma-separated); "
            "info and report always run")), (["--quick"], dict(
                action="store_true", help="smaller sanitizer filters (float32 only, no "
                "gradcheck sweep, no CIFAR-sized layers)"))),
        "build": parent((["--build-dir"], dict(
            metavar="DIR", help="an existing CUDA build (check: used as it is, no configure or "
            "build; bundle: the build to pack, default build/ci)")), (["--skip-build"], dict(
                action="store_true", help="use the build directory as it is, do not (re)build it"
            ))),
        "jobs": parent((["--jobs"], dict(
            type=positive(""), default=jobs, metavar="N",
            help="build (and ctest) parallelism (default: JOBS or nproc)"))),
        "out": parent((["--out"], dict(
            metavar="DIR", help="where the results go (bundle: the archive, default "
            "build/gpu-bundle; run: gpu-report.md/.json, run.log and report.tar.gz, default $OUT "
            "when set, else none)"))),
        "cifar10": parent((["--cifar10"], dict(
            metavar="FILE", help="a CIFAR-10 source that `tandem train --data` takes (e.g. "
            "../shared/data/cifar10-jpeg.tar.xz) for the train step"))),
    }


def build_parser():
    p = Parser(prog="gpu.py", description=__doc__.split("\n\n")[0].strip(),
               epilog=__doc__.split("\n\n")[-1], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    par = parents()
    raw = argparse.RawDescriptionHelpFormatter
    c = sub.add_parser("check", parents=[par["build"], par["report_dir"], par["only"], par["jobs"]],
                       help="the GPU check with a build on this machine",
                       description="The whole GPU check in one command (exit 2 without a GPU).",
                       epilog=CHECK_HELP, formatter_class=raw)
    for s in ("tests", "sanitizer", "bench"):
        c.add_argument(f"--skip-{s}", action="store_true", help=f"leave the {s} step out")
    b = sub.add_parser("bundle", parents=[par["build"], par["out"], par["cifar10"], par["jobs"]],
                       help="pack the prebuilt GPU bundle (no GPU needed)",
                       description=bundle.__doc__, formatter_class=raw,
                       epilog="--build-dir defaults to build/ci, --out to build/gpu-bundle (the "
                       "device call carries that folder). Exit status: 0 packed and checked; 1 a "
                       "step failed; 64 bad usage.")
    b.add_argument("--max-mib", type=positive(""), default=60, metavar="N",
                   help="size limit of the archive in MiB (default 60: the device tool carries "
                   "64 MiB in all)")
    r = sub.add_parser("run", parents=[par["report_dir"], par["only"], par["out"], par["cifar10"]],
                       help="the bundle's run.sh: the GPU check within a time budget",
                       description="Checks the prebuilt tandem on this machine's GPU within a "
                       "time budget, building nothing.", epilog=RUN_HELP, formatter_class=raw)
    r.add_argument("--budget", type=positive(" of seconds"), default=420, metavar="S",
                   help="seconds for the whole run (default 420)")
    r.add_argument("--train-seconds", type=positive(" of seconds"), default=180, metavar="S",
                   help="at most this long for the train step (default 180)")
    r.add_argument("--bench-cpu", action="store_true",
                   help="also the benchmarks' CPU cases (default: CUDA and the direct "
                   "cuBLAS/cuDNN baselines only)")
    r.add_argument("--without-gpu", action="store_true",
                   help="go on past the info step without a GPU (to test the bundle itself: "
                   "every GPU test then fails)")
    j = sub.add_parser("junit", help="count JUnit results (ctest's or gtest's) into tests.json",
                       description=report.junit.__doc__)
    j.add_argument("file", nargs="+")
    j.add_argument("--allowed-skips", default="", metavar="REGEX")
    j.add_argument("--out", metavar="FILE")
    e = sub.add_parser("bench-errors", help="how many benchmark cases in DIR/*.json errored")
    e.add_argument("dir")
    rp = sub.add_parser("report", help="write REPORT_DIR/gpu-report.md and .json",
                        description=report.write_report.__doc__)
    rp.add_argument("report_dir")
    return p, {"check": c, "run": r, "bundle": b}


def main(argv):
    parser, subs = build_parser()
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.cmd in ("check", "run"):
        allowed = CHECK_STEPS if args.cmd == "check" else RUN_STEPS
        for s in args.only or []:
            if s not in allowed + ("info", "report"):
                subs[args.cmd].error(f"unknown step '{s}' in --only (steps: {', '.join(allowed)})")
        args.steps = set(args.only) if args.only is not None else {
            s for s in allowed if not getattr(args, f"skip_{s}", False)}
    if args.cmd == "check":
        try:
            timeouts = {k: steps.positive_env(f"GPU_CHECK_{v}", d) for k, v, d in (
                ("build", "TIMEOUT_BUILD", 3600), ("tests", "TIMEOUT_TESTS", 1800),
                ("sanitizer", "TIMEOUT_SANITIZER", 900), ("sanitizer_budget", "SANITIZER_BUDGET",
                                                          2400), ("bench", "TIMEOUT_BENCH", 900))}
        except ValueError as e:
            subs["check"].error(str(e))
        return check.main(args, timeouts)
    if args.cmd == "bundle":
        if args.cifar10 and not os.path.isfile(args.cifar10):
            subs["bundle"].error(f"--cifar10: no file {args.cifar10}")
        return bundle.main(args)
    if args.cmd == "run":
        return run.main(args)
    if args.cmd == "junit":
        return 0 if report.junit(args.file, args.allowed_skips, args.out)["ok"] else 1
    if args.cmd == "bench-errors":
        print(report.bench_errors(args.dir))
        return 0
    report.write_report(args.report_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
