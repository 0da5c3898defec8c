"""The run directory: its files, its config record, resuming from it, and the result of a run.

    out_dir/
      config.json                  the TrainConfig of the run (written once the run starts training)
      train.log                    summary line, per-epoch metrics, resume notes
      history.csv                  one row per committed epoch, across resumes
      logs/                        TensorBoard
      plots/{loss,accuracy,learning_rate}.png
      model.keras                  the best epoch as a self-describing model (kgooglenet.saving), written at the end
      checkpoints/best.weights.h5  the weights of the best epoch of `monitor`
      checkpoints/last.weights.h5  the weights after the latest committed epoch
      checkpoints/backup/ckpt-NNNN.weights.h5  the resume state after epoch NNNN (the newest two are kept)

Every file here is written atomically (`kgooglenet.saving.atomic_write`: temporary file in the same directory,
fsync, rename), so a kill at any moment leaves the old file or the new one. Keras' ModelCheckpoint and CSVLogger
write in place, and `BackupAndRestore(double_checkpoint=True)` does not cover a kill during its write: it copies the
previous state in place, writes the new weights and then the epoch count as two separate in-place files (a kill in
between resumes the new weights as the old epoch, which is then trained twice), and a kill during the JSON write
leaves a file whose decode error it does not catch. So the run keeps its own state: each checkpoint is a Keras
`.weights.h5` (model and optimizer variables) carrying, in an HDF5 attribute, the epoch it holds, the whole
history, the best value so far and the config. The backup of an epoch is written first and is the commit; the
history, best and last files are views of it, repaired from it on resume. At start the newest readable state wins:
the newest backup, else the older one, else last.weights.h5; each damaged file met on the way is named.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time

import h5py

from kgooglenet.data.config import ConfigError
from kgooglenet.saving import RUN_MODEL_FILE, ModelInfo, atomic_write, save_model
from kgooglenet.train import faults
from kgooglenet.train.build import resolved_preprocessing
from kgooglenet.train.config import TrainConfig
from kgooglenet.train.plots import LR_STEPS_CSV, plot_history, read_history_csv

log = logging.getLogger("kgooglenet.train")

META_ATTR = "kgooglenet_run"  # the HDF5 attribute (JSON) of every checkpoint a run writes
KEEP_BACKUPS = 2  # backups kept: the newest and the one before (the fallback when the newest is damaged)
BACKUP_PATTERN = re.compile(r"^ckpt-(\d+)\.weights\.h5$")

# Fields that may change between a run and its resume: they change neither the model nor the data it learns from
# (run length, logging, hardware and speed settings). Every other field (and every data field but these) must match.
RESUMABLE_FIELDS = frozenset({
    "epochs", "out_dir", "resume", "verbose", "tensorboard", "plots", "early_stopping_patience",
    "early_stopping_min_delta", "steps_per_execution", "jit_compile", "strategy", "devices",
})
RESUMABLE_DATA_FIELDS = frozenset({"cache", "num_parallel_calls"})


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    history: dict  # metric name -> list of per-epoch values (all committed epochs of the run, including resumed ones)
    model: object  # the trained keras.Model after its last committed epoch (aux heads included when config.aux_heads; serve it with kgooglenet.inference_model)
    best_metric: float | None  # best value of `monitor` over the run (None when it was never logged)
    monitor: str  # the history key that was monitored (e.g. "val_main_accuracy" for config.monitor="val_accuracy" with aux heads)
    best_checkpoint: str | None  # out_dir/checkpoints/best.weights.h5 (weights of the best epoch), None if never written
    last_checkpoint: str | None  # out_dir/checkpoints/last.weights.h5 (weights after the last committed epoch)
    out_dir: str  # the run directory
    log_dir: str | None  # TensorBoard logs (None when config.tensorboard is False)
    history_csv: str  # out_dir/history.csv
    log_file: str  # out_dir/train.log
    plots: dict  # plot name ("loss", "accuracy", "learning_rate") -> PNG path
    config_path: str  # out_dir/config.json (the exact config of the run)
    num_classes: int  # classes of the classifiers
    class_names: list  # class names by id
    epochs_run: int  # epochs committed in total (a resumed run counts its earlier epochs)
    initial_epoch: int  # epochs already committed when this call started (> 0 after a resume)
    seconds: float  # wall time of this call
    model_file: str | None = None  # out_dir/model.keras: the best epoch as a self-describing model (kgooglenet.load_model)
    stop_reason: str | None = None  # None (ran to config.epochs), "non-finite loss" or "early stopping"
    nonfinite_step: int | None = None  # with "non-finite loss": the 1-based global training step whose loss was NaN/Inf (the last step of the epoch when only the validation loss was)
    nonfinite_epoch: int | None = None  # with "non-finite loss": the 1-based epoch it happened in (not committed)

    @property
    def stopped_on_nonfinite(self) -> bool:
        return self.stop_reason == "non-finite loss"


def nonfinite_advice(result: TrainResult) -> str:
    """The one line a recipe prints (and exits non-zero with) when a run stopped on a non-finite loss."""
    return (f"kgooglenet.train: stopped on a non-finite loss at step {result.nonfinite_step} (epoch "
            f"{result.nonfinite_epoch}); nothing of that epoch was saved, {result.epochs_run} epochs are kept in "
            f"{result.out_dir}. Try a lower learning rate (--lr), precision float32, or gradient clipping "
            f"(clipnorm in the config); rerunning resumes from epoch {result.epochs_run}.")


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
    model: str
    lr_steps: str

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
            model=os.path.join(out_dir, RUN_MODEL_FILE),
            lr_steps=os.path.join(out_dir, LR_STEPS_CSV),
        )

    def makedirs(self) -> None:
        for d in (self.out_dir, self.checkpoints, self.backup, self.plots_dir):
            os.makedirs(d, exist_ok=True)

    def backups(self) -> list[str]:
        """Backup files, newest first."""
        if not os.path.isdir(self.backup):
            return []
        found = [(int(m.group(1)), f) for f in os.listdir(self.backup) if (m := BACKUP_PATTERN.match(f))]
        return [os.path.join(self.backup, f) for _, f in sorted(found, reverse=True)]


class RunLog:
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


def monitor_mode(monitor: str) -> str:
    """"max" for accuracies, "min" for losses."""
    return "max" if ("acc" in monitor or "top" in monitor) else "min"


def config_record(config: TrainConfig) -> dict:
    """The JSON-ready dict a run records of its config (and compares a resume against)."""
    return json.loads(json.dumps(config.to_dict()))


def _flat(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "data"}
    out.update({f"data.{k}": v for k, v in (record.get("data") or {}).items()})
    return out


def config_changes(recorded: dict, config: TrainConfig) -> list[tuple[str, object, object]]:
    """(field, recorded value, new value) for every field that differs and matters for resuming (see
    RESUMABLE_FIELDS). Fields a recorded config lacks (written before they existed) count as their default."""
    try:
        recorded = config_record(TrainConfig.from_dict(recorded))
    except (ValueError, TypeError):
        pass  # compare the raw record: a field it names that no longer exists shows up as a change
    old, new = _flat(recorded), _flat(config_record(config))
    free = RESUMABLE_FIELDS | {f"data.{k}" for k in RESUMABLE_DATA_FIELDS}
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if k not in free and old.get(k) != new.get(k)]


def _write_text(path: str, text: str, point: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
        faults.hit(point)

    atomic_write(path, write)


def write_checkpoint(model, path: str, meta: dict, point: str) -> None:
    """`model.save_weights` (model and optimizer variables) with `meta` as the file's META_ATTR, atomically."""
    def write(tmp):
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[META_ATTR] = json.dumps(meta)
        faults.hit(point)

    atomic_write(path, write)


