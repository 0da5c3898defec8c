"""`evaluate()`: top-1/top-5, per-class accuracy and a confusion matrix of a model or ensemble over a dataset,
with 1, 10 or 144 test-time crops."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from kgooglenet.evaluate.crops import crop_count, multi_crop
from kgooglenet.evaluate.ensemble import Ensemble
from kgooglenet.evaluate.report import EvaluationResult


def decode_file(path):
    """Reads and decodes one image file in a TF graph: RGB uint8 (H, W, 3) (JPEG, PNG, GIF's first frame, BMP)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def image_files_dataset(files, labels) -> tf.data.Dataset:
    """An unbatched dataset of full-size decoded images (uint8 RGB, any size) and int32 labels, for multi-crop
    evaluation of a folder: `files, labels, names = kgooglenet.data.list_image_folder(path)`.

    Files TF cannot decode are skipped with a logged warning.
    """
    files = [str(f) for f in files]
    labels = np.asarray(labels, np.int32)
    if len(files) != len(labels):
        raise ValueError(f"`files` and `labels` must have the same length, received {len(files)} and {len(labels)}")
    ds = tf.data.Dataset.from_tensor_slices((files, labels))
    ds = ds.map(lambda f, y: (decode_file(f), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.ignore_errors(log_warning=True)


def _from_config(config, crops: int, size: int):
    """The validation dataset, class names and size of a `kgooglenet.data.DataConfig`.

    crops == 1: the pipeline's own evaluation transform (shorter side image_size / crop_fraction, center crop).
    crops > 1: the validation images at their own size (`kgooglenet.data.validation_images`), so the multi-crop
    scheme sees whole images: the left/center/right squares of the 144 crops are distinct, as in the paper.
    """
    from kgooglenet.data import make_datasets, validation_images

    if crops > 1:
        return validation_images(config)
    bundle = make_datasets(dataclasses.replace(config, image_size=size))
    if bundle.val is None:
        raise ValueError(f"`data`: the DataConfig has no validation split (val_split={config.val_split})")
    return bundle.val, list(bundle.class_names), int(bundle.val_size)


def _as_dataset(data):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        return tf.data.Dataset.from_tensor_slices((x, y))
    raise ValueError(
        "`data` must be a tf.data.Dataset of (image, label), a (images, labels) pair of arrays, or a "
        f"kgooglenet.data.DataConfig, received {type(data).__name__}"
    )


def _element_rank(ds):
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) >= 2):
        raise ValueError(f"`data` must yield (image, label) pairs, received elements {spec}")
    return spec[0].shape.rank, spec[1].shape.rank


def evaluate(
    models,
    data,
    crops=1,
    head_weights=None,
    image_size=None,
    batch_size=32,
    steps=None,
    class_names=None,
    name=None,
    from_logits=None,
    jit_compile=False,
    output_dir=None,
    progress=True,
) -> EvaluationResult:
    """Top-1/top-5 accuracy, per-class accuracy and the confusion matrix of a model or ensemble on a dataset.

    Args:
        models: a keras.Model, a list of models (an ensemble: softmax averaged over models), or an `Ensemble`.
        data: a tf.data.Dataset of (image, label), batched (B, H, W, 3) or unbatched (H, W, 3) of any sizes, images
            float32/uint8 RGB in [0, 255], labels int (or one-hot); a pair of arrays (images, labels); or a
            `kgooglenet.data.DataConfig` (its validation split, see `_from_config` for multi-crop).
        crops: None (images used as given: they must already have the model's input size), 1 (shorter side 256,
            center 224), 10 or 144 (the paper's schemes; see `kgooglenet.evaluate.crops`), or "center", "ten",
            "paper144". With a DataConfig, 1 means the pipeline's own resize + center crop.
        head_weights: aux heads' weights for models with aux heads, e.g. {"main": 1, "aux1": 0.3, "aux2": 0.3};
            None = main classifier only.
        image_size: the crop size for models with a dynamic input size (default: the models' input size, else 224).
        batch_size: images per batch for crops None/1, and the most crops sent through a model at once.
        steps: stop after this many batches (of the input dataset) when set.
        class_names: names by class id (default: the DataConfig's, else "0", "1", ...).
        name: label of the result in tables (default: the ensemble's name).
        from_logits: see `Ensemble`.
        jit_compile: compile the forward passes with XLA.
        output_dir: when set, `EvaluationResult.save(output_dir)` writes metrics.json, per_class.csv,
            most_confused.csv and confusion.png there.
        progress: show a progress bar.

    Returns:
        An `EvaluationResult`.

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> model = GoogLeNet("cifar", num_classes=10, width=0.125)
    >>> x, y = np.zeros((8, 32, 32, 3), "float32"), np.arange(8) % 10
    >>> evaluate(model, (x, y), crops=10, progress=False).num_examples
    8
    """
    ensemble = models if isinstance(models, Ensemble) else Ensemble(
        models, head_weights=head_weights, from_logits=from_logits, batch_size=max(batch_size, 1),
        jit_compile=jit_compile)
    size = ensemble.image_size or image_size or 224
    if image_size is not None and ensemble.image_size not in (None, image_size):
        raise ValueError(f"`image_size`: the models take {ensemble.image_size}px inputs, received {image_size}")
    n_crops = None if crops is None else crop_count(crops)
    total = None
    from kgooglenet.data import DataConfig

    if isinstance(data, DataConfig):
        ds, config_names, total = _from_config(data, n_crops or 1, size)
        class_names = class_names or config_names
        if n_crops == 1:
            n_crops = None  # the pipeline already did resize 256 + center 224
    else:
        ds = _as_dataset(data)
    image_rank, _ = _element_rank(ds)
    if image_rank not in (3, 4):
        raise ValueError(f"`data` images must be (H, W, C) or (B, H, W, C), received rank {image_rank}")
    hw = tuple(ds.element_spec[0].shape[-3:-1])
    if n_crops is None and None not in hw and hw != (size, size):
        raise ValueError(f"`data`: images of size {hw[0]}x{hw[1]} do not fit the models (input size {size}) with "
                         f"crops=None; pass crops=1 to resize and center crop them")
    if steps is not None:
        ds = ds.take(steps) if image_rank == 4 else ds.batch(batch_size).take(steps).unbatch()
    if image_rank == 4:
        ds = ds.unbatch()
    if total is None:
        card = int(ds.cardinality())
        total = card if card >= 0 else None
    if steps is not None and total is not None:
        total = min(total, steps * batch_size)

    def prepare(image, label):
        label = tf.cast(tf.argmax(label, -1) if label.shape.rank == 1 else label, tf.int32)
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        elif image.shape[-1] == 4:  # RGBA: drop alpha
            image = image[..., :3]
        image = tf.cast(image, tf.float32)
        if n_crops is None:
            image = tf.ensure_shape(image, [size, size, 3])[None]
        else:
            image = multi_crop(image, n_crops, size)
        return image, label

    per_batch = batch_size if n_crops is None else max(1, batch_size // n_crops)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_batch).prefetch(2)

    num_classes = ensemble.num_classes
    confusion = np.zeros((num_classes, num_classes), np.int64)
    k = min(5, num_classes)
    top5_hits = 0
    seen = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="img", desc=f"evaluate {ensemble.name} x{n_crops or 1} crops")
    start = time.perf_counter()
    iterator = iter(ds)
    try:
        while True:
            try:
                crops_batch, labels = next(iterator)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError as e:
                raise ValueError(
                    f"`data`: an image does not fit the models (input size {size}) with crops=None; pass crops=1 "
                    f"to resize and center crop. ({e.message.strip().splitlines()[0]})"
                ) from e
            probs = ensemble.predict_crops(crops_batch)
            labels = labels.numpy()
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"`data`: labels must be in [0, {num_classes}), received {labels.min()}..{labels.max()}")
            pred = probs.argmax(axis=1)
            np.add.at(confusion, (labels, pred), 1)
            topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]
            top5_hits += int((topk == labels[:, None]).any(axis=1).sum())
            seen += len(labels)
            if bar is not None:
                bar.update(len(labels))
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("`data` yielded no images")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"`class_names` has {len(names)} names but the models have {num_classes} classes")
    result = EvaluationResult(
        name=name or ensemble.name,
        num_models=len(ensemble.models),
        crops=n_crops or 1,
        num_examples=seen,
        top1=float(np.trace(confusion) / seen),
        top5=float(top5_hits / seen),
        confusion=confusion,
        class_names=names,
        macs_per_image=ensemble.macs_per_crop(size) * (n_crops or 1),
        seconds=time.perf_counter() - start,
        heads=ensemble.heads_used,
    )
    if output_dir:
        result.save(output_dir)
    return result
