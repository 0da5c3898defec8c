"""Automatic augmentation policies and random erasing, per image, in-graph and stateless-seeded.

RandAugment (`rand_augment`), TrivialAugment Wide (`trivial_augment`), the ImageNet AutoAugment policy
(`auto_augment`), AugMix (`augmix`) and random erasing (`random_erasing`) with torchvision's semantics
(`torchvision.transforms.RandAugment` etc.) on one float32 [H, W, 3] image in [0, 255]. Each op is one branch of a
`tf.switch_case`, so only the drawn op runs. Every draw comes from the element's stateless seed: the same
`DataConfig.seed` gives the same batches, in parallel `map` calls too.

Keras 3.15 has `RandAugment`, `AugMix` and `RandomErasing` layers, but they draw from a stateful SeedGenerator
(`keras.random` refuses a tensor seed, so a per-element seed cannot reach them and the draws inside a parallel
tf.data map follow thread timing), RandAugment picks the same ops for a whole batch and computes all 11 ops for each
pick, and RandomErasing has no aspect-ratio range: hence these ops, written with tf.image and TF ops.

Magnitudes follow torchvision (RandAugment: 31 bins, shear 0.3, translate 150/331 of the side, rotate 30 degrees,
enhance 0.9, posterize down to 4 bits; TrivialAugment Wide: shear 0.99, rotate 135, enhance 0.99, posterize down to
2 bits) with two changes so that magnitude 0 is the identity of every magnitude-driven op: solarize's threshold is
256 at magnitude 0 (as timm; torchvision's 255 inverts white pixels), and AugMix posterizes from 8 bits like
RandAugment (torchvision's AugMix starts at 4). TrivialAugment's translate is 32/224 of the side (torchvision: 32
pixels at any size, the whole image at 32x32). Geometric ops sample with nearest neighbour (torchvision's default)
and fill with 0. AutoContrast and Equalize have no magnitude: they are the identity on an image whose channels span
[0, 255] with a flat histogram.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# name: signed (the magnitude gets a random sign)
_OPS = {
    "identity": False, "shear_x": True, "shear_y": True, "translate_x": True, "translate_y": True, "rotate": True,
    "brightness": True, "color": True, "contrast": True, "sharpness": True, "posterize": False, "solarize": False,
    "autocontrast": False, "equalize": False, "invert": False,
}
OP_NAMES = tuple(_OPS)
# maximum magnitude of each op (translations as a fraction of the image side; posterize: bits removed;
# solarize: how far the threshold drops from 256)
_ENHANCE = ("brightness", "color", "contrast", "sharpness")
RAND_AUGMENT_MAX = {"shear_x": 0.3, "shear_y": 0.3, "translate_x": 150 / 331, "translate_y": 150 / 331,
                    "rotate": 30.0, **{k: 0.9 for k in _ENHANCE}, "posterize": 4.0, "solarize": 256.0}
TRIVIAL_AUGMENT_MAX = {**RAND_AUGMENT_MAX, "shear_x": 0.99, "shear_y": 0.99, "translate_x": 32 / 224,
                       "translate_y": 32 / 224, "rotate": 135.0, **{k: 0.99 for k in _ENHANCE}, "posterize": 6.0}
AUGMIX_MAX = {**RAND_AUGMENT_MAX, "translate_x": 1 / 3, "translate_y": 1 / 3}
RAND_AUGMENT_BINS = 31  # magnitude 0..30, as torchvision's num_magnitude_bins=31
RAND_AUGMENT_OPS = OP_NAMES[:14]  # torchvision's RandAugment / TrivialAugmentWide space (no invert)
AUGMIX_OPS = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "posterize", "solarize", "autocontrast",
              "equalize", *_ENHANCE)  # torchvision's AugMix(all_ops=True)

# torchvision's AutoAugmentPolicy.IMAGENET: 25 sub-policies of two (op, probability, magnitude bin of 10)
IMAGENET_POLICY = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)), (("solarize", 0.6, 5), ("autocontrast", 0.6, 0)),
    (("equalize", 0.8, 0), ("equalize", 0.6, 0)), (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, 0), ("solarize", 0.2, 4)), (("equalize", 0.4, 0), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, 0)), (("posterize", 0.8, 5), ("equalize", 1.0, 0)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)), (("equalize", 0.6, 0), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)), (("rotate", 0.4, 9), ("equalize", 0.6, 0)),
    (("equalize", 0.0, 0), ("equalize", 0.8, 0)), (("invert", 0.6, 0), ("equalize", 1.0, 0)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)), (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)), (("sharpness", 0.4, 7), ("invert", 0.6, 0)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, 0)), (("color", 0.4, 0), ("equalize", 0.6, 0)),
    (("equalize", 0.4, 0), ("solarize", 0.2, 4)), (("solarize", 0.6, 5), ("autocontrast", 0.6, 0)),
    (("invert", 0.6, 0), ("equalize", 1.0, 0)), (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, 0), ("equalize", 0.6, 0)),
)
_AUTO_AUGMENT_BINS = 10


# --------------------------------------------------------------------------------------------
# the ops: float32 [H, W, 3] in [0, 255], magnitude v (a scalar tensor, already signed and scaled)
# --------------------------------------------------------------------------------------------
def _select(condition, x, y):
    """`tf.where` for same-shape operands: tf.raw_ops.Select, ~4x cheaper per image than the broadcasting SelectV2."""
    return tf.raw_ops.Select(condition=condition, x=x, y=y)


def _round_half_away(x):
    """std::round (the TF image kernels' rounding): halves away from zero; tf.round rounds them to even."""
    return tf.floor(tf.abs(x) + 0.5) * tf.sign(x)


def _transform(img, matrix):
    """Affine transform (output pixel -> input pixel, a 2x3 `matrix` row-major), nearest neighbour, zero fill: one
    gather of source pixels. Equal to ImageProjectiveTransformV3 (NEAREST, CONSTANT 0), which costs ~3x as much."""
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    m = tf.unstack(tf.cast(matrix, tf.float32))
    xs = tf.cast(tf.range(w), tf.float32)[None, :]
    ys = tf.cast(tf.range(h), tf.float32)[:, None]
    src_x = _round_half_away(m[0] * xs + m[1] * ys + m[2])
    src_y = _round_half_away(m[3] * xs + m[4] * ys + m[5])
    fw, fh = tf.cast(w, tf.float32), tf.cast(h, tf.float32)
    inside = (src_x >= 0.0) & (src_x < fw) & (src_y >= 0.0) & (src_y < fh)
    index = tf.cast(_select(inside, src_y * fw + src_x, tf.fill(tf.shape(src_x), fh * fw)), tf.int32)
    pixels = tf.concat([tf.reshape(img, [-1, 3]), tf.zeros([1, 3], img.dtype)], axis=0)  # the last row: the fill
    return tf.reshape(tf.gather(pixels, index), tf.shape(img))


def _side(img, axis):
    return tf.cast(tf.shape(img)[axis], tf.float32)


def _blend(img, degenerate, factor):
    return tf.clip_by_value(degenerate + factor * (img - degenerate), 0.0, 255.0)


def _gray(img):
    """ITU-R 601-2 luma (tf.image.rgb_to_grayscale's weights), [H, W, 1]; channel slices are ~5x cheaper here than
    its tensordot."""
    return img[..., 0:1] * 0.2989 + img[..., 1:2] * 0.587 + img[..., 2:3] * 0.114


def _sharpen_degenerate(img):
    """PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13) inside, the border pixels kept (PIL/torchvision):
    sums of shifted slices, far cheaper than a 3-channel depthwise convolution on CPU."""
    rows = img[:-2] + img[1:-1] + img[2:]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    inner = (box + 4.0 * img[1:-1, 1:-1]) / 13.0
    middle = tf.concat([img[1:-1, :1], inner, img[1:-1, -1:]], axis=1)
    return tf.concat([img[:1], middle, img[-1:]], axis=0)


def _posterize(img, v):
    bits = 8.0 - tf.round(v)
    step = tf.pow(2.0, 8.0 - bits)
    return tf.cond(bits >= 8.0, lambda: img, lambda: tf.floor(img / step) * step)


def _autocontrast(img):
    lo = tf.reduce_min(img, axis=[0, 1])
    hi = tf.reduce_max(img, axis=[0, 1])
    spread = hi > lo  # a flat channel is kept
    scale = tf.where(spread, 255.0 / tf.maximum(hi - lo, 1e-6), 1.0)
    return tf.clip_by_value((img - tf.where(spread, lo, 0.0)) * scale, 0.0, 255.0)


def _equalize(img):
    """torchvision's per-channel histogram equalization (`F.equalize`) on the rounded pixel values. The three
    histograms are one `histogram_fixed_width` over the values offset by 256 per channel (5x cheaper here than
    `tf.math.bincount`), and the lookup one gather with the same offsets."""
    if img.shape.is_fully_defined():  # a constant: broadcasting [3] per op costs more than the histogram
        offsets = tf.constant(np.broadcast_to(np.array([0.0, 256.0, 512.0], np.float32), img.shape))
    else:
        offsets = tf.broadcast_to(tf.constant([0.0, 256.0, 512.0]), tf.shape(img))
    flat = tf.round(tf.clip_by_value(img, 0.0, 255.0)) + offsets  # integers; channel c in [256c, 256c + 255]
    hist = tf.reshape(tf.histogram_fixed_width(flat + 0.5, [0.0, 768.0], 768), [3, 256])  # +0.5: no bin edge
    last = 255 - tf.argmax(tf.cast(tf.reverse(hist, [1]) > 0, tf.int32), axis=1, output_type=tf.int32)
    last_count = tf.gather(hist, last, batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1) - last_count) // 255  # [3]
    safe = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(hist, axis=1) + safe // 2) // safe
    lut = tf.clip_by_value(tf.concat([tf.zeros([3, 1], lut.dtype), lut[:, :-1]], axis=1), 0, 255)
    mapped = tf.gather(tf.reshape(tf.cast(lut, tf.float32), [-1]), tf.cast(flat, tf.int32))
    keep = step == 0  # a channel with a single value (or one value and a single other pixel) is kept
    return tf.cond(tf.reduce_any(keep), lambda: tf.where(keep, img, mapped), lambda: mapped)


