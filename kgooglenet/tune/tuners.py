"""The KerasTuner side: `GoogLeNetHyperModel` (build = `build_model_and_compile`, fit = datasets with the trial's
batch size), the three tuners with kgooglenet's trial records and failure handling, `make_tuner` and `search`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import socket
import time
import traceback

import keras
import keras_tuner as kt
import tensorflow as tf

from kgooglenet.data import make_datasets
from kgooglenet.saving import atomic_write
from kgooglenet.train import TrainConfig
from kgooglenet.train.build import build_model_and_compile, prepare_datasets, resolve_num_classes
from kgooglenet.train.callbacks import monitor_mode, replica_callbacks, schedule_callbacks
from kgooglenet.tune.config import TuneConfig, objective_name
from kgooglenet.tune.reports import TuneResult, write_reports
from kgooglenet.tune.space import DEFAULT_SPACE, SearchSpace, config_from_values, from_tuner


class _NaNGuard(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers whether it fired (Keras still logs the epoch it stops)."""

    def __init__(self):
        super().__init__()
        self.fired_at = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.fired_at is None:
            self.fired_at = batch
        super().on_batch_end(batch, logs)


class GoogLeNetHyperModel(kt.HyperModel):
    """A KerasTuner HyperModel over `TrainConfig`: `build(hp)` compiles the model of `base` with the trial's values
    (`kgooglenet.train.build_model_and_compile`), `fit(hp, model)` rebuilds the datasets with the trial's batch size
    and trains with early stopping, NaN checks and the trial budget.

    Args:
        base: the TrainConfig every trial starts from.
        space: the `SearchSpace` (use `space.relevant_to(base)` to skip irrelevant hyperparameters).
        objective: the monitored metric as named in training ("val_accuracy": the main head's val top-1).
        epochs: epochs per trial (default base.epochs); Hyperband passes its own.
        early_stopping_patience: epochs without improvement of `objective` before a trial stops; None = never.
        verbose: Keras fit verbosity.
        run_eagerly: compile trial models with run_eagerly (no tf.function tracing).
        steps_per_epoch: training steps per trial epoch (default base.steps_per_epoch, else one pass).
        validation_steps: validation steps per trial epoch (default base.validation_steps, else the whole split).

    Example:
    >>> hypermodel = GoogLeNetHyperModel(TrainConfig(width=0.125, epochs=2), DEFAULT_SPACE)
    >>> tuner = kt.RandomSearch(hypermodel, objective=kt.Objective(hypermodel.objective, "max"),
    ...                         max_trials=3, directory="/tmp/kgooglenet_tune")  # doctest: +SKIP
    >>> tuner.search()  # doctest: +SKIP
    """

    def __init__(self, base: TrainConfig, space: SearchSpace = DEFAULT_SPACE, objective: str = "val_accuracy",
                 epochs: int | None = None, early_stopping_patience: int | None = 3, verbose: int = 0,
                 run_eagerly: bool = False, steps_per_epoch: int | None = None,
                 validation_steps: int | None = None):
        super().__init__(name="googlenet")
        self.base = base
        self.space = space
        self.objective = objective_name(base, objective)
        self.epochs = epochs or base.epochs
        self.early_stopping_patience = early_stopping_patience
        self.verbose = verbose
        self.run_eagerly = run_eagerly
        self.steps_per_epoch = steps_per_epoch
        self.validation_steps = validation_steps
        self._probe = None  # (num_classes, train_size, one_hot_train) read once from the base datasets

    def declare_hyperparameters(self, hp):
        self.space.declare(hp)

    def config_for(self, hp: kt.HyperParameters) -> TrainConfig:
        """The TrainConfig of a trial: `base` with the trial's values in `hp` and the trial budget."""
        values = self.space.declare(hp)  # the trial's values (registers defaults for names new to `hp`)
        config = config_from_values(self.base, values)
        return dataclasses.replace(
            config,
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch or config.steps_per_epoch,
            validation_steps=self.validation_steps or config.validation_steps,
        )

    def _data_facts(self):
        if self._probe is None:
            bundle = make_datasets(self.base.data)
            if bundle.val is None:
                raise ValueError(
                    "TuneConfig.train.data: tuning needs validation data (the objective is a validation metric), "
                    f"but the data config gives none (val_split={self.base.data.val_split!r})"
                )
            self._probe = (resolve_num_classes(self.base, bundle), bundle.train_size, bundle.one_hot_train)
        return self._probe

    def _steps_per_epoch(self, config: TrainConfig) -> int:
        if config.steps_per_epoch:
            return config.steps_per_epoch
        _, train_size, _ = self._data_facts()
        batches = train_size / config.data.batch_size
        steps = int(batches) if config.data.drop_remainder else math.ceil(batches)
        if steps < 1:
            raise kt.errors.FailedTrialError(
                f"batch_size={config.data.batch_size} is larger than the {train_size} training examples")
        return steps

    def build(self, hp):
        config = self.config_for(hp)
        num_classes, _, one_hot = self._data_facts()
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed)  # as train() does: every trial starts from the same init
        model = build_model_and_compile(config, num_classes, self._steps_per_epoch(config), one_hot_labels=one_hot)
        if self.run_eagerly:
            model.run_eagerly = True
        return model

    def fit(self, hp, model, *args, callbacks=None, epochs=None, initial_epoch=0, verbose=None, **kwargs):
        config = self.config_for(hp)
        num_classes, _, _ = self._data_facts()
        train_ds, val_ds = prepare_datasets(config, make_datasets(config.data), num_classes)  # train repeats
        mode = monitor_mode(self.objective)
        guard = _NaNGuard()
        # as in training: replicas share BatchNorm statistics, and the plateau schedule watches the objective
        callbacks = (replica_callbacks(model.distribute_strategy) + list(callbacks or []) + [guard]
                     + schedule_callbacks(config, self.objective))
        if self.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=self.objective, mode=mode, patience=self.early_stopping_patience))
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs or config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=self._steps_per_epoch(config),
            validation_steps=config.validation_steps,
            callbacks=callbacks,
            verbose=self.verbose if verbose is None else verbose,
            shuffle=False,  # the tf.data pipeline shuffles
        )
        losses = history.history.get("loss", [])
        if guard.fired_at is not None or not losses or not all(math.isfinite(v) for v in losses):
            raise kt.errors.FailedTrialError(
                f"non-finite training loss (NaN/inf) at epoch {len(losses)}, batch {guard.fired_at}: "
                f"learning_rate={config.learning_rate!r}, optimizer={config.optimizer!r}"
            )
        if self.objective not in history.history:
            raise kt.errors.FailedTrialError(
                f"objective {self.objective!r} is not among the logged metrics {sorted(history.history)}"
            )
        return history


