"""A run survives a kill at any moment and a NaN: SIGKILL inside each checkpoint write (the KGOOGLENET_FAULT hook)
and at 10 random moments, each followed by the same command; checkpoints truncated by hand; NaN planted in a batch
and a diverging learning rate. Tiny digits runs: variant "cifar", width 0.125, 32x32, 2 steps per epoch."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from kgooglenet import GoogLeNet
from kgooglenet.data import DataConfig
from kgooglenet.saving import load_model, model_info
from kgooglenet.train import TrainConfig, train
from kgooglenet.train.run import META_ATTR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
ENV.pop("KGOOGLENET_FAULT", None)
TINY = ["--width", "0.125", "--no-aux", "--steps-per-epoch", "2", "--validation-steps", "1", "--batch-size", "16",
        "--set", "tensorboard=false", "--set", "plots=false", "--verbose", "0"]


def tiny_config(out_dir, epochs=3, **kw):
    return TrainConfig(data=DataConfig(batch_size=16, seed=0), width=0.125, epochs=epochs, steps_per_epoch=2,
                       validation_steps=1, out_dir=str(out_dir), verbose=0, tensorboard=False, plots=False, **kw)


def committed(out_dir) -> int:
    """Committed epochs, read from the backup file names (a backup exists under its name only once renamed)."""
    folder = os.path.join(out_dir, "checkpoints", "backup")
    names = [f for f in os.listdir(folder) if f.startswith("ckpt-")] if os.path.isdir(folder) else []
    return max((int(f[5:9]) for f in names), default=0)


def meta(path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs[META_ATTR])


def assert_finite_checkpoints(out_dir, epochs):
    """Every checkpoint of the run loads into a fresh model and gives finite outputs; model.keras too."""
    ck = os.path.join(out_dir, "checkpoints")
    files = [os.path.join(ck, f) for f in ("best.weights.h5", "last.weights.h5")]
    files += [os.path.join(ck, "backup", f) for f in os.listdir(os.path.join(ck, "backup"))]
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model = GoogLeNet("cifar", num_classes=10, aux_heads=model_info(out_dir).aux_heads, width=0.125)
    outputs = lambda m: tf.nest.flatten(m.predict(x, verbose=0))  # noqa: E731
    for path in files:
        model.load_weights(path)
        assert all(np.isfinite(v).all() for v in outputs(model)), path
    assert meta(os.path.join(ck, "last.weights.h5"))["epoch"] == epochs
    assert all(np.isfinite(v).all() for v in outputs(load_model(out_dir)))
    leftovers = [f for d in (out_dir, ck, os.path.join(ck, "backup")) for f in os.listdir(d) if ".tmp" in f]
    assert leftovers == []


def start(cmd, fault=None):
    env = dict(ENV, KGOOGLENET_FAULT=fault) if fault else ENV
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_kills_inside_every_write_and_at_random_moments_lose_nothing(tmp_path):
    out_dir = str(tmp_path / "run")
    epochs = 12
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "train.py"), "--out-dir", out_dir, "--epochs", str(epochs),
           *TINY]
    outputs = []

    def check_resume(text, before):
        assert "damaged" not in text, text[-3000:]  # atomic writes: a kill never leaves a damaged file
        if before and "kgooglenet.train: strategy" in text:  # (a kill may come before the summary line)
            assert f"resuming after epoch {before}" in text, text[-3000:]
        outputs.append(text)

    # inside each write: config (before epoch 1), backup (the commit of epoch 1: lost), best (epoch 1 committed, the
    # views repaired on resume), history and last (hit by those repairs), the second backup of a process, and
    # model.keras at the end
    for fault in ("config:1", "backup:1", "best:1", "history:1", "last:1", "backup:2"):
        before = committed(out_dir)
        proc = start(cmd, fault)
        text = proc.communicate(timeout=600)[0]
        assert proc.returncode == -signal.SIGKILL, f"{fault} did not kill the run:\n{text[-3000:]}"
        check_resume(text, before)
    assert committed(out_dir) == 2  # epoch 1 (best:1 process) and 2 (backup:2 process: its second commit was killed)
    rng = random.Random(0)
    for _ in range(6):  # at random moments of the training phase (after the summary line); 6 keeps CI in budget
        before = committed(out_dir)
        proc = start(cmd)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "kgooglenet.train: strategy" in line:
                break
        time.sleep(rng.uniform(0.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        lines.append(proc.communicate(timeout=120)[0])
        check_resume("".join(lines), before)
    before = committed(out_dir)
    proc = start(cmd, "model:1")  # killed right after writing model.keras: the next run only rewrites it
    text = proc.communicate(timeout=600)[0]
    check_resume(text, before)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check_resume(done.stdout, committed(out_dir))
    rows = open(os.path.join(out_dir, "history.csv")).read().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(epochs))  # each epoch exactly once
    assert_finite_checkpoints(out_dir, epochs)
    assert model_info(out_dir).provenance["run_dir"] == out_dir


def truncate(path, size=96):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_truncated_files_are_named_and_the_newest_good_state_wins(tmp_path, capsys):
    base = tmp_path / "base"
    first = train(tiny_config(base))
    assert first.epochs_run == 3 and first.best_checkpoint and first.model_file
    ck = base / "checkpoints"
    backups = [str(ck / "backup" / "ckpt-0003.weights.h5"), str(ck / "backup" / "ckpt-0002.weights.h5")]
    cases = [  # (files to truncate, epoch the run resumes after, what the message says)
        (backups[:1], 2, f"{backups[0]} is damaged"),
        (backups, 3, f"falling back to {ck / 'last.weights.h5'}"),
        (backups + [str(ck / "last.weights.h5")], 0, "falling back to a fresh start"),
        ([str(base / "history.csv")], 3, f"{base / 'history.csv'} is damaged or incomplete"),
        ([str(ck / "last.weights.h5")], 3, f"{ck / 'last.weights.h5'} is damaged"),
        ([str(base / "config.json")], 3, f"{base / 'config.json'} is damaged"),
    ]
    capsys.readouterr()
    for i, (files, resumed, message) in enumerate(cases):
        run = tmp_path / f"case{i}"
        shutil.copytree(base, run)
        for f in files:
            truncate(f.replace(str(base), str(run)), 40 if f.endswith((".csv", ".json")) else 96)
        result = train(tiny_config(run))
        printed = capsys.readouterr().out
        assert message.replace(str(base), str(run)) in printed, printed
        assert result.initial_epoch == resumed and result.epochs_run == 3
        assert result.history["epoch"] == [0, 1, 2]
        assert_finite_checkpoints(str(run), 3)
        assert TrainConfig.from_json(str(run / "config.json")) == tiny_config(run)
    # best.weights.h5: restored from the resume state when that is the best epoch, else named and started again
    run = tmp_path / "best"
    shutil.copytree(base, run)
    truncate(str(run / "checkpoints" / "best.weights.h5"))
    result = train(tiny_config(run, epochs=4))
    printed = capsys.readouterr().out
    best_epoch = first.history[first.monitor].index(first.best_metric) + 1
    if best_epoch != 3:
        assert f"{run / 'checkpoints' / 'best.weights.h5'} is damaged" in printed
    assert meta(result.best_checkpoint)["epoch"] in (best_epoch, 4)
    assert_finite_checkpoints(str(run), 4)


def weights_of(path):
    model = GoogLeNet("cifar", num_classes=10, aux_heads=False, width=0.125)  # TINY trains without aux heads
    model.load_weights(path)
    return model.get_weights()


def test_nan_in_a_batch_saves_nothing_of_that_epoch_and_the_rerun_resumes(tmp_path, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipes_train", os.path.join(ROOT, "recipes", "train.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    from kgooglenet.train.cli import run_main

    out_dir = tmp_path / "run"
    argv = ["--out-dir", str(out_dir), "--epochs", "3", *TINY]
    monkeypatch.setenv("KGOOGLENET_FAULT", "nan:3")  # the third batch: epoch 2, step 1
    captured = {}
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda a: captured.setdefault("result", recipe.main(a)), argv)
    result = captured["result"]
    err = capsys.readouterr().err
    assert exit_.value.code == 3
    assert "stopped on a non-finite loss at step 3 (epoch 2)" in err and "lower learning rate" in err
    assert (result.stop_reason, result.nonfinite_step, result.nonfinite_epoch) == ("non-finite loss", 3, 2)
    assert result.epochs_run == 1 and result.history["epoch"] == [0]
    ck = out_dir / "checkpoints"
    assert sorted(os.listdir(ck / "backup")) == ["ckpt-0001.weights.h5"]
    good = weights_of(str(ck / "backup" / "ckpt-0001.weights.h5"))
    assert all(np.isfinite(w).all() for w in good)
    for path in (ck / "best.weights.h5", ck / "last.weights.h5"):
        assert meta(str(path))["epoch"] == 1
        for a, b in zip(weights_of(str(path)), good):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(result.model.get_weights(), good):  # the returned model holds the last finite epoch too
        np.testing.assert_array_equal(a, b)
    assert model_info(str(out_dir)).provenance["epoch"] == 1
    assert len(open(out_dir / "history.csv").read().strip().splitlines()) == 2
    monkeypatch.delenv("KGOOGLENET_FAULT")
    again = recipe.main(argv)
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert again.stop_reason is None and again.initial_epoch == 1 and again.history["epoch"] == [0, 1, 2]


def test_a_diverging_learning_rate_stops_at_the_first_nan_step(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=3, learning_rate=1e4, schedule="constant")
    result = train(config)
    assert result.stop_reason == "non-finite loss" and result.nonfinite_epoch == 1
    assert 1 <= result.nonfinite_step <= 2 and result.epochs_run == 0
    ck = tmp_path / "run" / "checkpoints"
    assert os.listdir(ck / "backup") == [] and not (ck / "best.weights.h5").exists()
    assert not (ck / "last.weights.h5").exists() and result.model_file is None
    assert not (tmp_path / "run" / "history.csv").exists()  # no epoch was finite: no row
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "train.py"), "--config",
                           result.config_path], capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "non-finite" in line]
    assert len(lines) == 1 and "float32" in lines[0] and "clipnorm" in lines[0]


def test_the_custom_loop_guards_nan_and_resumes_the_same_way(tmp_path, monkeypatch):
    from kgooglenet.train.distributed import train_custom_loop

    config = tiny_config(tmp_path / "run", epochs=2, aux_heads=False)
    monkeypatch.setenv("KGOOGLENET_FAULT", "nan:3")
    result = train_custom_loop(config, strategy=tf.distribute.get_strategy())
    assert (result.stop_reason, result.nonfinite_step, result.epochs_run) == ("non-finite loss", 3, 1)
    ck = tmp_path / "run" / "checkpoints"
    assert sorted(os.listdir(ck / "backup")) == ["ckpt-0001.weights.h5"] and meta(str(ck / "last.weights.h5"))["epoch"] == 1
    assert all(np.isfinite(w).all() for w in result.model.get_weights())
    monkeypatch.delenv("KGOOGLENET_FAULT")
    again = train_custom_loop(config, strategy=tf.distribute.get_strategy())
    assert again.initial_epoch == 1 and again.epochs_run == 2 and again.stop_reason is None
    assert again.history["epoch"] == [0, 1]
