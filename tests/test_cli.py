#!/usr/bin/env python3
"""Tests of the `tandem` command-line tool (tools/cli/), run on the built binary.

    python3 tests/test_cli.py --tandem build/cpu/tools/tandem [--only errors|safety|messages|threads|train|resnet_fast|model_json|bench|info|ux|dist|e2e|check]

Runs are small (synthetic CIFAR-shaped sets of a few hundred images, lenet or
mlp, 1-3 epochs) so that the whole file takes well under a minute on a CPU.
"""
import argparse
import csv
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import unittest
import xml.dom.minidom

TANDEM = None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_env(extra=None):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    # No network, no real cache: a test that would reach prepare_cifar10 by
    # mistake fails instead of downloading.
    env.pop("TANDEM_CIFAR10", None)
    env.update(extra or {})
    return env


def run(*args, timeout=240, cwd=None, env=None):
    p = subprocess.run([TANDEM, *args], capture_output=True, text=True, timeout=timeout, env=test_env(env),
                       cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def write_fake_cifar_cache(cache_root, records=20):
    """A complete CIFAR-10 cache ($TANDEM_DATA_DIR/cifar10/cifar-10-batches-bin) of a few records per file."""
    d = os.path.join(cache_root, "cifar10", "cifar-10-batches-bin")
    os.makedirs(d)
    rec = bytes([3]) + bytes(3072)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        with open(os.path.join(d, name), "wb") as f:
            f.write(rec * records)
    with open(os.path.join(d, "batches.meta.txt"), "w") as f:
        f.write("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n")
    return d


def poison_safetensors(path):
    """Overwrites the first float32 tensor of a .safetensors file with NaNs."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        for name, t in header.items():
            if name != "__metadata__" and t["dtype"] == "F32":
                begin, end = t["data_offsets"]
                f.seek(8 + n + begin)
                f.write(struct.pack("<f", float("nan")) * ((end - begin) // 4))
                return name
    raise AssertionError("no F32 tensor in " + path)


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

    def test_default_out_is_a_new_run_dir(self):
        rc, out, err = run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "1", "--val-split", "0",
                           cwd=self.dir)
        self.assertEqual(rc, 0, out + err)
        runs = os.listdir(os.path.join(self.dir, "runs"))
        self.assertEqual(len(runs), 1, runs)
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "runs", runs[0], "config.json")))
        self.assertIn("runs/" + runs[0], out)
        # A second run in the same second gets its own directory.
        rc, out, err = run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "1", "--val-split", "0",
                           cwd=self.dir)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(len(os.listdir(os.path.join(self.dir, "runs"))), 2)

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


class Safety(unittest.TestCase):
    """Issue 24: the tool never loses or hides data (run directories, data sources, NaN models,
    Ctrl-C, stale temporaries, hostile JSON)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def train(self, *args, **kw):
        return run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "1", "--val-split", "16", *args, **kw)

    def test_out_refuses_a_non_empty_dir(self):
        run_dir = os.path.join(self.dir, "old")
        os.mkdir(run_dir)
        with open(os.path.join(run_dir, "notes.txt"), "w") as f:
            f.write("precious")
        rc, out, err = self.train("--out", run_dir)
        self.assertEqual(rc, 2, out + err)
        self.assertIn(run_dir, err)
        self.assertIn("not empty", err)
        self.assertIn("--overwrite", err)
        self.assertIn("--resume", err)
        self.assertEqual(os.listdir(run_dir), ["notes.txt"])
        rc, out, err = self.train("--out", run_dir, "--overwrite")
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(os.path.isfile(os.path.join(run_dir, "config.json")))
        self.assertTrue(os.path.isfile(os.path.join(run_dir, "notes.txt")))  # only tandem's files are replaced
        # The finished run itself is not overwritten by a new one either.
        rc, out, err = self.train("--out", run_dir)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("not empty", err)
        # An empty directory is fine.
        empty = os.path.join(self.dir, "empty")
        os.mkdir(empty)
        rc, out, err = self.train("--out", empty)
        self.assertEqual(rc, 0, out + err)

    def test_unreadable_data_is_an_error_not_the_cache(self):
        cache = os.path.join(self.dir, "cache")
        write_fake_cifar_cache(cache)
        env = {"TANDEM_DATA_DIR": cache}
        empty = os.path.join(self.dir, "empty")
        os.mkdir(empty)
        junk = os.path.join(self.dir, "junk.bin")
        with open(junk, "wb") as f:
            f.write(os.urandom(5000))
        damaged = os.path.join(self.dir, "damaged.tar.gz")
        with open(damaged, "wb") as f:
            f.write(b"\x1f\x8b\x08\x00" + os.urandom(3000))
        for i, source in enumerate((empty, junk, damaged)):
            run_dir = os.path.join(self.dir, f"run{i}")
            rc, out, err = run("train", "--model", "mlp", "--data", source, "--epochs", "1", "--out", run_dir, env=env)
            self.assertEqual(rc, 1, f"--data {source}: exit {rc}\n{out}\n{err}")
            self.assertIn(source, err)
            self.assertIn("--data", err)
            self.assertNotIn("test accuracy", out)
        # No source: the cache is used.
        rc, out, err = run("train", "--model", "mlp", "--epochs", "1", "--val-split", "10", "--out",
                           os.path.join(self.dir, "cached"), env=env)
        self.assertEqual(rc, 0, out + err)

    def test_non_finite_model_is_never_best(self):
        run_dir = os.path.join(self.dir, "nan")
        rc, out, err = run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "1", "--val-split", "16",
                           "--batch-size", "64", "--lr", "1e30", "--out", run_dir)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("non-finite", err)
        self.assertFalse(os.path.exists(os.path.join(run_dir, "best.safetensors")))

    def test_eval_refuses_non_finite_weights(self):
        run_dir = os.path.join(self.dir, "ok")
        rc, out, err = self.train("--out", run_dir)
        self.assertEqual(rc, 0, out + err)
        ckpt = os.path.join(run_dir, "best.safetensors")
        name = poison_safetensors(ckpt)
        rc, out, err = run("eval", "--checkpoint", ckpt)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("non-finite", err)
        self.assertIn(name, err)
        self.assertNotIn("loss nan", out)

    def test_sigint_saves_and_says_how_to_resume(self):
        run_dir = os.path.join(self.dir, "run")
        p = subprocess.Popen([TANDEM, "train", "--model", "mlp", "--synthetic", "512", "--epochs", "500",
                              "--val-split", "64", "--batch-size", "16", "--out", run_dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=test_env())
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("(Epoch 2 / 500)"):
                break
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
        out = "".join(seen) + rest
        self.assertEqual(p.returncode, 130, out + err)
        self.assertIn("tandem train --resume " + run_dir, out + err)
        self.assertTrue(os.path.isfile(os.path.join(run_dir, "last.safetensors")))
        self.assertEqual([f for f in os.listdir(run_dir) if ".tmp" in f], [])
        # kill -9 in the middle of a save leaves a temporary: the next start cleans it.
        stale = os.path.join(run_dir, "last.safetensors.tmp.999999999.0")
        with open(stale, "wb") as f:
            f.write(b"partial")
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            done = len(list(csv.DictReader(f)))
        rc, out, err = run("train", "--resume", run_dir, "--epochs", str(done + 1))
        self.assertEqual(rc, 0, out + err)
        self.assertFalse(os.path.exists(stale))

    def test_sigint_in_the_first_epoch(self):
        run_dir = os.path.join(self.dir, "run")
        p = subprocess.Popen([TANDEM, "train", "--model", "mlp", "--synthetic", "20000", "--epochs", "2",
                              "--val-split", "0", "--batch-size", "8", "--out", run_dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=test_env())
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("estimate:"):
                break
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
        out = "".join(seen) + rest
        self.assertEqual(p.returncode, 130, out + err)
        self.assertIn("tandem train --resume " + run_dir, out + err)
        self.assertTrue(os.path.isfile(os.path.join(run_dir, "last.safetensors")))

    def test_deeply_nested_json_model(self):
        for name, text in (("deep.json", '{"layers": [' + '{"type": "Sequential", "layers": [' * 10000 + "]}" * 10000
                            + "]}"), ("brackets.json", "[" * 200000)):
            path = os.path.join(self.dir, name)
            with open(path, "w") as f:
                f.write(text)
            rc, out, err = run("train", "--model", path, "--synthetic", "64", "--out", os.path.join(self.dir, "r"))
            self.assertEqual(rc, 2, f"{name}: exit {rc}\n{out}\n{err}")
            self.assertIn("nest", err)
            self.assertFalse(os.path.exists(os.path.join(self.dir, "r")))


    def test_deeply_nested_config_json(self):
        # --resume, eval, predict and --config read a config.json: bounded as a model file is.
        run_dir = os.path.join(self.dir, "r")
        rc, out, err = self.train("--out", run_dir)
        self.assertEqual(rc, 0, out + err)
        deep = '{"settings": ' + "[" * 200000 + "]" * 200000 + "}"
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write(deep)
        png = os.path.join(self.dir, "x.png")
        write_png(png, 32, 32, (1, 2, 3))
        for args in (("train", "--resume", run_dir, "--epochs", "2"),
                     ("eval", "--checkpoint", os.path.join(run_dir, "last.safetensors")),
                     ("predict", "--from", run_dir, png),
                     ("train", "--config", os.path.join(run_dir, "config.json"), "--out",
                      os.path.join(self.dir, "c"))):
            rc, out, err = run(*args)
            self.assertEqual(rc, 2, f"{args}: exit {rc}\n{out}\n{err}")
            self.assertIn("nest deeper than", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "c")))

    def test_overwrite_with_resume(self):
        run_dir = os.path.join(self.dir, "r")
        rc, out, err = self.train("--out", run_dir)
        self.assertEqual(rc, 0, out + err)
        # --overwrite into the resumed run would delete the checkpoint it resumes.
        for extra in ((), ("--out", run_dir)):
            rc, out, err = run("train", "--resume", run_dir, "--epochs", "2", "--overwrite", *extra)
            self.assertEqual(rc, 2, out + err)
            self.assertIn("--overwrite cannot be combined with --resume", err)
            self.assertTrue(os.path.isfile(os.path.join(run_dir, "last.safetensors")))
        other = os.path.join(self.dir, "other")
        os.makedirs(other)
        with open(os.path.join(other, "metrics.csv"), "w") as f:
            f.write("old\n")
        rc, out, err = run("train", "--resume", run_dir, "--epochs", "2", "--out", other)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("is not empty", err)
        rc, out, err = run("train", "--resume", run_dir, "--epochs", "2", "--out", other, "--overwrite")
        self.assertEqual(rc, 0, out + err)
        with open(os.path.join(other, "metrics.csv")) as f:
            self.assertEqual(len(list(csv.DictReader(f))), 2)

    def test_config_file_goes_through_the_checks(self):
        rc, out, err = run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "1", "--print-config")
        self.assertEqual(rc, 0, out + err)
        good = json.loads(out)
        bad_model = os.path.join(self.dir, "seven.json")
        with open(bad_model, "w") as f:
            json.dump({"layers": [{"type": "Flatten"}, {"type": "Linear", "in": 3072, "out": 7}]}, f)
        rc, out, err = run("train", "--model", bad_model, "--synthetic", "64", "--print-config")
        self.assertEqual(rc, 2, out + err)  # the dry forward runs before --print-config too
        self.assertIn("7 outputs", err)
        out_dir = os.path.join(self.dir, "x")
        cases = [("seed", lambda c: c["settings"].update(seed=-1), "settings.seed"),
                 ("synthetic", lambda c: c["settings"]["data"].update(synthetic=10 ** 9), "settings.data.synthetic"),
                 ("lr", lambda c: c["settings"].update(lr=-1), "--lr must be a positive number"),
                 ("val_split", lambda c: c["settings"].update(val_split=-5), "settings.val_split"),
                 ("model", lambda c: c["model"]["layers"][-1].update(out=7), "7 outputs")]
        for name, change, message in cases:
            c = json.loads(json.dumps(good))
            change(c)
            path = os.path.join(self.dir, name + ".json")
            with open(path, "w") as f:
                json.dump(c, f)
            rc, out, err = run("train", "--config", path, "--out", out_dir)
            self.assertEqual(rc, 2, f"{name}: exit {rc}\n{out}\n{err}")
            self.assertIn(message, err)
            self.assertFalse(os.path.exists(out_dir), name)
        # --config does not bypass the run-directory rule.
        path = os.path.join(self.dir, "good.json")
        with open(path, "w") as f:
            json.dump(good, f)
        os.makedirs(out_dir)
        with open(os.path.join(out_dir, "keep.txt"), "w") as f:
            f.write("x")
        rc, out, err = run("train", "--config", path, "--out", out_dir)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("is not empty", err)
        # Without --out, a new runs/<date-time> (in the working directory).
        rc, out, err = run("train", "--config", path, cwd=self.dir)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(len(os.listdir(os.path.join(self.dir, "runs"))), 1)

    def test_predict_refuses_non_finite_weights(self):
        run_dir = os.path.join(self.dir, "ok")
        rc, out, err = self.train("--out", run_dir)
        self.assertEqual(rc, 0, out + err)
        ckpt = os.path.join(run_dir, "last.safetensors")
        poison_safetensors(ckpt)
        png = os.path.join(self.dir, "x.png")
        write_png(png, 32, 32, (1, 2, 3))
        rc, out, err = run("predict", "--from", ckpt, png, "--threads", "1")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("non-finite", err)


