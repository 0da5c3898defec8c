"""Data sources (digits, TFDS, image folder, prepared TFRecords, arrays) and the pipeline entry points.

Every source is reduced to unbatched `(x, label)` elements where `x` is either encoded image bytes
(folder, TFRecord, TFDS) or an in-memory image (digits, arrays). One pipeline then shards, caches,
shuffles, decodes + augments, batches, mixes and prefetches them. Training elements go through the fast
native path of `augment.py`; validation elements (and `training=False`) through `kgooglenet.data.image`,
the same decode + shorter-side resize + center crop that evaluate, predict and the serving signature use.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from kgooglenet.data import augment as aug_ops
from kgooglenet.data import image as image_ops
from kgooglenet.data import records
from kgooglenet.data.config import AlbumentationsSpec, AugmentConfig, DataConfig, DatasetBundle
from kgooglenet.data.folders import list_image_folder, stratified_split
from kgooglenet.data.malloc import reuse_freed_memory



# --------------------------------------------------------------------------------------------
# small loaders
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _digits_cached(image_size: int | None):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32) * (255.0 / 16.0)  # 0..16 -> 0..255
    x = x[..., None]
    if image_size is not None and image_size != 8:
        x = tf.image.resize(x, [image_size, image_size], method="bilinear").numpy()
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    x = np.repeat(x, 3, axis=-1)
    x.setflags(write=False)
    y = d.target.astype(np.int32)
    y.setflags(write=False)
    return x, y


def load_digits_arrays(image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The embedded scikit-learn digits as RGB uint8 images in [0, 255].

    Args:
        image_size: resize the 8x8 digits to this square size (bilinear); None keeps 8x8.

    Returns:
        `(images uint8 [1797, S, S, 3], labels int32 [1797], class_names ["0", ..., "9"])`
        (read-only arrays, cached per size).

    Example:
    ```python
    x, y, names = load_digits_arrays(32)   # x.shape == (1797, 32, 32, 3)
    ```
    """
    if image_size is not None and image_size <= 0:
        raise ValueError(f"load_digits_arrays: image_size must be positive or None, received {image_size}")
    x, y = _digits_cached(image_size)
    return x, y, [str(i) for i in range(10)]


# --------------------------------------------------------------------------------------------
# sources -> unbatched splits
# --------------------------------------------------------------------------------------------
@dataclass
class _Split:
    ds: tf.data.Dataset | None = None  # unbatched (x, label); built lazily by `make(input_context)`
    size: int = 0                      # examples in the whole split
    encoded: bool = True               # x is encoded bytes (else an image tensor)
    make: object = None                # callable(input_context, training) -> (dataset, already_sharded: bool)
    may_fail: bool = False             # decoding may fail (raw folders): ignore_errors applies


@dataclass
class _Source:
    train: _Split
    val: _Split | None
    class_names: list[str]
    num_classes: int
    rgb_mean: tuple | None = None
    rgb_std: tuple | None = None
    extra: dict = field(default_factory=dict)


def _in_memory_split(x: np.ndarray, y: np.ndarray) -> _Split:
    def make(ctx, training):
        return tf.data.Dataset.from_tensor_slices((x, y)), False

    return _Split(size=len(y), encoded=False, make=make)


def _digits_source(config: DataConfig) -> _Source:
    x, y, names = load_digits_arrays(config.image_size)
    tr, va = stratified_split(y, config.val_split, config.seed)
    val = _in_memory_split(x[va], y[va]) if len(va) else None
    return _Source(_in_memory_split(x[tr], y[tr]), val, names, 10)


