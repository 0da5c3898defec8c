"""GoogLeNet's architecture without weights: `build_googlenet(...)` reads the tables of `kgooglenet.specs` and wires
the layers of `kgooglenet.layers` into a functional Keras model.

This module sits below the weights package: the converters build their models here, and `kgooglenet.model.GoogLeNet`
(the public entry point, which also resolves `weights=`) builds here too, so no import goes back up.

Layout: the layers compute in NHWC. Under `keras.config.image_data_format() == "channels_first"` the model takes
(channels, height, width) inputs, transposes them to NHWC first and transposes a spatial output (include_top=False,
pooling=None) back, so its results equal those of the channels_last model on transposed inputs, and it runs on CPUs
(where TensorFlow has no NCHW convolution).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import layers

from kgooglenet import specs
from kgooglenet.layers import (
    AuxHead,
    CeilPooling2D,
    ConvBlock,
    Inception,
    LocalResponseNormalization,
    preprocessing_layer,
)

CHANNELS_LAST = "channels_last"


def check_args(variant, num_classes, aux_heads, include_top, pooling, dropout, aux_dropout, width):
    if variant not in specs.VARIANTS:
        raise ValueError(f"`variant` must be one of {list(specs.VARIANT_NAMES)}, received variant={variant!r}")
    if include_top and (
        not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ValueError(f"`num_classes` must be a positive integer, received num_classes={num_classes!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be 'avg', 'max' or None, received pooling={pooling!r}")
    if aux_heads and not include_top:
        raise ValueError(
            f"`aux_heads=True` needs `include_top=True` (the aux heads are classifiers), received "
            f"include_top={include_top!r}"
        )
    for key, value in (("dropout", dropout), ("aux_dropout", aux_dropout)):
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"`{key}` must be in [0, 1), received {key}={value!r}")
    if not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"`width` must be a positive number, received width={width!r}")


def input_hwc(variant, input_shape=None, input_tensor=None) -> tuple:
    """The model's input as (height, width, channels), from `input_shape` or `input_tensor` given in Keras' global
    image data format; the variant's default square RGB size when both are None."""
    channels_first = keras.config.image_data_format() == "channels_first"
    order = "(channels, height, width)" if channels_first else "(height, width, channels)"
    if input_tensor is not None:
        shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != shape:
            raise ValueError(
                f"`input_shape`={tuple(input_shape)!r} differs from the shape of `input_tensor` {shape!r}: pass one"
            )
        input_shape = shape
    if input_shape is None:
        size = specs.VARIANTS[variant].default_size
        return (size, size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be {order} (image data format {keras.config.image_data_format()!r}), received "
            f"input_shape={input_shape!r}"
        )
    hwc = (*input_shape[1:], input_shape[0]) if channels_first else input_shape
    if hwc[2] is None:
        raise ValueError(f"`input_shape` must give the number of channels, received input_shape={input_shape!r}")
    h, w = hwc[:2]
    if h is not None and w is not None:
        specs.feature_map_sizes(variant, h, w)  # raises when too small
    return hwc


def _model_input(hwc, input_tensor):
    """(the tensor the network starts from, the model's inputs), in the global data format."""
    channels_first = keras.config.image_data_format() == "channels_first"
    if input_tensor is None:
        shape = (hwc[2], *hwc[:2]) if channels_first else hwc
        inputs = keras.Input(shape, name="image")
        start = inputs
    else:
        start = input_tensor if keras.backend.is_keras_tensor(input_tensor) else keras.Input(tensor=input_tensor)
        inputs = keras.utils.get_source_inputs(start)
    if channels_first:
        start = layers.Permute((2, 3, 1), name="to_channels_last")(start)
    return start, inputs


