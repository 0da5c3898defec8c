"""keras.applications conventions, for the three variants: every check of Keras' own applications_test.py
(../shared/peers/keras_applications_test.py: variable input channels without the top, a custom input shape, an
input tensor, pooling, classifier_activation, prediction + decode_predictions on a photo, serialization) under
channels_last and channels_first, at tiny width; plus Keras' file itself, adapted only in its model list and
weights=None, run against our model.

channels_first is computed, not refused: the model takes (channels, height, width) inputs and transposes them (and a
spatial output) so that it equals the channels_last model; test_channels_first_equals_channels_last checks the values.
"""

import os
import re
import shutil
import subprocess
import sys
from xml.etree import ElementTree  # our own pytest run's report, not untrusted input

import keras
import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

import kgooglenet
from kgooglenet import GoogLeNet, specs

VARIANTS = specs.VARIANT_NAMES
WIDTH = 0.125
FORMATS = ("channels_last", "channels_first")
PEER_TEST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers", "keras_applications_test.py")


def _features(width=WIDTH):
    """Channels of inception_5b at `width` (1024 at width 1)."""
    row = specs.INCEPTION_ROWS[-1]
    return sum(specs.scaled(c, width) for c in (row.conv1x1, row.conv3x3, row.conv5x5, row.pool_proj))


@pytest.fixture(params=FORMATS)
def data_format(request):
    before = keras.config.image_data_format()
    keras.config.set_image_data_format(request.param)
    yield request.param
    keras.config.set_image_data_format(before)


def _shape(data_format, h, w, c):
    return (c, h, w) if data_format == "channels_first" else (h, w, c)


@pytest.mark.parametrize("variant", VARIANTS)
def test_notop_variable_input_channels(variant, data_format):
    for channels in (1, 4):
        model = GoogLeNet(variant, include_top=False, width=WIDTH, input_shape=_shape(data_format, None, None, channels))
        assert list(model.outputs[0].shape) == [None, *_shape(data_format, None, None, _features())]
        assert not any(layer.name == "preprocess" for layer in model.layers)  # "auto": nothing to preprocess
    with pytest.raises(ValueError, match="has 1 channels, but the model preprocesses .*pass preprocessing=None"):
        GoogLeNet(variant, include_top=False, width=WIDTH, preprocessing="imagenet",
                  input_shape=_shape(data_format, None, None, 1))  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_notop_custom_input_shape(variant, data_format):
    model = GoogLeNet(variant, include_top=False, width=WIDTH, input_shape=_shape(data_format, 123, 123, 3))
    h, w = specs.feature_map_sizes(variant, 123, 123)["inception_5b"]
    assert tuple(model.outputs[0].shape[1:]) == _shape(data_format, h, w, _features())


@pytest.mark.parametrize("variant", VARIANTS)
def test_notop_custom_input_tensor(variant, data_format):
    source = keras.Input(_shape(data_format, 200, 200, 4), name="custom_input")
    tensor = keras.layers.Conv2D(3, 2, strides=2)(source)  # follows the global data format: 100x100x3
    model = GoogLeNet(variant, include_top=False, width=WIDTH, input_tensor=tensor)
    assert model.inputs[0] is source
    channel_axis = 1 if data_format == "channels_first" else -1
    assert model.outputs[0].shape[channel_axis] == _features()
    x = np.random.default_rng(0).uniform(0, 255, (1, *_shape(data_format, 200, 200, 4))).astype("float32")
    if data_format == "channels_last":  # TF's CPU Conv2D (the test's own layer) has no channels_first kernel
        assert model.predict(x, verbose=0).shape[channel_axis] == _features()
    with pytest.raises(ValueError, match="differs from the shape of `input_tensor`"):
        GoogLeNet(variant, include_top=False, width=WIDTH, input_tensor=tensor, input_shape=(64, 64, 3))


@pytest.mark.parametrize("variant", VARIANTS)
def test_pooling(variant, data_format):
    for pooling in ("max", "avg"):
        model = GoogLeNet(variant, include_top=False, pooling=pooling, width=WIDTH)
        assert list(model.outputs[0].shape) == [None, _features()]
    with pytest.raises(ValueError, match="`pooling` must be 'avg', 'max' or None, received pooling='min'"):
        GoogLeNet(variant, include_top=False, pooling="min", width=WIDTH)


@pytest.mark.parametrize("variant", VARIANTS)
def test_classifier_activation_and_classes(variant, tmp_path):
    model = GoogLeNet(variant, include_top=True, classifier_activation="softmax", width=WIDTH)
    assert model.layers[-1].activation.__name__ == "softmax"
    logits = GoogLeNet(variant, classifier_activation=None, width=WIDTH, classes=7)
    assert logits.layers[-1].activation.__name__ == "linear" and logits.output.shape == (None, 7)
    assert GoogLeNet(variant, width=WIDTH, classes=7, num_classes=7).output.shape == (None, 7)
    with pytest.raises(ValueError, match="`classes` is another name for `num_classes`: pass one of them"):
        GoogLeNet(variant, width=WIDTH, classes=7, num_classes=8)
    with pytest.raises(ValueError, match="classifier_activation='no-such'"):
        GoogLeNet(variant, width=WIDTH, classifier_activation="no-such")
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    with pytest.raises(ValueError, match="Only None and 'softmax' are allowed .*received classifier_activation='relu'"):
        GoogLeNet(variant, width=WIDTH, weights=path, classifier_activation="relu")
    sigmoid = GoogLeNet(variant, width=WIDTH, weights=path, include_top=False, classifier_activation="sigmoid")
    assert sigmoid.output.shape[-1] == _features()  # without the top the activation is unused, as in Keras


