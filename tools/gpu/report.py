"""The GPU check's results: JUnit counting, benchmark errors and the report
(gpu-report.md + gpu-report.json). Python 3 standard library only; the
commands are `gpu.py junit`, `gpu.py bench-errors` and `gpu.py report`.

Benchmark names follow benchmarks/README.md: <op>/<device>/<size>/<timer>,
device "cpu" or "cuda" (or e.g. "cudnn_direct" for a direct library call).
"""

import glob
import json
import os
import re
import xml.etree.ElementTree as ET

TIME_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# ---- JUnit (ctest --output-junit) ------------------------------------------------


def case_name(c):
    """Suite.Test: ctest's JUnit names cases in full; gtest's XML (the one
    with a "result" attribute) gives the suite in classname, the test in name."""
    name = c.get("name", "?")
    cls = c.get("classname") or ""
    if c.get("result") is not None and cls and not name.startswith(cls + "."):
        return f"{cls}.{name}"
    return name


def parse_junit(paths, allowed_skips):
    if isinstance(paths, str):
        paths = [paths]
    passed, failed, skipped_bad, skipped_ok = [], [], [], []
    allowed = re.compile(allowed_skips) if allowed_skips else None
    for path in paths:
        try:
            cases = list(ET.parse(path).getroot().iter("testcase"))
        except (OSError, ET.ParseError) as e:
            failed.append(f"{os.path.basename(path)} (unreadable results: {e})")
            continue
        for c in cases:
            name = case_name(c)
            status = (c.get("status") or "").lower()
            result = (c.get("result") or "").lower()  # gtest: completed/skipped/suppressed
            if c.find("failure") is not None or c.find("error") is not None or status == "fail":
                failed.append(name)
            elif (c.find("skipped") is not None or status in ("notrun", "disabled", "skipped")
                  or result in ("skipped", "suppressed")):
                # gtest prints "file:line: Skipped" and the reason on the next line;
                # ctest's own message is only "SKIP_REGULAR_EXPRESSION_MATCHED".
                out = c.findtext("system-out") or ""
                m = re.search(r": Skipped\s*\n(.*)", out)
                sk = c.find("skipped")
                reason = m.group(1).strip() if m else (sk.get("message", "") if sk is not None else "")
                entry = {"name": name, "reason": reason[:200]}
                (skipped_ok if allowed and allowed.search(name) else skipped_bad).append(entry)
            else:
                passed.append(name)
    total = len(passed) + len(failed) + len(skipped_bad) + len(skipped_ok)
    summary = (f"{total} tests: {len(passed)} passed, {len(failed)} failed, "
               f"{len(skipped_bad)} skipped (a failure here), {len(skipped_ok)} allowed skips")
    return {
        "total": total,
        "passed": len(passed),
        "failed": failed,
        "skipped": skipped_bad,
        "allowed_skips": skipped_ok,
        "allowed_skips_regex": allowed_skips,
        "summary": summary,
        "ok": total > 0 and not failed and not skipped_bad,
    }


def junit(files, allowed_skips="", out=None):
    """Counts the JUnit results of ctest (--output-junit) or of GoogleTest binaries
    (--gtest_output=xml), several files together, prints them and writes them to
    out (tests.json). A failed test, or a skip whose name allowed_skips (a regex)
    does not match, makes the result not ok; an unreadable file is a failure."""
    res = parse_junit(files, allowed_skips)
    print("tests: " + res["summary"])
    for n in res["failed"][:50]:
        print(f"  FAILED  {n}")
    for s in res["skipped"][:50]:
        print(f"  SKIPPED {s['name']}  {s['reason']}")
    for s in res["allowed_skips"]:
        print(f"  skipped (allowed) {s['name']}  {s['reason']}")
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
    return res


# ---- Google Benchmark JSON --------------------------------------------------------


