#!/usr/bin/env python3
"""Replays tandem_airbench_steps' run in PyTorch the way airbench94.py trains
(Keller Jordan, KellerJordan/cifar10-airbench) and compares, step by step.

  tools/parity/airbench_ref.py STEPS.safetensors

Each step k is replayed alone from tandem's own state after step k - 1 (the
weights, BatchNorm statistics, momentum buffers and lookahead average in the
file), with airbench's parametrisation: a summed label-smoothed loss,
lr = 11.5 / (1024 (1 + 1/(1 - m))) and weight_decay = (0.0153 N / same) / lr per
group (BatchNorm biases at 64x lr), Nesterov torch.optim.SGD, the triangular
schedule's factor for the step, its every-k-steps lookahead over the float
state dict. One step at a time, so rounding does not compound: a whole run
diverges chaotically within a few steps (BatchNorm biases train at lr x 64),
PyTorch float32 against float64 as much as tandem. Each step runs in float64
and float32; tandem passes when its distance to the float64 step is within 3x
PyTorch float32's (+ 1e-5) and its loss matches. The whitening filters are
recomputed from the same 5,000 images (up to each filter's sign) and the dirac
rows and the default init's bound checked. Exit status 1 on a mismatch.
Needs torch (Debian: python3-torch).
"""
import json
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        raw = bytearray(blob[8 + hlen + lo:8 + hlen + hi])
        t = torch.frombuffer(raw, dtype=DTYPES[e["dtype"]]) if raw else torch.empty(0)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def airbench_net():
    """airbench94's network flattened into one Sequential (tandem's layer order)."""
    def bn(c):
        m = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)  # airbench's 0.6 in its convention
        m.weight.requires_grad = False
        return m

    layers, width = [nn.Conv2d(3, 24, 2, padding=0, bias=True), nn.GELU()], 24
    for out in (64, 256, 256):
        layers += [nn.Conv2d(width, out, 3, padding="same", bias=False), nn.MaxPool2d(2), bn(out),
                   nn.GELU(), nn.Conv2d(out, out, 3, padding="same", bias=False), bn(out), nn.GELU()]
        width = out
    layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(width, 10, bias=False), Scale(1 / 9)]
    net = nn.Sequential(*layers)
    net[0].weight.requires_grad = False
    return net


def normalize(images, dtype=torch.float32):
    """uint8 images to airbench's normalised input."""
    x = images.to(dtype) / 255
    return (x - torch.tensor(MEAN, dtype=dtype).view(1, 3, 1, 1)) / torch.tensor(
        STD, dtype=dtype).view(1, 3, 1, 1)


def whitening_filters(x, eps=5e-4):
    """airbench's whitening weight from normalised images x: the eigenvectors of
    the 2x2 patches' covariance scaled by 1/sqrt(eigenvalue + eps), largest
    first, then their negations: 24 filters of shape 3x2x2 (float64 inside)."""
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    values, vectors = torch.linalg.eigh(patches.T @ patches / patches.shape[0])
    order = values.argsort(descending=True)
    filters = vectors[:, order].T / torch.sqrt(values[order] + eps)[:, None]
    return torch.cat([filters, -filters]).reshape(24, 3, 2, 2).float()


def check_init(d):
    """Whitening filters and dirac rows against airbench's formulas; returns failures."""
    fails = []
    filters = whitening_filters(normalize(d["white_images"], torch.float64)).reshape(24, 12)[:12]
    got = d["init.0.weight"].reshape(24, 12)
    worst = 0.0
    for k in range(12):
        sign = 1.0 if float((filters[k] * got[k]).sum()) >= 0 else -1.0
        for row, ref in ((got[k], sign * filters[k]), (got[k + 12], -sign * filters[k])):
            worst = max(worst, float((row - ref).abs().max() / ref.abs().max()))
    print(f"whitening filters vs airbench's formula (up to sign): worst rel diff {worst:.1e}")
    if worst > 1e-4:
        fails.append("whitening")
    for name, w in d.items():
        if name.startswith("init.") and w.dim() == 4 and w.shape[2:] == (3, 3):
            rows = min(w.shape[0], w.shape[1])
            eye = torch.zeros(rows, w.shape[1], 3, 3)
            eye[torch.arange(rows), torch.arange(rows), 1, 1] = 1
            bound = 1 / (w.shape[1] * 9) ** 0.5
            rest_ok = w[rows:].numel() == 0 or float(w[rows:].abs().max()) <= bound
            if not torch.equal(w[:rows], eye) or not rest_ok:
                fails.append(f"dirac/init {name}")
    return fails


