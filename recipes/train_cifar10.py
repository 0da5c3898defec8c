"""Train GoogLeNet (the 32x32 "cifar" variant) from scratch on CIFAR-10 from a local TFDS data_dir.

Nothing is downloaded: prepare CIFAR-10 once on a machine with network access (`tfds build cifar10 --data_dir DIR`,
or `python -c "import tensorflow_datasets as tfds; tfds.builder('cifar10', data_dir='DIR').download_and_prepare()"`)
and copy DIR here. A missing dataset stops with an error that says exactly this.

Run:
    python recipes/train_cifar10.py --data-dir ~/tensorflow_datasets --out-dir runs/cifar10
    python recipes/train_cifar10.py --data-dir ~/tensorflow_datasets --epochs 30 --precision auto
    python recipes/train_cifar10.py --data-dir ~/tensorflow_datasets --strategy mirrored --batch-size 256   # all GPUs

Expected: the full-width model with CIFAR augmentation (pad 4 + random crop + flip), SGD Nesterov 0.1, weight decay
5e-4, cosine over 200 epochs reaches about 95% test accuracy (the popular PyTorch CIFAR GoogLeNet reports 95.0%);
30 epochs give about 92-93%. One epoch takes about 1 minute on a current GPU and far too long on this 2-core CPU
(use --width 0.25 there: about 85% after 30 epochs).
"""

from __future__ import annotations

import argparse
import os
import sys

from kgooglenet.data import AugmentConfig, DataConfig
from kgooglenet.train import TrainConfig, train
from kgooglenet.train.cli import add_train_flags, apply_flags, print_result, run_main


def cifar10_config(data_dir: str) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(source="tfds", name="cifar10", data_dir=data_dir, image_size=32, batch_size=128,
                        val_split_name="test", augment=AugmentConfig.cifar(32)),
        variant="cifar", width=1.0, aux_heads=True,
        optimizer="sgd", learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", warmup_epochs=1, epochs=200, out_dir="runs/cifar10",
    )


def check_prepared(data_dir: str) -> None:
    """FileNotFoundError naming data_dir when cifar10 is not prepared there (TFDS would otherwise try to download)."""
    root = os.path.join(os.path.expanduser(data_dir), "cifar10")
    versions = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))] if os.path.isdir(root) else []
    if not any(os.path.isfile(os.path.join(root, v, "dataset_info.json")) for v in versions):
        raise FileNotFoundError(
            f"--data-dir: no prepared TFDS cifar10 in {data_dir!r} (looked for {root}/<version>/dataset_info.json). "
            f"Nothing is downloaded here: on a machine with network access run `tfds build cifar10 --data_dir DIR` "
            f"and copy DIR to this machine, then pass --data-dir DIR."
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"),
                   help="TFDS data_dir holding the prepared cifar10 (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    add_train_flags(p)
    args = p.parse_args(argv)
    check_prepared(args.data_dir)
    config = apply_flags(cifar10_config(os.path.expanduser(args.data_dir)), args)
    result = train(config)
    print_result(result)
    return result


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
