"""EMA of the weights, gradient accumulation and checkpoint averaging (issue 13)."""

import dataclasses
import os

import h5py
import keras
import numpy as np
import pytest

from kgooglenet.__main__ import main as cli_main
from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig, build_model_and_compile, train
from kgooglenet.train.averaging import average_checkpoints, epoch_checkpoints
from kgooglenet.train.ema import ema_weights

SWAP = 1e-5  # Keras swaps weights and average in place by adds and subtracts: exact up to float rounding
TINY = dict(width=0.125, dropout=0.0, aux_dropout=0.0, schedule="constant", aux_heads=False)


def batch(n=8, classes=10, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), rng.integers(0, classes, n).astype("int32")


def trainable(model):
    return [v.numpy() for v in model.trainable_weights]


def assert_weights_close(a, b, atol=1e-6, what=""):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=f"{what} weight {i}")


def test_ema_weights_equal_a_hand_computed_average():
    config = TrainConfig(ema=True, ema_decay=0.8, optimizer="sgd", learning_rate=0.05, **TINY)
    model = build_model_and_compile(config, num_classes=10)
    model.run_eagerly = True  # the same train_step, without tracing it
    average = None
    for step in range(4):
        x, y = batch(seed=step)
        model.train_on_batch(x, y)
        weights = trainable(model)
        # Keras starts the average at the weights after the first step, then decays
        average = weights if average is None else [0.8 * a + 0.2 * w for a, w in zip(average, weights)]
    assert_weights_close(ema_weights(model), average, atol=1e-6, what="EMA")
    assert not all(np.allclose(a, w) for a, w in zip(average, trainable(model)))  # the EMA is not the weights


def test_ema_is_validated_checkpointed_returned_and_resumed(tmp_path):
    class Record(keras.callbacks.Callback):  # runs after the built-in callbacks
        def __init__(self):
            super().__init__()
            self.epochs, self.validated_on_ema, self.at_start = [], [], None

        def on_train_begin(self, logs=None):  # after BackupAndRestore has restored a resumed run
            if self.model.optimizer.built:  # a fresh run builds it at the first step
                self.at_start = (trainable(self.model), ema_weights(self.model))

        def on_train_batch_end(self, batch, logs=None):
            self.last_ema = ema_weights(self.model)

        def on_test_begin(self, logs=None):  # (the swap put the training weights where the average was)
            self.validated_on_ema.append(all(np.allclose(w, a, rtol=0, atol=SWAP) for w, a in
                                             zip(trainable(self.model), self.last_ema)))

        def on_epoch_end(self, epoch, logs=None):  # the training weights are back in the model here
            self.epochs.append((trainable(self.model), ema_weights(self.model)))

    config = TrainConfig(data=DataConfig(batch_size=32, seed=0), ema=True, ema_decay=0.7, keep_epoch_checkpoints=2,
                         epochs=2, steps_per_epoch=3, validation_steps=2, out_dir=str(tmp_path / "run"), verbose=0,
                         plots=False, tensorboard=False, learning_rate=0.05, **TINY)
    record = Record()
    result = train(config, callbacks=[record])
    assert record.validated_on_ema == [True, True]
    (raw1, ema1), (raw2, ema2) = record.epochs
    assert not all(np.allclose(r, e) for r, e in zip(raw2, ema2))
    fresh = build_model_and_compile(config, num_classes=10)
    best_epoch = int(np.argmax(result.history["val_accuracy"]))  # ModelCheckpoint keeps the first best
    for path, expected in ((result.best_checkpoint, [ema1, ema2][best_epoch]), (result.last_checkpoint, ema2),
                           *zip(epoch_checkpoints(os.path.join(result.out_dir, "checkpoints")), (ema1, ema2))):
        fresh.load_weights(path)
        assert_weights_close(trainable(fresh), expected, atol=SWAP, what=path)
    assert_weights_close(trainable(result.model), ema2, atol=SWAP, what="returned model")

    # a second train() on the same out_dir resumes with the training weights AND the average of epoch 2
    resumed = Record()
    again = train(dataclasses.replace(config, epochs=3), callbacks=[resumed])
    assert again.initial_epoch == 2 and again.epochs_run == 3
    raw_start, ema_start = resumed.at_start
    assert_weights_close(raw_start, raw2, atol=0, what="resumed weights")
    assert_weights_close(ema_start, ema2, atol=0, what="resumed EMA")
    assert [int(os.path.basename(p)[6:10]) for p in epoch_checkpoints(os.path.join(result.out_dir, "checkpoints"))] \
        == [2, 3]  # keep_epoch_checkpoints=2