class Messages(unittest.TestCase):
    """Issue 24: messages name the user's words and flags, not CLI11's or the library's."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def expect(self, args, code, *needles, env=None):
        rc, out, err = run(*args, env=env)
        self.assertEqual(rc, code, f"tandem {' '.join(args)}: exit {rc}\nstdout:\n{out}\nstderr:\n{err}")
        for n in needles:
            self.assertIn(n, out + err, f"tandem {' '.join(args)}: no '{n}' in\n{out}\n{err}")
        return out, err

    def test_unknown_command_suggests(self):
        out, err = self.expect(["trian"], 2, "'trian'", "tandem train")
        self.assertNotIn("A subcommand is required", err)
        self.expect(["bench", "tarin"], 2, "'tarin'", "tandem bench train")
        self.expect(["data", "gte"], 2, "'gte'", "tandem data get")

    def test_repeated_option(self):
        out, err = self.expect(["train", "--epochs", "1", "--epochs", "2", "--synthetic", "64"], 2, "--epochs",
                               "once")
        self.assertNotIn("At Most", err)

    def test_ranges(self):
        out, err = self.expect(["train", "--synthetic", "0"], 2, "--synthetic", "must be a whole number from 1 to")
        self.assertIsNone(re.search(r"\d{20}", out + err), err)
        self.expect(["train", "--synthetic", "64", "--seed", "-1", "--out", self.dir], 2, "--seed",
                    "must be a whole number >= 0")
        self.expect(["train", "--synthetic", "64", "--val-split", "-1", "--out", self.dir], 2,
                    "--val-split must be >= 0")

    def test_data_flags_named(self):
        out, err = self.expect(["data", "get", "--no-download", "--cache-dir", os.path.join(self.dir, "c")], 1,
                               "--no-download")
        self.assertNotIn("Cifar10Options", err)
        out, err = self.expect(["data", "get", "--no-download", "--cache-dir", "/proc/foo"], 1, "--cache-dir")
        self.assertNotIn("Cifar10Options", err)

    def test_huge_model_says_its_size(self):
        path = os.path.join(self.dir, "huge.json")
        with open(path, "w") as f:
            json.dump({"layers": [{"type": "Conv2d", "in": 3, "out": 10 ** 12, "kernel": 3}]}, f)
        out, err = self.expect(["train", "--model", path, "--synthetic", "64", "--out", self.dir], 2,
                               "parameters", "too large")
        self.assertNotIn("batch size", err)
        self.assertNotIn("not a valid JSON model file", err)

    def test_model_checked_before_the_run_dir(self):
        for name, layers, needles in (
                ("seven.json", [{"type": "Flatten"}, {"type": "Linear", "in": 3072, "out": 7}],
                 ("7 outputs", "10 classes")),
                ("shape.json", [{"type": "Flatten"}, {"type": "Linear", "in": 100, "out": 10}], ("layer 1",))):
            path = os.path.join(self.dir, name)
            with open(path, "w") as f:
                json.dump({"layers": layers}, f)
            run_dir = os.path.join(self.dir, "run")
            out, err = self.expect(["train", "--model", path, "--synthetic", "64", "--out", run_dir], 2, *needles)
            self.assertFalse(os.path.exists(run_dir), name)

    def test_resume_with_fewer_epochs(self):
        run_dir = os.path.join(self.dir, "run")
        rc, out, err = run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "2", "--val-split", "0",
                           "--out", run_dir)
        self.assertEqual(rc, 0, out + err)
        with open(os.path.join(run_dir, "config.json")) as f:
            before = f.read()
        out, err = self.expect(["train", "--resume", run_dir, "--epochs", "1"], 2, "--epochs 1", "2 epochs")
        with open(os.path.join(run_dir, "config.json")) as f:
            self.assertEqual(f.read(), before)

    def test_info_reason_once(self):
        rc, out, err = run("info")
        self.assertEqual(rc, 0, out + err)
        if "CUDA backend: can run here" in out:
            self.skipTest("a usable GPU is present")
        # The CUDA backend's reason, once (the NCCL line names its own).
        reasons = [l for l in out.splitlines()
                   if l.startswith("CUDA") and ("not built" in l or "built without" in l)]
        self.assertEqual(len(reasons), 1, out)

    def test_help_shows_its_own_examples(self):
        for cmd, own in ((["bench"], "tandem bench ops"), (["data"], "tandem data import")):
            rc, out, err = run(*cmd, "--help")
            self.assertEqual(rc, 0, out + err)
            self.assertIn(own, out)
            self.assertNotIn("tandem train --out runs/first", out)

    def test_usage_says_tandem(self):
        for cmd in ([], ["train"], ["bench", "train"]):
            rc, out, err = run(*cmd, "--help")
            self.assertIn("Usage: tandem", out)
            self.assertNotIn(TANDEM, out)


class Threads(unittest.TestCase):
    """--threads N on every command; idle OpenMP threads wait passively by default."""

    def test_threads_option(self):
        for cmd in (["info"], ["bench", "ops", "--scale", "0.02", "--reps", "1", "--device", "cpu"],
                    ["bench", "train", "--model", "mlp", "--batch-size", "8", "--steps", "1", "--warmup", "1"]):
            rc, out, err = run(*cmd, "--threads", "1")
            self.assertEqual(rc, 0, f"{cmd}: {out}{err}")
        rc, out, err = run("info", "--threads", "1", "--json")
        self.assertEqual(json.loads(out)["cpu_threads"], 1)
        rc, out, err = run("info", "--threads", "0")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--threads", err)
        with tempfile.TemporaryDirectory() as tmp:
            # On the CPU (with a GPU, emulated or real, --device auto would pick it).
            rc, out, err = run("train", "--model", "mlp", "--synthetic", "64", "--epochs", "1", "--threads", "1",
                               "--device", "cpu", "--out", os.path.join(tmp, "r"))
            self.assertEqual(rc, 0, out + err)
            self.assertIn("1 CPU thread", out)

    def test_passive_wait_policy(self):
        env = test_env()
        env.pop("OMP_WAIT_POLICY", None)
        p = subprocess.run([TANDEM, "info", "--json"], capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["omp_wait_policy"], "passive")
        env["OMP_WAIT_POLICY"] = "active"
        p = subprocess.run([TANDEM, "info", "--json"], capture_output=True, text=True, env=env)
        self.assertEqual(json.loads(p.stdout)["omp_wait_policy"], "active")


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
            self.assertEqual(config["settings"]["lr"], 0.02)  # lenet's recipe
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


class ResnetFastRecipe(unittest.TestCase):
    """resnet-fast takes airbench94's recipe: all training images by default, --val-split still holds some out."""

    def test_defaults_then_val_split(self):
        rc, out, err = run("train", "--model", "resnet-fast", "--synthetic", "64", "--print-config")
        self.assertEqual(rc, 0, out + err)
        s = json.loads(out)["settings"]
        self.assertEqual(s["val_split"], 0)
        self.assertEqual(s["lr"], 1.5)
        self.assertTrue(s["drop_last"] and s["dirac_init"] and s["alternating_flip"] and s["tta_translate"])
        self.assertEqual(s["translate_padding"], "reflect")
        self.assertEqual(s["whitening_bias_epochs"], 3)
        self.assertEqual(s["lookahead"], {"start_epoch": 3, "every": 5, "decay_base": 0.95, "decay_pow": 3.0})
        # airbench's lr is per example: half the batch, half the lr (unless --lr is given).
        rc, out, err = run("train", "--model", "resnet-fast", "--synthetic", "64", "--batch-size", "512",
                           "--print-config")
        self.assertEqual(json.loads(out)["settings"]["lr"], 0.75)
        rc, out, err = run("train", "--model", "resnet-fast", "--synthetic", "64", "--batch-size", "512",
                           "--lr", "0.3", "--print-config")
        self.assertEqual(json.loads(out)["settings"]["lr"], 0.3)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = os.path.join(tmp, "run")
            rc, out, err = run("train", "--model", "resnet-fast", "--device", "cpu", "--synthetic", "96",
                               "--batch-size", "16", "--val-split", "32", "--epochs", "1", "--limit-batches", "2",
                               "--out", run_dir)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("32 training / 32 validation / 24 test images", out)
            self.assertIn("dirac: the convolutions start as partial identities", out)
            with open(os.path.join(run_dir, "metrics.csv")) as f:
                rows = list(csv.DictReader(f))
            self.assertTrue(0 <= float(rows[0]["val_accuracy"]) <= 1)
            with open(os.path.join(run_dir, "results.json")) as f:
                results = json.load(f)
            self.assertIn("flip + translate TTA", results["evaluated"])


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

    def test_info_lists_dist_backends(self):
        rc, out, err = run("info")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("dist backend gloo: ", out)
        self.assertIn("dist backend nccl: ", out)


