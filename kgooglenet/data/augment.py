"""Native TF decoding and augmentation (the fast path).

Every geometric step is expressed as a crop *window* in the source image followed by one resize to
the target size: random resized crop, random crop after a shorter-side resize, and the evaluation
resize + center crop are all windows. For JPEG input the window is decoded directly with
`tf.io.decode_and_crop_jpeg` (rows and columns outside it are never inverse-DCT'd), at a reduced DCT
scale (`ratio` 2/4/8) when the window is at least that many times larger than the target. Other formats
(PNG, GIF, BMP, WebP) are decoded whole and sliced. Everything random is stateless and driven by a
per-element seed, so a fixed `DataConfig.seed` gives identical batches.

This is the training path only: validation, evaluation, prediction and serving use `kgooglenet.data.image`.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from kgooglenet.data import policies
from kgooglenet.data.config import AUTO, AlbumentationsSpec, AugmentConfig
from kgooglenet.data.image import decode as decode_image
from kgooglenet.data.image import to_rgb

_JPEG_MAGIC = b"\xff\xd8\xff"


# --------------------------------------------------------------------------------------------
# configuration helpers
# --------------------------------------------------------------------------------------------
def default_augment(source: str, image_size: int) -> AugmentConfig:
    """The augmentation `DataConfig(augment="auto")` uses.

    digits -> `AugmentConfig.digits` (shifts, no flips); image_size <= 64 -> `AugmentConfig.cifar`
    (pad + random crop + flip); otherwise `AugmentConfig.inception` (random resized crop + flip).
    """
    if source == "digits":
        return AugmentConfig.digits(image_size)
    if image_size <= 64:
        return AugmentConfig.cifar(image_size)
    return AugmentConfig.inception()


def resolve_augment(augment, source: str, image_size: int) -> AugmentConfig | AlbumentationsSpec | None:
    """Turn `DataConfig.augment` into an AugmentConfig, an AlbumentationsSpec or None.

    Accepts an AugmentConfig, an AlbumentationsSpec, None, the string "auto", or a dict: with a
    "transforms" key it is an albumentations spec, otherwise AugmentConfig fields.
    """
    if augment is None or isinstance(augment, (AugmentConfig, AlbumentationsSpec)):
        out = augment
    elif isinstance(augment, str):
        if augment != AUTO:
            raise ValueError(f"DataConfig.augment: the only string accepted is {AUTO!r}, received {augment!r}; "
                             "pass an AugmentConfig, an AlbumentationsSpec, a dict or None")
        out = default_augment(source, image_size)
    elif isinstance(augment, (dict, list)):
        if isinstance(augment, list) or "transforms" in augment:
            out = AlbumentationsSpec.from_dict(augment)
        else:
            known = {f.name for f in dataclasses.fields(AugmentConfig)}
            unknown = sorted(set(augment) - known)
            if unknown:
                raise ValueError(f"DataConfig.augment: unknown AugmentConfig fields {unknown}; expected some of "
                                 f"{sorted(known)} (or a dict with a 'transforms' list for albumentations)")
            out = AugmentConfig(**augment)
    else:
        raise ValueError(f"DataConfig.augment: expected AugmentConfig, AlbumentationsSpec, dict, None or 'auto', "
                         f"received {type(augment).__name__}: {augment!r}")
    if out is not None and (out.mean is None) != (out.std is None):
        raise ValueError(f"{type(out).__name__}.mean and std go together, received mean={out.mean}, std={out.std}")
    return out


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------
def _center_window(hw, fraction: float):
    """Square center window of side fraction * shorter side (resize-shorter-then-center-crop)."""
    h, w = hw[0], hw[1]
    side = tf.maximum(1, tf.cast(tf.math.round(tf.cast(tf.minimum(h, w), tf.float32) * fraction), tf.int32))
    return tf.stack([(h - side) // 2, (w - side) // 2, side, side])


def _random_square_window(hw, fraction: float, seed):
    """Square window of side fraction * shorter side at a random place (resize shorter side, random crop)."""
    h, w = hw[0], hw[1]
    side = tf.maximum(1, tf.cast(tf.math.round(tf.cast(tf.minimum(h, w), tf.float32) * fraction), tf.int32))
    u = tf.random.stateless_uniform([2], seed, 0.0, 1.0)
    y = tf.cast(u[0] * tf.cast(h - side + 1, tf.float32), tf.int32)
    x = tf.cast(u[1] * tf.cast(w - side + 1, tf.float32), tf.int32)
    return tf.stack([tf.minimum(y, h - side), tf.minimum(x, w - side), side, side])


def _rrc_window(hw, aug: AugmentConfig, seed):
    """Inception-style random resized crop window (area in aug.scale, aspect in aug.ratio, 10 tries)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([hw[0], hw[1], 3]),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=list(aug.ratio),
        area_range=list(aug.scale),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def _window(hw, seed, *, training: bool, aug: AugmentConfig | None, crop_fraction: float):
    if training and aug is not None and aug.random_resized_crop:
        return _rrc_window(hw, aug, seed)
    if training and aug is not None and aug.random_crop and aug.crop_padding == 0:
        return _random_square_window(hw, crop_fraction, seed)
    return _center_window(hw, crop_fraction)


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
def is_jpeg(raw: tf.Tensor) -> tf.Tensor:
    """True when the encoded bytes start with the JPEG SOI marker."""
    return tf.equal(tf.strings.substr(raw, 0, 3), _JPEG_MAGIC)


