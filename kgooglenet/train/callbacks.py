"""The callbacks of a training run (the files they write are described in `kgooglenet.train.run`).

Keras' own callbacks plus four small ones: `RunCheckpoint` (stops at the first non-finite loss and commits each
finite epoch to the run directory, atomically: backup, history.csv, best, last), `LearningRateLogger` (adds
"learning_rate" to the epoch logs), `EpochLogger` (one log-file line per epoch) and `PlotHistory` (re-plots the
whole history after each committed epoch).
"""

from __future__ import annotations

import logging
import math

import keras

from kgooglenet.train.averaging import epoch_weights_callbacks
from kgooglenet.train.ema import ema_callback
from kgooglenet.train.optim import current_learning_rate
from kgooglenet.train.plots import StepLearningRateLogger, plot_history
from kgooglenet.train.run import RunDir, monitor_mode

log = logging.getLogger("kgooglenet.train")

__all__ = ["RunCheckpoint", "LearningRateLogger", "EpochLogger", "BatchNormSync", "PlotHistory", "monitor_mode",
           "resolve_monitor", "replica_callbacks", "schedule_callbacks", "make_callbacks"]


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


def _nonfinite(value) -> bool:
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class RunCheckpoint(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN/Inf or whose update left a non-finite weight (Keras'
    cross-entropy clips the probabilities, so a model gone NaN can still report a finite loss) and, unlike
    `TerminateOnNaN`, keeps that epoch out of every file: only an epoch whose losses and weights are finite is
    committed to the `RunDir` (backup, history.csv, best, last). The other epoch-end callbacks ask `skip()`."""

    def __init__(self, run: RunDir, steps_per_epoch: int, ema=None):
        super().__init__()
        self.run, self.steps, self.ema = run, steps_per_epoch, ema  # ema: EMAWeights (best/last hold the average)
        self.epoch = 0
        self._finite = None

    def weights_finite(self) -> bool:
        """All of the model's variables finite: one compiled reduction (about a millisecond per batch)."""
        if self._finite is None:
            import tensorflow as tf

            variables = [v for v in self.model.weights if "float" in str(v.dtype)]
            self._finite = tf.function(lambda: tf.reduce_all(
                tf.stack([tf.reduce_all(tf.math.is_finite(tf.cast(v, "float32"))) for v in variables])))
        return bool(self._finite())

    def skip(self) -> bool:
        return self.run.nonfinite is not None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        step = self.epoch * self.steps + batch + 1
        if loss is not None and _nonfinite(loss):
            self.run.mark_nonfinite(self.epoch + 1, step, f"training loss {loss}")
        elif not self.weights_finite():
            self.run.mark_nonfinite(self.epoch + 1, step, f"non-finite weights after the update (loss {loss})")
        if self.skip():
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        bad = [k for k, v in logs.items() if k.endswith("loss") and _nonfinite(v)]
        if bad and not self.skip():
            self.run.mark_nonfinite(epoch + 1, (epoch + 1) * self.steps, f"{bad[0]} {logs[bad[0]]}")
        if self.skip():
            self.model.stop_training = True
            return
        self.run.commit(self.model, epoch, logs, averaged=self.ema.averaged if self.ema else None)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate (base group) to the epoch logs as "learning_rate"."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.model.optimizer is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class EpochLogger(keras.callbacks.Callback):
    """One line per epoch in the "kgooglenet.train" log (the run's train.log); an epoch `guard` did not commit is
    logged as such."""

    def __init__(self, guard: RunCheckpoint | None = None):
        super().__init__()
        self.guard = guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.skip():
            log.info("epoch %d: not committed (%s)", epoch + 1, self.guard.run.nonfinite[2])
            return
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
    """Re-plots the whole committed history (all epochs, across resumes) after each committed epoch."""

    def __init__(self, guard: RunCheckpoint, title: str | None = None):
        super().__init__()
        self.guard, self.title = guard, title

    def on_epoch_end(self, epoch, logs=None):
        run = self.guard.run
        if not self.guard.skip() and run.state.epoch:
            plot_history(run.state.history, run.paths.plots_dir, self.title, lr_steps_csv=run.paths.lr_steps)


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


def make_callbacks(config, run: RunDir, monitor: str, steps_per_epoch: int, *, title: str | None = None,
                   strategy=None) -> list:
    """The run's callbacks, in the order they must run at each epoch end: BatchNormSync first (`strategy` with several
    replicas: checkpoints hold the averaged statistics), the learning rate into the logs, then `RunCheckpoint` (the
    non-finite guard and the commit of the epoch), the log line, schedule and early stopping, TensorBoard and the
    plots last (slow, and nothing to resume from). The same list serves `fit` and the multi-worker custom loop."""
    ema = ema_callback(config)
    guard = RunCheckpoint(run, steps_per_epoch, ema=ema)
    callbacks = replica_callbacks(strategy) + [*([ema] if ema else []), LearningRateLogger(), guard,
                                               EpochLogger(guard), *epoch_weights_callbacks(config, guard)]
    callbacks += schedule_callbacks(config, monitor)
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=monitor_mode(monitor), patience=config.early_stopping_patience,
            min_delta=config.early_stopping_min_delta, restore_best_weights=False))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(run.paths.log_dir, write_graph=False, profile_batch=0))
    if config.plots:  # the learning rate of every step (warmup shows), then the plots of the committed epochs
        callbacks += [StepLearningRateLogger(run.paths.lr_steps, steps_per_epoch=steps_per_epoch),
                      PlotHistory(guard, title)]
    return callbacks


def early_stopped(callbacks) -> bool:
    """True when an EarlyStopping among `callbacks` stopped the run."""
    return any(isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0 for c in callbacks)
