"""kgooglenet.quantize.export_int8: an int8 ONNX file of a trained digits model that keeps its accuracy, a self-check
on held-out images that never overlap the calibration ones, and clear errors for bad calibration input."""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from harness import load_recipe

from kgooglenet import GoogLeNet
from kgooglenet.data import AugmentConfig, DataConfig, make_dataset
from kgooglenet.export import onnx_runner, openvino_runner
from kgooglenet.quantize import (
    SIDECAR_SUFFIX,
    export_int8,
    export_int8_for_recipe,
    int8_report,
)

DIGITS = DataConfig(source="digits", image_size=32, batch_size=32, seed=0)


def _hashes(images):
    return {hashlib.sha1(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest() for x in images}


def _split(split):
    ds = make_dataset(DIGITS, split, training=False)
    xs, ys = zip(*ds.as_numpy_iterator())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from kgooglenet.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    result = train(TrainConfig(data=DIGITS, variant="cifar", width=0.25, aux_heads=False, epochs=3,
                               learning_rate=0.05, out_dir=str(out), tensorboard=False, plots=False, verbose=0))
    result.model.run_dir = str(out)
    return result.model


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("int8") / "digits_int8.onnx")
    return path, export_int8(trained, path, calibration=DIGITS, num_calibration=256)


def test_int8_digits_model_keeps_its_accuracy(trained, exported):
    path, report = exported
    x, y = _split("val")
    assert report.holdout_images == len(x) > 300 and report.calibration_images == 256
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    int8 = np.concatenate([openvino_runner(path)(nchw[i:i + 64]) for i in range(0, len(x), 64)])  # the served runtime
    ort = np.concatenate([onnx_runner(path)(nchw[i:i + 64]) for i in range(0, len(x), 64)])
    assert np.mean(ort.argmax(1) == int8.argmax(1)) >= 0.99  # a standard QDQ file: ONNX Runtime agrees
    float32 = trained.predict(x, verbose=0)
    acc_float, acc_int8 = np.mean(float32.argmax(1) == y), np.mean(int8.argmax(1) == y)
    agreement = np.mean(int8.argmax(1) == float32.argmax(1))
    print(f"float32 {acc_float:.4f}, int8 {acc_int8:.4f}, agreement {agreement:.4f}")
    assert acc_float > 0.8  # a model that learned something: a fair test of the quantization
    assert abs(acc_int8 - acc_float) <= 0.005
    assert agreement >= 0.99
    # the report and its sidecar say what was measured
    assert report.agreement == pytest.approx(agreement) and report.int8_accuracy == pytest.approx(acc_int8)
    assert report.float32_accuracy == pytest.approx(acc_float, abs=1e-6)
    stored = int8_report(path)
    with open(path + SIDECAR_SUFFIX) as f:
        assert stored == json.load(f)
    assert stored["agreement"] == pytest.approx(agreement)
    assert stored["calibration_images"] == 256 and stored["class_names"] == [str(i) for i in range(10)]
    assert "val split" in stored["holdout_source"] and "train split" in stored["calibration_source"]
    assert not [f for f in os.listdir(os.path.dirname(path)) if ".tmp" in f]  # atomic writes left no temporaries
    # int8 for real: per-channel int8 weights in QDQ form around the convolutions
    import onnx

    graph = onnx.load(path).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("Conv") > 50
    scales = {i.name: i for i in graph.initializer}
    conv_weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and
                      scales.get(n.input[0]) is not None and scales[n.input[0]].data_type == onnx.TensorProto.INT8
                      and len(scales[n.input[0]].dims) == 4]
    assert conv_weight_dq and all(len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1
                                  for n in conv_weight_dq)  # one scale per output channel


def test_calibration_never_overlaps_the_agreement_set(exported):
    _, report = exported
    train_x, _ = _split("train")
    val_x, _ = _split("val")
    train_h, val_h = _hashes(train_x), _hashes(val_x)
    assert len(report.calibration_fingerprints) == 256 and report.calibration_fingerprints <= train_h
    assert report.holdout_fingerprints == val_h
    assert not report.calibration_fingerprints & report.holdout_fingerprints
    assert not report.calibration_fingerprints & val_h


def test_array_calibration_holds_out_the_rest_and_refuses_overlap(trained, tmp_path):
    x, y = _split("val")
    path = str(tmp_path / "a.onnx")
    report = export_int8(trained, path, calibration=x[:200].astype(np.uint8), num_calibration=64, num_holdout=100,
                         channels_first=False, min_agreement=None, verbose=False)
    assert report.calibration_images == 64 and report.holdout_images == 100 and report.int8_accuracy is None
    assert report.calibration_fingerprints == _hashes(x[:64].astype(np.uint8))
    assert report.holdout_fingerprints == _hashes(x[64:164].astype(np.uint8))
    assert onnx_runner(path)(x[:2]).shape == (2, 10)  # NHWC input when channels_first=False
    with pytest.raises(ValueError, match=r"3 of the 40 held-out images are also calibration images"):
        export_int8(trained, str(tmp_path / "b.onnx"), calibration=x[:40], holdout=x[37:77], verbose=False)
    assert not os.path.exists(tmp_path / "b.onnx")
    # an agreement below min_agreement writes nothing (a labelled dataset holdout also gives accuracies)
    holdout = tf.data.Dataset.from_tensor_slices((x[200:260], y[200:260])).batch(16)
    with pytest.raises(ValueError, match=r"below min_agreement=1.01; nothing written"):
        export_int8(trained, str(tmp_path / "c.onnx"), calibration=x[:64], holdout=holdout, min_agreement=1.01,
                    verbose=False)
    assert not os.path.exists(tmp_path / "c.onnx") and not os.path.exists(tmp_path / ("c.onnx" + SIDECAR_SUFFIX))