def _shear_x(img, v):  # about the top-left corner of the first pixel, as torchvision (hence the half-pixel 0.5 * v)
    return _transform(img, [1.0, v, 0.5 * v, 0.0, 1.0, 0.0, 0.0, 0.0])


def _shear_y(img, v):
    return _transform(img, [1.0, 0.0, 0.0, v, 1.0, 0.5 * v, 0.0, 0.0])


def _shift(img, offset, axis):
    """out[i] = img[i + round(offset)] along `axis`, zero fill: a translation sampled nearest-neighbour, as
    `_transform` with a pure offset would sample it, as one slice and one pad (cheaper than the gather)."""
    n = tf.shape(img)[axis]
    s = tf.clip_by_value(tf.cast(_round_half_away(offset), tf.int32), -n, n)
    begin, size = [0, 0, 0], [-1, -1, -1]
    begin[axis], size[axis] = tf.maximum(s, 0), n - tf.abs(s)
    pads = [[0, 0], [0, 0], [0, 0]]
    pads[axis] = [tf.maximum(-s, 0), tf.maximum(s, 0)]
    return tf.ensure_shape(tf.pad(tf.slice(img, begin, size), pads), img.shape)


def _translate_x(img, v):
    return _shift(img, -v * _side(img, 1), axis=1)


