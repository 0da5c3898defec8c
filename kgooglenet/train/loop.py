"""`train(config)`: data, model, optimizer, callbacks and `model.fit`, with automatic resume."""

from __future__ import annotations

import dataclasses

from kgooglenet.train.config import TrainConfig


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    history: dict  # metric name -> list of per-epoch values (all epochs of the run, including resumed ones)
    model: object  # the trained keras.Model (aux heads included when config.aux_heads; see kgooglenet.inference_model)
    best_metric: float | None  # best value of config.monitor over the run (None when it was never logged)
    best_checkpoint: str | None  # out_dir/checkpoints/best.weights.h5 (weights of the best epoch)
    last_checkpoint: str | None  # out_dir/checkpoints/last.weights.h5 (weights after the final epoch)
    out_dir: str  # the run directory
    log_dir: str | None  # TensorBoard logs
    history_csv: str  # out_dir/history.csv
    log_file: str  # out_dir/train.log
    plots: dict  # plot name ("loss", "accuracy", "learning_rate") -> PNG path
    config_path: str  # out_dir/config.json (the exact config of the run)
    num_classes: int  # classes of the classifiers
    class_names: list  # class names by id
    epochs_run: int  # epochs completed in total (a resumed run counts its earlier epochs)


def build_model_and_compile(config: TrainConfig, num_classes: int, steps_per_epoch: int | None = None):
    """Build GoogLeNet from `config` (fine-tuning weights, freezing, BN freezing applied) and compile it with the
    configured optimizer, schedule, precision, aux-loss weights and metrics. Call it inside `strategy.scope()` for a
    distributed run. `steps_per_epoch` sizes the schedules ("step", "poly", "cosine", warmup); None assumes 100.

    Returns:
        The compiled keras.Model.
    """
    raise NotImplementedError


def train(config: TrainConfig) -> TrainResult:
    """Run the training described by `config` and return a `TrainResult`."""
    raise NotImplementedError
