"""Command-line flags shared by the training recipes: a few TrainConfig fields as flags over a base config.

Example:
```python
parser = argparse.ArgumentParser()
add_train_flags(parser)
args = parser.parse_args(["--epochs", "3", "--precision", "mixed_bfloat16"])
config = apply_flags(TrainConfig(), args)
```
"""

from __future__ import annotations

import argparse
import dataclasses

from kgooglenet.train.config import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, TrainConfig

# flag dest -> TrainConfig field ("data." prefix: a DataConfig field)
FLAG_FIELDS = {
    "out_dir": "out_dir",
    "epochs": "epochs",
    "batch_size": "data.batch_size",
    "image_size": "data.image_size",
    "data_seed": "data.seed",
    "variant": "variant",
    "width": "width",
    "num_classes": "num_classes",
    "weights": "weights",
    "optimizer": "optimizer",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "label_smoothing": "label_smoothing",
    "schedule": "schedule",
    "warmup_epochs": "warmup_epochs",
    "precision": "precision",
    "strategy": "strategy",
    "steps_per_epoch": "steps_per_epoch",
    "validation_steps": "validation_steps",
    "early_stopping_patience": "early_stopping_patience",
    "fgsm_epsilon": "fgsm_epsilon",
    "seed": "seed",
    "verbose": "verbose",
}


def add_train_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--config FILE` and the common TrainConfig flags (all default to "keep the config's value")."""
    p = parser
    p.add_argument("--config", help="TrainConfig JSON file (TrainConfig.to_json, e.g. a tuner's best_config.json)")
    p.add_argument("--out-dir", help="run directory (resumed when it holds an interrupted run)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--image-size", type=int)
    p.add_argument("--data-seed", type=int, help="seed of the data order and augmentation")
    p.add_argument("--variant", choices=("paper", "bn", "cifar"))
    p.add_argument("--width", type=float, help="channel multiplier")
    p.add_argument("--num-classes", type=int, help="classes of the classifiers (default: the dataset's)")
    p.add_argument("--weights", help="initial weights: .weights.h5 path or imagenet-caffe / imagenet-torchvision")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--validation-steps", type=int)
    p.add_argument("--early-stopping-patience", type=int)
    p.add_argument("--adversarial", action="store_true", help="mix FGSM examples into each batch")
    p.add_argument("--fgsm-epsilon", type=float, help="FGSM epsilon in pixels of [0, 255]")
    p.add_argument("--no-aux", action="store_true", help="train without the aux heads")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted run")
    p.add_argument("--seed", type=int)
    p.add_argument("--verbose", type=int, choices=(0, 1, 2))
    return p


def apply_flags(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """`config` (or the `--config` file when given) with every flag that was set applied."""
    if getattr(args, "config", None):
        config = TrainConfig.from_json(args.config)
    top, data = {}, {}
    for dest, field in FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if field.startswith("data."):
            data[field[5:]] = value
        else:
            top[field] = value
    if getattr(args, "adversarial", False):
        top["adversarial"] = True
    if getattr(args, "no_aux", False):
        top["aux_heads"] = False
    if getattr(args, "fresh", False):
        top["resume"] = False
    if data:
        top["data"] = dataclasses.replace(config.data, **data)
    return dataclasses.replace(config, **top)


def print_result(result) -> None:
    """Where everything of a finished run is."""
    best = f"{result.best_metric:.4f}" if result.best_metric is not None else "n/a"
    print(f"done: {result.epochs_run} epochs in {result.seconds:.0f} s; best {result.monitor} = {best}")
    print(f"  run directory   {result.out_dir}")
    print(f"  best weights    {result.best_checkpoint}")
    print(f"  history         {result.history_csv}")
    print(f"  log             {result.log_file}")
    if result.log_dir:
        print(f"  TensorBoard     tensorboard --logdir {result.log_dir}")
    for name, path in sorted(result.plots.items()):
        print(f"  plot {name:<14}{path}")
