"""Hyperparameter search for GoogLeNet with KerasTuner (Bayesian optimization by default).

Tunes learning rate, batch size, weight decay, dropout, aux dropout, optimizer, aux loss weight, label smoothing, ema
(an EMA of the weights or not) and (when fine-tuning from weights) how many blocks to train, starting from a TrainConfig
(`--config`, as written by `recipes/train.py`; default: the digits quickstart). Rerunning the same command resumes the
search (finished trials are kept, a trial killed midway is rerun under its own id; `--max-trials` may grow);
`--overwrite` starts over. Batch sizes larger than the training split are dropped from the space. One line per trial
says how it ended (a failure's traceback is in DIRECTORY/PROJECT/trial_<id>/trial.log). Writes to DIRECTORY/PROJECT/:
results.csv (a row per trial with its hyperparameters), objective.png, hyperparameters.png (each hyperparameter against
the objective) and best_config.json, which `python recipes/train.py --config DIRECTORY/PROJECT/best_config.json` trains
into its own new run directory, DIRECTORY/PROJECT/best_trial_<id> (never the base config's out_dir). `--seed` (default
0) makes the trials reproducible.

Run (local; digits, 3 epochs per trial: 2-3 minutes each on 2 idle CPU cores, 3.5-6.5 shared with other jobs):
    python recipes/tune.py --width 0.25 --trial-epochs 3 --max-trials 4 --directory tuning
    python recipes/tune.py --width 0.25 --trial-epochs 3 --max-trials 10 --directory tuning   # 6 more trials
    python recipes/tune.py --config base.json --tuner hyperband --fix optimizer=sgd_nesterov \
        --range learning_rate=1e-3,0.1 --choices batch_size=64,128 --drop label_smoothing --overwrite
Expected (first command, default --seed 0, measured 2026-12-02 on a 2-core AVX2 Zen 3 in 652 s, trials 124-189 s):
"4 trials (4 completed); best val_accuracy=0.9694 (trial 1)" (AdamW, lr 9.7e-3, batch 64, no EMA; the other trials
0.10-0.24), one line per trial before it, then the paths of the reports and "train it: python recipes/train.py
--config tuning/googlenet/best_config.json (trains into tuning/googlenet/best_trial_1)".

Distributed (KerasTuner's chief/worker protocol; same command everywhere, DIRECTORY on shared storage):
    export KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000
    KERASTUNER_TUNER_ID=chief  python recipes/tune.py --config base.json --directory /shared/tuning &  # oracle server
    KERASTUNER_TUNER_ID=tuner0 python recipes/tune.py --config base.json --directory /shared/tuning &  # worker 0
    KERASTUNER_TUNER_ID=tuner1 python recipes/tune.py --config base.json --directory /shared/tuning --strategy mirrored
The chief hands out trials, exits when all are done and writes the reports; add `--strategy mirrored` to a worker to
train each of its trials on all of its GPUs (tf.distribute.MirroredStrategy).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from kgooglenet.tune import DEFAULT_SPACE, TUNERS, WORKER_STRATEGIES, SearchFailed, TuneConfig, search, space_overrides


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="base TrainConfig JSON (default: TrainConfig(), the digits quickstart)")
    p.add_argument("--width", type=float, help="override the base config's width multiplier")
    p.add_argument("--tuner", choices=TUNERS, default="bayesian")
    p.add_argument("--max-trials", type=int, default=20)
    p.add_argument("--objective", default="val_accuracy",
                   help="metric to maximize, or minimize for a loss (default: main-head val top-1)")
    p.add_argument("--directory", default="tuning", help="search directory (resumed when it exists)")
    p.add_argument("--project-name", default="googlenet")
    p.add_argument("--overwrite", action="store_true", help="delete an existing search of this project first")
    p.add_argument("--trial-epochs", type=int, help="epochs per trial (default: the base config's epochs)")
    p.add_argument("--steps-per-epoch", type=int, help="cap the training steps per epoch of each trial")
    p.add_argument("--validation-steps", type=int, help="cap the validation steps of each trial")
    p.add_argument("--patience", type=int, default=3, help="early stopping patience per trial (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the oracle: the same seed gives the same trials")
    p.add_argument("--num-initial-points", type=int, help="bayesian: random trials before the Gaussian process")
    p.add_argument("--max-consecutive-failed-trials", type=int, default=3)
    p.add_argument("--max-retries-per-trial", type=int, default=0)
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE", help="fix a hyperparameter")
    p.add_argument("--range", action="append", default=[], metavar="NAME=LOW,HIGH", help="narrow a range")
    p.add_argument("--choices", action="append", default=[], metavar="NAME=A,B", help="tune among these values")
    p.add_argument("--drop", action="append", default=[], metavar="NAME", help="do not tune (use the base value)")
    p.add_argument("--strategy", choices=WORKER_STRATEGIES, default="default", help="devices of each worker")
    p.add_argument("--devices", nargs="*", help="--strategy mirrored: device names (default: all GPUs)")
    p.add_argument("--run-eagerly", action="store_true", help="no tf.function (debugging; tiny trials)")
    p.add_argument("--show-space", action="store_true", help="print the search space and exit")
    p.add_argument("--verbose", type=int, default=0, help="0 quiet, 1 KerasTuner tables + progress bars")
    return p.parse_args(argv)


def make_config(args) -> TuneConfig:
    from kgooglenet.train import TrainConfig

    train = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    if args.width is not None:
        train = dataclasses.replace(train, width=args.width)
    space = DEFAULT_SPACE.with_overrides(**space_overrides(args.fix, args.range, args.choices, args.drop))
    return TuneConfig(
        train=train,
        space=space,
        tuner=args.tuner,
        max_trials=args.max_trials,
        objective=args.objective,
        directory=args.directory,
        project_name=args.project_name,
        overwrite=args.overwrite,
        trial_epochs=args.trial_epochs,
        trial_steps_per_epoch=args.steps_per_epoch,
        trial_validation_steps=args.validation_steps,
        early_stopping_patience=args.patience or None,
        seed=args.seed,
        num_initial_points=args.num_initial_points,
        max_retries_per_trial=args.max_retries_per_trial,
        max_consecutive_failed_trials=args.max_consecutive_failed_trials,
        strategy=args.strategy,
        devices=args.devices,
        run_eagerly=args.run_eagerly,
        verbose=args.verbose,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = make_config(args)
    except ValueError as e:  # a bad --fix/--range/--choices/--drop value or option: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.show_space:
        print(config.space.relevant_to(config.train).describe())
        return 0
    try:
        result = search(config)
    except (SearchFailed, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if result.role != "worker":
        print(f"results: {result.table_path}\nplots: {result.plot_path} {result.hyperparameters_plot_path}\n"
              f"best config: {result.best_config_path}")
        print(f"train it: python recipes/train.py --config {result.best_config_path}  "
              f"(trains into {result.best_config.out_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
