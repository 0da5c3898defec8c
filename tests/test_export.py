"""Tests of kgooglenet.export: SavedModel signatures (also loaded without kgooglenet), bad bytes, .keras, TFLite, ONNX."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgooglenet import GoogLeNet
from kgooglenet.export import (
    SIGNATURE_BYTES,
    SIGNATURE_FLOAT,
    export_keras,
    export_onnx,
    export_savedmodel,
    export_tflite,
    next_version,
    optimize_for_inference,
)

NAMES = [f"class_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(3)
    m = GoogLeNet("cifar", num_classes=10, width=0.125, aux_heads=True)
    # give BatchNorm non-trivial statistics so that folding it is really tested
    for layer in m.weights:
        if "moving_mean" in layer.path or "moving_variance" in layer.path:
            layer.assign(np.random.default_rng(0).uniform(0.5, 1.5, layer.shape).astype("float32"))
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    path = export_savedmodel(model, str(base), name="tiny", class_names=NAMES, top_k=3)
    return str(base), path


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    yy, xx = np.mgrid[0:48, 0:40]
    photo = np.clip(np.stack([xx * 5, yy * 4, (xx + yy) * 2], -1) + rng.integers(0, 9, (48, 40, 3)), 0, 255)
    photo = photo.astype(np.uint8)
    encoded = [tf.io.encode_png(photo).numpy(), tf.io.encode_jpeg(photo[:40, :], quality=98).numpy()]
    return images, photo, encoded


def _expected_bytes_images(photo):
    """What serving_bytes feeds the model: shorter side 32 (kgooglenet.data.image.eval_scale(32)), center 32x32."""
    a = tf.image.resize(photo[None].astype("float32"), (38, 32), antialias=True)[0, 3:35, 0:32]
    return a.numpy()


def test_optimize_for_inference_folds_batch_norm(model):
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ref = np.asarray(model(x, training=False)["main"])
    fast = optimize_for_inference(model)
    assert not any("bn" in w.path for w in fast.weights)
    assert "aux1" not in [layer.name for layer in fast.layers]
    np.testing.assert_allclose(fast(x), ref, atol=1e-5)
    bf16 = optimize_for_inference(model, "bfloat16")
    assert bf16.get_layer("conv1").compute_dtype == "bfloat16" and bf16.output.dtype == "float32"
    np.testing.assert_allclose(bf16(x), ref, atol=3e-2)
    paper = GoogLeNet("paper", num_classes=4, width=0.125, input_shape=(64, 64, 3))
    y = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(optimize_for_inference(paper)(y), paper(y), atol=1e-6)
    # the modules before a pool pool their branches (same result, smaller concatenation); the pools become identities
    assert [layer.name for layer in fast.layers if isinstance(layer, keras.layers.Identity)] == \
        ["pool3", "pool4", "avg_pool"]
    assert fast.get_layer("inception_3b").output_pool is not None
    assert fast.get_layer("inception_4a").output_pool is None
    # the preprocessing divisor is folded into conv1's kernel: the input is only mean-subtracted
    pre = model.get_layer("preprocess")
    assert fast.get_layer("preprocess").std == [1.0, 1.0, 1.0] and pre.std != [1.0, 1.0, 1.0]
    unfolded = optimize_for_inference(model, fold_batch_norm=False)
    assert unfolded.get_layer("preprocess").std == pre.std
    np.testing.assert_allclose(unfolded(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="dtype"):
        optimize_for_inference(model, "int8")


def test_savedmodel_layout_and_signatures(model, exported, inputs):
    base, path = exported
    assert path == os.path.join(base, "tiny", "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    meta = json.load(open(os.path.join(path, "kgooglenet_export.json")))
    assert meta["class_names"] == NAMES and meta["image_size"] == 32
    assert next_version(os.path.join(base, "tiny")) == 2
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {SIGNATURE_FLOAT, SIGNATURE_BYTES}
    images, photo, encoded = inputs
    out = loaded.signatures[SIGNATURE_FLOAT](image=tf.constant(images))
    ref = np.asarray(model(images, training=False)["main"])
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)
    order = np.argsort(-ref, axis=1)[:, :3]
    np.testing.assert_array_equal(out["top_k_indices"].numpy(), order)
    assert [n.decode() for n in out["top_k_names"].numpy()[0]] == [NAMES[i] for i in order[0]]
    out_b = loaded.signatures[SIGNATURE_BYTES](image_bytes=tf.constant(encoded[:1]))
    ref_b = np.asarray(model(_expected_bytes_images(photo)[None], training=False)["main"])
    np.testing.assert_allclose(out_b["probabilities"].numpy(), ref_b, atol=1e-5)
    with pytest.raises(FileExistsError):
        export_savedmodel(model, base, name="tiny", version=1, class_names=NAMES)


def test_bad_bytes_raise_and_the_model_keeps_serving(exported, inputs):
    _, path = exported
    _, _, encoded = inputs
    serve = tf.saved_model.load(path).signatures[SIGNATURE_BYTES]
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an encoded JPEG, PNG, GIF, BMP or WebP"):
        serve(image_bytes=tf.constant([encoded[0], b"garbage, not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG"):
        serve(image_bytes=tf.constant([encoded[1][:60]]))  # a truncated JPEG: valid header, broken data
    out = serve(image_bytes=tf.constant(encoded))
    assert out["probabilities"].shape == (2, 10)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    # lossless WebP of the PNG's pixels gives the PNG's probabilities
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(tf.io.decode_png(encoded[0]).numpy()).save(buf, format="WEBP", lossless=True)
    webp = serve(image_bytes=tf.constant([buf.getvalue()]))["probabilities"].numpy()
    np.testing.assert_allclose(webp[0], out["probabilities"].numpy()[0], atol=1e-6)


_CLEAN_LOADER = """
import importlib.abc, importlib.util, json, sys
# no kgooglenet here: drop the editable install's finder and the repository from the path, and block any other copy
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path[:] = [p for p in sys.path if p and not p.startswith({repo!r})]
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kgooglenet" or name.startswith("kgooglenet."):
            raise ImportError("kgooglenet is not installed in this program")