class Dist(unittest.TestCase):
    """tandem train --nproc 2 on a synthetic set: the ranks meet over a file
    rendezvous on this machine; only rank 0 writes the run directory."""

    def test_nproc_two_ranks_train_and_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = os.path.join(tmp, "run")
            env = dict(os.environ, TANDEM_DIST_TIMEOUT="60")
            rc, out, err = run("train", "--synthetic", "256", "--model", "lenet", "--epochs", "1",
                               "--batch-size", "32", "--val-split", "64", "--nproc", "2",
                               "--out", out_dir, env=env)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("launching 2 ranks", err)
            self.assertEqual(out.count("dist: rank 0 of 2, backend gloo, global batch 32 (16 per rank)"), 1, out)
            with open(os.path.join(out_dir, "results.json")) as f:
                results = json.load(f)
            self.assertEqual(results["world_size"], 2)
            rc, out, err = run("train", "--resume", out_dir, "--epochs", "2", "--nproc", "2", env=env)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("resumed after epoch 1 of 2", out)
            with open(os.path.join(out_dir, "metrics.jsonl")) as f:
                self.assertEqual(len(f.read().strip().splitlines()), 2)

    def test_nproc_with_rank_is_a_usage_error(self):
        rc, out, err = run("train", "--synthetic", "64", "--nproc", "2", "--rank", "0")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--nproc starts the ranks of one machine", err)


