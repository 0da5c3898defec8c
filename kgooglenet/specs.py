"""The numbers of GoogLeNet, in one place.

Everything architectural that differs between the paper/Caffe model, the torchvision/TF-slim BatchNorm model and the
CIFAR variant is a field of `VariantSpec`; the nine inception rows (Szegedy et al. 2015, Table 1) are
`INCEPTION_ROWS`; the preprocessing that belongs to each weight set is in `PREPROCESSING`. Code reads these tables
and never repeats their numbers.

Sources:
- paper / Caffe: ../shared/assets/bvlc_googlenet/{deploy,train_val}.prototxt (BVLC/caffe, models/bvlc_googlenet).
- bn: torchvision.models.googlenet (torchvision 0.29), itself a port of TF-slim's inception_v1.
- cifar: the 32x32 GoogLeNet of popular CIFAR-10 tutorials (3x3 stem of 192 channels, no early downsampling).
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class InceptionRow:
    """One row of the paper's Table 1: the filter counts of one inception module."""

    name: str  # "3a" .. "5b"; the Keras layer is called f"inception_{name}"
    conv1x1: int  # "#1x1": the plain 1x1 branch
    reduce3x3: int  # "#3x3 reduce": 1x1 before the 3x3
    conv3x3: int  # "#3x3"
    reduce5x5: int  # "#5x5 reduce": 1x1 before the 5x5 (a 3x3 in torchvision's model)
    conv5x5: int  # "#5x5"
    pool_proj: int  # "pool proj": 1x1 after the 3x3/1 max-pool

    @property
    def out_channels(self) -> int:
        return self.conv1x1 + self.conv3x3 + self.conv5x5 + self.pool_proj


# Table 1 of "Going deeper with convolutions" (identical in Caffe's prototxt and in torchvision).
INCEPTION_ROWS: tuple[InceptionRow, ...] = (
    InceptionRow("3a", 64, 96, 128, 16, 32, 32),
    InceptionRow("3b", 128, 128, 192, 32, 96, 64),
    InceptionRow("4a", 192, 96, 208, 16, 48, 64),
    InceptionRow("4b", 160, 112, 224, 24, 64, 64),
    InceptionRow("4c", 128, 128, 256, 24, 64, 64),
    InceptionRow("4d", 112, 144, 288, 32, 64, 64),
    InceptionRow("4e", 256, 160, 320, 32, 128, 128),
    InceptionRow("5a", 256, 160, 320, 32, 128, 128),
    InceptionRow("5b", 384, 192, 384, 48, 128, 128),
)
# A max-pool stands before the first row of each stage ("3a", "4a", "5a"); the aux heads hang on "4a" and "4d".
STAGE_STARTS = ("3a", "4a", "5a")
AUX_ON = {"aux1": "4a", "aux2": "4d"}

# The heads of a GoogLeNet: the output names of a model with aux heads ({"main", "aux1", "aux2"}) and the Keras layer
# holding each head's final classifier (Dense "classifier" for the main head, the `AuxHead` layers for the others).
MAIN_HEAD = "main"
HEADS = (MAIN_HEAD, *AUX_ON)
CLASSIFIER_LAYERS = {MAIN_HEAD: "classifier", **{head: f"{head}_head" for head in AUX_ON}}
PREDICTIONS_LAYER = "predictions"  # the main head's activation layer (the model's output without aux heads)

# The aux heads' pooling: Caffe's average 5x5/3 (ceil mode), or torchvision's adaptive average pool to this size
# (which Caffe's pool also gives at 224, and which the trained aux FC weights flatten, with the 1x1 conv's channels).
AUX_CAFFE_POOL = (5, 3)  # (window, stride)
AUX_POOLED_SIZE = (4, 4)


@dataclasses.dataclass(frozen=True)
class LRNSpec:
    """Caffe's cross-channel local response normalization (bvlc_googlenet deploy.prototxt lrn_param)."""

    local_size: int  # channels in the window
    alpha: float  # divided by local_size, as Caffe does
    beta: float  # exponent
    k: float  # additive bias (Caffe's default 1)


