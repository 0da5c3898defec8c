"""Configuration dataclasses of the data pipelines.

`DataConfig` says where the images come from and how they are batched; `AugmentConfig` is the
native TF augmentation (the fast default); `AlbumentationsSpec` is a declarative albumentations
pipeline run inside tf.data. `DatasetBundle` is what `kgooglenet.data.make_datasets` returns.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SOURCES = ("digits", "tfds", "folder", "tfrecord", "arrays")

# Sentinel for DataConfig.augment: pick the augmentation recommended for the source and image
# size (see `kgooglenet.data.augment.default_augment`).
AUTO = "auto"


class ConfigError(ValueError):
    """A config value (or name) that is not accepted; the message names the field, the value and what is expected."""


# --- validation ------------------------------------------------------------------------------------------------------
# Every config dataclass has a table {field name: Field(...)} checked by `validate(obj, table)` in __post_init__
# (Python, from_dict/JSON and the CLI all construct the dataclass, so all three get the same checks). A new field
# is one line in its class's table; `missing_rules` lets a test insist that every field has one.

@dataclass(frozen=True)
class Field:
    """What one config field accepts. `kind` is "int", "float", "bool", "str", "choice", "pair" (two floats,
    low <= high), "floats" (`length` floats), "strs" (list of str) or "any" (`check` alone decides)."""

    kind: str
    low: float | None = None  # lower bound (inclusive unless low_open)
    high: float | None = None  # upper bound (inclusive unless high_open)
    low_open: bool = False
    high_open: bool = False
    optional: bool = False  # None is accepted
    choices: tuple = ()  # kind "choice": the accepted values
    length: int | None = None  # kind "floats": number of items
    check: Any = None  # extra check: value -> error text ("" when fine)

    def expected(self) -> str:
        what = {"int": "an int", "float": "a number", "bool": "True or False", "str": "a string",
                "pair": "a (low, high) pair of numbers with low <= high", "strs": "a list of strings",
                "floats": f"{self.length} numbers", "any": "a valid value",
                "choice": f"one of {self.choices!r}"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if bounds:
            what += (" with every item " if self.kind in ("pair", "floats") else " ") + " and ".join(bounds)
        return what + (" or None" if self.optional else "")

    def _in_range(self, x) -> bool:
        return not ((self.low is not None and (x < self.low or (self.low_open and x == self.low)))
                    or (self.high is not None and (x > self.high or (self.high_open and x == self.high))))

    def normalize(self, value):
        """The checked value (ints for "int", floats for "float", tuples for pairs) or raises TypeError/ValueError
        (the caller adds the field name)."""
        if value is None and self.optional:
            return None
        kind = self.kind
        if kind == "choice":
            if not any(value == c and type(value) is type(c) for c in self.choices):
                raise ValueError
            return value
        if kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError
            return bool(value)
        if kind == "str":
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == "strs":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return list(value)
        if kind in ("int", "float"):
            value = _number(value, integer=kind == "int")
            if not self._in_range(value):
                raise ValueError
            return value
        if kind in ("pair", "floats"):
            n = 2 if kind == "pair" else self.length
            if not isinstance(value, (list, tuple)) or len(value) != n:
                raise TypeError
            items = tuple(_number(v, integer=False) for v in value)
            if not all(self._in_range(v) for v in items) or (kind == "pair" and items[0] > items[1]):
                raise ValueError
            return items
        return value


def _number(value, integer: bool):
    """int (integer=True: Python/NumPy ints only, never 2.5 or "2") or float (ints accepted) or TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError
    if integer:
        if not isinstance(value, numbers.Integral):
            raise TypeError
        return int(value)
    value = float(value)
    if math.isnan(value):
        raise ValueError
    return value


def validate(obj, table: dict[str, Field]) -> None:
    """Check (and normalize in place) every field of the dataclass `obj` named in `table`; ValueError naming the
    field, the value received and what is expected."""
    owner = type(obj).__name__
    for name, rule in table.items():
        value = getattr(obj, name)
        try:
            new = rule.normalize(value)
            problem = rule.check(new) if rule.check is not None and new is not None else ""
        except (TypeError, ValueError):
            problem = rule.expected()
        if problem:
            raise ConfigError(f"{owner}.{name} must be {problem}, received {name}={value!r}")
        object.__setattr__(obj, name, new)


def missing_rules(cls, table: dict[str, Field]) -> list[str]:
    """Fields of the dataclass `cls` without a rule in `table` (a test asserts there are none)."""
    return sorted({f.name for f in dataclasses.fields(cls)} - set(table))