# ---------------------------------------------------------------------------------------------------------------------
# Tuners
# ---------------------------------------------------------------------------------------------------------------------
def tuner_role() -> str:
    """"chief" (runs the oracle server), "worker" (asks the chief for trials) or "local" (no distribution), from
    KerasTuner's environment variables KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT / KERASTUNER_TUNER_ID."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if name not in os.environ:
            raise ValueError(f"distributed search: KERASTUNER_ORACLE_IP is set but {name} is not")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def _save_json(path: str, state: dict) -> None:
    text = json.dumps(state)
    if "://" in str(path):  # remote storage (gs://): tf.io.gfile, as KerasTuner does
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


class _AtomicStateOracle:
    """Oracle mixin: oracle.json and each trial.json written to a temporary file, then renamed into place."""

    # KerasTuner rewrites these files in place (no public hook): a kill during a write would leave a truncated
    # JSON that no later run can reload, losing the whole search, finished trials included.
    def save(self):
        _save_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _save_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())


class _StoppingChiefOracle:
    """Chief oracle mixin: `max_consecutive_failed_trials` failures in a row stop a distributed search cleanly.

    KerasTuner's own check raises inside the chief's EndTrial handler: the oracle's lock stays held and the trial stays
    ongoing, every worker dies on the RPC error, and the chief waits for them forever. Here the trial is recorded as
    usual, every worker asking for a new trial is told to stop (they exit normally), and `search` on the chief then
    writes the reports and says why (`stop_reason`)."""

    stop_reason = None

    @kt.synchronized
    def end_trial(self, trial):
        try:
            super().end_trial(trial)  # the outer lock is ours, so an exception below cannot leave it held
        except RuntimeError as e:  # raised after the trial's status and end order are recorded
            if "consecutive failures" not in str(e):
                raise
            self.stop_reason = self.stop_reason or (
                f"the search stopped: {self.max_consecutive_failed_trials} trials in a row failed "
                f"(max_consecutive_failed_trials); the last one: {str(e).strip().splitlines()[-1]}")
            ended = self.trials[trial.trial_id]
            self._save_trial(ended)
            self.save()
            for tuner_id, ongoing in list(self.ongoing_trials.items()):
                if ongoing.trial_id == ended.trial_id:
                    self.ongoing_trials.pop(tuner_id)

    @kt.synchronized
    def create_trial(self, tuner_id):
        if self.stop_reason is None or tuner_id in self.ongoing_trials:
            return super().create_trial(tuner_id)
        self.tuner_ids.discard(tuner_id)  # as KerasTuner does for the STOPPED trial at max_trials
        return kt.engine.trial.Trial(self.get_space(), trial_id=str(len(self.trials)), status="STOPPED")


TRIAL_LOG = "trial.log"  # in each trial directory: the values, the traceback of a failure and the summary line


class _ConsecutiveFailures(RuntimeError):
    """Raised by a local search once `max_consecutive_failed_trials` trials in a row have failed (after the last one
    is saved, unlike KerasTuner's own check, which raises before saving it)."""


def _reason(error: BaseException) -> str:
    """One line saying why a trial failed (the message of a FailedTrialError, else the type and first line)."""
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    line = text if isinstance(error, kt.errors.FailedTrialError) else f"{type(error).__name__}: {text}"
    return line if len(line) <= 240 else line[:237] + "..."


class _GoogLeNetTunerMixin:
    """What our tuners add to KerasTuner's: a run record and a log file per trial (its values, the traceback of a
    failure), one console line per trial (its end: status, objective, best so far; a failure's reason), out-of-memory
    errors turned into FailedTrialError, and the space declared without building a model (no conditional scopes)."""

    objective_label = "val_accuracy"  # the objective as the user named it (set by make_tuner)
    max_consecutive_failures = None  # local search: stop after this many FAILED trials in a row (set by make_tuner)

    def save(self):  # BaseTuner.save, with the tuner's own state file written atomically too
        if not self._is_worker():
            self.oracle.save()
        _save_json(self._get_tuner_fname(), self.get_state())

    def _populate_initial_space(self):
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def _log(self, trial_id: str, text: str) -> None:
        with open(os.path.join(self.get_trial_dir(trial_id), TRIAL_LOG), "a") as f:
            f.write(text.rstrip("\n") + "\n")

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_started, self._trial_error = time.monotonic(), None
        values = {k: from_tuner(k, v) for k, v in trial.hyperparameters.values.items()}
        self._log(trial.trial_id, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {self.tuner_id} (pid {os.getpid()}) "
                                  f"runs trial {trial.trial_id}: {json.dumps(values, sort_keys=True)}")

    def run_trial(self, trial, *args, **kwargs):
        trial_dir = self.get_trial_dir(trial.trial_id)
        record = {"trial_id": trial.trial_id, "tuner_id": self.tuner_id, "host": socket.gethostname(),
                  "pid": os.getpid()}
        with tf.io.gfile.GFile(os.path.join(trial_dir, f"run_{self.tuner_id}.json"), "w") as f:
            f.write(json.dumps(record))
        print(f"[kgooglenet.tune] {self.tuner_id} runs trial {trial.trial_id}", flush=True)
        try:
            try:
                return super().run_trial(trial, *args, **kwargs)
            except (tf.errors.ResourceExhaustedError, MemoryError) as e:
                raise kt.errors.FailedTrialError(f"out of memory: {type(e).__name__}: {e}") from e
        except Exception as e:
            self._trial_error = _reason(e)
            self._log(trial.trial_id, traceback.format_exc())
            raise

    def on_trial_end(self, trial):
        super().on_trial_end(trial)  # the oracle records the trial (and its score)
        seconds = time.monotonic() - getattr(self, "_trial_started", time.monotonic())
        ended = self.oracle.get_trial(trial.trial_id)
        total = self.oracle.max_trials
        best = [t for t in self.oracle.get_best_trials(1) if t.status == "COMPLETED"]
        best = f"best so far {best[0].score:.4f} (trial {best[0].trial_id})" if best else "no trial completed yet"
        if ended.status == "COMPLETED":
            what = f"{self.objective_label}={ended.score:.4f}"
        else:
            lines = (ended.message or "").strip().splitlines()
            what = self._trial_error or (lines[-1] if lines else "no reason recorded")
            what = f"{what} (traceback in {os.path.join(self.get_trial_dir(trial.trial_id), TRIAL_LOG)})"
        number = f" ({int(trial.trial_id) + 1}/{total})" if total and str(trial.trial_id).isdigit() else ""
        line = f"[kgooglenet.tune] trial {trial.trial_id}{number} {ended.status} in {seconds:.0f} s: {what}; {best}"
        self._log(trial.trial_id, line)
        print(line, flush=True)
        if self.max_consecutive_failures and ended.status == "FAILED":
            run = 0
            for trial_id in self.oracle.end_order:
                run = run + 1 if self.oracle.trials[trial_id].status == "FAILED" else 0
            if run >= self.max_consecutive_failures:
                raise _ConsecutiveFailures(
                    f"the search stopped: {run} trials in a row failed (max_consecutive_failed_trials="
                    f"{self.max_consecutive_failures}); the last one: {self._trial_error or ended.message}")


class BayesianTuner(_GoogLeNetTunerMixin, kt.BayesianOptimization):
    """kt.BayesianOptimization with kgooglenet's trial records and failure handling."""


class HyperbandTuner(_GoogLeNetTunerMixin, kt.Hyperband):
    """kt.Hyperband with kgooglenet's trial records and failure handling."""


class RandomTuner(_GoogLeNetTunerMixin, kt.RandomSearch):
    """kt.RandomSearch with kgooglenet's trial records and failure handling."""


def _space_config(hp: kt.HyperParameters) -> list:
    return sorted((json.dumps(p, sort_keys=True) for p in hp.get_config()["space"]))


def oracle_seed(seed: int | None) -> int | None:
    """The seed handed to KerasTuner for `TuneConfig.seed`."""
    # KerasTuner's oracles do `seed or random.randint(1, 10000)`, so seed 0 would mean "no seed": shift by one (a
    # one-to-one map, so every seed, 0 included, gives its own reproducible trials; None stays unseeded).
    return None if seed is None else seed + 1


def make_tuner(config: TuneConfig, hypermodel: GoogLeNetHyperModel | None = None):
    """The KerasTuner tuner of `config` (resuming the search in config.project_dir unless config.overwrite).

    The space is fitted to the data first: batch sizes above the training split are dropped (one line says which).
    Raises ValueError when resuming a search whose stored space differs from `config.space`, or when no batch size
    fits the training split.
    """
    space = config.space.relevant_to(config.train)
    if tuner_role() != "worker":  # said once, where the search space lives
        for name, why in config.space.irrelevant_to(config.train).items():
            print(f"[kgooglenet.tune] {name}: not tuned, it cannot matter here ({why})", flush=True)
    objective = config.objective_key
    hypermodel = hypermodel or GoogLeNetHyperModel(
        config.train, space, config.objective, config.epochs, config.early_stopping_patience, verbose=config.verbose,
        run_eagerly=config.run_eagerly, steps_per_epoch=config.trial_steps_per_epoch,
        validation_steps=config.trial_validation_steps)
    _, train_size, _ = hypermodel._data_facts()
    space, dropped = hypermodel.space.fit_to_data(train_size, config.train.data.batch_size)
    if dropped:
        kept = space["batch_size"]
        left = (f"; every value was: batch_size fixed at the base config's {kept.values[0]}"
                if kept.kind == "fixed" else "")
        print(f"[kgooglenet.tune] batch_size: dropped {', '.join(map(str, dropped))} from the space (larger than the "
              f"{train_size} training examples){left}", flush=True)
    hypermodel.space = space
    role = tuner_role()
    common = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(objective, direction=config.direction),
        seed=oracle_seed(config.seed),
        max_retries_per_trial=config.max_retries_per_trial,
        # a local search checks this itself, after the failed trial is saved (KerasTuner raises before saving it)
        max_consecutive_failed_trials=(
            config.max_consecutive_failed_trials if role != "local" else config.max_trials + 1),
        directory=str(config.directory),
        project_name=config.project_name,
        overwrite=config.overwrite and role != "worker",  # only the chief may delete the shared directory
        executions_per_trial=config.executions_per_trial,
        distribution_strategy=(
            tf.distribute.MirroredStrategy(config.devices) if config.strategy == "mirrored" else None),
    )
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    resuming = not config.overwrite and tf.io.gfile.exists(os.path.join(config.project_dir, f"{tuner_id}.json"))
    if config.tuner == "bayesian":
        tuner = BayesianTuner(max_trials=config.max_trials, num_initial_points=config.num_initial_points, **common)
    elif config.tuner == "random":
        tuner = RandomTuner(max_trials=config.max_trials, **common)
    else:
        tuner = HyperbandTuner(max_epochs=config.epochs, factor=config.hyperband_factor,
                               hyperband_iterations=config.hyperband_iterations, **common)
        if role != "worker":
            tuner.oracle.max_trials = config.max_trials
    if role != "worker":  # the oracle lives here: its state files are written atomically from now on
        oracle_class = type(tuner.oracle)
        mixins = (_StoppingChiefOracle, _AtomicStateOracle) if role == "chief" else (_AtomicStateOracle,)
        tuner.oracle.__class__ = type(oracle_class.__name__, (*mixins, oracle_class), {})
    tuner.objective_label = config.objective
    tuner.max_consecutive_failures = config.max_consecutive_failed_trials if role == "local" else None
    if resuming and role != "worker":
        declared = kt.HyperParameters()
        space.declare(declared)
        stored = tuner.oracle.get_space()
        if _space_config(stored) != _space_config(declared):
            raise ValueError(
                f"TuneConfig.space differs from the space of the search stored in {config.project_dir!r} "
                f"(stored: {sorted(p.name for p in stored.space)}; requested: {list(space.names)} or other ranges). "
                "Pass overwrite=True (--overwrite) to start over, or use another project_name."
            )
    return tuner