def test_gradient_accumulation_of_4_batches_is_one_step_on_the_4x_batch():
    # BatchNorm in training mode normalizes each micro-batch by its own statistics, which no accumulation can
    # reproduce: freeze_bn keeps it in inference mode (per-example), so the mean loss over 4 micro-batches of 8
    # is the mean loss over the 32. SGD momentum, coupled L2 and clipnorm act on the averaged gradient.
    base = TrainConfig(freeze_bn=True, optimizer="sgd", momentum=0.9, learning_rate=0.1, weight_decay=5e-4,
                       clipnorm=1.0, **TINY)
    x, y = batch(32, seed=3)
    big = build_model_and_compile(base, num_classes=10)
    start = big.get_weights()
    acc = build_model_and_compile(dataclasses.replace(base, gradient_accumulation_steps=4), num_classes=10)
    acc.set_weights(start)
    for model in (big, acc):
        model.run_eagerly = True
    for i in range(4):
        acc.train_on_batch(x[8 * i:8 * i + 8], y[8 * i:8 * i + 8])
        if i < 3:  # no update before the 4th micro-batch
            assert_weights_close(acc.get_weights(), start, atol=0, what=f"after micro-batch {i + 1}")
    big.train_on_batch(x, y)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(big.get_weights(), start))
    assert moved > 1e-3
    assert_weights_close(acc.get_weights(), big.get_weights(), atol=2e-5, what="accumulated vs 4x batch")
    assert int(acc.optimizer.iterations) == int(big.optimizer.iterations) == 1


def test_average_checkpoints_is_the_mean_of_the_files(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    model.compile(keras.optimizers.SGD(), "mse")
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    rng = np.random.default_rng(0)
    saved = []
    for epoch in range(1, 5):
        weights = [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]
        model.set_weights(weights)
        model.save_weights(str(ck / f"epoch_{epoch:04d}.weights.h5"))
        saved.append(weights)
    assert cli_main(["average-checkpoints", str(tmp_path / "run"), "--last", "3"]) == 0
    out = ck / "average_last3.weights.h5"
    model.load_weights(str(out))
    for got, *files in zip(model.get_weights(), *saved[1:]):
        np.testing.assert_allclose(got, np.mean(files, axis=0), rtol=1e-6, atol=1e-7)
    with h5py.File(out) as f:
        assert "layers" in f
    with pytest.raises(ValueError, match="keeps 4 epoch checkpoints, fewer than --last 5.*keep_epoch_checkpoints"):
        average_checkpoints(str(tmp_path / "run"), 5)


@pytest.mark.parametrize("field,value", [("ema_decay", 1.0), ("gradient_accumulation_steps", 0),
                                         ("keep_epoch_checkpoints", -1)])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} .*received {field}={value!r}"):
        TrainConfig(**{field: value})


def test_new_fields_round_trip_through_json():
    from kgooglenet.data import AugmentConfig

    config = TrainConfig(data=DataConfig(augment=AugmentConfig.strong(32, repeats=2, erase_value="random")),
                         ema=True, ema_decay=0.99, gradient_accumulation_steps=2, keep_epoch_checkpoints=3)
    again = TrainConfig.from_json(config.to_json())
    assert again == config and again.data.augment.erase_scale == (0.02, 0.33)


def test_average_checkpoints_writes_a_model_file_of_the_run(tmp_path, capsys):
    from kgooglenet.saving import ModelInfo, load_model, model_info, save_model

    config = TrainConfig(**TINY)
    model = build_model_and_compile(config, num_classes=10)
    model.run_eagerly = True
    model.train_on_batch(*batch())  # the files then hold optimizer state too, as a run's do
    run = tmp_path / "run"
    info = ModelInfo(class_names=tuple("0123456789"), image_size=32, variant="cifar", width=0.125, aux_heads=False,
                     preprocessing=None, provenance={"run_dir": str(run)})
    save_model(model, str(run / "model.keras"), info)
    (run / "checkpoints").mkdir()
    rng = np.random.default_rng(1)
    saved = []
    for epoch in (1, 2):
        weights = [w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()]
        model.set_weights(weights)
        model.save_weights(str(run / "checkpoints" / f"epoch_{epoch:04d}.weights.h5"))
        saved.append(weights)
    out = tmp_path / "averaged.keras"
    assert cli_main(["average-checkpoints", str(run), "--last", "2", "--model-out", str(out)]) == 0
    assert f"model with the averaged weights: {out}" in capsys.readouterr().out
    averaged = load_model(str(out))
    for got, a, b in zip(averaged.get_weights(), *saved):
        np.testing.assert_allclose(got, (a.astype(np.float64) + b) / 2, rtol=1e-6, atol=1e-6)
    assert model_info(str(out)).provenance["averaged_last_epochs"] == 2
    assert model_info(str(out)).class_names == info.class_names
