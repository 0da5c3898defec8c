"""Exports for serving: a TF Serving SavedModel (float-image and encoded-bytes signatures), `.keras`, TFLite and
optional ONNX, each checked against the Keras model.

`export_savedmodel` writes `saved_models/<name>/<version>/` with `keras.export.ExportArchive` (what `model.export`
uses). The exported graph holds everything: the model's own `Preprocess` layer (inputs are RGB float in [0, 255]),
no aux heads (`kgooglenet.model.inference_model`), and for the bytes signature the decode + resize (shorter side
256 for a 224 model, antialiased bilinear) + center crop of `kgooglenet.evaluate.crops.center_crop`. Loading it
needs only TensorFlow:

    loaded = tf.saved_model.load("saved_models/googlenet_bn/1")
    out = loaded.signatures["serving_default"](image=images)          # float32 (B, 224, 224, 3) in [0, 255]
    out = loaded.signatures["serving_bytes"](image_bytes=jpeg_bytes)  # string (B,): JPEG/PNG/GIF/BMP/WebP
    out["probabilities"], out["top_k_indices"], out["top_k_scores"], out["top_k_names"]

Speed: by default the served model is `optimize_for_inference(model)`: BatchNorm folded into the preceding
convolutions (conv weights scaled, a bias added: the same function, fewer ops), the preprocessing divisor folded into
conv1, the modules before a pool pooling their branches before concatenating, optionally in bfloat16
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

import json
import os
import re
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from kgooglenet.data.image import decode_and_crop
from kgooglenet.model import inference_model

SIGNATURE_FLOAT = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
_DTYPES = ("float32", "bfloat16", "float16")
# Layers that stay float32 in a bfloat16/float16 export: the input normalization and the softmax.
_KEEP_FLOAT32 = ("preprocess", "predictions", "aux1", "aux2")


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


def _input_scale_target(model):
    """(preprocess layer, the ConvBlock that alone reads its output) when the preprocessing divisor can be folded
    into that convolution's kernel, else None. Exact: the block zero-pads, and zero times a scale is zero."""
    from kgooglenet.layers import ConvBlock, Preprocess

    pre = [layer for layer in model.layers if isinstance(layer, Preprocess)]
    if len(pre) != 1 or all(s == 1 for s in pre[0].std):
        return None
    consumers = {node.operation for node in pre[0]._outbound_nodes}
    if len(consumers) != 1 or not isinstance(next(iter(consumers)), ConvBlock):
        return None
    return pre[0], next(iter(consumers))


_CHANNELWISE_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D,
                      keras.layers.GlobalMaxPooling2D)


def _pooled_modules(model):
    """{Inception name: the pooling layer that alone reads its output}, for the modules that can pool each branch
    before their concatenation (pooling acts on each channel alone, so the result is the same)."""
    from kgooglenet.layers import CeilPooling2D, Inception

    found = {}
    for layer in model.layers:
        if not isinstance(layer, (CeilPooling2D, *_CHANNELWISE_POOLS)) or len(layer._inbound_nodes) != 1:
            continue
        parents = layer._inbound_nodes[0].parent_nodes
        if len(parents) == 1 and isinstance(parents[0].operation, Inception):
            module = parents[0].operation
            if len(module._outbound_nodes) == 1 and module.output_pool is None:
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
            divisor into the first convolution's kernel, so the input is only mean-subtracted (both exact up to float
            rounding; one pass over the input batch less).

    The modules followed by a pool (3b, 4e, 5b) pool each branch before concatenating (`Inception(output_pool=...)`:
    the same result, a quarter of the data to concatenate); the pool layer itself becomes an identity.

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
    input_scale = _input_scale_target(model) if fold_batch_norm else None
    pooled = _pooled_modules(model)
    moved_pools = {pool.name for pool in pooled.values()}

    def policy(layer):
        return "float32" if layer.name in _KEEP_FLOAT32 else dtype

    def clone_layer(layer):
        if layer.name in moved_pools:  # pooled inside the module before it
            return keras.layers.Identity(name=layer.name, dtype=policy(layer))
        config = layer.get_config()
        if layer.name in pooled:
            pool = pooled[layer.name]
            config["output_pool"] = pool.__class__.from_config({**pool.get_config(), "dtype": policy(layer)})
        if fold_batch_norm and config.get("batch_norm"):
            config["batch_norm"] = False
        if input_scale is not None and layer is input_scale[0]:
            config["std"] = [1.0, 1.0, 1.0]
        # every layer gets an explicit policy, so a model trained under mixed precision serves in `dtype`
        config["dtype"] = policy(layer)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for src in model.layers:
        _copy_weights(src, clone.get_layer(src.name), fold_batch_norm)
    if input_scale is not None:
        pre, first = input_scale
        conv = clone.get_layer(first.name).conv
        kernel = keras.ops.convert_to_numpy(conv.kernel).astype(np.float64)  # (kh, kw, in, out)
        conv.kernel.assign((kernel / np.asarray(pre.std)[:, None]).astype(np.float32))
    return clone


