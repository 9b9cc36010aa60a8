#!/usr/bin/env python3
"""Trains airbench94's whole recipe in PyTorch on the CPU, from a CIFAR-10
binary directory, so that tandem's resnet-fast can be compared with airbench
itself on the same copy of the data (the shared copy is JPEG-re-encoded, and
published figures are for the official files).

  tools/parity/airbench_train.py [CIFAR_BIN_DIR] [--epochs 9.9] [--seed 0]
                                  [--threads 2] [--json OUT]

CIFAR_BIN_DIR holds data_batch_{1..5}.bin and test_batch.bin (the official
binary layout); the default is tandem's cache (`tandem data import
../shared/data/cifar10-jpeg.tar.xz` fills it). The recipe is airbench94's
(Keller Jordan, KellerJordan/cifar10-airbench, arXiv 2404.00498), written
from its description: whitening from 5,000 training images with its bias
(0 at first) trained for 3 epochs only, dirac initialisation, BatchNorm without weights
(eps 1e-12, momentum 0.6 in its convention), logits scaled by 1/9, Nesterov
SGD (lr 11.5, momentum 0.85, weight decay 0.0153 per 1024 examples, BatchNorm
biases at 64x lr) on a summed label-smoothed (0.2) loss, the triangular
schedule, lookahead every 5 steps, alternating flip and translate-2
augmentation, 9.9 epochs of batch 1024 (drop last) on all 50,000 images, and
flip + translate test-time augmentation. float32 (airbench runs half on a GPU).
The network, schedule and step are those tools/parity/airbench_ref.py checks
tandem's steps against. Needs torch (Debian: python3-torch).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from airbench_ref import airbench_net, normalize, schedule, whitening_filters  # noqa: E402


def read_split(directory, names):
    raw = np.concatenate([np.fromfile(os.path.join(directory, n), dtype=np.uint8) for n in names])
    if raw.size % 3073:
        raise SystemExit(f"{directory}: not the CIFAR-10 binary layout (size {raw.size})")
    rec = raw.reshape(-1, 3073)
    labels = torch.from_numpy(rec[:, 0].astype(np.int64))
    images = torch.from_numpy(rec[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, labels


def random_flip(x):
    keep = torch.rand(x.shape[0]) < 0.5
    return torch.where(keep.view(-1, 1, 1, 1), x, x.flip(-1))


def random_translate(padded, size=32, pad=2):
    """Each image shifted by its own (dy, dx) in [-pad, pad], from reflect-padded copies."""
    n = padded.shape[0]
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    out = torch.empty(n, padded.shape[1], size, size)
    for sy in range(2 * pad + 1):
        for sx in range(2 * pad + 1):
            sel = ((dy == sy) & (dx == sx)).nonzero().flatten()
            if sel.numel():
                out[sel] = padded[sel, :, sy:sy + size, sx:sx + size]
    return out


@torch.no_grad()
def evaluate(net, images, labels, tta, batch=2000):
    net.eval()

    def mirror(x):
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))

    correct = 0
    for i in range(0, images.shape[0], batch):
        x = images[i:i + batch]
        if not tta:
            logits = net(x)
        else:
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            shifted = 0.5 * mirror(padded[:, :, 0:32, 0:32]) + 0.5 * mirror(padded[:, :, 2:34, 2:34])
            logits = 0.5 * mirror(x) + 0.5 * shifted
        correct += int((logits.argmax(1) == labels[i:i + batch]).sum())
    return correct / images.shape[0]


class Lookahead:
    """airbench's lookahead: an average of the float state pulled towards the
    net every few steps, after which the net takes the average's value."""

    def __init__(self, net):
        self.avg = {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, net, decay):
        for k, v in net.state_dict().items():
            if k in self.avg:
                self.avg[k].lerp_(v, 1 - decay)
                v.copy_(self.avg[k])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=os.path.expanduser("~/.cache/tandem/cifar10/cifar-10-batches-bin"))
    ap.add_argument("--epochs", type=float, default=9.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="0: every core")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads or os.cpu_count())

    train_raw, train_labels = read_split(a.data, [f"data_batch_{i}.bin" for i in range(1, 6)])
    test_raw, test_labels = read_split(a.data, ["test_batch.bin"])
    train_x, test_x = normalize(train_raw), normalize(test_raw)
    n_train, batch, momentum = train_x.shape[0], 1024, 0.85
    steps_per_epoch = n_train // batch
    total = math.ceil(a.epochs * steps_per_epoch)
    freeze_after = math.ceil(3 * steps_per_epoch)

    net = airbench_net()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                rows = min(m.out_channels, m.in_channels)
                nn.init.dirac_(m.weight[:rows])
        net[0].weight.copy_(whitening_filters(train_x[:5000]))
        net[0].bias.zero_()
    net[0].bias.requires_grad = True

    kilostep = batch * (1 + 1 / (1 - momentum))
    lr, wd = 11.5 / kilostep, 0.0153 * batch / kilostep
    bn_bias_ids = {id(m.bias) for m in net if isinstance(m, nn.BatchNorm2d)}
    bn_biases = [p for p in net.parameters() if id(p) in bn_bias_ids]
    rest = [p for p in net.parameters() if id(p) not in bn_bias_ids and p.requires_grad]
    groups = [dict(params=bn_biases, lr=64 * lr, weight_decay=wd / (64 * lr)),
              dict(params=rest, lr=lr, weight_decay=wd / lr)]
    opt = torch.optim.SGD(groups, momentum=momentum, nesterov=True)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    factor = schedule(total)
    look = Lookahead(net)
    every = 5

    # airbench's alternating flip: a random flip drawn once, the whole set
    # mirrored on odd epochs; translation drawn afresh each epoch.
    flipped = random_flip(train_x)
    padded = F.pad(flipped, (2, 2, 2, 2), mode="reflect")
    step, started = 0, time.time()
    for epoch in range(math.ceil(a.epochs)):
        net.train()
        images = random_translate(padded)
        if epoch % 2 == 1:
            images = images.flip(-1)
        order = torch.randperm(n_train)
        correct = seen = 0
        t0 = time.time()
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[i * batch:(i + 1) * batch]
            x, y = images[idx], train_labels[idx]
            net[0].bias.requires_grad = step < freeze_after
            out = net(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.2, reduction="sum")
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * factor(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0:
                look.update(net, decay=0.95 ** every * (step / total) ** 3)
            correct += int((out.argmax(1) == y).sum())
            seen += y.numel()
        print(f"epoch {epoch + 1}: step {step}/{total}, train acc {correct / max(seen, 1):.4f}, "
              f"{time.time() - t0:.0f} s", flush=True)
    look.update(net, decay=1.0)
    train_s = time.time() - started
    plain = evaluate(net, test_x, test_labels, tta=False)
    tta = evaluate(net, test_x, test_labels, tta=True)
    result = dict(test_acc=tta, test_acc_no_tta=plain, train_seconds=round(train_s, 1), steps=total,
                  epochs=a.epochs, seed=a.seed, data=a.data, torch=torch.__version__,
                  threads=torch.get_num_threads())
    print(json.dumps(result), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
