"""Image-folder preparer: sharded TFRecords, categories.csv, train/val listings and rgb_stats.json.

`python -m kgooglenet.prepare SRC_DIR OUT_DIR --val-split 0.2 --size 256 --center-crop` does, at scale,
what PyTorch GoogLeNet projects do by hand: a stratified, seeded train/val split of a folder of class
subfolders, every image converted to RGB (grayscale, CMYK, RGBA/LA/P with transparency composited on
white, 16-bit), resized so its shorter side is `--size` (and center-cropped to a square with
`--center-crop`), re-encoded as JPEG into TFRecord shards, and the RGB mean/std of the train split.

Out directory:
    train-00000-of-0000N.tfrecord ...  val-00000-of-0000M.tfrecord ...   the shards
    train-00000-of-0000N.json ...      per-shard completion record (rows, skipped files, pixel sums)
    categories.csv                     class_name,class_id
    train.csv / val.csv                path,class_id,class_name,height,width,shard (path relative to SRC_DIR)
    rgb_stats.json                     mean/std per RGB channel on the 0-255 scale, train split only
    skipped.csv                        path,reason for every file that was not converted
    report.json                        counts, shards, options
    plan.json                          the options and the source listing the shards were made from

Resumable: a shard whose .json record matches the current plan is not rewritten, so a rerun after an
interruption continues where it stopped and a rerun of a finished preparation changes no file.
Bad inputs (truncated/corrupt images, non-image files, unsupported extensions) are skipped and listed
in skipped.csv with the reason; they never stop the run. Decoding runs in a thread pool (PIL releases
the GIL while decoding, resizing and encoding).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import repeat

import numpy as np

from kgooglenet.data.sources import list_image_folder, stratified_split

# extensions that are attempted; everything else is skipped as "unsupported extension"
PREPARE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                      ".ppm", ".pgm", ".pbm")
FEATURES = {
    "image/encoded": "bytes: JPEG",
    "image/format": "bytes: b'jpeg'",
    "image/class/label": "int64: class id",
    "image/class/text": "bytes: class name",
    "image/filename": "bytes: path relative to SRC_DIR",
    "image/height": "int64",
    "image/width": "int64",
}
_VERSION = 1


@dataclass
class PrepareReport:
    """What `prepare_folder` did."""

    out_dir: str                                   # the output directory
    class_names: list[str]                         # class names by id
    train_count: int                               # images written to train shards
    val_count: int                                 # images written to val shards
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path relative to SRC_DIR, reason)
    shards_written: int = 0                        # shards written by this run
    shards_skipped: int = 0                        # shards already complete (resumed)
    mean: list[float] | None = None                # train RGB mean (0-255)
    std: list[float] | None = None                 # train RGB std (0-255)


# --------------------------------------------------------------------------------------------
# one image
# --------------------------------------------------------------------------------------------
def _to_rgb(img):
    from PIL import Image

    if img.mode == "P":
        img = img.convert("RGBA")  # palette transparency -> alpha
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = a.max() if a.size else 0.0
        if top > 255:
            a = a * (255.0 / (65535.0 if top <= 65535 else top))
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def _resize(img, size: int | None, center_crop: bool):
    from PIL import Image

    w, h = img.size
    if size:
        s = size / min(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
        w, h = nw, nh
    if center_crop:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    return img


def load_image(path: str, size: int | None = None, center_crop: bool = False, quality: int = 95):
    """Open any image PIL can read and return (JPEG bytes, RGB uint8 array).

    Raises whatever PIL raises for unreadable, truncated or non-image files.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # palette/EXIF chatter; real problems raise
        with Image.open(path) as img:
            if size and img.format == "JPEG":
                img.draft("RGB", (size, size))  # decode at reduced DCT scale when much larger than needed
            img.load()
            img = _to_rgb(img)
            img = _resize(img, size, center_crop)
            arr = np.asarray(img, dtype=np.uint8)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), arr


def _process(item, size, center_crop, quality, with_stats):
    path, rel = item
    try:
        data, arr = load_image(path, size, center_crop, quality)
    except Exception as e:  # noqa: BLE001 - every failure becomes a report line
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        return None, reason
    stats = None
    if with_stats:
        px = arr.reshape(-1, 3).astype(np.float64)
        stats = (px.sum(0), (px * px).sum(0), px.shape[0])
    return (data, arr.shape[0], arr.shape[1], stats), None