def copy_checkpoint(source: str, path: str, point: str) -> None:
    """`path` becomes a copy of `source`, atomically. A copy, not a hard link: damage to one file (a disk error, a
    truncation by hand) must not take its fallbacks with it."""
    def write(tmp):
        shutil.copyfile(source, tmp)
        faults.hit(point)

    atomic_write(path, write)


def read_checkpoint_meta(path: str) -> dict:
    """The META_ATTR of a checkpoint; ValueError naming the file when it is missing, damaged or not a run's."""
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs[META_ATTR])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path} is damaged or not a kgooglenet run checkpoint ({type(e).__name__}: {e})") from e
    return meta


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclasses.dataclass
class ResumeState:
    """What a run resumes from (all zeros / empty for a new run)."""

    epoch: int = 0  # committed epochs
    history: dict = dataclasses.field(default_factory=dict)  # metric -> per-epoch values ("epoch" holds 0, 1, ...)
    best_value: float | None = None  # best value of the monitor so far
    best_epoch: int | None = None  # the committed epoch (1-based) that best.weights.h5 holds
    source: str | None = None  # the checkpoint it was restored from

    def meta(self, monitor: str, record: dict) -> dict:
        return {"epoch": self.epoch, "history": self.history, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "monitor": monitor, "config": record}