class Check(unittest.TestCase):
    """`tandem check`: the op registry on the CPU (against float64) and on the
    CUDA device (against the CPU; the emulated device in the emu build)."""

    def test_cpu_quick(self):
        rc, out, err = run("check", "--device", "cpu", "--quick")
        self.assertEqual(rc, 0, out[-3000:] + err)
        self.assertIn("cpu against the float64 reference", out)
        self.assertRegex(out, r"\n\d+ checks on cpu: 0 failed\n")
        for column in ("op", "dtype", "shape", "max_abs", "max_rel", "atol", "rtol", "verdict"):
            self.assertIn(column, out.splitlines()[1])

    def test_cuda_quick(self):
        rc, out, err = run("check", "--device", "cuda", "--quick", "--json", timeout=600)
        self.assertEqual(rc, 0, out[-3000:] + err)
        report = json.loads(out)
        if report["device"] == "cpu":  # no usable GPU: said, and the CPU is checked instead
            self.assertNotEqual(os.environ.get("TANDEM_REQUIRE_CUDA"), "1", err)
            self.assertIn("no usable CUDA device", err)
        else:
            self.assertEqual(report["device"], "cuda:0")
            self.assertEqual(report["against"], "the CPU")
        self.assertEqual(report["failed"], 0)
        self.assertGreater(report["checks"], 500)
        whats = {r["check"] for r in report["rows"]}
        self.assertTrue({"forward", "backward"} <= whats or {"forward vs float64", "backward (gradcheck)"} <= whats,
                        whats)

    def test_ops_and_dtype(self):
        rc, out, err = run("check", "--ops", "conv2d_stride,max_pool", "--dtype", "float64", "--json")
        self.assertEqual(rc, 0, out + err)
        rows = json.loads(out)["rows"]
        self.assertTrue(rows)
        self.assertEqual({r["dtype"] for r in rows}, {"float64"})
        self.assertTrue(all("conv2d_stride" in r["op"] or "max_pool" in r["op"] for r in rows), rows)
        # Integer dtypes: the records that list them (slicing), forward only.
        rc, out, err = run("check", "--ops", "slice", "--dtype", "uint8", "--json")
        self.assertEqual(rc, 0, out + err)
        rows = json.loads(out)["rows"]
        self.assertGreater(len(rows), 10)
        self.assertEqual({r["dtype"] for r in rows}, {"uint8"})
        self.assertFalse([r for r in rows if "backward" in r["check"]], rows)

    def test_usage_errors(self):
        for args, needle in ((["--dtype", "int8"], "--dtype"), (["--device", "tpu"], "--device"),
                             (["--ops", "no_such_op"], "matches no op record")):
            rc, out, err = run("check", *args)
            self.assertEqual(rc, 2, args)
            self.assertIn(needle, err, args)


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
        self.assertIn("estimate: ", out)  # from the steps there are (the median of 1 timed step)
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


