"""Int8 export: post-training static quantization calibrated on the user's images, checked on held-out ones.

`export_int8(model, "model_int8.onnx", calibration=DataConfig(...))` writes an ONNX file in ONNX Runtime's QDQ format
(per-channel int8 weights in 7 bits, so CPUs without VNNI do not saturate; uint8 activations with ranges calibrated
on `calibration` images; the classifier and softmax stay float32, a negligible share of the work, so close logits are
not rounded into ties), then runs it on held-out images that never overlap the calibration ones (checked by content
hash) and compares its top-1 class with the float32 Keras model's. The agreement (and the accuracies, when the
held-out images have labels) is printed and written beside
the file, `<path>.json`; `int8_report(path)` reads it back. Input and output are those of `export_onnx`: "image",
RGB float32 in [0, 255], NCHW by default (`channels_first=True`, like torchvision's exports), "probabilities" float32.
Needs the optional extra `onnx` (tf2onnx, onnx, onnxruntime for the quantization, openvino to run it):

    from kgooglenet.export import openvino_runner
    probs = openvino_runner("model_int8.onnx")(images_nchw)    # float32 (B, 3, S, S) in [0, 255]

The file is a standard ONNX QDQ graph (ONNX Runtime's quantizer writes it, `onnx_runner` runs it too); OpenVINO is
the runtime it is checked and served with because it was the fastest for it here. Measured on the project machine
(2-core AMD Zen 5, AVX512-VNNI, idle) with `benchmarks/infer.py`, GoogLeNet("bn") width 1.0, batch 32, 224x224,
2 threads, img/s (median of 11 paired rounds; x = ratio to ONNX Runtime float32 on torchvision's export): this file
in OpenVINO 2026.4 about 250-260; the same file in ONNX Runtime 1.32 189 (2.98x); TFLite full-integer with
XNNPACK 184 (3.02x); torchvision's quantized googlenet (fbgemm) 209 (3.27x). NNCF's own OpenVINO quantization of the
float32 file was not faster (233). ONNX Runtime with int8 activations (S8S8) was about 3x slower than uint8 (U8S8),
so activations are uint8. The format also keeps a dynamic batch, the NCHW layout of torchvision's exports and a
float32 classifier. The onnx-int8, openvino-int8 and tflite-int8 rows of `benchmarks/infer.py` re-measure the choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from kgooglenet.data.config import DataConfig
from kgooglenet.export import export_onnx, model_size, openvino_runner
from kgooglenet.model import inference_model
from kgooglenet.saving import atomic_write

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")  # onnxruntime.quantization.CalibrationMethod members
MIN_CALIBRATION = 32  # fewer images give activation ranges that miss what the model meets in service
MIN_HOLDOUT = 32  # fewer make the agreement too coarse to trust (one image = 3 points)
SIDECAR_SUFFIX = ".json"  # the self-check report beside the .onnx file
REPORT_FORMAT = 1  # version of the sidecar's JSON layout
_CALIBRATION_BATCH = 8  # images per calibration run of ONNX Runtime
_FLOAT_OPS = ("MatMul", "Gemm", "Softmax")  # kept float32: the classifier and the softmax


@dataclasses.dataclass(frozen=True)
class Int8Report:
    """What `export_int8` measured on the held-out images; all but the fingerprints go into `<path>.json`."""

    path: str  # the int8 .onnx file
    image_size: int  # square input size
    channels_first: bool  # input "image" is (B, 3, S, S) when True, (B, S, S, 3) when False
    calibration_images: int  # images the activation ranges were calibrated on
    calibration_source: str  # where they came from (e.g. "DataConfig(source='digits') train split")
    calibrate_method: str  # "minmax", "percentile" or "entropy"
    holdout_images: int  # held-out images of the self-check (none of them is a calibration image)
    holdout_source: str  # where they came from
    agreement: float  # fraction of held-out images whose int8 top-1 class is the float32 model's
    float32_accuracy: float | None  # top-1 accuracy of the float32 Keras model on the held-out images (None: no labels)
    int8_accuracy: float | None  # the same for the int8 file
    max_probability_diff: float  # largest absolute difference of a probability between the two
    class_names: tuple[str, ...] | None = None  # class names by id, when known (DataConfig sources)
    calibration_fingerprints: frozenset = frozenset()  # content hashes of the calibration images (not stored)
    holdout_fingerprints: frozenset = frozenset()  # content hashes of the held-out images (not stored)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        for key in ("calibration_fingerprints", "holdout_fingerprints"):
            values.pop(key)
        values["class_names"] = None if self.class_names is None else list(self.class_names)
        return {"format": REPORT_FORMAT, **values}

    def summary(self) -> str:
        line = (f"int8 {self.path}: top-1 agreement with float32 {100 * self.agreement:.2f}% on "
                f"{self.holdout_images} held-out images ({self.holdout_source}), calibrated on "
                f"{self.calibration_images} ({self.calibration_source}, {self.calibrate_method})")
        if self.int8_accuracy is not None:
            line += (f"; accuracy float32 {100 * self.float32_accuracy:.2f}%, int8 {100 * self.int8_accuracy:.2f}% "
                     f"({100 * (self.int8_accuracy - self.float32_accuracy):+.2f} points)")
        return line


def int8_report(path) -> dict:
    """The self-check `export_int8` stored beside `path` (the .onnx file), as a dict."""
    sidecar = os.fspath(path) + SIDECAR_SUFFIX
    if not os.path.isfile(sidecar):
        raise FileNotFoundError(f"no int8 report {sidecar!r}: it is written by kgooglenet.quantize.export_int8")
    with open(sidecar) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------------------------
# reading and checking images
# ----------------------------------------------------------------------------------------------------------------
def _expected(size):
    return (f"RGB images of shape ({size}, {size}, 3) (the model's input size), uint8 or float in [0, 255] "
            f"(the model normalizes inside itself: no mean/std or /255 scaling)")


def _check_images(images, what, size, minimum):
    """Raises ValueError naming what was received and what was expected; returns float32 images."""
    images = np.asarray(images)
    if images.size == 0:
        raise ValueError(f"{what}: no images; expected at least {minimum} {_expected(size)}")
    if images.ndim != 4 or tuple(images.shape[1:]) != (size, size, 3):
        raise ValueError(f"{what}: images of shape {tuple(images.shape[1:]) if images.ndim == 4 else images.shape}, "
                         f"expected {_expected(size)} (a DataConfig with image_size={size} makes them)")
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{what}: dtype {images.dtype}, expected {_expected(size)}")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{what}: the images hold NaN or infinite values; expected {_expected(size)}")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 255:
        raise ValueError(f"{what}: pixel values in [{low:.3g}, {high:.3g}], expected {_expected(size)}")
    if high <= 1.0:
        raise ValueError(f"{what}: pixel values in [{low:.3g}, {high:.3g}] look scaled to [0, 1]; expected "
                         f"{_expected(size)}: multiply by 255")
    if len(images) < minimum:
        raise ValueError(f"{what}: {len(images)} images, expected at least {minimum} {_expected(size)}")
    return images


def _take(data, what, limit):
    """(images, labels or None) from an array, an (images, labels) tuple or a tf.data.Dataset of images or
    (images, labels, ...) elements, batched or not; at most `limit` images."""
    import tensorflow as tf

    if isinstance(data, DataConfig):
        raise TypeError("internal: DataConfig is read by _from_config")
    if isinstance(data, tf.data.Dataset):
        images, labels = [], []
        count = 0
        for element in data.as_numpy_iterator():
            x, y = (element[0], element[1]) if isinstance(element, tuple) and len(element) > 1 else (element, None)
            if isinstance(x, dict):
                raise ValueError(f"{what}: dataset elements are dicts ({sorted(x)}); expected images or "
                                 "(images, labels) tuples")
            x = np.asarray(x)
            if x.ndim == 3:  # unbatched
                x, y = x[None], None if y is None else np.asarray(y)[None]
            images.append(x)
            labels.append(None if y is None else np.asarray(y).reshape(-1))
            count += len(x)
            if count >= limit:
                break
        if not images:
            return np.zeros((0,), np.float32), None
        shapes = {a.shape[1:] for a in images}
        if len(shapes) > 1:
            raise ValueError(f"{what}: dataset images of several shapes {sorted(shapes)}; expected one size")
        x = np.concatenate(images)[:limit]
        y = None if any(v is None for v in labels) else np.concatenate(labels)[:limit]
        return x, y
    if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[1]) == 1 and np.ndim(data[0]) == 4:
        x, y = np.asarray(data[0]), np.asarray(data[1]).reshape(-1)
        if len(x) != len(y):
            raise ValueError(f"{what}: {len(x)} images but {len(y)} labels")
        return x[:limit], y[:limit]
    kinds = "a DataConfig, a tf.data.Dataset, an array of images (N, S, S, 3) or an (images, labels) tuple"
    if isinstance(data, (str, os.PathLike)):
        raise ValueError(f"{what}: expected {kinds}, received the path {os.fspath(data)!r} (for a folder of class "
                         "subfolders pass DataConfig(source='folder', path=...))")
    try:
        x = np.asarray(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected {kinds}, received {type(data).__name__}") from e
    if x.dtype == object or x.ndim == 0:
        raise ValueError(f"{what}: expected {kinds}, received {type(data).__name__}")
    return x[:limit], None


def _from_config(config, num_train, num_val):
    """(train images, val images, val labels, class names) of `config`: center crops, no augmentation, at most
    `num_train` train images in a seeded random order (the split is sorted by class otherwise) and `num_val` val
    images; the val part is None when num_val is 0."""
    from kgooglenet.data import make_datasets

    augment = config.augment
    if getattr(augment, "mean", None) is not None or (isinstance(augment, dict) and augment.get("mean") is not None):
        raise ValueError("the DataConfig normalizes its batches (augment mean/std); expected a DataConfig yielding "
                         "RGB [0, 255], the input of a kgooglenet model (which normalizes inside itself)")
    plain = dataclasses.replace(config, augment=None, repeat=False, drop_remainder=False,
                                seed=0 if config.seed is None else config.seed)
    bundle = make_datasets(plain)
    train, _ = _take(bundle.train, "DataConfig train split", num_train) if num_train else (None, None)
    if not num_val:
        return train, None, None, tuple(bundle.class_names)
    if bundle.val is None:
        raise ValueError(f"the DataConfig has no val split (val_split={config.val_split}) for the held-out "
                         "self-check: give it one, or pass holdout= images")
    val, labels = _take(bundle.val, "DataConfig val split", num_val)
    return train, val, labels, tuple(bundle.class_names)


def _fingerprints(images):
    return [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in images]


def _calibration_and_holdout(calibration, holdout, size, num_calibration, num_holdout):
    """(calibration images, their source, holdout images, holdout labels or None, holdout source, class names)."""
    class_names = None
    if isinstance(calibration, DataConfig):
        if calibration.image_size != size:
            raise ValueError(f"calibration: DataConfig(image_size={calibration.image_size}) but the model takes "
                             f"{size}px images; expected DataConfig(image_size={size})")
        where = f"DataConfig(source={calibration.source!r})"
        cal, hold, labels, class_names = _from_config(calibration, num_calibration,
                                                      num_holdout if holdout is None else 0)
        cal_source, hold_source = f"{where} train split", f"{where} val split"
    else:
        cal, _ = _take(calibration, "calibration", num_calibration + (num_holdout if holdout is None else 0))
        cal_source = f"{type(calibration).__name__}"
        if holdout is None:  # the images after the calibration ones are held out
            if np.ndim(cal) != 4 or not len(cal):
                _check_images(cal, "calibration", size, MIN_CALIBRATION)  # raises, naming the shape
            n = len(cal)
            if n < MIN_CALIBRATION + MIN_HOLDOUT:
                raise ValueError(f"calibration: {n} images, expected at least {MIN_CALIBRATION + MIN_HOLDOUT} "
                                 f"when no holdout= is given ({MIN_CALIBRATION} to calibrate, {MIN_HOLDOUT} held "
                                 f"out for the self-check) of {_expected(size)}")
            if n < num_calibration + MIN_HOLDOUT:  # half and half
                num_calibration = n // 2
            cal, hold, labels = cal[:num_calibration], cal[num_calibration:], None
            cal_source += f" (first {len(cal)} images)"
            hold_source = f"calibration input after the first {len(cal)} images"
    if holdout is not None:
        hold, labels = (_from_config(holdout, 0, num_holdout)[1:3] if isinstance(holdout, DataConfig)
                        else _take(holdout, "holdout", num_holdout))
        hold_source = f"holdout {type(holdout).__name__}"
    cal = _check_images(cal, "calibration", size, MIN_CALIBRATION)
    hold = _check_images(hold, "holdout (images for the self-check, never calibrated on)", size, MIN_HOLDOUT)
    return cal, cal_source, hold, labels, hold_source, class_names


# ----------------------------------------------------------------------------------------------------------------
# the export
# ----------------------------------------------------------------------------------------------------------------
def _layout(images, channels_first):
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2) if channels_first else images, np.float32)


def _quantize(float_path, out_path, images, channels_first, calibrate_method, input_name, verbose):
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )
    from tqdm.auto import tqdm

    prepared = float_path.replace(".onnx", ".pre.onnx")
    quant_pre_process(float_path, prepared)  # shape inference + graph fusions, as ONNX Runtime recommends
    excluded = [n.name for n in onnx.load(prepared).graph.node if n.op_type in _FLOAT_OPS]

    class Reader(CalibrationDataReader):
        def __init__(self):
            starts = range(0, len(images), _CALIBRATION_BATCH)
            self.batches = iter(tqdm(starts, desc="int8 calibration", unit="batch", leave=False,
                                     disable=not verbose))

        def get_next(self):
            i = next(self.batches, None)
            return None if i is None else {input_name: _layout(images[i: i + _CALIBRATION_BATCH], channels_first)}

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibrate_method]
    quantize_static(prepared, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    # uint8 activations (U8S8): about 3x faster than int8 ones (S8S8) in ORT 1.32 here
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                    # 7-bit weights: CPUs without VNNI (AVX2, AVX-512 before VNNI) multiply uint8 x int8 pairs with
                    # VPMADDUBSW, whose int16 sums saturate at full-range weights (on a Zen 3, OpenVINO's top-1 then
                    # agreed with float32 on 95.5% of the digits, ONNX Runtime's with OpenVINO's on 98.3%)
                    reduce_range=True, nodes_to_exclude=excluded)


def export_int8(
    model,
    path,
    calibration,
    holdout=None,
    num_calibration=256,
    num_holdout=1000,
    calibrate_method="minmax",
    channels_first=True,
    min_agreement=0.95,
    image_size=None,
    verbose=True,
):
    """Writes an int8 ONNX file of `model` (ONNX Runtime QDQ: per-channel int8 weights, calibrated uint8
    activations), checks its top-1 agreement with the float32 model on held-out images and stores the check in
    `<path>.json`.

    Args:
        model: the Keras model (aux heads are dropped), RGB float [0, 255] input.
        path: the .onnx file to write (atomically: the old file or the new one, never half of one).
        calibration: the images the activation ranges are calibrated on:
            - a `DataConfig`: `num_calibration` images of its train split (seeded random order, center crop, no
              augmentation); unless `holdout` is given, the self-check runs on its val split;
            - a `tf.data.Dataset` of images or (images, labels), batched or not, or an array (N, S, S, 3): the
              first `num_calibration` images calibrate; unless `holdout` is given, the following ones (up to
              `num_holdout`) are held out (with fewer than `num_calibration + 32` images, half and half).
            Images are RGB, uint8 or float, in [0, 255], at the model's input size.
        holdout: images (same kinds; a DataConfig gives its val split) for the self-check instead; labelled ones
            (a DataConfig, a dataset of (images, labels), an (images, labels) tuple) also give the accuracies.
        num_calibration: at most this many calibration images (at least 32 are needed).
        num_holdout: at most this many held-out images (at least 32 are needed).
        calibrate_method: "minmax" (default), "percentile" or "entropy" (ONNX Runtime's calibrators; the last two
            keep every activation of every calibration image in memory, gigabytes at 224: use fewer images).
        channels_first: the input "image" is NCHW (B, 3, S, S) like torchvision's exports (the fastest layout in
            ONNX Runtime), else NHWC.
        min_agreement: raise (writing nothing) when the top-1 agreement is below this fraction; None never raises.
        image_size: input size for models with a dynamic input size (default 224).
        verbose: print the self-check.

    Returns:
        An `Int8Report` (the agreement, accuracies, counts, sources).

    Raises:
        ValueError: bad calibration or held-out images (empty, wrong shape, dtype or range, too few, overlapping),
            or an agreement below `min_agreement`.
        ImportError: the `onnx` extra is not installed.
    """
    try:
        import onnxruntime.quantization  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as e:
        raise ImportError("int8 export needs the optional extra: pip install 'kgooglenet[onnx]' "
                          "(tf2onnx, onnx, onnxruntime, openvino)") from e
    if calibrate_method not in CALIBRATION_METHODS:
        raise ValueError(f"`calibrate_method` must be one of {CALIBRATION_METHODS}, received {calibrate_method!r}")
    path = os.fspath(path)
    if not path.endswith(".onnx"):
        raise ValueError(f"`path` must end with .onnx, received {path!r}")
    source = inference_model(model)
    size = model_size(source, image_size)
    cal, cal_source, hold, labels, hold_source, class_names = _calibration_and_holdout(
        calibration, holdout, size, num_calibration, num_holdout)
    cal_prints, hold_prints = _fingerprints(cal), _fingerprints(hold)
    shared = set(cal_prints) & set(hold_prints)
    if shared:
        raise ValueError(f"holdout: {len(shared)} of the {len(hold)} held-out images are also calibration images; "
                         "expected images the calibration never saw (pass other holdout= images, or a DataConfig "
                         "whose train and val splits are disjoint)")
    if labels is not None and len(labels) != len(hold):
        raise ValueError(f"holdout: {len(hold)} images but {len(labels)} labels")

    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(source, os.path.join(tmp, "float32.onnx"), image_size=size,
                                 channels_first=channels_first)
        int8_path = os.path.join(tmp, "int8.onnx")
        _quantize(float_path, int8_path, cal, channels_first, calibrate_method, "image", verbose)
        run = openvino_runner(int8_path)  # the runtime it is served with (see the module docstring)
        got = np.concatenate([run(_layout(hold[i: i + 32], channels_first)) for i in range(0, len(hold), 32)])
        expected = np.asarray(source.predict(hold, batch_size=32, verbose=0), np.float32)
        report = Int8Report(
            path=path, image_size=size, channels_first=channels_first, calibration_images=len(cal),
            calibration_source=cal_source, calibrate_method=calibrate_method, holdout_images=len(hold),
            holdout_source=hold_source, agreement=float(np.mean(got.argmax(1) == expected.argmax(1))),
            float32_accuracy=None if labels is None else float(np.mean(expected.argmax(1) == labels)),
            int8_accuracy=None if labels is None else float(np.mean(got.argmax(1) == labels)),
            max_probability_diff=float(np.max(np.abs(got - expected))), class_names=class_names,
            calibration_fingerprints=frozenset(cal_prints), holdout_fingerprints=frozenset(hold_prints))
        if verbose:
            print(report.summary(), flush=True)
        if min_agreement is not None and report.agreement < min_agreement:
            raise ValueError(
                f"int8 export: top-1 agreement with float32 {100 * report.agreement:.2f}% on {len(hold)} held-out "
                f"images, below min_agreement={min_agreement}; nothing written to {path!r}. Calibrate on more "
                "images like the ones served (num_calibration=), try calibrate_method='percentile', or pass a "
                "lower min_agreement")
        atomic_write(path, lambda tmp_file: shutil.copyfile(int8_path, tmp_file))
    atomic_write(path + SIDECAR_SUFFIX, lambda tmp_file: _write_json(tmp_file, report.to_dict()))
    return report


def _write_json(path, values):
    with open(path, "w") as f:
        json.dump(values, f, indent=1)



def export_int8_for_recipe(model, exports_dir, folder, run_dir):
    """`recipes/export_savedmodel.py --int8 [FOLDER]`: `exports_dir/model_int8.onnx` calibrated on FOLDER (class
    subfolders; its val_split part is held out), else on the data of the training run in `run_dir` (its
    config.json). Returns the file's path."""
    size = model_size(inference_model(model), None)
    if folder:
        calibration = DataConfig(source="folder", path=folder, image_size=size, seed=0)
    else:
        config_path = os.path.join(run_dir, "config.json")
        if not os.path.isfile(config_path):
            raise ValueError(f"--int8 needs calibration images: pass --int8 FOLDER (class subfolders of images like "
                             f"the ones served), or --model a training run directory (no {config_path!r})")
        from kgooglenet.train import TrainConfig

        calibration = dataclasses.replace(TrainConfig.from_json(config_path).data, image_size=size)
    return export_int8(model, os.path.join(exports_dir, "model_int8.onnx"), calibration).path
