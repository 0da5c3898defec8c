"""Test-time crops: the 1-crop, 10-crop and 144-crop schemes of Szegedy et al. 2015 (section 7).

Every scheme first resizes the image so that its SHORTER side equals a scale (keeping the aspect ratio; the longer
side is rounded half-to-even) with `kgooglenet.data.image.resize_shorter` (antialiased bilinear, the one resize of
the evaluation-style image path). Crops are then exact pixel windows of the resized image, except the 144-crop
scheme's "whole square" crop, which resizes a square to `size` with the same antialiased bilinear filter. Scales are
given for `size=224` and scaled by `size / 224` for other model sizes; the 1-crop scheme is
`kgooglenet.data.image.center_crop` (the validation transform of training: shorter side 256 for 224, and the whole
shorter side below 128 px, see `eval_crop_fraction`).

Schemes (`scheme` is 1, 10 or 144, or the names "center", "ten", "paper144"):

- 1 ("center"): shorter side 256 (`eval_scale(size)`), the center `size` x `size` crop.
- 10 ("ten"): shorter side 256; the 4 corner crops and the center crop of the whole resized image (not just its
  central square), in the order top-left, top-right, bottom-left, bottom-right, center; then their mirrors.
- 144 ("paper144"): for each of the 4 scales 256, 288, 320, 352 (shorter side), 3 squares of side = the shorter
  side: left/center/right for landscape images (width > height), top/center/bottom otherwise (a square image gets
  its one square three times); in each square 6 crops: the 4 corners and the center (size x size), in the order
  above, and the whole square resized to size x size; then the mirrors of all 72.
  4 scales x 3 squares x 6 crops x 2 mirrors = 144.

Order: the unflipped crops come first, in the nesting order scale > square > crop; crop `i + n // 2` is the
left-right mirror of crop `i`. Centers are at offset `(extent - size) // 2` (rounded down).

Example:
>>> [c.box for c in crop_boxes(300, 400, 10)[:5]]
[(0, 0, 224, 224), (0, 117, 224, 224), (32, 0, 224, 224), (32, 117, 224, 224), (16, 58, 224, 224)]
>>> multi_crop(np.zeros((300, 400, 3), "uint8"), 144).shape
TensorShape([144, 224, 224, 3])
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kgooglenet.data.image import REFERENCE_SIZE, SINGLE_SCALE, center_crop, eval_scale, resize_shorter, resized_shape

# The paper's scales for a 224 model: shorter side 256 for 1/10 crops, 256/288/320/352 for 144 crops.
PAPER_SCALES = (256, 288, 320, 352)
SCHEME_NAMES = {"center": 1, "ten": 10, "paper144": 144}
CROP_COUNTS = (1, 10, 144)


@dataclasses.dataclass(frozen=True)
class Crop:
    """One crop of a scheme, in the pixel coordinates of the resized image.

    `box` is the window taken from the resized image; when its side differs from the crop size (the 144 scheme's
    "whole square" crop) the window is resized to size x size.
    """

    scale: int  # the shorter side of the resized image
    resized: tuple[int, int]  # (height, width) of the resized image
    box: tuple[int, int, int, int]  # (top, left, height, width) of the window in the resized image
    flip: bool  # mirrored left-right after cropping
    name: str  # e.g. "s288/center/top-left/flip"


def crop_count(scheme) -> int:
    """The number of crops of `scheme` (1, 10, 144, or "center", "ten", "paper144"); raises ValueError otherwise."""
    if isinstance(scheme, str):
        key = scheme.strip().lower()
        if key in SCHEME_NAMES:
            return SCHEME_NAMES[key]
        if key.isdigit() and int(key) in CROP_COUNTS:
            return int(key)
    elif isinstance(scheme, (int, np.integer)) and not isinstance(scheme, bool) and int(scheme) in CROP_COUNTS:
        return int(scheme)
    raise ValueError(
        f"`scheme`/`crops` must be one of {CROP_COUNTS} or {sorted(SCHEME_NAMES)}, received {scheme!r}"
    )


def scheme_scales(scheme, size: int = REFERENCE_SIZE) -> tuple[int, ...]:
    """The shorter-side scales of `scheme` for a model input of `size` (the paper's for size 224)."""
    n = crop_count(scheme)
    if n == 1:
        return (eval_scale(size),)
    scales = PAPER_SCALES if n == 144 else (SINGLE_SCALE,)
    return tuple(int(round(s * size / REFERENCE_SIZE)) for s in scales)


def _check_size(height, width, size):
    for key, value in (("height", height), ("width", width), ("size", size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{key}` must be a positive integer, received {key}={value!r}")


def crop_boxes(height: int, width: int, scheme=1, size: int = REFERENCE_SIZE) -> list[Crop]:
    """The crops `multi_crop` takes from an image of height x width, in the same order (see the module docstring).

    Args:
        height, width: the original image size.
        scheme: 1, 10 or 144 (or "center", "ten", "paper144").
        size: the crop (model input) size.

    Returns:
        A list of `Crop`, one per output crop.

    Example:
    >>> crop_boxes(256, 256, 1)[0].box
    (16, 16, 224, 224)
    """
    _check_size(height, width, size)
    n = crop_count(scheme)
    out = []
    for scale in scheme_scales(n, size):
        h, w = resized_shape(height, width, scale)
        if n == 1:
            out.append(Crop(scale, (h, w), ((h - size) // 2, (w - size) // 2, size, size), False, f"s{scale}/center"))
            continue
        if n == 10:
            for corner, (t, l) in _five(h, w, size):
                out.append(Crop(scale, (h, w), (t, l, size, size), False, f"s{scale}/{corner}"))
            continue
        side = min(h, w)
        if w > h:
            squares = (("left", 0, 0), ("center", 0, (w - side) // 2), ("right", 0, w - side))
        else:
            squares = (("top", 0, 0), ("center", (h - side) // 2, 0), ("bottom", h - side, 0))
        for sq_name, st, sl in squares:
            for corner, (t, l) in _five(side, side, size):
                out.append(Crop(scale, (h, w), (st + t, sl + l, size, size), False, f"s{scale}/{sq_name}/{corner}"))
            out.append(Crop(scale, (h, w), (st, sl, side, side), False, f"s{scale}/{sq_name}/whole"))
    if n > 1:
        out += [dataclasses.replace(c, flip=True, name=c.name + "/flip") for c in out]
    return out


def _five(h, w, size):
    """The 4 corner offsets and the center offset of a size x size window in an h x w image."""
    return (
        ("top-left", (0, 0)),
        ("top-right", (0, w - size)),
        ("bottom-left", (h - size, 0)),
        ("bottom-right", (h - size, w - size)),
        ("center", ((h - size) // 2, (w - size) // 2)),
    )


# ----------------------------------------------------------------------------------------------------------------
# TF implementation (graph-friendly: works on dynamic image sizes inside tf.data.map and in exported signatures)
# ----------------------------------------------------------------------------------------------------------------
def _window(images, top, left, height, width):
    return images[:, top : top + height, left : left + width, :]


def _five_crops(images, size: int):
    """The 4 corners and the center, each (B, size, size, 3), in `_five`'s order."""
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    offsets = ((0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2))
    return [_window(images, t, l, size, size) for t, l in offsets]


def multi_crop(image, scheme=1, size: int = REFERENCE_SIZE):
    """Crops of one image for test-time augmentation (boxes: see `crop_boxes` and the module docstring).

    Args:
        image: (H, W, 3) uint8 or float RGB in [0, 255], any size; a tensor with dynamic H/W is fine (tf.data).
            A batch (B, H, W, 3) of equally sized images also works and gives (B, N, size, size, 3).
        scheme: 1, 10 or 144 (or "center", "ten", "paper144").
        size: the crop size (model input size).

    Returns:
        float32 (N, size, size, 3) with N = 1, 10 or 144, values in [0, 255].

    Example:
    >>> multi_crop(np.zeros((480, 640, 3), "uint8"), "ten").shape
    TensorShape([10, 224, 224, 3])
    """
    n = crop_count(scheme)
    image = tf.convert_to_tensor(image)
    if image.shape.rank not in (3, 4):
        raise ValueError(f"`image` must be (H, W, C) or (B, H, W, C), received shape {image.shape}")
    single = image.shape.rank == 3
    x = tf.cast(image[None] if single else image, tf.float32)
    crops = [center_crop(x, size)] if n == 1 else []  # the evaluation-style path itself
    for scale in scheme_scales(n, size) if n > 1 else ():
        r = resize_shorter(x, scale)
        if n == 10:
            crops += _five_crops(r, size)
        else:
            h, w = tf.shape(r)[1], tf.shape(r)[2]
            landscape = w > h
            # square offsets (top, left) of the first/center/last square of side `scale`
            offsets = []
            for pos in ("first", "center", "last"):
                along = {"first": 0, "center": (tf.maximum(h, w) - scale) // 2, "last": tf.maximum(h, w) - scale}[pos]
                offsets.append((tf.where(landscape, 0, along), tf.where(landscape, along, 0)))
            for t, l in offsets:
                square = _window(r, t, l, scale, scale)
                crops += _five_crops(square, size)
                crops.append(tf.image.resize(square, (size, size), method="bilinear", antialias=True))
    out = tf.stack(crops, axis=1)  # (B, N', size, size, C)
    if n > 1:
        out = tf.concat([out, tf.reverse(out, axis=[3])], axis=1)
    out = tf.ensure_shape(out, [None, n, size, size, x.shape[-1]])
    return out[0] if single else out
