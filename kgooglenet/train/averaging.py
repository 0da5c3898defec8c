"""Checkpoint averaging: keep the weights of the last epochs, average them (timm's avg_checkpoints.py).

`TrainConfig.keep_epoch_checkpoints=N` keeps `RUN_DIR/checkpoints/epoch_NNNN.weights.h5` for the last N epochs
(`EpochWeights`, written atomically; with `TrainConfig.ema` they hold the EMA weights like the best checkpoint).
`python -m kgooglenet average-checkpoints RUN_DIR --last N` writes their mean to
`RUN_DIR/checkpoints/average_lastN.weights.h5`, loadable by the run's model (`model.load_weights(path)`);
`--model-out FILE.keras` also writes the run's model (`RUN_DIR/model.keras`) with the averaged weights as a
self-describing model file that export, evaluate and predict take.

Keras has no weight-averaging tool, so the mean is taken over the HDF5 tree of the `.weights.h5` files themselves:
every float array of the model (kernels, biases, BatchNorm gamma/beta and moving statistics, as timm averages its
state dicts) is averaged in float64; the optimizer's state is copied from the newest file (an average of step
counters and momenta is no state at all).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil

import keras
import numpy as np

from kgooglenet.saving import atomic_write

_EPOCH_FILE = "epoch_{:04d}.weights.h5"
_EPOCH_RE = re.compile(r"epoch_(\d+)\.weights\.h5$")
_OPTIMIZER_GROUP = "optimizer"


def epoch_checkpoints(checkpoints_dir: str) -> list[str]:
    """The `epoch_NNNN.weights.h5` files of a checkpoints directory, oldest epoch first."""
    files = [f for f in glob.glob(os.path.join(checkpoints_dir, "epoch_*.weights.h5")) if _EPOCH_RE.search(f)]
    return sorted(files, key=lambda f: int(_EPOCH_RE.search(f).group(1)))


class EpochWeights(keras.callbacks.Callback):
    """After every committed epoch, a copy of the run's last.weights.h5 (the EMA weights when on) as
    `epoch_NNNN.weights.h5` (1-based) in the checkpoints directory; all but the newest `keep` are deleted. An epoch
    the run's `RunCheckpoint` guard did not commit (non-finite) is not kept."""

    def __init__(self, guard, keep: int):
        super().__init__()
        if keep < 1:
            raise ValueError(f"EpochWeights: keep must be >= 1, received keep={keep!r}")
        self.guard, self.keep = guard, int(keep)
        self.checkpoints_dir = guard.run.paths.checkpoints
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:  # files of later epochs are left by an earlier run (resume=False) or a kill: not ours
            self._started = True
            for path in epoch_checkpoints(self.checkpoints_dir):
                if int(_EPOCH_RE.search(path).group(1)) > epoch:
                    os.remove(path)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.skip():
            return
        path = os.path.join(self.checkpoints_dir, _EPOCH_FILE.format(epoch + 1))
        atomic_write(path, lambda tmp: shutil.copyfile(self.guard.run.paths.last, tmp))
        for old in epoch_checkpoints(self.checkpoints_dir)[:-self.keep]:
            os.remove(old)


def epoch_weights_callbacks(config, guard) -> list:
    """[EpochWeights] when `config.keep_epoch_checkpoints` > 0, else [] (`guard`: the run's RunCheckpoint)."""
    n = config.keep_epoch_checkpoints
    return [EpochWeights(guard, n)] if n else []


def average_weight_files(files: list[str], output: str) -> str:
    """Write the mean of the `.weights.h5` files to `output` (see the module docstring); returns `output`."""
    import h5py

    if not files:
        raise ValueError("average_weight_files: no files to average")
    handles = [h5py.File(f, "r") for f in files]
    try:
        newest = handles[-1]
        names = []
        newest.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for f, h in zip(files[:-1], handles[:-1]):
            theirs = []
            h.visititems(lambda name, obj: theirs.append(name) if isinstance(obj, h5py.Dataset) else None)
            if sorted(theirs) != sorted(names):
                raise ValueError(f"average_weight_files: {f!r} does not hold the same weights as {files[-1]!r} "
                                 f"(a different model or config); average checkpoints of one run only")

        def write(tmp):
            with h5py.File(tmp, "w") as out:
                for key, value in newest.attrs.items():
                    out.attrs[key] = value
                for name in names:
                    data = newest[name]
                    if name.split("/")[0] != _OPTIMIZER_GROUP and np.issubdtype(data.dtype, np.floating):
                        value = np.mean([np.asarray(h[name], np.float64) for h in handles], axis=0)
                        value = value.astype(data.dtype)
                    else:
                        value = data[()]
                    out.create_dataset(name, data=value)
                # empty groups ("vars" of weightless layers) are part of the layout Keras reads back
                newest.visititems(lambda name, obj: out.require_group(name) if isinstance(obj, h5py.Group) else None)

        return atomic_write(output, write)
    finally:
        for h in handles:
            h.close()


def average_checkpoints(run_dir: str, last: int, output: str | None = None) -> str:
    """Average the last `last` epoch checkpoints of `run_dir` into `output` (default
    `run_dir/checkpoints/average_last{last}.weights.h5`); returns the output path."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"average-checkpoints: no run directory at {run_dir!r}")
    if last < 1:
        raise ValueError(f"average-checkpoints: --last must be >= 1, received {last}")
    files = epoch_checkpoints(checkpoints)
    if len(files) < last:
        raise ValueError(
            f"average-checkpoints: {run_dir!r} keeps {len(files)} epoch checkpoints, fewer than --last {last}; "
            f"train with TrainConfig(keep_epoch_checkpoints={last}) (or more) to keep them")
    output = output or os.path.join(checkpoints, f"average_last{last}.weights.h5")
    if not output.endswith(".weights.h5"):
        raise ValueError(f"average-checkpoints: --output must end in '.weights.h5' (Keras' weights format), received {output!r}")
    return average_weight_files(files[-last:], output)


def save_averaged_model(run_dir: str, weights_file: str, output: str, last: int) -> str:
    """The run's model (`run_dir/model.keras`) with the weights of `weights_file`, written to the `.keras` file
    `output` with the run's ModelInfo (provenance notes the averaging)."""
    import dataclasses

    from kgooglenet.saving import load_model, model_info, save_model

    model = load_model(run_dir)
    model.load_weights(weights_file)
    info = model_info(run_dir)
    info = dataclasses.replace(info, provenance={**info.provenance, "averaged_last_epochs": last,
                                                 "averaged_weights": os.path.abspath(weights_file)})
    return save_model(model, output, info)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="kgooglenet average-checkpoints",
        description="Average the weights of the last N epochs of a run (kept with TrainConfig.keep_epoch_checkpoints).")
    parser.add_argument("run_dir", help="the run directory (out_dir of the training)")
    parser.add_argument("--last", type=int, required=True, help="how many of the newest epoch checkpoints to average")
    parser.add_argument("--output", help="output .weights.h5 (default RUN_DIR/checkpoints/average_lastN.weights.h5)")
    parser.add_argument("--model-out", help="also write RUN_DIR/model.keras with the averaged weights to this .keras file")
    args = parser.parse_args(argv)
    if args.model_out and not args.model_out.endswith(".keras"):
        parser.error(f"--model-out must end in '.keras', received {args.model_out!r}")
    path = average_checkpoints(args.run_dir, args.last, args.output)
    print(f"averaged the last {args.last} epoch checkpoints of {args.run_dir} into {path}")
    if args.model_out:
        print(f"model with the averaged weights: {save_averaged_model(args.run_dir, path, args.model_out, args.last)}")
    return 0
