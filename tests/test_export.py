"""Tests of kgooglenet.export: SavedModel signatures (also loaded without kgooglenet), bad bytes, .keras, TFLite, ONNX;
exports of a run directory (its classes, its trained size), atomic writes under SIGKILL, OpenCV's DNN at batch 8."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgooglenet import GoogLeNet
from kgooglenet.export import (
    BYTES_EXIF,
    EXPORT_INFO_FILE,
    SIGNATURE_BYTES,
    SIGNATURE_FLOAT,
    export_keras,
    export_onnx,
    export_savedmodel,
    export_tflite,
    next_version,
    optimize_for_inference,
    tflite_interpreter,
)
from kgooglenet.saving import ModelInfo, model_info, save_model
from kgooglenet.train import faults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    assert [layer.name for layer in fast.layers if isinstance(layer, keras.layers.Identity)] == ["pool3", "pool4"]
    assert isinstance(fast.get_layer("avg_pool"), keras.layers.Flatten)  # 5b pools to (B, 1, 1, C)
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
    # the batch is dynamic (shape signature -1), not fixed at 1: batch 4 against the Keras model
    assert list(tflite_interpreter(tfl).get_input_details()[0]["shape_signature"]) == [-1, 32, 32, 3]
    four = np.random.default_rng(4).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(tflite_runner(tfl, batch_size=4)(four), np.asarray(model(four, training=False)["main"]),
                               atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "m.tflite"]  # no temporary file left beside them


def test_onnx_export_in_onnxruntime_and_opencv_at_batch_1_and_8(model, tmp_path):
    """OpenCV's DNN used to fail at batch 2 ("Inconsistent shape for ConcatLayer" at inception_5b: a Concat of
    squeezed (B, C) tensors) and could not import the paper variant's RGB->BGR reversal at all."""
    import cv2

    from kgooglenet.export import onnx_runner

    paper = GoogLeNet("paper", num_classes=5, width=0.125, input_shape=(64, 64, 3))
    for name, net, size, nchw in [("nhwc", model, 32, False), ("nchw", model, 32, True), ("paper", paper, 64, True)]:
        path = export_onnx(net, str(tmp_path / f"{name}.onnx"), channels_first=nchw)
        reader = cv2.dnn.readNetFromONNX(path)
        for batch in (1, 8):
            x = np.random.default_rng(batch).uniform(0, 255, (batch, size, size, 3)).astype("float32")
            ref = net(x, training=False)
            ref = np.asarray(ref["main"] if isinstance(ref, dict) else ref)
            feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if nchw else x
            np.testing.assert_allclose(onnx_runner(path)(feed), ref, atol=1e-5, err_msg=f"ORT {name} batch {batch}")
            reader.setInput(feed)
            got = reader.forward()
            assert got.shape == ref.shape, (name, batch, got.shape)
            np.testing.assert_allclose(got, ref, atol=1e-5, err_msg=f"OpenCV {name} batch {batch}")


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


