"""Train on several machines (or several processes) with MultiWorkerMirroredStrategy, configured by TF_CONFIG.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy, so this runs kgooglenet's tf.distribute custom loop: the same
model, losses, metrics, callbacks and run directory as `recipes/train.py`. Every worker runs the same command with
its own TF_CONFIG "task"; data are sharded per worker, gradients and BatchNorm statistics all-reduced, the chief
(worker 0 without a "chief" task) writes out_dir (on shared storage, so all workers can resume from it); the other
workers write to temporary directories that are deleted.

Run (two workers on one machine, two shells; on two machines use their host names):
    export TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]}, "task": {"type": "worker", "index": 0}}'
    python recipes/train_multiworker.py --out-dir runs/mw --width 0.25 --epochs 8
    # second shell: the same with "index": 1
Options are those of recipes/train.py (`--config FILE` included); --batch-size is the GLOBAL batch (split over all
replicas of all workers). Killing the workers and restarting them resumes from the chief's last completed epoch.

Expected: the digits quickstart on two local workers reaches the same accuracy as one process (about 0.98 after 8
epochs); both workers print the same per-epoch metrics and end with identical weights. On one CPU machine two
workers are slower than one process (they share the cores and talk over gRPC): this recipe is for several machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from kgooglenet.train import TrainConfig, train
from kgooglenet.train.cli import add_train_flags, apply_flags, print_result, run_main
from kgooglenet.train.strategy import cluster_size, tf_config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_train_flags(p)
    args = p.parse_args(argv)
    if cluster_size() < 1:
        raise ValueError(
            "TF_CONFIG is not set (or names no workers): set it on every worker, e.g. TF_CONFIG='{\"cluster\": "
            "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'"
        )
    config = dataclasses.replace(apply_flags(TrainConfig(), args), strategy="multiworker")
    task = tf_config().get("task", {})
    print(f"worker {task.get('type')}:{task.get('index')} of {cluster_size()}", flush=True)
    result = train(config)
    print_result(result)
    return result


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
