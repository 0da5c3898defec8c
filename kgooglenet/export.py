"""Exports for serving: a TF Serving SavedModel (float-image and encoded-bytes signatures), `.keras`, TFLite and
optional ONNX, each checked against the Keras model.

Every export takes a run directory or `.keras` model file (`kgooglenet.saving`: the class names and the trained
input size come with it), a named ImageNet weight set or a Keras model (`load_source` is the one loader, predict
uses it too):

    export_savedmodel("runs/flowers")           # saved_models/flowers/1/, the run's classes, its trained size

`export_savedmodel` writes `saved_models/<name>/<version>/` with `keras.export.ExportArchive` (what `model.export`
uses) into a temporary directory beside it, verifies it and renames it into place (TF Serving loads a version as
soon as its directory appears). The exported graph holds everything: the model's own `Preprocess` layer (inputs
are RGB float in [0, 255]), no aux heads (`kgooglenet.model.inference_model`), and for the bytes signature the
decode + resize (shorter side 256 for a 224 model, antialiased bilinear) + center crop (`decode_and_crop`; EXIF
orientation is not applied, see `BYTES_EXIF`). Loading it needs only TensorFlow:

    loaded = tf.saved_model.load("saved_models/googlenet_bn/1")
    out = loaded.signatures["serving_default"](image=images)          # float32 (B, 224, 224, 3) in [0, 255]
    out = loaded.signatures["serving_bytes"](image_bytes=jpeg_bytes)  # string (B,): JPEG/PNG/GIF/BMP/WebP
    out["probabilities"], out["top_k_indices"], out["top_k_scores"], out["top_k_names"]

Speed: by default the served model is `optimize_for_inference(model)`: BatchNorm folded into the preceding
convolutions (conv weights scaled, a bias added: the same function, fewer ops), the preprocessing divisor folded into
conv1 (with Caffe's RGB->BGR swap), the modules before a pool pooling their branches before concatenating,
optionally in bfloat16
(`dtype="bfloat16"`: weights and activations bfloat16, preprocessing and softmax float32; fast on CPUs with AVX512-BF16
/ AMX and on TPUs/GPUs, up to about 1e-2 absolute error in the probabilities). Measured on an idle 2-core AVX512-BF16
CPU at batch 32 (benchmarks/infer.py, 11 paired rounds): `model.export` 61.7 img/s, the optimized float32 SavedModel
63.9, the bfloat16 SavedModel 115.4 (1.64x ONNX Runtime float32), `export_onnx(channels_first=True)` in ONNX Runtime
70.7 and ONNX Runtime on torchvision's googlenet 70.4 (1.00x: parity; both run the same convolutions at this CPU's
float32 peak, see the benchmark). Tried and dropped: XLA (`jit_compile`, slower on CPU), merging each module's three
input 1x1 convolutions into one (slower with oneDNN, and with ONNX Runtime whose blocked layout does not cover the
Split), freezing variables into constants (2x slower through the wrapped graph), OpenVINO 2026.4 as the float32
runtime (0.95x ONNX Runtime).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
import zipfile

import keras
import numpy as np
import tensorflow as tf

from kgooglenet import specs
from kgooglenet.data.image import decode_and_crop
from kgooglenet.model import GoogLeNet, inference_model
from kgooglenet.saving import (
    RUN_MODEL_FILE,
    ModelInfo,
    atomic_write,
    load_model,
    model_info,
    model_path,
)
from kgooglenet.train import faults

SIGNATURE_FLOAT = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
EXPORT_INFO_FILE = "kgooglenet_export.json"  # beside saved_model.pb: class names, size, dtype, signatures, source
# What serving_bytes does with EXIF, said once for the docstrings and kgooglenet_export.json.
BYTES_EXIF = ("EXIF orientation is not applied: the pixels are used as stored (TensorFlow's decoders ignore EXIF); "
              "clients send upright images (PIL.ImageOps.exif_transpose before encoding, as kgooglenet.predict does)")
_DTYPES = ("float32", "bfloat16", "float16")
# Layers that stay float32 in a bfloat16/float16 export: the input normalization and the softmax.
_KEEP_FLOAT32 = ("preprocess", specs.PREDICTIONS_LAYER, *specs.AUX_ON)  # input scaling and the softmax outputs


# ----------------------------------------------------------------------------------------------------------------
# what to export: a run directory, a model file or a named weight set, and its class names
# ----------------------------------------------------------------------------------------------------------------
def read_class_names(path) -> list[str]:
    """Class names by id from a categories.csv (`class_name,class_id` header, as written by `kgooglenet prepare`; any
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


def _input_size(model):
    """The square input size of `model`, or None when its height/width are dynamic."""
    shape = model.inputs[0].shape
    return int(shape[1]) if shape[1] is not None and shape[1] == shape[2] else None


def _derived_info(model, provenance, **known) -> ModelInfo:
    """A ModelInfo for a model that carries none (a plain Keras file, a weights file): read from the model."""
    num_classes = int(model.output.shape[-1])
    values = dict(class_names=tuple(default_class_names(num_classes)), image_size=_input_size(model), variant=None,
                  width=None, aux_heads=False, preprocessing=None, provenance=provenance)
    return ModelInfo(**{**values, **known})


def _weights_source(weights):
    """(model, info) for a named ImageNet set or a converted `.weights.h5` file (its JSON sidecar gives the
    variant, classes and aux heads)."""
    from kgooglenet.weights.cache import NAMED_WEIGHTS, read_sidecar

    if weights in NAMED_WEIGHTS:
        variant, record = NAMED_WEIGHTS[weights].variant, {}
    else:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"no weights file at {weights!r}: pass a run directory, a .keras file or one of "
                                    f"the named sets {sorted(NAMED_WEIGHTS)}")
        record = read_sidecar(weights)
        if record is None or "variant" not in record:
            raise ValueError(
                f"{weights!r} holds weights only (no architecture, no class names) and has no converter sidecar: "
                f"pass the run directory that wrote it or its model.keras (kgooglenet.saving), not the weights file")
        variant = record["variant"]
    model = GoogLeNet(variant, num_classes=int(record.get("num_classes") or 1000),
                      aux_heads=bool(record.get("aux_heads", False)), weights=weights)
    model = inference_model(model)
    return model, _derived_info(model, {"weights": weights}, variant=variant, width=1.0,
                                preprocessing=record.get("preprocessing_name"))