def _is_augment(value) -> str:
    ok = value is None or value == AUTO or isinstance(value, (AugmentConfig, AlbumentationsSpec, dict, list))
    return "" if ok else ("an AugmentConfig, an AlbumentationsSpec, a dict of AugmentConfig fields or of "
                          "{'transforms': [...]}, None or 'auto'")


def _is_arrays(value) -> str:
    return "" if isinstance(value, (tuple, list)) and len(value) == 2 else "an (images, labels) pair or None"


def _positive(value) -> str:
    return "" if all(v > 0 for v in value) else "three numbers > 0"


@dataclass
class AugmentConfig:
    """Native TF augmentation applied to training images (the fast path).

    Geometry happens first (one of random resized crop / random crop / plain resize), then flips,
    90-degree rotations and colour jitter; mixup/cutmix run on whole batches afterwards.
    Every random op is stateless and seeded per element, so `DataConfig.seed` makes it deterministic.

    Example:
    ```python
    aug = AugmentConfig(scale=(0.25, 1.0), brightness=0.2, mixup_alpha=0.2)
    cfg = DataConfig(source="folder", path="images/", augment=aug)
    ```
    """

    random_resized_crop: bool = True           # Inception-style crop: random area in `scale` x image area, aspect in `ratio`, resized to image_size
    scale: tuple[float, float] = (0.08, 1.0)   # area fraction range of the random resized crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio (w/h) range of the random resized crop
    random_crop: bool = False                  # when not random_resized_crop: resize shorter side to image_size / crop_fraction, then crop image_size at a random place
    crop_padding: int = 0                      # zero padding added on every side before random_crop (CIFAR-style shift); 0 = none
    horizontal_flip: bool = True               # flip left-right with probability 0.5
    vertical_flip: bool = False                # flip up-down with probability 0.5
    rotate90: bool = False                     # rotate by a random multiple of 90 degrees
    brightness: float = 0.0                    # max delta added to pixels, as a fraction of 255 (0 = off)
    contrast: float = 0.0                      # contrast factor drawn in [1 - contrast, 1 + contrast] (0 = off)
    saturation: float = 0.0                    # saturation factor drawn in [1 - saturation, 1 + saturation] (0 = off)
    hue: float = 0.0                           # max hue shift in [0, 0.5] (0 = off)
    mixup_alpha: float = 0.0                   # > 0 enables mixup with Beta(alpha, alpha); labels become float32 one-hot
    cutmix_alpha: float = 0.0                  # > 0 enables cutmix with Beta(alpha, alpha); labels become float32 one-hot
    mix_prob: float = 1.0                      # probability that a batch is mixed at all (when mixup or cutmix is on; if both are on each mixed batch picks one at random)
    mean: tuple[float, float, float] | None = None  # opt-in normalization of train AND val batches: (x - mean) / std, RGB on the [0,255] scale; None = yield raw [0,255]
    std: tuple[float, float, float] | None = None   # std for the opt-in normalization (required with mean)
    fast_jpeg: bool = True                     # decode only the crop window of JPEGs (decode_and_crop_jpeg) and use reduced-DCT decoding when the crop is much larger than needed
    # automatic policies (kgooglenet.data.policies; at most one on), run after the geometry, flips and colour jitter
    randaugment_ops: int = 0                   # RandAugment: ops per image (torchvision's num_ops; 2 is usual); 0 = off
    randaugment_magnitude: float = 9.0         # RandAugment: magnitude of every op, 0 (identity) to 30 (torchvision's 31 bins; 9 is usual)
    trivial_augment: bool = False              # TrivialAugment Wide: one op per image at a random magnitude (no parameters)
    auto_augment: bool = False                 # the ImageNet AutoAugment policy (25 sub-policies of two ops)
    augmix_severity: int = 0                   # AugMix: op magnitudes drawn in [0, severity) of 10 (torchvision's default 3); 0 = off
    augmix_width: int = 3                      # AugMix: augmentation chains mixed per image
    augmix_alpha: float = 1.0                  # AugMix: Dirichlet / Beta concentration of the mixing weights
    erase_prob: float = 0.0                    # random erasing: probability that an image gets a box erased (torchvision/timm: 0.25); 0 = off
    erase_scale: tuple[float, float] = (0.02, 0.33)  # random erasing: box area as a fraction of the image
    erase_ratio: tuple[float, float] = (0.3, 3.3)    # random erasing: box aspect ratio (h / w), drawn log-uniformly
    erase_value: Any = 0.0                     # random erasing: fill, a number or RGB triple in [0, 255], or "random" (uniform noise)
    repeats: int = 1                           # repeated augmentation: each training image appears this many times per epoch, each copy augmented differently (timm's --aug-repeats; an epoch is this many times longer); 1 = off

    def __post_init__(self) -> None:
        validate(self, AUGMENT_RULES)
        on = [name for name in POLICIES if getattr(self, name)]
        if len(on) > 1:
            raise ConfigError(f"AugmentConfig: at most one automatic policy at a time, received {', '.join(on)}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError(f"AugmentConfig.mean and std go together, received mean={self.mean!r}, std={self.std!r}")

    @property
    def mixes(self) -> bool:
        """True when mixup or cutmix is enabled (labels are then float32 one-hot)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @classmethod
    def inception(cls, **overrides: Any) -> "AugmentConfig":
        """Inception / ImageNet style: random resized crop (0.08-1) + horizontal flip."""
        return cls(**overrides)

    @classmethod
    def cifar(cls, image_size: int = 32, **overrides: Any) -> "AugmentConfig":
        """CIFAR style: pad image_size // 8 pixels, random crop, horizontal flip."""
        kw = dict(random_resized_crop=False, random_crop=True, crop_padding=max(1, image_size // 8))
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def digits(cls, image_size: int = 32, **overrides: Any) -> "AugmentConfig":
        """Handwritten digits: small random shifts only (no flips: a flipped 2 is not a 2)."""
        kw = dict(random_resized_crop=False, random_crop=True, crop_padding=max(1, image_size // 8),
                  horizontal_flip=False)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def strong(cls, image_size: int = 224, **overrides: Any) -> "AugmentConfig":
        """Fine-tuning on small datasets: the geometry of the image size (random resized crop of 0.25-1 above
        64 pixels, pad + random crop up to 64), horizontal flip, RandAugment (2 ops, magnitude 9) and random
        erasing (p=0.25), as timm's and torchvision's recipes. Turn the flip off for digits/text
        (`horizontal_flip=False`).

        Measured: `python recipes/quickstart.py --augment strong` (digits, cifar variant at width 0.25, 8 epochs,
        mixed_bfloat16, `AugmentConfig.strong(32, horizontal_flip=False)`) reached 0.9805 validation accuracy
        (best epoch 8; 0.98-0.99 with the default augmentation) in 118 s end to end (127 s with Python's start)
        on the idle 2-core machine, 2026-12-02; 0.983 in 528 s earlier on the same cores shared at load 6-8."""
        kw = dict(randaugment_ops=2, randaugment_magnitude=9.0, erase_prob=0.25)
        if image_size <= 64:
            kw.update(random_resized_crop=False, random_crop=True, crop_padding=max(1, image_size // 8))
        else:
            kw.update(scale=(0.25, 1.0))
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all: training images get the evaluation resize + center crop."""
        return cls(random_resized_crop=False, random_crop=False, horizontal_flip=False)


def _erase_value(value) -> str:
    if isinstance(value, str):
        return "" if value == "random" else "a number or RGB triple in [0, 255], or 'random'"
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = len(items) in (1, 3) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255
                                      for v in items)
    return "" if ok and (len(items) == 3 or not isinstance(value, (list, tuple))) else (
        "a number or RGB triple in [0, 255], or 'random'")


POLICIES = ("randaugment_ops", "trivial_augment", "auto_augment", "augmix_severity")  # at most one on


AUGMENT_RULES = {
    "random_resized_crop": Field("bool"),
    "scale": Field("pair", low=0.0, high=1.0, low_open=True),
    "ratio": Field("pair", low=0.0, low_open=True),
    "random_crop": Field("bool"),
    "crop_padding": Field("int", low=0),
    "horizontal_flip": Field("bool"),
    "vertical_flip": Field("bool"),
    "rotate90": Field("bool"),
    "brightness": Field("float", low=0.0, high=1.0),
    "contrast": Field("float", low=0.0, high=1.0),
    "saturation": Field("float", low=0.0, high=1.0),
    "hue": Field("float", low=0.0, high=0.5),
    "mixup_alpha": Field("float", low=0.0),
    "cutmix_alpha": Field("float", low=0.0),
    "mix_prob": Field("float", low=0.0, high=1.0),
    "mean": Field("floats", length=3, optional=True),
    "std": Field("floats", length=3, optional=True, check=_positive),
    "fast_jpeg": Field("bool"),
    "randaugment_ops": Field("int", low=0),
    "randaugment_magnitude": Field("float", low=0.0, high=30.0),
    "trivial_augment": Field("bool"),
    "auto_augment": Field("bool"),
    "augmix_severity": Field("int", low=0, high=10),
    "augmix_width": Field("int", low=1),
    "augmix_alpha": Field("float", low=0.0, low_open=True),
    "erase_prob": Field("float", low=0.0, high=1.0),
    "erase_scale": Field("pair", low=0.0, high=1.0, low_open=True, high_open=True),
    "erase_ratio": Field("pair", low=0.0, low_open=True),
    "erase_value": Field("any", check=_erase_value),
    "repeats": Field("int", low=1),
}


@dataclass
class AlbumentationsSpec:
    """A declarative albumentations pipeline, built into an `A.Compose` and run inside tf.data.

    `transforms` is a list whose items are either `{"Name": {kwargs}}` or `{"type": "Name", **kwargs}`;
    `OneOf` / `SomeOf` / `Sequential` take a nested `transforms` list. Names are albumentations 2.x
    class names (e.g. `RandomResizedCrop` takes `size=(h, w)`). The decoded uint8 RGB image goes
    through the Compose under `tf.numpy_function` (which holds the GIL: slower than the native path),
    is resized to image_size if the spec did not already produce it, and gets its static shape back.
    Each element is seeded from `DataConfig.seed` and its position, so the same seed gives the same batches.
    `Normalize` and `ToTensorV2` are refused: the model normalizes inside itself, validation batches never
    go through the spec, and tf.data wants HWC; use `mean`/`std` here for pipeline normalization instead.

    Example:
    ```python
    spec = AlbumentationsSpec(transforms=[
        {"RandomResizedCrop": {"size": (224, 224), "scale": (0.25, 1.0)}},
        {"HorizontalFlip": {"p": 0.5}},
        {"ColorJitter": {"brightness": 0.2, "p": 0.8}},
    ])
    cfg = DataConfig(source="folder", path="images/", augment=spec)
    ```
    """

    transforms: list = field(default_factory=list)  # list of transform specs (see class docstring)
    p: float = 1.0                                  # probability the whole Compose is applied
    mixup_alpha: float = 0.0                        # batch-level mixup after albumentations (labels become one-hot)
    cutmix_alpha: float = 0.0                       # batch-level cutmix after albumentations (labels become one-hot)
    mix_prob: float = 1.0                           # probability that a batch is mixed at all
    mean: tuple[float, float, float] | None = None  # opt-in normalization of train AND val batches: (x - mean) / std on the [0,255] scale; None = raw [0,255]
    std: tuple[float, float, float] | None = None   # std for the opt-in normalization (required with mean)

    @property
    def mixes(self) -> bool:
        """True when mixup or cutmix is enabled (labels are then float32 one-hot)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @classmethod
    def from_dict(cls, spec: dict | list) -> "AlbumentationsSpec":
        """Build from a plain dict `{"transforms": [...], "p": 1.0}` or a bare list of transforms."""
        if isinstance(spec, list):
            return cls(transforms=list(spec))
        if not isinstance(spec, dict) or "transforms" not in spec:
            raise ValueError(
                f"albumentations spec: expected a list of transforms or a dict with a 'transforms' key, received {spec!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"albumentations spec: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**spec)

    @classmethod
    def from_yaml(cls, path: str) -> "AlbumentationsSpec":
        """Read a YAML file holding a `transforms:` list (and optionally `p`, `mixup_alpha`, ...)."""
        import yaml

        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f))


@dataclass
class DataConfig:
    """Where the images come from and how they are batched.

    Example:
    ```python
    cfg = DataConfig()                                       # embedded digits at 32x32 (quickstart)
    cfg = DataConfig(source="tfds", name="cifar10", data_dir="~/tensorflow_datasets", image_size=32)
    cfg = DataConfig(source="folder", path="caltech256/", image_size=224, batch_size=64, seed=0)
    cfg = DataConfig(source="tfrecord", path="prepared/")    # written by `python -m kgooglenet prepare`
    bundle = make_datasets(cfg)
    ```
    """

    source: str = "digits"              # "digits" (embedded sklearn digits), "tfds", "folder", "tfrecord", "arrays"
    name: str | None = None             # TFDS dataset name when source == "tfds", e.g. "cifar10"
    path: str | None = None             # folder of class subfolders (source "folder") or a prepared TFRecord dir (source "tfrecord")
    data_dir: str | None = None         # TFDS data_dir holding the prepared dataset (offline-first: never downloads)
    manual_dir: str | None = None       # TFDS manual_dir with manually downloaded archives (e.g. ImageNet tars), used only to prepare
    train_split: str = "train"          # TFDS split used for training (TFDS slicing syntax allowed, e.g. "train[:90%]")
    val_split_name: str | None = None   # TFDS split used for validation; None = "validation" or "test" if the dataset has one, else val_split of train
    image_size: int | None = None       # model input size (square); None = 32 for digits, 224 for every other source (resolved in __post_init__)
    batch_size: int = 32                # GLOBAL batch size (per-replica size comes from the input context)
    val_split: float = 0.2              # fraction held out for validation for sources without a val split (digits, folder, arrays without val_arrays)
    augment: Any = AUTO                 # AugmentConfig | AlbumentationsSpec | dict (AugmentConfig fields, or {"transforms": [...]} for albumentations) | None (no augmentation) | "auto" (per source: digits -> AugmentConfig.digits, image_size <= 64 -> cifar, else inception)
    crop_fraction: float | None = None  # evaluation: resize shorter side to image_size / crop_fraction then center crop; None = 0.875 when image_size >= 128 else 1.0
    cache: bool = False                 # cache encoded files / decoded small images in memory after the first epoch (digits and arrays are always in memory)
    shuffle_buffer: int = 10_000        # shuffle buffer of the training set (capped at the split size)
    seed: int | None = None             # deterministic order and augmentation when set (same seed -> same batches)
    drop_remainder: bool = True         # drop the last partial training batch so batch shapes are fully static
    repeat: bool = False                # repeat the training set forever (then pass steps_per_epoch to fit)
    num_parallel_calls: int | None = None  # map parallelism; None = tf.data.AUTOTUNE
    ignore_errors: bool = True          # folder source: drop files that fail to decode instead of failing the epoch (prepare the folder to get a report)
    train_arrays: tuple | None = None   # source "arrays": (images [N,H,W] or [N,H,W,C] uint8/float in [0,255], labels [N] int)
    val_arrays: tuple | None = None     # source "arrays": optional validation (images, labels); None = val_split of train_arrays
    class_names: list[str] | None = None  # source "arrays": optional class names (default "0", "1", ...)
    num_classes: int | None = None      # source "arrays": number of classes (default max label + 1)

    def __post_init__(self) -> None:
        validate(self, DATA_RULES)
        for name in ("path", "data_dir", "manual_dir"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, os.path.expanduser(value))
        if self.image_size is None:
            self.image_size = 32 if self.source == "digits" else 224


DATA_RULES = {
    "source": Field("choice", choices=SOURCES),
    "name": Field("str", optional=True),
    "path": Field("str", optional=True),
    "data_dir": Field("str", optional=True),
    "manual_dir": Field("str", optional=True),
    "train_split": Field("str"),
    "val_split_name": Field("str", optional=True),
    "image_size": Field("int", low=1, optional=True),
    "batch_size": Field("int", low=1),
    "val_split": Field("float", low=0.0, high=1.0, high_open=True),
    "augment": Field("any", check=_is_augment),
    "crop_fraction": Field("float", low=0.0, high=1.0, low_open=True, optional=True),
    "cache": Field("bool"),
    "shuffle_buffer": Field("int", low=1),
    "seed": Field("int", low=0, optional=True),
    "drop_remainder": Field("bool"),
    "repeat": Field("bool"),
    "num_parallel_calls": Field("int", low=1, optional=True),
    "ignore_errors": Field("bool"),
    "train_arrays": Field("any", optional=True, check=_is_arrays),
    "val_arrays": Field("any", optional=True, check=_is_arrays),
    "class_names": Field("strs", optional=True),
    "num_classes": Field("int", low=1, optional=True),
}


@dataclass
class DatasetBundle:
    """What `make_datasets` returns.

    `train` and `val` yield `(images, labels)`: images float32 RGB in [0, 255] NHWC (unless
    `AugmentConfig.mean/std` asks for normalization), labels int32 class ids, or float32 one-hot
    [batch, num_classes] in `train` when mixup/cutmix is on (`one_hot_train`). `val` labels are always int32.
    """

    train: Any                          # tf.data.Dataset of training batches (augmented, shuffled, prefetched)
    val: Any                            # tf.data.Dataset of validation batches (resize + center crop, no augmentation), or None if there is no val data
    num_classes: int                    # number of classes
    class_names: list[str]              # class names by id
    train_size: int                     # training examples (all workers together)
    val_size: int                       # validation examples (all workers together)
    steps_per_epoch: int                # training batches per epoch for the global batch size
    validation_steps: int               # validation batches for the global batch size
    image_size: int                     # square image size of the batches
    one_hot_train: bool = False         # True when train labels are float32 one-hot (mixup/cutmix)
    rgb_mean: tuple | None = None       # RGB mean of the train split when known (prepared TFRecords write it)
    rgb_std: tuple | None = None        # RGB std of the train split when known