def test_recipe_int8_switch_calibrates_on_the_runs_data(trained, tmp_path, capsys):
    module = load_recipe("export_savedmodel")
    out = module.main(["--model", trained.run_dir, "--export-dir", str(tmp_path), "--no-extras", "--int8"])
    name = os.path.basename(trained.run_dir)  # the export is named after the run directory
    assert out["int8"] == str(tmp_path / name / "exports" / "model_int8.onnx")
    report = int8_report(out["int8"])
    assert report["agreement"] >= 0.99 and "DataConfig(source='digits') val split" in report["holdout_source"]
    assert "top-1 agreement with float32" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"--int8 needs calibration images: pass --int8 FOLDER"):
        export_int8_for_recipe(trained, str(tmp_path), None, str(tmp_path / "no_run"))


@pytest.fixture(scope="module")
def untrained():
    return GoogLeNet("cifar", num_classes=10, width=0.125, input_shape=(32, 32, 3))


def _images(n=64, size=32, channels=3, dtype="float32", high=255.0):
    return np.random.default_rng(0).uniform(0, high, (n, size, size, channels)).astype(dtype)


@pytest.mark.parametrize("calibration, match", [
    (np.zeros((0, 32, 32, 3), np.float32), r"calibration: no images; expected at least 32 RGB images of shape \(32"),
    (tf.data.Dataset.from_tensor_slices(np.zeros((0, 32, 32, 3), np.float32)), r"calibration: no images"),
    (_images(size=28), r"calibration: images of shape \(28, 28, 3\), expected RGB images of shape \(32, 32, 3\)"),
    (_images(channels=1), r"images of shape \(32, 32, 1\), expected"),
    (_images()[..., 0], r"images of shape \(64, 32, 32\), expected"),
    (_images().astype(np.int64), r"calibration: dtype int64, expected RGB .* uint8 or float in \[0, 255\]"),
    (_images(high=1.0), r"look scaled to \[0, 1\]; expected .*multiply by 255"),
    (_images() / 127.5 - 1.0, r"pixel values in \[-1, 1\], expected .*no mean/std"),
    (np.full((64, 32, 32, 3), np.nan, np.float32), r"NaN or infinite"),
    (_images(n=40), r"calibration: 40 images, expected at least 64 when no holdout= is given"),
    (DataConfig(source="digits", image_size=24), r"DataConfig\(image_size=24\) but the model takes 32px images"),
    (DataConfig(augment=AugmentConfig(mean=(127.5,) * 3, std=(64.0,) * 3)), r"DataConfig normalizes its batches"),
    ("images/", r"received the path 'images/' \(for a folder .* DataConfig\(source='folder'"),
])
def test_bad_calibration_input_names_what_was_expected(untrained, tmp_path, calibration, match):
    with pytest.raises(ValueError, match=match):
        export_int8(untrained, str(tmp_path / "m.onnx"), calibration=calibration, verbose=False)
    assert not os.listdir(tmp_path)


def test_bad_holdout_and_options(untrained, tmp_path):
    with pytest.raises(ValueError, match=r"holdout .*: images of shape \(16, 16, 3\)"):
        export_int8(untrained, str(tmp_path / "m.onnx"), calibration=_images(), holdout=_images(size=16))
    with pytest.raises(ValueError, match=r"calibration: 10 images, expected at least 32"):
        export_int8(untrained, str(tmp_path / "m.onnx"), calibration=_images(n=10), holdout=_images())
    with pytest.raises(ValueError, match=r"holdout: 64 images but 3 labels"):
        export_int8(untrained, str(tmp_path / "m.onnx"), calibration=_images(), holdout=(_images(), np.arange(3)))
    with pytest.raises(ValueError, match=r"DataConfig has no val split \(val_split=0.0\) for the held-out"):
        export_int8(untrained, str(tmp_path / "m.onnx"), calibration=DataConfig(val_split=0.0))
    with pytest.raises(ValueError, match="calibrate_method"):
        export_int8(untrained, str(tmp_path / "m.onnx"), calibration=_images(), calibrate_method="kl")
    with pytest.raises(ValueError, match=r"must end with \.onnx"):
        export_int8(untrained, str(tmp_path / "m.tflite"), calibration=_images())