def learnable_images(n, seed):
    """n CIFAR-shaped images (3x32x32 bytes) and labels: a colour per class plus noise, so a
    small net learns them in an epoch or two."""
    import random
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 10
        img = bytearray()
        for c in range(3):
            base = (label * (c + 3) * 37) % 156
            img += bytes(base + rng.randrange(100) for _ in range(1024))
        out.append((label, bytes(img)))
    return out


def write_cifar_bin_dir(d, train_per_file=20, test=20, seed=1):
    """A small CIFAR-10 directory in the official binary layout (five training batch files,
    the test batch and batches.meta.txt); returns {file name: [(label, 3072 bytes)]}."""
    os.makedirs(d, exist_ok=True)
    content = {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        recs = learnable_images(test if name == "test_batch.bin" else train_per_file, seed * 100 + k)
        content[name] = recs
        with open(os.path.join(d, name), "wb") as f:
            for label, img in recs:
                f.write(bytes([label]) + img)
    with open(os.path.join(d, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    return content


CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_png_chw(path, chw):
    """An 8-bit RGB PNG of a 3x32x32 planar image (standard library only)."""
    import zlib
    rows = b"".join(b"\x00" + bytes(chw[c * 1024 + y * 32 + x] for x in range(32) for c in range(3))
                    for y in range(32))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) % 3073 == 0, path
    return [(data[i], data[i + 1:i + 3073]) for i in range(0, len(data), 3073)]


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f]


def results(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)


def settings(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        return json.load(f)["settings"]


FIGURES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def figures(run_dir):
    """The run's figures that do not depend on timing: per epoch and the test result."""
    per_epoch = [{k: e.get(k) for k in FIGURES} for e in metrics(run_dir)]
    r = results(run_dir)
    return per_epoch, r["test_accuracy"], r["confusion"]


class EndToEnd(unittest.TestCase):
    """Issue 29: the options of train, eval and data run end to end, and their figures are
    checked: reproducible under --seed, equal where they must be, learning where they must."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def train(self, name, *args, env=None):
        run_dir = os.path.join(self.dir, name)
        rc, out, err = run("train", *args, "--out", run_dir, env=env)
        self.assertEqual(rc, 0, f"tandem train {' '.join(args)}\n{out}\n{err}")
        return run_dir, out, err

    def small(self, name, *extra, epochs=2):
        """mlp on 160 synthetic images, batches of 16, 32 for validation."""
        return self.train(name, "--synthetic", "160", "--model", "mlp", "--batch-size", "16",
                          "--epochs", str(epochs), "--val-split", "32", "--device", "cpu", *extra)

    def test_seed_reproduces_the_figures_and_learns(self):
        a, _, _ = self.small("a", "--seed", "7")
        b, _, _ = self.small("b", "--seed", "7")
        c, _, _ = self.small("c", "--seed", "8")
        self.assertEqual(figures(a), figures(b), "the same --seed gave other figures")
        self.assertNotEqual(figures(a)[0], figures(c)[0], "--seed 8 changed nothing")
        self.assertEqual(settings(a)["seed"], 7)
        # The synthetic set (a colour per class plus noise) is learnable: chance is 10%.
        per_epoch, test_acc, confusion = figures(a)
        self.assertLess(per_epoch[0]["train_loss"], math.log(10))
        self.assertLess(per_epoch[1]["train_loss"], per_epoch[0]["train_loss"])
        self.assertGreaterEqual(per_epoch[1]["val_accuracy"], 0.9)
        self.assertGreaterEqual(test_acc, 0.9)
        self.assertEqual(sum(map(sum, confusion)), 40)  # 160 / 4 test images
        self.assertAlmostEqual(sum(confusion[i][i] for i in range(10)) / 40, test_acc, places=12)

    def test_workers_do_not_change_the_figures(self):
        a, _, _ = self.small("w1", "--seed", "3", "--workers", "1")
        b, _, _ = self.small("w3", "--seed", "3", "--workers", "3")
        self.assertEqual(figures(a), figures(b))

    def test_schedules(self):
        # 128 images in batches of 16 (no validation): 8 steps an epoch, 32 in all. metrics
        # records the lr at the start of each epoch.
        def lrs(schedule):
            run_dir, out, _ = self.train(schedule, "--synthetic", "128", "--model", "mlp", "--batch-size",
                                         "16", "--epochs", "4", "--val-split", "0", "--device", "cpu",
                                         "--schedule", schedule)
            self.assertIn(f"schedule {schedule}", out)
            self.assertEqual(settings(run_dir)["schedule"], schedule)
            return [e["lr"] for e in metrics(run_dir)], settings(run_dir)["lr"]

        got, lr0 = lrs("cosine")
        want = [lr0 * (1 + math.cos(math.pi * s / 32)) / 2 for s in (0, 8, 16, 24)]
        for g, w in zip(got, want):
            self.assertAlmostEqual(g, w, delta=1e-9 * lr0, msg=f"cosine: {got} vs {want}")
        got, lr0 = lrs("warmup-linear")
        peak = math.floor(0.1 * 32)  # 10% warm-up from 0.1 lr, then linear to 0

        def factor(s):
            return 0.1 + 0.9 * s / peak if s < peak else 1 - (s - peak) / (32 - peak)

        want = [lr0 * factor(s) for s in (0, 8, 16, 24)]
        for g, w in zip(got, want):
            self.assertAlmostEqual(g, w, delta=1e-9 * lr0, msg=f"warmup-linear: {got} vs {want}")
        got, lr0 = lrs("constant")
        self.assertEqual(got, [lr0] * 4)

    def test_label_smoothing(self):
        # With smoothing s the target puts 1 - s + s/10 on the label and s/10 elsewhere; the
        # cross-entropy cannot fall below that distribution's entropy, while the unsmoothed loss
        # of the same (learnable) run falls well below it.
        s = 0.2
        hi, lo = 1 - s + s / 10, s / 10
        floor = -(hi * math.log(hi) + 9 * lo * math.log(lo))
        smooth, _, _ = self.small("smooth", "--seed", "5", "--label-smoothing", str(s), epochs=3)
        plain, _, _ = self.small("plain", "--seed", "5", epochs=3)
        self.assertEqual(settings(smooth)["label_smoothing"], s)
        self.assertEqual(settings(plain)["label_smoothing"], 0)
        for e in metrics(smooth):  # the validation loss is the plain cross-entropy
            self.assertGreater(e["train_loss"], floor)
        self.assertLess(metrics(plain)[-1]["train_loss"], floor - 0.3)

    def test_no_augment(self):
        # lenet's recipe flips images at random; --no-augment turns that off (and so changes
        # the figures of an otherwise identical run, which repeats exactly without it).
        args = ("--synthetic", "96", "--model", "lenet", "--batch-size", "16", "--epochs", "1",
                "--val-split", "16", "--device", "cpu", "--seed", "2")
        aug, _, _ = self.train("aug", *args)
        no1, _, _ = self.train("no1", *args, "--no-augment")
        no2, _, _ = self.train("no2", *args, "--no-augment")
        self.assertTrue(settings(aug)["augment_flip"])
        self.assertFalse(settings(no1)["augment_flip"])
        self.assertEqual(settings(no1)["augment_translate"], 0)
        self.assertEqual(figures(no1), figures(no2))
        self.assertNotEqual(metrics(aug)[0]["train_loss"], metrics(no1)[0]["train_loss"])

    def test_eval_tta_and_no_tta(self):
        run_dir, _, _ = self.small("run", "--seed", "4")
        ckpt = os.path.join(run_dir, "best.safetensors")

        def ev(*flags):
            rc, out, err = run("eval", "--checkpoint", ckpt, "--json", *flags)
            self.assertEqual(rc, 0, out + err)
            return json.loads(out)

        plain, tta = ev("--no-tta"), ev("--tta")
        self.assertFalse(plain["tta_flip"])
        self.assertTrue(tta["tta_flip"])
        # The run's own test figure (mlp: no TTA) is what eval reproduces.
        self.assertEqual(ev()["tta_flip"], False)
        self.assertEqual(plain["test_accuracy"], results(run_dir)["test_accuracy"])
        self.assertEqual(plain["confusion"], results(run_dir)["confusion"])
        for r in (plain, tta):
            self.assertEqual(sum(map(sum, r["confusion"])), 40)
        # Flipped images are other inputs to an mlp (its weights are per pixel), so the
        # averaged logits give other results; the class colours still show (chance is 10%).
        self.assertGreaterEqual(tta["test_accuracy"], 0.5)
        rc, out, err = run("eval", "--checkpoint", ckpt, "--tta", "--no-tta")
        self.assertEqual(rc, 2, out + err)

    def test_resume_from_a_checkpoint_file_continues_the_run(self):
        # Two epochs in one go against one epoch, then --resume of its last.safetensors (a
        # file, not the directory) for the second.
        whole, _, _ = self.small("whole", "--seed", "6")
        part, _, _ = self.small("part", "--seed", "6", epochs=1)
        rc, out, err = run("train", "--resume", os.path.join(part, "last.safetensors"), "--epochs", "2")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("resumed after epoch 1 of 2", out)
        self.assertEqual([e["epoch"] for e in metrics(part)], [1, 2])
        w, p = metrics(whole), metrics(part)
        for k in FIGURES:
            self.assertAlmostEqual(p[1][k], w[1][k], delta=1e-6 * max(1.0, abs(w[1][k])),
                                   msg=f"{k} of the resumed epoch")
        self.assertAlmostEqual(results(part)["test_accuracy"], results(whole)["test_accuracy"], delta=0.026)

    def test_model_auto_on_the_cpu(self):
        run_dir, out, err = self.train("auto", "--model", "auto", "--device", "cpu", "--synthetic", "64",
                                       "--batch-size", "32", "--epochs", "1", "--limit-batches", "1",
                                       "--val-split", "0")
        self.assertIn("model: lenet (--model auto on the CPU", out + err)
        self.assertEqual(settings(run_dir)["model"], "lenet")

    def test_data_dir_trains_and_learns(self):
        data = os.path.join(self.dir, "cifar-bin")
        content = write_cifar_bin_dir(data, train_per_file=40, test=30)
        run_dir, out, err = self.train("run", "--data", data, "--model", "mlp", "--batch-size", "20",
                                       "--epochs", "3", "--val-split", "20", "--device", "cpu", "--seed", "1")
        self.assertIn(f"CIFAR-10 binary files in {data}", out + err)
        r = results(run_dir)
        self.assertEqual(r["test_images"], 30)
        # The confusion rows are the true labels of the test file.
        want = [sum(1 for label, _ in content["test_batch.bin"] if label == k) for k in range(10)]
        self.assertEqual([sum(row) for row in r["confusion"]], want)
        self.assertGreaterEqual(r["test_accuracy"], 0.9)
        with open(os.path.join(run_dir, "config.json")) as f:
            self.assertEqual(json.load(f)["settings"]["data"]["path"], data)

    def test_data_get_from_the_environment_then_the_cache(self):
        src = os.path.join(self.dir, "src")
        content = write_cifar_bin_dir(src, train_per_file=3, test=4)
        cache = os.path.join(self.dir, "cache")
        rc, out, err = run("data", "get", "--cache-dir", cache, "--no-download", env={"TANDEM_CIFAR10": src})
        self.assertEqual(rc, 0, out + err)
        self.assertIn("15 training and 4 test images", out)
        for name, recs in content.items():
            self.assertEqual(read_records(os.path.join(cache, "cifar-10-batches-bin", name)), recs, name)
        # Again without a source: the cache answers.
        rc, out, err = run("data", "get", "--cache-dir", cache, "--no-download")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("15 training and 4 test images", out)
        # No cache, no source, no download: an error that says what to do.
        rc, out, err = run("data", "get", "--cache-dir", os.path.join(self.dir, "none"), "--no-download")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("tandem data get: error", err)
        self.assertIn("TANDEM_CIFAR10", err)

    def test_data_import_of_an_image_tree_and_its_archive(self):
        import tarfile
        tree = os.path.join(self.dir, "tree")
        want = {"train": [], "test": []}
        for split, per_class in (("train", 2), ("test", 1)):
            for k, cls in enumerate(CLASSES):
                os.makedirs(os.path.join(tree, split, cls))
                for j in range(per_class):
                    img = learnable_images(1, 1000 * k + 10 * j + (split == "test"))[0][1]
                    write_png_chw(os.path.join(tree, split, cls, f"{j:04d}.png"), img)
                    want[split].append((k, img))
        archive = os.path.join(self.dir, "tree.tar.gz")
        with tarfile.open(archive, "w:gz") as t:
            t.add(tree, arcname="cifar10-png")
        for source in (tree, archive):
            cache = os.path.join(self.dir, "cache-" + os.path.basename(source))
            rc, out, err = run("data", "import", source, "--cache-dir", cache)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("20 training and 10 test images", out)
            bin_dir = os.path.join(cache, "cifar-10-batches-bin")
            train = [r for i in range(1, 6) for r in read_records(os.path.join(bin_dir, f"data_batch_{i}.bin"))]
            # Every pixel and label made it; the training order interleaves the classes.
            self.assertEqual(sorted(train), sorted(want["train"]))
            self.assertEqual(sorted(read_records(os.path.join(bin_dir, "test_batch.bin"))), sorted(want["test"]))
            self.assertEqual([label for label, _ in train[:10]], list(range(10)))
        rc, out, err = run("data", "import", os.path.join(self.dir, "nope"))
        self.assertEqual(rc, 2, out + err)

    def test_device_cuda_matches_the_cpu(self):
        if "CUDA backend: can run here" not in run("info")[1]:
            # No device (the emulated one counts): the same request is a usage error.
            rc, out, err = run("train", "--device", "cuda", "--model", "mlp", "--synthetic", "64",
                               "--out", os.path.join(self.dir, "gpu"))
            self.assertEqual(rc, 2, out + err)
            self.assertIn("--device cuda: the CUDA backend cannot run here", err)
            return
        cpu, _, _ = self.small("cpu", "--seed", "9")
        gpu, out, _ = self.train("gpu", "--synthetic", "160", "--model", "mlp", "--batch-size", "16",
                                 "--epochs", "2", "--val-split", "32", "--device", "cuda", "--seed", "9")
        self.assertIn("device: the GPU (--device cuda)", out)
        self.assertEqual(settings(gpu)["seed"], 9)
        c, g = metrics(cpu), metrics(gpu)
        for ec, eg in zip(c, g):
            for k in ("train_loss", "val_loss"):
                self.assertAlmostEqual(eg[k], ec[k], delta=1e-3 * abs(ec[k]), msg=k)
            for k in ("train_accuracy", "val_accuracy"):
                self.assertAlmostEqual(eg[k], ec[k], delta=0.04, msg=k)


GROUPS = {"errors": Errors, "safety": Safety, "messages": Messages, "threads": Threads, "train": Train,
          "resnet_fast": ResnetFastRecipe,
          "model_json": ModelJson, "bench": Bench, "info": Info, "ux": Ux, "dist": Dist,
          "e2e": EndToEnd, "check": Check}

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
