"""The callbacks of a training run and the files they write under `out_dir`.

    out_dir/
      config.json                  the TrainConfig of the run
      train.log                    summary line, per-epoch metrics, resume notes
      history.csv                  CSVLogger (one row per completed epoch, across resumes)
      logs/                        TensorBoard
      plots/{loss,accuracy,learning_rate}.png
      checkpoints/best.weights.h5  ModelCheckpoint(save_best_only) on `monitor`
      checkpoints/last.weights.h5  weights after the latest epoch
      checkpoints/backup/          BackupAndRestore (fit) or tf.train.CheckpointManager (multi-worker loop) state

Everything here is Keras' own callbacks plus three small ones: `LearningRateLogger` (adds "learning_rate" to the
epoch logs), `EpochLogger` (one log-file line per epoch) and `PlotHistory` (re-plots the whole CSV history).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os

import keras

from kgooglenet.train.averaging import epoch_weights_callbacks
from kgooglenet.train.ema import ema_callbacks
from kgooglenet.train.optim import current_learning_rate
from kgooglenet.train.plots import plot_history, read_history_csv

log = logging.getLogger("kgooglenet.train")


@dataclasses.dataclass
class RunPaths:
    """The files of a run directory (see the module docstring)."""

    out_dir: str
    config: str
    log_file: str
    history_csv: str
    log_dir: str
    plots_dir: str
    checkpoints: str
    best: str
    last: str
    backup: str

    @classmethod
    def of(cls, out_dir: str) -> "RunPaths":
        ck = os.path.join(out_dir, "checkpoints")
        return cls(
            out_dir=out_dir,
            config=os.path.join(out_dir, "config.json"),
            log_file=os.path.join(out_dir, "train.log"),
            history_csv=os.path.join(out_dir, "history.csv"),
            log_dir=os.path.join(out_dir, "logs"),
            plots_dir=os.path.join(out_dir, "plots"),
            checkpoints=ck,
            best=os.path.join(ck, "best.weights.h5"),
            last=os.path.join(ck, "last.weights.h5"),
            backup=os.path.join(ck, "backup"),
        )

    def makedirs(self) -> None:
        for d in (self.out_dir, self.checkpoints, self.plots_dir):
            os.makedirs(d, exist_ok=True)


def monitor_mode(monitor: str) -> str:
    """"max" for accuracies, "min" for losses."""
    return "max" if ("acc" in monitor or "top" in monitor) else "min"


def resolve_monitor(monitor: str, aux_heads: bool, has_val: bool) -> str:
    """The history key of `monitor`: main-head metrics get the "main_" prefix Keras gives them when the model has aux
    heads ("val_accuracy" -> "val_main_accuracy"); without validation data "val_" is dropped."""
    prefix = "val_" if monitor.startswith("val_") else ""
    name = monitor[len(prefix):]
    if not has_val:
        prefix = ""
    if aux_heads and name not in ("loss",) and not name.startswith(("main_", "aux1_", "aux2_")):
        name = "main_" + name
    return prefix + name


def best_so_far(history_csv: str, monitor: str) -> float | None:
    """Best value of `monitor` in an existing history.csv (for ModelCheckpoint after a resume), or None."""
    if not os.path.isfile(history_csv):
        return None
    values = [v for v in read_history_csv(history_csv).get(monitor, []) if not math.isnan(v)]
    if not values:
        return None
    return max(values) if monitor_mode(monitor) == "max" else min(values)


def truncate_history(history_csv: str, completed_epochs: int) -> None:
    """Keep the header and the rows of epochs < completed_epochs (a run killed between writing the CSV row and the
    backup would otherwise repeat an epoch)."""
    if not os.path.isfile(history_csv):
        return
    with open(history_csv) as f:
        lines = f.read().splitlines()
    if not lines:
        return
    kept = [lines[0]] + [line for line in lines[1:] if line and int(float(line.split(",")[0])) < completed_epochs]
    with open(history_csv, "w") as f:
        f.write("\n".join(kept) + "\n")


def backup_epoch(backup_dir: str) -> int:
    """Completed epochs recorded by BackupAndRestore in `backup_dir` (0 when there is no backup)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate (base group) to the epoch logs as "learning_rate"."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.model.optimizer is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class EpochLogger(keras.callbacks.Callback):
    """One line per epoch in the "kgooglenet.train" log (the run's train.log)."""

    def on_epoch_end(self, epoch, logs=None):
        items = " ".join(f"{k}={v:.5g}" for k, v in sorted((logs or {}).items()) if isinstance(v, (int, float)))
        log.info("epoch %d: %s", epoch + 1, items)


