"""GoogLeNet (Inception v1) as a functional Keras model, in the keras.applications style.

`GoogLeNet(...)` reads the tables of `kgooglenet.specs` and wires the layers of `kgooglenet.layers`. The model is split
timm-style into `features` (everything up to `inception_5b`) and a `head` (global pool, dropout, classifier), so
fine-tuning replaces the head cleanly; the optional aux heads hang on 4a and 4d.
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
from kgooglenet.weights.cache import resolve_weights

# Loss weights of the paper: main 1, each aux head 0.3 (Caffe train_val.prototxt loss_weight).
AUX_LOSS_WEIGHT = 0.3
OUTPUT_NAMES = ("main", "aux1", "aux2")
DEFAULT_ENDPOINTS = ("stem", "inception_3b", "inception_4e", "inception_5b")


def _check_args(variant, num_classes, aux_heads, include_top, pooling, dropout, aux_dropout, width):
    if variant not in specs.VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(specs.VARIANTS)}, received variant={variant!r}")
    if include_top and (not isinstance(num_classes, (int, np.integer)) or num_classes < 1):
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


def _input_shape(spec, input_shape, preprocessing):
    if input_shape is None:
        return (spec.default_size, spec.default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), received input_shape={input_shape!r}")
    if preprocessing is not None and input_shape[2] != 3:
        raise ValueError(
            f"`input_shape` must have 3 (RGB) channels when the model preprocesses its input, received "
            f"input_shape={input_shape!r}"
        )
    h, w = input_shape[:2]
    if h is not None and w is not None:
        specs.feature_map_sizes(spec.name, h, w)  # raises when too small
    return input_shape


def GoogLeNet(
    variant="bn",
    num_classes=1000,
    aux_heads=False,
    include_top=True,
    pooling=None,
    input_shape=None,
    weights=None,
    classifier_activation="softmax",
    dropout=None,
    aux_dropout=None,
    width=1.0,
    preprocessing="auto",
    name=None,
):
    """GoogLeNet (Inception v1), Szegedy et al., "Going deeper with convolutions", CVPR 2015.

    Args:
        variant: "paper" (the BVLC Caffe model: biased convs, LRN, true 5x5 branches, 3x3/2 pool before 5a, Caffe's
            5x5/3 aux pools), "bn" (torchvision/TF-slim: conv + BatchNorm, 3x3 in the "5x5" branch, 2x2/2 pool
            before 5a, adaptive 4x4 aux pools) or "cifar" (32x32 inputs: 3x3 stem of 192 channels, no early
            downsampling, BatchNorm momentum 0.9).
        num_classes: classes of the classifier(s).
        aux_heads: add the two auxiliary classifiers (on 4a and 4d); the model then returns a dict
            {"main", "aux1", "aux2"}. See `aux_compile_args` and `inference_model`.
        include_top: include the global pool, dropout and classifier.
        pooling: with include_top=False: "avg", "max" or None (the 5b feature map).
        input_shape: (height, width, 3); None gives the variant's default square size. Height/width may be None
            for a size-agnostic model (not with the paper variant's aux heads, which flatten a fixed-size map).
        weights: None (random initialization), the path of a `.weights.h5` file, or a named ImageNet set
            ("imagenet-caffe", "imagenet-torchvision") installed in the cache (see `kgooglenet.weights`). Weights
            that carry a JSON sidecar bind their own preprocessing (used when preprocessing="auto").
        classifier_activation: activation of the classifiers ("softmax", or None for logits). Outputs are float32
            even under a mixed-precision policy.
        dropout: dropout before the main classifier; None gives the variant's (0.4 paper, 0.2 bn/cifar).
        aux_dropout: dropout in the aux heads; None gives 0.7.
        width: channel multiplier applied to every conv and hidden layer (1.0 = the real model; small values
            give tiny models for tests and small devices).
        preprocessing: what the model does to its RGB [0, 255] input: "auto" (the variant's default: "caffe" for
            paper, "torchvision" for bn, "imagenet" for cifar), a key of `kgooglenet.specs.PREPROCESSING`, a
            `kgooglenet.specs.Preprocessing`, or None (the input is used as given).
        name: model name; defaults to f"googlenet_{variant}".

    Returns:
        A `keras.Model`.

    Example:
    >>> model = GoogLeNet("cifar", num_classes=10, width=0.25)
    >>> model(np.zeros((2, 32, 32, 3), "float32")).shape
    (2, 10)
    """
    _check_args(variant, num_classes, aux_heads, include_top, pooling, dropout, aux_dropout, width)
    spec = specs.VARIANTS[variant]
    resolved = resolve_weights(weights, variant)
    if preprocessing == "auto":
        bound = resolved.preprocessing if resolved is not None else None
        preprocessing = bound if bound is not None else spec.default_preprocessing
    input_shape = _input_shape(spec, input_shape, preprocessing)
    if aux_heads and spec.aux_pool == "caffe" and None in input_shape[:2]:
        raise ValueError(
            f"`input_shape` must have a fixed height and width for the aux heads of variant {variant!r} (they "
            f"flatten a fixed-size map), received input_shape={input_shape!r}"
        )
    dropout = spec.dropout if dropout is None else dropout
    aux_dropout = spec.aux_dropout if aux_dropout is None else aux_dropout
    bn = dict(batch_norm=spec.batch_norm, bn_momentum=spec.bn_momentum, bn_epsilon=spec.bn_epsilon)

    inputs = keras.Input(input_shape, name="image")
    x = inputs
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
            x = LocalResponseNormalization(5, 1e-4, 0.75, 1.0, name=item)(x)

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
                name=f"{head}_head",
                **bn,
            )(x)
            aux_outputs[head] = layers.Activation(classifier_activation, dtype="float32", name=head)(logits)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(num_classes, name="classifier")(x)
        outputs = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        outputs = layers.GlobalMaxPooling2D(name="max_pool")(x)
    else:
        outputs = x
    if aux_heads:
        outputs = {"main": outputs, **aux_outputs}
    model = keras.Model(inputs, outputs, name=name or f"googlenet_{variant}")
    if resolved is not None:
        _load_weights(model, resolved)
    return model


def _load_weights(model, resolved):
    """`model.load_weights`, with an error that names the file and says what to do when it does not fit."""
    meta = resolved.metadata or {}
    try:
        model.load_weights(resolved.path)
    except ValueError as e:
        found = ", ".join(f"{k}={meta[k]!r}" for k in ("variant", "num_classes", "aux_heads") if k in meta)
        raise ValueError(
            f"`weights`: {resolved.path!r} does not fit {model.name} (num_classes, aux_heads, width or input size "
            f"differ{'; the file is for ' + found if found else ''}). To start from it with other heads, build the "
            f"model without weights and call kgooglenet.train.finetune.load_pretrained(model, weights, variant). "
            f"Keras said: {str(e).splitlines()[0]}"
        ) from e


def aux_compile_args(aux_weight=AUX_LOSS_WEIGHT, from_logits=False, metrics=("accuracy", "top5")):
    """`compile()` keyword arguments for a model with aux heads: sparse cross-entropy on each output, loss weights
    1 / aux_weight / aux_weight, and metrics on the main output only.

    Args:
        aux_weight: the weight of each aux loss (0.3 in the paper).
        from_logits: True when the model was built with `classifier_activation=None`.
        metrics: metric names for the main output; "top5" is sparse top-5 accuracy.

    Example:
    >>> model = GoogLeNet("cifar", num_classes=10, aux_heads=True, width=0.125)
    >>> model.compile(optimizer="sgd", **aux_compile_args())
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    main_metrics = [
        keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5") if m == "top5" else m for m in metrics
    ]
    return {
        "loss": {name: loss for name in OUTPUT_NAMES},
        "loss_weights": {"main": 1.0, "aux1": aux_weight, "aux2": aux_weight},
        "metrics": {"main": main_metrics},
    }


def aux_targets(x, y):
    """Maps a dataset element (x, y) to (x, {"main": y, "aux1": y, "aux2": y}) for a model with aux heads."""
    return x, {name: y for name in OUTPUT_NAMES}


def has_aux_heads(model) -> bool:
    return isinstance(model.output, dict) and "aux1" in model.output


def inference_model(model):
    """The single-output model (main classifier only) sharing `model`'s weights; `model` itself if it has no aux heads.

    Example:
    >>> train_model = GoogLeNet("cifar", num_classes=10, aux_heads=True, width=0.125)
    >>> serve = inference_model(train_model)
    >>> serve.get_layer("classifier") is train_model.get_layer("classifier")
    True
    """
    if not has_aux_heads(model):
        return model
    return keras.Model(model.input, model.output["main"], name=f"{model.name}_inference")


def _endpoint_layer(model, endpoint):
    if endpoint == "stem":
        return model.get_layer("pool2" if _has_layer(model, "pool2") else "conv1")
    if endpoint in ("features", "inception_5b"):
        return model.get_layer("inception_5b")
    if not _has_layer(model, endpoint):
        names = [layer.name for layer in model.layers]
        raise ValueError(f"`endpoints`: no layer {endpoint!r} in {model.name}; available: 'stem', {names}")
    return model.get_layer(endpoint)


def _has_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def feature_extractor(model, endpoints=DEFAULT_ENDPOINTS):
    """A model returning named intermediate feature maps (like TF-slim's end_points), sharing `model`'s weights.

    Args:
        model: a GoogLeNet model.
        endpoints: layer names ("conv1", "pool2", "inception_3b", ... "inception_5b"); "stem" is the end of the stem.

    Example:
    >>> backbone = feature_extractor(GoogLeNet("bn", include_top=False, width=0.125, input_shape=(224, 224, 3)))
    >>> {k: v.shape[1] for k, v in backbone(np.zeros((1, 224, 224, 3), "float32")).items()}
    {'stem': 28, 'inception_3b': 28, 'inception_4e': 14, 'inception_5b': 7}
    """
    if isinstance(endpoints, str):
        endpoints = (endpoints,)
    outputs = {name: _endpoint_layer(model, name).output for name in endpoints}
    return keras.Model(model.input, outputs, name=f"{model.name}_features")


def features(model):
    """The backbone (input to inception_5b) of a GoogLeNet, sharing its weights."""
    return keras.Model(model.input, model.get_layer("inception_5b").output, name=f"{model.name}_backbone")
