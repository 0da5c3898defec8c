"""Listing a folder of class subfolders and the seeded stratified train/val split (shared by the pipelines and the
preparer, so a prepared folder and a raw one split the same way)."""

from __future__ import annotations

import os

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def stratified_split(labels, val_split: float, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of example indices: `(train_indices, val_indices)`, each sorted.

    Each class keeps `round(n_c * val_split)` examples for validation (at least one when the class has
    two or more examples and val_split > 0, and never all of them).

    Example:
    ```python
    tr, va = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)  # one of each class in va
    ```
    """
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"stratified_split: val_split must be in [0, 1), received {val_split}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(0 if seed is None else seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_split))
        if val_split > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0 if len(idx) < 2 else n_val
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(val)).astype(np.int64)


def list_image_folder(path: str, extensions: tuple[str, ...] | None = IMAGE_EXTENSIONS
                      ) -> tuple[list[str], np.ndarray, list[str]]:
    """List a folder of class subfolders: `(files, labels int32, class_names)`.

    Classes are the non-hidden subfolders sorted by name; files are searched recursively, sorted, and
    kept when their extension (case-insensitive) is in `extensions` (None keeps every file).

    Raises:
        FileNotFoundError: `path` is not a directory.
        ValueError: fewer than two class folders, or a class folder without files.
    """
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"image folder {path!r} is not a directory (expected one subfolder per class)")
    class_names = sorted(d for d in os.listdir(path) if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    if len(class_names) < 2:
        raise ValueError(f"image folder {path!r} has {len(class_names)} class subfolder(s) {class_names}; "
                         "need at least two (one subfolder per class)")
    files, labels, empty = [], [], []
    for label, name in enumerate(class_names):
        found = []
        for root, dirs, names in os.walk(os.path.join(path, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in names:
                if f.startswith("."):
                    continue
                if extensions is None or os.path.splitext(f)[1].lower() in extensions:
                    found.append(os.path.join(root, f))
        if not found:
            empty.append(name)
        found.sort()
        files += found
        labels += [label] * len(found)
    if empty:
        what = "files" if extensions is None else f"image files ({', '.join(extensions)})"
        raise ValueError(f"image folder {path!r}: class folder(s) {empty} contain no {what}")
    return files, np.asarray(labels, np.int32), class_names