def schedule(total, start=0.2, peak_frac=0.23, end=0.07):
    """airbench's per-step triangle: start -> 1 at step int(peak_frac T) -> end at T."""
    peak = int(peak_frac * total)

    def factor(i):
        if i < peak:
            return start + (1 - start) * i / peak
        return 1 + (end - 1) * min(i - peak, total - peak) / (total - peak)
    return factor


def one_step(d, meta, dtype, k):
    """Step k (1-based) from tandem's state after step k - 1: weights, buffers,
    momentum buffers and lookahead average all taken from tandem's file."""
    n, total = int(meta["n"]), int(meta["total"])
    every, freeze_after = int(meta["every"]), int(meta["freeze_after"])
    prev = "init." if k == 1 else f"step{k - 1}."
    net = airbench_net().to(dtype)
    with torch.no_grad():
        for name, v in net.state_dict().items():
            v.copy_(d[prev + name].to(v.dtype))
    bn_biases = {f"{i}.bias" for i, m in enumerate(net) if isinstance(m, nn.BatchNorm2d)}
    net[0].bias.requires_grad = k - 1 < freeze_after
    momentum = 0.85
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr, wd = 11.5 / kilostep, 0.0153 * n / kilostep
    factor = schedule(total)(k - 1)
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    bn = [(nm, p) for nm, p in named if nm in bn_biases]
    rest = [(nm, p) for nm, p in named if nm not in bn_biases]
    opt = torch.optim.SGD([dict(params=[p for _, p in bn], lr=64 * lr * factor, weight_decay=wd / (64 * lr)),
                           dict(params=[p for _, p in rest], lr=lr * factor, weight_decay=wd / lr)],
                          momentum=momentum, nesterov=True)
    for nm, p in named:
        if prev + "momentum." + nm in d:
            # airbench's summed loss makes its buffers N times tandem's.
            opt.state[p]["momentum_buffer"] = n * d[prev + "momentum." + nm].to(dtype)
    b = (k - 1) % 4
    net.train()
    out = net(d["images"].to(dtype)[b * n:(b + 1) * n])
    loss = F.cross_entropy(out, d["labels"][b * n:(b + 1) * n], label_smoothing=0.2, reduction="sum")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if k % every == 0:
        with torch.no_grad():
            current = {nm: v for nm, v in net.state_dict().items() if v.is_floating_point()}
            if prev + "average.0.weight" in d:
                rho = 0.95 ** every * (k / total) ** 3
                for nm, v in current.items():
                    avg = d[prev + "average." + nm].to(dtype)
                    v.copy_(avg + (1 - rho) * (v - avg))
    state = dict(net.state_dict())
    for nm, p in named:
        state["momentum." + nm] = opt.state[p]["momentum_buffer"] / n
    return state, loss.item() / n


def worst_rel(state, ref, get):
    worst, where = 0.0, ""
    for k, r in ref.items():
        if not r.is_floating_point():
            continue
        err = float((get(k, state).double() - r.double()).abs().max() / (r.double().abs().max() + 1e-30))
        if err > worst:
            worst, where = err, k
    return worst, where


def main():
    d, meta = read_safetensors(sys.argv[1])
    fails = check_init(d)
    steps = int(meta["steps"])
    # Each step alone, from tandem's own previous state: no compounding, so
    # the bound is tight (float32 rounding of one step).
    for k in range(1, steps + 1):
        ref, loss64 = one_step(d, meta, torch.float64, k)
        p32, _ = one_step(d, meta, torch.float32, k)
        tag = f"step{k}."
        missing = [nm for nm in ref if nm.startswith("momentum.") and tag + nm not in d]
        t_err, t_at = worst_rel(None, ref, lambda nm, _: d[tag + nm])
        p_err, _ = worst_rel(p32, ref, lambda nm, st: st[nm])
        ok = not missing and t_err <= 3 * p_err + 1e-5 and abs(d["losses"][k - 1] - loss64) < 1e-5
        print(f"one step {k:2d} from tandem's state: tandem {t_err:.1e} ({t_at}), PyTorch float32 "
              f"{p_err:.1e}; loss {d['losses'][k - 1]:.7f} vs {loss64:.7f}{'' if ok else '  MISMATCH'}")
        if not ok:
            fails.append(f"one step {k}")
    print("parity: " + ("ok" if not fails else "FAILED: " + ", ".join(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
