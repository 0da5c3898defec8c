"""The multi-worker training loop: `tf.distribute` custom loop over the same model, losses, metrics and callbacks.

Keras 3 `model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so multi-worker runs use
this loop: the model's own `train_step` / `test_step` (losses, aux weights, L2, FGSM, loss scaling, metrics) run
under `strategy.run` in a `tf.function`; the data come from `strategy.distribute_datasets_from_function` (each worker
reads its shard with the per-replica batch); Keras callbacks (CSV, TensorBoard, best checkpoint, early stopping,
TerminateOnNaN, plots, progress bar) run on every worker, with non-chief workers writing into temporary directories
that are deleted at the end - the usual MultiWorkerMirroredStrategy pattern (saving runs collectives, so every worker
must save). Resume state is a `tf.train.CheckpointManager` (model, optimizer, completed epochs) in
out_dir/checkpoints/backup, written by the chief and restored by every worker from there (shared file system).

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
from kgooglenet.train.config import TrainConfig
from kgooglenet.train.loop import (
    _RunLog,
    build_model_and_compile,
    finish,
    log,
    prepare_datasets,
    resolve_num_classes,
    start_run_dir,
    summary_line,
)
from kgooglenet.train.strategy import cleanup_worker_dir, is_chief, make_strategy, worker_dir


def _symbolic_batch(dataset):
    spec = dataset.element_spec
    return tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype.name), spec)


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
        if self.val_iter is not None:
            callbacks.on_test_begin()  # BatchNormSync averages the BN statistics over replicas here
            model.reset_metrics()
            val = {}
            for _ in range(self.val_steps):
                val = self.test_step(self.val_iter)
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
    paths, chief_paths = cb.RunPaths.of(own_dir), cb.RunPaths.of(config.out_dir)
    wconfig = dataclasses.replace(config, out_dir=own_dir)
    if not chief:  # their files are thrown away: skip the costly ones
        wconfig = dataclasses.replace(wconfig, plots=False, tensorboard=False)
    try:
        if chief:
            start_run_dir(config, paths, lambda: 0)
        else:
            paths.makedirs()
        with _RunLog(paths.log_file):
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
                # What fit does before its first step: build the compiled losses and metrics symbolically.
                model._symbolic_build(data_batch=_symbolic_batch(sample_ds))
                epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
            checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var)
            manager = tf.train.CheckpointManager(checkpoint, paths.backup, max_to_keep=1)
            latest = tf.train.latest_checkpoint(chief_paths.backup) if config.resume else None
            if latest:
                checkpoint.restore(latest).assert_existing_objects_matched()
            done = int(epoch_var.numpy())
            if chief:
                cb.truncate_history(paths.history_csv, done)
            monitor = cb.resolve_monitor(config.monitor, config.aux_heads, bundle.val is not None)
            if chief:
                config.to_json(paths.config)
            line = summary_line(f"{type(strategy).__name__} ({kind}, custom loop)", strategy.num_replicas_in_sync,
                                config, steps, model, done)
            if chief:
                print(line, flush=True)
            log.info(line)
            history_cb = keras.callbacks.History()
            callback_list = keras.callbacks.CallbackList(
                cb.make_callbacks(wconfig, paths, monitor, custom_loop=True, title=model.name, strategy=strategy)
                + list(callbacks) + [history_cb],
                add_history=False, add_progbar=bool(config.verbose) and chief, model=model,
                verbose=config.verbose, epochs=config.epochs, steps=steps,
            )
            loop = CustomLoop(strategy, model, train_dist, val_dist, steps, val_steps)
            model.stop_training = False
            callback_list.on_train_begin()
            for epoch in range(done, config.epochs):
                logs = loop.run_epoch(callback_list, epoch)
                callback_list.on_epoch_end(epoch, logs)
                epoch_var.assign(epoch + 1)
                manager.save()
                if model.stop_training:
                    break
            callback_list.on_train_end()
            result = finish(wconfig, paths, model, monitor, bundle, num_classes, done, started, history_cb.history)
    finally:
        cleanup_worker_dir(own_dir, chief)
    if not chief:
        result = dataclasses.replace(
            result, out_dir=chief_paths.out_dir, best_checkpoint=chief_paths.best, last_checkpoint=chief_paths.last,
            log_dir=chief_paths.log_dir, history_csv=chief_paths.history_csv, log_file=chief_paths.log_file,
            plots={}, config_path=chief_paths.config)
    return result
