"""train() and build_model_and_compile(): aux-loss weighting, coupled L2, lr_mult, mixed precision, FGSM, run files."""

import dataclasses
import os

import keras
import numpy as np
import pytest

from kgooglenet.data import DataConfig
from kgooglenet.model import aux_targets
from kgooglenet.train import TrainConfig, build_model_and_compile, train

TINY = dict(width=0.125, dropout=0.0, aux_dropout=0.0, schedule="constant")


def eager(model):
    """One-step numeric checks run eagerly: the same train_step, 10x faster than tracing it. The traced path is
    covered by the mixed_float16 test, the run test below and the distributed tests."""
    model.run_eagerly = True
    return model


def batch(n=8, classes=10, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), rng.integers(0, classes, n).astype("int32")


def ce(probs, y):
    return float(-np.mean(np.log(np.asarray(probs, "float64")[np.arange(len(y)), y])))


def test_aux_losses_are_weighted_as_configured():
    config = TrainConfig(aux_weight=0.5, weight_decay=0.0, **TINY)
    model = eager(build_model_and_compile(config, num_classes=10))
    x, y = batch()
    preds = {k: v.numpy() for k, v in model(x, training=True).items()}  # no dropout: the step sees the same outputs
    logs = model.train_on_batch(x, aux_targets(x, y)[1], return_dict=True)
    hand = ce(preds["main"], y) + 0.5 * (ce(preds["aux1"], y) + ce(preds["aux2"], y))
    assert logs["loss"] == pytest.approx(hand, rel=1e-4)
    assert logs["main_loss"] == pytest.approx(ce(preds["main"], y), rel=1e-4)
    assert logs["aux1_loss"] == pytest.approx(ce(preds["aux1"], y), rel=1e-4)
    assert set(model.output) == {"main", "aux1", "aux2"}


def _one_step(config, x, y, init=None):
    """(model, {variable path: value before}, {variable path: value after}) of one training step."""
    model = eager(build_model_and_compile(config, num_classes=10))
    if init is not None:
        model.set_weights(init)
    before = {v.path: v.numpy() for v in model.weights}
    model.train_on_batch(x, y)
    return model, before, {v.path: v.numpy() for v in model.weights}


def test_weight_decay_is_coupled_l2_on_kernels_only():
    base = TrainConfig(aux_heads=False, optimizer="sgd", momentum=0.0, learning_rate=0.1, weight_decay=0.0, **TINY)
    x, y = batch()
    model, start, plain = _one_step(base, x, y)
    init = [start[v.path] for v in model.weights]
    _, _, decayed = _one_step(dataclasses.replace(base, weight_decay=0.01), x, y, init)
    for path, w0 in start.items():
        diff = decayed[path] - plain[path]
        if path.endswith("/kernel"):  # w <- w - lr * (g + wd * w)
            np.testing.assert_allclose(diff, -0.1 * 0.01 * w0, atol=2e-6, err_msg=path)
        else:  # biases, BatchNorm gamma/beta and statistics are not decayed
            np.testing.assert_allclose(diff, 0.0, atol=1e-7, err_msg=path)