sys.meta_path.insert(0, _Block())
try:
    import kgooglenet
    raise SystemExit("kgooglenet imported")
except ImportError:
    pass
import numpy as np
import tensorflow as tf
data = np.load(sys.argv[1], allow_pickle=False)
loaded = tf.saved_model.load(sys.argv[2])
a = loaded.signatures["serving_default"](image=tf.constant(data["images"]))
b = loaded.signatures["serving_bytes"](image_bytes=tf.constant([bytes(data["png"]), bytes(data["jpg"])]))
np.savez(sys.argv[3], float_probs=a["probabilities"].numpy(), bytes_probs=b["probabilities"].numpy(),
         names=np.char.decode(a["top_k_names"].numpy().astype("S")))
print("kgooglenet" in sys.modules)
"""


def test_savedmodel_loads_with_tensorflow_only(model, exported, inputs, tmp_path):
    _, path = exported
    images, photo, encoded = inputs
    np.savez(tmp_path / "in.npz", images=images, png=np.frombuffer(encoded[0], np.uint8),
             jpg=np.frombuffer(encoded[1], np.uint8))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(_CLEAN_LOADER.format(repo=repo)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "in.npz"), path, str(tmp_path / "out.npz")],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["float_probs"], np.asarray(model(images, training=False)["main"]), atol=1e-5)
    jpg = tf.io.decode_jpeg(encoded[1]).numpy()
    ref = model(np.stack([_expected_bytes_images(photo), _expected_bytes_images(jpg)]), training=False)["main"]
    np.testing.assert_allclose(out["bytes_probs"], np.asarray(ref), atol=1e-5)
    assert out["names"].shape == (3, 3) and set(out["names"].ravel()) <= set(NAMES)


def test_saved_model_cli_lists_signatures(exported):
    _, path = exported
    # the console script when it is on PATH, else the same tool as TensorFlow's module: the test always runs
    cli = shutil.which("saved_model_cli")
    command = [cli] if cli else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([*command, "show", "--dir", path, "--all"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['serving_bytes']", "image_bytes",
                 "top_k_names", "probabilities", "DT_STRING"):
        assert text in proc.stdout


def test_bfloat16_savedmodel(model, tmp_path, inputs):
    images, _, _ = inputs
    path = export_savedmodel(model, str(tmp_path), name="tiny", version=7, dtype="bfloat16", class_names=NAMES)
    assert path.endswith(os.path.join("tiny", "7"))
    probs = tf.saved_model.load(path).signatures[SIGNATURE_FLOAT](image=tf.constant(images))["probabilities"]
    assert probs.dtype == tf.float32
    np.testing.assert_allclose(probs.numpy(), np.asarray(model(images, training=False)["main"]), atol=3e-2)


def test_keras_and_tflite_exports(model, tmp_path, inputs):
    import keras

    images, _, _ = inputs
    ref = np.asarray(model(images, training=False)["main"])
    path = export_keras(model, str(tmp_path / "m.keras"))
    np.testing.assert_allclose(keras.saving.load_model(path)(images), ref, atol=1e-6)
    from kgooglenet.export import tflite_runner

    tfl = export_tflite(model, str(tmp_path / "m.tflite"))
    np.testing.assert_allclose(tflite_runner(tfl, batch_size=3)(images), ref, atol=1e-5)


def test_onnx_export(model, tmp_path, inputs):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from kgooglenet.export import onnx_runner

    images, _, _ = inputs
    ref = np.asarray(model(images, training=False)["main"])
    path = export_onnx(model, str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(onnx_runner(path)(images), ref, atol=1e-5)
    nchw = export_onnx(model, str(tmp_path / "nchw.onnx"), channels_first=True)
    np.testing.assert_allclose(onnx_runner(nchw)(images.transpose(0, 3, 1, 2)), ref, atol=1e-5)


def test_mixed_precision_model_exports_float32(tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trained = GoogLeNet("cifar", num_classes=4, width=0.125, aux_heads=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert trained.get_layer("conv1").compute_dtype == "bfloat16"
    fast = optimize_for_inference(trained)
    assert {layer.compute_dtype for layer in fast.layers} == {"float32"}
    path = export_savedmodel(trained, str(tmp_path), name="mixed")  # verified within bfloat16 tolerance
    x = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    probs = tf.saved_model.load(path).signatures[SIGNATURE_FLOAT](image=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(probs, np.asarray(fast(x)), atol=1e-5)
    np.testing.assert_allclose(probs, np.asarray(trained(x, training=False)["main"]), atol=3e-2)
