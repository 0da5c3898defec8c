"""Losses, metrics, learning-rate schedules and optimizers built from a `TrainConfig`.

Schedules are Keras' own (`ExponentialDecay` with staircase for the paper's step decay, `PolynomialDecay` for Caffe's
"poly", `CosineDecay`), wrapped in `Warmup` (linear warmup, then the wrapped schedule over the remaining steps, times a
per-group multiplier). Per-layer learning-rate multipliers use `keras.optimizers.MultiOptimizer`: one optimizer per
distinct multiplier, each with the schedule times its multiplier, so `lr_mult` means the same for SGD and Adam.
"""

from __future__ import annotations

import re
import warnings

import keras
from keras import ops

from kgooglenet.train.config import TrainConfig

_PACKAGE = "kgooglenet"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `schedule(0)` over `warmup_steps`, then `schedule(step - warmup_steps)`; all times
    `multiplier`.

    Args:
        schedule: a float or a `LearningRateSchedule` (defined from step 0 = the end of warmup).
        warmup_steps: steps of linear warmup (0 = none).
        multiplier: constant factor (a Caffe-style lr_mult group).

    Example:
    >>> lr = Warmup(keras.optimizers.schedules.CosineDecay(0.1, 900), warmup_steps=100)
    >>> [round(float(lr(s)), 4) for s in (0, 99, 100, 1000)]
    [0.001, 0.1, 0.1, 0.0]
    """

    def __init__(self, schedule, warmup_steps=0, multiplier=1.0):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.multiplier = float(multiplier)

    def _base(self, step):
        if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule):
            return ops.cast(self.schedule(step), "float32")
        return ops.cast(self.schedule, "float32")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.warmup_steps <= 0:
            return self._base(step) * self.multiplier
        warm = self._base(ops.zeros_like(step)) * ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        after = self._base(ops.maximum(step - float(self.warmup_steps), 0.0))
        return ops.where(step < float(self.warmup_steps), warm, after) * self.multiplier

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps, "multiplier": self.multiplier}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Crossentropy(keras.losses.Loss):
    """Cross-entropy that takes sparse int labels or (mixup/cutmix) one-hot labels, with label smoothing.

    Args:
        label_smoothing: mix the target with the uniform distribution (0 = off).
        from_logits: predictions are logits (else probabilities, the model's softmax outputs).

    Example:
    >>> loss = Crossentropy(label_smoothing=0.1)
    >>> round(float(loss(np.array([1]), np.array([[0.1, 0.9]], "float32"))), 4)
    0.1553
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        if len(y_true.shape) < len(y_pred.shape) or y_true.shape[-1] == 1 and y_pred.shape[-1] != 1:
            labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            if self.label_smoothing == 0.0:
                return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=self.from_logits)
            y_true = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            ops.cast(y_true, y_pred.dtype), y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}


def make_metrics(num_classes: int, one_hot: bool = False) -> list:
    """Top-1 ("accuracy") and, for more than 5 classes, top-5 ("top5") accuracy for sparse or one-hot labels."""
    if one_hot:
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
    else:
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    return metrics


def make_schedule(config: TrainConfig, steps_per_epoch: int, multiplier: float = 1.0):
    """The learning rate of `config` as a float ("plateau": a plain value ReduceLROnPlateau can change) or a
    `Warmup`-wrapped Keras schedule, for `steps_per_epoch` steps per epoch, times `multiplier`."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    lr = config.learning_rate
    if config.schedule == "plateau":
        if config.warmup_epochs:
            raise ValueError(
                f"TrainConfig.warmup_epochs must be 0 with schedule='plateau' (ReduceLROnPlateau needs a plain learning "
                f"rate), received warmup_epochs={config.warmup_epochs!r}"
            )
        return lr * multiplier
    total = steps_per_epoch * config.epochs
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if warmup >= total:  # a short run (e.g. a smoke test of a long recipe): warm up over its first half
        warnings.warn(f"TrainConfig.warmup_epochs={config.warmup_epochs!r} covers the whole run of {config.epochs} "
                      f"epochs: warming up over the first half instead", stacklevel=2)
        warmup = total // 2
    decay_steps = total - warmup
    schedules = keras.optimizers.schedules
    if config.schedule == "constant":
        base = lr
    elif config.schedule == "step":
        base = schedules.ExponentialDecay(
            lr, max(1, int(round(config.step_decay_epochs * steps_per_epoch))), config.step_decay_rate, staircase=True
        )
    elif config.schedule == "poly":
        base = schedules.PolynomialDecay(lr, decay_steps, end_learning_rate=0.0, power=config.poly_power)
    else:  # cosine
        base = schedules.CosineDecay(lr, decay_steps, alpha=config.min_learning_rate / lr)
    return Warmup(base, warmup, multiplier)


def _make_one(config: TrainConfig, learning_rate):
    kw = {"learning_rate": learning_rate}
    if config.gradient_accumulation_steps > 1:
        kw["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    if config.ema:
        kw.update(use_ema=True, ema_momentum=config.ema_decay)
    if config.clipnorm:
        kw["clipnorm"] = config.clipnorm
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, nesterov=config.nesterov, **kw)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(**kw)
    optimizer = keras.optimizers.AdamW(weight_decay=config.weight_decay, **kw)
    if not config.decay_all:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def lr_multiplier(path: str, lr_mult: dict) -> float:
    """The multiplier of the variable at `path` ("layer/sublayer/.../name"): the value of the longest key of `lr_mult`
    that is the variable's layer path or a prefix of it ending at a "/", else 1."""
    best, best_len = 1.0, -1
    for key, value in lr_mult.items():
        key = key.rstrip("/")
        if (path == key or path.startswith(key + "/")) and len(key) > best_len:
            best, best_len = value, len(key)
    return best


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """The configured optimizer with its schedule. With `lr_mult` values other than 0 and 1 this is a
    `keras.optimizers.MultiOptimizer` holding one optimizer per multiplier, each with the schedule times its
    multiplier (variables with multiplier 0 are made non-trainable by `kgooglenet.train.finetune.freeze_zero_lr`)."""
    multipliers = sorted({v for v in config.lr_mult.values() if v not in (0.0, 1.0)})
    default = _make_one(config, make_schedule(config, steps_per_epoch))
    if not multipliers:
        return default
    groups = {m: _make_one(config, make_schedule(config, steps_per_epoch, m)) for m in multipliers}
    return keras.optimizers.MultiOptimizer(LrMultSelector(config.lr_mult, groups, default))


class LrMultSelector:
    """Picks the optimizer of a variable from its lr multiplier (`lr_multiplier(variable.path, lr_mult)`)."""

    def __init__(self, lr_mult: dict, groups: dict, default):
        self.lr_mult, self.groups, self.default = dict(lr_mult), groups, default

    def __call__(self, variable):
        return self.groups.get(lr_multiplier(variable.path, self.lr_mult), self.default)


def current_learning_rate(optimizer) -> float:
    """The base learning rate (multiplier 1) the optimizer uses at its current step."""
    while hasattr(optimizer, "inner_optimizer"):  # LossScaleOptimizer
        optimizer = optimizer.inner_optimizer
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        optimizer = optimizer._optimizer_map.default
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def is_decayed(variable) -> bool:
    """Kernels are weight-decayed; biases and BatchNorm gamma/beta are not (unless TrainConfig.decay_all)."""
    name = variable.path.rsplit("/", 1)[-1]
    return re.fullmatch(r"(depthwise_)?kernel", name) is not None
