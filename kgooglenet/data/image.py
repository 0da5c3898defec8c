"""The ONE evaluation-style image path: decode, shorter-side resize, center crop.

Validation during training, `kgooglenet.evaluate`, `kgooglenet.predict`, the preparer's resize and the SavedModel's
bytes signature all call these functions, so the accuracy printed while training is measured on exactly what the
exported model sees (training augmentation stays in `augment.py`, fast and separate).

- Decode: `decode` (TF graph: JPEG, PNG, GIF's first frame, BMP, WebP -> uint8 RGB); `load_image` (Python: TF first,
  Pillow for the rest, EXIF orientation applied); `exif_orientation` + `orient` apply a file's EXIF orientation to
  pixels TF decoded.
- Resize: the shorter side to `eval_scale(size, crop_fraction)` with `tf.image.resize(method="bilinear",
  antialias=True)` (like PIL's and torchvision's resize: shrinking a photo does not alias), the longer side rounded
  half-to-even (`resized_shape`). That is the only resize filter of this path.
- Crop: the center `size` x `size` window at offset `(extent - size) // 2`.

`crop_fraction` (model input side / shorter side before the crop) defaults by size, `eval_crop_fraction`: 0.875
(224 / 256, the paper's) from 128 px up, 1.0 below (small images keep their borders).

EXIF: the serving signature (`decode_and_crop`) cannot read EXIF (TensorFlow's decoders ignore it), so it takes the
pixels as stored; clients send upright images (e.g. `PIL.ImageOps.exif_transpose`). Every Python decode here
(`load_image`, the preparer, evaluation of image files) applies the orientation.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

REFERENCE_SIZE = 224  # the paper's model input side
SINGLE_SCALE = 256  # the paper's shorter side for a 224 crop
FORMATS = "JPEG, PNG, GIF, BMP or WebP"  # what tf.io.decode_image reads
EXIF_ORIENTATION_TAG = 0x0112
# ours, for every byte string the bytes signature refuses (the decoders' own messages may hold the raw bytes)
BAD_HEADER_MESSAGE = f"serving_bytes: input is not an encoded {FORMATS} image (wrong magic bytes)"
BAD_DATA_MESSAGE = f"serving_bytes: input has the magic bytes of an image but is not a decodable {FORMATS} image " \
                   "(truncated or corrupt data)"


# --------------------------------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------------------------------
def eval_crop_fraction(crop_fraction: float | None, image_size: int) -> float:
    """`crop_fraction` resolved: None -> 0.875 (224 / 256) for image_size >= 128, else 1.0."""
    if crop_fraction is not None:
        return float(crop_fraction)
    return REFERENCE_SIZE / SINGLE_SCALE if image_size >= 128 else 1.0


def eval_scale(size: int, crop_fraction: float | None = None) -> int:
    """The shorter side an image is resized to before the center `size` crop (256 for 224 by default)."""
    return max(int(size), int(round(size / eval_crop_fraction(crop_fraction, size))))


def resized_shape(height: int, width: int, scale: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `scale` (longer side rounded half-to-even)."""
    if height <= width:
        return scale, max(scale, int(round(width * scale / height)))
    return max(scale, int(round(height * scale / width))), scale


# --------------------------------------------------------------------------------------------------------------------
# TF graph ops (dynamic sizes: tf.data, exported signatures)
# --------------------------------------------------------------------------------------------------------------------
def resize_shorter(images, scale: int):
    """images (B, H, W, C) -> float32 with the shorter side `scale`, aspect kept (rounding of `resized_shape`)."""
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    h, w = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
    s = tf.constant(float(scale), tf.float64)
    long_h = tf.maximum(s, tf.round(h * s / w))  # tf.round is half-to-even, like Python's round
    long_w = tf.maximum(s, tf.round(w * s / h))
    new_h = tf.cast(tf.where(h <= w, s, long_h), tf.int32)
    new_w = tf.cast(tf.where(h <= w, long_w, s), tf.int32)
    return tf.image.resize(images, tf.stack([new_h, new_w]), method="bilinear", antialias=True)