LRN = LRNSpec(local_size=5, alpha=1e-4, beta=0.75, k=1.0)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One stem convolution."""

    name: str  # Keras layer name
    filters: int
    kernel: int
    stride: int
    pad: int  # explicit symmetric zero padding, as in Caffe and torch


@dataclasses.dataclass(frozen=True)
class PoolSpec:
    """A max-pool with ceil-mode output size (Caffe and torch round pooled sizes up)."""

    name: str
    size: int
    stride: int


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """Everything that differs between the three GoogLeNets."""

    name: str
    source: str  # where the architecture comes from (documentation)
    stem: tuple  # ConvSpec / PoolSpec / "lrn" items in order, up to the input of inception 3a
    stage_pools: tuple[PoolSpec, PoolSpec]  # the pools before 4a and before 5a
    batch_norm: bool  # conv -> BN -> ReLU (no conv bias) instead of conv(+bias) -> ReLU
    bn_momentum: float  # Keras momentum (1 - torch momentum)
    bn_epsilon: float
    branch5_kernel: int  # kernel of the "5x5" branch: 5 in Caffe, 3 in torchvision
    dropout: float  # before the main classifier
    aux_pool: str  # "caffe": average 5x5/3 (ceil); "adaptive": torchvision's adaptive average pool to 4x4
    aux_dropout: float
    aux_conv: int  # 1x1 conv filters in the aux head
    aux_fc: int  # hidden units of the aux head
    default_size: int  # default square input size
    default_preprocessing: str | None  # key of PREPROCESSING applied inside the model by default


_IMAGENET_STEM_BN = (
    ConvSpec("conv1", 64, 7, 2, 3),
    PoolSpec("pool1", 3, 2),
    ConvSpec("conv2_reduce", 64, 1, 1, 0),
    ConvSpec("conv2", 192, 3, 1, 1),
    PoolSpec("pool2", 3, 2),
)
_IMAGENET_STEM_CAFFE = (
    ConvSpec("conv1", 64, 7, 2, 3),
    PoolSpec("pool1", 3, 2),
    "lrn1",
    ConvSpec("conv2_reduce", 64, 1, 1, 0),
    ConvSpec("conv2", 192, 3, 1, 1),
    "lrn2",
    PoolSpec("pool2", 3, 2),
)

VARIANTS: dict[str, VariantSpec] = {
    "paper": VariantSpec(
        name="paper",
        source="BVLC Caffe bvlc_googlenet (deploy.prototxt / train_val.prototxt), Szegedy et al. 2015",
        stem=_IMAGENET_STEM_CAFFE,
        stage_pools=(PoolSpec("pool3", 3, 2), PoolSpec("pool4", 3, 2)),
        batch_norm=False,
        bn_momentum=0.0,
        bn_epsilon=0.0,
        branch5_kernel=5,
        dropout=0.4,
        aux_pool="caffe",
        aux_dropout=0.7,
        aux_conv=128,
        aux_fc=1024,
        default_size=224,
        default_preprocessing="caffe",
    ),
    "bn": VariantSpec(
        name="bn",
        source="torchvision.models.googlenet (port of TF-slim inception_v1)",
        stem=_IMAGENET_STEM_BN,
        stage_pools=(PoolSpec("pool3", 3, 2), PoolSpec("pool4", 2, 2)),
        batch_norm=True,
        bn_momentum=0.9,  # torch's default momentum 0.1
        bn_epsilon=1e-3,
        branch5_kernel=3,
        dropout=0.2,
        aux_pool="adaptive",
        aux_dropout=0.7,
        aux_conv=128,
        aux_fc=1024,
        default_size=224,
        default_preprocessing="torchvision",
    ),
    "cifar": VariantSpec(
        name="cifar",
        source="32x32 GoogLeNet of the popular CIFAR-10 tutorials (3x3 stem, 192 channels, no early downsampling)",
        stem=(ConvSpec("conv1", 192, 3, 1, 1),),
        stage_pools=(PoolSpec("pool3", 3, 2), PoolSpec("pool4", 3, 2)),
        batch_norm=True,
        bn_momentum=0.9,  # Keras' 0.99 is too slow for small datasets (99% train / 10% val after 8 epochs on digits)
        bn_epsilon=1e-3,
        branch5_kernel=3,
        dropout=0.2,
        aux_pool="adaptive",
        aux_dropout=0.7,
        aux_conv=128,
        aux_fc=1024,
        default_size=32,
        default_preprocessing="imagenet",
    ),
}
VARIANT_NAMES = tuple(VARIANTS)  # ("paper", "bn", "cifar")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What the model does to RGB pixels in [0, 255] before the first conv: `(x - mean) / std`, channels reversed
    first when `bgr` is true. `mean` and `std` are per channel, in the channel order the network sees."""

    mean: tuple[float, float, float]  # subtracted, in the network's channel order
    std: tuple[float, float, float]  # divided by, after the mean
    bgr: bool = False  # the network was trained on BGR images (Caffe)

    def to_config(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "bgr": self.bgr}