def build_googlenet(
    variant="bn",
    num_classes=1000,
    aux_heads=False,
    include_top=True,
    pooling=None,
    input_shape=None,
    input_tensor=None,
    classifier_activation="softmax",
    dropout=None,
    aux_dropout=None,
    width=1.0,
    preprocessing=None,
    name=None,
):
    """A randomly initialized GoogLeNet. The arguments are those of `kgooglenet.GoogLeNet` (which see), except that
    there are no weights and `preprocessing` is final: None, a key of `specs.PREPROCESSING` or a
    `specs.Preprocessing` (no "auto")."""
    check_args(variant, num_classes, aux_heads, include_top, pooling, dropout, aux_dropout, width)
    spec = specs.VARIANTS[variant]
    hwc = input_hwc(variant, input_shape, input_tensor)
    if preprocessing is not None and hwc[2] != 3:
        shown = preprocessing if isinstance(preprocessing, str) else "a Preprocessing"
        raise ValueError(
            f"`input_shape` has {hwc[2]} channels, but the model preprocesses its input as RGB "
            f"(preprocessing={shown!r}): pass preprocessing=None for inputs with other channel counts (and "
            f"normalize them yourself)"
        )
    if aux_heads and spec.aux_pool == "caffe" and None in hwc[:2]:
        raise ValueError(
            f"`input_shape` must have a fixed height and width for the aux heads of variant {variant!r} (they "
            f"flatten a fixed-size map), received input_shape={input_shape!r}"
        )
    dropout = spec.dropout if dropout is None else dropout
    aux_dropout = spec.aux_dropout if aux_dropout is None else aux_dropout
    bn = dict(batch_norm=spec.batch_norm, bn_momentum=spec.bn_momentum, bn_epsilon=spec.bn_epsilon)

    x, inputs = _model_input(hwc, input_tensor)
    pre = preprocessing_layer(preprocessing)
    if pre is not None:
        x = pre(x)
    for item in spec.stem:
        if isinstance(item, specs.ConvSpec):
            x = ConvBlock(
                specs.scaled(item.filters, width), item.kernel, item.stride, item.pad, name=item.name, **bn
            )(x)
        elif isinstance(item, specs.PoolSpec):
            x = CeilPooling2D(item.size, item.stride, name=item.name)(x)
        else:
            x = LocalResponseNormalization(**dataclasses.asdict(specs.LRN), name=item)(x)

    pools = dict(zip(specs.STAGE_STARTS[1:], spec.stage_pools))
    aux_at = {row: head for head, row in specs.AUX_ON.items()}
    aux_outputs = {}
    for row in specs.INCEPTION_ROWS:
        if row.name in pools:
            pool = pools[row.name]
            x = CeilPooling2D(pool.size, pool.stride, name=pool.name)(x)
        counts = [specs.scaled(c, width) for c in dataclasses.astuple(row)[1:]]
        x = Inception(*counts, branch5_kernel=spec.branch5_kernel, name=f"inception_{row.name}", **bn)(x)
        if aux_heads and row.name in aux_at:
            head = aux_at[row.name]
            logits = AuxHead(
                num_classes,
                pool=spec.aux_pool,
                conv_filters=specs.scaled(spec.aux_conv, width),
                fc_units=specs.scaled(spec.aux_fc, width),
                dropout=aux_dropout,
                name=specs.CLASSIFIER_LAYERS[head],
                **bn,
            )(x)
            aux_outputs[head] = layers.Activation(classifier_activation, dtype="float32", name=head)(logits)

    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=CHANNELS_LAST, name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(num_classes, name=specs.CLASSIFIER_LAYERS[specs.MAIN_HEAD])(x)
        outputs = layers.Activation(classifier_activation, dtype="float32", name=specs.PREDICTIONS_LAYER)(x)
    elif pooling == "avg":
        outputs = layers.GlobalAveragePooling2D(data_format=CHANNELS_LAST, name="avg_pool")(x)
    elif pooling == "max":
        outputs = layers.GlobalMaxPooling2D(data_format=CHANNELS_LAST, name="max_pool")(x)
    elif keras.config.image_data_format() == "channels_first":
        outputs = layers.Permute((3, 1, 2), name="to_channels_first")(x)
    else:
        outputs = x
    if aux_heads:
        outputs = {specs.MAIN_HEAD: outputs, **aux_outputs}
    return keras.Model(inputs, outputs, name=name or f"googlenet_{variant}")


__all__ = ["build_googlenet", "check_args", "input_hwc"]
