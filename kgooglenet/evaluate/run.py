"""`evaluate()`: top-1/top-k, per-class accuracy and a confusion matrix of a model or ensemble over a dataset,
with 1, 10 or 144 test-time crops.

Models: keras.Models, or run directories / `.keras` files (`kgooglenet.saving`: the file says its class names and
input size). Data: a tf.data.Dataset or arrays, a `kgooglenet.data.DataConfig` (its validation split), or a path: a
prepared directory (`python -m kgooglenet prepare`: its val split) or a folder of class subfolders (every image).
Images that cannot be decoded are counted and listed (`EvaluationResult.undecodable`), never silently dropped.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf

from kgooglenet.data import image as image_ops
from kgooglenet.evaluate.crops import crop_count, multi_crop
from kgooglenet.evaluate.ensemble import Ensemble
from kgooglenet.evaluate.report import EvaluationResult

TOP_K = 5  # the paper's top-5, capped below the class count


def decode_file(path):
    """Reads and decodes one image file in a TF graph: RGB uint8 (H, W, 3) (JPEG, PNG, GIF's first frame, BMP, WebP)."""
    return image_ops.decode(tf.io.read_file(path))


def image_files_dataset(files, labels) -> tf.data.Dataset:
    """An unbatched dataset of full-size decoded images for multi-crop evaluation of files:
    `(uint8 RGB upright (EXIF applied), int32 label, path, ok)`, see `kgooglenet.data.image.files_dataset`;
    `evaluate` counts and lists the files with ok=False. E.g. `files, labels, names = list_image_folder(path)`."""
    return image_ops.files_dataset(files, labels)


def prepared_val_dataset(path: str) -> tuple[tf.data.Dataset, list[str], int, list[str]]:
    """The val split of a prepared directory as full-size images: (dataset of (uint8 image, label, file name, ok),
    class names, number of images, the val split's files the preparer could not convert)."""
    from kgooglenet.data import read_prepared
    from kgooglenet.data.records import parse_example

    info = read_prepared(path)
    if not info["val_files"]:
        raise ValueError(f"`data`: the preparation {path!r} has no val split (it was made with val_split=0)")

    def element(serialized):
        raw, label, name = parse_example(serialized, with_filename=True)
        image, ok = image_ops.try_decode(raw)
        return image, label, name, ok

    ds = tf.data.TFRecordDataset(info["val_files"]).map(element, num_parallel_calls=tf.data.AUTOTUNE,
                                                         deterministic=True)
    return ds, info["class_names"], info["val_size"], [p for p, _ in info["val_skipped"]]


def _from_config(config):
    """The validation split of a DataConfig as full-size images (the crops, 1 included, are cut here with the
    pipeline's own `kgooglenet.data.image` functions): (dataset, class names, size, undecodable known up front)."""
    from kgooglenet.data import list_image_folder, stratified_split, validation_images

    if config.source == "folder":  # files: decoded here so undecodable ones are counted
        files, labels, names = list_image_folder(config.path)
        _, va = stratified_split(labels, config.val_split, config.seed)
        if not len(va):
            raise ValueError(f"`data`: the DataConfig has no validation split (val_split={config.val_split})")
        return image_files_dataset([files[i] for i in va], labels[va]), names, len(va), []
    if config.source == "tfrecord":
        return prepared_val_dataset(config.path)
    ds, names, total = validation_images(config)
    return ds, names, total, []


def data_from_path(path: str):
    """`data` for a path: a prepared directory's val split, or every image of a folder of class subfolders."""
    from kgooglenet.data import DataConfig, list_image_folder
    from kgooglenet.data.records import is_prepared

    path = os.path.expanduser(os.fspath(path))
    if is_prepared(path):
        return DataConfig(source="tfrecord", path=path)
    if os.path.isdir(path):
        files, labels, names = list_image_folder(path)
        return image_files_dataset(files, labels), names
    raise FileNotFoundError(f"`data`: {path!r} is neither a prepared directory nor a folder of class subfolders")


def _load_models(models):
    """keras.Models or an Ensemble as given; paths (run directories, .keras files) loaded, with their ModelInfo."""
    from kgooglenet.saving import load_model, model_info

    items = models if isinstance(models, (list, tuple)) else [models]
    if not any(isinstance(m, (str, os.PathLike)) for m in items):
        return models, []
    loaded, infos = [], []
    for m in items:
        if isinstance(m, (str, os.PathLike)):
            infos.append(model_info(m))
            loaded.append(load_model(m))
        else:
            loaded.append(m)
    names = {i.class_names for i in infos}
    if len(names) > 1:
        raise ValueError(f"`models`: the model files have different class names: {sorted(names)}")
    return loaded, infos


def _as_dataset(data):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        return tf.data.Dataset.from_tensor_slices((x, y))
    raise ValueError(
        "`data` must be a tf.data.Dataset of (image, label), a (images, labels) pair of arrays, a "
        f"kgooglenet.data.DataConfig or a path, received {type(data).__name__}"
    )


def _element_rank(ds):
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) in (2, 4)):
        raise ValueError(f"`data` must yield (image, label) or (image, label, source, ok) elements, received {spec}")
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
    keep_probabilities=False,
) -> EvaluationResult:
    """Top-1/top-k accuracy, per-class accuracy and the confusion matrix of a model or ensemble on a dataset.

    Args:
        models: a keras.Model, a run directory or `.keras` model file (`kgooglenet.saving.load_model`: class names
            and input size come from the file), a list of these (an ensemble: softmax averaged over models), or an
            `Ensemble`.
        data: a tf.data.Dataset of (image, label) (or (image, label, source, ok) as `image_files_dataset` yields),
            batched (B, H, W, 3) or unbatched (H, W, 3) of any sizes, images float32/uint8 RGB in [0, 255], labels int
            (or one-hot); a pair of arrays (images, labels); a `kgooglenet.data.DataConfig` (its validation split, at
            full size; the crops are cut here, 1 crop with the DataConfig's crop_fraction: what training validated
            on); or a path: a prepared directory (its val split) or a folder of class subfolders (every image).
        crops: None (images used as given: they must already have the model's input size), 1
            (`kgooglenet.data.image.center_crop`: shorter side 256, center 224), 10 or 144 (the paper's schemes; see
            `kgooglenet.evaluate.crops`), or "center", "ten", "paper144".
        head_weights: aux heads' weights for models with aux heads, e.g. {"main": 1, "aux1": 0.3, "aux2": 0.3};
            None = main classifier only.
        image_size: the crop size for models with a dynamic input size (default: the models' input size, else 224).
        batch_size: images per batch for crops None/1, and the most crops sent through a model at once.
        steps: stop after this many batches (of the input dataset) when set.
        class_names: names by class id (default: the model files', else the data's, else "0", "1", ...).
        name: label of the result in tables (default: the ensemble's name).
        from_logits: see `Ensemble`.
        jit_compile: compile the forward passes with XLA.
        output_dir: when set, `EvaluationResult.save(output_dir)` writes metrics.json, per_class.csv,
            most_confused.csv, confusion.png and per_class.png there.
        progress: show a progress bar.
        keep_probabilities: keep each image's probabilities and label in the result (`probabilities`, `labels`).

    Returns:
        An `EvaluationResult`. Its top-k is top-5, or top-(classes - 1) for fewer than 6 classes (top-k of all
        classes would always be 1); with 2 classes there is none (`top5` None, `top_k` 0).

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> model = GoogLeNet("cifar", num_classes=10, width=0.125)
    >>> x, y = np.zeros((8, 32, 32, 3), "float32"), np.arange(8) % 10
    >>> evaluate(model, (x, y), crops=10, progress=False).num_examples
    8
    """
    from kgooglenet.data import DataConfig

    models, infos = _load_models(models)
    if infos and class_names is None:
        class_names = list(infos[0].class_names)
    ensemble = models if isinstance(models, Ensemble) else Ensemble(
        models, head_weights=head_weights, from_logits=from_logits, batch_size=max(batch_size, 1),
        jit_compile=jit_compile)
    trained = {i.image_size for i in infos} - {None}
    size = ensemble.image_size or image_size or (trained.pop() if len(trained) == 1 else None) or 224
    if image_size is not None and ensemble.image_size not in (None, image_size):
        raise ValueError(f"`image_size`: the models take {ensemble.image_size}px inputs, received {image_size}")
    n_crops = None if crops is None else crop_count(crops)
    total, undecodable, crop_fraction = None, [], None
    if isinstance(data, (str, os.PathLike)):
        data = data_from_path(data)
        if isinstance(data, tuple):
            data, folder_names = data
            class_names = class_names or folder_names
    if isinstance(data, DataConfig):
        crop_fraction = data.crop_fraction
        ds, config_names, total, undecodable = _from_config(data)
        undecodable = list(undecodable)
        class_names = class_names or config_names
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
    if len(ds.element_spec) == 2:  # no decode status: every image counts
        ds = ds.map(lambda x, y: (x, y, tf.constant(""), tf.constant(True)))
    if total is None:
        card = int(ds.cardinality())
        total = card if card >= 0 else None
    if steps is not None and total is not None:
        total = min(total, steps * batch_size)

    def prepare(image, label, source, ok):
        label = tf.cast(tf.argmax(label, -1) if label.shape.rank == 1 else label, tf.int32)
        image = tf.cast(image_ops.to_rgb(image), tf.float32)
        if n_crops is None:
            image = tf.ensure_shape(image, [size, size, 3])[None]
        elif n_crops == 1:
            image = image_ops.center_crop(image, size, crop_fraction)[None]
        else:
            image = multi_crop(image, n_crops, size)
        return image, label, source, ok

    per_batch = batch_size if n_crops is None else max(1, batch_size // n_crops)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_batch).prefetch(2)

    num_classes = ensemble.num_classes
    confusion = np.zeros((num_classes, num_classes), np.int64)
    k = min(TOP_K, num_classes - 1)
    topk_hits = 0
    seen = 0
    kept_probs, kept_labels = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="img", desc=f"evaluate {ensemble.name} x{n_crops or 1} crops")
    start = time.perf_counter()
    iterator = iter(ds)
    try:
        while True:
            try:
                crops_batch, labels, sources, ok = next(iterator)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError as e:
                raise ValueError(
                    f"`data`: an image does not fit the models (input size {size}) with crops=None; pass crops=1 "
                    f"to resize and center crop. ({e.message.strip().splitlines()[0]})"
                ) from e
            ok = ok.numpy()
            if not ok.all():
                undecodable += [s.decode("utf-8", "replace") for s in sources.numpy()[~ok]]
                if bar is not None:
                    bar.update(int((~ok).sum()))
                if not ok.any():
                    continue
                crops_batch, labels = tf.boolean_mask(crops_batch, ok), tf.boolean_mask(labels, ok)
            probs = ensemble.predict_crops(crops_batch)
            labels = labels.numpy()
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"`data`: labels must be in [0, {num_classes}), received {labels.min()}..{labels.max()}")
            pred = probs.argmax(axis=1)
            np.add.at(confusion, (labels, pred), 1)
            if k > 1:
                topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]
                topk_hits += int((topk == labels[:, None]).any(axis=1).sum())
            if keep_probabilities:
                kept_probs.append(probs)
                kept_labels.append(labels)
            seen += len(labels)
            if bar is not None:
                bar.update(len(labels))
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("`data` yielded no images" + (f" ({len(undecodable)} could not be decoded, e.g. "
                                                       f"{undecodable[0]!r})" if undecodable else ""))
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"`class_names` has {len(names)} names but the models have {num_classes} classes")
    result = EvaluationResult(
        name=name or ensemble.name,
        num_models=len(ensemble.models),
        crops=n_crops or 1,
        num_examples=seen,
        top1=float(np.trace(confusion) / seen),
        top5=float(topk_hits / seen) if k > 1 else None,
        confusion=confusion,
        class_names=names,
        macs_per_image=ensemble.macs_per_crop(size) * (n_crops or 1),
        seconds=time.perf_counter() - start,
        heads=ensemble.heads_used,
        top_k=k if k > 1 else 0,
        undecodable=undecodable,
        probabilities=np.concatenate(kept_probs) if keep_probabilities else None,
        labels=np.concatenate(kept_labels) if keep_probabilities else None,
    )
    if output_dir:
        result.save(output_dir)
    return result