def _translate_y(img, v):
    return _shift(img, -v * _side(img, 0), axis=0)


def _rotate(img, v):
    a = v * math.pi / 180.0
    c, s = tf.cos(a), tf.sin(a)
    cy, cx = (_side(img, 0) - 1) / 2, (_side(img, 1) - 1) / 2
    return _transform(img, tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0.0, 0.0]))


_FUNCTIONS = {
    "identity": lambda img, v: img,
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
    "rotate": _rotate,
    "brightness": lambda img, v: tf.clip_by_value(img * (1.0 + v), 0.0, 255.0),
    "color": lambda img, v: tf.clip_by_value((1.0 + v) * img - v * _gray(img), 0.0, 255.0),  # one broadcast op
    "contrast": lambda img, v: _blend(img, tf.reduce_mean(_gray(tf.reduce_mean(img, axis=[0, 1]))), 1.0 + v),
    "sharpness": lambda img, v: _blend(img, _sharpen_degenerate(img), 1.0 + v),
    "posterize": _posterize,
    "solarize": lambda img, v: _select(img >= 256.0 - v, 255.0 - img, img),
    "autocontrast": lambda img, v: _autocontrast(img),
    "equalize": lambda img, v: _equalize(img),
    "invert": lambda img, v: 255.0 - img,
}


