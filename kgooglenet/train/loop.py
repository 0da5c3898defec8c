"""`train(config)`: data, model, optimizer, callbacks and `model.fit`, with automatic resume.

`train` is the whole run; `build_model_and_compile` is its model part (what a KerasTuner HyperModel calls).
Multi-worker runs go to `kgooglenet.train.distributed.train_custom_loop` (Keras 3 `fit` fails under
MultiWorkerMirroredStrategy) with the same model, losses, metrics, callbacks and run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time

import keras
import tensorflow as tf

from kgooglenet.data import make_datasets
from kgooglenet.model import GoogLeNet, aux_targets
from kgooglenet.train import callbacks as cb
from kgooglenet.train.config import TrainConfig
from kgooglenet.train.finetune import apply_finetuning
from kgooglenet.train.optim import Crossentropy, make_metrics, make_optimizer
from kgooglenet.train.plots import plot_history, read_history_csv
from kgooglenet.train.strategy import make_strategy, resolve_strategy_kind
from kgooglenet.train.trainer import TrainingModel
from kgooglenet.weights.cache import resolve_weights

log = logging.getLogger("kgooglenet.train")


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    history: dict  # metric name -> list of per-epoch values (all epochs of the run, including resumed ones)
    model: object  # the trained keras.Model after its last epoch (aux heads included when config.aux_heads; serve it with kgooglenet.inference_model)
    best_metric: float | None  # best value of `monitor` over the run (None when it was never logged)
    monitor: str  # the history key that was monitored (e.g. "val_main_accuracy" for config.monitor="val_accuracy" with aux heads)
    best_checkpoint: str | None  # out_dir/checkpoints/best.weights.h5 (weights of the best epoch), None if never written
    last_checkpoint: str | None  # out_dir/checkpoints/last.weights.h5 (weights after the final epoch)
    out_dir: str  # the run directory
    log_dir: str | None  # TensorBoard logs (None when config.tensorboard is False)
    history_csv: str  # out_dir/history.csv
    log_file: str  # out_dir/train.log
    plots: dict  # plot name ("loss", "accuracy", "learning_rate") -> PNG path
    config_path: str  # out_dir/config.json (the exact config of the run)
    num_classes: int  # classes of the classifiers
    class_names: list  # class names by id
    epochs_run: int  # epochs completed in total (a resumed run counts its earlier epochs)
    initial_epoch: int  # epochs already completed when this call started (> 0 after a resume)
    seconds: float  # wall time of this call


@contextlib.contextmanager
def precision_policy(precision: str):
    """Temporarily set Keras' global dtype policy ("float32", "mixed_float16", "mixed_bfloat16"). Layers keep the
    policy they were built with, so the model stays mixed after the context ends."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _preprocessing(config: TrainConfig):
    if config.preprocessing == "auto" and config.weights is not None:
        resolved = resolve_weights(config.weights, config.variant)
        if resolved.preprocessing is not None:
            return resolved.preprocessing
    return config.preprocessing