def center_crop(images, size: int = REFERENCE_SIZE, crop_fraction: float | None = None, scale: int | None = None):
    """Resize the shorter side to `scale` (default `eval_scale(size, crop_fraction)`), then the center crop.

    Args:
        images: (B, H, W, C) or (H, W, C), any real dtype, values in [0, 255].
        size: output side.
        crop_fraction: see `eval_crop_fraction` (ignored when `scale` is given).
        scale: shorter side before cropping.

    Returns:
        float32 (B, size, size, C) (or (size, size, C) for a single image).
    """
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    x = images[None] if single else images
    scale = eval_scale(size, crop_fraction) if scale is None else int(scale)
    x = resize_shorter(x, scale)
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    x = x[:, (h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size, :]
    x = tf.ensure_shape(x, [None, size, size, x.shape[-1]])
    return x[0] if single else x


def to_rgb(image):
    """[H, W] / [H, W, 1] / [H, W, 3] / [H, W, 4] -> [H, W, 3] (gray tiled, alpha dropped)."""
    if image.shape.rank == 2:
        image = image[:, :, None]
    c = image.shape[-1]
    if c == 1:
        return tf.tile(image, [1, 1, 3])
    if c == 4:
        return image[:, :, :3]
    if c != 3:
        raise ValueError(f"images must have 1, 3 or 4 channels, received shape {image.shape}")
    return image


def decode(raw):
    """Encoded JPEG/PNG/GIF(first frame)/BMP/WebP bytes (scalar string) -> uint8 RGB [H, W, 3]."""
    image = tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def _attempt(fn, x):
    """(fn(x), True), or (a 1x1 black image, False) when fn raises: TF has no try/except in a graph; a one-element
    tf.data pipeline with `ignore_errors` is the graph's way to turn an op error into a value (and keeps the
    decoder's message, which may quote raw bytes, out of ours)."""
    done = tf.data.Dataset.from_tensors(x).map(lambda v: (fn(v), True)).ignore_errors()
    fallback = tf.data.Dataset.from_tensors((tf.zeros([1, 1, 3], tf.uint8), False))
    image, ok = done.concatenate(fallback).take(1).get_single_element()
    image.set_shape([None, None, 3])
    return image, ok


def try_decode(raw):
    """`decode` that never raises: (uint8 [H, W, 3], True), or (a 1x1 black image, False) for undecodable bytes."""
    return _attempt(decode, raw)


def is_image_header(data):
    """True for the magic bytes of JPEG, PNG, GIF, BMP and WebP, for byte strings of any length (empty too)."""
    padded = tf.strings.join([data, "\0" * 12])  # substr raises past the end; padding makes every read in range
    head = tf.strings.substr(padded, 0, 4)
    return tf.reduce_any(tf.stack([
        tf.strings.substr(padded, 0, 3) == b"\xff\xd8\xff",
        head == b"\x89PNG",
        head == b"GIF8",
        tf.strings.substr(padded, 0, 2) == b"BM",
        tf.logical_and(head == b"RIFF", tf.strings.substr(padded, 8, 4) == b"WEBP"),
    ]))


def decode_and_crop(image_bytes, size: int = REFERENCE_SIZE, crop_fraction: float | None = None):
    """Encoded image bytes (one scalar string, any length) -> float32 (size, size, 3) RGB in [0, 255]: `decode`,
    then `center_crop`. Pixels are taken as stored (no EXIF orientation: see the module docstring).

    Raises:
        tf.errors.InvalidArgumentError: with `BAD_HEADER_MESSAGE` (not an image format's magic bytes) or
            `BAD_DATA_MESSAGE` (truncated or corrupt data), for every byte string that is not a decodable image.
    """
    tf.debugging.assert_equal(is_image_header(image_bytes), True, message=BAD_HEADER_MESSAGE)
    image, ok = try_decode(image_bytes)
    tf.debugging.assert_equal(ok, True, message=BAD_DATA_MESSAGE)
    return center_crop(image, size, crop_fraction)


_FLIPS = {  # EXIF orientation -> (quarter turns counter-clockwise, after a left-right flip) that make it upright
    1: (0, False), 2: (0, True), 3: (2, False), 4: (2, True), 5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False),
}