def _arrays_source(config: DataConfig) -> _Source:
    def check(arrays, what):
        if not (isinstance(arrays, (tuple, list)) and len(arrays) == 2):
            raise ValueError(f"DataConfig.{what} must be a pair (images, labels), received {type(arrays).__name__}")
        x, y = np.asarray(arrays[0]), np.asarray(arrays[1]).astype(np.int32).reshape(-1)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or len(x) != len(y):
            raise ValueError(f"DataConfig.{what}: expected images [N, H, W] or [N, H, W, 1|3|4] and labels [N], "
                             f"got images {x.shape} and labels {y.shape}")
        x = x.astype(np.uint8) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
        return x, y

    if config.train_arrays is None:
        raise ValueError("DataConfig(source='arrays') needs train_arrays=(images, labels)")
    x, y = check(config.train_arrays, "train_arrays")
    if config.val_arrays is not None:
        xv, yv = check(config.val_arrays, "val_arrays")
    else:
        tr, va = stratified_split(y, config.val_split, config.seed)
        x, y, xv, yv = x[tr], y[tr], x[va], y[va]
    num_classes = config.num_classes or int(max(y.max(initial=0), yv.max(initial=0)) + 1)
    names = list(config.class_names) if config.class_names else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"DataConfig.class_names has {len(names)} names but num_classes is {num_classes}")
    val = _in_memory_split(xv, yv) if len(yv) else None
    return _Source(_in_memory_split(x, y), val, names, num_classes)


def _file_split(files: list[str], labels: np.ndarray) -> _Split:
    files = np.asarray(files)

    def make(ctx, training):
        ds = tf.data.Dataset.from_tensor_slices((files, labels))
        return ds, False

    return _Split(size=len(files), encoded=True, make=make, may_fail=True)


def _folder_source(config: DataConfig) -> _Source:
    files, labels, names = list_image_folder(config.path)
    tr, va = stratified_split(labels, config.val_split, config.seed)
    files = np.asarray(files)
    val = _file_split(list(files[va]), labels[va]) if len(va) else None
    return _Source(_file_split(list(files[tr]), labels[tr]), val, names, len(names), extra={"read_files": True})


def _tfrecord_source(config: DataConfig) -> _Source:
    info = records.read_prepared(config.path)

    def split(files, size):
        if not files:
            return None

        def make(ctx, training):
            fds = tf.data.Dataset.from_tensor_slices(np.asarray(files))
            sharded = False
            if ctx is not None and ctx.num_input_pipelines > 1 and len(files) >= ctx.num_input_pipelines:
                fds = fds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
                sharded = True
            if training:  # a new shard order every epoch (seeded), on top of the example shuffle buffer
                fds = fds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
            ds = fds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return ds.map(records.parse_example, num_parallel_calls=tf.data.AUTOTUNE), sharded

        return _Split(size=size, encoded=True, make=make)

    return _Source(split(info["train_files"], info["train_size"]), split(info["val_files"], info["val_size"]),
                   info["class_names"], len(info["class_names"]), rgb_mean=info.get("mean"), rgb_std=info.get("std"))


def tfds_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None):
    """A TFDS builder for a dataset that is already prepared in `data_dir` (never downloads).

    When the dataset is not prepared but is one that TFDS builds from manually downloaded archives
    (e.g. imagenet2012) and `manual_dir` holds them, it is prepared into `data_dir` from there, offline.

    Raises:
        FileNotFoundError: the dataset is not prepared there; the message says what to put where.
    """
    import tensorflow_datasets as tfds

    if not name:
        raise ValueError("DataConfig(source='tfds') needs name=, e.g. 'cifar10'")
    data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    hint_prepare = (f"Prepare it where there is network with `tfds build {name} --data_dir DIR` (datasets with "
                    f"manual downloads, e.g. imagenet2012: put the archives in a manual_dir and add "
                    f"`--manual_dir MANUAL_DIR`), then copy DIR/{name.split(':')[0].split('/')[0]}/ into "
                    f"{data_dir}/ so that {data_dir}/{name.split(':')[0]}/<version>/dataset_info.json and its "
                    f"*.tfrecord* shards exist, and pass data_dir={data_dir!r}.")
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:  # DatasetNotFoundError, registry errors
        raise FileNotFoundError(f"TFDS dataset {name!r} not found in data_dir={data_dir!r} ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}). {hint_prepare}") from e
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if not builder.is_prepared() and manual and manual_dir and os.path.isdir(os.path.expanduser(manual_dir)):
        # datasets prepared from manually downloaded archives (imagenet2012, ...) need no network
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                manual_dir=os.path.expanduser(manual_dir), try_download_gcs=False))
        except Exception as e:
            raise FileNotFoundError(f"TFDS dataset {name!r}: preparing from manual_dir={manual_dir!r} into "
                                    f"data_dir={data_dir!r} failed ({type(e).__name__}: {e}). Manual download "
                                    f"instructions: {' '.join(str(manual).split())}") from e
    if not builder.is_prepared():
        extra = f" Manual download instructions: {' '.join(str(manual).split())}" if manual else ""
        raise FileNotFoundError(f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} (no "
                                f"{builder.data_dir}/dataset_info.json). Nothing is downloaded at run time. "
                                f"{hint_prepare}{extra}")
    return builder


