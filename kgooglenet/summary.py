"""The paper's Table 1 for any GoogLeNet model: per layer type, patch size/stride, output size, depth, the six
inception columns, parameters and multiply-adds, with totals."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import layers

from kgooglenet import layers as klayers
from kgooglenet import specs

COLUMNS = (
    "type",
    "patch size/stride",
    "output size",
    "depth",
    "#1x1",
    "#3x3 reduce",
    "#3x3",
    "#5x5 reduce",
    "#5x5",
    "pool proj",
    "params",
    "ops",
)


@dataclasses.dataclass
class TableRow:
    """One row of Table 1."""

    name: str  # Keras layer name
    type: str  # "convolution", "max pool", "inception (3a)", ...
    patch: str  # "7x7/2", "" when not applicable
    output: tuple  # (height, width, channels) or (units,)
    depth: int  # layers with weights along the longest path (2 for inception, as in the paper)
    inception: tuple  # the six filter counts, or () for other layers
    params: int  # trainable parameters
    ops: int  # multiply-adds for one image


def _kernel_ops(layer, spatial: int) -> int:
    """Multiply-adds of the convs and dense layers inside `layer`, whose convs produce `spatial` pixels each."""
    ops = 0
    for sub in klayers.nested_layers(layer, include_self=True):
        if isinstance(sub, layers.Conv2D):
            ops += int(np.prod(sub.kernel.shape)) * spatial
        elif isinstance(sub, layers.Dense):
            ops += int(np.prod(sub.kernel.shape))
    return ops


def _trainable(layer) -> int:
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


def _row(layer) -> TableRow | None:
    shape = tuple(layer.output.shape[1:])
    spatial = int(np.prod(shape[:2])) if len(shape) == 3 and None not in shape[:2] else 0
    if isinstance(layer, klayers.Inception):
        counts = tuple(b.filters for b in layer.branches)
        return TableRow(
            layer.name,
            f"inception ({layer.name.split('_')[-1]})",
            "",
            shape,
            2,
            counts,
            _trainable(layer),
            _kernel_ops(layer, spatial),
        )
    if isinstance(layer, klayers.ConvBlock):
        patch = f"{layer.kernel_size}x{layer.kernel_size}/{layer.strides}"
        return TableRow(
            layer.name, "convolution", patch, shape, 1, (), _trainable(layer), _kernel_ops(layer, spatial)
        )
    if isinstance(layer, klayers.CeilPooling2D):
        kind = "max pool" if layer.mode == "max" else "avg pool"
        return TableRow(layer.name, kind, f"{layer.pool_size}x{layer.pool_size}/{layer.strides}", shape, 0, (), 0, 0)
    if isinstance(layer, klayers.LocalResponseNormalization):
        return TableRow(layer.name, "local response norm", "", shape, 0, (), 0, 0)
    if isinstance(layer, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
        in_shape = tuple(layer.input.shape[1:3])
        patch = f"{in_shape[0]}x{in_shape[1]}/1" if None not in in_shape else "global"
        kind = "avg pool" if isinstance(layer, layers.GlobalAveragePooling2D) else "max pool"
        return TableRow(layer.name, kind, patch, shape, 0, (), 0, 0)
    if isinstance(layer, layers.Dropout):
        return TableRow(layer.name, f"dropout ({layer.rate:.0%})", "", shape, 0, (), 0, 0)
    if isinstance(layer, layers.Dense):
        return TableRow(layer.name, "linear", "", shape, 1, (), _trainable(layer), _kernel_ops(layer, 0))
    if isinstance(layer, klayers.AuxHead):
        conv_hw = layer.pool.compute_output_shape(layer.input.shape)[1:3]
        ops = _kernel_ops(layer, int(np.prod(conv_hw)))
        return TableRow(layer.name, f"aux head ({layer.pool_type} pool)", "", shape, 3, (), _trainable(layer), ops)
    if isinstance(layer, layers.Activation) and layer.name in (specs.PREDICTIONS_LAYER, *specs.AUX_ON):
        kind = getattr(layer.activation, "__name__", str(layer.activation))
        return TableRow(layer.name, kind, "", shape, 0, (), 0, 0)
    return None


def summary_table(model: keras.Model) -> list[TableRow]:
    """Table 1 rows for a GoogLeNet model, in layer order.

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> rows = summary_table(GoogLeNet("bn"))
    >>> sum(r.params for r in rows)
    6624904
    """
    return [row for row in (_row(layer) for layer in model.layers) if row is not None]


def _fmt_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}K"
    return str(n) if n else ""


def format_table(model: keras.Model) -> str:
    """Table 1 as text, with the exact totals underneath."""
    rows = summary_table(model)
    cells = [COLUMNS]
    for r in rows:
        counts = [str(c) for c in r.inception] if r.inception else [""] * 6
        cells.append(
            (
                r.type,
                r.patch,
                "x".join(str(s) for s in r.output),
                str(r.depth) if r.depth else "",
                *counts,
                _fmt_count(r.params),
                _fmt_count(r.ops),
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    total_params = sum(r.params for r in rows)
    total_ops = sum(r.ops for r in rows)
    all_params = int(model.count_params())
    lines.append("-" * len(lines[0]))
    lines.append(
        f"{model.name}: input {'x'.join(str(s) for s in model.input.shape[1:])}, "
        f"trainable params {total_params:,} (all weights incl. BatchNorm statistics {all_params:,}), "
        f"multiply-adds {total_ops:,} ({total_ops / 1e9:.2f} G)"
    )
    return "\n".join(lines)