def load_source(source):
    """The single-output model to serve and its `ModelInfo`, from a run directory or `.keras` file (through
    `kgooglenet.saving`: class names, trained size, variant, ...) or from a named ImageNet weight set or converted
    `.weights.h5` file (through `GoogLeNet(weights=...)`: ImageNet class names for 1000 classes). A plain Keras
    `.keras` file without kgooglenet's entry loads too, with class ids as names.

    Raises:
        FileNotFoundError / ValueError: the message names the path and what is expected.
    """
    from kgooglenet.saving import INFO_ENTRY
    from kgooglenet.weights.cache import NAMED_WEIGHTS, WEIGHTS_SUFFIX

    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"expected a run directory, a .keras file or a named weight set, received {source!r}")
    source = os.path.expanduser(os.fspath(source))
    if source in NAMED_WEIGHTS or source.endswith(WEIGHTS_SUFFIX):
        return _weights_source(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f"no model at {source!r}: pass a run directory (holding {RUN_MODEL_FILE}), a .keras "
                                f"file or a named weight set {sorted(NAMED_WEIGHTS)}")
    file = model_path(source)  # names the path and the expected layout when it is wrong
    model = inference_model(load_model(file))
    with zipfile.ZipFile(file) as z:  # readable: load_model opened it
        described = INFO_ENTRY in z.namelist()
    return model, model_info(file) if described else _derived_info(model, {"model_file": file})