# ----------------------------------------------------------------------------------------------------------------
# a run directory in, its classes and trained size out; clear errors for missing or odd inputs
# ----------------------------------------------------------------------------------------------------------------
RUN_CLASSES = ("ant", "bee", "zebra")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as training leaves it: model.keras (aux heads, any input size) trained at 40px, 3 classes."""
    keras.utils.set_random_seed(5)
    trained = GoogLeNet("cifar", num_classes=3, width=0.125, aux_heads=True, input_shape=(None, None, 3))
    folder = tmp_path_factory.mktemp("runs") / "flowers"
    info = ModelInfo(class_names=RUN_CLASSES, image_size=40, variant="cifar", width=0.125, aux_heads=True,
                     preprocessing="imagenet", provenance={"epoch": 2})
    save_model(trained, str(folder / "model.keras"), info)
    return str(folder), trained


def test_export_of_a_run_directory_keeps_its_classes_and_trained_size(run_dir, tmp_path):
    folder, trained = run_dir
    path = export_savedmodel(folder, str(tmp_path))
    assert path == str(tmp_path / "flowers" / "1")  # named after the run directory
    meta = json.load(open(os.path.join(path, EXPORT_INFO_FILE)))
    assert meta["class_names"] == list(RUN_CLASSES) and meta["image_size"] == 40  # not 224
    assert meta["signatures"][SIGNATURE_BYTES]["exif"] == BYTES_EXIF and "not applied" in BYTES_EXIF
    assert meta["source"] == folder
    assert {k: meta["model"][k] for k in ("variant", "width", "aux_heads")} == \
        {"variant": "cifar", "width": 0.125, "aux_heads": True}
    loaded = tf.saved_model.load(path)
    spec = loaded.signatures[SIGNATURE_FLOAT].structured_input_signature[1]["image"]
    assert spec.shape.as_list() == [None, 40, 40, 3]
    x = np.random.default_rng(6).uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    out = loaded.signatures[SIGNATURE_FLOAT](image=tf.constant(x))
    np.testing.assert_allclose(out["probabilities"].numpy(), np.asarray(trained(x, training=False)["main"]), atol=1e-5)
    assert set(n.decode() for n in out["top_k_names"].numpy().ravel()) <= set(RUN_CLASSES)
    # the other formats take the run directory too, at its trained size; model.keras stays self-describing
    keras_file = export_keras(folder, str(tmp_path / "exports" / "model.keras"))
    assert model_info(keras_file).class_names == RUN_CLASSES
    tfl = export_tflite(folder, str(tmp_path / "exports" / "model.tflite"), verify=False)
    assert list(tflite_interpreter(tfl).get_input_details()[0]["shape_signature"]) == [-1, 40, 40, 3]


def test_missing_or_odd_inputs_are_clear_errors(run_dir, tmp_path):
    folder, trained = run_dir
    with pytest.raises(FileNotFoundError, match="no model at .*nowhere.*run directory.*imagenet-torchvision"):
        export_savedmodel(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_run.*without model.keras"):
        export_savedmodel(str(tmp_path / "empty_run"), str(tmp_path / "out"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt.*not a .keras model file"):
        export_savedmodel(str(tmp_path / "notes.txt"), str(tmp_path / "out"))
    trained.save_weights(str(tmp_path / "best.weights.h5"))  # a checkpoint: weights only, no sidecar
    with pytest.raises(ValueError, match="best.weights.h5.*weights only.*model.keras"):
        export_savedmodel(str(tmp_path / "best.weights.h5"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="`model` must be a keras.Model"):
        export_savedmodel(42, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "nowhere")


# ----------------------------------------------------------------------------------------------------------------
# SIGKILL mid-write: no half-written version directory or file, and a rerun gets the same version
# ----------------------------------------------------------------------------------------------------------------
_EXPORT_SCRIPT = """
import sys
from kgooglenet.export import export_keras, export_savedmodel
kind, source, out = sys.argv[1:4]
if kind == "savedmodel":
    print(export_savedmodel(source, out, verify=False))
else:
    print(export_keras(source, out, verify=False))
"""


def _run_export(kind, source, out, kill_at=None):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(faults.ENV, None)
    if kill_at:
        env[faults.ENV] = f"{kill_at}:1"  # the first time the export reaches that point
    return subprocess.run([sys.executable, "-c", _EXPORT_SCRIPT, kind, source, out], env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_export_killed_midway_leaves_no_version_and_a_rerun_takes_its_number(run_dir, tmp_path):
    folder, _ = run_dir
    base = tmp_path / "saved_models"
    export_savedmodel(folder, str(base), verify=False)  # version 1 exists
    killed = _run_export("savedmodel", folder, str(base), kill_at="export_savedmodel")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    entries = os.listdir(base / "flowers")
    assert sorted(e for e in entries if e.isdigit()) == ["1"]  # TF Serving sees no version 2
    assert [e for e in entries if not e.isdigit()] != [], "the kill came after the write started"
    again = _run_export("savedmodel", folder, str(base))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip().splitlines()[-1] == str(base / "flowers" / "2")
    assert sorted(os.listdir(base / "flowers")) == ["1", "2"]  # the killed export's temporary directory is gone
    assert os.path.isfile(base / "flowers" / "2" / "saved_model.pb")
    assert json.load(open(base / "flowers" / "2" / EXPORT_INFO_FILE))["image_size"] == 40

    target = tmp_path / "exports" / "model.keras"
    killed = _run_export("keras", folder, str(target), kill_at="export_file")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not target.exists()  # no half-written model.keras (only a hidden temporary file)
    again = _run_export("keras", folder, str(target))
    assert again.returncode == 0, again.stderr[-2000:]
    assert model_info(str(target)).class_names == RUN_CLASSES


# ----------------------------------------------------------------------------------------------------------------
# layering: export sits below predict and evaluate
# ----------------------------------------------------------------------------------------------------------------
def test_export_imports_neither_predict_nor_evaluate():
    tree = ast.parse(open(os.path.join(ROOT, "kgooglenet", "export.py")).read())
    imported = {node.module: [a.name for a in node.names] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    imported.update({a.name: [] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names})
    assert not [m for m in imported if m.startswith("kgooglenet.predict")]
    # the only evaluate name left is decode_and_crop's center_crop, which moves to kgooglenet/data/image.py
    assert {m: n for m, n in imported.items() if m.startswith("kgooglenet.evaluate")} in (
        {}, {"kgooglenet.evaluate.crops": ["center_crop"]})
