#!/usr/bin/env python3
"""Tests of the `tandem` command-line tool (tools/cli/), run on the built binary.

    python3 tests/test_cli.py --tandem build/cpu/tools/tandem [--only errors|train|model_json|bench|info|ux]

Runs are small (synthetic CIFAR-shaped sets of a few hundred images, lenet or
mlp, 1-3 epochs) so that the whole file takes well under a minute on a CPU.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest
import xml.dom.minidom

TANDEM = None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=240):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    # No network, no real cache: a test that would reach prepare_cifar10 by
    # mistake fails instead of downloading.
    env.pop("TANDEM_CIFAR10", None)
    p = subprocess.run([TANDEM, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


class Errors(unittest.TestCase):
    """Usage errors exit 2 with a message naming the problem; runtime errors exit 1."""

    def expect(self, args, code, *needles):
        rc, out, err = run(*args)
        self.assertEqual(rc, code, f"tandem {' '.join(args)}: exit {rc}\nstdout:\n{out}\nstderr:\n{err}")
        for n in needles:
            self.assertIn(n, out + err, f"tandem {' '.join(args)}: no '{n}' in\n{out}\n{err}")
        self.assertNotIn("terminate called", err)
        return out, err

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_no_command(self):
        self.expect([], 2, "subcommand")

    def test_unknown_option(self):
        self.expect(["train", "--frobnicate"], 2, "--frobnicate")

    def test_unknown_model(self):
        self.expect(["train", "--model", "resnet-9000", "--synthetic", "64", "--out", self.dir], 2,
                    "unknown model", "lenet", "resnet-fast")

    def test_missing_model_file(self):
        self.expect(["train", "--model", "nets/none.json", "--synthetic", "64", "--out", self.dir], 2,
                    "no such file")

    def test_bad_json_model_file(self):
        path = os.path.join(self.dir, "bad.json")
        with open(path, "w") as f:
            json.dump({"layers": [{"type": "Flatten"}, {"type": "Linear", "in": 3072}]}, f)
        self.expect(["train", "--model", path, "--synthetic", "64", "--out", self.dir], 2,
                    "not a valid JSON model file", "layer 1 (Linear)", "'out'")
        with open(path, "w") as f:
            f.write("{not json")
        self.expect(["train", "--model", path, "--synthetic", "64", "--out", self.dir], 2,
                    "not a valid JSON model file")

    def test_missing_data_path(self):
        self.expect(["train", "--model", "mlp", "--data", os.path.join(self.dir, "nope"), "--out", self.dir],
                    2, "--data", "no such file or directory")

    def test_data_that_is_not_cifar(self):
        empty = os.path.join(self.dir, "empty")
        os.mkdir(empty)
        env_cache = os.path.join(self.dir, "cache")
        os.environ["TANDEM_DATA_DIR"] = env_cache
        try:
            self.expect(["train", "--model", "mlp", "--data", empty, "--out", os.path.join(self.dir, "run")],
                        1, "tandem train: error")
        finally:
            del os.environ["TANDEM_DATA_DIR"]

    def test_bad_numbers(self):
        base = ["train", "--model", "mlp", "--synthetic", "64", "--out", self.dir]
        self.expect(base + ["--epochs", "0"], 2, "--epochs must be at least 1, got 0")
        self.expect(base + ["--epochs", "three"], 2, "--epochs")
        self.expect(base + ["--lr", "-0.1"], 2, "--lr must be a positive number, got -0.1")
        self.expect(base + ["--lr", "nan"], 2, "--lr")
        self.expect(base + ["--batch-size", "0"], 2, "--batch-size must be at least 1")
        self.expect(base + ["--weight-decay", "-1"], 2, "--weight-decay must be >= 0")
        self.expect(base + ["--optimizer", "lbfgs"], 2, "--optimizer must be sgd, adam or adamw")
        self.expect(base + ["--schedule", "zigzag"], 2, "--schedule must be constant")
        self.expect(base + ["--val-split", "64"], 2, "--val-split 64 leaves no training images")
        self.expect(base + ["--synthetic", "-5"], 2, "--synthetic")
        self.expect(["train", "--model", "mlp", "--synthetic", "64", "--device", "tpu", "--out", self.dir],
                    2, "--device")

    def test_missing_out(self):
        self.expect(["train", "--model", "mlp", "--synthetic", "64"], 2, "--out RUN_DIR is required")

    def test_device_cuda_without_gpu(self):
        rc, out, _ = run("info")
        if "CUDA backend: can run here" in out:
            self.skipTest("a usable GPU is present")
        self.expect(["train", "--device", "cuda", "--model", "mlp", "--synthetic", "64", "--out", self.dir],
                    2, "--device cuda: the CUDA backend cannot run here")

    def test_resume_errors(self):
        self.expect(["train", "--resume", os.path.join(self.dir, "none")], 2, "no such run directory")
        self.expect(["train", "--resume", self.dir], 2, "config.json is missing")

    def test_eval_errors(self):
        self.expect(["eval"], 2, "--checkpoint")
        self.expect(["eval", "--checkpoint", os.path.join(self.dir, "x.safetensors")], 2, "no such file")
        ckpt = os.path.join(self.dir, "x.safetensors")
        with open(ckpt, "wb") as f:
            f.write(b"\0" * 16)
        self.expect(["eval", "--checkpoint", ckpt, "--synthetic", "32"], 2, "no config.json next to it")

    def test_non_finite_loss(self):
        run_dir = os.path.join(self.dir, "nan")
        out, err = self.expect(["train", "--model", "mlp", "--synthetic", "128", "--epochs", "3",
                                "--val-split", "0", "--lr", "1e30", "--out", run_dir], 1, "the loss became",
                               "training stopped")
        self.assertTrue(os.path.exists(os.path.join(run_dir, "config.json")))

    def test_help_has_examples(self):
        for cmd in (["train"], ["eval"], ["bench", "train"], ["bench", "ops"], ["data", "get"], ["info"], []):
            rc, out, err = run(*cmd, "--help")
            self.assertEqual(rc, 0, cmd)
            self.assertIn("Examples:", out, cmd)


def parse_svg(path):
    with open(path) as f:
        doc = xml.dom.minidom.parseString(f.read())
    return doc.documentElement


class Train(unittest.TestCase):
    """tandem train end to end on a synthetic set, then --resume."""

    def test_train_then_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = os.path.join(tmp, "run")
            rc, out, err = run("train", "--synthetic", "256", "--epochs", "2", "--model", "lenet",
                               "--val-split", "64", "--batch-size", "32", "--out", run_dir)
            self.assertEqual(rc, 0, out + err)
            if "CUDA backend: can run here" not in run("info")[1]:
                self.assertIn("device: the CPU", out)
            self.assertIn("(Epoch 1 / 2) train acc: ", out)
            self.assertIn("(Epoch 2 / 2) train acc: ", out)
            self.assertIn("; val acc: ", out)
            self.assertIn("test accuracy: ", out)
            self.assertIn("per-class accuracy:", out)
            self.assertIn("estimate: ", out)
            for name in ("config.json", "metrics.csv", "metrics.jsonl", "last.safetensors", "best.safetensors",
                         "loss.svg", "accuracy.svg", "confusion.svg", "results.json"):
                self.assertTrue(os.path.isfile(os.path.join(run_dir, name)), name)
            for svg in ("loss.svg", "accuracy.svg", "confusion.svg"):
                self.assertEqual(parse_svg(os.path.join(run_dir, svg)).tagName, "svg")
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
            self.assertEqual(config["settings"]["model"], "lenet")
            self.assertEqual(config["settings"]["epochs"], 2)
            self.assertEqual(config["settings"]["batch_size"], 32)
            self.assertEqual(config["settings"]["lr"], 0.01)  # lenet's recipe
            self.assertEqual(config["model"]["layers"][0]["type"], "Conv2d")
            with open(os.path.join(run_dir, "metrics.csv")) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual([r["epoch"] for r in rows], ["1", "2"])
            self.assertTrue(all(0 <= float(r["val_accuracy"]) <= 1 for r in rows))
            with open(os.path.join(run_dir, "metrics.jsonl")) as f:
                lines = [json.loads(l) for l in f]
            self.assertEqual(len(lines), 2)
            with open(os.path.join(run_dir, "results.json")) as f:
                results = json.load(f)
            self.assertEqual(results["epochs"], 2)
            self.assertEqual(results["test_images"], 64)
            self.assertEqual(len(results["per_class_accuracy"]), 10)
            self.assertIn("airplane", results["per_class_accuracy"])
            self.assertEqual(sum(map(sum, results["confusion"])), 64)
            self.assertTrue(0 <= results["test_accuracy"] <= 1)

            # --resume with another architecture or a changed setting is refused.
            rc, out, err = run("train", "--resume", run_dir, "--epochs", "3", "--model", "mlp")
            self.assertEqual(rc, 2, out + err)
            self.assertIn("another architecture", err)
            rc, out, err = run("train", "--resume", run_dir, "--epochs", "3", "--lr", "0.1")
            self.assertEqual(rc, 2, out + err)
            self.assertIn("--lr cannot be combined with --resume", err)

            rc, out, err = run("train", "--resume", run_dir, "--epochs", "3")
            self.assertEqual(rc, 0, out + err)
            self.assertIn("resumed after epoch 2 of 3", out)
            self.assertNotIn("(Epoch 1 / 3)", out)
            self.assertIn("(Epoch 3 / 3)", out)
            with open(os.path.join(run_dir, "metrics.csv")) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual([r["epoch"] for r in rows], ["1", "2", "3"])
            with open(os.path.join(run_dir, "results.json")) as f:
                self.assertEqual(json.load(f)["epochs"], 3)

            # eval of the run's best checkpoint, model and data from config.json.
            rc, out, err = run("eval", "--checkpoint", os.path.join(run_dir, "best.safetensors"), "--json")
            self.assertEqual(rc, 0, out + err)
            ev = json.loads(out)
            self.assertEqual(ev["test_images"], 64)
            # ... and with a model that does not match the checkpoint.
            rc, out, err = run("eval", "--checkpoint", os.path.join(run_dir, "best.safetensors"), "--model", "mlp")
            self.assertEqual(rc, 2, out + err)
            self.assertIn("does not match", err)


class ModelJson(unittest.TestCase):
    """--model file.json: a JSON model file trains and its layers land in config.json."""

    def test_json_model_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tiny.json")
            with open(path, "w") as f:
                json.dump({"format": "tandem-model", "version": 1, "name": "tiny",
                           "layers": [{"type": "Conv2d", "in": 3, "out": 5, "kernel": 3, "stride": 2},
                                      {"type": "ReLU"}, {"type": "AdaptiveAvgPool2d", "output": 1},
                                      {"type": "Flatten"}, {"type": "Linear", "in": 5, "out": 10}]}, f)
            run_dir = os.path.join(tmp, "run")
            rc, out, err = run("train", "--model", path, "--synthetic", "96", "--epochs", "1", "--val-split", "0",
                               "--optimizer", "adam", "--out", run_dir)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("val acc: n/a", out)
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
            self.assertEqual(config["settings"]["optimizer"], "adam")
            self.assertEqual(config["settings"]["lr"], 0.001)
            self.assertEqual([l["type"] for l in config["model"]["layers"]],
                             ["Conv2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"])
            self.assertFalse(os.path.exists(os.path.join(run_dir, "best.safetensors")))  # no validation
            rc, out, err = run("eval", "--checkpoint", os.path.join(run_dir, "last.safetensors"),
                               "--model", path, "--synthetic", "96")
            self.assertEqual(rc, 0, out + err)
            self.assertIn("test accuracy: ", out)


class Bench(unittest.TestCase):
    """bench train / ops on the CPU, --json parsed, and the markdown table script."""

    def test_bench_train_json_and_table(self):
        rc, out, err = run("bench", "train", "--model", "mlp", "--batch-size", "16", "--steps", "3",
                           "--warmup", "1", "--json")
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)
        self.assertEqual(r["model"], "mlp")
        self.assertEqual(r["results"][0]["device"], "cpu")
        self.assertGreater(r["results"][0]["ms_per_step"], 0)
        self.assertGreater(r["results"][0]["images_per_second"], 0)
        self.assertGreater(r["results"][0]["peak_memory_bytes"], 0)
        for key in ("hostname", "cpu_model", "gpu_name"):
            self.assertIn(key, r["host"])
        with tempfile.TemporaryDirectory() as tmp:
            a = os.path.join(tmp, "a.json")
            with open(a, "w") as f:
                f.write(out)
            # A second machine with a GPU, as the script would meet it.
            gpu = dict(r)
            gpu["host"] = dict(r["host"], hostname="gpu-box", gpu_name="NVIDIA H100")
            gpu["results"] = r["results"] + [dict(r["results"][0], device="cuda", device_name="cuda (NVIDIA H100)",
                                                  ms_per_step=0.5, images_per_second=32000.0)]
            gpu["gpu_cpu_speed_ratio"] = 32000.0 / r["results"][0]["images_per_second"]
            b = os.path.join(tmp, "b.json")
            with open(b, "w") as f:
                json.dump(gpu, f)
            p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "cpu_vs_gpu_table.py"), a, b],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("| machine |", p.stdout)
            self.assertIn(r["host"]["hostname"], p.stdout)
            self.assertIn("gpu-box", p.stdout)
            self.assertIn("NVIDIA H100", p.stdout)
            bad = os.path.join(tmp, "bad.json")
            with open(bad, "w") as f:
                f.write("{}")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "cpu_vs_gpu_table.py"), bad],
                               capture_output=True, text=True)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("bad.json", p.stderr)

    def test_bench_train_text(self):
        rc, out, err = run("bench", "train", "--model", "lenet", "--batch-size", "8", "--steps", "2",
                           "--warmup", "1", "--device", "cpu")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("ms/step", out)
        self.assertIn("images/s", out)
        rc, out, err = run("bench", "train", "--steps", "0")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--steps must be at least 1", err)

    def test_bench_ops(self):
        rc, out, err = run("bench", "ops", "--scale", "0.02", "--reps", "1", "--device", "cpu", "--json")
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)
        ops = [o["op"] for o in r["ops"]]
        for want in ("elementwise add", "softmax (dim 1)", "GEMM", "conv2d 3x3 pad 1", "SGD momentum step"):
            self.assertIn(want, ops)
        self.assertTrue(all(o["cpu"]["ms"] > 0 for o in r["ops"]))


class Info(unittest.TestCase):
    def test_info(self):
        rc, out, err = run("info")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("blas", out.lower())
        self.assertTrue("CUDA backend: can run here" in out or "CUDA backend: cannot run here: " in out, out)
        if "cannot run here" in out:
            reason = out.split("CUDA backend: cannot run here: ")[1].strip()
            self.assertTrue(reason, "no reason given")
        rc, out, err = run("info", "--json")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("hostname", json.loads(out))


def write_png(path, width, height, rgb):
    """A solid-colour RGB PNG, written with zlib alone."""
    import struct
    import zlib

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def run_in_terminal(args, columns, timeout=240):
    """Runs tandem on a pseudo-terminal `columns` wide; returns (rc, everything it wrote)."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = dict(os.environ, OMP_NUM_THREADS="2", COLUMNS=str(columns))
    env.pop("TANDEM_CIFAR10", None)
    p = subprocess.Popen([TANDEM, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=timeout), b"".join(chunks).decode(errors="replace")


class Ux(unittest.TestCase):
    """Issue 24: plots and progress, and the options users of Keras, Lightning or timm reach for."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def train(self, *extra, out="run"):
        run_dir = os.path.join(self.dir, out)
        rc, o, e = run("train", "--synthetic", "128", "--model", "mlp", "--batch-size", "16", *extra,
                       "--out", run_dir)
        self.assertEqual(rc, 0, o + e)
        return run_dir, o, e

    def test_summary_line_fixed_decimals_and_one_epoch_plots(self):
        # One validation image: its accuracy is exactly 0 or 1, once printed "1" beside "0.4642".
        run_dir, out, _ = self.train("--epochs", "1", "--val-split", "1")
        line = [l for l in out.splitlines() if l.startswith("(Epoch 1 / 1)")][0]
        import re
        self.assertRegex(line, r"train acc: \d\.\d{4}; val acc: \d\.\d{4}; train loss: \d+\.\d{4}; "
                               r"val loss: \d+\.\d{4};", line)
        # A 1-epoch run's plots show a marker per point (a 1-point polyline draws nothing).
        for svg in ("loss.svg", "accuracy.svg"):
            self.assertEqual(len(parse_svg(os.path.join(run_dir, svg)).getElementsByTagName("circle")), 2, svg)

    def test_progress_bar_fits_terminal(self):
        rc, text = run_in_terminal(["train", "--synthetic", "640", "--model", "mlp", "--batch-size", "16",
                                    "--epochs", "1", "--val-split", "160", "--workers", "1",
                                    "--out", os.path.join(self.dir, "run")], 60)
        self.assertEqual(rc, 0, text)
        segments = [s.replace("\x1b[K", "") for s in text.replace("\n", "\r").split("\r")]
        bars = [s for s in segments if s.startswith("epoch ")]
        self.assertTrue(bars, text)
        for b in bars:
            self.assertLess(len(b), 60, repr(b))  # never wraps in a 60-column terminal
        train_bars = [b for b in bars if " val " not in b]
        self.assertTrue(train_bars[-1].startswith("epoch 1/1 30/30 "), train_bars)  # the step counter
        self.assertRegex(train_bars[-1], r" \d+\.\d s ETA ")  # elapsed time and ETA
        self.assertTrue(any(b.startswith("epoch 1/1 val 1/1") for b in bars), bars)  # validation
        # The bar's loss is the epoch's running mean: at the last step, the epoch's train loss.
        summary = [s for s in segments if s.startswith("(Epoch 1 / 1)")][0]
        epoch_loss = summary.split("train loss: ")[1].split(";")[0]
        self.assertIn(f"loss {epoch_loss} ", train_bars[-1] + " ")
        # Not a terminal: one plain line per epoch, no redraws.
        _, out, _ = self.train("--epochs", "1", out="plain")
        self.assertNotIn("\r", out)

    def test_clip_grad_norm(self):
        run_dir, _, _ = self.train("--epochs", "1", "--clip-grad-norm", "0.5", "--lr", "0.5")
        with open(os.path.join(run_dir, "config.json")) as f:
            self.assertEqual(json.load(f)["settings"]["clip_grad_norm"], 0.5)
        rc, out, err = run("train", "--synthetic", "64", "--clip-grad-norm", "-1", "--out", self.dir)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--clip-grad-norm must be", err)

    def test_patience_and_best_checkpoint(self):
        # An lr of 1e-12 changes nothing: no epoch after the first improves.
        run_dir, out, _ = self.train("--epochs", "10", "--val-split", "32", "--lr", "1e-12", "--patience", "2")
        self.assertIn("early stopping", out)
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            self.assertEqual(len(list(csv.DictReader(f))), 3)
        with open(os.path.join(run_dir, "results.json")) as f:
            r = json.load(f)
        self.assertTrue(r["stopped_early"])
        self.assertEqual(r["epochs"], 3)
        self.assertEqual(r["evaluated_checkpoint"], "last")
        best = r["best_checkpoint"]
        self.assertEqual(best["epoch"], 1)
        self.assertTrue(best["path"].endswith("best.safetensors"))
        self.assertTrue(0 <= best["test_accuracy"] <= 1)
        self.assertEqual(sum(map(sum, best["confusion"])), r["test_images"])
        self.assertIn("test accuracy of best.safetensors (epoch 1", out)

    def test_limit_batches(self):
        run_dir, out, _ = self.train("--epochs", "1", "--limit-batches", "2", "--val-split", "32")
        self.assertIn("--limit-batches 2: 32 training / 32 validation / 32 test images", out)
        with open(os.path.join(run_dir, "results.json")) as f:
            self.assertEqual(json.load(f)["test_images"], 32)

    def test_predict(self):
        run_dir, _, _ = self.train("--epochs", "1", "--val-split", "16")
        imgs = os.path.join(self.dir, "imgs")
        os.makedirs(os.path.join(imgs, "sub"))
        write_png(os.path.join(imgs, "red.png"), 32, 32, (250, 10, 10))
        write_png(os.path.join(imgs, "sub", "blue.png"), 32, 32, (10, 10, 250))
        rc, out, err = run("predict", "--from", run_dir, os.path.join(imgs, "red.png"), imgs)
        self.assertEqual(rc, 0, out + err)
        rows = list(csv.DictReader(out.splitlines()))
        self.assertEqual(len(rows), 3)
        self.assertEqual([os.path.basename(r["path"]) for r in rows], ["red.png", "red.png", "blue.png"])
        for r in rows:
            probs = [float(v) for k, v in r.items() if k.startswith("p_")]
            self.assertEqual(len(probs), 10)
            self.assertAlmostEqual(sum(probs), 1.0, places=4)
            self.assertEqual(float(r["probability"]), max(probs))
        rc, out, err = run("predict", "--from", os.path.join(run_dir, "last.safetensors"), imgs, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        j = json.loads(out)
        self.assertEqual(len(j), 2)
        self.assertIn(j[0]["class"], j[0]["probabilities"])
        write_png(os.path.join(self.dir, "big.png"), 48, 40, (1, 2, 3))
        rc, out, err = run("predict", "--from", run_dir, os.path.join(self.dir, "big.png"))
        self.assertEqual(rc, 2, out + err)
        self.assertIn("48x40", err)
        rc, out, err = run("predict", "--from", run_dir, os.path.join(self.dir, "none.png"))
        self.assertEqual(rc, 2, out + err)

    def test_print_config_and_config_file(self):
        rc, out, err = run("train", "--synthetic", "96", "--model", "mlp", "--lr", "0.02", "--epochs", "2",
                           "--batch-size", "16", "--print-config")
        self.assertEqual(rc, 0, out + err)
        printed = json.loads(out)  # JSON alone on stdout
        self.assertEqual(printed["settings"]["lr"], 0.02)
        self.assertFalse(os.listdir(self.dir))  # nothing trained or written
        path = os.path.join(self.dir, "printed.json")
        with open(path, "w") as f:
            f.write(out)
        run_dir, _, _ = self.train("--config", path, out="a")
        with open(os.path.join(run_dir, "config.json")) as f:
            a = json.load(f)
        self.assertEqual(a["settings"]["lr"], 0.02)
        self.assertEqual(a["settings"]["epochs"], 2)
        # A run directory's config.json reproduces the run; given options override it.
        b_dir = os.path.join(self.dir, "b")
        rc, out, err = run("train", "--config", os.path.join(run_dir, "config.json"), "--epochs", "1",
                           "--out", b_dir)
        self.assertEqual(rc, 0, out + err)
        with open(os.path.join(b_dir, "config.json")) as f:
            b = json.load(f)
        self.assertEqual(b["settings"]["epochs"], 1)
        a["settings"]["epochs"] = 1
        self.assertEqual(a["settings"], b["settings"])
        self.assertEqual(a["model"], b["model"])
        rc, out, err = run("train", "--config", os.path.join(self.dir, "nope.json"), "--out", b_dir)
        self.assertEqual(rc, 2, out + err)

    def test_example_model_file_trains_one_step(self):
        example = os.path.join(ROOT, "examples", "models", "small_cnn.json")
        run_dir = os.path.join(self.dir, "ex")
        rc, out, err = run("train", "--model", example, "--synthetic", "64", "--batch-size", "32",
                           "--limit-batches", "1", "--epochs", "1", "--val-split", "0", "--out", run_dir)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("32 training", out)
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            self.assertEqual(len(list(csv.DictReader(f))), 1)
        with open(example) as f:
            types = [l["type"] for l in json.load(f)["layers"]]
        with open(os.path.join(run_dir, "config.json")) as f:
            self.assertEqual([l["type"] for l in json.load(f)["model"]["layers"]], types)


GROUPS = {"errors": Errors, "train": Train, "model_json": ModelJson, "bench": Bench, "info": Info, "ux": Ux}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True, help="the built tandem binary")
    ap.add_argument("--only", choices=sorted(GROUPS), help="one group of tests")
    args, rest = ap.parse_known_args()
    TANDEM = os.path.abspath(args.tandem)
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name, cls in GROUPS.items():
        if args.only in (None, name):
            suite.addTests(loader.loadTestsFromTestCase(cls))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