class ConfigChangedError(ConfigError):
    """A rerun's config differs from the recorded one in something that changes the model or the data."""


class RunDir:
    """One run directory: `prepare(config)` (refuse a changed config, wipe for a fresh start), `restore(model)`,
    `write_config`, `commit(model, epoch, logs)` at each finite epoch end, `write_model` and `result` at the end.

    `shared_dir` is where the resume state is read from when it differs from `out_dir` (multi-worker runs: the
    non-chief workers write into temporary directories but resume from the chief's). Only the writer (`writer=True`,
    the chief) repairs or wipes the shared files.
    """

    def __init__(self, out_dir: str, shared_dir: str | None = None, writer: bool = True):
        self.paths = RunPaths.of(out_dir)
        self.shared = RunPaths.of(shared_dir or out_dir)
        self.writer = writer
        self.state = ResumeState()
        self.monitor = None
        self.record = None
        self.nonfinite = None  # (epoch 1-based, global step 1-based, what) once a non-finite loss was seen
        self.notes: list[str] = []
        self.damaged: list[str] = []  # checkpoints restore() could not read

    # --- start -----------------------------------------------------------------------------------------------------
    def note(self, message: str) -> None:
        """A resume note: printed now and logged to train.log once the log is attached."""
        print(f"kgooglenet.train: {message}", flush=True)
        self.notes.append(message)
        log.info(message)  # train.log gets it too once attached (restore() repeats the notes made before)

    def recorded_config(self) -> dict | None:
        """The config recorded in the shared run directory: config.json, else the newest backup's copy."""
        path = self.shared.config
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    return json.load(f)
            except (OSError, ValueError) as e:
                self.note(f"{path} is damaged ({e}); comparing against the config stored in the checkpoints")
        for ckpt in self.shared.backups() + [self.shared.last]:
            with contextlib.suppress(ValueError):
                return read_checkpoint_meta(ckpt)["config"]
        return None

    def prepare(self, config: TrainConfig) -> None:
        """Before anything is written: refuse a resume whose config changes the model or the data (naming each
        field), or wipe the previous state when `config.resume` is False; then create the directories."""
        self.record = config_record(config)
        if config.resume:
            recorded = self.recorded_config()
            changes = config_changes(recorded, config) if recorded is not None else []
            if changes:
                lines = "\n".join(f"  {k}: recorded {old!r}, received {new!r}" for k, old, new in changes)
                raise ConfigChangedError(
                    f"{self.shared.out_dir} holds a run with another config ({self.shared.config}); resuming it "
                    f"would mix two models or two datasets:\n{lines}\nStart over in that directory with "
                    f"resume=False (--fresh), or pick a new out_dir (--out-dir) to keep the old run.")
        elif self.writer:
            for path in (self.paths.history_csv, self.paths.backup, self.paths.best, self.paths.last,
                         self.paths.log_dir, self.paths.plots_dir, self.paths.config, self.paths.model,
                         self.paths.lr_steps):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.isfile(path):
                    os.remove(path)
        self.paths.makedirs()
        if self.writer:
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes a kill interrupted (atomic_write names them ".<name>.<random>.tmp<suffix>")."""
        for folder in (self.paths.out_dir, self.paths.checkpoints, self.paths.backup):
            for name in os.listdir(folder):
                if name.startswith(".") and ".tmp" in name and os.path.isfile(os.path.join(folder, name)):
                    os.remove(os.path.join(folder, name))

    def log(self) -> RunLog:
        return RunLog(self.paths.log_file)

    def restore(self, model, monitor: str, resume: bool = True) -> ResumeState:
        """Load the newest readable state into `model` (built, optimizer built) and return it; damaged files are
        named and skipped. The writer then repairs history.csv, last and best from that state."""
        self.monitor = monitor
        for note in self.notes:
            log.info(note)
        if not resume:
            return self.state
        candidates = self.shared.backups() + ([self.shared.last] if os.path.isfile(self.shared.last) else [])
        self.damaged = []
        for i, path in enumerate(candidates):
            try:
                meta = read_checkpoint_meta(path)
                model.load_weights(path)
            except Exception as e:  # noqa: BLE001  (h5py and Keras raise OSError, ValueError, KeyError...)
                after = candidates[i + 1] if i + 1 < len(candidates) else "a fresh start (no readable state left)"
                reason = str(e).splitlines()[0][:300] if str(e).startswith(path) else (
                    f"{path} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
                self.note(f"{reason}; falling back to {after}")
                self.damaged.append(path)
                continue
            self.state = ResumeState(epoch=int(meta["epoch"]), history=meta["history"],
                                     best_value=meta.get("best_value"), best_epoch=meta.get("best_epoch"),
                                     source=path)
            break
        if self.writer:
            self._repair(model)
        return self.state

    def _repair(self, model) -> None:
        state, p = self.state, self.paths
        for path in self.damaged:  # named already; a backup of the resumed epoch is rewritten below
            if path != p.last:
                os.remove(path)
        backup = os.path.join(p.backup, f"ckpt-{state.epoch:04d}.weights.h5")
        if state.epoch and not os.path.isfile(backup):
            write_checkpoint(model, backup, state.meta(self.monitor, self.record), "backup")
        if state.epoch == 0:
            for path in (p.history_csv, p.best, p.last):
                if os.path.isfile(path):
                    os.remove(path)
            return
        if os.path.isfile(p.history_csv):
            try:
                epochs = read_history_csv(p.history_csv).get("epoch", [])
            except Exception as e:  # noqa: BLE001  (whatever a damaged CSV raises)
                epochs = [f"unreadable: {e}"]
            if epochs[:state.epoch] != list(range(state.epoch)):
                self.note(f"{p.history_csv} is damaged or incomplete ({len(epochs)} rows for {state.epoch} "
                          f"committed epochs); rewritten from {state.source}")
            elif len(epochs) > state.epoch:
                log.info("history.csv: rows after epoch %d dropped (not committed)", state.epoch)
        self._write_history()
        last_epoch = self._epoch_of(p.last)
        if last_epoch != state.epoch:
            if os.path.isfile(p.last) and last_epoch is None:
                self.note(f"{p.last} is damaged; rewritten from {state.source}")
            write_checkpoint(model, p.last, state.meta(self.monitor, self.record), "last")
        if state.best_epoch is None:
            return
        best_epoch = self._epoch_of(p.best)
        if best_epoch == state.best_epoch:
            return
        if state.best_epoch == state.epoch:
            copy_checkpoint(p.last, p.best, "best")
        else:
            what = "is damaged" if os.path.isfile(p.best) and best_epoch is None else (
                "is missing" if best_epoch is None else f"holds epoch {best_epoch}, not the recorded {state.best_epoch}")
            self.note(f"{p.best} {what} and the weights of epoch {state.best_epoch} are gone: the best checkpoint "
                      f"starts again from the next epoch")
            state.best_value = state.best_epoch = None
            if os.path.isfile(p.best):
                os.remove(p.best)

    @staticmethod
    def _epoch_of(path: str) -> int | None:
        if not os.path.isfile(path):
            return None
        try:
            return int(read_checkpoint_meta(path)["epoch"])
        except (ValueError, KeyError):
            return None

    def write_config(self, config: TrainConfig) -> None:
        """Record the config (only a run that trains does this: after the model and data were built)."""
        if self.writer:
            _write_text(self.paths.config, json.dumps(self.record, indent=2) + "\n", "config")

    # --- epochs ----------------------------------------------------------------------------------------------------
    def mark_nonfinite(self, epoch: int, step: int, what: str) -> None:
        if self.nonfinite is None:
            self.nonfinite = (epoch, step, what)
            log.warning("epoch %d, step %d: %s; stopping, nothing of this epoch is saved", epoch, step, what)

    def commit(self, model, epoch: int, logs: dict, averaged=None) -> None:
        """Epoch `epoch` (0-based) ended with finite losses: the backup (the commit), then history.csv, best, last.
        `averaged`: a context manager putting the EMA weights in the model; best and last then hold them, the backup
        keeps the training weights (and the average in the optimizer's state)."""
        state, p = self.state, self.paths
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}}
        n = state.epoch
        for key in set(state.history) | set(row):
            state.history.setdefault(key, [float("nan")] * n).append(row.get(key, float("nan")))
        state.epoch = epoch + 1
        value = row.get(self.monitor)
        improved = _finite(value) and (state.best_value is None or (
            value > state.best_value if monitor_mode(self.monitor) == "max" else value < state.best_value))
        if improved:
            state.best_value, state.best_epoch = value, state.epoch
        backup = os.path.join(p.backup, f"ckpt-{state.epoch:04d}.weights.h5")
        write_checkpoint(model, backup, state.meta(self.monitor, self.record), "backup")
        for old in p.backups()[KEEP_BACKUPS:]:
            os.remove(old)
        self._write_history()
        if averaged is None:
            if improved:
                copy_checkpoint(backup, p.best, "best")
            copy_checkpoint(backup, p.last, "last")
            return
        with averaged():
            write_checkpoint(model, p.last, state.meta(self.monitor, self.record), "last")
        if improved:
            copy_checkpoint(p.last, p.best, "best")

    def _write_history(self) -> None:
        history = self.state.history
        keys = ["epoch"] + sorted(k for k in history if k != "epoch")
        lines = [",".join(keys)]
        for i in range(self.state.epoch):
            lines.append(",".join(str(int(history["epoch"][i])) if k == "epoch" else repr(history[k][i])
                                  for k in keys))
        _write_text(self.paths.history_csv, "\n".join(lines) + "\n", "history")

    def restore_last_good(self, model) -> None:
        """After a non-finite stop: the model gets back the weights of the last committed epoch."""
        if self.state.epoch:
            model.load_weights(self.shared.last)

    # --- end -------------------------------------------------------------------------------------------------------
    def write_model(self, model, info: ModelInfo) -> str | None:
        """RUN_DIR/model.keras holding the best epoch (the last one without a monitored value); None when no epoch
        was committed. `model` (which holds the last committed epoch) is left as it was."""
        state = self.state
        if not state.epoch:
            return None
        if state.best_epoch in (None, state.epoch):
            save_model(model, self.paths.model, info)
        else:
            variables = list(model.weights) + list(model.optimizer.variables if model.optimizer else [])
            current = [v.numpy() for v in variables]
            model.load_weights(self.shared.best)
            try:
                save_model(model, self.paths.model, info)
            finally:
                for v, value in zip(variables, current):
                    v.assign(value)
        faults.hit("model")
        return self.paths.model

    def model_info(self, config: TrainConfig, class_names) -> ModelInfo:
        """What RUN_DIR/model.keras says about itself: the best epoch of this run."""
        state = self.state
        return ModelInfo(
            class_names=tuple(str(c) for c in class_names), image_size=config.data.image_size,
            variant=config.variant, width=config.width, aux_heads=config.aux_heads,
            preprocessing=resolved_preprocessing(config),
            provenance={"run_dir": self.shared.out_dir, "epoch": state.best_epoch or state.epoch,
                        "monitor": self.monitor, "value": state.best_value, "initial_weights": config.weights},
        )

    def finish(self, config: TrainConfig, model, bundle, num_classes: int, initial_epoch: int, started: float,
               early_stopped: bool = False) -> TrainResult:
        """After the last epoch: back to the last finite weights after a non-finite stop, the plots,
        RUN_DIR/model.keras from the best epoch, and the TrainResult (paths are this directory's)."""
        if self.nonfinite:
            self.restore_last_good(model)
        history = self.state.history
        plots = {}
        if config.plots and history:
            plots = plot_history(history, self.paths.plots_dir, model.name, lr_steps_csv=self.paths.lr_steps)
        model_file = self.write_model(model, self.model_info(config, bundle.class_names))
        p, state = self.paths, self.state
        stop = "non-finite loss" if self.nonfinite else ("early stopping" if early_stopped else None)
        log.info("finished: %d epochs, best %s = %s, %.1f s%s", state.epoch, self.monitor, state.best_value,
                 time.time() - started, f" (stopped: {stop})" if stop else "")
        return TrainResult(
            history={k: list(v) for k, v in state.history.items()}, model=model, best_metric=state.best_value,
            monitor=self.monitor, best_checkpoint=p.best if os.path.isfile(p.best) else None,
            last_checkpoint=p.last if os.path.isfile(p.last) else None, out_dir=p.out_dir,
            log_dir=p.log_dir if config.tensorboard else None, history_csv=p.history_csv, log_file=p.log_file,
            plots=plots, config_path=p.config, num_classes=num_classes, class_names=list(bundle.class_names),
            epochs_run=state.epoch, initial_epoch=initial_epoch, seconds=time.time() - started,
            model_file=model_file, stop_reason=stop,
            nonfinite_step=self.nonfinite[1] if self.nonfinite else None,
            nonfinite_epoch=self.nonfinite[0] if self.nonfinite else None,
        )
