"""Top-k predictions for image files: `python -m kgooglenet.predict IMAGE... --weights W`.

Images are decoded with TensorFlow (JPEG, PNG, GIF's first frame, BMP, WebP) and, when TF cannot, with Pillow (TIFF,
CMYK JPEGs, 16-bit grayscale, ...), converted to RGB, resized (shorter side 256 for a 224 model) and center
cropped, or averaged over 10/144 crops with --crops. A file that cannot be read gets a one-line error and the
others are still predicted; the exit status is 1 when any file failed.

Class names: --classes categories.csv (the data preparer's `class_name,class_id` file, or any two-column CSV of name
and id, or a plain text file of one name per line); without it a 1000-class model uses the ImageNet class index and
other models print class ids.

Example:
    python -m kgooglenet.predict cat.jpg dog.png --weights imagenet-torchvision --top 5
    python -m kgooglenet.predict photo.tiff --weights runs/flowers/best.keras --classes prepared/categories.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import re
import sys

import numpy as np


class ImageDecodeError(ValueError):
    """A file exists but neither TensorFlow nor Pillow can decode it as an image."""


@dataclasses.dataclass
class Prediction:
    """The top-k classes of one image, or the error that prevented predicting it."""

    source: str  # the file path (or "array[i]")
    top: list = dataclasses.field(default_factory=list)  # [(class_id, class_name, probability)], best first
    error: str | None = None  # why the image could not be predicted; None when `top` is filled


def load_image(path) -> np.ndarray:
    """Decodes an image file to RGB uint8 (H, W, 3): TensorFlow first (JPEG, PNG, GIF, BMP, WebP), Pillow for the
    other formats (TIFF, CMYK JPEGs, ...); EXIF orientation is applied only on the Pillow path.

    Raises:
        FileNotFoundError: no such file.
        ImageDecodeError: neither decoder can read it (the message names the file and both reasons).
    """
    import tensorflow as tf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ImageDecodeError(f"image file {path!r} is empty")
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        return image.numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as e:
        message = re.sub(r"\{\{[^}]*\}\}", "", str(getattr(e, "message", e)))  # drop TF's {{function_node ...}}
        tf_reason = " ".join(message.split())[:200]
    try:
        from PIL import Image, ImageOps

        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, np.float64)
                arr = arr / max(arr.max(), 1) * 255.0
                return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=-1)
            return np.asarray(im.convert("RGB"), np.uint8)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ... on bad data
        pil_reason = f"{type(e).__name__}: {e}"
    raise ImageDecodeError(
        f"cannot decode image file {path!r}: TensorFlow: {tf_reason}; Pillow: {pil_reason}"
    )


def read_class_names(path) -> list[str]:
    """Class names by id from a categories.csv (`class_name,class_id` header, as written by kgooglenet.prepare; any
    two-column name/id CSV also works) or from a text file with one name per line (line order = id)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`classes`: no file at {path!r} (expected a categories.csv or one name per line)")
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"`classes`: {path!r} is empty")
    if all(len(r) == 1 for r in rows):
        return [r[0].strip() for r in rows]
    header = [c.strip().lower() for c in rows[0]]
    if "class_name" in header and "class_id" in header:
        ni, ii = header.index("class_name"), header.index("class_id")
        body = rows[1:]
    else:
        body = rows[1:] if not any(c.strip().lstrip("-").isdigit() for c in rows[0]) else rows
        if not body:
            raise ValueError(f"`classes`: {path!r} has a header but no rows")
        ii = next((j for j, c in enumerate(body[0]) if c.strip().lstrip("-").isdigit()), None)
        if ii is None or len(body[0]) < 2:
            raise ValueError(f"`classes`: {path!r} must have a name column and an integer id column, "
                             f"received the row {body[0]!r}")
        ni = 1 - ii if ii < 2 else 0
    pairs = sorted((int(r[ii]), r[ni].strip()) for r in body)
    ids = [i for i, _ in pairs]
    if ids != list(range(len(ids))):
        raise ValueError(f"`classes`: the ids in {path!r} must be 0..{len(ids) - 1} without gaps, received {ids[:10]}...")
    return [n for _, n in pairs]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names (first synonym), in the class order of the ImageNet models."""
    from kgooglenet.weights.imagenet import class_index

    return [c.name for c in class_index()]


def default_class_names(num_classes: int, class_names=None) -> list[str]:
    """`class_names` (a list, or a file for `read_class_names`) checked against `num_classes`; else the ImageNet
    names for 1000 classes, else "0", "1", ..."""
    if class_names is not None:
        names = read_class_names(class_names) if isinstance(class_names, (str, os.PathLike)) else list(class_names)
        if len(names) != num_classes:
            raise ValueError(
                f"`classes`: {len(names)} class names but the model has {num_classes} classes"
            )
        return [str(n) for n in names]
    if num_classes == 1000:
        return imagenet_class_names()
    return [str(i) for i in range(num_classes)]


def load_model(weights, variant="bn", num_classes=None, width=1.0, image_size=None):
    """The single-output inference model for `weights`: a `.keras` file (loaded as saved), or a `.weights.h5` file
    or named weight set for `GoogLeNet(variant, num_classes, width=width, weights=weights)` (with or without aux
    heads, whichever the file holds; a named set such as "imagenet-caffe" uses its own variant)."""
    import keras

    from kgooglenet.model import GoogLeNet, inference_model

    path = os.fspath(weights)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`weights`: no file at {path!r}")
        return inference_model(keras.saving.load_model(path))
    from kgooglenet.weights.cache import NAMED_WEIGHTS, resolve_weights

    if path in NAMED_WEIGHTS:  # a named ImageNet set fixes its own variant
        variant = NAMED_WEIGHTS[path].variant
    shape = None if image_size is None else (image_size, image_size, 3)
    kwargs = dict(variant=variant, num_classes=num_classes or 1000, width=width, input_shape=shape, weights=path)
    meta = resolve_weights(path, variant).metadata or {}  # FileNotFoundError with instructions when missing
    if "aux_heads" in meta:  # the converters' sidecar says whether the file holds the aux heads
        if meta.get("num_classes") and num_classes is None:
            kwargs["num_classes"] = int(meta["num_classes"])
        return inference_model(GoogLeNet(aux_heads=bool(meta["aux_heads"]), **kwargs))
    try:
        return GoogLeNet(**kwargs)
    except ValueError as plain_error:  # no sidecar: the file may hold the aux heads' weights too
        try:
            return inference_model(GoogLeNet(aux_heads=True, **kwargs))
        except ValueError:
            raise plain_error from None


def predict(model, images, top=5, class_names=None, crops=1, batch_size=32) -> list[Prediction]:
    """Top-k predictions for image files or arrays; unreadable files give a `Prediction` with `error` set.

    Args:
        model: a keras.Model (or list of models / `kgooglenet.evaluate.Ensemble`) taking RGB [0, 255] images.
        images: file paths and/or arrays (H, W, 3) uint8/float in [0, 255].
        top: how many classes per image.
        class_names: names by class id, or a categories.csv path; default ImageNet names for 1000 classes.
        crops: 1, 10 or 144 test-time crops (see `kgooglenet.evaluate.crops`).
        batch_size: the most crops per forward pass.

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> model = GoogLeNet("cifar", num_classes=10, width=0.125)
    >>> [p.top[0][0] in range(10) for p in predict(model, [np.zeros((40, 50, 3), "uint8")], top=1)]
    [True]
    """
    from kgooglenet.evaluate.crops import crop_count, multi_crop
    from kgooglenet.evaluate.ensemble import Ensemble

    ensemble = model if isinstance(model, Ensemble) else Ensemble(model, batch_size=batch_size)
    size = ensemble.image_size or 224
    n = crop_count(crops)
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive integer, received top={top!r}")
    top = min(top, ensemble.num_classes)
    names = default_class_names(ensemble.num_classes, class_names)
    if isinstance(images, (str, os.PathLike, np.ndarray)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    results = []
    for i, item in enumerate(images):
        source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"array[{i}]"
        try:
            image = load_image(item) if isinstance(item, (str, os.PathLike)) else np.asarray(item)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
                raise ValueError(f"`images`: expected an (H, W, 3) image, received shape {image.shape}")
            image = image[..., :3] if image.shape[-1] == 4 else np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
            probs = ensemble.predict_crops(multi_crop(image, n, size)[None])[0]
        except (FileNotFoundError, ValueError) as e:
            results.append(Prediction(source, error=str(e)))
            continue
        best = np.argsort(-probs, kind="stable")[:top]
        results.append(Prediction(source, top=[(int(j), names[j], float(probs[j])) for j in best]))
    return results


def format_predictions(predictions) -> str:
    lines = []
    for p in predictions:
        if p.error:
            lines.append(f"{p.source}: error: {p.error}")
            continue
        lines.append(p.source)
        for rank, (cid, name, prob) in enumerate(p.top, 1):
            lines.append(f"  {rank}. {name} ({cid})  {prob:.4f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kgooglenet.predict",
        description="Top-k class names and probabilities for image files.",
    )
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF, BMP, TIFF, WebP, ...)")
    p.add_argument("--weights", required=True,
                   help="a .keras model, a .weights.h5 file, or a named weight set (imagenet-torchvision, imagenet-caffe)")
    p.add_argument("--variant", default="bn", choices=["bn", "paper", "cifar"], help="architecture for .weights.h5")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes of a .weights.h5 model (default: from --classes, else 1000)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier the weights were trained with")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the variant's)")
    p.add_argument("--top", type=int, default=5, help="classes to print per image")
    p.add_argument("--classes", default=None, help="categories.csv (class_name,class_id) or a file of names")
    p.add_argument("--crops", type=int, default=1, choices=[1, 10, 144], help="test-time crops averaged")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = read_class_names(args.classes) if args.classes else None
    num_classes = args.num_classes or (len(names) if names else None)
    model = load_model(args.weights, args.variant, num_classes, args.width, args.image_size)
    predictions = predict(model, args.images, top=args.top, class_names=names, crops=args.crops)
    print(format_predictions(predictions))
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} images could not be predicted", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
