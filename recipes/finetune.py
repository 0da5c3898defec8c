"""Fine-tune GoogLeNet from converted ImageNet weights on your own classes.

Loads the weights (a named set installed with `python -m kgooglenet convert ... --install`, or any .weights.h5),
replaces all three classifiers (main + both aux heads) with fresh ones for your class count, optionally freezes
everything up to a block, trains the new heads with a Caffe-style learning-rate multiplier (default 10x) and the
rest at the base rate, and can keep BatchNorm statistics frozen.

Data: `--prepared DIR` (TFRecords from `python -m kgooglenet prepare SRC DIR`), `--tfds NAME --data-dir DIR`
(a locally prepared TFDS dataset), or nothing: the embedded digits (a demo).

Run:
    python recipes/finetune.py --weights imagenet-torchvision --prepared prepared/caltech256 --freeze-until inception_4e \
        --epochs 10 --out-dir runs/ft_caltech256 --precision auto
    python recipes/finetune.py --weights imagenet-caffe --variant paper --tfds oxford_flowers102 --data-dir ~/tfds
    python recipes/finetune.py ... --augment strong   # small datasets: RandAugment + random erasing (AugmentConfig.strong)

Expected: torchvision's ImageNet GoogLeNet fine-tuned on Caltech-256 (heads 10x, layers up to inception_4e frozen,
SGD 0.01, 10 epochs at 224) reaches roughly 80% top-1 on a 20% validation split; training only the heads
(--freeze-until inception_5b) about 75%.
With --augment strong the digits quickstart reaches 0.983 (AugmentConfig.strong's docstring has the conditions).
"""

from __future__ import annotations

import argparse
import os
import sys

from kgooglenet.data import AugmentConfig, DataConfig
from kgooglenet.train import TrainConfig, train
from kgooglenet.train.cli import add_train_flags, apply_flags, print_result, run_main
from kgooglenet.train.finetune import CLASSIFIER_LAYERS
from kgooglenet.weights.cache import NAMED_WEIGHTS


def finetune_config(weights, variant, data: DataConfig, freeze_until=None, head_lr_mult=10.0, freeze_bn=False):
    return TrainConfig(
        data=data, variant=variant, weights=weights, aux_heads=True,
        freeze_until=freeze_until, lr_mult={name: head_lr_mult for name in CLASSIFIER_LAYERS}, freeze_bn=freeze_bn,
        optimizer="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
        schedule="step", step_decay_rate=0.1, step_decay_epochs=7, epochs=10, out_dir="runs/finetune",
    )


def data_config(args) -> DataConfig:
    size = args.image_size or (32 if not (args.prepared or args.tfds) else 224)
    augment = AugmentConfig.inception(scale=(0.35, 1.0))
    if args.augment == "strong":  # AugmentConfig.strong: RandAugment(2, 9) + random erasing on the crop and flip
        augment = AugmentConfig.strong(size, **({} if (args.prepared or args.tfds) else {"horizontal_flip": False}))
    if args.prepared:
        return DataConfig(source="tfrecord", path=args.prepared, image_size=size, batch_size=32, augment=augment)
    if args.tfds:
        return DataConfig(source="tfds", name=args.tfds, data_dir=os.path.expanduser(args.data_dir), image_size=size,
                          batch_size=32, augment=augment)
    return DataConfig(source="digits", image_size=size, batch_size=32,
                      augment=augment if args.augment == "strong" else "auto")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prepared", help="TFRecord folder written by python -m kgooglenet prepare")
    p.add_argument("--tfds", help="TFDS dataset name, prepared in --data-dir")
    p.add_argument("--data-dir", default="~/tensorflow_datasets")
    p.add_argument("--freeze-until", help="freeze every layer up to and including this one, e.g. inception_4e")
    p.add_argument("--head-lr-mult", type=float, default=10.0, help="lr multiplier of the three new classifiers")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics (and gamma/beta) frozen")
    p.add_argument("--augment", choices=("default", "strong"), default="default",
                   help="strong: AugmentConfig.strong (RandAugment 2 ops at 9 + random erasing 0.25; no flip on digits)")
    add_train_flags(p)
    args = p.parse_args(argv)
    weights = args.weights or "imagenet-torchvision"
    variant = args.variant or (NAMED_WEIGHTS[weights].variant if weights in NAMED_WEIGHTS else "bn")
    base = finetune_config(weights, variant, data_config(args), args.freeze_until, args.head_lr_mult, args.freeze_bn)
    config = apply_flags(base, args)
    result = train(config)
    print_result(result)
    return result


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