def build_model_and_compile(config: TrainConfig, num_classes: int, steps_per_epoch: int | None = None,
                            one_hot_labels: bool = False) -> keras.Model:
    """Build GoogLeNet from `config` and compile it: the fine-tuning steps (pretrained weights with new classifiers,
    `freeze_until`, `freeze_bn`, lr_mult 0), the optimizer and schedule, the precision policy, the cross-entropy on
    every head with the aux heads weighted `config.aux_weight`, and top-1/top-5 metrics on the main head.

    Call it inside `strategy.scope()` for a distributed run.

    Args:
        config: the TrainConfig.
        num_classes: classes of all three classifiers.
        steps_per_epoch: steps per epoch (sizes the "step", "poly", "cosine" schedules and warmup); None = 100.
        one_hot_labels: the training labels are float32 one-hot (mixup/cutmix) rather than int class ids.

    Returns:
        A compiled `kgooglenet.train.trainer.TrainingModel` (a functional GoogLeNet: same layers and weight layout).
        With aux heads its outputs and labels are dicts {"main", "aux1", "aux2"} (`kgooglenet.aux_targets`).

    Example:
    >>> model = build_model_and_compile(TrainConfig(width=0.125, epochs=1), num_classes=10)
    >>> model.output_shape
    {'main': (None, 10), 'aux1': (None, 10), 'aux2': (None, 10)}
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_model_and_compile: num_classes must be a positive int, got {num_classes!r}")
    size = config.data.image_size
    with precision_policy(config.precision):
        base = GoogLeNet(
            config.variant, num_classes=num_classes, aux_heads=config.aux_heads, input_shape=(size, size, 3),
            dropout=config.dropout, aux_dropout=config.aux_dropout, width=config.width,
            preprocessing=_preprocessing(config),
        )
        model = TrainingModel(base.input, base.output, name=base.name)
        model.configure_training(
            l2=config.weight_decay if config.optimizer in ("sgd", "adam") else 0.0,
            decay_all=config.decay_all, adversarial=config.adversarial, fgsm_epsilon=config.fgsm_epsilon,
            adversarial_fraction=config.adversarial_fraction, label_smoothing=config.label_smoothing,
        )
        summary = apply_finetuning(model, config)
        if summary:
            log.info("fine-tuning: %s", {k: (v if not isinstance(v, list) or len(v) < 8 else f"{len(v)} layers")
                                         for k, v in summary.items()})
        loss = Crossentropy(label_smoothing=config.label_smoothing)
        metrics = make_metrics(num_classes, one_hot=one_hot_labels)
        kwargs = dict(loss=loss, metrics=metrics)
        if config.aux_heads:
            kwargs = dict(
                loss={"main": loss, "aux1": loss, "aux2": loss},
                loss_weights={"main": 1.0, "aux1": config.aux_weight, "aux2": config.aux_weight},
                metrics={"main": metrics},
            )
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch or 100),
            jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution, **kwargs,
        )
    return model


def prepare_datasets(config: TrainConfig, bundle, num_classes: int):
    """(train, val) datasets ready for `fit`: train repeated (fit is given steps_per_epoch), val labels one-hot
    when train's are, and both mapped to the aux-head label dict when the model has aux heads."""
    train_ds, val_ds = bundle.train, bundle.val
    if not config.data.repeat:
        train_ds = train_ds.repeat()
    if val_ds is not None and bundle.one_hot_train:
        val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), num_classes)))
    if config.aux_heads:
        train_ds = train_ds.map(aux_targets, num_parallel_calls=tf.data.AUTOTUNE)
        if val_ds is not None:
            val_ds = val_ds.map(aux_targets, num_parallel_calls=tf.data.AUTOTUNE)
    return train_ds, val_ds


def resolve_num_classes(config: TrainConfig, bundle) -> int:
    if config.num_classes is None:
        return int(bundle.num_classes)
    if config.num_classes < bundle.num_classes:
        raise ValueError(
            f"TrainConfig.num_classes={config.num_classes} is smaller than the {bundle.num_classes} classes of the data"
        )
    return int(config.num_classes)


