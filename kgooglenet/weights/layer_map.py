"""One table mapping GoogLeNet's Keras layers to the layers of the BVLC Caffe model and of torchvision's model.

`WEIGHT_TABLE`: every Keras layer that holds weights, with the Caffe layer whose blobs it takes and the torchvision
module (state-dict prefix) whose tensors it takes. `ACTIVATION_TABLE`: the Keras layers whose outputs the parity report
compares, with the Caffe layer (as named in deploy.prototxt; ReLUs are in place, so a conv block's output is its ReLU
layer's output) and the torchvision module producing the same tensor.

Example:
>>> [m.caffe for m in WEIGHT_TABLE if m.keras == ("inception_3a", "b3")]
['inception_3a/5x5']
>>> [m.torch for m in WEIGHT_TABLE if m.keras == ("inception_3a", "b3")]
['inception3a.branch3.1']
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kgooglenet import specs


@dataclasses.dataclass(frozen=True)
class WeightMatch:
    """A Keras layer holding weights and its counterparts."""

    keras: tuple[str, ...]  # model layer name, then sublayer attribute names: ("inception_3a", "b2")
    kind: str  # "conv" (a ConvBlock) or "dense" (a Dense layer)
    caffe: str | None  # Caffe layer name (blobs: weight, bias); None when Caffe has no counterpart
    torch: str | None  # torchvision state-dict prefix (".conv.weight", ".bn.*" for conv blocks; ".weight", ".bias")
    head: str = specs.MAIN_HEAD  # one of specs.HEADS: aux entries exist only in models built with aux_heads=True
    flatten_from: tuple[int, int, int] | None = None  # (C, H, W) that the reference flattened before this Dense


@dataclasses.dataclass(frozen=True)
class ActivationMatch:
    """A Keras layer output and the reference layer producing the same tensor."""

    keras: str  # Keras layer name (its output)
    caffe: str | None  # Caffe layer whose output (top blob) equals it
    torch: str | None  # torchvision module whose output equals it
    head: str = specs.MAIN_HEAD


_BRANCHES = (  # Inception attribute, Caffe suffix, torchvision suffix
    ("b1", "1x1", "branch1"),
    ("b2_reduce", "3x3_reduce", "branch2.0"),
    ("b2", "3x3", "branch2.1"),
    ("b3_reduce", "5x5_reduce", "branch3.0"),
    ("b3", "5x5", "branch3.1"),
    ("b4", "pool_proj", "branch4.1"),
)
_CAFFE_AUX = dict(zip(specs.AUX_ON, ("loss1", "loss2")))  # Caffe's aux heads, in specs.AUX_ON order
_MAIN_CLASSIFIER = specs.CLASSIFIER_LAYERS[specs.MAIN_HEAD]


def _weight_table() -> tuple[WeightMatch, ...]:
    rows = [
        WeightMatch(("conv1",), "conv", "conv1/7x7_s2", "conv1"),
        WeightMatch(("conv2_reduce",), "conv", "conv2/3x3_reduce", "conv2"),
        WeightMatch(("conv2",), "conv", "conv2/3x3", "conv3"),
    ]
    for row in specs.INCEPTION_ROWS:
        for attr, caffe_suffix, torch_suffix in _BRANCHES:
            rows.append(
                WeightMatch(
                    (f"inception_{row.name}", attr),
                    "conv",
                    f"inception_{row.name}/{caffe_suffix}",
                    f"inception{row.name}.{torch_suffix}",
                )
            )
    rows.append(WeightMatch((_MAIN_CLASSIFIER,), "dense", "loss3/classifier", "fc"))
    for head, caffe_prefix in _CAFFE_AUX.items():
        flat = (specs.VARIANTS["paper"].aux_conv, *specs.AUX_POOLED_SIZE)  # 128 x 4 x 4
        layer = specs.CLASSIFIER_LAYERS[head]
        rows += [
            WeightMatch((layer, "conv"), "conv", f"{caffe_prefix}/conv", f"{head}.conv", head),
            WeightMatch((layer, "fc"), "dense", f"{caffe_prefix}/fc", f"{head}.fc1", head, flat),
            WeightMatch((layer, "classifier"), "dense", f"{caffe_prefix}/classifier", f"{head}.fc2", head),
        ]
    return tuple(rows)


def _activation_table() -> tuple[ActivationMatch, ...]:
    rows = [
        ActivationMatch("conv1", "conv1/relu_7x7", "conv1"),
        ActivationMatch("pool1", "pool1/3x3_s2", "maxpool1"),
        ActivationMatch("lrn1", "pool1/norm1", None),
        ActivationMatch("conv2_reduce", "conv2/relu_3x3_reduce", "conv2"),
        ActivationMatch("conv2", "conv2/relu_3x3", "conv3"),
        ActivationMatch("lrn2", "conv2/norm2", None),
        ActivationMatch("pool2", "pool2/3x3_s2", "maxpool2"),
    ]
    pools = {"4a": ("pool3", "pool3/3x3_s2", "maxpool3"), "5a": ("pool4", "pool4/3x3_s2", "maxpool4")}
    for row in specs.INCEPTION_ROWS:
        if row.name in pools:
            rows.append(ActivationMatch(*pools[row.name]))
        rows.append(ActivationMatch(f"inception_{row.name}", f"inception_{row.name}/output", f"inception{row.name}"))
    rows += [
        ActivationMatch("avg_pool", "pool5/7x7_s1", "avgpool"),
        ActivationMatch(_MAIN_CLASSIFIER, "loss3/classifier", "fc"),
    ]
    rows += [
        ActivationMatch(specs.CLASSIFIER_LAYERS[head], f"{prefix}/classifier", head, head)
        for head, prefix in _CAFFE_AUX.items()
    ]
    return tuple(rows)


WEIGHT_TABLE: tuple[WeightMatch, ...] = _weight_table()
ACTIVATION_TABLE: tuple[ActivationMatch, ...] = _activation_table()


def keras_layer(model, path: tuple[str, ...]):
    """The layer at `path` (model layer name, then sublayer attributes), or None when the model has no such layer."""
    names = {layer.name for layer in model.layers}
    if path[0] not in names:
        return None
    layer = model.get_layer(path[0])
    for attr in path[1:]:
        layer = getattr(layer, attr)
    return layer


def conv_kernel_from_oihw(weight: np.ndarray) -> np.ndarray:
    """Caffe/torch conv weight (out, in, kh, kw) -> Keras kernel (kh, kw, in, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def dense_kernel_from_out_in(weight: np.ndarray, flatten_from=None) -> np.ndarray:
    """Caffe/torch FC weight (out, in) -> Keras kernel (in, out). With `flatten_from=(C, H, W)`, the reference
    flattened a CHW map while Keras' Flatten flattens HWC, so the input axis is permuted from CHW to HWC order."""
    if flatten_from is not None:
        c, h, w = flatten_from
        if weight.shape[1] != c * h * w:
            raise ValueError(f"FC weight of shape {weight.shape} does not flatten a {c}x{h}x{w} map")
        weight = weight.reshape(weight.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return np.ascontiguousarray(weight.T)


def assign(variable, value: np.ndarray, what: str) -> None:
    """`variable.assign(value)` with a clear error on a shape mismatch; `what` names the source of `value`."""
    expected = tuple(variable.shape)
    if tuple(value.shape) != expected:
        raise ValueError(
            f"{what}: shape {tuple(value.shape)} does not fit Keras variable {variable.path} of shape {expected}"
        )
    variable.assign(value.astype(np.float32))


__all__ = [
    "ACTIVATION_TABLE",
    "ActivationMatch",
    "WEIGHT_TABLE",
    "WeightMatch",
    "assign",
    "conv_kernel_from_oihw",
    "dense_kernel_from_out_in",
    "keras_layer",
]