def _tfds_source(config: DataConfig) -> _Source:
    import tensorflow_datasets as tfds

    builder = tfds_builder(config.name, config.data_dir, config.manual_dir)
    info = builder.info
    image_key, label_key = info.supervised_keys or ("image", "label")
    label_feature = info.features[label_key]
    num_classes = int(label_feature.num_classes)
    names = list(label_feature.names)
    train_split, val_split = config.train_split, config.val_split_name
    if val_split is None:
        if "validation" in info.splits:
            val_split = "validation"
        elif "test" in info.splits:
            val_split = "test"
        elif config.val_split > 0:
            keep = int(round(100 * (1 - config.val_split)))
            train_split, val_split = f"{config.train_split}[:{keep}%]", f"{config.train_split}[{keep}%:]"

    def split(name, shuffle: bool):
        if name is None:
            return None
        try:
            size = int(info.splits[name].num_examples)
        except Exception as e:
            raise ValueError(f"TFDS dataset {config.name!r} has no split {name!r}; it has {list(info.splits)}") from e

        def make(ctx, training):
            shards = 0
            try:
                shards = int(info.splits[name].num_shards)
            except Exception:
                pass
            use_ctx = ctx is not None and ctx.num_input_pipelines > 1 and shards >= ctx.num_input_pipelines
            rc = tfds.ReadConfig(shuffle_seed=config.seed, input_context=ctx if use_ctx else None,
                                 try_autocache=False)
            ds = builder.as_dataset(split=name, as_supervised=True, shuffle_files=shuffle, read_config=rc,
                                    decoders={image_key: tfds.decode.SkipDecoding()})
            return ds, use_ctx

        return _Split(size=size, encoded=True, make=make)

    return _Source(split(train_split, True), split(val_split, False), names, num_classes)


def _load_source(config: DataConfig) -> _Source:
    if config.source == "digits":
        return _digits_source(config)
    if config.source == "arrays":
        return _arrays_source(config)
    if config.source == "folder":
        if not config.path:
            raise ValueError("DataConfig(source='folder') needs path= (a folder of class subfolders)")
        return _folder_source(config)
    if config.source == "tfrecord":
        if not config.path:
            raise ValueError("DataConfig(source='tfrecord') needs path= (a directory written by `python -m kgooglenet prepare`)")
        return _tfrecord_source(config)
    return _tfds_source(config)


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------
def _seed_stream(seed: int | None, pipeline_id: int) -> tf.data.Dataset:
    """Pairs of int64: the per-element stateless seeds (different every epoch, same for a given seed)."""
    s = None if seed is None else int(seed) * 1000003 + pipeline_id
    return tf.data.Dataset.random(seed=s, rerandomize_each_iteration=True).batch(2, drop_remainder=True)