# ----------------------------------------------------------------------------------------------------------------
# serving functions
# ----------------------------------------------------------------------------------------------------------------
def _model_size(model, image_size):
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
    size = _model_size(model, image_size)

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
    """1 + the largest integer subdirectory of `base_dir` (1 when there is none): TF Serving's version layout."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(d) for d in os.listdir(base_dir) if d.isdigit() and os.path.isdir(os.path.join(base_dir, d))]
    return max(versions, default=0) + 1


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
):
    """Writes a TF Serving SavedModel to `export_dir/<name>/<version>/` with two signatures.

    Signatures (both return "probabilities" (B, C) float32, "top_k_scores" (B, k) float32, "top_k_indices" (B, k)
    int32 and "top_k_names" (B, k) string):
      - "serving_default": `image` float32 (B, S, S, 3), RGB in [0, 255] (the model preprocesses inside);
      - "serving_bytes": `image_bytes` string (B,), encoded JPEG/PNG/GIF/BMP/WebP images of any size, decoded, resized
        and center cropped inside the graph. Bad bytes raise tf.errors.InvalidArgumentError (an RPC error in TF
        Serving), the server keeps running.
    A `kgooglenet_export.json` beside the SavedModel records the class names, size, dtype and signatures.

    Args:
        model: a Keras model (aux heads are dropped) taking RGB float [0, 255] images.
        export_dir: the base directory ("saved_models").
        name: the model name directory (default: `model.name`).
        version: integer version; None = the next free integer (1 for a new name).
        class_names: names by class id (default: ImageNet's for 1000 classes, else "0", "1", ...); a path to a
            categories.csv also works.
        top_k: how many classes the top-k outputs hold.
        image_size: input size for models with a dynamic input size (default 224).
        dtype: "float32", "bfloat16" or "float16" compute (see `optimize_for_inference`).
        optimize: serve `optimize_for_inference(model, dtype)` (BatchNorm folded); False exports the model as is
            (then dtype must be "float32").
        jit_compile: compile the model part of both signatures with XLA.
        verify: reload the SavedModel and check its probabilities against the Keras model on random images
            (raises AssertionError when they differ by more than the dtype's tolerance).

    Returns:
        The path of the version directory.

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> path = export_savedmodel(GoogLeNet("cifar", num_classes=10, width=0.125), "/tmp/sm", name="digits")
    """
    from kgooglenet.predict import default_class_names

    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer, received top_k={top_k!r}")
    if not optimize and dtype != "float32":
        raise ValueError(f"`dtype={dtype!r}` needs optimize=True (the reduced-precision copy is built there)")
    source = inference_model(model)
    serve_model = optimize_for_inference(source, dtype=dtype) if optimize else source
    num_classes = int(serve_model.output.shape[-1])
    names = default_class_names(num_classes, class_names)
    name = name or model.name
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"`name` must be a plain directory name (letters, digits, _ . -), received name={name!r}")
    base = os.path.join(os.fspath(export_dir), name)
    if version is None:
        version = next_version(base)
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer or None, received version={version!r}")
    path = os.path.join(base, str(version))
    if os.path.exists(path):
        raise FileExistsError(f"export directory {path!r} already exists; pass another version or None (next free)")
    size = _model_size(serve_model, image_size)
    serve_images, serve_bytes = serving_functions(serve_model, names, top_k, size, jit_compile)

    archive = keras.export.ExportArchive()
    archive.track(serve_model)
    archive.add_endpoint(SIGNATURE_FLOAT, serve_images)
    archive.add_endpoint(SIGNATURE_BYTES, serve_bytes)
    archive.write_out(path, verbose=False)
    meta = {
        "class_names": names,
        "image_size": size,
        "top_k": min(top_k, num_classes),
        "dtype": dtype,
        "optimized": bool(optimize),
        "signatures": {
            SIGNATURE_FLOAT: {"inputs": {"image": f"float32 [None, {size}, {size}, 3], RGB 0-255"}},
            SIGNATURE_BYTES: {"inputs": {"image_bytes": "string [None], encoded JPEG/PNG/GIF/BMP/WebP"}},
        },
        "outputs": ["probabilities", "top_k_scores", "top_k_indices", "top_k_names"],
    }
    with open(os.path.join(path, "kgooglenet_export.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if verify:
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        loaded = tf.saved_model.load(path)
        got = loaded.signatures[SIGNATURE_FLOAT](image=tf.constant(x))["probabilities"].numpy()
        _check_close(got, source(x, training=False), dtype, f"SavedModel {path}", source)
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
def export_keras(model, path, verify=True):
    """Saves the inference model (aux heads dropped) as a `.keras` file and checks that it reloads identically."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"`path` must end with .keras, received {path!r}")
    source = inference_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    source.save(path)
    if verify:
        size = _model_size(source, None)
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        reloaded = keras.saving.load_model(path)
        _check_close(keras.ops.convert_to_numpy(reloaded(x, training=False)), source(x, training=False),
                     "float32", path, source)
    return path


def export_tflite(model, path, dtype="float32", image_size=None, verify=True):
    """Converts the optimized inference model to a TFLite flatbuffer (float image input, probabilities output).

    Args:
        model: the Keras model.
        path: the .tflite file to write.
        dtype: "float32", or "float16" (weights stored float16, computed in float32 by XNNPACK: half the size).
        image_size: input size for dynamic models (default 224). The TFLite model has a fixed batch of 1;
            `tflite_interpreter` resizes it.
        verify: compare the interpreter's probabilities with the Keras model's.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"`dtype` must be 'float32' or 'float16' for TFLite, received dtype={dtype!r}")
    path = os.fspath(path)
    source = inference_model(model)
    fast = optimize_for_inference(source)
    size = _model_size(fast, image_size)

    with tempfile.TemporaryDirectory() as tmp:  # TFLite freezes variables when converting from a SavedModel
        archive = keras.export.ExportArchive()
        archive.track(fast)
        archive.add_endpoint(
            "serving_default",
            lambda image: {"probabilities": tf.cast(fast(image, training=False), tf.float32)},
            input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")],
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if dtype == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        blob = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)
    if verify:
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        run = tflite_runner(path, batch_size=2)
        _check_close(run(x), source(x, training=False), dtype, path, source)
    return path


def tflite_runner(path, batch_size=1, num_threads=None):
    """A function images (B, S, S, 3) float32 -> probabilities (B, C) running a .tflite file (XNNPACK delegate)."""
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (ai_edge_litert is its successor)
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=os.fspath(path), num_threads=num_threads or os.cpu_count())
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


def export_onnx(model, path, image_size=None, opset=17, channels_first=False, verify=True):
    """Converts the optimized inference model to ONNX with tf2onnx (optional extra `onnx`: tf2onnx, onnx,
    onnxruntime) and checks onnxruntime's probabilities against the Keras model.

    Args:
        model: the Keras model.
        path: the .onnx file to write.
        image_size: input size for dynamic models (default 224).
        opset: the ONNX opset.
        channels_first: the ONNX input "image" is NCHW (B, 3, S, S), like torchvision's exports, instead of NHWC;
            still RGB in [0, 255] (preprocessing stays inside). Saves ONNX Runtime a transpose of the input (0.95x ->
            1.02x ONNX Runtime on torchvision's export, measured on one core).
        verify: compare ONNX Runtime's probabilities with the Keras model's.

    Raises:
        ImportError: tf2onnx is not installed (the message says how to install it).
    """
    try:
        import tf2onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the optional extra: pip install 'kgooglenet[onnx]' "
                          "(tf2onnx, onnx, onnxruntime)") from e
    path = os.fspath(path)
    source = inference_model(model)
    fast = optimize_for_inference(source)
    size = _model_size(fast, image_size)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image):
        return {"probabilities": tf.cast(fast(image, training=False), tf.float32)}

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset, output_path=path,
                                  inputs_as_nchw=["image"] if channels_first else None)
    if verify:
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channels_first else x
        _check_close(onnx_runner(path)(feed), source(x, training=False), "float32", path, source)
    return path


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
