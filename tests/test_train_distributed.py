"""Distributed and fault-tolerant training, each in fresh subprocesses (device setup must precede TF's init) but the
first: the custom loop's compiled state built up front, MirroredStrategy over two logical CPUs vs one device, two workers on loopback (TF_CONFIG; EMA on), and a run killed with
SIGKILL and restarted."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}

MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    from kgooglenet.train.strategy import split_cpu
    devices = split_cpu(2)  # before TensorFlow initializes its devices
    import keras, tensorflow as tf
    from kgooglenet.data import DataConfig
    from kgooglenet.model import aux_targets
    from kgooglenet.train import TrainConfig, build_model_and_compile, train

    out = {"devices": devices}
    config = TrainConfig(width=0.125, learning_rate=0.1, schedule="constant", dropout=0.0, aux_dropout=0.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32"); y = rng.integers(0, 10, 32).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).map(aux_targets)
    keras.utils.set_random_seed(1)
    single = build_model_and_compile(config, 10)
    single.run_eagerly = True  # the reference step, eagerly (same numbers, no tracing)
    init = single.get_weights()
    out["single_loss"] = single.fit(data, verbose=0).history["loss"][0]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        mirrored = build_model_and_compile(config, 10)
    mirrored.set_weights(init)
    out["replicas"] = strategy.num_replicas_in_sync
    out["mirrored_loss"] = mirrored.fit(data, verbose=0).history["loss"][0]
    d1 = np.concatenate([(w - i).ravel() for w, i in zip(single.get_weights(), init)])
    d2 = np.concatenate([(w - i).ravel() for w, i in zip(mirrored.get_weights(), init)])
    out["update_cosine"] = float(d1 @ d2 / np.linalg.norm(d1) / np.linalg.norm(d2))
    # the whole train() with MirroredStrategy and mixed_bfloat16 together (no validation split: one trace less)
    run = train(TrainConfig(data=DataConfig(batch_size=32, seed=0, val_split=0.0), width=0.125, epochs=1,
                            steps_per_epoch=2, precision="mixed_bfloat16", strategy="mirrored", devices=devices,
                            out_dir=sys.argv[1], verbose=0, tensorboard=False, plots=False))
    out["bf16_loss"] = run.history["loss"][0]
    out["output_dtype"] = run.model(x[:2])["main"].dtype.name
    bn = run.model.get_layer("conv1").bn.moving_mean.value  # a MirroredVariable: one copy per replica
    copies = [v.numpy() for v in bn.values]
    out["bn_copies"] = len(copies)
    out["bn_copy_diff"] = float(np.abs(copies[0] - copies[1]).max())
    print("RESULT " + json.dumps(out))
""")

WORKER = textwrap.dedent("""
    import os, sys
    import numpy as np
    sys.path.insert(0, os.path.join(sys.argv[1], "recipes"))
    import train_multiworker
    result = train_multiworker.main(["--out-dir", sys.argv[2], "--width", "0.125", "--epochs", "2",
                                     "--steps-per-epoch", "3", "--validation-steps", "2", "--batch-size", "32",
                                     "--verbose", "2", "--no-aux", "--set", "ema=true", "--set", "ema_decay=0.5"])
    np.savez(sys.argv[3], *result.model.get_weights())  # with ema on, the run ends with the average in the model
    if result.model.distribute_strategy.cluster_resolver.task_id == 0:  # the chief wrote the checkpoints
        from kgooglenet.train.ema import ema_weights
        model, ckpt = result.model, os.path.join(sys.argv[2], "checkpoints")
        np.savez(sys.argv[3].replace(".npz", "_avg.npz"), *[w.numpy() for w in model.trainable_weights])
        model.load_weights(os.path.join(ckpt, "last.weights.h5"))
        np.savez(sys.argv[3].replace(".npz", "_last.npz"), *model.get_weights())
        model.load_weights(os.path.join(ckpt, "backup", "ckpt-0002.weights.h5"))  # training weights + the average
        np.savez(sys.argv[3].replace(".npz", "_raw.npz"), *[w.numpy() for w in model.trainable_weights])
        np.savez(sys.argv[3].replace(".npz", "_ema.npz"), *ema_weights(model))
""")