@contextlib.contextmanager
def _tracebacks_to_trial_logs():
    """KerasTuner prints each failed trial's traceback while its module flag `keras_tuner.src.config.DEBUG` is set
    (the default, with no public switch); ours go to the trial logs, so the flag is off during our search only."""
    from keras_tuner.src import config as kt_config

    previous, kt_config.DEBUG = kt_config.DEBUG, False
    try:
        yield
    finally:
        kt_config.DEBUG = previous


class SearchFailed(RuntimeError):
    """No trial of a search completed: there is no best config (the message says why and what to do)."""


def search(config: TuneConfig, callbacks: list | None = None) -> TuneResult:
    """Runs (or resumes) the search of `config` and writes the reports (on the chief or a local search).

    Prints one line per trial (its status, objective or failure reason, and the best so far); a failed trial's
    traceback goes to its trial_<id>/trial.log. A local search stops after `max_consecutive_failed_trials` failures
    in a row and still writes the reports.

    Args:
        config: the TuneConfig.
        callbacks: extra Keras callbacks for every trial (deep-copied per trial by KerasTuner).

    Returns:
        A `TuneResult` (`stopped` says why a search ended early); a distributed worker returns one with role
        "worker" and no trials once the chief has no more trials to give.

    Raises:
        SearchFailed: no trial completed (every reason is in results.csv, every traceback in the trial logs).
    """
    role = tuner_role()
    tuner = make_tuner(config)
    remaining = tuner.remaining_trials if role != "worker" else None
    if remaining is not None and remaining <= 0:
        print(f"[kgooglenet.tune] {config.project_dir}: max_trials={config.max_trials} already reached", flush=True)
    stopped = None
    try:
        with _tracebacks_to_trial_logs():
            tuner.search(callbacks=list(callbacks or []), verbose=config.verbose)
    except _ConsecutiveFailures as e:
        stopped = str(e)
        print(f"[kgooglenet.tune] {stopped}", flush=True)
    except RuntimeError:  # KerasTuner's max_consecutive_failed_trials check; keep the reports of what ran
        if role != "worker":
            write_reports(config, role)
        raise
    if role == "chief" and tuner.oracle.stop_reason:
        stopped = tuner.oracle.stop_reason
        print(f"[kgooglenet.tune] {stopped}", flush=True)
    if role == "worker":
        return TuneResult(role=role, project_dir=config.project_dir, objective=config.objective)
    result = write_reports(config, role)
    result.stopped = stopped
    done = sum(t["status"] == "COMPLETED" for t in result.trials)
    if result.best_config is None:
        reasons = [t["message"].strip().splitlines()[-1] for t in result.trials if (t["message"] or "").strip()]
        raise SearchFailed(
            f"no trial of the search in {config.project_dir} completed ({len(result.trials)} failed), so there is no "
            f"best config. Last reason: {reasons[-1] if reasons else 'unknown'}. Each trial's reason is in "
            f"{result.table_path} and its traceback in trial_<id>/{TRIAL_LOG}; fix the cause and rerun with "
            "--overwrite (overwrite=True)."
        )
    print(f"[kgooglenet.tune] {len(result.trials)} trials ({done} completed); best {result.objective}="
          f"{result.best_value:.4f} (trial {result.best_trial_id}); reports in {config.project_dir}", flush=True)
    return result