def orient(image, orientation):
    """Apply an EXIF orientation (int 1..8, a tensor in graphs) to uint8/float [H, W, C] pixels as decoded."""
    orientation = tf.convert_to_tensor(orientation, tf.int32)

    def branch(k, flip):
        def fn():
            x = tf.image.flip_left_right(image) if flip else image
            return tf.image.rot90(x, k) if k else x
        return fn

    idx = tf.clip_by_value(orientation, 1, 8) - 1
    return tf.switch_case(idx, [branch(*_FLIPS[o]) for o in range(1, 9)])


# --------------------------------------------------------------------------------------------------------------------
# Python decoding (EXIF applied)
# --------------------------------------------------------------------------------------------------------------------
class ImageDecodeError(ValueError):
    """A file exists but neither TensorFlow nor Pillow can decode it as an image."""


def exif_orientation(path) -> int:
    """The EXIF orientation (1..8) of an image file, 1 when it has none or cannot be read (reads the header only)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - unreadable files are reported by the decoder, not here
        return 1
    return value if value in _FLIPS else 1


def load_image(path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3), upright: TensorFlow first (JPEG, PNG, GIF, BMP, WebP: the pixels
    the serving signature would decode), Pillow for the other formats (TIFF, CMYK JPEGs, 16-bit, ...); the EXIF
    orientation is applied either way.

    Raises:
        FileNotFoundError: no such file.
        ImageDecodeError: neither decoder can read it (the message names the file and both reasons).
    """
    import re

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} does not exist" + (" (it is a directory)" if os.path.isdir(path)
                                                                         else ""))
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ImageDecodeError(f"image file {path!r} is empty")
    try:
        image = decode(tf.constant(data))
        return orient(image, exif_orientation(path)).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as e:
        message = re.sub(r"\{\{[^}]*\}\}", "", str(getattr(e, "message", e)).encode("utf-8", "replace").decode())
        tf_reason = " ".join(message.split())[:200]
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, np.float64)
                arr = arr / max(arr.max(), 1) * 255.0
                return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=-1)
            return np.asarray(im.convert("RGB"), np.uint8)
    except Exception as e:  # noqa: BLE001 - PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        pil_reason = f"{type(e).__name__}: {e}"
    raise ImageDecodeError(f"cannot decode image file {path!r}: TensorFlow: {tf_reason}; Pillow: {pil_reason}")


def files_dataset(files, labels) -> tf.data.Dataset:
    """Image files as unbatched `(uint8 RGB [H, W, 3] upright, int32 label, path string, ok bool)`: TF decodes
    (the serving signature's pixels), the EXIF orientation read in Python is applied, and a file TF cannot decode
    (or that is gone) gives ok=False and a 1x1 placeholder image instead of an error, so callers can count and list
    it."""
    files = [os.fspath(f) for f in files]
    labels = np.asarray(labels, np.int32)
    if len(files) != len(labels):
        raise ValueError(f"`files` and `labels` must have the same length, received {len(files)} and {len(labels)}")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(16, (os.cpu_count() or 1) * 4)) as pool:  # header reads: I/O bound
        orientations = np.asarray(list(pool.map(exif_orientation, files)), np.int32)

    def element(path, label, orientation):
        image, ok = _attempt(lambda p: decode(tf.io.read_file(p)), path)  # a file gone since the listing too
        return orient(image, orientation), label, path, ok

    ds = tf.data.Dataset.from_tensor_slices((files, labels, orientations))
    return ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
