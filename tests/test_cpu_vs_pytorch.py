#!/usr/bin/env python3
"""benchmarks/cpu_vs_pytorch.py end to end on two cheap cases: it runs the
tandem_cpu_compare server, reports positive times (and ratios when PyTorch is
importable, which the tests do not need), writes its JSON, and rejects unknown
case names with a non-zero exit.

  test_cpu_vs_pytorch.py SOURCE_DIR COMPARE_BIN
"""
import json
import os
import subprocess
import sys
import tempfile

src, binary = sys.argv[1], sys.argv[2]
script = os.path.join(src, "benchmarks", "cpu_vs_pytorch.py")
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "r.json")
    run = subprocess.run([sys.executable, script, "--bin", binary, "--cases", "relu,softmax",
                          "--rounds", "2", "--threads", "1", "--json", out],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "relu" in run.stdout and "softmax" in run.stdout, run.stdout
    with open(out) as f:
        r = json.load(f)
    assert r["threads"] == 1, r
    names = [c["case"] for c in r["results"]]
    assert sorted(names) == ["relu", "softmax"], names
    for c in r["results"]:
        assert c["tandem_ms"] > 0 and len(c["tandem_all_ms"]) == 2, c
        if r["torch"]:
            assert c["torch_ms"] > 0 and abs(c["ratio"] - c["torch_ms"] / c["tandem_ms"]) < 1e-9, c
    bad = subprocess.run([sys.executable, script, "--bin", binary, "--cases", "relu,nonsense"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown cases: nonsense" in (bad.stderr + bad.stdout), bad
    # The server answers an unknown case with an error line, not a crash.
    srv = subprocess.run([binary], input="nonsense 1\nlist\n", capture_output=True, text=True,
                         timeout=60)
    lines = [json.loads(l) for l in srv.stdout.splitlines()]
    assert srv.returncode == 0 and "unknown case" in lines[0]["error"], srv.stdout
    assert "lenet_b64" in lines[1]["cases"], lines[1]
print("cpu_vs_pytorch: ok")