def apply_op(img, op, level, seed, *, ops=OP_NAMES, maxima=RAND_AUGMENT_MAX):
    """Apply `ops[op]` (int32 scalar tensor) at `level` in [0, 1] of its maximum in `maxima`, with a random sign
    from `seed` for signed ops. Only the drawn op runs (tf.switch_case)."""
    maxes = tf.constant([maxima.get(name, 0.0) for name in ops], tf.float32)
    signed = tf.constant([_OPS[name] for name in ops])
    flip = tf.random.stateless_uniform([], seed) < 0.5
    v = tf.cast(level, tf.float32) * tf.gather(maxes, op)
    v = tf.where(tf.logical_and(tf.gather(signed, op), flip), -v, v)
    branches = [lambda name=name: _FUNCTIONS[name](img, v) for name in ops]
    return tf.ensure_shape(tf.switch_case(op, branches), img.shape)


def _seeds(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n))


def _randint(seed, high):
    return tf.random.stateless_uniform([], seed, 0, high, dtype=tf.int32)


# --------------------------------------------------------------------------------------------
# the policies
# --------------------------------------------------------------------------------------------
def rand_augment(img, seed, num_ops: int = 2, magnitude: float = 9.0):
    """RandAugment: `num_ops` ops drawn uniformly from the 14 of torchvision (identity included), each at
    `magnitude` of 30."""
    level = float(magnitude) / (RAND_AUGMENT_BINS - 1)
    for s in _seeds(seed, max(1, num_ops))[:num_ops]:
        s_op, s_sign = _seeds(s, 2)
        img = apply_op(img, _randint(s_op, len(RAND_AUGMENT_OPS)), level, s_sign, ops=RAND_AUGMENT_OPS)
    return img


def trivial_augment(img, seed, max_level: float = 1.0):
    """TrivialAugment Wide: one op, at a magnitude drawn uniformly from the 31 bins (times `max_level`)."""
    s_op, s_level, s_sign = _seeds(seed, 3)
    level = tf.cast(_randint(s_level, RAND_AUGMENT_BINS), tf.float32) / (RAND_AUGMENT_BINS - 1) * max_level
    return apply_op(img, _randint(s_op, len(RAND_AUGMENT_OPS)), level, s_sign, ops=RAND_AUGMENT_OPS,
                    maxima=TRIVIAL_AUGMENT_MAX)


def auto_augment(img, seed):
    """The ImageNet AutoAugment policy: one of its 25 sub-policies, each op applied with its probability."""
    ops = tf.constant([[OP_NAMES.index(op) for op, _, _ in sub] for sub in IMAGENET_POLICY], tf.int32)
    probs = tf.constant([[p for _, p, _ in sub] for sub in IMAGENET_POLICY], tf.float32)
    levels = tf.constant([[b / (_AUTO_AUGMENT_BINS - 1) for _, _, b in sub] for sub in IMAGENET_POLICY], tf.float32)
    s_pick, *rest = _seeds(seed, 5)
    k = _randint(s_pick, len(IMAGENET_POLICY))
    for i in range(2):
        s_apply, s_sign = rest[2 * i], rest[2 * i + 1]
        applied = apply_op(img, ops[k, i], levels[k, i], s_sign)
        img = tf.where(tf.random.stateless_uniform([], s_apply) < probs[k, i], applied, img)
    return img


def _dirichlet(seed, alpha: float, n: int):
    g = tf.random.stateless_gamma([n], seed, alpha=alpha)
    return g / tf.reduce_sum(g)


