"""Data sources (digits, TFDS, image folder, prepared TFRecords, arrays) and the pipeline entry points."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kgooglenet.data.config import DataConfig, DatasetBundle


def load_digits_arrays(image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The embedded scikit-learn digits as RGB uint8 images in [0, 255].

    Args:
        image_size: resize the 8x8 digits to this square size (bilinear); None keeps 8x8.

    Returns:
        `(images uint8 [1797, S, S, 3], labels int32 [1797], class_names ["0", ..., "9"])`.
    """
    raise NotImplementedError


def stratified_split(labels: np.ndarray, val_split: float, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of example indices: `(train_indices, val_indices)`, each sorted."""
    raise NotImplementedError


def list_image_folder(path: str) -> tuple[list[str], np.ndarray, list[str]]:
    """List a folder of class subfolders: `(files, labels int32, class_names)` (classes sorted by name)."""
    raise NotImplementedError


def make_dataset(config: DataConfig, split: str = "train", *, training: bool | None = None,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One batched, prefetched split ("train" or "val") of `config`'s source.

    Args:
        config: the DataConfig.
        split: "train" or "val".
        training: augment + shuffle (default: split == "train").
        input_context: from `strategy.distribute_datasets_from_function`; shards by
            `input_pipeline_id` and batches with the per-replica batch size.
    """
    raise NotImplementedError


def make_datasets(config: DataConfig, input_context: tf.distribute.InputContext | None = None) -> DatasetBundle:
    """Train and val datasets plus sizes and class names (see `DatasetBundle`)."""
    raise NotImplementedError
