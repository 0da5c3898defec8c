"""Fine-tuning: new classifiers for another class count, freezing up to a block, frozen BatchNorm, lr_mult 0.

Keras `.weights.h5` files are structural (a model with another class count or without aux heads cannot load them
directly), so `load_pretrained` builds the model the file was saved from, loads it, and copies every layer except the
classifiers into the target by layer name.

Example:
```python
from kgooglenet import GoogLeNet
from kgooglenet.train.finetune import load_pretrained, freeze_until

model = GoogLeNet("bn", num_classes=257, aux_heads=True, preprocessing="torchvision")
report = load_pretrained(model, "imagenet-torchvision", variant="bn")   # all but the 3 classifiers copied
freeze_until(model, "inception_4e")
```
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import keras

from kgooglenet import specs
from kgooglenet.layers import AuxHead, nested_layers
from kgooglenet.model import GoogLeNet
from kgooglenet.weights.cache import resolve_weights

log = logging.getLogger("kgooglenet.train")

# Layers holding the classifier weights: replaced (re-initialized) when the class count changes, never frozen.
CLASSIFIER_LAYERS = tuple(specs.CLASSIFIER_LAYERS.values())  # ("classifier", "aux1_head", "aux2_head")
# Output activations (no weights): never frozen either.
HEAD_OUTPUTS = (specs.PREDICTIONS_LAYER, *specs.AUX_ON)  # ("predictions", "aux1", "aux2")


@dataclasses.dataclass
class LoadReport:
    """What `load_pretrained` did."""

    path: str  # the weights file read
    source_classes: int  # class count of the file's main classifier
    source_aux_heads: bool  # whether the file holds aux heads
    copied: list  # layer names whose weights were copied
    reinitialized: list  # what keeps its fresh initialization: classifiers of another shape ("classifier",
    # "aux1_head/classifier": an aux head keeps its pretrained conv and FC) and aux heads the file lacks ("aux1_head")


def inspect_weights_file(path: str) -> tuple[int, bool]:
    """(class count of the main classifier, has aux heads) of a GoogLeNet `.weights.h5` file.

    Keras names the groups of a functional model by layer class: the main classifier is the only top-level Dense
    ("layers/dense"), the aux heads are "layers/aux_head" and "layers/aux_head_1".
    """
    import h5py

    with h5py.File(path, "r") as f:
        layers = f.get("layers")
        if layers is None or "dense" not in layers:
            raise ValueError(
                f"weights: {path!r} holds no GoogLeNet classifier ('layers/dense'); expected a .weights.h5 file "
                f"written by model.save_weights or python -m kgooglenet convert from a model with include_top=True"
            )
        bias = layers["dense"]["vars"]["1"]
        return int(bias.shape[0]), "aux_head" in layers


def load_pretrained(model: keras.Model, weights: str, variant: str, width: float = 1.0) -> LoadReport:
    """Load `weights` (a `.weights.h5` path or a named set) into `model`, whatever its class count and aux heads.

    Every layer with weights except the classifiers is copied by name; classifiers are copied only when their shapes
    match (same class count). Raises ValueError when a non-classifier layer's shapes differ (another variant/width).

    Args:
        model: the target GoogLeNet (any num_classes, with or without aux heads).
        weights: path of a `.weights.h5` file, or "imagenet-caffe" / "imagenet-torchvision".
        variant: the variant of `model` (and of the weights).
        width: the width of `model` (and of the weights).
    """
    resolved = resolve_weights(weights, variant)
    num_classes, aux = inspect_weights_file(resolved.path)
    shape = model.input_shape[1:]
    source = GoogLeNet(variant, num_classes=num_classes, aux_heads=aux, width=width, input_shape=shape,
                       preprocessing=None)
    try:
        with warnings.catch_warnings(record=True) as caught:  # Keras warns before failing; our error says more
            source.load_weights(resolved.path)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"weights: {resolved.path!r} does not fit GoogLeNet(variant={variant!r}, width={width!r}, "
            f"num_classes={num_classes}, aux_heads={aux}): {e}"
        ) from e
    for warning in caught:  # a load that worked keeps its warnings
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    source_layers = {layer.name: layer for layer in source.layers}
    copied, reinitialized = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        src = source_layers.get(layer.name)
        same = src is not None and [w.shape for w in src.weights] == [w.shape for w in layer.weights]
        if layer.name in CLASSIFIER_LAYERS and not same:
            if isinstance(layer, AuxHead) and isinstance(src, AuxHead):  # keep its conv and hidden FC
                for part in ("conv", "fc"):
                    getattr(layer, part).set_weights(getattr(src, part).get_weights())
                copied += [f"{layer.name}/conv", f"{layer.name}/fc"]
                reinitialized.append(f"{layer.name}/classifier")
            else:
                reinitialized.append(layer.name)
            continue
        if not same:
            raise ValueError(
                f"weights: layer {layer.name!r} of {resolved.path!r} does not match the model "
                f"(variant={variant!r}, width={width!r}): "
                f"{[tuple(w.shape) for w in src.weights] if src else 'missing'} vs "
                f"{[tuple(w.shape) for w in layer.weights]}"
            )
        layer.set_weights(src.get_weights())
        copied.append(layer.name)
    log.info("weights %s: copied %d layers, re-initialized %s", resolved.path, len(copied), reinitialized or "none")
    return LoadReport(resolved.path, num_classes, aux, copied, reinitialized)


def freeze_until(model: keras.Model, name: str) -> list[str]:
    """Set `trainable=False` on every layer up to and including `name` (in the model's layer order), except the
    classifiers and aux heads. Returns the names frozen. Frozen BatchNorm layers also run in inference mode."""
    names = [layer.name for layer in model.layers]
    if name not in names:
        raise ValueError(f"freeze_until: no layer {name!r} in {model.name}; layers are {names}")
    frozen = []
    for layer in model.layers:
        if layer.name not in CLASSIFIER_LAYERS + HEAD_OUTPUTS:
            layer.trainable = False
            frozen.append(layer.name)
        if layer.name == name:
            break
    return frozen


def freeze_batchnorm(model: keras.Model) -> int:
    """Freeze every BatchNormalization layer (statistics, gamma and beta: Keras 3 runs frozen BN in inference
    mode). Returns how many."""
    count = 0
    for layer in nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            count += 1
    return count


def freeze_zero_lr(model: keras.Model, lr_mult: dict) -> list[str]:
    """Set `trainable=False` on the layers (top-level names or sublayer paths like "aux1_head/fc") whose lr_mult
    is 0. Raises ValueError for a key that names no layer."""
    paths = {}
    for layer in nested_layers(model):
        path = getattr(layer, "path", None) or layer.name
        paths.setdefault(path, layer)
    for key in lr_mult:
        if key.rstrip("/") not in paths:
            raise ValueError(
                f"TrainConfig.lr_mult: no layer {key!r} in {model.name}; use top-level layer names "
                f"({[layer.name for layer in model.layers if layer.weights]}) or sublayer paths like 'aux1_head/fc'"
            )
    frozen = []
    for key, value in lr_mult.items():
        if value == 0.0:
            paths[key.rstrip("/")].trainable = False
            frozen.append(key)
    return frozen


def apply_finetuning(model: keras.Model, config) -> dict:
    """Apply a TrainConfig's weights loading, `freeze_until`, `freeze_bn` and `lr_mult` 0 entries to `model`.
    Returns a summary dict (for the log)."""
    summary = {}
    if config.weights is not None:
        summary["load"] = load_pretrained(model, config.weights, config.variant, config.width)
    if config.freeze_until:
        summary["frozen"] = freeze_until(model, config.freeze_until)
    if config.freeze_bn:
        summary["frozen_bn"] = freeze_batchnorm(model)
    if config.lr_mult:
        summary["lr_mult_zero"] = freeze_zero_lr(model, config.lr_mult)
    return summary
