"""Train GoogLeNet from a TrainConfig: a JSON file (`TrainConfig.to_json`, e.g. the tuner's best_config.json) plus a
few flags over it. Without `--config` the defaults train the "cifar" variant on the embedded digits.

Run:
    python recipes/train.py --width 0.25 --epochs 8 --precision auto --out-dir runs/digits
    python recipes/train.py --config tuning/googlenet/best_config.json --out-dir runs/best
    python recipes/train.py --write-config my.json --width 0.5 --epochs 30   # write the config, do not train

Expected (2-core CPU, first command): about 3 minutes, best val_main_accuracy about 0.98; runs/digits/ holds
history.csv, train.log, plots/*.png, TensorBoard logs/ and checkpoints/best.weights.h5. Killing the run and
starting the same command again resumes after the last completed epoch; `--fresh` starts over.

Any TrainConfig field not covered by a flag is set in the JSON file or with `--set FIELD=VALUE` (dotted for nested
fields: `--set data.augment.hue=0.1 --set clipnorm=1.0`; see kgooglenet/train/config.py for every field). A bad
value exits with status 2 and one line naming the field; so does rerunning a run directory with a config that
changes the model or the data (`--fresh` starts over, or pick another `--out-dir`). A NaN/Inf loss stops the run
with nothing of that epoch saved and exits with status 3 and one line saying what to try.
"""

from __future__ import annotations

import argparse
import sys

from kgooglenet.train import TrainConfig, train
from kgooglenet.train.cli import add_train_flags, apply_flags, print_result, run_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_train_flags(parser)
    parser.add_argument("--write-config", metavar="FILE", help="write the resulting config to FILE and exit")
    return parser.parse_args(argv)


def main(argv=None):
    """Train (or with --write-config only write the config); returns the TrainResult (None with --write-config)."""
    args = parse_args(argv)
    config = apply_flags(TrainConfig(), args)
    if args.write_config:
        config.to_json(args.write_config)
        print(f"wrote {args.write_config}; train it with: python recipes/train.py --config {args.write_config}")
        return None
    result = train(config)
    print_result(result)
    return result


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
