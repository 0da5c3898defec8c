"""Top-k predictions for image files: `kgooglenet predict --model RUN_DIR_OR_FILE IMAGE...`
(or `python -m kgooglenet predict ...`).

The model is a training run's directory or its `.keras` file (class names and input size come with it, see
`kgooglenet.saving`), or a named ImageNet weight set (`--model imagenet-torchvision`; `--weights` is the same
option) or a converted `.weights.h5` file. A directory among the images stands for the image files directly inside
it (sorted; not its subfolders).

Images are decoded with TensorFlow (JPEG, PNG, GIF's first frame, BMP, WebP) and, when TF cannot, with Pillow (TIFF,
CMYK JPEGs, 16-bit grayscale, ...), turned upright by their EXIF orientation (a portrait phone photo is predicted
as the photographer saw it), converted to RGB, resized (shorter side 256 for a 224 model) and center cropped, or
averaged over 10/144 crops with --crops. A file that cannot be read gets a one-line error and the others are still
predicted; the exit status is 1 when any file failed, 2 when the model cannot be loaded.

Example:
    kgooglenet predict --model runs/flowers photo.jpg holiday/ --top 3
    kgooglenet predict --weights imagenet-torchvision cat.jpg dog.png
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

# the class names every export and prediction uses, and the one loader (predict sits above export)
from kgooglenet.data.image import ImageDecodeError, load_image  # noqa: F401  (the one image path)
from kgooglenet.export import default_class_names, imagenet_class_names, load_source, read_class_names  # noqa: F401


@dataclasses.dataclass
class Prediction:
    """The top-k classes of one image, or the error that prevented predicting it."""

    source: str  # the file path (or "array[i]")
    top: list = dataclasses.field(default_factory=list)  # [(class_id, class_name, probability)], best first
    error: str | None = None  # why the image could not be predicted; None when `top` is filled


def image_files(paths) -> list[str]:
    """`paths` with each directory replaced by the image files directly inside it (sorted, by the preparer's
    extensions; not its subfolders). A directory without image files raises ValueError naming it."""
    from kgooglenet.data.prepare import PREPARE_EXTENSIONS

    files = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.isdir(path):
            files.append(path)
            continue
        inside = sorted(os.path.join(path, n) for n in os.listdir(path)
                        if os.path.splitext(n)[1].lower() in PREPARE_EXTENSIONS
                        and os.path.isfile(os.path.join(path, n)))
        if not inside:
            raise ValueError(f"directory {path!r} holds no image files directly inside it "
                             f"(extensions {', '.join(PREPARE_EXTENSIONS)}; subfolders are not searched)")
        files.extend(inside)
    return files


def predict(model, images, top=5, class_names=None, crops=1, batch_size=32, image_size=None) -> list[Prediction]:
    """Top-k predictions for image files or arrays; unreadable files give a `Prediction` with `error` set.

    Args:
        model: a run directory, `.keras` file or named weight set (see `kgooglenet.export.load_source`: class names
            and input size come with it), or a keras.Model (or list of models / `kgooglenet.evaluate.Ensemble`)
            taking RGB [0, 255] images.
        images: file paths, directories (their image files, see `image_files`) and/or arrays (H, W, 3) uint8/float
            in [0, 255].
        top: how many classes per image.
        class_names: names by class id, or a categories.csv path; default: the model file's, else ImageNet names for
            1000 classes, else class ids.
        crops: 1, 10 or 144 test-time crops (see `kgooglenet.evaluate.crops`).
        batch_size: the most crops per forward pass.
        image_size: the crop size for a model with a dynamic input size (default: the size a model file was trained
            at, else 224).

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> model = GoogLeNet("cifar", num_classes=10, width=0.125)
    >>> [p.top[0][0] in range(10) for p in predict(model, [np.zeros((40, 50, 3), "uint8")], top=1)]
    [True]
    """
    from kgooglenet.evaluate.crops import crop_count, multi_crop
    from kgooglenet.evaluate.ensemble import Ensemble

    if isinstance(model, (str, os.PathLike)):
        model, info = load_source(model)
        class_names = info.class_names if class_names is None else class_names
        image_size = image_size or info.image_size
    ensemble = model if isinstance(model, Ensemble) else Ensemble(model, batch_size=batch_size)
    size = ensemble.image_size or image_size or 224
    n = crop_count(crops)
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive integer, received top={top!r}")
    top = min(top, ensemble.num_classes)
    names = default_class_names(ensemble.num_classes, class_names)
    if isinstance(images, (str, os.PathLike, np.ndarray)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    entries = []  # (source, file path or array, or an error for a directory without images)
    for i, item in enumerate(images):
        if not isinstance(item, (str, os.PathLike)):
            entries.append((f"array[{i}]", item))
            continue
        try:
            entries.extend((f, f) for f in image_files([item]))
        except ValueError as e:
            entries.append((os.fspath(item), e))
    results = []
    for source, item in entries:
        try:
            if isinstance(item, Exception):
                raise item
            image = load_image(item) if isinstance(item, str) else np.asarray(item)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
                raise ValueError(f"`images`: expected an (H, W, 3) image, received shape {image.shape}")
            image = image[..., :3] if image.shape[-1] == 4 else np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
            probs = ensemble.predict_crops(multi_crop(image, n, size)[None])[0]
        except (OSError, ValueError) as e:  # FileNotFoundError, IsADirectoryError, ImageDecodeError, bad arrays
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
        prog="kgooglenet predict",
        description="Top-k class names and probabilities for image files (EXIF orientation applied).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (JPEG, PNG, GIF, BMP, TIFF, WebP, ...); a directory stands for the image files "
                   "directly inside it (sorted; subfolders are not searched)")
    p.add_argument("--model", "--weights", dest="model", required=True, metavar="RUN_DIR_OR_FILE",
                   help="a training run directory or .keras model file (class names and input size come with it), "
                   "or a named ImageNet weight set (imagenet-torchvision, imagenet-caffe) or converted .weights.h5")
    p.add_argument("--top", type=int, default=5, help="classes to print per image (at most the class count)")
    p.add_argument("--crops", type=int, default=1, choices=[1, 10, 144], help="test-time crops averaged")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        print(f"error: --top must be a positive integer, received {args.top}", file=sys.stderr)
        return 2
    try:
        model, info = load_source(args.model)
    except (OSError, ValueError) as e:  # a missing or odd model: one line, no traceback
        print(f"error: --model: {e}", file=sys.stderr)
        return 2
    predictions = predict(model, args.images, top=args.top, class_names=info.class_names, crops=args.crops,
                          image_size=info.image_size)
    print(format_predictions(predictions))
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} images could not be predicted", file=sys.stderr)
    return 1 if failed else 0