def test_lr_mult_scales_the_update_even_with_adam():
    base = TrainConfig(aux_heads=False, optimizer="adam", learning_rate=1e-3, weight_decay=0.0, **TINY)
    x, y = batch(seed=1)
    model, start, plain = _one_step(base, x, y)
    init = [start[v.path] for v in model.weights]
    # lr_mult 0 on the conv of a branch (its BatchNorm keeps training, so the forward pass is unchanged)
    mult = dataclasses.replace(base, lr_mult={"classifier": 10.0, "inception_5b/1x1/conv": 0.0})
    multi_model, _, multi = _one_step(mult, x, y, init)
    assert isinstance(multi_model.optimizer, keras.optimizers.MultiOptimizer)
    step = lambda w, p: w[p] - start[p]  # noqa: E731
    np.testing.assert_allclose(step(multi, "classifier/kernel"), 10 * step(plain, "classifier/kernel"),
                               rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(step(multi, "inception_5a/1x1/conv/kernel"),
                               step(plain, "inception_5a/1x1/conv/kernel"), rtol=1e-4, atol=1e-8)
    assert np.abs(step(plain, "inception_5b/1x1/conv/kernel")).max() > 1e-4
    assert np.abs(step(multi, "inception_5b/1x1/conv/kernel")).max() == 0  # lr_mult 0 = frozen


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_with_float32_outputs(precision):
    # float16 traced, with L2 (loss scaling and the L2 term meet in the graph); bfloat16 eagerly (it is also traced
    # in the mirrored test)
    config = TrainConfig(precision=precision, learning_rate=0.01, weight_decay=1e-4, **TINY)
    model = build_model_and_compile(config, num_classes=10)
    if precision == "mixed_bfloat16":
        eager(model)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert model.get_layer("inception_3a").compute_dtype == precision.split("_")[1]
    x, y = batch(16)
    history = model.fit(x, aux_targets(x, y)[1], batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    out = model(x[:2], training=False)
    assert all(v.dtype == "float32" for v in out.values())
    if precision == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_fgsm_examples_and_adversarial_training():
    config = TrainConfig(aux_heads=False, adversarial=True, fgsm_epsilon=8.0, adversarial_fraction=0.5, **TINY)
    model = eager(build_model_and_compile(config, num_classes=10))
    x, y = batch(8, seed=2)
    x_adv = model.fgsm(x, y).numpy()
    assert np.abs(x_adv - x).max() <= 8.0 + 1e-3 and x_adv.min() >= 0 and x_adv.max() <= 255
    assert np.mean(np.abs(x_adv - x) > 7.99) > 0.5  # the sign step moves (almost) every unclipped pixel by epsilon
    loss = lambda images: ce(model(images, training=False).numpy(), y)  # noqa: E731
    assert loss(x_adv) > loss(x)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_train_writes_the_run_files_and_resumes_a_finished_run(tmp_path, capsys):
    config = TrainConfig(data=DataConfig(batch_size=32, seed=0), width=0.125, epochs=2, steps_per_epoch=3,
                         validation_steps=2, out_dir=str(tmp_path / "run"), verbose=0, early_stopping_patience=5)
    result = train(config)
    out = capsys.readouterr().out
    assert "strategy _DefaultDistributionStrategy (default), replicas 1, precision float32, global batch 32, " \
           "steps per epoch 3" in out
    assert result.history["epoch"] == [0.0, 1.0] and result.epochs_run == 2
    assert result.monitor == "val_main_accuracy" and 0.0 <= result.best_metric <= 1.0
    assert result.best_metric == max(result.history["val_main_accuracy"])
    assert len(result.history["learning_rate"]) == 2
    for path in (result.best_checkpoint, result.last_checkpoint, result.history_csv, result.log_file,
                 result.config_path):
        assert os.path.isfile(path), path
    assert sorted(result.plots) == ["accuracy", "learning_rate", "loss"]
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in result.plots.values())
    samples = os.path.join(result.out_dir, "plots", "samples.png")  # written at the start, before the first epoch
    assert open(samples, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    steps = open(os.path.join(result.out_dir, "learning_rate_steps.csv")).read().splitlines()
    assert steps[0] == "step,epoch,learning_rate" and [int(r.split(",")[0]) for r in steps[1:]] == [1, 2, 3, 4, 5, 6]
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(result.log_dir) for f in files)
    log = open(result.log_file).read()
    assert "replicas 1" in log and "epoch 2:" in log
    assert TrainConfig.from_json(result.config_path) == config
    assert result.model.get_layer("classifier").output.shape[-1] == 10
    # the same command again: nothing left to do, the history is unchanged
    again = train(config)
    assert again.initial_epoch == 2 and again.epochs_run == 2
    assert again.history["loss"] == result.history["loss"]


def _snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, folder)] = (os.stat(path).st_mtime_ns, open(path, "rb").read())
    return out


def test_a_changed_config_is_refused_before_anything_is_written(tmp_path, capsys):
    from kgooglenet.saving import load_model, model_info
    from kgooglenet.train.run import ConfigChangedError

    out_dir = str(tmp_path / "run")
    config = TrainConfig(data=DataConfig(batch_size=16, seed=0), width=0.125, epochs=1, steps_per_epoch=2,
                         validation_steps=1, out_dir=out_dir, verbose=0, tensorboard=False, plots=False)
    result = train(config)
    # the run directory keeps a self-describing model of the best epoch
    assert result.model_file == os.path.join(out_dir, "model.keras")
    info = model_info(out_dir)
    assert info.class_names == tuple(str(i) for i in range(10)) and info.image_size == 32
    assert (info.variant, info.width, info.aux_heads, info.preprocessing) == ("cifar", 0.125, True, "imagenet")
    assert info.provenance == {"run_dir": out_dir, "epoch": 1, "monitor": "val_main_accuracy",
                               "value": result.best_metric, "initial_weights": None}
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(load_model(out_dir).predict(x, verbose=0)["main"],
                               result.model.predict(x, verbose=0)["main"], rtol=1e-5, atol=1e-6)
    before = _snapshot(out_dir)
    changes = [
        (dict(width=0.25), ["width: recorded 0.125, received 0.25"]),
        (dict(variant="bn"), ["variant: recorded 'cifar', received 'bn'"]),
        (dict(data=DataConfig(source="folder", path=str(tmp_path / "images"), batch_size=16, seed=0)),
         ["data.source: recorded 'digits', received 'folder'", "data.path: recorded None, received "]),
    ]
    for change, lines in changes:
        with pytest.raises(ConfigChangedError) as e:
            train(dataclasses.replace(config, **change))
        for line in lines + ["resume=False (--fresh)", "new out_dir"]:
            assert line in str(e.value), str(e.value)
    assert _snapshot(out_dir) == before  # nothing written, config.json byte-identical
    # what does not change the model or the data is allowed: extending the run, logging
    longer = train(dataclasses.replace(config, epochs=2, verbose=2, tensorboard=True))
    assert longer.initial_epoch == 1 and longer.epochs_run == 2 and longer.history["epoch"] == [0, 1]
    assert TrainConfig.from_json(longer.config_path).epochs == 2
    fresh = train(dataclasses.replace(config, width=0.25, resume=False))
    assert fresh.initial_epoch == 0 and fresh.epochs_run == 1 and model_info(out_dir).width == 0.25
    # config.json is only written by a run that trains: a data error leaves a new directory without one
    broken = dataclasses.replace(config, out_dir=str(tmp_path / "broken"),
                                 data=DataConfig(source="folder", path=str(tmp_path / "missing")))
    with pytest.raises(Exception):
        train(broken)
    assert not os.path.exists(tmp_path / "broken" / "config.json")