def _decode_jpeg_window(raw, window, target: int, fast: bool):
    """decode_and_crop_jpeg of `window`, at DCT scale 1/2/4/8 when the window is at least that many times
    larger than `target` (so nothing is upscaled; the DCT downscale also antialiases).

    fast: integer-fast IDCT and no fancy (triangle) chroma upsampling: about 2x faster decoding with
    differences of a few grey levels, meant for training.
    """
    dct = "INTEGER_FAST" if fast else "INTEGER_ACCURATE"
    fancy = not fast
    hw = tf.io.extract_jpeg_shape(raw)[:2]
    short = tf.minimum(window[2], window[3])
    # largest r in {1,2,4,8} with short / r >= target
    idx = tf.cast(short >= 2 * target, tf.int32) + tf.cast(short >= 4 * target, tf.int32) + tf.cast(
        short >= 8 * target, tf.int32)

    def scaled(r):
        def fn():
            if r == 1:
                return tf.io.decode_and_crop_jpeg(raw, window, channels=3, dct_method=dct, fancy_upscaling=fancy)
            full = (hw + r - 1) // r  # libjpeg's scaled output size is ceil(size / r)
            y, x = window[0] // r, window[1] // r
            h = tf.maximum(1, tf.minimum((window[2] + r - 1) // r, full[0] - y))
            w = tf.maximum(1, tf.minimum((window[3] + r - 1) // r, full[1] - x))
            return tf.io.decode_and_crop_jpeg(raw, tf.stack([y, x, h, w]), channels=3, ratio=r, dct_method=dct,
                                              fancy_upscaling=fancy)
        return fn

    return tf.switch_case(idx, [scaled(1), scaled(2), scaled(4), scaled(8)])


def _crop(img, window):
    return img[window[0]:window[0] + window[2], window[1]:window[1] + window[3], :]


def _resize(img, size: int, skip_same: bool = False):
    """Resize uint8/float [h, w, 3] to float32 [size, size, 3] (bilinear, no antialias: the DCT downscale of
    JPEG windows does most of the antialiasing). skip_same: identity when already that size (in-memory
    images that are stored at the model size; a tf.cond costs more than it saves on decoded crops)."""
    if skip_same:
        shape = tf.shape(img)
        same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
        out = tf.cond(same,
                      lambda: tf.cast(img, tf.float32),
                      lambda: tf.image.resize(img, [size, size], method="bilinear", antialias=False))
    else:
        out = tf.image.resize(img, [size, size], method="bilinear", antialias=False)
    return tf.ensure_shape(out, [size, size, 3])


# --------------------------------------------------------------------------------------------
# per-element preprocessing
# --------------------------------------------------------------------------------------------
def _split_seeds(seed, n: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n))


def _flips(img, seeds, aug: AugmentConfig | None):
    """Random flips; done on the (uint8) crop before the resize, where they are cheaper (they commute)."""
    if aug is None:
        return img
    if aug.horizontal_flip:
        img = tf.image.stateless_random_flip_left_right(img, seed=seeds[1])
    if aug.vertical_flip:
        img = tf.image.stateless_random_flip_up_down(img, seed=seeds[2])
    return img


def _photometric_and_flips(img, seeds, aug: AugmentConfig, size: int):
    """Padding crop, rot90 and colour jitter on float32 [size, size, 3] in [0, 255]."""
    if aug.random_crop and not aug.random_resized_crop and aug.crop_padding > 0:
        p = aug.crop_padding
        img = tf.pad(img, [[p, p], [p, p], [0, 0]])
        img = tf.image.stateless_random_crop(img, [size, size, 3], seed=seeds[0])
    if aug.rotate90:
        k = tf.random.stateless_uniform([], seeds[3], 0, 4, dtype=tf.int32)
        img = tf.image.rot90(img, k)
    if aug.brightness or aug.contrast or aug.saturation or aug.hue:
        img = img / 255.0
        if aug.brightness:
            img = tf.image.stateless_random_brightness(img, aug.brightness, seed=seeds[4])
        if aug.contrast:
            img = tf.image.stateless_random_contrast(img, max(0.0, 1 - aug.contrast), 1 + aug.contrast, seed=seeds[5])
        if aug.saturation:
            img = tf.image.stateless_random_saturation(img, max(0.0, 1 - aug.saturation), 1 + aug.saturation,
                                                       seed=seeds[6])
        if aug.hue:
            img = tf.image.stateless_random_hue(img, aug.hue, seed=seeds[7])
        img = tf.clip_by_value(img, 0.0, 1.0) * 255.0
    return tf.ensure_shape(img, [size, size, 3])


def _finish(img, seeds, *, training: bool, aug: AugmentConfig | None, size: int, clip: bool):
    if training and aug is not None:
        img = _photometric_and_flips(img, seeds, aug, size)
    if clip:  # bilinear resizing of uint8 pixels stays in [0, 255]; colour ops clip themselves
        img = tf.clip_by_value(img, 0.0, 255.0)
    if training and aug is not None and policies.uses_policies(aug):
        # a seed of its own (folded in), so the streams above stay what they were
        img = policies.apply_policies(img, tf.random.experimental.stateless_fold_in(seeds[8], 13), aug)
    return tf.ensure_shape(img, [size, size, 3])


def preprocess_encoded(raw, seed, *, training: bool, aug: AugmentConfig | None, image_size: int,
                       crop_fraction: float) -> tf.Tensor:
    """Encoded image bytes -> float32 RGB [image_size, image_size, 3] in [0, 255].

    Args:
        raw: scalar string tensor with JPEG/PNG/GIF/BMP/WebP bytes.
        seed: int [2] stateless seed of this element.
        training: apply `aug` (else the evaluation resize + center crop).
        aug: native augmentation, or None for none.
        image_size: output side.
        crop_fraction: evaluation crop fraction (and the random-crop window fraction).
    """
    seeds = _split_seeds(seed, 9)
    geo_seed = seeds[8]
    aug = aug if training else None
    fast = aug is not None and aug.fast_jpeg

    def jpeg_branch():
        hw = tf.io.extract_jpeg_shape(raw)[:2]
        window = _window(hw, geo_seed, training=training, aug=aug, crop_fraction=crop_fraction)
        crop = _decode_jpeg_window(raw, window, image_size, fast)
        return _resize(_flips(crop, seeds, aug), image_size)

    def other_branch():
        img = decode_image(raw)
        window = _window(tf.shape(img)[:2], geo_seed, training=training, aug=aug, crop_fraction=crop_fraction)
        return _resize(_flips(_crop(img, window), seeds, aug), image_size)

    img = tf.cond(is_jpeg(raw), jpeg_branch, other_branch)
    return _finish(img, seeds, training=training, aug=aug, size=image_size, clip=False)


def preprocess_decoded(image, seed, *, training: bool, aug: AugmentConfig | None, image_size: int,
                       crop_fraction: float) -> tf.Tensor:
    """Decoded image [H, W, C] (C = 1 or 3, uint8 or float in [0, 255]) -> float32 [image_size, image_size, 3]."""
    image = to_rgb(image)
    seeds = _split_seeds(seed, 9)
    aug = aug if training else None
    window = _window(tf.shape(image)[:2], seeds[8], training=training, aug=aug, crop_fraction=crop_fraction)
    img = _resize(_flips(_crop(image, window), seeds, aug), image_size, skip_same=True)
    return _finish(img, seeds, training=training, aug=aug, size=image_size, clip=image.dtype != tf.uint8)


# --------------------------------------------------------------------------------------------
# batch level: mixup / cutmix / normalization
# --------------------------------------------------------------------------------------------
def _beta(seed, alpha: float):
    s1, s2 = _split_seeds(seed, 2)
    a = tf.random.stateless_gamma([], s1, alpha=alpha)
    b = tf.random.stateless_gamma([], s2, alpha=alpha)
    return a / (a + b + 1e-12)


def mix_batch(images, labels, seed, *, num_classes: int, mixup_alpha: float, cutmix_alpha: float,
              mix_prob: float = 1.0):
    """Mixup / cutmix a batch with its reverse; returns (images, float32 one-hot [B, num_classes] labels).

    With both alphas > 0 each mixed batch picks mixup or cutmix with probability 1/2. A batch is
    mixed with probability `mix_prob`; unmixed batches still get one-hot labels so the element spec
    does not change.

    Example:
    ```python
    x, y = mix_batch(x, y, tf.constant([1, 2]), num_classes=10, mixup_alpha=0.2, cutmix_alpha=0.0)
    ```
    """
    y = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    s_apply, s_which, s_lam, s_box = _split_seeds(seed, 4)
    x2 = tf.reverse(images, axis=[0])
    y2 = tf.reverse(y, axis=[0])

    def mixup():
        lam = _beta(s_lam, mixup_alpha)
        return lam * images + (1 - lam) * x2, lam * y + (1 - lam) * y2

    def cutmix():
        lam = _beta(s_lam, cutmix_alpha)
        shape = tf.shape(images)
        h, w = shape[1], shape[2]
        cut = tf.sqrt(1.0 - lam)
        ch = tf.cast(tf.cast(h, tf.float32) * cut, tf.int32)
        cw = tf.cast(tf.cast(w, tf.float32) * cut, tf.int32)
        c = tf.random.stateless_uniform([2], s_box, 0.0, 1.0)
        cy = tf.cast(c[0] * tf.cast(h, tf.float32), tf.int32)
        cx = tf.cast(c[1] * tf.cast(w, tf.float32), tf.int32)
        y0, y1 = tf.clip_by_value(cy - ch // 2, 0, h), tf.clip_by_value(cy + ch // 2, 0, h)
        x0, x1 = tf.clip_by_value(cx - cw // 2, 0, w), tf.clip_by_value(cx + cw // 2, 0, w)
        rows = tf.logical_and(tf.range(h) >= y0, tf.range(h) < y1)
        cols = tf.logical_and(tf.range(w) >= x0, tf.range(w) < x1)
        mask = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
        lam_adj = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
        return tf.where(mask, x2, images), lam_adj * y + (1 - lam_adj) * y2

    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cut = tf.random.stateless_uniform([], s_which) < 0.5
        mixed = lambda: tf.cond(use_cut, cutmix, mixup)  # noqa: E731
    elif mixup_alpha > 0:
        mixed = mixup
    elif cutmix_alpha > 0:
        mixed = cutmix
    else:
        return images, y
    if mix_prob >= 1.0:
        return mixed()
    apply = tf.random.stateless_uniform([], s_apply) < mix_prob
    return tf.cond(apply, mixed, lambda: (images, y))


def repeats_of(augment) -> int:
    """`AugmentConfig.repeats` (1 for an AlbumentationsSpec or no augmentation)."""
    return int(getattr(augment, "repeats", 1) or 1)


def repeat_each(ds, repeats: int):
    """Repeated augmentation: each element `repeats` times in a row (timm's RepeatAugSampler on one replica). Applied
    to each input pipeline's own shard before the per-element seeds are zipped on, so every copy is augmented
    differently and, across replicas, each image still appears exactly `repeats` times per epoch."""
    if repeats <= 1:
        return ds
    return ds.flat_map(lambda x, y: tf.data.Dataset.from_tensors((x, y)).repeat(repeats))


def normalize(images, mean, std):
    """(images - mean) / std with RGB mean/std on the [0, 255] scale."""
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (images - mean) / std


def steps(n: int, batch: int, drop_remainder: bool) -> int:
    """Number of batches of `batch` in `n` examples."""
    return n // batch if drop_remainder else math.ceil(n / batch)
