"""`train(config)`: data, model, optimizer, callbacks and `model.fit`, resuming from the run directory.

`train` is the whole run; `build_model_and_compile` (in `kgooglenet.train.build`) is its model part (what a
KerasTuner HyperModel calls). Multi-worker runs go to `kgooglenet.train.distributed.train_custom_loop` (Keras 3 `fit`
fails under MultiWorkerMirroredStrategy) with the same model, callbacks and `RunDir`.
"""

from __future__ import annotations

import os
import time

import keras

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
from kgooglenet.train.distributed import train_custom_loop
from kgooglenet.train.run import RunDir, TrainResult
from kgooglenet.train.plots import plot_samples
from kgooglenet.train.strategy import make_strategy, resolve_strategy_kind

__all__ = ["train"]


def train(config: TrainConfig, callbacks=()) -> TrainResult:
    """Run the training described by `config` and return a `TrainResult`.

    Builds the datasets (`kgooglenet.data.make_datasets(config.data)`), the strategy, the model
    (`build_model_and_compile`) and the callbacks, prints a one-line summary, and runs `model.fit` - or, for
    `strategy="multiworker"` (or "auto" with a multi-task TF_CONFIG), the custom loop of
    `kgooglenet.train.distributed`. Restarting a killed run with the same config continues after its last committed
    epoch (damaged files are named and the newest good state wins) and stops at the same total `config.epochs`; a
    config that changes the model or the data is refused before anything is written (`resume=False` starts over).
    A NaN/Inf loss stops the run with nothing of that epoch saved (`TrainResult.stop_reason`).

    Args:
        config: the TrainConfig.
        callbacks: extra Keras callbacks, run after the built-in ones.

    Example:
    >>> result = train(TrainConfig(width=0.125, epochs=1, out_dir="/tmp/kgooglenet_doctest"))  # doctest: +SKIP
    >>> result.history["val_main_accuracy"]  # doctest: +SKIP
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"train: config must be a TrainConfig, received {type(config).__name__}")
    if resolve_strategy_kind(config.strategy) == "multiworker":
        return train_custom_loop(config, callbacks=callbacks)
    started = time.time()
    run = RunDir(config.out_dir)
    run.prepare(config)  # refuses a changed config before anything is written
    strategy, kind = make_strategy(config.strategy, config.devices)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    with run.log():
        bundle = make_datasets(config.data)
        num_classes = resolve_num_classes(config, bundle)
        steps = int(config.steps_per_epoch or bundle.steps_per_epoch)
        if steps < 1:
            raise ValueError(
                f"data: {bundle.train_size} training examples make no batch of data.batch_size="
                f"{config.data.batch_size} (drop_remainder={config.data.drop_remainder})")
        train_ds, val_ds = prepare_datasets(config, bundle, num_classes)
        with strategy.scope():
            model = build_model_and_compile(config, num_classes, steps, one_hot_labels=bundle.one_hot_train)
            model.optimizer.build(model.trainable_variables)  # the resume state holds the optimizer's variables
        monitor = cb.resolve_monitor(config.monitor, config.aux_heads, val_ds is not None)
        done = run.restore(model, monitor, config.resume).epoch
        run.write_config(config)
        line = summary_line(f"{type(strategy).__name__} ({kind})", strategy.num_replicas_in_sync, config, steps,
                            model, done)
        print(line, flush=True)
        log.info(line)
        if config.plots and done == 0:  # check labels and crops before a long run
            plot_samples(bundle.train, bundle.class_names, os.path.join(run.paths.plots_dir, "samples.png"))
        run_callbacks = cb.make_callbacks(config, run, monitor, steps, title=model.name, strategy=strategy)
        run_callbacks += list(callbacks)
        if done < config.epochs:
            model.fit(
                train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=done, steps_per_epoch=steps,
                validation_steps=config.validation_steps, callbacks=run_callbacks, verbose=config.verbose,
                shuffle=False,
            )
        return run.finish(config, model, bundle, num_classes, done, started, cb.early_stopped(run_callbacks))
