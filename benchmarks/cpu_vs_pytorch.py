#!/usr/bin/env python3
"""tandem against PyTorch on the CPU: the same work, the same threads, interleaved.

Runs the cases of benchmarks/cpu_compare.cpp (the `tandem_cpu_compare` server)
and the same cases in PyTorch, round after round (tandem, PyTorch, tandem, ...),
and prints the median milliseconds of each side and their ratio, PyTorch time /
tandem time (above 1: tandem is faster). Needs `import torch` (Debian's
python3-torch: `tools/setup.sh --bench` installs it); without it, it prints
tandem's times alone.

  benchmarks/cpu_vs_pytorch.py --bin build/cpu/benchmarks/tandem_cpu_compare
  benchmarks/cpu_vs_pytorch.py --bin ... --cases lenet_b64,softmax --rounds 7 --json out.json

Threads: both sides use --threads (default: the CPUs this process may use);
tandem through OMP_NUM_THREADS, PyTorch through torch.set_num_threads.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = [
    # name, what, reps per round
    ("lenet_b64", "LeNet training step, batch 64 (SGD momentum)", 10),
    ("lenet_b128", "LeNet training step, batch 128", 10),
    ("cbr_b64", "conv-BN-ReLU-pool net 64/128/256, batch 64", 2),
    ("resnet_fast_b64", "resnet-fast (airbench94's net) training step, batch 64", 1),
    ("cbr_b128", "conv-BN-ReLU-pool net 64/128/256, batch 128", 2),
    ("conv_fwd", "conv2d 64->64 3x3 pad 1, 32x32, batch 128, forward", 3),
    ("conv_fwd_bwd", "the same conv, forward + backward", 2),
    ("conv3_64_32", "conv2d 3->64 3x3 at 32x32 (first layer), batch 128, fwd + bwd", 3),
    ("conv128_16", "conv2d 128->128 3x3 at 16x16, batch 128, fwd + bwd", 2),
    ("conv256_8", "conv2d 256->256 3x3 at 8x8, batch 128, fwd + bwd", 2),
    ("softmax", "softmax [4096, 1000]", 10),
    ("log_softmax", "log_softmax [4096, 1000]", 10),
    ("cross_entropy", "cross_entropy forward + backward [4096, 1000]", 10),
    ("exp", "exp, 4M float32", 20),
    ("log", "log, 4M float32", 20),
    ("tanh", "tanh, 4M float32", 20),
    ("sigmoid", "sigmoid, 4M float32", 20),
    ("relu", "relu, 4M float32", 20),
    ("add", "add, 4M float32", 20),
    ("adam_10m", "Adam step, 10M params in 100 tensors (PyTorch: foreach)", 5),
    ("sgd_momentum_10m", "SGD momentum step, 10M params (PyTorch: foreach)", 5),
    ("gemm_1024", "matmul 1024^3 float32", 5),
]


def torch_cases(torch):
    """name -> a function doing one repetition of the case in PyTorch."""
    nn = torch.nn
    F = torch.nn.functional
    g = torch.Generator().manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def lenet():
        return nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def cbr():
        layers, cin = [], 3
        for w in (64, 128, 256):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.MaxPool2d(2)]
            cin = w
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 16, 10))

    def resnet_fast():
        """tandem's resnet-fast preset (src/models/presets.cpp): a frozen 2x2
        whitening conv 3->24, GELU, three groups (conv3x3 -> max-pool 2 -> BN ->
        GELU -> conv3x3 -> BN -> GELU) of 64, 256, 256 channels with the BN
        weights frozen at 1, a 3x3 max-pool, a bias-free Linear scaled by 1/9."""
        def bn(c):
            b = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)
            b.weight.requires_grad_(False)
            return b

        def group(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), bn(cout),
                    nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), bn(cout),
                    nn.GELU()]

        class Scale(nn.Module):
            def forward(self, x):
                return x * (1.0 / 9.0)

        whiten = nn.Conv2d(3, 24, 2, bias=False)
        whiten.weight.requires_grad_(False)
        return nn.Sequential(whiten, nn.GELU(), *group(24, 64), *group(64, 256),
                             *group(256, 256), nn.MaxPool2d(3), nn.Flatten(),
                             nn.Linear(256, 10, bias=False), Scale())

    def train_step(net, batch):
        x = randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,), generator=g)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def run():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
        return run

    def params_10m():
        ps = []
        for _ in range(100):
            p = randn(100000).requires_grad_(True)
            p.grad = randn(100000)
            ps.append(p)
        return ps

    def make(name):
        if name in ("lenet_b64", "lenet_b128"):
            return train_step(lenet(), 64 if name == "lenet_b64" else 128)
        if name == "resnet_fast_b64":
            return train_step(resnet_fast(), 64)
        if name in ("cbr_b64", "cbr_b128"):
            return train_step(cbr(), 64 if name == "cbr_b64" else 128)
        if name in ("conv_fwd", "conv_fwd_bwd"):
            x, w, b = randn(128, 64, 32, 32), randn(64, 64, 3, 3) * 0.05, randn(64)
            if name == "conv_fwd":
                def fwd():
                    with torch.no_grad():
                        F.conv2d(x, w, b, 1, 1)
                return fwd
            for t in (x, w, b):
                t.requires_grad_(True)

            def fwd_bwd():
                x.grad = w.grad = b.grad = None
                F.conv2d(x, w, b, 1, 1).sum().backward()
            return fwd_bwd
        if name in ("conv3_64_32", "conv128_16", "conv256_8"):
            cin, cout, hw = {"conv3_64_32": (3, 64, 32), "conv128_16": (128, 128, 16),
                             "conv256_8": (256, 256, 8)}[name]
            x = randn(128, cin, hw, hw).requires_grad_(cin != 3)
            w = (randn(cout, cin, 3, 3) * 0.05).requires_grad_(True)

            def conv_step():
                x.grad = w.grad = None
                F.conv2d(x, w, None, 1, 1).sum().backward()
            return conv_step
        if name in ("softmax", "log_softmax"):
            x = randn(4096, 1000)
            f = torch.softmax if name == "softmax" else torch.log_softmax
            return lambda: f(x, 1)
        if name == "cross_entropy":
            x = randn(4096, 1000).requires_grad_(True)
            y = torch.randint(0, 1000, (4096,), generator=g)

            def ce():
                x.grad = None
                F.cross_entropy(x, y).backward()
            return ce
        if name in ("exp", "log", "tanh", "sigmoid", "relu", "add"):
            x, y = randn(1 << 22), randn(1 << 22)
            xp = x.abs() + 0.1
            return {"exp": lambda: torch.exp(x), "log": lambda: torch.log(xp),
                    "tanh": lambda: torch.tanh(x), "sigmoid": lambda: torch.sigmoid(x),
                    "relu": lambda: torch.relu(x), "add": lambda: torch.add(x, y)}[name]
        if name == "adam_10m":
            opt = torch.optim.Adam(params_10m(), lr=1e-3, foreach=True)
            return opt.step
        if name == "sgd_momentum_10m":
            opt = torch.optim.SGD(params_10m(), lr=0.01, momentum=0.9, foreach=True)
            return opt.step
        if name == "gemm_1024":
            a, b = randn(1024, 1024), randn(1024, 1024)
            return lambda: torch.matmul(a, b)
        raise KeyError(name)
    return make


def time_torch(work, reps):
    work()  # warm-up, as on tandem's side
    t0 = time.perf_counter()
    for _ in range(reps):
        work()
    return (time.perf_counter() - t0) * 1000.0 / reps


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the tandem_cpu_compare program")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case (median taken)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    wanted = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
    if args.cases:
        unknown = set(args.cases.split(",")) - {c[0] for c in CASES}
        if unknown:
            sys.exit(f"cpu_vs_pytorch: unknown cases: {', '.join(sorted(unknown))}")
    try:
        import torch
        torch.set_num_threads(args.threads)
        make_torch = torch_cases(torch)
        torch_version = torch.__version__
    except ImportError:
        # Debian's python3-torch lives in the system Python; another python3 on
        # PATH (pyenv, a venv) does not see it.
        system = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(system) and os.path.exists(system) \
                and not os.environ.get("TANDEM_NO_REEXEC"):
            os.environ["TANDEM_NO_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)
        torch, make_torch, torch_version = None, None, None
        print("cpu_vs_pytorch: `import torch` failed; tandem's times only "
              "(tools/setup.sh --bench installs Debian's python3-torch)", file=sys.stderr)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    server = subprocess.Popen([args.bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(name, reps):
        server.stdin.write(f"{name} {reps}\n")
        server.stdin.flush()
        reply = json.loads(server.stdout.readline())
        if "error" in reply:
            sys.exit(f"cpu_vs_pytorch: tandem failed on {name}: {reply['error']}")
        return reply["ms"]

    print(f"machine: {cpu_name()}, {args.threads} threads; tandem {args.bin}; "
          f"PyTorch {torch_version or 'absent'}; {args.rounds} interleaved rounds, medians")
    print(f"{'case':<18} {'tandem ms':>10} {'torch ms':>10} {'speed vs torch':>15}  what")
    results = []
    for name, what, reps in wanted:
        tw = make_torch(name) if make_torch else None
        t_ms, p_ms = [], []
        for _ in range(args.rounds):
            # A pause before each side: the other process's idle OpenMP
            # threads spin for a while after its last parallel region and
            # would take a core from the side being timed.
            time.sleep(0.1)
            t_ms.append(ask(name, reps))
            if tw:
                time.sleep(0.1)
                p_ms.append(time_torch(tw, reps))
        t = statistics.median(t_ms)
        p = statistics.median(p_ms) if p_ms else None
        ratio = p / t if p else None
        results.append({"case": name, "what": what, "tandem_ms": t, "torch_ms": p, "ratio": ratio,
                        "tandem_all_ms": t_ms, "torch_all_ms": p_ms})
        ps = f"{p:10.3f}" if p else f"{'-':>10}"
        rs = f"{ratio:14.2f}x" if ratio else f"{'-':>15}"
        print(f"{name:<18} {t:10.3f} {ps} {rs}  {what}", flush=True)
    server.stdin.close()
    server.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_name(), "threads": args.threads, "torch": torch_version,
                       "rounds": args.rounds, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