def _photo(size):
    image = Image.open(sklearn.datasets.load_sample_images().filenames[0]).convert("RGB")  # china.jpg
    return np.asarray(image.resize((size, size), Image.BILINEAR), "float32")[None]


@pytest.mark.parametrize("variant", VARIANTS)
def test_predict_decode_and_serialize(variant):
    model = GoogLeNet(variant, width=WIDTH)
    x = _photo(specs.VARIANTS[variant].default_size)
    assert kgooglenet.preprocess_input(x) is x  # the identity: preprocessing lives in the model
    preds = model.predict(kgooglenet.preprocess_input(x), verbose=0)
    assert preds.shape == (1, 1000)
    np.testing.assert_allclose(preds.sum(), 1.0, rtol=1e-5)
    decoded = kgooglenet.decode_predictions(preds, top=5)[0]
    assert [d[2] for d in decoded] == sorted(preds[0], reverse=True)[:5]
    best = int(np.argmax(preds[0]))
    assert decoded[0][:2] == (kgooglenet.weights.imagenet.CLASS_INDEX[best].wnid,
                              kgooglenet.weights.imagenet.CLASS_INDEX[best].name)  # fmt: skip
    config = keras.saving.serialize_keras_object(model)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert len(rebuilt.weights) == len(model.weights)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), preds, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", VARIANTS)
def test_channels_first_equals_channels_last(variant, tmp_path):
    size = specs.VARIANTS[variant].default_size
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    last = GoogLeNet(variant, include_top=False, width=WIDTH)
    keras.config.set_image_data_format("channels_first")
    try:
        first = GoogLeNet(variant, include_top=False, width=WIDTH)
        first.set_weights(last.get_weights())
        assert first.input_shape == (None, 3, size, size)
        got = first.predict(x.transpose(0, 3, 1, 2), verbose=0)
        path = tmp_path / "first.keras"
        first.save(path)
    finally:
        keras.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), last.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    reloaded = keras.saving.load_model(path)  # loads under channels_last and still takes channels-first input
    np.testing.assert_allclose(reloaded.predict(x.transpose(0, 3, 1, 2), verbose=0), got, rtol=1e-5, atol=1e-5)


def test_keras_file_needs_only_import_kgooglenet_in_a_fresh_process(tmp_path):
    """What the README says: `keras.saving.load_model` reads our .keras files once `import kgooglenet` registered the
    layers (Keras imports only its own packages when it deserializes); without that import it cannot."""
    path = str(tmp_path / "m.keras")
    GoogLeNet("cifar", num_classes=3, width=WIDTH).save(path)
    load = f"import keras, numpy as np; m = keras.saving.load_model({path!r}); print(m(np.zeros((1, 32, 32, 3))).shape)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with_import = subprocess.run([sys.executable, "-c", "import kgooglenet; " + load], env=env, capture_output=True,
                                 text=True, timeout=300)  # fmt: skip
    assert with_import.returncode == 0, with_import.stderr[-2000:]
    assert with_import.stdout.strip().endswith("(1, 3)")
    without = subprocess.run([sys.executable, "-c", load], env=env, capture_output=True, text=True, timeout=300)
    assert without.returncode != 0 and "kgooglenet>" in without.stderr


# ------------------------------------------------------------------------------------ Keras' own file, adapted

# The only changes to Keras' file: this model list (our three variants at width 0.25, kgooglenet as the module
# holding preprocess_input/decode_predictions) and weights="imagenet" -> weights=None (no network in tests).
PEER_WIDTH = 0.25
MODEL_LIST = f'''
import functools as _functools

import kgooglenet


def _variant(variant):
    app = _functools.partial(kgooglenet.GoogLeNet, variant, width={PEER_WIDTH})
    app.__name__ = "GoogLeNet_" + variant
    return app


MODEL_LIST = [(_variant(v), {_features(PEER_WIDTH)}, kgooglenet) for v in {VARIANTS!r}]
'''


def test_keras_applications_test_passes_against_our_model(tmp_path):
    source = open(PEER_TEST).read()
    adapted, count = re.subn(r"\nMODEL_LIST = \[\n.*?\n\]\n", "\n" + MODEL_LIST, source, flags=re.S)
    assert count == 1
    adapted = adapted.replace('weights="imagenet"', "weights=None")
    (tmp_path / "test_keras_applications.py").write_text(adapted)
    # The test reads its photo through keras.utils.get_file: a file in KERAS_HOME/datasets means no download.
    (tmp_path / "keras_home" / "datasets").mkdir(parents=True)
    shutil.copy(sklearn.datasets.load_sample_images().filenames[0], tmp_path / "keras_home" / "datasets" / "elephant.jpg")
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home"), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--junitxml=report.xml",
         "test_keras_applications.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    cases = ElementTree.parse(tmp_path / "report.xml").getroot().iter("testcase")
    outcome = {}
    for case in cases:
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        outcome[case.get("name")] = (
            "skipped" if skipped is not None else "passed" if problem is None else problem.get("message", "")
        )
    # 36 tests: 3 variants x 2 data formats x 6 tests. Keras itself skips test_application_base under channels_first
    # on a CPU. test_application_base under channels_last instantiates, predicts and decodes, then asserts that
    # "African_elephant" is in the top 3, which random weights (weights=None) cannot give: those 3 fail at exactly
    # that assertion and at nothing else; every other test passes.
    assert len(outcome) == 36, out.stdout[-3000:]
    base = {f"test_application_base_GoogLeNet_{v}_{f}": f for v in VARIANTS for f in FORMATS}
    for name, result in outcome.items():
        if base.get(name) == "channels_first":
            assert result == "skipped", (name, result)
        elif name in base:
            assert result.startswith("AssertionError: 'African_elephant' not found in"), (name, result)
        else:
            assert result == "passed", (name, result, out.stdout[-3000:])
