"""The parts both training loops share: the model (`build_model_and_compile`), the datasets and the summary line.

`kgooglenet.train.loop` (Keras `fit`) and `kgooglenet.train.distributed` (the multi-worker custom loop) both import
this module; neither imports the other's internals.
"""

from __future__ import annotations

import contextlib
import logging

import keras
import tensorflow as tf

from kgooglenet.model import GoogLeNet, aux_compile_args, aux_targets
from kgooglenet.specs import VARIANTS
from kgooglenet.train import faults
from kgooglenet.train.config import TrainConfig
from kgooglenet.train.finetune import apply_finetuning
from kgooglenet.train.optim import Crossentropy, make_metrics, make_optimizer
from kgooglenet.train.strategy import resolve_precision
from kgooglenet.train.trainer import TrainingModel
from kgooglenet.weights.cache import resolve_weights

log = logging.getLogger("kgooglenet.train")


@contextlib.contextmanager
def precision_policy(precision: str):
    """Temporarily set Keras' global dtype policy ("float32", "mixed_float16", "mixed_bfloat16", or "auto": see
    `strategy.resolve_precision`). Layers keep the policy they were built with, so the model stays mixed after the
    context ends."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def resolved_preprocessing(config: TrainConfig):
    """The input normalization the model of `config` has: the weights' own for "auto" with bound weights, else the
    variant's default for "auto", else `config.preprocessing`."""
    if config.preprocessing == "auto" and config.weights is not None:
        resolved = resolve_weights(config.weights, config.variant)
        if resolved.preprocessing is not None:
            return resolved.preprocessing
    if config.preprocessing == "auto":
        return VARIANTS[config.variant].default_preprocessing
    return config.preprocessing


def build_model_and_compile(config: TrainConfig, num_classes: int, steps_per_epoch: int | None = None,
                            one_hot_labels: bool = False) -> keras.Model:
    """Build GoogLeNet from `config` and compile it: the fine-tuning steps (pretrained weights with new classifiers,
    `freeze_until`, `freeze_bn`, lr_mult 0), the optimizer and schedule, the precision policy, the cross-entropy on
    every head with the aux heads weighted `config.aux_weight`, and top-1/top-5 metrics on the main head.

    Call it inside `strategy.scope()` for a distributed run.

    Args:
        config: the TrainConfig.
        num_classes: classes of all three classifiers.
        steps_per_epoch: steps per epoch (sizes the "step", "poly", "cosine" schedules and warmup); None = 100.
        one_hot_labels: the training labels are float32 one-hot (mixup/cutmix) rather than int class ids.

    Returns:
        A compiled `kgooglenet.train.trainer.TrainingModel` (a functional GoogLeNet: same layers and weight layout).
        With aux heads its outputs and labels are dicts {"main", "aux1", "aux2"} (`kgooglenet.aux_targets`).

    Example:
    >>> model = build_model_and_compile(TrainConfig(width=0.125, epochs=1), num_classes=10)
    >>> model.output_shape
    {'main': (None, 10), 'aux1': (None, 10), 'aux2': (None, 10)}
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_model_and_compile: num_classes must be a positive int, received num_classes={num_classes!r}")
    size = config.data.image_size
    with precision_policy(config.precision):
        base = GoogLeNet(
            config.variant, num_classes=num_classes, aux_heads=config.aux_heads, input_shape=(size, size, 3),
            dropout=config.dropout, aux_dropout=config.aux_dropout, width=config.width,
            preprocessing=resolved_preprocessing(config),
        )
        model = TrainingModel(base.input, base.output, name=base.name)
        model.configure_training(
            l2=config.weight_decay if config.optimizer in ("sgd", "adam") else 0.0,
            decay_all=config.decay_all, adversarial=config.adversarial, fgsm_epsilon=config.fgsm_epsilon,
            adversarial_fraction=config.adversarial_fraction, label_smoothing=config.label_smoothing,
        )
        summary = apply_finetuning(model, config)
        if summary:
            log.info("fine-tuning: %s", {k: (v if not isinstance(v, list) or len(v) < 8 else f"{len(v)} layers")
                                         for k, v in summary.items()})
        loss = Crossentropy(label_smoothing=config.label_smoothing)
        metrics = make_metrics(num_classes, one_hot=one_hot_labels)
        kwargs = dict(loss=loss, metrics=metrics)
        if config.aux_heads:  # the aux dict is the model's own (aux_compile_args), with our loss and metrics in it
            kwargs = aux_compile_args(config.aux_weight)
            kwargs["loss"] = {name: loss for name in kwargs["loss"]}
            kwargs["metrics"] = {"main": metrics}
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch or 100),
            jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution, **kwargs,
        )
    return model


def prepare_datasets(config: TrainConfig, bundle, num_classes: int):
    """(train, val) datasets ready for `fit`: train repeated (fit is given steps_per_epoch), val labels one-hot
    when train's are, and both mapped to the aux-head label dict when the model has aux heads."""
    train_ds, val_ds = bundle.train, bundle.val
    if not config.data.repeat:
        train_ds = train_ds.repeat()
    train_ds = faults.poison_batches(train_ds)  # a no-op unless a test armed KGOOGLENET_FAULT=nan:<n>
    if val_ds is not None and bundle.one_hot_train:
        val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), num_classes)))
    if config.aux_heads:
        train_ds = train_ds.map(aux_targets, num_parallel_calls=tf.data.AUTOTUNE)
        if val_ds is not None:
            val_ds = val_ds.map(aux_targets, num_parallel_calls=tf.data.AUTOTUNE)
    return train_ds, val_ds


def resolve_num_classes(config: TrainConfig, bundle) -> int:
    if config.num_classes is None:
        return int(bundle.num_classes)
    if config.num_classes < bundle.num_classes:
        raise ValueError(
            f"TrainConfig.num_classes={config.num_classes} is smaller than the {bundle.num_classes} classes of the data"
        )
    return int(config.num_classes)


def _precision_text(precision: str) -> str:
    resolved = resolve_precision(precision)
    return resolved if resolved == precision else f"{resolved} (auto)"


def summary_line(strategy_name: str, replicas: int, config: TrainConfig, steps: int, model, done: int) -> str:
    line = (
        f"kgooglenet.train: strategy {strategy_name}, replicas {replicas}, precision {_precision_text(config.precision)}, "
        f"global batch {config.data.batch_size}, steps per epoch {steps}, epochs {config.epochs}, "
        f"model {model.name} width {config.width} ({model.count_params():,} params, aux heads "
        f"{'on' if config.aux_heads else 'off'}), out_dir {config.out_dir}"
    )
    if done:
        line += f" - resuming after epoch {done}"
    return line
