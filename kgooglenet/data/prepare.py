"""Image-folder preparer: sharded TFRecords, categories.csv, train/val listings and rgb_stats.json.

`python -m kgooglenet prepare SRC_DIR OUT_DIR --val-split 0.2 --size 256 --center-crop` does, at scale,
what PyTorch GoogLeNet projects do by hand: a stratified, seeded train/val split of a folder of class
subfolders, every image turned upright (EXIF orientation) and converted to RGB (grayscale, CMYK, RGBA/LA/P with
transparency composited on white, 16-bit), resized so its shorter side is `--size` with the evaluation-style
resize of `kgooglenet.data.image` (antialiased bilinear; and center-cropped to a square with `--center-crop`),
re-encoded as JPEG into TFRecord shards, and the RGB mean/std of the train split.

Out directory:
    train-00000-of-0000N.tfrecord ...  val-00000-of-0000M.tfrecord ...   the shards
    train-00000-of-0000N.json ...      per-shard completion record (rows, skipped files, pixel sums)
    categories.csv                     class_name,class_id
    train.csv / val.csv                path,class_id,class_name,height,width,shard (path relative to SRC_DIR)
    rgb_stats.json                     mean/std per RGB channel on the 0-255 scale, train split only
    skipped.csv                        path,reason for every file that was not converted
    report.json                        counts, shards, options
    plan.json                          the options and the source listing the shards were made from

One preparation per out_dir: an option left unset (None) takes the value the out_dir's preparation was made with
(else `PREPARE_DEFAULTS`), so `train_folder.py` reuses a folder prepared by the CLI as is; an option set to another
value is refused with both values named (`PreparationMismatch`), unless overwrite=True.

Resumable: a shard whose .json record matches the current plan is not rewritten, so a rerun after an
interruption (even a SIGKILL mid-shard) continues where it stopped and writes every good image exactly once;
a rerun of a finished preparation changes no file. Every file is written to a temporary name, fsynced and renamed.
Bad inputs (truncated/corrupt images, non-image files, unsupported extensions) are skipped and listed
in skipped.csv with the reason; they never stop the run. Decoding runs in a thread pool (PIL and TF release
the GIL while decoding, resizing and encoding); no warning filter is touched (Python's are not thread-safe).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import repeat

import numpy as np

from kgooglenet.data import records
from kgooglenet.data.folders import list_image_folder, stratified_split

# extensions that are attempted; everything else is skipped as "unsupported extension"
PREPARE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                      ".ppm", ".pgm", ".pbm")
FEATURES = records.FEATURES
# the options that make a preparation (what plan.json records), with their defaults and help
PREPARE_DEFAULTS = {"val_split": 0.2, "size": 256, "center_crop": False, "seed": 0, "images_per_shard": 1024,
                    "quality": 95}
PREPARE_HELP = {
    "val_split": "fraction of each class held out for validation (stratified, seeded)",
    "size": "shorter side of the stored images; 0 keeps the original size",
    "center_crop": "center-crop the stored images to size x size squares",
    "seed": "split and shard-order seed",
    "images_per_shard": "images per TFRecord shard",
    "quality": "JPEG quality of the re-encoded images (1-100)",
}
_VERSION = 2


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
    options: dict = field(default_factory=dict)    # the PREPARE_DEFAULTS options the preparation was made with


class PreparationMismatch(ValueError):
    """out_dir holds a preparation made with other options or other source files."""

    def __init__(self, out_dir: str, differences: dict, sources_changed: str | None = None, flag_prefix: str = "--"):
        self.out_dir, self.differences, self.sources_changed = out_dir, differences, sources_changed
        parts = [f"{k}={old!r} there, {new!r} asked (option {k}, flag {flag_prefix}{k.replace('_', '-')})"
                 for k, (old, new) in differences.items()]
        if sources_changed:
            parts.append(sources_changed)
        super().__init__(
            f"out_dir {out_dir!r} holds a preparation that differs from this one: {'; '.join(parts)}. Leave the "
            f"option(s) unset to reuse the preparation as it is, pass overwrite=True ({flag_prefix}overwrite) to "
            "replace it, or use another out_dir")

    def with_flag_prefix(self, prefix: str) -> "PreparationMismatch":
        """The same error naming the flags of a command whose preparer flags carry `prefix` (e.g. "--prepare-")."""
        return PreparationMismatch(self.out_dir, self.differences, self.sources_changed, prefix)


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


def _resize(arr: np.ndarray, size: int | None, center_crop: bool) -> np.ndarray:
    """uint8 [H, W, 3] -> shorter side `size` (kgooglenet.data.image's resize), center square when asked."""
    from kgooglenet.data import image as image_ops

    h, w = arr.shape[:2]
    if size and min(h, w) != size:
        arr = image_ops.resize_shorter(arr[None], size)[0].numpy()
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        h, w = arr.shape[:2]
    if center_crop:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        arr = arr[top:top + side, left:left + side]
    return np.ascontiguousarray(arr)


def load_image(path: str, size: int | None = None, center_crop: bool = False, quality: int = 95):
    """Open any image PIL can read, upright (EXIF orientation), and return (JPEG bytes, RGB uint8 array).

    Raises whatever PIL raises for unreadable, truncated or non-image files.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        img = _to_rgb(ImageOps.exif_transpose(img))
    arr = _resize(np.asarray(img, dtype=np.uint8), size, center_crop)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=quality)
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
# files
# --------------------------------------------------------------------------------------------
def _fsync_replace(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_if_changed(path: str, text: str) -> bool:
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return False
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    _fsync_replace(tmp, path)
    return True


def _csv_text(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.tfrecord"


def prepared_options(out_dir: str) -> dict | None:
    """The PREPARE_DEFAULTS options `out_dir`'s preparation was made with, or None when it holds none."""
    path = os.path.join(out_dir, "plan.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        plan = json.load(f)
    return {k: plan.get(k, PREPARE_DEFAULTS[k]) if k != "size" else (plan.get("size") or 0) for k in PREPARE_DEFAULTS}


def _check_options(o: dict) -> None:
    if not isinstance(o["images_per_shard"], int) or o["images_per_shard"] <= 0:
        raise ValueError(f"images_per_shard must be a positive integer, received {o['images_per_shard']!r}")
    if not isinstance(o["size"], int) or o["size"] < 0:
        raise ValueError(f"size must be a positive integer (or 0 to keep the original size), received {o['size']!r}")
    if o["center_crop"] and not o["size"]:
        raise ValueError("center_crop needs a size (the side of the square)")
    if not isinstance(o["quality"], int) or not 1 <= o["quality"] <= 100:
        raise ValueError(f"quality must be an integer in 1..100, received {o['quality']!r}")
    if not isinstance(o["val_split"], (int, float)) or not 0 <= o["val_split"] < 1:
        raise ValueError(f"val_split must be in [0, 1), received {o['val_split']!r}")


def _sources_change(old: dict, new: dict) -> str | None:
    def listing(plan):
        return {row[0]: row for split in ("train", "val") for row in plan.get(split, [])}

    a, b = listing(old), listing(new)
    added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    if old.get("src_dir") != new.get("src_dir"):
        return f"it was made from src_dir {old.get('src_dir')!r}, this call reads {new.get('src_dir')!r}"
    if added or removed or changed:
        what = [f"{len(x)} {name} (e.g. {x[0]!r})" for x, name in ((added, "added"), (removed, "removed"),
                                                                    (changed, "modified")) if x]
        return "the source files changed since: " + ", ".join(what)
    return None


def prepare_folder(src_dir: str, out_dir: str, *, val_split: float | None = None, size: int | None = None,
                   center_crop: bool | None = None, seed: int | None = None, images_per_shard: int | None = None,
                   quality: int | None = None, workers: int | None = None, overwrite: bool = False,
                   progress: bool = True) -> PrepareReport:
    """Convert a folder of class subfolders into sharded TFRecords (see the module docstring).

    Every option left None takes the value of the preparation already in `out_dir`, else `PREPARE_DEFAULTS`.

    Args:
        src_dir: folder with one subfolder per class (searched recursively).
        out_dir: output directory (created).
        val_split: fraction of each class held out for validation (stratified, seeded); default 0.2.
        size: resize so the shorter side is `size` pixels; 0 keeps the original size; default 256.
        center_crop: center-crop to a `size` x `size` square after the resize; default False.
        seed: split and shard-order seed; default 0.
        images_per_shard: images per TFRecord shard; default 1024.
        workers: decoding threads (default: CPU count).
        quality: JPEG quality of the re-encoded images; default 95.
        overwrite: replace an out_dir prepared with different options or sources (else a PreparationMismatch).
        progress: show a tqdm progress bar.

    Returns:
        A PrepareReport.

    Raises:
        FileNotFoundError: src_dir does not exist.
        PreparationMismatch (a ValueError): out_dir holds another preparation (names each option and both values).
        ValueError: fewer than two classes, a class without images, bad options.

    Example:
    ```python
    report = prepare_folder("caltech256/", "prepared/", size=256, center_crop=True)
    bundle = make_datasets(DataConfig(source="tfrecord", path="prepared/", image_size=224))
    ```
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    asked = {"val_split": val_split, "size": size, "center_crop": center_crop, "seed": seed,
             "images_per_shard": images_per_shard, "quality": quality}
    recorded = prepared_options(out_dir) if not overwrite else None
    opts = {k: v if v is not None else (recorded or PREPARE_DEFAULTS)[k] for k, v in asked.items()}
    _check_options(opts)
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
    tr, va = stratified_split(labels[keep], opts["val_split"], opts["seed"])
    tr, va = keep[tr], keep[va]
    tr = tr[np.random.default_rng(opts["seed"]).permutation(len(tr))]  # mix classes across train shards

    def stat(i):
        st = os.stat(files[i])
        return [rel[i], int(labels[i]), st.st_size, st.st_mtime_ns]

    size = opts["size"] or None
    plan = {"version": _VERSION, "src_dir": src_dir, **opts, "size": size,
            "class_names": class_names, "train": [stat(i) for i in tr], "val": [stat(i) for i in va]}
    plan_hash = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    os.makedirs(out_dir, exist_ok=True)
    plan_path = os.path.join(out_dir, "plan.json")
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            old = json.load(f)
        if old.get("hash") != plan_hash:
            if not overwrite:
                differences = {k: (v, opts[k]) for k, v in (recorded or {}).items() if v != opts[k]}
                change = None if differences else (_sources_change(old, plan) or
                                                   f"it was written by another preparer version ({old.get('version')})")
                raise PreparationMismatch(out_dir, differences, change)
            for name in os.listdir(out_dir):
                if name.startswith(("train-", "val-")):
                    os.remove(os.path.join(out_dir, name))
    _write_if_changed(plan_path, json.dumps({"hash": plan_hash, **plan}, indent=1) + "\n")

    shards = {}
    per = opts["images_per_shard"]
    for split, idx in (("train", tr), ("val", va)):
        n = max(1, math.ceil(len(idx) / per)) if len(idx) else 0
        shards[split] = [(_shard_name(split, s, n), idx[s * per:(s + 1) * per]) for s in range(n)]

    def done_record(name):
        p = os.path.join(out_dir, name[: -len(".tfrecord")] + ".json")
        if os.path.exists(p) and os.path.exists(os.path.join(out_dir, name)):
            with open(p) as f:
                rec = json.load(f)
            if rec.get("plan") == plan_hash:
                return rec
        return None

    done, todo = {}, []
    for split in ("train", "val"):
        for name, idx in shards[split]:
            rec = done_record(name)
            if rec is None:
                todo.append((split, name, idx))
            else:
                done[name] = rec
    written = 0
    workers = workers or os.cpu_count() or 1
    total = sum(len(idx) for _, _, idx in todo)
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(total=total, unit="img", disable=not progress or not total,
                                                         desc="prepare") as bar:
        for split, name, idx in todo:
            items = [(files[i], rel[i]) for i in idx]
            results = pool.map(_process, items, repeat(size), repeat(opts["center_crop"]), repeat(opts["quality"]),
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
                    w.write(records.encode_example(data, c, class_names[c], rel[i], h, wd))
                    rows.append([rel[i], c, class_names[c], h, wd, name])
                    if stats is not None:
                        ssum += stats[0]
                        ssq += stats[1]
                        npx += stats[2]
            _fsync_replace(path + ".tmp", path)
            # the record marks the shard done: written after the shard, so a kill in between redoes the shard
            rec = {"plan": plan_hash, "rows": rows, "skipped": bad, "sum": ssum.tolist(), "sumsq": ssq.tolist(),
                   "pixels": npx}
            _write_if_changed(path[: -len(".tfrecord")] + ".json", json.dumps(rec) + "\n")
            done[name] = rec
            written += 1

    # aggregate
    out_rows = {"train": [], "val": []}
    val_skipped = []
    ssum, ssq, npx = np.zeros(3), np.zeros(3), 0
    for split in ("train", "val"):
        for name, _ in shards[split]:
            rec = done[name]
            out_rows[split] += rec["rows"]
            skipped += [tuple(s) for s in rec["skipped"]]
            if split == "train":
                ssum += np.asarray(rec["sum"])
                ssq += np.asarray(rec["sumsq"])
                npx += rec["pixels"]
            else:
                val_skipped += [list(s) for s in rec["skipped"]]
    skipped.sort()
    header = ["path", "class_id", "class_name", "height", "width", "shard"]
    _write_if_changed(os.path.join(out_dir, records.CATEGORIES_FILE),
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
                           shards_skipped=len(done) - written, mean=mean, std=std, options=dict(opts))
    summary = {k: v for k, v in asdict(report).items() if k not in ("skipped", "shards_written", "shards_skipped",
                                                                    "out_dir", "options")}
    summary.update({"skipped_count": len(skipped), "val_skipped": sorted(val_skipped), "features": FEATURES,
                    "shards": {s: [n for n, _ in shards[s]] for s in shards},
                    "options": {"src_dir": src_dir, **opts}})
    _write_if_changed(os.path.join(out_dir, records.REPORT_FILE), json.dumps(summary, indent=1) + "\n")
    counts = np.bincount([r[1] for r in out_rows["train"] + out_rows["val"]], minlength=len(class_names))
    lost = [class_names[c] for c in range(len(class_names)) if counts[c] == 0]
    if lost:
        raise ValueError(f"class folder(s) {lost} have no readable image (see {os.path.join(out_dir, 'skipped.csv')})")
    return report


def add_prepare_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The preparer's options as flags `--{prefix}val-split`, `--{prefix}size`, ... (default None: the existing
    preparation's value, else PREPARE_DEFAULTS), plus `--{prefix}workers` and `--{prefix}overwrite`; read them back
    with `prepare_kwargs(args, prefix)`. The preparer's CLI and every folder recipe expose the same options."""
    types = {"val_split": float, "size": int, "seed": int, "images_per_shard": int, "quality": int}
    for key, default in PREPARE_DEFAULTS.items():
        flag = f"--{prefix}{key.replace('_', '-')}"
        help_text = f"{PREPARE_HELP[key]} (default: the out dir's preparation's, else {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=types[key], default=None, help=help_text)
    parser.add_argument(f"--{prefix}workers", type=int, default=None, help="decoding threads (default: CPU count)")
    parser.add_argument(f"--{prefix}overwrite", action="store_true",
                        help="replace an out dir prepared with other options or source files")


def prepare_kwargs(args: argparse.Namespace, prefix: str = "") -> dict:
    """The keyword arguments of `prepare_folder` from flags added by `add_prepare_flags(parser, prefix)`."""
    dest = prefix.replace("-", "_")
    keys = (*PREPARE_DEFAULTS, "workers", "overwrite")
    return {k: getattr(args, dest + k) for k in keys}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point of `python -m kgooglenet prepare`."""
    p = argparse.ArgumentParser(prog="kgooglenet prepare",
                                description="Convert a folder of class subfolders into sharded TFRecords "
                                            "(+ categories.csv, train/val CSV listings, rgb_stats.json, skipped.csv).")
    p.add_argument("src_dir", help="folder with one subfolder of images per class")
    p.add_argument("out_dir", help="output directory (a rerun resumes / skips finished shards)")
    add_prepare_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        r = prepare_folder(a.src_dir, a.out_dir, progress=not a.no_progress, **prepare_kwargs(a))
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
