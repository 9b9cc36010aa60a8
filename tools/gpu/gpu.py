#!/usr/bin/env python3
"""tandem's GPU harness (Python 3.9+, standard library only): `gpu.py COMMAND
--help` tells each command's steps and options.

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
from steps import EXIT_USAGE  # noqa: E402

STEPS = {"check": ("build", "tests", "sanitizer", "bench"),
         "run": ("tests", "async", "sanitizer", "bench", "train")}
CHECK_LIMITS = {"build": ("TIMEOUT_BUILD", 3600), "tests": ("TIMEOUT_TESTS", 1800),
                "sanitizer": ("TIMEOUT_SANITIZER", 900),
                "sanitizer_budget": ("SANITIZER_BUDGET", 2400), "bench": ("TIMEOUT_BENCH", 900)}


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), not argparse's 2, which means "no GPU"."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive(s, what=""):
    if not s.isdigit() or int(s) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number{what}, not '{s}'")
    return int(s)


def seconds(s):
    return positive(s, " of seconds")


def parent(*options):
    """A parser of options that several commands share, each declared once."""
    p = argparse.ArgumentParser(add_help=False)
    for flag, kw in options:
        p.add_argument(flag, **kw)
    return p


def build_parser():
    report_dir = parent(("--report-dir", dict(metavar="DIR", help=(
        "the report tree (check: <build dir>/report; run: /tmp/tandem-gpu-report)"))))
    only = parent(("--only", dict(type=lambda s: [x for x in s.split(",") if x], metavar="STEPS",
                                  help="only these steps (comma-separated); info and report "
                                  "always run")),
                  ("--quick", dict(action="store_true", help="smaller sanitizer filters "
                                   "(float32 only, no gradcheck sweep, no CIFAR-sized layers)")))
    build = parent(("--build-dir", dict(metavar="DIR", help=(
        "an existing CUDA build (check: used as it is, no configure or build; bundle: the build "
        "to pack, default build/ci)"))),
        ("--skip-build", dict(action="store_true", help="use the build as it is, no (re)build")))
    jobs = parent(("--jobs", dict(type=positive, default=os.environ.get("JOBS") or
                                  str(len(os.sched_getaffinity(0))), metavar="N",
                                  help="build (and ctest) parallelism (default: JOBS or nproc)")))
    out = parent(("--out", dict(metavar="DIR", help=(
        "where the results go (bundle: the archive, default build/gpu-bundle; run: gpu-report.md"
        "/.json, run.log and report.tar.gz, default $OUT when set, else none)"))))
    cifar10 = parent(("--cifar10", dict(metavar="FILE", help=(
        "a CIFAR-10 source that `tandem train --data` takes (e.g. "
        "../shared/data/cifar10-jpeg.tar.xz) for the train step"))))

    raw = argparse.RawDescriptionHelpFormatter
    p = Parser(prog="gpu.py", description=__doc__, formatter_class=raw)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    c = sub.add_parser("check", parents=[build, report_dir, only, jobs], formatter_class=raw,
                       help="the GPU check with a build on this machine",
                       description=check.__doc__)
    for s in STEPS["check"][1:]:
        c.add_argument(f"--skip-{s}", action="store_true", help=f"leave the {s} step out")
    b = sub.add_parser("bundle", parents=[build, out, cifar10, jobs], formatter_class=raw,
                       help="pack the prebuilt GPU bundle (no GPU needed)",
                       description=bundle.__doc__)
    b.add_argument("--max-mib", type=positive, default=60, metavar="N", help=(
        "size limit of the archive in MiB (default 60: the device tool carries 64 MiB in all)"))
    r = sub.add_parser("run", parents=[report_dir, only, out, cifar10], formatter_class=raw,
                       help="the bundle's run.sh: the GPU check within a time budget",
                       description=run.__doc__)
    r.add_argument("--budget", type=seconds, default=420, metavar="S",
                   help="seconds for the whole run (default 420)")
    r.add_argument("--train-seconds", type=seconds, default=180, metavar="S",
                   help="at most this long for the train step (default 180)")
    r.add_argument("--bench-cpu", action="store_true", help="also the benchmarks' CPU cases "
                   "(default: CUDA and the direct cuBLAS/cuDNN baselines only)")
    r.add_argument("--without-gpu", action="store_true", help="go on past the info step "
                   "without a GPU (to test the bundle itself: every GPU test then fails)")
    j = sub.add_parser("junit", help="count JUnit results (ctest's or gtest's) into tests.json",
                       description=report.junit.__doc__)
    j.add_argument("file", nargs="+")
    j.add_argument("--allowed-skips", default="", metavar="REGEX")
    j.add_argument("--out", metavar="FILE")
    sub.add_parser("bench-errors", help="print how many benchmark cases in DIR/*.json "
                   "reported an error").add_argument("dir")
    sub.add_parser("report", help="write REPORT_DIR/gpu-report.md and .json",
                   description=report.write_report.__doc__).add_argument("report_dir")
    return p, {"check": c, "run": r, "bundle": b}


def main(argv):
    parser, subs = build_parser()
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.cmd in STEPS:
        for s in args.only or []:
            if s not in STEPS[args.cmd] + ("info", "report"):
                subs[args.cmd].error(f"unknown step '{s}' in --only (steps: "
                                     f"{', '.join(STEPS[args.cmd])})")
        args.steps = set(args.only) if args.only is not None else {
            s for s in STEPS[args.cmd] if not getattr(args, f"skip_{s}", False)}
    if args.cmd == "check":
        limits = {}
        for key, (var, default) in CHECK_LIMITS.items():
            try:
                limits[key] = seconds(os.environ.get(f"GPU_CHECK_{var}", str(default)))
            except argparse.ArgumentTypeError as e:
                subs["check"].error(f"GPU_CHECK_{var} {e}")
        return check.main(args, limits)
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
    else:
        report.write_report(args.report_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
