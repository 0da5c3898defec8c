"""GoogLeNet (Inception v1) as a functional Keras model, in the keras.applications style.

`GoogLeNet(...)` takes keras.applications' arguments, asks the weights resolver (`kgooglenet.weights.cache`) for the
file behind `weights=`, and builds the network of `kgooglenet.architecture` (the tables of `kgooglenet.specs` wired
with the layers of `kgooglenet.layers`). The model is split timm-style into `features` (everything up to `inception_5b`) and a `head` (global pool, dropout, classifier), so
fine-tuning replaces the head cleanly; the optional aux heads hang on 4a and 4d.
"""

from __future__ import annotations

import keras

from kgooglenet import specs
from kgooglenet.architecture import build_googlenet, check_args, input_hwc
from kgooglenet.weights.cache import named_set, resolve_weights
from kgooglenet.weights.imagenet import NUM_CLASSES as IMAGENET_CLASSES

# Loss weights of the paper: main 1, each aux head 0.3 (Caffe train_val.prototxt loss_weight).
AUX_LOSS_WEIGHT = 0.3
OUTPUT_NAMES = specs.HEADS
DEFAULT_ENDPOINTS = ("stem", "inception_3b", "inception_4e", "inception_5b")
DEFAULT_NUM_CLASSES = 1000


def _num_classes(num_classes, classes):
    """keras.applications calls it `classes`, keras-hub and timm `num_classes`: both are accepted."""
    if classes is not None and num_classes is not None and classes != num_classes:
        raise ValueError(
            f"`classes` is another name for `num_classes`: pass one of them, received num_classes={num_classes!r} "
            f"and classes={classes!r}"
        )
    chosen = num_classes if num_classes is not None else classes
    return DEFAULT_NUM_CLASSES if chosen is None else chosen


def _check_activation(classifier_activation, weights, include_top):
    """As keras.applications' `validate_activation`: with weights and the top, only None or softmax make sense
    (the classifier was trained under a softmax)."""
    try:
        activation = keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"`classifier_activation` must be None, 'softmax' or another Keras activation, received "
            f"classifier_activation={classifier_activation!r}"
        ) from err
    if weights is not None and include_top and activation not in (keras.activations.softmax, keras.activations.linear):
        raise ValueError(
            f"Only None and 'softmax' are allowed for `classifier_activation` with pretrained weights and "
            f"include_top=True (weights={weights!r}), received classifier_activation={classifier_activation!r}"
        )


def _classes_error(weights, trained, num_classes) -> ValueError:
    return ValueError(
        f"`weights`={weights!r} with include_top=True need num_classes={trained} (the classes they were trained "
        f"on), received num_classes={num_classes!r}. For other classes use include_top=False, or build without "
        f"weights and call kgooglenet.train.finetune.load_pretrained(model, weights, variant)."
    )