class _RunLog:
    """Attach out_dir/train.log to the "kgooglenet.train" logger for the duration of a run."""

    def __init__(self, path: str):
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def __enter__(self):
        self.propagate = log.propagate
        log.propagate = False  # the file gets every line; the console gets the progress bar and the summary line
        log.addHandler(self.handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        log.propagate = self.propagate
        log.removeHandler(self.handler)
        self.handler.close()


def start_run_dir(config: TrainConfig, paths: cb.RunPaths, backup_epochs: callable) -> int:
    """Create the run directory; wipe previous state when `config.resume` is False; return the epochs already
    completed (truncating history.csv to them)."""
    if not config.resume:
        for path in (paths.history_csv, paths.backup, paths.best, paths.last, paths.log_dir, paths.plots_dir):
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
    paths.makedirs()
    done = backup_epochs()
    cb.truncate_history(paths.history_csv, done)
    return done


def summary_line(strategy_name: str, replicas: int, config: TrainConfig, steps: int, model, done: int) -> str:
    line = (
        f"kgooglenet.train: strategy {strategy_name}, replicas {replicas}, precision {config.precision}, "
        f"global batch {config.data.batch_size}, steps per epoch {steps}, epochs {config.epochs}, "
        f"model {model.name} width {config.width} ({model.count_params():,} params, aux heads "
        f"{'on' if config.aux_heads else 'off'}), out_dir {config.out_dir}"
    )
    if done:
        line += f" - resuming after epoch {done}"
    return line


def finish(config: TrainConfig, paths: cb.RunPaths, model, monitor: str, bundle, num_classes: int,
           initial_epoch: int, started: float, fallback_history: dict | None = None) -> TrainResult:
    """Collect the TrainResult of a finished run from its files."""
    history = read_history_csv(paths.history_csv) if os.path.isfile(paths.history_csv) else dict(
        fallback_history or {})
    plots = plot_history(history, paths.plots_dir, model.name) if config.plots and history else {}
    best = cb.best_so_far(paths.history_csv, monitor)
    epochs_run = len(history.get("loss", []))
    log.info("finished: %d epochs, best %s = %s, %.1f s", epochs_run, monitor, best, time.time() - started)
    return TrainResult(
        history=history, model=model, best_metric=best, monitor=monitor,
        best_checkpoint=paths.best if os.path.isfile(paths.best) else None,
        last_checkpoint=paths.last if os.path.isfile(paths.last) else None,
        out_dir=paths.out_dir, log_dir=paths.log_dir if config.tensorboard else None,
        history_csv=paths.history_csv, log_file=paths.log_file, plots=plots, config_path=paths.config,
        num_classes=num_classes, class_names=list(bundle.class_names), epochs_run=epochs_run,
        initial_epoch=initial_epoch, seconds=time.time() - started,
    )


def train(config: TrainConfig, callbacks=()) -> TrainResult:
    """Run the training described by `config` and return a `TrainResult`.

    Builds the datasets (`kgooglenet.data.make_datasets(config.data)`), the strategy, the model
    (`build_model_and_compile`) and the callbacks, prints a one-line summary, and runs `model.fit` - or, for
    `strategy="multiworker"` (or "auto" with a multi-task TF_CONFIG), the custom loop of
    `kgooglenet.train.distributed`. Restarting a killed run with the same config continues after its last completed
    epoch and stops at the same total `config.epochs`.

    Args:
        config: the TrainConfig.
        callbacks: extra Keras callbacks, run after the built-in ones.

    Example:
    >>> result = train(TrainConfig(width=0.125, epochs=1, out_dir="/tmp/kgooglenet_doctest"))  # doctest: +SKIP
    >>> result.history["val_main_accuracy"]  # doctest: +SKIP
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"train: config must be a TrainConfig, got {type(config).__name__}")
    if resolve_strategy_kind(config.strategy) == "multiworker":
        from kgooglenet.train.distributed import train_custom_loop

        return train_custom_loop(config, callbacks=callbacks)
    started = time.time()
    strategy, kind = make_strategy(config.strategy, config.devices)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    paths = cb.RunPaths.of(config.out_dir)
    done = start_run_dir(config, paths, lambda: cb.backup_epoch(paths.backup))
    with _RunLog(paths.log_file):
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
        monitor = cb.resolve_monitor(config.monitor, config.aux_heads, val_ds is not None)
        config.to_json(paths.config)
        line = summary_line(f"{type(strategy).__name__} ({kind})", strategy.num_replicas_in_sync, config, steps,
                            model, done)
        print(line, flush=True)
        log.info(line)
        run_callbacks = cb.make_callbacks(config, paths, monitor, title=model.name, strategy=strategy) + list(callbacks)
        history = model.fit(
            train_ds, validation_data=val_ds, epochs=config.epochs, steps_per_epoch=steps,
            validation_steps=config.validation_steps, callbacks=run_callbacks, verbose=config.verbose, shuffle=False,
        )
        return finish(config, paths, model, monitor, bundle, num_classes, done, started, history.history)
