"""GoogLeNet's building blocks as registered, serializable Keras layers.

Each layer takes its configuration as constructor arguments, returns them from `get_config()`, and creates its
sublayers' weights in `build()`, so `.keras` files round-trip without "unbuilt state" warnings.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from kgooglenet import specs

_PACKAGE = "kgooglenet"
# Every layer computes in NHWC (TF's CPU kernels have no NCHW convolution); Keras layers inside ours are pinned to it
# so that a global `keras.config.set_image_data_format("channels_first")` cannot silently change them. GoogLeNet(...)
# under channels_first transposes at its input and output instead.
_CHANNELS_LAST = "channels_last"


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, received {name}={value!r}")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Preprocess(layers.Layer):
    """Normalizes RGB pixels in [0, 255]: optional RGB->BGR swap, then `(x - mean) / std`, per channel.

    Args:
        mean: three per-channel means, in the network's channel order (after the swap).
        std: three per-channel divisors.
        bgr: reverse the channel order first (Caffe models are trained on BGR images).

    Example:
    >>> layer = Preprocess(mean=[127.5] * 3, std=[127.5] * 3)
    >>> layer(np.full((1, 2, 2, 3), 255.0, "float32")).numpy().max()
    1.0
    """

    def __init__(self, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr=False, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"`mean` and `std` must have 3 values each, received mean={mean!r}, std={std!r}")
        if any(s == 0 for s in std):
            raise ValueError(f"`std` must be non-zero, received std={std!r}")
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.bgr = bool(bgr)

    def build(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(f"Preprocess expects 3-channel RGB images, received input shape {input_shape}")
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.bgr:
            x = ops.flip(x, axis=-1)
        if any(m != 0 for m in self.mean):  # no op for an identity step (an exported graph stays lean)
            x = x - ops.cast(ops.convert_to_tensor(self.mean), x.dtype)
        if any(s != 1 for s in self.std):
            x = x * ops.cast(ops.convert_to_tensor([1.0 / s for s in self.std]), x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "bgr": self.bgr}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(layers.Layer):
    """Caffe's cross-channel LRN: `x / (k + alpha / n * sum_{n neighbours} x^2) ** beta`.

    Args:
        local_size: channels in the window `n` (odd), Caffe's `local_size`.
        alpha: Caffe's `alpha` (divided by `local_size` as Caffe does).
        beta: exponent.
        k: additive bias.

    Example:
    >>> LocalResponseNormalization()(np.ones((1, 2, 2, 8), "float32")).shape
    (1, 2, 2, 8)
    """

    def __init__(
        self, local_size=specs.LRN.local_size, alpha=specs.LRN.alpha, beta=specs.LRN.beta, k=specs.LRN.k, **kwargs
    ):
        super().__init__(**kwargs)
        _check_positive_int("local_size", local_size)
        if local_size % 2 == 0:
            raise ValueError(f"`local_size` must be odd, received local_size={local_size}")
        self.local_size = int(local_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        # Computed in float32: the TF kernel has no bfloat16 version and float16 squares overflow.
        x = tf.nn.local_response_normalization(
            tf.cast(inputs, "float32"),
            depth_radius=(self.local_size - 1) // 2,
            bias=self.k,
            alpha=self.alpha / self.local_size,
            beta=self.beta,
        )
        return tf.cast(x, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "local_size": self.local_size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CeilPooling2D(layers.Layer):
    """Max or average pooling with Caffe's and torch's ceil-mode output size (`ceil_mode=True`, padding 0).

    The input is padded at the bottom/right so that the last, partial window is kept: with -inf for max pooling,
    and, for average pooling, the average is taken over the valid pixels only (as Caffe and torch do).

    Args:
        pool_size: window size (square).
        strides: stride.
        mode: "max" or "avg".

    Example:
    >>> CeilPooling2D(3, 2)(np.zeros((1, 112, 112, 4), "float32")).shape
    (1, 56, 56, 4)
    """

    def __init__(self, pool_size=3, strides=2, mode="max", **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("pool_size", pool_size)
        _check_positive_int("strides", strides)
        if mode not in ("max", "avg"):
            raise ValueError(f"`mode` must be 'max' or 'avg', received mode={mode!r}")
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.mode = mode

    def build(self, input_shape):
        self.built = True

    def _extra(self, size):
        """Bottom/right padding (a Python int, or a tensor for dynamic sizes)."""
        k, s = self.pool_size, self.strides
        if isinstance(size, int):
            return (specs.pooled_size(size, k, s) - 1) * s + k - size
        out = (size - k + s - 1) // s + 1  # ceil((size - k) / s) + 1; the last window always starts inside for k >= s
        out = out - tf.cast((out - 1) * s >= size, out.dtype)
        return (out - 1) * s + k - size

    def _native_padding(self, h, w):
        """"VALID" or "SAME" when TF's own pooling gives exactly the ceil-mode windows (no copy of the input),
        else None. SAME pads (total // 2) before, so it matches when the total padding is at most 1."""
        if not (isinstance(h, int) and isinstance(w, int)):
            return None
        extras = [self._extra(size) for size in (h, w)]
        if extras == [0, 0]:
            return "VALID"
        same = all(
            specs.pooled_size(size, self.pool_size, self.strides) == -(-size // self.strides) and extra <= 1
            for size, extra in zip((h, w), extras)
        )
        return "SAME" if same else None

    def call(self, inputs):
        static = inputs.shape
        window = (self.pool_size, self.pool_size)
        native = self._native_padding(static[1], static[2])
        if native is not None:  # TF's SAME pooling ignores padded pixels in max and average alike
            pool = tf.nn.max_pool2d if self.mode == "max" else tf.nn.avg_pool2d
            return pool(inputs, window, self.strides, native)
        shape = tf.shape(inputs)
        h = static[1] if static[1] is not None else shape[1]
        w = static[2] if static[2] is not None else shape[2]
        pads = [[0, 0], [0, self._extra(h)], [0, self._extra(w)], [0, 0]]
        if self.mode == "max":
            x = tf.pad(inputs, pads, constant_values=tf.cast(-np.inf, inputs.dtype))
            return tf.nn.max_pool2d(x, window, self.strides, "VALID")
        ones = tf.ones_like(inputs[..., :1])
        total = tf.nn.avg_pool2d(tf.pad(inputs, pads), window, self.strides, "VALID")
        count = tf.nn.avg_pool2d(tf.pad(ones, pads), window, self.strides, "VALID")
        return total / count

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else specs.pooled_size(size, self.pool_size, self.strides)

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "mode": self.mode}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdaptiveAveragePooling2D(layers.Layer):
    """torch's `adaptive_avg_pool2d`: output cell (i, j) averages rows floor(i*H/oh) .. ceil((i+1)*H/oh) - 1
    (and likewise columns), so windows may overlap (on 14x14 -> 4x4 they are 4 wide at 0, 3, 7, 10).

    Args:
        output_size: the (height, width) of the output.

    Example:
    >>> AdaptiveAveragePooling2D((4, 4))(np.zeros((1, 14, 14, 8), "float32")).shape
    (1, 4, 4, 8)
    """

    def __init__(self, output_size=(4, 4), **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        output_size = tuple(output_size)
        if len(output_size) != 2:
            raise ValueError(f"`output_size` must be an int or a pair, received output_size={output_size!r}")
        for v in output_size:
            _check_positive_int("output_size", v)
        self.output_size = tuple(int(v) for v in output_size)

    def build(self, input_shape):
        self.built = True

    @staticmethod
    def _matrix(size, out, dtype):
        """(out, size) averaging matrix of torch's adaptive windows."""
        if isinstance(size, int):
            m = np.zeros((out, size), "float32")
            for i in range(out):
                start, end = (i * size) // out, -(-((i + 1) * size) // out)
                m[i, start:end] = 1.0 / (end - start)
            return tf.constant(m, dtype)
        i = tf.range(out)[:, None]
        idx = tf.range(size)[None, :]
        start = (i * size) // out
        end = -((-(i + 1) * size) // out)
        mask = tf.cast((idx >= start) & (idx < end), dtype)
        return mask / tf.cast(end - start, dtype)

    def call(self, inputs):
        shape = tf.shape(inputs)
        h = inputs.shape[1] if inputs.shape[1] is not None else shape[1]
        w = inputs.shape[2] if inputs.shape[2] is not None else shape[2]
        mh = self._matrix(h, self.output_size[0], inputs.dtype)
        mw = self._matrix(w, self.output_size[1], inputs.dtype)
        return tf.einsum("ih,bhwc,jw->bijc", mh, inputs, mw)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization computed with TF's fused kernel (FusedBatchNormV3) for 4-D channels-last inputs.

    Keras 3 normalizes with separate moment and normalize ops and, under mixed precision, casts every activation to
    float32 and back; the fused kernel takes float16/bfloat16 inputs directly, which makes GoogLeNet train faster
    than torchvision on CPUs (benchmarks/train.py). Same variables and arguments as `keras.layers.BatchNormalization`,
    so weight files are interchangeable. As in torch (and Caffe), the moving variance is updated with the unbiased
    batch variance. Other input ranks, axes or masks fall back to Keras' own computation.

    Example:
    >>> bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-3)
    >>> bn(np.ones((2, 4, 4, 3), "float32"), training=True).shape
    (2, 4, 4, 3)
    """

    def _fused(self, inputs, mask):
        return (
            len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and mask is None
            and self.center
            and self.scale
            and inputs.dtype in (tf.float32, tf.float16, tf.bfloat16)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.cast(self.gamma.value, "float32")
        beta = tf.cast(self.beta.value, "float32")
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + tf.cast(mean, self.moving_mean.dtype) * (1 - m))
            self.moving_variance.assign(
                self.moving_variance * m + tf.cast(variance, self.moving_variance.dtype) * (1 - m)
            )
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                inputs,
                gamma,
                beta,
                mean=tf.cast(self.moving_mean.value, "float32"),
                variance=tf.cast(self.moving_variance.value, "float32"),
                epsilon=self.epsilon,
                is_training=False,
            )[0]
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvBlock(layers.Layer):
    """Convolution + ReLU (Caffe), or convolution without bias + BatchNorm + ReLU (torchvision's BasicConv2d).

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: stride.
        padding: symmetric zero padding in pixels (Caffe's and torch's `pad`).
        batch_norm: use BatchNorm (and no conv bias).
        bn_momentum: Keras BatchNorm momentum.
        bn_epsilon: BatchNorm epsilon.

    Example:
    >>> ConvBlock(8, 7, strides=2, padding=3)(np.zeros((1, 224, 224, 3), "float32")).shape
    (1, 112, 112, 8)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        batch_norm=False,
        bn_momentum=0.9,
        bn_epsilon=1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("filters", filters)
        _check_positive_int("kernel_size", kernel_size)
        _check_positive_int("strides", strides)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = int(padding)
        self.batch_norm = bool(batch_norm)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        same = self.strides == 1 and self.padding * 2 == self.kernel_size - 1
        self.pad = None if (same or self.padding == 0) else layers.ZeroPadding2D(
            self.padding, data_format=_CHANNELS_LAST, dtype=self.dtype_policy
        )
        self.conv = layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same" if same else "valid",
            use_bias=not self.batch_norm,
            kernel_initializer="glorot_uniform" if not self.batch_norm else "he_normal",
            name="conv",
            data_format=_CHANNELS_LAST,
            dtype=self.dtype_policy,
        )
        self.bn = (
            FusedBatchNormalization(
                momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="bn", dtype=self.dtype_policy
            )
            if self.batch_norm
            else None
        )

    def build(self, input_shape):
        shape = input_shape
        if self.pad is not None:
            self.pad.build(shape)
            shape = self.pad.compute_output_shape(shape)
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        if self.bn is not None:
            self.bn.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs if self.pad is None else self.pad(inputs)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return ops.relu(x)

    def compute_output_shape(self, input_shape):
        shape = input_shape if self.pad is None else self.pad.compute_output_shape(input_shape)
        return self.conv.compute_output_shape(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "batch_norm": self.batch_norm,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Inception(layers.Layer):
    """The Inception module: four parallel branches concatenated on channels.

    branch 1: 1x1 conv; branch 2: 1x1 reduce -> 3x3; branch 3: 1x1 reduce -> `branch5_kernel` (5 in the paper,
    3 in torchvision); branch 4: 3x3/1 max-pool -> 1x1 projection.

    Args:
        conv1x1, reduce3x3, conv3x3, reduce5x5, conv5x5, pool_proj: filter counts (one row of Table 1).
        branch5_kernel: kernel size of the "5x5" branch.
        batch_norm, bn_momentum, bn_epsilon: as for `ConvBlock`.
        output_pool: optional pooling layer (max, average or global average: any that acts on each channel alone)
            applied to each branch before the concatenation. Equal to pooling the module's output, but it concatenates
            the smaller pooled maps: `kgooglenet.export.optimize_for_inference` sets it for the modules a pool follows.

    Example:
    >>> block = Inception(64, 96, 128, 16, 32, 32)
    >>> block(np.zeros((1, 28, 28, 192), "float32")).shape
    (1, 28, 28, 256)
    >>> pooled = Inception(64, 96, 128, 16, 32, 32, output_pool=keras.layers.MaxPooling2D(2))
    >>> pooled(np.zeros((1, 28, 28, 192), "float32")).shape
    (1, 14, 14, 256)
    """

    def __init__(
        self,
        conv1x1,
        reduce3x3,
        conv3x3,
        reduce5x5,
        conv5x5,
        pool_proj,
        branch5_kernel=5,
        batch_norm=False,
        bn_momentum=0.9,
        bn_epsilon=1e-3,
        output_pool=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(output_pool, dict):
            output_pool = keras.saving.deserialize_keras_object(output_pool)
        if output_pool is not None and not isinstance(output_pool, layers.Layer):
            raise ValueError(f"`output_pool` must be a pooling layer or None, received output_pool={output_pool!r}")
        self.output_pool = output_pool
        counts = dict(
            conv1x1=conv1x1,
            reduce3x3=reduce3x3,
            conv3x3=conv3x3,
            reduce5x5=reduce5x5,
            conv5x5=conv5x5,
            pool_proj=pool_proj,
        )
        for key, value in counts.items():
            _check_positive_int(key, value)
        if branch5_kernel not in (3, 5):
            raise ValueError(f"`branch5_kernel` must be 3 or 5, received branch5_kernel={branch5_kernel!r}")
        for key, value in counts.items():
            setattr(self, key, int(value))
        self.branch5_kernel = int(branch5_kernel)
        self.batch_norm = bool(batch_norm)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        common = dict(
            batch_norm=self.batch_norm, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, dtype=self.dtype_policy
        )
        k5 = self.branch5_kernel
        self.b1 = ConvBlock(self.conv1x1, 1, name="1x1", **common)
        self.b2_reduce = ConvBlock(self.reduce3x3, 1, name="3x3_reduce", **common)
        self.b2 = ConvBlock(self.conv3x3, 3, padding=1, name="3x3", **common)
        self.b3_reduce = ConvBlock(self.reduce5x5, 1, name="5x5_reduce", **common)
        self.b3 = ConvBlock(self.conv5x5, k5, padding=(k5 - 1) // 2, name="5x5", **common)
        self.b4_pool = layers.MaxPooling2D(
            3, strides=1, padding="same", data_format=_CHANNELS_LAST, name="pool", dtype=self.dtype_policy
        )
        self.b4 = ConvBlock(self.pool_proj, 1, name="pool_proj", **common)

    @property
    def branches(self):
        """The conv blocks in Caffe's order: (1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj)."""
        return (self.b1, self.b2_reduce, self.b2, self.b3_reduce, self.b3, self.b4)

    def build(self, input_shape):
        self.b1.build(input_shape)
        self.b2_reduce.build(input_shape)
        self.b2.build(self.b2_reduce.compute_output_shape(input_shape))
        self.b3_reduce.build(input_shape)
        self.b3.build(self.b3_reduce.compute_output_shape(input_shape))
        self.b4_pool.build(input_shape)
        self.b4.build(input_shape)
        if self.output_pool is not None:
            self.output_pool.build(self._concat_shape(input_shape))
        self.built = True

    def call(self, inputs, training=None):
        outputs = [
            self.b1(inputs, training=training),
            self.b2(self.b2_reduce(inputs, training=training), training=training),
            self.b3(self.b3_reduce(inputs, training=training), training=training),
            self.b4(self.b4_pool(inputs), training=training),
        ]
        if self.output_pool is not None:
            outputs = [self.output_pool(y) for y in outputs]
        return ops.concatenate(outputs, axis=-1)

    def _concat_shape(self, input_shape):
        return (*input_shape[:3], self.conv1x1 + self.conv3x3 + self.conv5x5 + self.pool_proj)

    def compute_output_shape(self, input_shape):
        shape = self._concat_shape(input_shape)
        return shape if self.output_pool is None else self.output_pool.compute_output_shape(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "conv1x1": self.conv1x1,
            "reduce3x3": self.reduce3x3,
            "conv3x3": self.conv3x3,
            "reduce5x5": self.reduce5x5,
            "conv5x5": self.conv5x5,
            "pool_proj": self.pool_proj,
            "branch5_kernel": self.branch5_kernel,
            "batch_norm": self.batch_norm,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "output_pool": None if self.output_pool is None else keras.saving.serialize_keras_object(self.output_pool),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AuxHead(layers.Layer):
    """An auxiliary classifier: pool to 4x4 -> 1x1 conv -> flatten -> FC + ReLU -> dropout -> FC (logits).

    Args:
        num_classes: classifier outputs.
        pool: "caffe" (average 5x5/3, ceil mode) or "adaptive" (torchvision's adaptive average pool to 4x4).
        conv_filters: filters of the 1x1 conv (128).
        fc_units: hidden units (1024).
        dropout: dropout before the classifier (0.7).
        batch_norm, bn_momentum, bn_epsilon: for the 1x1 conv, as in `ConvBlock`.

    Example:
    >>> head = AuxHead(10, pool="adaptive", conv_filters=8, fc_units=16)
    >>> head(np.zeros((2, 14, 14, 32), "float32")).shape
    (2, 10)
    """

    def __init__(
        self,
        num_classes,
        pool="caffe",
        conv_filters=128,
        fc_units=1024,
        dropout=0.7,
        batch_norm=False,
        bn_momentum=0.9,
        bn_epsilon=1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("conv_filters", conv_filters)
        _check_positive_int("fc_units", fc_units)
        if pool not in ("caffe", "adaptive"):
            raise ValueError(f"`pool` must be 'caffe' or 'adaptive', received pool={pool!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), received dropout={dropout!r}")
        self.num_classes = int(num_classes)
        self.pool_type = pool
        self.conv_filters = int(conv_filters)
        self.fc_units = int(fc_units)
        self.dropout_rate = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        policy = self.dtype_policy
        self.pool = (
            CeilPooling2D(*specs.AUX_CAFFE_POOL, mode="avg", name="pool", dtype=policy)
            if pool == "caffe"
            else AdaptiveAveragePooling2D(specs.AUX_POOLED_SIZE, name="pool", dtype=policy)
        )
        self.conv = ConvBlock(
            self.conv_filters,
            1,
            batch_norm=self.batch_norm,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name="conv",
            dtype=policy,
        )
        self.flatten = layers.Flatten(data_format=_CHANNELS_LAST, dtype=policy)
        self.fc = layers.Dense(self.fc_units, activation="relu", name="fc", dtype=policy)
        self.drop = layers.Dropout(self.dropout_rate, dtype=policy)
        self.classifier = layers.Dense(self.num_classes, name="classifier", dtype=policy)

    def build(self, input_shape):
        self.pool.build(input_shape)
        shape = self.pool.compute_output_shape(input_shape)
        if shape[1] is None or shape[2] is None:
            raise ValueError(
                f"AuxHead with pool={self.pool_type!r} needs a static spatial input size, received {input_shape}"
            )
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        flat = (shape[0], int(np.prod(shape[1:])))
        self.fc.build(flat)
        self.classifier.build((shape[0], self.fc_units))
        self.built = True

    def call(self, inputs, training=None):
        x = self.conv(self.pool(inputs), training=training)
        x = self.fc(self.flatten(x))
        x = self.drop(x, training=training)
        return self.classifier(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "pool": self.pool_type,
            "conv_filters": self.conv_filters,
            "fc_units": self.fc_units,
            "dropout": self.dropout_rate,
            "batch_norm": self.batch_norm,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
        }


def preprocessing_layer(preprocessing, name="preprocess", dtype=None):
    """A `Preprocess` layer for a `specs.PREPROCESSING` key or a `specs.Preprocessing`; None gives None."""
    if preprocessing is None:
        return None
    if isinstance(preprocessing, str):
        if preprocessing not in specs.PREPROCESSING:
            raise ValueError(
                f"`preprocessing` must be one of {sorted(specs.PREPROCESSING)}, a kgooglenet.specs.Preprocessing "
                f"or None, received preprocessing={preprocessing!r}"
            )
        preprocessing = specs.PREPROCESSING[preprocessing]
    if not isinstance(preprocessing, specs.Preprocessing):
        raise ValueError(
            f"`preprocessing` must be a name, a kgooglenet.specs.Preprocessing or None, received {preprocessing!r}"
        )
    return Preprocess(**preprocessing.to_config(), name=name, dtype=dtype)


def nested_layers(layer, include_self: bool = False) -> list:
    """Every layer inside `layer` (and `layer` itself first with include_self), depth first, each once: a model's
    `layers`, and for any other layer the layers its public attributes hold, directly or in a list/tuple.

    Keras 3 keeps its recursive walk private (`Layer._flatten_layers`; `Model.layers` is one level deep), so this is
    that walk over public names; kgooglenet's composite layers keep their sublayers in public attributes.
    """
    found, seen = [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        found.append(node)
        if isinstance(node, keras.Model):
            children = node.layers
        else:
            children = [
                item
                for name, value in vars(node).items() if not name.startswith("_")
                for item in (value if isinstance(value, (list, tuple)) else (value,))
                if isinstance(item, layers.Layer)
            ]
        for child in children:
            visit(child)

    visit(layer)
    return found if include_self else found[1:]


__all__ = [
    "AdaptiveAveragePooling2D",
    "FusedBatchNormalization",
    "AuxHead",
    "CeilPooling2D",
    "ConvBlock",
    "Inception",
    "LocalResponseNormalization",
    "Preprocess",
    "nested_layers",
    "preprocessing_layer",
]