def _as_model(model, info=None):
    """(keras model, its ModelInfo or None, the source path or None) for a Keras model (with the `info` given) or a
    `load_source` path."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        loaded, loaded_info = load_source(path)
        return loaded, info or loaded_info, path
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model, a run directory, a .keras file or a named weight set, "
                         f"received {type(model).__name__}")
    if info is not None and not isinstance(info, ModelInfo):
        raise ValueError(f"`info` must be a kgooglenet.saving.ModelInfo, received {type(info).__name__}")
    return model, info, None


def _trained_size(model, info, image_size):
    """`image_size`, else for a model with a dynamic input size the size its file says it was trained at."""
    if image_size is None and info is not None and _input_size(model) is None:
        return info.image_size
    return image_size


# ----------------------------------------------------------------------------------------------------------------
# inference graph: BatchNorm folding and reduced precision
# ----------------------------------------------------------------------------------------------------------------
def _folded(block):
    """(kernel, bias) float32 of a ConvBlock with its BatchNorm folded in."""
    kernel = keras.ops.convert_to_numpy(block.conv.kernel).astype(np.float64)
    bias = np.zeros(kernel.shape[-1]) if block.conv.bias is None else \
        keras.ops.convert_to_numpy(block.conv.bias).astype(np.float64)
    if block.bn is not None:
        bn = block.bn
        gamma = keras.ops.convert_to_numpy(bn.gamma).astype(np.float64) if bn.scale else 1.0
        beta = keras.ops.convert_to_numpy(bn.beta).astype(np.float64) if bn.center else 0.0
        mean = keras.ops.convert_to_numpy(bn.moving_mean).astype(np.float64)
        var = keras.ops.convert_to_numpy(bn.moving_variance).astype(np.float64)
        scale = gamma / np.sqrt(var + bn.epsilon)
        kernel = kernel * scale
        bias = beta + (bias - mean) * scale
    return kernel.astype(np.float32), bias.astype(np.float32)


def _fold_conv_block(src, dst):
    """Copies a ConvBlock's weights into `dst` (a ConvBlock without BatchNorm), folding `src`'s BatchNorm."""
    kernel, bias = _folded(src)
    dst.conv.kernel.assign(kernel)
    dst.conv.bias.assign(bias)


def _copy_weights(src, dst, fold: bool):
    from kgooglenet.layers import AuxHead, ConvBlock, Inception

    if fold and isinstance(src, ConvBlock):
        _fold_conv_block(src, dst)
    elif fold and isinstance(src, Inception):
        for a, b in zip(src.branches, dst.branches):
            _fold_conv_block(a, b)
    elif fold and isinstance(src, AuxHead):
        _fold_conv_block(src.conv, dst.conv)
        dst.fc.set_weights(src.fc.get_weights())
        dst.classifier.set_weights(src.classifier.get_weights())
    else:
        weights = src.get_weights()
        if weights:
            dst.set_weights(weights)


def _graph_edges(model):
    """{layer name: [names of the layers it reads], one entry per call} from the functional model's public config
    (Keras 3 exposes a layer's inbound/outbound nodes only as private attributes)."""
    def parents(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" \
                else None
            return [history[0]] if history else [p for v in value.values() for p in parents(v)]
        if isinstance(value, (list, tuple)):
            return [p for v in value for p in parents(v)]
        return []

    return {entry["name"]: [parents(node) for node in entry["inbound_nodes"]] for entry in model.get_config()["layers"]}


def _consumers(edges, name):
    """How many calls read layer `name`'s output, and the names of the layers making them."""
    calls = [reader for reader, nodes in edges.items() for node in nodes for parent in node if parent == name]
    return len(calls), set(calls)


def _input_fold_target(model):
    """(preprocess layer, the ConvBlock that alone reads its output) when the preprocessing divisor and channel swap
    can be folded into that convolution's kernel, else None. Exact: the block zero-pads, and zero times a scale is
    zero; a swap of the input channels is the same swap of the kernel's input axis."""
    from kgooglenet.layers import ConvBlock, Preprocess

    pre = [layer for layer in model.layers if isinstance(layer, Preprocess)]
    if len(pre) != 1 or (all(s == 1 for s in pre[0].std) and not pre[0].bgr):
        return None
    calls, readers = _consumers(_graph_edges(model), pre[0].name)
    reader = model.get_layer(next(iter(readers))) if calls == 1 else None
    return (pre[0], reader) if isinstance(reader, ConvBlock) else None


_GLOBAL_POOLS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
_CHANNELWISE_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, *_GLOBAL_POOLS)


def _pooled_modules(model):
    """{Inception name: the pooling layer that alone reads its output}, for the modules that can pool each branch
    before their concatenation (pooling acts on each channel alone, so the result is the same)."""
    from kgooglenet.layers import CeilPooling2D, Inception

    found, edges = {}, _graph_edges(model)
    for layer in model.layers:
        nodes = edges.get(layer.name, [])
        if not isinstance(layer, (CeilPooling2D, *_CHANNELWISE_POOLS)) or len(nodes) != 1 or len(nodes[0]) != 1:
            continue
        module = model.get_layer(nodes[0][0])
        if isinstance(module, Inception) and _consumers(edges, module.name)[0] == 1 and module.output_pool is None:
            found[module.name] = layer
    return found


def optimize_for_inference(model, dtype="float32", fold_batch_norm=True):
    """A copy of `model` for serving: aux heads dropped, BatchNorm folded into the convolutions, and optionally
    reduced precision. The input (RGB float [0, 255]) and output (float32 probabilities) stay the same.

    Args:
        model: a GoogLeNet (any variant, with or without aux heads) or a model built from kgooglenet layers.
        dtype: "float32", "bfloat16" (weights and activations bfloat16; preprocessing and softmax float32) or
            "float16".
        fold_batch_norm: fold every ConvBlock's BatchNorm into its convolution, and the preprocessing's per-channel
            divisor and RGB->BGR swap into the first convolution's kernel, so the input is only mean-subtracted (exact
            up to float rounding; one pass over the input batch less, and no channel reversal, which OpenCV's DNN
            cannot import from ONNX).

    The modules followed by a pool (3b, 4e, 5b) pool each branch before concatenating (`Inception(output_pool=...)`:
    the same result, a quarter of the data to concatenate); the pool layer itself becomes an identity, or for the
    global pool after 5b a flatten of the (B, 1, 1, C) maps (a concatenation of squeezed (B, C) tensors is
    mis-shaped by OpenCV's DNN at batch > 1).

    Returns:
        A new keras.Model (its weights are copies: training `model` later does not change it).

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> model = GoogLeNet("bn", width=0.125)
    >>> fast = optimize_for_inference(model)
    >>> x = np.random.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    >>> bool(np.allclose(fast(x), model(x), atol=1e-5))
    True
    """
    if dtype not in _DTYPES:
        raise ValueError(f"`dtype` must be one of {_DTYPES}, received dtype={dtype!r}")
    model = inference_model(model)
    input_fold = _input_fold_target(model) if fold_batch_norm else None
    pooled = _pooled_modules(model)
    # a global pool's module keeps each branch's (B, 1, 1, C) map and the pool's place flattens the concatenation:
    # OpenCV's DNN mis-shapes a Concat of squeezed (B, C) tensors at batch > 1 ("Inconsistent shape for ConcatLayer")
    flattened_pools = {p.name for p in pooled.values() if isinstance(p, _GLOBAL_POOLS) and not p.keepdims}
    moved_pools = {pool.name for pool in pooled.values()} - flattened_pools

    def policy(layer):
        return "float32" if layer.name in _KEEP_FLOAT32 else dtype

    def clone_layer(layer):
        if layer.name in moved_pools:  # pooled inside the module before it
            return keras.layers.Identity(name=layer.name, dtype=policy(layer))
        if layer.name in flattened_pools:  # its module pooled to (B, 1, 1, C)
            return keras.layers.Flatten(name=layer.name, dtype=policy(layer))
        config = layer.get_config()
        if layer.name in pooled:
            pool = pooled[layer.name]
            pool_config = {**pool.get_config(), "dtype": policy(layer)}
            if pool.name in flattened_pools:
                pool_config["keepdims"] = True
            config["output_pool"] = pool.__class__.from_config(pool_config)
        if fold_batch_norm and config.get("batch_norm"):
            config["batch_norm"] = False
        if input_fold is not None and layer is input_fold[0]:
            # RGB in, only the mean subtracted (in RGB order): the divisor and the swap live in the first kernel
            config.update(std=[1.0, 1.0, 1.0], bgr=False, mean=layer.mean[::-1] if layer.bgr else layer.mean)
        # every layer gets an explicit policy, so a model trained under mixed precision serves in `dtype`
        config["dtype"] = policy(layer)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for src in model.layers:
        _copy_weights(src, clone.get_layer(src.name), fold_batch_norm)
    if input_fold is not None:
        pre, first = input_fold
        conv = clone.get_layer(first.name).conv
        kernel = keras.ops.convert_to_numpy(conv.kernel).astype(np.float64)  # (kh, kw, in, out)
        kernel = kernel / np.asarray(pre.std)[:, None]
        conv.kernel.assign((kernel[:, :, ::-1] if pre.bgr else kernel).astype(np.float32))
    return clone


# ----------------------------------------------------------------------------------------------------------------
# serving functions
# ----------------------------------------------------------------------------------------------------------------
def model_size(model, image_size):
    shape = model.inputs[0].shape
    if shape[1] is not None and shape[2] is not None:
        if shape[1] != shape[2]:
            raise ValueError(f"`model` must take square images, its input shape is {shape}")
        if image_size is not None and image_size != shape[1]:
            raise ValueError(f"`image_size`: the model takes {shape[1]}px images, received image_size={image_size}")
        return int(shape[1])
    return int(image_size or 224)


def _outputs(probs, class_names, top_k):
    probs = tf.cast(probs, tf.float32)
    k = min(top_k, int(probs.shape[-1]))
    scores, indices = tf.math.top_k(probs, k=k)
    names = tf.gather(tf.constant(class_names), indices)
    return {"probabilities": probs, "top_k_scores": scores, "top_k_indices": indices, "top_k_names": names}


def serving_functions(model, class_names, top_k=5, image_size=None, jit_compile=False):
    """The two serving functions (tf.functions with input signatures): float images -> outputs, and encoded image
    bytes -> outputs, each returning {"probabilities", "top_k_scores", "top_k_indices", "top_k_names"}."""
    size = model_size(model, image_size)

    @tf.function(jit_compile=jit_compile)
    def classify(images):
        return model(images, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve_images(image):
        return _outputs(classify(image), class_names, top_k)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda b: decode_and_crop(b, size),
            image_bytes,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return _outputs(classify(images), class_names, top_k)

    return serve_images, serve_bytes


def next_version(base_dir) -> int:
    """1 + the largest integer subdirectory of `base_dir` (1 when there is none): TF Serving's version layout.
    A killed export's temporary directory (`.partial-...`) is no version."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(d) for d in os.listdir(base_dir) if d.isdigit() and os.path.isdir(os.path.join(base_dir, d))]
    return max(versions, default=0) + 1


_PARTIAL = ".partial-"  # prefix of a version directory being written (TF Serving ignores non-numeric names)


def _remove_stale_partials(base):
    """Removes the temporary directories of exports killed midway (their process is gone)."""
    for entry in os.listdir(base):
        if not entry.startswith(_PARTIAL):
            continue
        try:
            pid = int(entry[len(_PARTIAL):].split("-")[1])
            os.kill(pid, 0)  # still running: another export is writing it
        except (IndexError, ValueError, ProcessLookupError):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
        except PermissionError:
            pass


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path):
    """fsyncs every file and directory under `path` (the rename that publishes it must not outrun its contents)."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(root)


def export_name(source) -> str:
    """The default `name` of an export of `source` (saved_models/<name>/): a run directory's name (also for its
    model.keras), a model file's stem, a weight set's name."""
    path = os.path.abspath(source) if os.path.exists(source) else source
    if os.path.isdir(path):
        return os.path.basename(path.rstrip(os.sep))
    stem = os.path.basename(path).split(".")[0]
    if os.path.isfile(path) and stem == "model":  # RUN_DIR/model.keras: the run's name
        return os.path.basename(os.path.dirname(path))
    return stem


def export_savedmodel(
    model,
    export_dir="saved_models",
    name=None,
    version=None,
    class_names=None,
    top_k=5,
    image_size=None,
    dtype="float32",
    optimize=True,
    jit_compile=False,
    verify=True,
    info=None,
):
    """Writes a TF Serving SavedModel to `export_dir/<name>/<version>/` with two signatures.

    Signatures (both return "probabilities" (B, C) float32, "top_k_scores" (B, k) float32, "top_k_indices" (B, k)
    int32 and "top_k_names" (B, k) string):
      - "serving_default": `image` float32 (B, S, S, 3), RGB in [0, 255] (the model preprocesses inside);
      - "serving_bytes": `image_bytes` string (B,), encoded JPEG/PNG/GIF/BMP/WebP images of any size, decoded, resized
        and center cropped inside the graph. Bad bytes raise tf.errors.InvalidArgumentError (an RPC error in TF
        Serving), the server keeps running. EXIF orientation is not applied: pixels are used as stored (TensorFlow's
        decoders ignore EXIF), so clients send upright images (`PIL.ImageOps.exif_transpose`, as predict does).
    A `kgooglenet_export.json` beside the SavedModel records the class names, size, dtype, signatures, EXIF handling
    and what was exported.

    The version directory appears whole or not at all: the export is written to a temporary directory beside it
    (`.partial-...`, a name TF Serving ignores), verified, fsynced and then renamed into place, so TF Serving (which
    loads a version as soon as its directory appears) never sees half a model, and an export killed midway leaves
    no version behind (its temporary directory is removed by the next export).

    Args:
        model: what to export: a run directory or `.keras` file (class names and trained input size come from the
            file, see `kgooglenet.saving`), a named ImageNet set ("imagenet-torchvision", ...) or converted
            `.weights.h5` file, or a Keras model (aux heads are dropped) taking RGB float [0, 255] images.
        export_dir: the base directory ("saved_models").
        name: the model name directory (default: the run directory's name, the weight set's name or `model.name`).
        version: integer version; None = the next free integer (1 for a new name).
        class_names: names by class id (default: the model file's; for a Keras model ImageNet's for 1000 classes,
            else "0", "1", ...); a path to a categories.csv also works.
        top_k: how many classes the top-k outputs hold.
        image_size: input size for models with a dynamic input size (default: the size a model file was trained at,
            else 224).
        dtype: "float32", "bfloat16" or "float16" compute (see `optimize_for_inference`).
        optimize: serve `optimize_for_inference(model, dtype)` (BatchNorm folded); False exports the model as is
            (then dtype must be "float32").
        jit_compile: compile the model part of both signatures with XLA.
        verify: reload the SavedModel and check its probabilities against the Keras model on random images
            (raises AssertionError when they differ by more than the dtype's tolerance; nothing is published then).
        info: the `kgooglenet.saving.ModelInfo` of a Keras `model` (as `load_source` returns it): its class names
            and trained size are the defaults, and kgooglenet_export.json records it.

    Returns:
        The path of the version directory.

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> path = export_savedmodel(GoogLeNet("cifar", num_classes=10, width=0.125), "/tmp/sm", name="digits")
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer, received top_k={top_k!r}")
    if not optimize and dtype != "float32":
        raise ValueError(f"`dtype={dtype!r}` needs optimize=True (the reduced-precision copy is built there)")
    model, info, source_path = _as_model(model, info)
    if info is not None:
        class_names = info.class_names if class_names is None else class_names
    image_size = _trained_size(model, info, image_size)
    source = inference_model(model)
    serve_model = optimize_for_inference(source, dtype=dtype) if optimize else source
    num_classes = int(serve_model.output.shape[-1])
    names = default_class_names(num_classes, class_names)
    name = name or (export_name(source_path) if source_path else model.name)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or name.startswith("."):
        raise ValueError(f"`name` must be a plain directory name (letters, digits, _ . -), received name={name!r}")
    base = os.path.join(os.fspath(export_dir), name)
    os.makedirs(base, exist_ok=True)
    _remove_stale_partials(base)
    if version is None:
        version = next_version(base)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer or None, received version={version!r}")
    path = os.path.join(base, str(version))
    if os.path.exists(path):
        raise FileExistsError(f"export directory {path!r} already exists; pass another version or None (next free)")
    size = model_size(serve_model, image_size)
    serve_images, serve_bytes = serving_functions(serve_model, names, top_k, size, jit_compile)

    partial = os.path.join(base, f"{_PARTIAL}{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        archive = keras.export.ExportArchive()
        archive.track(serve_model)
        archive.add_endpoint(SIGNATURE_FLOAT, serve_images)
        archive.add_endpoint(SIGNATURE_BYTES, serve_bytes)
        archive.write_out(partial, verbose=False)
        faults.hit("export_savedmodel")
        meta = {
            "class_names": names,
            "image_size": size,
            "top_k": min(top_k, num_classes),
            "dtype": dtype,
            "optimized": bool(optimize),
            "signatures": {
                SIGNATURE_FLOAT: {"inputs": {"image": f"float32 [None, {size}, {size}, 3], RGB 0-255"}},
                SIGNATURE_BYTES: {"inputs": {"image_bytes": "string [None], encoded JPEG/PNG/GIF/BMP/WebP"},
                                  "exif": BYTES_EXIF},
            },
            "outputs": ["probabilities", "top_k_scores", "top_k_indices", "top_k_names"],
            "source": source_path,
            "model": None if info is None else {k: v for k, v in info.to_dict().items() if k != "class_names"},
        }
        with open(os.path.join(partial, EXPORT_INFO_FILE), "w") as f:
            json.dump(meta, f, indent=1)
        if verify:
            x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
            loaded = tf.saved_model.load(partial)
            got = loaded.signatures[SIGNATURE_FLOAT](image=tf.constant(x))["probabilities"].numpy()
            _check_close(got, source(x, training=False), dtype, f"SavedModel {path}", source)
        _fsync_tree(partial)
        if os.path.exists(path):  # another export took this version meanwhile
            raise FileExistsError(f"export directory {path!r} appeared during the export; pass another version")
        os.rename(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _fsync_dir(base)  # the rename itself survives a power cut
    return path


def tolerance(dtype) -> float:
    """Max abs difference of probabilities accepted between an export and the float32 Keras model."""
    return {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}.get(dtype, 1e-4)


def _reduced_precision(model):
    """The lowest compute dtype among `model`'s layers ("bfloat16"/"float16" for mixed-precision models)."""
    dtypes = {getattr(layer, "compute_dtype", "float32") for layer in model.layers}
    return "bfloat16" if "bfloat16" in dtypes else "float16" if "float16" in dtypes else "float32"


def _check_close(got, expected, dtype, what, model=None):
    if model is not None:
        dtype = max(dtype, _reduced_precision(model), key=tolerance)
    expected = keras.ops.convert_to_numpy(expected["main"] if isinstance(expected, dict) else expected)
    diff = float(np.max(np.abs(np.asarray(got, np.float32) - expected)))
    if not diff <= tolerance(dtype):
        raise AssertionError(f"{what}: probabilities differ from the Keras model by {diff:.3g} "
                             f"(> {tolerance(dtype):.0e} for {dtype})")
    return diff


# ----------------------------------------------------------------------------------------------------------------
# other formats
# ----------------------------------------------------------------------------------------------------------------
def _check_suffix(path, suffix):
    path = os.fspath(path)
    if not path.endswith(suffix):
        raise ValueError(f"`path` must end with {suffix}, received {path!r}")
    return path


def _random_images(size, batch=2):
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def export_keras(model, path, info=None, verify=True):
    """Saves the inference model (aux heads dropped) as a `.keras` file and checks that it reloads identically;
    written atomically (a kill leaves the old file or none, never half of one).

    Args:
        model: a Keras model, or a run directory / model file / named weight set (see `export_savedmodel`).
        path: the .keras file to write.
        info: a `kgooglenet.saving.ModelInfo` to store inside (default: the source's, when `model` is a path), so
            that `kgooglenet.saving.load_model` / `model_info` restore the class names and input size; without one a
            plain Keras file.
        verify: reload it and compare its probabilities with the model's (before it is renamed into place).
    """
    from kgooglenet.saving import save_model

    path = _check_suffix(path, ".keras")
    model, info, _ = _as_model(model, info)
    source = inference_model(model)

    def write(tmp):
        if info is not None:
            save_model(source, tmp, info)
        else:
            source.save(tmp)
        faults.hit("export_file")
        if verify:
            x = _random_images(model_size(source, _trained_size(source, info, None)))
            reloaded = keras.saving.load_model(tmp)
            _check_close(keras.ops.convert_to_numpy(reloaded(x, training=False)), source(x, training=False),
                         "float32", path, source)

    return atomic_write(path, write)


def export_tflite(model, path, dtype="float32", image_size=None, verify=True, info=None):
    """Converts the optimized inference model to a TFLite flatbuffer (float image input of any batch size,
    probabilities output), written atomically.

    Args:
        model: a Keras model, or a run directory / model file / named weight set (see `export_savedmodel`).
        path: the .tflite file to write.
        dtype: "float32", or "float16" (weights stored float16, computed in float32 by XNNPACK: half the size).
        image_size: input size for dynamic models (default: the trained size of a model file, else 224). The batch
            dimension is dynamic (shape signature -1); `tflite_runner(path, batch_size)` resizes it.
        verify: compare the interpreter's probabilities with the Keras model's (before it is renamed into place).
        info: the `ModelInfo` of a Keras `model` (its trained size is the default `image_size`).
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"`dtype` must be 'float32' or 'float16' for TFLite, received dtype={dtype!r}")
    path = _check_suffix(path, ".tflite")
    model, info, _ = _as_model(model, info)
    source = inference_model(model)
    fast = optimize_for_inference(source)
    size = model_size(fast, _trained_size(source, info, image_size))

    with tempfile.TemporaryDirectory() as tmp:  # TFLite freezes variables when converting from a SavedModel
        archive = keras.export.ExportArchive()
        archive.track(fast)
        archive.add_endpoint(
            "serving_default",
            lambda image: {"probabilities": tf.cast(fast(image, training=False), tf.float32)},
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")],
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if dtype == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        blob = converter.convert()

    def write(tmp_path):
        with open(tmp_path, "wb") as f:
            f.write(blob)
        faults.hit("export_file")
        if verify:
            x = _random_images(size)
            _check_close(tflite_runner(tmp_path, batch_size=len(x))(x), source(x, training=False), dtype, path,
                         source)

    return atomic_write(path, write)


def tflite_interpreter(path, num_threads=None):
    """A `tf.lite.Interpreter` for a .tflite file, without its deprecation notice (ai_edge_litert is its successor)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return tf.lite.Interpreter(model_path=os.fspath(path), num_threads=num_threads or os.cpu_count())


def tflite_runner(path, batch_size=1, num_threads=None):
    """A function images (B, S, S, 3) float32 -> probabilities (B, C) running a .tflite file (XNNPACK delegate)."""
    interpreter = tflite_interpreter(path, num_threads)
    inp = interpreter.get_input_details()[0]
    shape = list(inp["shape"])
    shape[0] = batch_size
    interpreter.resize_tensor_input(inp["index"], shape)
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]

    def run(images):
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(images, np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run


def export_onnx(model, path, image_size=None, opset=17, channels_first=False, verify=True, info=None):
    """Converts the optimized inference model to ONNX with tf2onnx (optional extra `onnx`: tf2onnx, onnx,
    onnxruntime) and checks onnxruntime's probabilities against the Keras model; written atomically. The batch
    dimension is dynamic; the graph runs in ONNX Runtime and in OpenCV's DNN module (`cv2.dnn.readNetFromONNX`) at
    any batch size.

    Args:
        model: a Keras model, or a run directory / model file / named weight set (see `export_savedmodel`).
        path: the .onnx file to write.
        image_size: input size for dynamic models (default: the trained size of a model file, else 224).
        opset: the ONNX opset.
        channels_first: the ONNX input "image" is NCHW (B, 3, S, S), like torchvision's exports, instead of NHWC;
            still RGB in [0, 255] (preprocessing stays inside). Saves ONNX Runtime a transpose of the input (0.95x ->
            1.02x ONNX Runtime on torchvision's export, measured on one core).
        verify: compare ONNX Runtime's probabilities with the Keras model's (before it is renamed into place).
        info: the `ModelInfo` of a Keras `model` (its trained size is the default `image_size`).

    Raises:
        ImportError: tf2onnx is not installed (the message says how to install it).
    """
    try:
        import tf2onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the optional extra: pip install 'kgooglenet[onnx]' "
                          "(tf2onnx, onnx, onnxruntime)") from e
    path = _check_suffix(path, ".onnx")
    model, info, _ = _as_model(model, info)
    source = inference_model(model)
    fast = optimize_for_inference(source)
    size = model_size(fast, _trained_size(source, info, image_size))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image):
        return {"probabilities": tf.cast(fast(image, training=False), tf.float32)}

    def write(tmp):
        tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset, output_path=tmp,
                                      inputs_as_nchw=["image"] if channels_first else None)
        faults.hit("export_file")
        if verify:
            x = _random_images(size)
            feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channels_first else x
            _check_close(onnx_runner(tmp)(feed), source(x, training=False), "float32", path, source)

    return atomic_write(path, write)


def openvino_runner(path, num_threads=None, precision=None):
    """A function images -> probabilities running an ONNX file (float32 or int8 QDQ) with OpenVINO's CPU plugin
    (optional extra `onnx`), latency-tuned: one stream, every core on each batch; any batch size. `precision`
    "bf16" runs a float32 file in bfloat16 (the plugin's own conversion, on CPUs with AVX512-BF16 or AMX).
    The fastest int8 runtime measured here (benchmarks/infer.py), which is why `kgooglenet.quantize` serves and
    checks its files with it; the file itself stays a standard ONNX QDQ graph that ONNX Runtime runs too."""
    try:
        import openvino as ov
    except ImportError as e:
        raise ImportError("openvino_runner needs the optional extra: pip install 'kgooglenet[onnx]'") from e

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": num_threads or os.cpu_count()}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    request = ov.Core().compile_model(os.fspath(path), "CPU", config).create_infer_request()

    def run(images):
        return request.infer({0: np.ascontiguousarray(images, np.float32)})[0].copy()

    return run


def onnx_runner(path, num_threads=None):
    """A function images -> probabilities running an ONNX file with onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or os.cpu_count()
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(images):
        return session.run(None, {name: np.ascontiguousarray(images, np.float32)})[0]

    return run
