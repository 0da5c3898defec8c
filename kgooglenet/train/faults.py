"""Fault injection for the reliability tests: `KGOOGLENET_FAULT=<point>:<n>[,<point>:<n>...]`.

Unset (the normal case) every call here is a dictionary lookup that does nothing. Armed, the n-th time (1-based) the
run reaches `<point>` the process is killed with SIGKILL (no cleanup, no atexit: what a power cut or the OOM killer
does), except for "nan", which poisons a training batch instead. Points:
  config, history, best, last, backup, model  inside the write of that run file: the temporary file is fully
                                              written, the rename has not happened yet
  export_savedmodel                           inside export_savedmodel: the SavedModel is written to its temporary
                                              directory, not yet renamed to its version number
  export_file                                 inside export_keras / export_tflite / export_onnx, the same way
  nan                                         the n-th training batch (1-based, counted over this process) becomes NaN
"""

from __future__ import annotations

import os
import signal

ENV = "KGOOGLENET_FAULT"
POINTS = ("config", "history", "best", "last", "backup", "model", "export_savedmodel", "export_file", "nan")

_hits: dict[str, int] = {}


def armed() -> dict[str, int]:
    """{point: n} from the environment (validated: a typo must not silently disarm a test)."""
    spec = os.environ.get(ENV, "").strip()
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, _, n = item.partition(":")
        if point not in POINTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{ENV}: expected <point>:<n> with point one of {POINTS} and n >= 1, received {item!r}")
        out[point] = int(n)
    return out


def hit(point: str) -> None:
    """Count one passage through `point`; SIGKILL this process when it is the armed one."""
    target = armed().get(point)
    if target is None:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == target:
        os.kill(os.getpid(), signal.SIGKILL)


def poison_batches(dataset):
    """`dataset` with its n-th batch's images replaced by NaN when "nan:<n>" is armed, else `dataset` unchanged."""
    n = armed().get("nan")
    if n is None:
        return dataset
    import tensorflow as tf

    def poison(i, element):
        x, y = element
        return tf.where(i == n - 1, x * float("nan"), x), y

    return dataset.enumerate().map(poison)
