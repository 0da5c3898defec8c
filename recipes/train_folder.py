"""Train GoogLeNet from scratch on a folder of class subfolders (Caltech-256 style), via the TFRecord preparer.

Step 1 (once, resumable) prepares SRC_DIR into sharded TFRecords with a stratified, seeded train/val split, every
image upright (EXIF), converted to RGB and resized: exactly `python -m kgooglenet prepare SRC_DIR PREPARED`, with
the same options as `--prepare-*` flags (`--prepare-size`, `--prepare-val-split`, `--prepare-center-crop`, ...).
A folder already prepared (by the CLI or an earlier run) is reused as it is: options left unset take its values,
and an option set to another value stops with both values named. Step 2 trains the "bn" variant with
Inception-style augmentation on the prepared shards.

Run:
    python -m kgooglenet prepare 256_ObjectCategories/ prepared/caltech256       # optional: step 1 alone
    python recipes/train_folder.py 256_ObjectCategories/ --prepared prepared/caltech256 --out-dir runs/caltech256 \
        --epochs 90 --batch-size 64 --precision auto
    python recipes/train_folder.py images/ --prepared prepared/small --image-size 96 --width 0.25 --epochs 10

Expected: Caltech-256 (30,607 images, 257 classes) from scratch with the "bn" variant at 224 reaches roughly 55-65%
top-1 on its 20% validation split after 90 epochs on one GPU (a multi-day run on this CPU, not measured here); the
second command is a smoke test of any small folder. Rerunning the same command resumes both steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from kgooglenet.data import AugmentConfig, DataConfig
from kgooglenet.data.prepare import (PreparationMismatch, add_prepare_flags, prepare_folder, prepare_kwargs,
                                     prepared_options)
from kgooglenet.train import TrainConfig, train
from kgooglenet.train.cli import add_train_flags, apply_flags, print_result

PREFIX = "prepare-"  # the preparer's flags here are --prepare-size, --prepare-val-split, ...


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src_dir", help="folder with one subfolder of images per class")
    p.add_argument("--prepared", required=True, help="output folder of the TFRecord shards (resumable, reused)")
    add_prepare_flags(p, PREFIX)
    add_train_flags(p)
    return p.parse_args(argv)


def default_prepare_size(image_size: int) -> int:
    """Shorter side stored for a new preparation: 256 for 224 models, else 8/7 of the input (never below it)."""
    return 256 if image_size >= 224 else max(image_size, int(round(image_size * 8 / 7)))


def prepare(args):
    """Step 1: `prepare_folder` with the --prepare-* flags; an existing preparation is reused as it is."""
    kwargs = prepare_kwargs(args, PREFIX)
    if kwargs["size"] is None and (kwargs["overwrite"] or prepared_options(args.prepared) is None):
        kwargs["size"] = default_prepare_size(args.image_size or 224)
    try:
        report = prepare_folder(args.src_dir, args.prepared, progress=bool(args.verbose is None or args.verbose),
                                **kwargs)
    except PreparationMismatch as e:
        raise e.with_flag_prefix(f"--{PREFIX}") from None
    print(f"prepared {args.prepared}: {len(report.class_names)} classes, {report.train_count} train / "
          f"{report.val_count} val images, {len(report.skipped)} skipped (see skipped.csv); "
          f"{report.shards_written} shards written, {report.shards_skipped} reused")
    return report


def folder_config(prepared: str, image_size: int = 224) -> TrainConfig:
    """From-scratch defaults for a prepared folder: "bn" variant, Inception crops + flips, SGD Nesterov, cosine."""
    return TrainConfig(
        data=DataConfig(source="tfrecord", path=prepared, image_size=image_size, batch_size=64,
                        augment=AugmentConfig.inception(scale=(0.25, 1.0)) if image_size > 64 else AugmentConfig.cifar()),
        variant="bn", optimizer="sgd", learning_rate=0.1, nesterov=True, weight_decay=1e-4, label_smoothing=0.1,
        schedule="cosine", warmup_epochs=2, epochs=90, out_dir="runs/folder",
    )


def main(argv=None):
    args = parse_args(argv)
    prepare(args)
    config = apply_flags(folder_config(args.prepared, args.image_size or 224), args)
    if config.data.source != "tfrecord" or config.data.path != args.prepared:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source="tfrecord",
                                                                      path=args.prepared))
    result = train(config)
    print_result(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