# --------------------------------------------------------------------------------------------
# TFRecord format
# --------------------------------------------------------------------------------------------
def _example(data: bytes, label: int, name: str, rel: str, h: int, w: int) -> bytes:
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


def parse_example(serialized):
    """Parse one prepared record -> (JPEG bytes scalar string, int32 label)."""
    import tensorflow as tf

    f = tf.io.parse_single_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    })
    return f["image/encoded"], tf.cast(f["image/class/label"], tf.int32)


def read_prepared(path: str) -> dict:
    """Read a prepared directory: class names, shard files, split sizes, RGB mean/std.

    Raises:
        FileNotFoundError: `path` is not a complete preparation (says what is missing and how to finish it).
    """
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"prepared TFRecord directory {path!r} does not exist; create it with "
                                f"`python -m kgooglenet.prepare SRC_DIR {path}`")
    report_path = os.path.join(path, "report.json")
    cats = os.path.join(path, "categories.csv")
    if not os.path.exists(report_path) or not os.path.exists(cats):
        raise FileNotFoundError(f"{path!r} is not a finished preparation (missing report.json / categories.csv); "
                                f"run (or rerun, it resumes) `python -m kgooglenet.prepare SRC_DIR {path}`")
    with open(report_path) as f:
        report = json.load(f)
    with open(cats, newline="") as f:
        rows = sorted(((int(r["class_id"]), r["class_name"]) for r in csv.DictReader(f)))
    names = [n for _, n in rows]
    out = {"class_names": names}
    for split in ("train", "val"):
        files = [os.path.join(path, s) for s in report["shards"][split]]
        missing = [s for s in files if not os.path.exists(s)]
        if missing:
            raise FileNotFoundError(f"prepared directory {path!r} lacks shard(s) {missing[:3]}; rerun "
                                    f"`python -m kgooglenet.prepare` to resume")
        out[f"{split}_files"] = files
        out[f"{split}_size"] = int(report[f"{split}_count"])
    stats_path = os.path.join(path, "rgb_stats.json")
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            stats = json.load(f)
        out["mean"], out["std"] = tuple(stats["mean"]), tuple(stats["std"])
    return out


