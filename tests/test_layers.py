#!/usr/bin/env python3
"""Layers only look down (docs/design.md, "Layers"): every `#include "..."` in
src/, kernels/ and include/tandem/ names a header of the file's own layer or of
a layer below it. Fails naming each file, line and include that looks up (or
sideways, at a sibling layer of the same rank: cpu and cuda never include each
other), any file or project header the table below does not place, and any
file outside src/ops/ that includes the backend switch (ops/dispatch.h).

  test_layers.py SOURCE_DIR
"""
import os
import re
import sys

# Layer -> rank. A file may include headers of its own layer and of layers of
# a lower rank; layers of one rank are siblings and may not include each other.
RANK = {
    "core": 0,  # Tensor, Storage, allocators' interface, shared host/device math
    "cpu": 1,  # the backends: cpu::fn ...
    "cuda": 1,  # ... and cuda::fn (src/cuda host code + kernels/*.cu)
    "autograd": 2,  # the graph ops record into (autograd/record.h), the engine
    "ops": 3,  # public ops: checks, allocation, backend switch, recording
    "nn": 4,
    "optim": 5,
    "dist": 5,  # process groups, DataParallel, SyncBatchNorm (over nn, autograd, ops)
    "data": 6,  # the loader shards through dist::shard_indices
    "check": 6,  # the op registry: records over ops, nn and the optimizers
    "models": 6,
    "plot": 6,
    "serialize": 7,  # checkpoints of modules and optimizers
    "train": 8,  # Trainer: data, nn, optim, serialize
    "umbrella": 9,  # tandem/tandem.h, tandem/nn.h: everything
}

# Source directories (prefix of the path relative to the root) -> layer.
DIRS = [
    ("src/core/", "core"),
    # The emulated CUDA device stands where the driver and NVIDIA's libraries
    # do: below everything, including nothing of tandem's.
    ("src/emu/", "core"),
    ("src/cpu/", "cpu"),
    ("src/cuda/", "cuda"),
    ("kernels/", "cuda"),
    ("src/autograd/", "autograd"),
    ("src/ops/", "ops"),
    ("src/nn/", "nn"),
    ("src/optim/", "optim"),
    ("src/dist/", "dist"),
    ("src/check/", "check"),
    ("src/data/", "data"),
    ("src/models/", "models"),
    ("src/plot/", "plot"),
    ("src/serialize/", "serialize"),
    ("src/train/", "train"),
]

# Public headers (include/tandem/...) -> layer. The plain types are core.
PUBLIC = {
    "tandem/build_info.h": "core",
    "tandem/config.h": "core",
    "tandem/cpu.h": "core",
    "tandem/cuda.h": "core",
    "tandem/device.h": "core",
    "tandem/dtype.h": "core",
    "tandem/error.h": "core",
    "tandem/generator.h": "core",
    "tandem/op_list.h": "core",
    "tandem/tensor.h": "core",
    "tandem/autograd.h": "autograd",
    "tandem/gradcheck.h": "autograd",
    "tandem/ops.h": "ops",
    "tandem/loss.h": "ops",
    "tandem/nn/": "nn",
    "tandem/optim.h": "optim",
    "tandem/optim/": "optim",
    "tandem/dist.h": "dist",
    "tandem/check.h": "check",
    "tandem/data.h": "data",
    "tandem/models.h": "models",
    "tandem/plot.h": "plot",
    "tandem/serialize.h": "serialize",
    "tandem/train.h": "train",
    "tandem/nn.h": "umbrella",
    "tandem/tandem.h": "umbrella",
}

# Headers only their own directory may include: the backend switch, so that
# only src/ops/ calls a backend (nn and optim go through ops such as
# src/ops/foreach.h).
PRIVATE = {"ops/dispatch.h": "src/ops/"}

SOURCE_SUFFIXES = (".h", ".cpp", ".cu", ".cuh", ".inc")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of_path(rel):
    """The layer of a file (relative to the root), or None."""
    for prefix, layer in DIRS:
        if rel.startswith(prefix):
            return layer
    if rel.startswith("include/"):
        return layer_of_public(rel[len("include/") :])
    return None


def layer_of_public(name):
    if name in PUBLIC:
        return PUBLIC[name]
    for key, layer in PUBLIC.items():
        if key.endswith("/") and name.startswith(key):
            return layer
    return None


def layer_of_include(root, name):
    """The layer of an included header, by where it resolves; None when it is
    not a project header (a system or third-party header in quotes)."""
    if name.startswith("tandem/"):
        return layer_of_public(name) or "unknown public header"
    if os.path.exists(os.path.join(root, "src", name)):
        return layer_of_path("src/" + name) or "unknown src directory"
    if os.path.exists(os.path.join(root, "kernels", name)):
        return layer_of_path("kernels/" + name)
    return None


def check(root):
    problems = []
    files = 0
    for top in ("src", "kernels", "include/tandem"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for n in sorted(names):
                if not n.endswith(SOURCE_SUFFIXES):
                    continue
                path = os.path.join(dirpath, n)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                own = layer_of_path(rel)
                if own is None:
                    problems.append(f"{rel}: not in any layer (add its directory to DIRS/PUBLIC)")
                    continue
                files += 1
                with open(path, encoding="utf-8") as f:
                    lines = f.readlines()
                for lineno, line in enumerate(lines, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    name = m.group(1)
                    if name in PRIVATE and not rel.startswith(PRIVATE[name]):
                        problems.append(
                            f'{rel}:{lineno}: #include "{name}": only {PRIVATE[name]} may '
                            "include it (only the ops call a backend)"
                        )
                    inc = layer_of_include(root, name)
                    if inc is None:
                        continue
                    if inc not in RANK:
                        problems.append(f'{rel}:{lineno}: #include "{name}": {inc}')
                    elif inc != own and RANK[inc] >= RANK[own]:
                        how = "above" if RANK[inc] > RANK[own] else "beside"
                        problems.append(
                            f'{rel}:{lineno}: #include "{name}": layer {own} includes '
                            f"layer {inc} ({how} it)"
                        )
    return files, problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    files, problems = check(root)
    if files < 50:
        print(f"only {files} source files found under {root}: wrong root?")
        return 1
    order = " < ".join(
        "/".join(k for k, v in RANK.items() if v == r) for r in sorted(set(RANK.values()))
    )
    if problems:
        print(f"layers that look up ({len(problems)}); the order is {order}:")
        for p in problems:
            print("  " + p)
        return 1
    print(f"{files} files, every include looks down ({order})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
