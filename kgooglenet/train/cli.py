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
import json

from kgooglenet.data.config import ConfigError
from kgooglenet.specs import VARIANT_NAMES
from kgooglenet.train.config import (
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    STRATEGIES,
    TrainConfig,
    with_overrides,
)

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
    p.add_argument("--variant", choices=VARIANT_NAMES)
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
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="any config field, dotted for nested ones (data.batch_size=64, data.augment.hue=0.1, "
                        "clipnorm=1.0); VALUE is JSON (3, 0.5, true, null, [0.5, 1.0]) or else a string")
    return p


def parse_override(text: str) -> tuple[str, object]:
    """"data.batch_size=64" -> ("data.batch_size", 64); a VALUE that is not JSON stays a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects FIELD=VALUE, received {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def apply_flags(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """`config` (or the `--config` file when given) with every flag that was set applied."""
    if getattr(args, "config", None):
        config = TrainConfig.from_json(args.config)
    overrides = {field: getattr(args, dest) for dest, field in FLAG_FIELDS.items()
                 if getattr(args, dest, None) is not None}
    if getattr(args, "adversarial", False):
        overrides["adversarial"] = True
    if getattr(args, "no_aux", False):
        overrides["aux_heads"] = False
    if getattr(args, "fresh", False):
        overrides["resume"] = False
    overrides.update(parse_override(text) for text in getattr(args, "overrides", None) or [])
    return with_overrides(config, overrides)


def print_result(result) -> None:
    """Where everything of a finished run is."""
    best = f"{result.best_metric:.4f}" if result.best_metric is not None else "n/a"
    print(f"done: {result.epochs_run} epochs in {result.seconds:.0f} s; best {result.monitor} = {best}")
    print(f"  run directory   {result.out_dir}")
    print(f"  best weights    {result.best_checkpoint}")
    if result.model_file:
        print(f"  model           {result.model_file}  (kgooglenet.load_model; export/evaluate/predict take the run dir)")
    print(f"  history         {result.history_csv}")
    print(f"  log             {result.log_file}")
    if result.log_dir:
        print(f"  TensorBoard     tensorboard --logdir {result.log_dir}")
    for name, path in sorted(result.plots.items()):
        print(f"  plot {name:<14}{path}")


def exit_code(result) -> int:
    """0, or 3 with the one-line reason printed to stderr when the run stopped on a non-finite loss."""
    if result is not None and result.stopped_on_nonfinite:
        import sys

        from kgooglenet.train.run import nonfinite_advice

        print(nonfinite_advice(result), file=sys.stderr, flush=True)
        return 3
    return 0


def run_main(main, argv) -> None:
    """`sys.exit` of a recipe's `main(argv)`: 3 after a non-finite loss (see `exit_code`), 2 with one line for a
    config error (a bad value, or a changed config in a run directory it would resume), else 0."""
    import sys

    try:
        result = main(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(exit_code(result))
