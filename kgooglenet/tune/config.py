"""`TuneConfig`: one hyperparameter search (base TrainConfig, space, tuner, budget, directory, failure policy)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kgooglenet.train import TrainConfig
from kgooglenet.train.callbacks import monitor_mode, resolve_monitor
from kgooglenet.tune.space import DEFAULT_SPACE, SearchSpace

TUNERS = ("bayesian", "hyperband", "random")
WORKER_STRATEGIES = ("default", "mirrored")


@dataclass
class TuneConfig:
    """One hyperparameter search. The base `train` config is what every trial starts from; its `epochs`,
    `steps_per_epoch` and `validation_steps` are the budget of each trial unless `trial_epochs` says otherwise.

    Example:
    >>> config = TuneConfig(train=TrainConfig(width=0.25, epochs=3), max_trials=10, directory="tuning")
    >>> config.project_dir, config.objective, config.objective_key
    ('tuning/googlenet', 'val_accuracy', 'val_main_accuracy')
    """

    train: TrainConfig = field(default_factory=TrainConfig)  # the base config; the best config is it + the best values
    space: SearchSpace = DEFAULT_SPACE  # what is tuned (hyperparameters irrelevant to `train` are skipped)
    tuner: str = "bayesian"  # "bayesian" (Gaussian process), "hyperband" or "random"
    max_trials: int = 20  # trials in total, counting those of earlier runs of a resumed search (caps Hyperband too)
    objective: str = "val_accuracy"  # metric maximized (minimized if a loss), named as in TrainConfig.monitor: "val_accuracy" is the main head's val top-1 (Keras' "val_main_accuracy" with aux heads, mapped internally); the reports use this name
    directory: str = "tuning"  # search directory (shared by all processes of a distributed search)
    project_name: str = "googlenet"  # subdirectory of `directory` holding the trials and the reports
    overwrite: bool = False  # start over, deleting an existing search of the same project; False resumes it
    trial_epochs: int | None = None  # epochs per trial; None = train.epochs (the best config keeps train.epochs)
    trial_steps_per_epoch: int | None = None  # training steps per trial epoch; None = train.steps_per_epoch
    trial_validation_steps: int | None = None  # validation steps per trial epoch; None = train.validation_steps
    early_stopping_patience: int | None = 3  # stop a trial after this many epochs without improvement; None = never
    seed: int | None = 0  # seed of the oracle (which values are tried; 0 is a seed like any other); None = random
    num_initial_points: int | None = None  # bayesian: random trials before the Gaussian process; None = 3 x dims
    hyperband_factor: int = 3  # hyperband: reduction factor between rounds (max epochs = trial_epochs)
    hyperband_iterations: int = 1  # hyperband: number of full Hyperband sweeps
    max_retries_per_trial: int = 0  # reruns of a trial that crashed (INVALID) before it is recorded as FAILED
    max_consecutive_failed_trials: int = 3  # stop the search after this many FAILED trials in a row
    executions_per_trial: int = 1  # models trained per trial (the objective is their average)
    strategy: str = "default"  # per worker: "default" (one device) or "mirrored" (tf.distribute.MirroredStrategy)
    devices: list[str] | None = None  # "mirrored": devices (None = all local GPUs, or the CPU)
    run_eagerly: bool = False  # train trials eagerly (debugging; also faster than tracing for trials of a few steps)
    verbose: int = 0  # 0 quiet; 1 KerasTuner's trial tables and Keras progress bars; 2 one line per epoch

    def __post_init__(self):
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"TuneConfig.train must be a TrainConfig, received {type(self.train).__name__}")
        if not isinstance(self.space, SearchSpace):
            raise ValueError(f"TuneConfig.space must be a SearchSpace, received {type(self.space).__name__}")
        if not isinstance(self.objective, str) or not self.objective:
            raise ValueError(f"TuneConfig.objective must be a metric name such as 'val_accuracy', received "
                             f"{self.objective!r}")
        if self.tuner not in TUNERS:
            raise ValueError(f"TuneConfig.tuner must be one of {TUNERS}, received {self.tuner!r}")
        if self.strategy not in WORKER_STRATEGIES:
            raise ValueError(f"TuneConfig.strategy must be one of {WORKER_STRATEGIES}, received {self.strategy!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0):
            raise ValueError(f"TuneConfig.seed must be None or an integer >= 0, received {self.seed!r}")
        for name in ("max_trials", "executions_per_trial", "max_consecutive_failed_trials"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TuneConfig.{name} must be a positive integer, received {getattr(self, name)!r}")
        for name in ("trial_epochs", "trial_steps_per_epoch", "trial_validation_steps", "early_stopping_patience",
                     "num_initial_points"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"TuneConfig.{name} must be None or a positive integer, received {value!r}")

    @property
    def project_dir(self) -> str:
        return os.path.join(str(self.directory), self.project_name)

    @property
    def epochs(self) -> int:
        return self.trial_epochs or self.train.epochs

    @property
    def objective_key(self) -> str:
        """The Keras log key `objective` maps to for this model (what KerasTuner records; see `objective_name`)."""
        return objective_name(self.train, self.objective)

    @property
    def direction(self) -> str:
        """"max" for accuracies, "min" for losses."""
        return monitor_mode(self.objective_key)


def objective_name(config: TrainConfig, metric: str = "val_accuracy") -> str:
    """The Keras log key of `metric` for a model compiled by `build_model_and_compile(config)`: main-head metrics
    get the "main_" prefix when the model has aux heads ("val_accuracy" -> "val_main_accuracy"), as in training."""
    return resolve_monitor(metric, config.aux_heads, True)
