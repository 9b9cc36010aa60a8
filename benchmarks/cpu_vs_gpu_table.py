#!/usr/bin/env python3
"""A markdown CPU-vs-GPU table from `tandem bench train --json` outputs.

    tandem bench train --model lenet --batch-size 128 --json > $(hostname)-lenet.json
    python3 benchmarks/cpu_vs_gpu_table.py *.json > table.md

One row per file and device, naming the machine each figure came from
(hostname, CPU model, GPU name, as `tandem bench train --json` records them),
plus the GPU/CPU speed ratio when the file has both devices. Standard library
only. Exit 1 (naming the file) for a file that is not such an output.
"""
import json
import sys


def fmt_bytes(b):
    if b is None:
        return "-"
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def rows_of(path):
    with open(path) as f:
        r = json.load(f)
    try:
        host = r["host"]
        machine = host["hostname"]
        cpu = host.get("cpu_model") or "?"
        gpu = host.get("gpu_name") or "none"
        ratio = r.get("gpu_cpu_speed_ratio")
        out = []
        for res in r["results"]:
            out.append([
                machine, cpu, gpu, r["model"], str(r["batch_size"]), res["device"],
                f"{res['ms_per_step']:.2f}", f"{res['images_per_second']:.1f}",
                fmt_bytes(res.get("peak_memory_bytes")),
                f"{ratio:.1f}x" if (ratio is not None and res["device"] == "cuda") else "",
            ])
        return out
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a `tandem bench train --json` output (missing {e})")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    header = ["machine", "CPU", "GPU", "model", "batch", "device", "ms/step", "images/s", "peak memory",
              "GPU/CPU"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path in argv[1:]:
        try:
            for row in rows_of(path):
                lines.append("| " + " | ".join(row) + " |")
        except (OSError, ValueError) as e:
            print(f"cpu_vs_gpu_table.py: {path}: {e}", file=sys.stderr)
            return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