PREPROCESSING: dict[str, Preprocessing] = {
    # Caffe bvlc_googlenet: BGR, mean 104/117/123 subtracted, no scaling (deploy readme / train_val mean_value).
    "caffe": Preprocessing(mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), bgr=True),
    # torchvision googlenet with transform_input=True (its ImageNet weights): the ImageNet mean/std normalization
    # followed by transform_input equals x / 127.5 - 1.
    "torchvision": Preprocessing(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)),
    # ImageNet mean/std (torchvision's transforms.Normalize defaults), scaled to [0, 255] pixels.
    "imagenet": Preprocessing(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)),
    # pixels / 255
    "unit": Preprocessing(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)),
}


def scaled(channels: int, width: float) -> int:
    """Channel count after the `width` multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def pooled_size(size: int, kernel: int, stride: int) -> int:
    """Caffe's and torch's ceil-mode pooled size for padding 0 (the last window starts inside the input)."""
    out = int(math.ceil((size - kernel) / stride)) + 1
    if (out - 1) * stride >= size:
        out -= 1
    return out


def conv_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def feature_map_sizes(variant: str, height: int, width: int) -> dict[str, tuple[int, int]]:
    """Spatial size of every stem/pool output and inception row for an input of height x width.

    Raises ValueError when the input is too small for some layer (a pooling window larger than its input).
    """
    spec = VARIANTS[variant]
    sizes: dict[str, tuple[int, int]] = {"input": (height, width)}
    h, w = height, width

    def check(name: str, kernel: int):
        if h < kernel or w < kernel:
            raise ValueError(
                f"input_shape: {height}x{width} is too small for variant {variant!r}: layer {name!r} gets a "
                f"{h}x{w} map but needs at least {kernel}x{kernel}."
            )

    for item in spec.stem:
        if isinstance(item, ConvSpec):
            check(item.name, item.kernel - 2 * item.pad)
            h, w = (conv_size(s, item.kernel, item.stride, item.pad) for s in (h, w))
            sizes[item.name] = (h, w)
        elif isinstance(item, PoolSpec):
            check(item.name, item.size)
            h, w = (pooled_size(s, item.size, item.stride) for s in (h, w))
            sizes[item.name] = (h, w)
    pools = dict(zip(STAGE_STARTS[1:], spec.stage_pools))
    for row in INCEPTION_ROWS:
        if row.name in pools:
            pool = pools[row.name]
            check(pool.name, pool.size)
            h, w = (pooled_size(s, pool.size, pool.stride) for s in (h, w))
            sizes[pool.name] = (h, w)
        sizes[f"inception_{row.name}"] = (h, w)
    return sizes


def aux_pooled_size(variant: str, height: int, width: int) -> tuple[int, int]:
    """Spatial size after the aux heads' pooling (4x4 at 224 for every variant)."""
    spec = VARIANTS[variant]
    if spec.aux_pool == "adaptive":
        return AUX_POOLED_SIZE
    window, stride = AUX_CAFFE_POOL
    h, w = feature_map_sizes(variant, height, width)[f"inception_{AUX_ON['aux1']}"]
    if h < window or w < window:
        raise ValueError(
            f"input_shape: {height}x{width} is too small for the Caffe aux heads of variant {variant!r}: "
            f"inception_4a is {h}x{w}, the aux average pool needs at least {window}x{window}."
        )
    return pooled_size(h, window, stride), pooled_size(w, window, stride)
