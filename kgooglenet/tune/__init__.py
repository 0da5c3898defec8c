"""Hyperparameter search for GoogLeNet with KerasTuner: Bayesian by default, resumable, distributed.

The search space is declared once, in `DEFAULT_SPACE`: a table of `Hyperparameter` objects, each naming the
`kgooglenet.train.TrainConfig` field it sets. A `SearchSpace` is that table with methods to fix a value, narrow a
range, replace the choices or drop a hyperparameter. `GoogLeNetHyperModel` turns a trial's values into a TrainConfig,
builds and compiles the model with `kgooglenet.train.build_model_and_compile`, and in `fit` rebuilds the datasets with
the trial's batch size. `search(TuneConfig(...))` runs KerasTuner's BayesianOptimization (or Hyperband / RandomSearch)
and writes, in the project directory: `results.csv` (one row per trial: status, objective, hyperparameters, error),
`objective.png` (the objective per trial), `hyperparameters.png` (each hyperparameter against the objective) and
`best_config.json` (the best TrainConfig, ready for `recipes/train.py --config`; it trains into its own new run
directory `<project_dir>/best_trial_<id>`, never into the base config's out_dir). The objective keeps the name the user
gave it ("val_accuracy" is the main head's, logged by Keras as "val_main_accuracy" with aux heads). Batch sizes larger
than the training split are dropped from the space before the search. `seed` (0 included) makes the trials
reproducible. Each trial ends with one line (status, objective or the failure's reason, best so far); a failure's
traceback goes to `trial_<id>/trial.log`.

Resuming: rerunning `search` on the same `directory`/`project_name` reloads the finished trials (KerasTuner's
`overwrite=False`) and only runs the missing ones up to `max_trials`; a trial interrupted by a kill is rerun under its
own id (KerasTuner's retry queue), so no trial counts twice and no finished one is lost; the space is stored with the
search, so a changed space needs `overwrite=True` or a new `project_name` (a mismatch raises ValueError).

Failures: a trial whose loss becomes NaN/inf (stopped by `TerminateOnNaN`) or that runs out of memory raises
`keras_tuner.errors.FailedTrialError`: it is recorded as FAILED in the table and the search goes on (up to
`max_consecutive_failed_trials` in a row). Any other exception marks the trial INVALID; KerasTuner retries it
`max_retries_per_trial` times, then records it as FAILED. With no trial completed `search` raises `SearchFailed`
(saying why) instead of returning a result without a best config.

Distributed search uses KerasTuner's own chief/worker protocol: every process runs the same command with
`KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT` and its own `KERASTUNER_TUNER_ID` ("chief" for the process that runs
the oracle server, "tuner0", "tuner1", ... for the workers). The chief serves trials, exits when every trial is done
and then writes the reports; `directory` must be shared by all processes (NFS, or a gs:// path). Each worker can
itself train on several devices (`TuneConfig.strategy="mirrored"`). After `max_consecutive_failed_trials` failures in
a row the chief tells each worker to stop, then writes the reports and says why. The chief cannot tell a dead worker
from a slow one (KerasTuner has no heartbeat): it waits for a worker killed mid-trial, which is restarted with the
same `KERASTUNER_TUNER_ID` to rerun that trial.

Modules: `space` (the search space and its mapping onto TrainConfig), `config` (TuneConfig), `tuners` (HyperModel,
tuners, `make_tuner`, `search`), `reports` (results.csv, objective.png, best_config.json).

Example:
```python
from kgooglenet.train import TrainConfig
from kgooglenet.tune import DEFAULT_SPACE, TuneConfig, search

space = DEFAULT_SPACE.fix("optimizer", "sgd_nesterov").narrow("learning_rate", 1e-3, 1e-1).drop("label_smoothing")
result = search(TuneConfig(train=TrainConfig(width=0.25, epochs=5), space=space, max_trials=20, directory="tuning"))
print(result.best_value, result.best_config_path)    # then: python recipes/train.py --config <best_config_path>
```
"""

from kgooglenet.tune.config import TUNERS, WORKER_STRATEGIES, TuneConfig, objective_name
from kgooglenet.tune.reports import (
    TuneResult,
    best_out_dir,
    best_trial,
    load_trials,
    plot_hyperparameters,
    plot_objective,
    write_reports,
    write_table,
)
from kgooglenet.tune.tuners import (
    BayesianTuner,
    GoogLeNetHyperModel,
    HyperbandTuner,
    RandomTuner,
    SearchFailed,
    make_tuner,
    search,
    tuner_role,
)
from kgooglenet.tune.space import (
    DEFAULT_SPACE,
    Hyperparameter,
    SearchSpace,
    config_from_values,
    parse_assignment,
    space_overrides,
)

__all__ = [
    "DEFAULT_SPACE",
    "BayesianTuner",
    "GoogLeNetHyperModel",
    "Hyperparameter",
    "HyperbandTuner",
    "RandomTuner",
    "SearchFailed",
    "SearchSpace",
    "TuneConfig",
    "TUNERS",
    "TuneResult",
    "WORKER_STRATEGIES",
    "best_out_dir",
    "best_trial",
    "config_from_values",
    "load_trials",
    "make_tuner",
    "objective_name",
    "parse_assignment",
    "plot_hyperparameters",
    "plot_objective",
    "search",
    "space_overrides",
    "tuner_role",
    "write_reports",
    "write_table",
]
