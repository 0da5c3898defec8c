"""The ImageNet-1k class index shipped with the package, and `decode_predictions` (offline, like keras.applications').

The index (`imagenet1k_class_index.tsv`, provenance and license beside it) lists the 1000 classes in the order of
Caffe's and torchvision's ImageNet models (sorted WordNet ids).

Example:
>>> CLASS_INDEX[1].wnid, CLASS_INDEX[1].name
('n01443537', 'goldfish')
>>> preds = np.zeros((1, 1000), "float32"); preds[0, 1] = 0.9; preds[0, 0] = 0.1
>>> decode_predictions(preds, top=2)[0][0][:2]
('n01443537', 'goldfish')
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from kgooglenet import specs

CLASS_INDEX_FILE = "imagenet1k_class_index.tsv"
NUM_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class ImageNetClass:
    index: int  # class id (the model's output position)
    wnid: str  # WordNet id, e.g. "n01440764" (unique)
    names: tuple[str, ...]  # synonyms, e.g. ("tench", "Tinca tinca")

    @property
    def name(self) -> str:
        """The first synonym (not unique: "crane" is both 134 and 517)."""
        return self.names[0]


def class_index_path() -> str:
    return os.path.join(os.path.dirname(__file__), CLASS_INDEX_FILE)


@functools.lru_cache(maxsize=1)
def class_index() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet classes, read from the package's TSV file."""
    path = class_index_path()
    classes = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or int(parts[0]) != len(classes):
                raise ValueError(f"{path}:{line_no}: expected 'index<TAB>wnid<TAB>names' in order, received {line!r}")
            classes.append(ImageNetClass(int(parts[0]), parts[1], tuple(n.strip() for n in parts[2].split(","))))
    if len(classes) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} classes, found {len(classes)}")
    return tuple(classes)


class _LazyIndex:
    """Sequence view of `class_index()` read on first use (no import-time file access)."""

    def __getitem__(self, i):
        return class_index()[i]

    def __len__(self):
        return NUM_CLASSES

    def __iter__(self):
        return iter(class_index())


CLASS_INDEX = _LazyIndex()


def decode_predictions(preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """The `top` classes of each row of ImageNet predictions, as in `keras.applications.*.decode_predictions`.

    Args:
        preds: array-like of shape (batch, 1000): probabilities (or logits: the order is the same). A model output
            dict with aux heads is accepted: its "main" entry is used.
        top: how many classes per image.

    Returns:
        One list per image of (wnid, name, score) tuples, best first.
    """
    if isinstance(preds, dict):
        if specs.MAIN_HEAD not in preds:
            raise ValueError(f"`preds`: a dict must have a {specs.MAIN_HEAD!r} entry, received keys {sorted(preds)}")
        preds = preds[specs.MAIN_HEAD]
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(
            f"`decode_predictions` expects a batch of ImageNet predictions of shape (batch, {NUM_CLASSES}), "
            f"received an array of shape {preds.shape}"
        )
    if not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"`top` must be an integer in [1, {NUM_CLASSES}], received top={top!r}")
    classes = class_index()
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(classes[i].wnid, classes[i].name, float(row[i])) for i in best])
    return results


__all__ = ["CLASS_INDEX", "ImageNetClass", "class_index", "class_index_path", "decode_predictions"]