def augmix(img, seed, severity: int = 3, width: int = 3, alpha: float = 1.0, max_depth: int = 3):
    """AugMix: `width` chains of 1..`max_depth` ops (levels drawn in [0, severity) of 10), mixed with Dirichlet
    weights, then blended with the image by a Beta(alpha, alpha) weight (torchvision's AugMix, all_ops=True)."""
    s_w, s_m, *chains = _seeds(seed, 2 + width)
    weights = _dirichlet(s_w, alpha, width)
    m = _dirichlet(s_m, alpha, 2)[0]
    mix = tf.zeros_like(img)
    for c, s_chain in enumerate(chains):
        s_depth, *s_ops = _seeds(s_chain, 1 + max_depth)
        depth = 1 + _randint(s_depth, max_depth)
        out = img
        for d, s in enumerate(s_ops):
            s_op, s_level, s_sign = _seeds(s, 3)
            level = tf.cast(_randint(s_level, max(1, severity)), tf.float32) / 10.0
            applied = apply_op(out, _randint(s_op, len(AUGMIX_OPS)), level, s_sign, ops=AUGMIX_OPS,
                               maxima=AUGMIX_MAX)
            out = tf.where(d < depth, applied, out)
        mix += weights[c] * out
    return tf.clip_by_value(m * img + (1.0 - m) * mix, 0.0, 255.0)


def erasing_box(seed, height: int, width: int, scale=(0.02, 0.33), ratio=(0.3, 3.3), attempts: int = 10):
    """torchvision's RandomErasing box: (top, left, h, w, found) from up to `attempts` draws of an area fraction in
    `scale` and a log-uniform aspect ratio (h / w) in `ratio`; `found` is False when no draw fits."""
    s_area, s_ratio, s_y, s_x = _seeds(seed, 4)
    area = tf.random.stateless_uniform([attempts], s_area, scale[0], scale[1]) * float(height * width)
    log_r = tf.random.stateless_uniform([attempts], s_ratio, math.log(ratio[0]), math.log(ratio[1]))
    h = tf.cast(tf.round(tf.sqrt(area * tf.exp(log_r))), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(area / tf.exp(log_r))), tf.int32)
    fits = tf.logical_and(tf.logical_and(h < height, w < width), tf.logical_and(h > 0, w > 0))
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    h, w, found = h[first], w[first], tf.reduce_any(fits)
    top = tf.cast(tf.random.stateless_uniform([], s_y) * tf.cast(height - h + 1, tf.float32), tf.int32)
    left = tf.cast(tf.random.stateless_uniform([], s_x) * tf.cast(width - w + 1, tf.float32), tf.int32)
    return tf.minimum(top, height - h), tf.minimum(left, width - w), h, w, found


def random_erasing(img, seed, probability: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
    """torchvision's RandomErasing on [H, W, 3] in [0, 255]: with `probability`, a box of `erasing_box` is set to
    `value` (a number or an RGB triple in [0, 255]), or to uniform noise in [0, 255] for value="random"."""
    s_apply, s_box, s_noise = _seeds(seed, 3)
    height, width = img.shape[0], img.shape[1]
    top, left, h, w, found = erasing_box(s_box, height, width, scale, ratio)
    rows = tf.logical_and(tf.range(height) >= top, tf.range(height) < top + h)
    cols = tf.logical_and(tf.range(width) >= left, tf.range(width) < left + w)
    erase = tf.random.stateless_uniform([], s_apply) < probability
    mask = tf.logical_and(tf.logical_and(rows[:, None], cols[None, :]), tf.logical_and(found, erase))[:, :, None]
    if isinstance(value, str):  # "random"
        fill = tf.random.stateless_uniform(tf.shape(img), s_noise, 0.0, 255.0)
    else:
        fill = tf.broadcast_to(tf.constant(value, tf.float32), tf.shape(img))
    return tf.where(mask, fill, img)


def apply_policies(img, seed, aug):
    """The automatic policy of an AugmentConfig (at most one is on), then random erasing."""
    s_policy, s_erase = _seeds(seed, 2)
    if aug.randaugment_ops:
        img = rand_augment(img, s_policy, aug.randaugment_ops, aug.randaugment_magnitude)
    elif aug.trivial_augment:
        img = trivial_augment(img, s_policy)
    elif aug.auto_augment:
        img = auto_augment(img, s_policy)
    elif aug.augmix_severity:
        img = augmix(img, s_policy, aug.augmix_severity, aug.augmix_width, aug.augmix_alpha)
    if aug.erase_prob > 0:
        img = random_erasing(img, s_erase, aug.erase_prob, aug.erase_scale, aug.erase_ratio, aug.erase_value)
    return img


def uses_policies(aug) -> bool:
    """True when an AugmentConfig asks for any op of this module."""
    return bool(aug.randaugment_ops or aug.trivial_augment or aug.auto_augment or aug.augmix_severity
                or aug.erase_prob > 0)