def _build(split: _Split, source: _Source, config: DataConfig, *, training: bool, augment,
           input_context, read_files: bool, normalization: tuple | None) -> tf.data.Dataset:
    reuse_freed_memory()  # every element and batch is a fresh multi-MiB buffer: see kgooglenet/data/malloc.py
    ds, sharded = split.make(input_context, training)
    pipes = input_context.num_input_pipelines if input_context is not None else 1
    pipe_id = input_context.input_pipeline_id if input_context is not None else 0
    batch = input_context.get_per_replica_batch_size(config.batch_size) if input_context else config.batch_size
    if pipes > 1 and not sharded:
        ds = ds.shard(pipes, pipe_id)
    autotune = config.num_parallel_calls or tf.data.AUTOTUNE
    cache = config.cache and split.encoded

    def read(d):
        return d.map(lambda f, y: (tf.io.read_file(f), y), num_parallel_calls=autotune) if read_files else d

    if cache:  # cache the encoded bytes, shuffle after
        ds = read(ds).cache()
    if training:
        ds = ds.shuffle(max(1, min(config.shuffle_buffer, split.size)), seed=config.seed,
                        reshuffle_each_iteration=True)
        if config.repeat:
            ds = ds.repeat()
    if not cache:  # shuffle file names, not file contents
        ds = read(ds)
    if training:
        ds = aug_ops.repeat_each(ds, aug_ops.repeats_of(augment))  # repeated augmentation (after sharding)

    image_size = config.image_size
    crop_fraction = image_ops.eval_crop_fraction(config.crop_fraction, image_size)
    native = augment if (training and isinstance(augment, AugmentConfig)) else None
    alb = augment if (training and isinstance(augment, AlbumentationsSpec)) else None
    mixes = training and augment is not None and augment.mixes
    if alb is not None:
        from kgooglenet.data.albumentations import albumentations_fn

        alb_apply = albumentations_fn(alb, image_size)

    def element(xy, seed):
        x, y = xy
        if not training:  # the evaluation-style path of evaluate, predict and the serving signature
            img = image_ops.decode(x) if split.encoded else image_ops.to_rgb(x)
            img = image_ops.center_crop(img, image_size, crop_fraction)
        elif alb is not None:
            img = image_ops.decode(x) if split.encoded else tf.cast(
                tf.clip_by_value(tf.cast(image_ops.to_rgb(x), tf.float32), 0, 255), tf.uint8)
            img = alb_apply(img, seed)
        elif split.encoded:
            img = aug_ops.preprocess_encoded(x, seed, training=training, aug=native, image_size=image_size,
                                             crop_fraction=crop_fraction)
        else:
            img = aug_ops.preprocess_decoded(x, seed, training=training, aug=native, image_size=image_size,
                                             crop_fraction=crop_fraction)
        y = tf.cast(y, tf.int32)
        return (img, y, seed) if mixes else (img, y)

    if training:
        ds = tf.data.Dataset.zip((ds, _seed_stream(config.seed, pipe_id)))
        ds = ds.map(element, num_parallel_calls=autotune, deterministic=True if config.seed is not None else None)
    else:
        zero = tf.zeros([2], tf.int64)
        ds = ds.map(lambda x, y: element((x, y), zero), num_parallel_calls=autotune)
    if split.may_fail and config.ignore_errors:
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch, drop_remainder=training and config.drop_remainder, num_parallel_calls=autotune,
                  deterministic=True)
    if mixes:
        def mix(x, y, seeds):
            return aug_ops.mix_batch(x, y, seeds[0], num_classes=source.num_classes,
                                     mixup_alpha=augment.mixup_alpha, cutmix_alpha=augment.cutmix_alpha,
                                     mix_prob=augment.mix_prob)
        ds = ds.map(mix, num_parallel_calls=autotune)
    if normalization is not None:  # opt-in, train and val alike
        mean, std = normalization
        ds = ds.map(lambda x, y: (aug_ops.normalize(x, mean, std), y), num_parallel_calls=autotune)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = config.seed is not None or not training
    options.experimental_optimization.map_parallelization = True
    options.experimental_optimization.parallel_batch = True
    # one thread per op: parallelism comes from parallel map calls, not from splitting each resize
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def _prepare(config: DataConfig):
    if not isinstance(config, DataConfig):
        raise ValueError(f"expected a DataConfig, received {type(config).__name__}")
    source = _load_source(config)
    augment = aug_ops.resolve_augment(config.augment, config.source, config.image_size)
    return source, augment