def load_benchmarks(bench_dir):
    """[(binary, context, [benchmark dict])] for every JSON file in bench_dir."""
    out = []
    for path in sorted(glob.glob(os.path.join(bench_dir, "*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            out.append((os.path.basename(path)[:-5], {"load_error": str(e)}, []))
            continue
        runs = data.get("benchmarks", [])
        # With --benchmark_repetitions: the median where there is one, else
        # the last repetition.
        by_name, medians = {}, {}
        for b in runs:
            b = dict(b)
            b["name"] = b.get("run_name") or b["name"]
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[b["name"]] = b
            else:
                by_name[b["name"]] = b
        by_name.update(medians)
        out.append((os.path.basename(path)[:-5], data.get("context", {}), list(by_name.values())))
    return out


def errored(b):
    return bool(b.get("error_occurred")) or bool(b.get("skipped")) and bool(b.get("error_message"))


def bench_errors(bench_dir):
    """How many benchmark cases in bench_dir/*.json reported an error (an
    unreadable file counts as one)."""
    loaded = load_benchmarks(bench_dir)
    n = sum(1 for _, _, runs in loaded for b in runs if errored(b))
    return n + sum(1 for _, ctx, _ in loaded if "load_error" in ctx)


class Bench:
    """One benchmark case, with its name split into parts."""

    def __init__(self, binary, b):
        self.binary = binary
        self.raw = b
        self.name = b["name"]
        parts = self.name.split("/")
        self.op = parts[0]
        self.device = parts[1] if len(parts) > 1 else ""
        rest = [p for p in parts[2:] if not p.endswith("_time") and not p.startswith(
            ("iterations:", "repeats:", "min_time:", "threads:"))]
        self.size = "/".join(rest)
        self.time_ns = b.get("real_time", 0.0) * TIME_NS.get(b.get("time_unit", "ns"), 1.0)
        self.bps = b.get("bytes_per_second")
        self.ips = b.get("items_per_second")
        self.flops = b.get("FLOPS") or b.get("flops")
        self.error = errored(b)

    @property
    def on_gpu(self):
        return self.device.startswith("cuda") or "direct" in self.device or \
            self.op.startswith(("cublas", "cudnn"))

    def key(self):
        return (self.op, self.device, self.size)


def size_value(size):
    """A sort key for sizes like 16777216, 64x32 or 1M."""
    nums = [int(x) for x in re.findall(r"\d+", size)]
    prod = 1
    for x in nums:
        prod *= x
    return prod if nums else 0


def gbs(bps):
    return f"{bps / 1e9:.1f} GB/s" if bps else "-"


def pct(x):
    return f"{x:.1%}" if x is not None else "-"


def fmt_time(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} us"
    return f"{ns:.0f} ns"


def is_copy(b):
    return "copy" in b.op.lower()


def is_raw_copy(b):
    """A copy by the runtime itself (cudaMemcpy): the ceiling, not a kernel of ours."""
    return is_copy(b) and ("raw" in b.op or "d2d" in b.op)


def copy_section(benches):
    """GPU copy bandwidth: per copy case and size, and the reference value."""
    copies = [b for b in benches if b.on_gpu and is_copy(b) and b.bps and not b.error]
    if not copies:
        return None, {"measured": False,
                      "note": "not measured (no GPU benchmark named *copy* with bytes_per_second)"}
    # The reference: raw device-to-device copy (cudaMemcpy) at its largest
    # size (beyond L2), else any copy at its largest size.
    raw = ([b for b in copies if "raw" in b.op] or [b for b in copies if "d2d" in b.op]
           or copies)
    ref = max(raw, key=lambda b: (size_value(b.size), b.bps))
    rows = [{"binary": b.binary, "name": b.name, "size": b.size, "bytes_per_second": b.bps}
            for b in sorted(copies, key=lambda b: (b.binary, b.op, size_value(b.size)))]
    return ref, {"measured": True, "reference": {"name": ref.name, "binary": ref.binary,
                                                 "bytes_per_second": ref.bps},
                 "cases": rows}


def copy_for(b, benches, ref):
    """The copy bandwidth to hold b against: a copy case of the same binary and
    size (copy_raw/cuda/16M for relu/cuda/16M), else the reference."""
    same = [c for c in benches if c.binary == b.binary and c.on_gpu and is_copy(c) and c.bps
            and not c.error and c.size == b.size and is_raw_copy(c)]
    if same:
        return same[0].bps, same[0].name
    return (ref.bps, ref.name) if ref else (None, None)


OPTIM_RE = re.compile(r"adam|sgd|rmsprop|momentum|optim|lamb|adagrad", re.I)
NET_RE = re.compile(r"lenet|resnet", re.I)


def kernel_families(benches, ref):
    fams = {}
    for b in benches:
        if not b.on_gpu or not b.bps or b.error or is_raw_copy(b) or OPTIM_RE.search(b.op) \
                or "direct" in b.device:
            continue
        fams.setdefault(b.op, []).append(b)
    if not fams:
        return {"measured": False,
                "note": "not measured (no GPU benchmark with a bytes_per_second counter)"}
    out = {"measured": True, "families": []}
    for op in sorted(fams):
        rows = []
        for b in sorted(fams[op], key=lambda b: size_value(b.size)):
            cbps, cname = copy_for(b, benches, ref)
            rows.append({"name": b.name, "binary": b.binary, "size": b.size,
                         "bytes_per_second": b.bps, "copy": cname,
                         "fraction_of_copy": b.bps / cbps if cbps else None})
        fr = [r["fraction_of_copy"] for r in rows if r["fraction_of_copy"] is not None]
        largest = rows[-1]
        out["families"].append({"family": op, "cases": rows,
                                "at_largest_size": largest["fraction_of_copy"],
                                "min_fraction": min(fr) if fr else None})
    return out


GEMM_PAIRS = {"cublas_sgemm": "matmul_f32", "cublas_sgemm_tf32": "matmul_tf32",
              "cublas_dgemm": "matmul_f64", "cublas_hgemm": "matmul_f16",
              "cublas_bf16gemm": "matmul_bf16"}


def tandem_twin(d, by_key):
    """The tandem case a direct-library case is compared with."""
    if d.op in GEMM_PAIRS:
        return by_key.get((GEMM_PAIRS[d.op], d.device, d.size))
    if "direct" in d.device:
        return by_key.get((d.op, "cuda", d.size))
    if d.op.startswith("cublas_"):
        return by_key.get(("matmul_" + d.op[len("cublas_"):], d.device, d.size))
    return None


def direct_section(benches, lib_re, what):
    by_key = {b.key(): b for b in benches if not b.error}
    directs = [b for b in benches if not b.error and lib_re.search(b.name)
               and ("direct" in b.name or b.op.startswith(("cublas", "cudnn")))]
    if not directs:
        return {"measured": False, "note": f"not measured (no benchmark named *{what}*/*direct*)"}
    rows = []
    for d in sorted(directs, key=lambda b: (b.op, size_value(b.size))):
        t = tandem_twin(d, by_key)
        row = {"direct": d.name, "tandem": t.name if t else None,
               "direct_time_ns": d.time_ns, "tandem_time_ns": t.time_ns if t else None,
               "direct_rate": d.flops, "tandem_rate": t.flops if t else None,
               # > 1: tandem slower than the direct call; target <= 1.05.
               "time_ratio": (t.time_ns / d.time_ns) if t and d.time_ns else None}
        rows.append(row)
    return {"measured": True, "cases": rows}


def optim_section(benches, ref):
    opts = [b for b in benches if b.on_gpu and OPTIM_RE.search(b.op) and not b.error]
    if not opts:
        return {"measured": False,
                "note": "not measured (no GPU benchmark named *adam*/*sgd*/*rmsprop*)"}
    by_key = {b.key(): b for b in opts}
    rows = []
    for b in sorted(opts, key=lambda b: (b.op, size_value(b.size))):
        cbps, cname = copy_for(b, benches, ref)
        base = b.op.split("_")[0]
        per = None
        if "per_tensor" not in b.op:
            for cand in (f"{base}_per_tensor", f"{base}_step_per_tensor"):
                per = per or by_key.get((cand, b.device, b.size))
        rows.append({"name": b.name, "size": b.size, "bytes_per_second": b.bps,
                     "time_ns": b.time_ns, "copy": cname,
                     "fraction_of_copy": (b.bps / cbps) if (b.bps and cbps) else None,
                     "per_tensor": per.name if per else None,
                     # > 1: faster than one launch per tensor.
                     "speedup_vs_per_tensor": (per.time_ns / b.time_ns)
                     if per and b.time_ns else None})
    return {"measured": True, "cases": rows}


def nets_section(benches):
    nets = [b for b in benches if NET_RE.search(b.name) and not b.error]
    if not nets:
        return {"measured": False, "note": "not measured (no benchmark named *lenet*/*resnet*)"}
    groups = {}
    for b in nets:
        m = NET_RE.search(b.name)
        # the net's own name part, e.g. "lenet" or "resnet_block"
        part = next((p for p in b.name.split("/") if NET_RE.search(p)), m.group(0))
        dev = "cpu" if "/cpu" in b.name else ("cuda" if "/cuda" in b.name else b.device)
        groups.setdefault((b.op if b.op != part else "", part), {})[dev] = b
    rows = []
    for (op, net), devs in sorted(groups.items()):
        cpu, gpu = devs.get("cpu"), devs.get("cuda")

        def batch(b):
            return (b.ips * b.time_ns / 1e9) if b and b.ips else None

        row = {"net": net, "case": op,
               "cpu_step_ns": cpu.time_ns if cpu else None,
               "gpu_step_ns": gpu.time_ns if gpu else None,
               "cpu_batch": batch(cpu), "gpu_batch": batch(gpu),
               "cpu_images_per_s": cpu.ips if cpu else None,
               "gpu_images_per_s": gpu.ips if gpu else None}
        if cpu and gpu:
            row["step_time_ratio_cpu_over_gpu"] = cpu.time_ns / gpu.time_ns if gpu.time_ns else None
            row["speedup_images_per_s"] = (gpu.ips / cpu.ips) if (gpu.ips and cpu.ips) else None
        rows.append(row)
    return {"measured": True, "cases": rows}


# ---- report -------------------------------------------------------------------------


def read_tsv(path, header=False):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    if header and lines:
        keys = lines[0]
        return [dict(zip(keys, ln)) for ln in lines[1:]]
    return lines


def fmt_version(v, style):
    """CUDA's integer versions: runtime/driver style 13010 -> 13.1 (major*1000 +
    minor*10); library style 91900 -> 9.19.0 (major*10000 + minor*100 + patch)."""
    try:
        n = int(v)
    except (TypeError, ValueError):
        return v or "-"
    if n <= 0:
        return "none" if style == "runtime" else str(n)
    if style == "runtime":
        return f"{n // 1000}.{n % 1000 // 10}"
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def write_report(rd):
    """Writes rd/gpu-report.md and gpu-report.json from what the report directory
    holds: device.tsv, steps.tsv, tests.json, sanitizer.tsv and bench/*.json.
    Every benchmark section says "not measured" when nothing of its kind ran."""
    device = {k: v for k, v in (ln[:2] for ln in read_tsv(os.path.join(rd, "device.tsv"))
                               if len(ln) >= 2)}
    steps = [{"step": s[0], "status": s[1], "detail": s[2] if len(s) > 2 else "",
              "seconds": s[3] if len(s) > 3 else "", "at": s[4] if len(s) > 4 else ""}
             for s in read_tsv(os.path.join(rd, "steps.tsv"))]
    tests = None
    tp = os.path.join(rd, "tests.json")
    if os.path.exists(tp):
        with open(tp) as f:
            tests = json.load(f)
    sanitizer = read_tsv(os.path.join(rd, "sanitizer.tsv"), header=True)
    loaded = load_benchmarks(os.path.join(rd, "bench"))
    benches = [Bench(binary, b) for binary, _, runs in loaded for b in runs]
    errors = [{"binary": b.binary, "name": b.name,
               "message": b.raw.get("error_message", "")} for b in benches if b.error]
    ref, copy = copy_section(benches)
    result = {
        "device": device,
        "steps": steps,
        "tests": tests,
        "sanitizer": sanitizer,
        "benchmarks": {
            "binaries": [{"binary": n, "cases": len(r), "context": c} for n, c, r in loaded],
            "errors": errors,
            "copy_bandwidth": copy,
            "kernel_families": kernel_families(benches, ref),
            "gemm_vs_cublas": direct_section(benches, re.compile(r"cublas", re.I), "cublas"),
            "conv_vs_cudnn": direct_section(benches, re.compile(r"cudnn", re.I), "cudnn"),
            "optimizer_steps": optim_section(benches, ref),
            "nets_cpu_vs_gpu": nets_section(benches),
        },
    }
    with open(os.path.join(rd, "gpu-report.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = render_markdown(result)
    with open(os.path.join(rd, "gpu-report.md"), "w") as f:
        f.write(md)
    print(f"wrote {os.path.join(rd, 'gpu-report.md')} and gpu-report.json")


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(x) if x is not None else "-" for x in r) + " |")
    return "\n".join(out)


def render_markdown(r):
    d = r["device"]
    L = ["# tandem GPU check", ""]
    L.append(f"Started {d.get('check_started', '?')} on `{d.get('host', '?')}`, "
             f"source `{d.get('source_dir', '?')}`, commit {d.get('commit', '?')}.")
    L += ["", "## Device and versions", ""]
    gpus = sorted({k.split("_")[0] for k in d if re.match(r"gpu\d+_", k)})
    rows = [[g, d.get(f"{g}_name"), d.get(f"{g}_compute_cap"), d.get(f"{g}_memory"),
             d.get(f"{g}_driver")] for g in gpus]
    if rows:
        L.append(table(["GPU", "name", "compute capability", "memory", "driver"], rows))
    else:
        L.append(f"No GPU: {d.get('gpu', 'unknown')}")
    L.append("")
    def both(key, style):
        return (f"{fmt_version(d.get(key + '_runtime'), style)} / "
                f"{fmt_version(d.get(key + '_header'), style)}")

    vrows = [
        ["CUDA toolkit (nvcc)", d.get("toolkit_version", "-"), d.get("nvcc", "-")],
        ["CUDA runtime (loaded / headers)",
         both("cudart", "runtime"),
         d.get("lib_cudart", "")],
        ["CUDA driver API", fmt_version(d.get("cuda_driver_api"), "runtime"), ""],
        ["cuBLAS (loaded / headers)",
         both("cublas", "library"),
         d.get("lib_cublas", "")],
        ["cuDNN (loaded / headers)",
         both("cudnn", "library"),
         d.get("lib_cudnn", d.get("cudnn_library_found", ""))],
        ["compute-sanitizer", "", d.get("compute_sanitizer", "-")],
        ["build", f"{d.get('build_type', '-')}, sm {d.get('cuda_architectures', '-')}",
         d.get("build_dir", "")],
    ]
    L.append(table(["component", "version", "from"], vrows))
    L += ["", "## Steps", ""]
    L.append(table(["step", "status", "detail", "seconds", "finished (UTC)"],
                   [[s["step"], s["status"], s["detail"], s["seconds"], s["at"]]
                    for s in r["steps"]]))
    L += ["", "## Tests (ctest, TANDEM_REQUIRE_CUDA=1)", ""]
    t = r["tests"]
    if not t:
        L.append("not run")
    else:
        L.append(t["summary"] + ".")
        for n in t["failed"][:100]:
            L.append(f"- FAILED `{n}`")
        for s in t["skipped"][:100]:
            L.append(f"- SKIPPED (counts as a failure) `{s['name']}`: {s['reason']}")
        for s in t["allowed_skips"]:
            L.append(f"- skipped, allowed (`{t['allowed_skips_regex']}`) `{s['name']}`: "
                     f"{s['reason']}")
    L += ["", "## compute-sanitizer", ""]
    if not r["sanitizer"]:
        L.append("not run")
    else:
        L.append(table(["tool", "test binary", "status", "errors", "cases", "seconds"],
                       [[s.get("tool"), s.get("binary"), s.get("status"), s.get("errors"),
                         s.get("cases"), s.get("seconds")] for s in r["sanitizer"]]))
    b = r["benchmarks"]
    L += ["", "## Benchmarks", ""]
    if not b["binaries"]:
        L.append("not run (no benchmark JSON in the report directory)")
        return "\n".join(L) + "\n"
    L.append("Binaries: " + ", ".join(
        f"`{x['binary']}` (unreadable JSON: {x['context']['load_error']})"
        if "load_error" in x["context"] else f"`{x['binary']}` ({x['cases']} cases)"
        for x in b["binaries"]) + ".")
    if b["errors"]:
        L += ["", f"{len(b['errors'])} case(s) reported an error:"]
        L += [f"- `{e['binary']}` `{e['name']}`: {e['message']}" for e in b["errors"][:50]]
    L += ["", "### Copy bandwidth (device to device, bytes read + written)", ""]
    c = b["copy_bandwidth"]
    if not c["measured"]:
        L.append(c["note"])
    else:
        L.append(f"Reference: `{c['reference']['name']}` = "
                 f"**{gbs(c['reference']['bytes_per_second'])}**.")
        L.append("")
        L.append(table(["binary", "case", "bandwidth"],
                       [[x["binary"], f"`{x['name']}`", gbs(x["bytes_per_second"])]
                        for x in c["cases"]]))
    L += ["", "### Custom kernels against copy bandwidth (target: >= 85% at sizes beyond L2)",
          ""]
    k = b["kernel_families"]
    if not k["measured"]:
        L.append(k["note"])
    else:
        if not c["measured"]:
            L += ["Copy bandwidth not measured: bandwidths only, no fractions.", ""]
        L.append(table(["family", "at largest size", "lowest", "cases"],
                       [[f"`{f['family']}`", pct(f["at_largest_size"]), pct(f["min_fraction"]),
                         "; ".join(f"{x['size']}: {gbs(x['bytes_per_second'])} "
                                   f"({pct(x['fraction_of_copy'])})" for x in f["cases"])]
                        for f in k["families"]]))
    for key, title, what in (("gemm_vs_cublas", "GEMM against direct cuBLAS", "cuBLAS"),
                             ("conv_vs_cudnn", "Convolution against direct cuDNN", "cuDNN")):
        L += ["", f"### {title} (target: tandem's time within 5%)", ""]
        s = b[key]
        if not s["measured"]:
            L.append(s["note"])
            continue
        L.append(table(["direct call", "tandem case", f"{what} time", "tandem time",
                        "tandem / direct time"],
                       [[f"`{x['direct']}`", f"`{x['tandem']}`" if x["tandem"] else "no twin",
                         fmt_time(x["direct_time_ns"]),
                         fmt_time(x["tandem_time_ns"]) if x["tandem_time_ns"] else "-",
                         f"{x['time_ratio']:.3f}" if x["time_ratio"] else "-"]
                        for x in s["cases"]]))
    L += ["", "### Fused optimizer steps", ""]
    o = b["optimizer_steps"]
    if not o["measured"]:
        L.append(o["note"])
    else:
        L.append(table(["case", "time", "bandwidth", "of copy", "vs one launch per tensor"],
                       [[f"`{x['name']}`", fmt_time(x["time_ns"]), gbs(x["bytes_per_second"]),
                         pct(x["fraction_of_copy"]),
                         f"{x['speedup_vs_per_tensor']:.2f}x faster"
                         if x["speedup_vs_per_tensor"] else "-"] for x in o["cases"]]))
    L += ["", "### LeNet and ResNet-block training step (forward + backward), CPU vs GPU", ""]
    n = b["nets_cpu_vs_gpu"]
    if not n["measured"]:
        L.append(n["note"])
    else:
        def img(v):
            return f"{v:,.0f}" if v else "-"

        def bt(v):
            return f"{v:.0f}" if v else "?"

        L.append(table(["net", "CPU step (batch)", "GPU step (batch)", "CPU / GPU step time",
                        "CPU images/s", "GPU images/s", "GPU speedup (images/s)"],
                       [[x["net"],
                         f"{fmt_time(x['cpu_step_ns'])} ({bt(x['cpu_batch'])})"
                         if x["cpu_step_ns"] else "not measured",
                         f"{fmt_time(x['gpu_step_ns'])} ({bt(x['gpu_batch'])})"
                         if x["gpu_step_ns"] else "not measured",
                         f"{x['step_time_ratio_cpu_over_gpu']:.1f}"
                         if x.get("step_time_ratio_cpu_over_gpu") else "-",
                         img(x["cpu_images_per_s"]), img(x["gpu_images_per_s"]),
                         f"{x['speedup_images_per_s']:.1f}x"
                         if x.get("speedup_images_per_s") else "-"] for x in n["cases"]]))
        L.append("")
        L.append("Batch sizes may differ between devices; the images/s speedup is the fair one.")
    return "\n".join(L) + "\n"