# --------------------------------------------------------------------------------------------
# the preparer
# --------------------------------------------------------------------------------------------
def _write_if_changed(path: str, text: str) -> bool:
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return False
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def _csv_text(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.tfrecord"


def prepare_folder(src_dir: str, out_dir: str, *, val_split: float = 0.2, size: int | None = 256,
                   center_crop: bool = False, seed: int = 0, images_per_shard: int = 1024,
                   workers: int | None = None, quality: int = 95, overwrite: bool = False,
                   progress: bool = True) -> PrepareReport:
    """Convert a folder of class subfolders into sharded TFRecords (see the module docstring).

    Args:
        src_dir: folder with one subfolder per class (searched recursively).
        out_dir: output directory (created).
        val_split: fraction of each class held out for validation (stratified, seeded).
        size: resize so the shorter side is `size` pixels; None or 0 keeps the original size.
        center_crop: center-crop to a `size` x `size` square after the resize.
        seed: split and shard-order seed.
        images_per_shard: images per TFRecord shard.
        workers: decoding threads (default: CPU count).
        quality: JPEG quality of the re-encoded images.
        overwrite: replace an out_dir prepared with different options or sources (else a ValueError).
        progress: show a tqdm progress bar.

    Returns:
        A PrepareReport.

    Raises:
        FileNotFoundError: src_dir does not exist.
        ValueError: fewer than two classes, a class without images, bad options, or out_dir holds another preparation.

    Example:
    ```python
    report = prepare_folder("caltech256/", "prepared/", size=256, center_crop=True)
    bundle = make_datasets(DataConfig(source="tfrecord", path="prepared/", image_size=224))
    ```
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    if images_per_shard <= 0:
        raise ValueError(f"images_per_shard must be positive, got {images_per_shard}")
    if size is not None and size < 0:
        raise ValueError(f"size must be positive (or 0/None to keep the original size), got {size}")
    if center_crop and not size:
        raise ValueError("center_crop needs a size (the side of the square)")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    src_dir = os.path.abspath(src_dir)
    files, labels, class_names = list_image_folder(src_dir, extensions=None)
    rel = [os.path.relpath(f, src_dir) for f in files]
    skipped: list[tuple[str, str]] = []
    keep = []
    for i, r in enumerate(rel):
        ext = os.path.splitext(r)[1].lower()
        if ext in PREPARE_EXTENSIONS:
            keep.append(i)
        else:
            skipped.append((r, f"unsupported extension {ext or '(none)'!r}: not an image file"))
    keep = np.asarray(keep, np.int64)
    present = set(labels[keep].tolist()) if len(keep) else set()
    empty = [n for c, n in enumerate(class_names) if c not in present]
    if empty:
        raise ValueError(f"image folder {src_dir!r}: class folder(s) {empty} contain no image files "
                         f"(extensions {', '.join(PREPARE_EXTENSIONS)})")
    tr, va = stratified_split(labels[keep], val_split, seed)
    tr, va = keep[tr], keep[va]
    tr = tr[np.random.default_rng(seed).permutation(len(tr))]  # mix classes across train shards

    def stat(i):
        st = os.stat(files[i])
        return [rel[i], int(labels[i]), st.st_size, st.st_mtime_ns]

    plan = {"version": _VERSION, "src_dir": src_dir, "val_split": val_split, "size": size or None,
            "center_crop": center_crop, "seed": seed, "images_per_shard": images_per_shard, "quality": quality,
            "class_names": class_names, "train": [stat(i) for i in tr], "val": [stat(i) for i in va]}
    plan_hash = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    os.makedirs(out_dir, exist_ok=True)
    plan_path = os.path.join(out_dir, "plan.json")
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            old = json.load(f).get("hash")
        if old != plan_hash:
            if not overwrite:
                raise ValueError(f"out_dir {out_dir!r} holds a preparation made with other options or other source "
                                 "files; pass overwrite=True (--overwrite) to replace it, or use another out_dir")
            for name in os.listdir(out_dir):
                if name.startswith(("train-", "val-")):
                    os.remove(os.path.join(out_dir, name))
    _write_if_changed(plan_path, json.dumps({"hash": plan_hash, **plan}, indent=1) + "\n")

    shards = {}
    for split, idx in (("train", tr), ("val", va)):
        n = max(1, math.ceil(len(idx) / images_per_shard)) if len(idx) else 0
        shards[split] = [(_shard_name(split, s, n), idx[s * images_per_shard:(s + 1) * images_per_shard])
                         for s in range(n)]

    def done_record(name):
        p = os.path.join(out_dir, name[: -len(".tfrecord")] + ".json")
        if os.path.exists(p) and os.path.exists(os.path.join(out_dir, name)):
            with open(p) as f:
                rec = json.load(f)
            if rec.get("plan") == plan_hash:
                return rec
        return None

    records, todo = {}, []
    for split in ("train", "val"):
        for name, idx in shards[split]:
            rec = done_record(name)
            if rec is None:
                todo.append((split, name, idx))
            else:
                records[name] = rec
    written = 0
    workers = workers or os.cpu_count() or 1
    total = sum(len(idx) for _, _, idx in todo)
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(total=total, unit="img", disable=not progress or not total,
                                                         desc="prepare") as bar:
        for split, name, idx in todo:
            items = [(files[i], rel[i]) for i in idx]
            results = pool.map(_process, items, repeat(size or None), repeat(center_crop), repeat(quality),
                               repeat(split == "train"))
            rows, bad = [], []
            ssum, ssq, npx = np.zeros(3), np.zeros(3), 0
            path = os.path.join(out_dir, name)
            with tf.io.TFRecordWriter(path + ".tmp") as w:
                for i, (res, reason) in zip(idx, results):
                    bar.update(1)
                    if res is None:
                        bad.append([rel[i], reason])
                        continue
                    data, h, wd, stats = res
                    c = int(labels[i])
                    w.write(_example(data, c, class_names[c], rel[i], h, wd))
                    rows.append([rel[i], c, class_names[c], h, wd, name])
                    if stats is not None:
                        ssum += stats[0]
                        ssq += stats[1]
                        npx += stats[2]
            os.replace(path + ".tmp", path)
            rec = {"plan": plan_hash, "rows": rows, "skipped": bad, "sum": ssum.tolist(), "sumsq": ssq.tolist(),
                   "pixels": npx}
            _write_if_changed(path[: -len(".tfrecord")] + ".json", json.dumps(rec) + "\n")
            records[name] = rec
            written += 1

    # aggregate
    out_rows = {"train": [], "val": []}
    ssum, ssq, npx = np.zeros(3), np.zeros(3), 0
    for split in ("train", "val"):
        for name, _ in shards[split]:
            rec = records[name]
            out_rows[split] += rec["rows"]
            skipped += [tuple(s) for s in rec["skipped"]]
            if split == "train":
                ssum += np.asarray(rec["sum"])
                ssq += np.asarray(rec["sumsq"])
                npx += rec["pixels"]
    skipped.sort()
    header = ["path", "class_id", "class_name", "height", "width", "shard"]
    _write_if_changed(os.path.join(out_dir, "categories.csv"),
                      _csv_text(["class_name", "class_id"], [[n, i] for i, n in enumerate(class_names)]))
    for split in ("train", "val"):
        _write_if_changed(os.path.join(out_dir, f"{split}.csv"), _csv_text(header, sorted(out_rows[split])))
    _write_if_changed(os.path.join(out_dir, "skipped.csv"), _csv_text(["path", "reason"], skipped))
    mean = std = None
    if npx:
        m = ssum / npx
        mean = [round(float(v), 4) for v in m]
        std = [round(float(v), 4) for v in np.sqrt(np.maximum(ssq / npx - m * m, 0.0))]
        _write_if_changed(os.path.join(out_dir, "rgb_stats.json"), json.dumps(
            {"mean": mean, "std": std, "scale": "0-255", "channels": "RGB", "split": "train",
             "images": len(out_rows["train"]), "pixels": int(npx)}, indent=1) + "\n")
    report = PrepareReport(out_dir=out_dir, class_names=class_names, train_count=len(out_rows["train"]),
                           val_count=len(out_rows["val"]), skipped=skipped, shards_written=written,
                           shards_skipped=len(records) - written, mean=mean, std=std)
    summary = {k: v for k, v in asdict(report).items() if k not in ("skipped", "shards_written", "shards_skipped",
                                                                    "out_dir")}
    summary.update({"skipped_count": len(skipped), "features": FEATURES,
                    "shards": {s: [n for n, _ in shards[s]] for s in shards},
                    "options": {k: plan[k] for k in ("src_dir", "val_split", "size", "center_crop", "seed",
                                                     "images_per_shard", "quality")}})
    _write_if_changed(os.path.join(out_dir, "report.json"), json.dumps(summary, indent=1) + "\n")
    counts = np.bincount([r[1] for r in out_rows["train"] + out_rows["val"]], minlength=len(class_names))
    lost = [class_names[c] for c in range(len(class_names)) if counts[c] == 0]
    if lost:
        raise ValueError(f"class folder(s) {lost} have no readable image (see {os.path.join(out_dir, 'skipped.csv')})")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line entry point of `python -m kgooglenet.prepare`."""
    p = argparse.ArgumentParser(prog="python -m kgooglenet.prepare",
                                description="Convert a folder of class subfolders into sharded TFRecords "
                                            "(+ categories.csv, train/val CSV listings, rgb_stats.json, skipped.csv).")
    p.add_argument("src_dir", help="folder with one subfolder of images per class")
    p.add_argument("out_dir", help="output directory (a rerun resumes / skips finished shards)")
    p.add_argument("--val-split", type=float, default=0.2, help="fraction of each class for validation (default 0.2)")
    p.add_argument("--size", type=int, default=256, help="shorter side after resize; 0 keeps the size (default 256)")
    p.add_argument("--center-crop", action="store_true", help="center-crop to a size x size square")
    p.add_argument("--seed", type=int, default=0, help="split / shard order seed (default 0)")
    p.add_argument("--images-per-shard", type=int, default=1024, help="images per shard (default 1024)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPU count)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    p.add_argument("--overwrite", action="store_true", help="replace an out_dir prepared with other options")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        r = prepare_folder(a.src_dir, a.out_dir, val_split=a.val_split, size=a.size or None,
                           center_crop=a.center_crop, seed=a.seed, images_per_shard=a.images_per_shard,
                           workers=a.workers, quality=a.quality, overwrite=a.overwrite, progress=not a.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}")
        return 2
    print(f"{len(r.class_names)} classes, {r.train_count} train / {r.val_count} val images in {r.out_dir} "
          f"({r.shards_written} shards written, {r.shards_skipped} already done); "
          f"{len(r.skipped)} skipped (see skipped.csv)")
    if r.mean:
        print(f"train RGB mean {r.mean} std {r.std} (0-255)")
    for path, reason in r.skipped[:20]:
        print(f"  skipped {path}: {reason}")
    return 0