def _build_split(source, augment, config, split: str, training: bool | None, input_context):
    if split not in ("train", "val"):
        raise ValueError(f"make_dataset: split must be 'train' or 'val', received {split!r}")
    s = source.train if split == "train" else source.val
    if s is None:
        return None
    training = (split == "train") if training is None else training
    normalization = None
    if augment is not None and getattr(augment, "mean", None) is not None:
        normalization = (tuple(augment.mean), tuple(augment.std))
    return _build(s, source, config, training=training, augment=augment if training else None,
                  input_context=input_context, read_files=source.extra.get("read_files", False),
                  normalization=normalization)


def make_dataset(config: DataConfig, split: str = "train", *, training: bool | None = None,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset | None:
    """One batched, prefetched split ("train" or "val") of `config`'s source.

    Args:
        config: the DataConfig.
        split: "train" or "val".
        training: augment + shuffle (default: split == "train").
        input_context: from `strategy.distribute_datasets_from_function`; shards by
            `input_pipeline_id` and batches with the per-replica batch size.

    Returns:
        The dataset, or None for "val" when the source has no validation data (val_split=0).

    Example:
    ```python
    val = make_dataset(DataConfig(source="folder", path="images/"), "val")
    ```
    """
    source, augment = _prepare(config)
    return _build_split(source, augment, config, split, training, input_context)


def validation_images(config: DataConfig) -> tuple[tf.data.Dataset, list[str], int]:
    """The validation split as it is stored: unbatched `(RGB image [H, W, 3] of its own size, uint8 or float in
    [0, 255], int32 label)`, no resize or crop; for evaluations that crop the full image themselves (the paper's
    10 and 144 crops). Unreadable files are skipped with a warning when `config.ignore_errors`.

    Returns:
        (dataset, class names, number of images).

    Raises:
        ValueError: the source has no validation split (val_split=0).
    """
    reuse_freed_memory()  # as in _build
    source, _ = _prepare(config)
    if source.val is None:
        raise ValueError(f"the DataConfig has no validation split (val_split={config.val_split})")
    split = source.val
    ds, _ = split.make(None, False)
    if source.extra.get("read_files", False):
        ds = ds.map(lambda f, y: (tf.io.read_file(f), y), num_parallel_calls=tf.data.AUTOTUNE)

    def decode(x, y):
        image = image_ops.decode(x) if split.encoded else image_ops.to_rgb(x)
        return image, tf.cast(y, tf.int32)

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if split.may_fail and config.ignore_errors:
        ds = ds.ignore_errors(log_warning=True)
    return ds, list(source.class_names), int(split.size)


def make_datasets(config: DataConfig, input_context: tf.distribute.InputContext | None = None) -> DatasetBundle:
    """Train and val datasets plus sizes and class names (see `DatasetBundle`).

    Train batches are augmented (native by default), shuffled, and yield `(float32 [B, S, S, 3] in
    [0, 255], int32 [B])` (float32 one-hot labels with mixup/cutmix). Val batches get
    `kgooglenet.data.image.center_crop` only (what evaluate and the exported model see). With a seed, order and augmentation are deterministic.

    Args:
        config: the DataConfig.
        input_context: `tf.distribute.InputContext` when called inside
            `strategy.distribute_datasets_from_function`: the data is sharded by input pipeline and
            batched with `input_context.get_per_replica_batch_size(config.batch_size)`.

    Example:
    ```python
    bundle = make_datasets(DataConfig(seed=0))
    model.fit(bundle.train, validation_data=bundle.val, epochs=20)
    ```
    """
    source, augment = _prepare(config)
    train = _build_split(source, augment, config, "train", None, input_context)
    val = _build_split(source, augment, config, "val", None, input_context)
    val_size = source.val.size if source.val is not None else 0
    return DatasetBundle(
        train=train,
        val=val,
        num_classes=source.num_classes,
        class_names=list(source.class_names),
        train_size=source.train.size,
        val_size=val_size,
        steps_per_epoch=aug_ops.steps(source.train.size * aug_ops.repeats_of(augment), config.batch_size,
                                      config.drop_remainder),
        validation_steps=aug_ops.steps(val_size, config.batch_size, False),
        image_size=config.image_size,
        one_hot_train=bool(augment is not None and augment.mixes),
        rgb_mean=source.rgb_mean,
        rgb_std=source.rgb_std,
    )