def run_script(tmp_path, name, source, args, timeout, env=None):
    script = tmp_path / name
    script.write_text(source)
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_compiled_losses_and_metrics_are_built_before_the_first_step_and_none_moves():
    """What the custom loop does in the strategy scope before `strategy.run`: the variables of every compiled loss and
    metric exist (those fit would make), all still zero."""
    import tensorflow as tf

    from kgooglenet.model import aux_targets
    from kgooglenet.train import TrainConfig, build_model_and_compile
    from kgooglenet.train.distributed import build_compiled_state

    model = build_model_and_compile(TrainConfig(width=0.125, aux_heads=True), 10)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensors((x, np.arange(4, dtype="int32"))).map(aux_targets)
    before = len(model.metrics_variables)
    build_compiled_state(model, data)
    built = [v.path for v in model.metrics_variables]
    assert len(built) > before and all(not np.any(v.numpy()) for v in model.metrics_variables)
    model.evaluate(data, verbose=0)
    assert [v.path for v in model.metrics_variables] == built  # evaluate found nothing left to build
    assert any(np.any(v.numpy()) for v in model.metrics_variables)


def test_mirrored_two_cpus_matches_single_device(tmp_path):
    out = run_script(tmp_path, "mirrored.py", MIRRORED, [tmp_path / "run"], timeout=400)
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result["replicas"] == 2 and len(result["devices"]) == 2
    # BatchNorm normalizes each replica's half batch on its own, so the losses agree closely but not exactly
    assert result["mirrored_loss"] == pytest.approx(result["single_loss"], rel=0.02)
    assert result["update_cosine"] > 0.95
    assert np.isfinite(result["bf16_loss"]) and result["output_dtype"] == "float32"
    assert result["bn_copies"] == 2 and result["bn_copy_diff"] == 0.0  # statistics averaged over replicas


def test_two_workers_on_loopback_stay_in_sync(tmp_path):
    ports = free_ports(2)
    out_dir = tmp_path / "mw"
    procs, temp_dirs = [], []
    (tmp_path / "worker.py").write_text(WORKER)
    for index in range(2):
        tmp = tmp_path / f"tmp{index}"
        tmp.mkdir()
        temp_dirs.append(tmp)
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        env = {**ENV, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(tmp)}
        procs.append(subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py"), ROOT, str(out_dir), str(tmp_path / f"w{index}.npz")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(tmp_path)))
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-5000:]
    assert "replicas 2" in outputs[0] and "custom loop" in outputs[0]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 100
    for key in w0.files:  # trainable weights and BatchNorm statistics alike
        np.testing.assert_array_equal(w0[key], w1[key])
    # EMA under the custom loop: the returned model and last.weights.h5 hold the average that the resume state
    # (backup) keeps beside the training weights, which differ from it
    avg, last, raw, ema = (np.load(tmp_path / f"w0_{name}.npz") for name in ("avg", "last", "raw", "ema"))
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], last[key])
    assert len(avg.files) == len(raw.files) == len(ema.files) > 50
    for key in avg.files:
        np.testing.assert_allclose(ema[key], avg[key], rtol=0, atol=1e-6)
    assert max(float(np.abs(avg[k] - raw[k]).max()) for k in avg.files) > 1e-4
    # one checkpoint set, written by the chief; the other worker's temporary directory is gone
    assert sorted(os.listdir(out_dir / "checkpoints")) == ["backup", "best.weights.h5", "last.weights.h5"]
    assert sorted(os.listdir(out_dir / "checkpoints" / "backup")) == ["ckpt-0001.weights.h5", "ckpt-0002.weights.h5"]
    assert (out_dir / "model.keras").is_file() and (out_dir / "config.json").is_file()
    assert not [f for f in os.listdir(temp_dirs[1]) if f.startswith("kgooglenet_worker_")]
    rows = (out_dir / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch")


def test_sigkill_mid_training_resumes_from_the_last_epoch(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "train.py"), "--out-dir", str(out_dir), "--width", "0.125",
           "--epochs", "4", "--steps-per-epoch", "12", "--validation-steps", "1", "--batch-size", "16",
           "--no-aux", "--verbose", "2"]
    history = out_dir / "history.csv"
    backup = out_dir / "checkpoints" / "backup"
    completed = lambda: max((int(f[5:9]) for f in os.listdir(backup) if f.startswith("ckpt-")),  # noqa: E731
                            default=0) if backup.exists() else 0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if completed() >= 1:  # epoch 1 committed (its backup renamed into place)
                    break
            except FileNotFoundError:  # the directory is being created
                pass
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read()[-3000:]
        time.sleep(0.5)  # inside epoch 2 (12 steps take several seconds)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    epochs_at_kill = completed()
    assert 1 <= epochs_at_kill < 4
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming after epoch {epochs_at_kill}" in done.stdout
    assert f"Epoch {epochs_at_kill + 1}/4" in done.stdout and "Epoch 1/4" not in done.stdout
    assert done.stdout.count("Epoch ") == 4 - epochs_at_kill
    rows = history.read_text().strip().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2, 3]
    assert (out_dir / "checkpoints" / "best.weights.h5").is_file()