def GoogLeNet(
    variant="bn",
    num_classes=None,
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
    input_tensor=None,
    classes=None,
):
    """GoogLeNet (Inception v1), Szegedy et al., "Going deeper with convolutions", CVPR 2015.

    The arguments follow keras.applications (`include_top`, `weights`, `input_tensor`, `input_shape`, `pooling`,
    `classes`, `classifier_activation`), plus GoogLeNet's own.

    Args:
        variant: "paper" (the BVLC Caffe model: biased convs, LRN, true 5x5 branches, 3x3/2 pool before 5a, Caffe's
            5x5/3 aux pools), "bn" (torchvision/TF-slim: conv + BatchNorm, 3x3 in the "5x5" branch, 2x2/2 pool
            before 5a, adaptive 4x4 aux pools) or "cifar" (32x32 inputs: 3x3 stem of 192 channels, no early
            downsampling, BatchNorm momentum 0.9).
        num_classes: classes of the classifier(s); None gives 1000. `classes` is the same (Keras' name).
        aux_heads: add the two auxiliary classifiers (on 4a and 4d); the model then returns a dict
            {"main", "aux1", "aux2"}. See `aux_compile_args` and `inference_model`.
        include_top: include the global pool, dropout and classifier.
        pooling: with include_top=False: "avg", "max" or None (the 5b feature map).
        input_shape: (height, width, channels), or (channels, height, width) under Keras' "channels_first" image
            data format; None gives the variant's default square RGB size. Height/width may be None for a
            size-agnostic model (not with the paper variant's aux heads, which flatten a fixed-size map).
        weights: None (random initialization), "imagenet" (the variant's own ImageNet set: "imagenet-caffe" for
            paper, "imagenet-torchvision" for bn), one of those names, or the path of a `.weights.h5` file. A named
            set is downloaded, checked and converted on first use and read from `$KERAS_HOME/kgooglenet/` after
            (see `kgooglenet.weights.cache`; `KGOOGLENET_WEIGHTS_URL` names a mirror). Weights that carry a JSON
            sidecar bind their own preprocessing (used when preprocessing="auto").
        classifier_activation: activation of the classifiers ("softmax", or None for logits; with weights and
            include_top only these two). Outputs are float32 even under a mixed-precision policy.
        dropout: dropout before the main classifier; None gives the variant's (0.4 paper, 0.2 bn/cifar).
        aux_dropout: dropout in the aux heads; None gives 0.7.
        width: channel multiplier applied to every conv and hidden layer (1.0 = the real model; small values
            give tiny models for tests and small devices).
        preprocessing: what the model does to its RGB [0, 255] input: "auto" (the weights' own, else the variant's
            default: "caffe" for paper, "torchvision" for bn, "imagenet" for cifar; None for inputs that do not
            have 3 channels), a key of `kgooglenet.specs.PREPROCESSING`, a `kgooglenet.specs.Preprocessing`, or
            None (the input is used as given). Preprocessing lives in the model, so `kgooglenet.preprocess_input`
            is the identity.
        name: model name; defaults to f"googlenet_{variant}".
        input_tensor: a Keras tensor (e.g. the output of `keras.Input` or of a layer) to build the model on.
        classes: Keras' name for `num_classes`.

    Returns:
        A `keras.Model`.

    Example:
    >>> model = GoogLeNet("cifar", num_classes=10, width=0.25)
    >>> tuple(model(np.zeros((2, 32, 32, 3), "float32")).shape)
    (2, 10)
    """
    num_classes = _num_classes(num_classes, classes)
    check_args(variant, num_classes, aux_heads, include_top, pooling, dropout, aux_dropout, width)
    _check_activation(classifier_activation, weights, include_top)
    hwc = input_hwc(variant, input_shape, input_tensor)
    imagenet = named_set(weights, variant) is not None
    if imagenet and hwc[2] != 3:
        raise ValueError(f"`weights`={weights!r} are for 3-channel RGB inputs, received an input with {hwc[2]} channels")
    if imagenet and include_top and num_classes != IMAGENET_CLASSES:  # checked before anything is downloaded
        raise _classes_error(weights, IMAGENET_CLASSES, num_classes)
    resolved = resolve_weights(weights, variant)
    trained = (resolved.metadata or {}).get("num_classes") if resolved is not None else None
    if include_top and trained not in (None, num_classes):
        raise _classes_error(weights, trained, num_classes)
    if preprocessing == "auto":
        bound = resolved.preprocessing if resolved is not None else None
        if bound is not None:
            preprocessing = bound
        else:
            preprocessing = specs.VARIANTS[variant].default_preprocessing if hwc[2] == 3 else None
    model = build_googlenet(
        variant,
        num_classes=num_classes,
        aux_heads=aux_heads,
        include_top=include_top,
        pooling=pooling,
        input_shape=input_shape,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
        dropout=dropout,
        aux_dropout=aux_dropout,
        width=width,
        preprocessing=preprocessing,
        name=name,
    )
    if resolved is not None:
        _load_weights(model, resolved)
    return model


def preprocess_input(x, data_format=None):
    """The identity, as keras.applications' EfficientNet and ConvNeXt: GoogLeNet preprocesses inside the model
    (its `preprocess` layer, bound to the weights), so it takes RGB pixels in [0, 255] as they are. Kept for code
    written against keras.applications (`module.preprocess_input(x)` before `model.predict`).

    Args:
        x: images (any array or tensor), returned unchanged.
        data_format: accepted for keras.applications compatibility and ignored.

    Example:
    >>> float(preprocess_input(np.full((1, 2, 2, 3), 255.0)).max())
    255.0
    """
    del data_format  # nothing depends on the layout of an identity
    return x


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
        "loss_weights": {head: 1.0 if head == specs.MAIN_HEAD else aux_weight for head in OUTPUT_NAMES},
        "metrics": {specs.MAIN_HEAD: main_metrics},
    }


def aux_targets(x, y):
    """Maps a dataset element (x, y) to (x, {"main": y, "aux1": y, "aux2": y}) for a model with aux heads."""
    return x, {name: y for name in OUTPUT_NAMES}


def has_aux_heads(model) -> bool:
    return isinstance(model.output, dict) and any(head in model.output for head in specs.AUX_ON)


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
    return keras.Model(model.input, model.output[specs.MAIN_HEAD], name=f"{model.name}_inference")


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
    The maps are NHWC (the layers' own layout), also for a model built under channels_first.

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
