"""The multi-worker training loop: `tf.distribute` custom loop over the same model, losses, metrics and callbacks.

Keras 3 `model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so multi-worker runs use
this loop: the model's own `train_step` / `test_step` (losses, aux weights, L2, FGSM, loss scaling, metrics) run
under `strategy.run` in a `tf.function`; the data come from `strategy.distribute_datasets_from_function` (each worker
reads its shard with the per-replica batch); Keras callbacks (CSV, TensorBoard, best checkpoint, early stopping,
the non-finite guard, plots, progress bar) run on every worker, with non-chief workers writing into temporary
directories that are deleted at the end - the usual MultiWorkerMirroredStrategy pattern (every worker saves). The run
directory is the same `RunDir` as `fit`'s (atomic checkpoints, config check, resume from the newest good state),
written by the chief and restored by every worker from there (shared file system).

The loop also runs under any other strategy (`train_custom_loop(config, strategy)`), which the tests use to compare it
with `fit`.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from kgooglenet.data import make_datasets
from kgooglenet.train import callbacks as cb
from kgooglenet.train.build import (
    build_model_and_compile,
    log,
    prepare_datasets,
    resolve_num_classes,
    summary_line,
)
from kgooglenet.train.config import TrainConfig
from kgooglenet.train.run import RunDir
from kgooglenet.train.strategy import cleanup_worker_dir, is_chief, make_strategy, worker_dir


def build_compiled_state(model, dataset) -> None:
    """Create the compiled losses' and metrics' variables before the first distributed step (in the strategy scope:
    they cannot be created inside `strategy.run`), as fit does before its first step: one trace of the public
    `compute_loss` / `compute_metrics` on the batch's spec (a tf.function makes its variables on its first trace;
    `get_concrete_function` runs nothing, so no metric moves)."""
    x_spec, y_spec = dataset.element_spec[:2]

    def step(x, y):
        y_pred = model(x, training=False)
        model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        return model.compute_metrics(x, y, y_pred)

    tf.function(step).get_concrete_function(x_spec, y_spec)


def _to_float(logs: dict) -> dict:
    return {k: float(np.asarray(v)) for k, v in logs.items()}


class CustomLoop:
    """One model trained by the custom loop under `strategy` (see the module docstring)."""

    def __init__(self, strategy, model, train_dist, val_dist, steps: int, val_steps: int | None):
        self.strategy, self.model = strategy, model
        self.train_iter = iter(train_dist)
        self.val_dist, self.val_steps = val_dist, val_steps
        self.val_iter = iter(val_dist) if val_dist is not None else None
        self.steps = steps

        def reduce(logs):
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

        @tf.function
        def train_step(iterator):
            return reduce(strategy.run(model.train_step, args=(next(iterator),)))

        @tf.function
        def test_step(iterator):
            return reduce(strategy.run(model.test_step, args=(next(iterator),)))

        self.train_step, self.test_step = train_step, test_step

    def run_epoch(self, callbacks, epoch: int) -> dict:
        model = self.model
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        logs = {}
        for step in range(self.steps):
            callbacks.on_train_batch_begin(step)
            logs = _to_float(self.train_step(self.train_iter))
            callbacks.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if self.val_iter is not None and not model.stop_training:
            callbacks.on_test_begin()  # BatchNormSync averages the BN statistics over replicas here
            model.reset_metrics()
            val = {}
            for _ in range(self.val_steps):
                val = self.test_step(self.val_iter)
            callbacks.on_test_end()  # as fit does: EMAWeights swaps the training weights back here
            logs.update({f"val_{k}": v for k, v in _to_float(val).items()})
        return logs


def train_custom_loop(config: TrainConfig, strategy=None, callbacks=()):
    """Train `config` with the custom loop (see the module docstring); returns a `kgooglenet.train.TrainResult`.

    Args:
        config: the TrainConfig (its `strategy` is used when `strategy` is None: "multiworker" reads TF_CONFIG).
        strategy: an existing tf.distribute strategy (for tests and for callers that created it at startup).
        callbacks: extra Keras callbacks, run after the built-in ones (on every worker).

    On non-chief workers the returned paths are the chief's (their own files were temporary); the history is the
    worker's own, identical to the chief's because every metric is all-reduced.
    """
    started = time.time()
    if strategy is None:
        strategy, kind = make_strategy(config.strategy, config.devices)
    else:
        kind = "given"
    chief = is_chief(strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    own_dir = worker_dir(config.out_dir, chief)
    run = RunDir(own_dir, shared_dir=config.out_dir, writer=chief)
    wconfig = dataclasses.replace(config, out_dir=own_dir)
    if not chief:  # their files are thrown away: skip the costly ones
        wconfig = dataclasses.replace(wconfig, plots=False, tensorboard=False)
    try:
        run.prepare(config)  # every worker refuses a changed config; the chief alone wipes for a fresh start
        with run.log():
            bundle = make_datasets(config.data)
            num_classes = resolve_num_classes(config, bundle)
            steps = int(config.steps_per_epoch or bundle.steps_per_epoch)
            val_steps = config.validation_steps or bundle.validation_steps

            def dataset_fn(split):
                def fn(ctx):
                    part = make_datasets(config.data, ctx)
                    train_ds, val_ds = prepare_datasets(config, part, num_classes)
                    return train_ds if split == "train" else val_ds.repeat()
                return fn

            train_dist = strategy.distribute_datasets_from_function(dataset_fn("train"))
            val_dist = (strategy.distribute_datasets_from_function(dataset_fn("val"))
                        if bundle.val is not None else None)
            with strategy.scope():
                model = build_model_and_compile(config, num_classes, steps, one_hot_labels=bundle.one_hot_train)
                model.optimizer.build(model.trainable_variables)
                sample_ds, _ = prepare_datasets(config, bundle, num_classes)
                build_compiled_state(model, sample_ds)
            monitor = cb.resolve_monitor(config.monitor, config.aux_heads, bundle.val is not None)
            done = run.restore(model, monitor, config.resume).epoch
            run.write_config(config)
            line = summary_line(f"{type(strategy).__name__} ({kind}, custom loop)", strategy.num_replicas_in_sync,
                                config, steps, model, done)
            if chief:
                print(line, flush=True)
            log.info(line)
            run_callbacks = cb.make_callbacks(wconfig, run, monitor, steps, title=model.name, strategy=strategy)
            callback_list = keras.callbacks.CallbackList(
                run_callbacks + list(callbacks), add_history=False, add_progbar=bool(config.verbose) and chief,
                model=model, verbose=config.verbose, epochs=config.epochs, steps=steps,
            )
            loop = CustomLoop(strategy, model, train_dist, val_dist, steps, val_steps)
            model.stop_training = False
            callback_list.on_train_begin()
            for epoch in range(done, config.epochs):
                logs = loop.run_epoch(callback_list, epoch)
                callback_list.on_epoch_end(epoch, logs)
                if model.stop_training:
                    break
            callback_list.on_train_end()
            result = run.finish(wconfig, model, bundle, num_classes, done, started, cb.early_stopped(run_callbacks))
    finally:
        cleanup_worker_dir(own_dir, chief)
    if not chief:
        shared = run.shared
        result = dataclasses.replace(
            result, out_dir=shared.out_dir, best_checkpoint=shared.best, last_checkpoint=shared.last,
            log_dir=shared.log_dir, history_csv=shared.history_csv, log_file=shared.log_file,
            plots={}, config_path=shared.config, model_file=shared.model)
    return result