class BatchNormSync(keras.callbacks.Callback):
    """Averages the BatchNorm moving statistics over replicas before each validation and at each epoch end (see
    `kgooglenet.train.strategy.make_batchnorm_sync`); does nothing with a single replica."""

    def __init__(self, strategy):
        super().__init__()
        self.strategy, self._sync = strategy, None

    def _run(self):
        if self._sync is None:
            from kgooglenet.train.strategy import make_batchnorm_sync

            self._sync = make_batchnorm_sync(self.strategy, self.model) or (lambda: None)
        self._sync()

    def on_test_begin(self, logs=None):
        self._run()

    def on_epoch_end(self, epoch, logs=None):
        self._run()


class PlotHistory(keras.callbacks.Callback):
    """Re-plots the whole history.csv (all epochs, across resumes) after each epoch."""

    def __init__(self, history_csv: str, plots_dir: str, title: str | None = None):
        super().__init__()
        self.history_csv, self.plots_dir, self.title = history_csv, plots_dir, title

    def on_epoch_end(self, epoch, logs=None):
        if os.path.isfile(self.history_csv):
            plot_history(read_history_csv(self.history_csv), self.plots_dir, self.title)


def replica_callbacks(strategy) -> list:
    """`BatchNormSync` when `strategy` has several replicas (they then share BatchNorm statistics), else nothing.
    Runs first at each epoch end, so checkpoints and validation see the averaged statistics."""
    return [BatchNormSync(strategy)] if strategy is not None and strategy.num_replicas_in_sync > 1 else []


def schedule_callbacks(config, monitor: str) -> list:
    """The callbacks a learning-rate schedule needs: ReduceLROnPlateau on `monitor` for schedule "plateau" (the
    other schedules live in the optimizer)."""
    if config.schedule != "plateau":
        return []
    return [keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, mode=monitor_mode(monitor), factor=config.plateau_factor, patience=config.plateau_patience,
        min_lr=config.min_learning_rate)]


def make_callbacks(config, paths: RunPaths, monitor: str, *, custom_loop: bool = False, title: str | None = None,
                   strategy=None):
    """The run's callbacks, in the order they must run at each epoch end: the learning rate is logged before the CSV
    row, the checkpoints and the resume backup come right after it (a run killed between the CSV row and the backup
    redoes that epoch: `truncate_history` drops the row on resume), TensorBoard and the plots last.

    `custom_loop=True` leaves out BackupAndRestore (the multi-worker loop keeps its own tf.train.CheckpointManager).
    `strategy` with several replicas adds `BatchNormSync` (first, so checkpoints hold the averaged statistics).
    """
    mode = monitor_mode(monitor)
    ema_in, ema_out = ema_callbacks(config)  # the EMA weights are in the model for the checkpoints between them
    callbacks = replica_callbacks(strategy) + [
        LearningRateLogger(),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(paths.history_csv, append=True),
        EpochLogger(),
        *ema_in,
        keras.callbacks.ModelCheckpoint(
            paths.best, monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True,
            initial_value_threshold=best_so_far(paths.history_csv, monitor),
        ),
        keras.callbacks.ModelCheckpoint(paths.last, save_weights_only=True),
        *epoch_weights_callbacks(config, paths.checkpoints),
        *ema_out,
    ]
    callbacks += schedule_callbacks(config, monitor)
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=config.early_stopping_patience,
            min_delta=config.early_stopping_min_delta, restore_best_weights=False))
    if not custom_loop:  # as early as possible: the slower TensorBoard/plot writes come after
        callbacks.append(keras.callbacks.BackupAndRestore(paths.backup, save_freq="epoch", delete_checkpoint=False))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(paths.log_dir, write_graph=False, profile_batch=0))
    if config.plots:
        callbacks.append(PlotHistory(paths.history_csv, paths.plots_dir, title))
    return callbacks
