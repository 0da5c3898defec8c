"""The on-disk format of a prepared folder (written by `kgooglenet.data.prepare`, read by `kgooglenet.data.sources`
and `kgooglenet.evaluate`): TFRecord features, one example's encoding and parsing, and reading a preparation."""

from __future__ import annotations

import csv
import json
import os

FEATURES = {
    "image/encoded": "bytes: JPEG",
    "image/format": "bytes: b'jpeg'",
    "image/class/label": "int64: class id",
    "image/class/text": "bytes: class name",
    "image/filename": "bytes: path relative to SRC_DIR",
    "image/height": "int64",
    "image/width": "int64",
}
REPORT_FILE = "report.json"
CATEGORIES_FILE = "categories.csv"


def encode_example(data: bytes, label: int, name: str, rel: str, h: int, w: int) -> bytes:
    """One serialized tf.train.Example with the FEATURES."""
    import tensorflow as tf

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(data), "image/format": b(b"jpeg"), "image/class/label": i(label),
        "image/class/text": b(name.encode()), "image/filename": b(rel.encode()),
        "image/height": i(h), "image/width": i(w),
    })).SerializeToString()


def parse_example(serialized, with_filename: bool = False):
    """Parse one prepared record -> (JPEG bytes scalar string, int32 label) (+ the file name when asked)."""
    import tensorflow as tf

    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    if with_filename:
        spec["image/filename"] = tf.io.FixedLenFeature([], tf.string)
    f = tf.io.parse_single_example(serialized, spec)
    out = f["image/encoded"], tf.cast(f["image/class/label"], tf.int32)
    return (*out, f["image/filename"]) if with_filename else out


def is_prepared(path: str) -> bool:
    """True when `path` holds a finished preparation (its report and categories)."""
    return bool(path) and all(os.path.exists(os.path.join(path, f)) for f in (REPORT_FILE, CATEGORIES_FILE))


def read_prepared(path: str) -> dict:
    """Read a prepared directory: class names, shard files, split sizes, RGB mean/std, options, skipped files.

    Returns:
        {"class_names", "train_files", "val_files", "train_size", "val_size", "options", "skipped"
         ([(path, reason)]), "val_skipped" ([(path, reason)] of the val split's candidates), and "mean"/"std" when
         known}.

    Raises:
        FileNotFoundError: `path` is not a complete preparation (says what is missing and how to finish it).
    """
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"prepared TFRecord directory {path!r} does not exist; create it with "
                                f"`python -m kgooglenet prepare SRC_DIR {path}`")
    if not is_prepared(path):
        raise FileNotFoundError(f"{path!r} is not a finished preparation (missing {REPORT_FILE} / {CATEGORIES_FILE}); "
                                f"run (or rerun, it resumes) `python -m kgooglenet prepare SRC_DIR {path}`")
    with open(os.path.join(path, REPORT_FILE)) as f:
        report = json.load(f)
    with open(os.path.join(path, CATEGORIES_FILE), newline="") as f:
        rows = sorted(((int(r["class_id"]), r["class_name"]) for r in csv.DictReader(f)))
    out = {"class_names": [n for _, n in rows], "options": report.get("options", {}),
           "skipped": [tuple(s) for s in report.get("skipped", [])],
           "val_skipped": [tuple(s) for s in report.get("val_skipped", [])]}
    for split in ("train", "val"):
        files = [os.path.join(path, s) for s in report["shards"][split]]
        missing = [s for s in files if not os.path.exists(s)]
        if missing:
            raise FileNotFoundError(f"prepared directory {path!r} lacks shard(s) {missing[:3]}; rerun "
                                    f"`python -m kgooglenet prepare` to resume")
        out[f"{split}_files"] = files
        out[f"{split}_size"] = int(report[f"{split}_count"])
    stats_path = os.path.join(path, "rgb_stats.json")
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            stats = json.load(f)
        out["mean"], out["std"] = tuple(stats["mean"]), tuple(stats["std"])
    return out
