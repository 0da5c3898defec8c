"""The evaluation and export recipes run as documented.

recipes/evaluate_imagenet.py on a stand-in for the ILSVRC2012 validation folder (1000 WordNet-id subfolders of small
non-square photos) with a random-weight "imagenet-torchvision" set installed under a temporary KERAS_HOME gives what
`evaluate` gives on the same files; recipes/export_savedmodel.py writes the SavedModel and the three other formats."""

import json
import os

import numpy as np
import pytest
import weights_helpers
from harness import load_recipe

from kgooglenet import GoogLeNet, inference_model
from kgooglenet.evaluate import evaluate, image_files_dataset
from kgooglenet.weights.cache import URL_ENV
from kgooglenet.weights.conversion import save_converted
from kgooglenet.weights.imagenet import class_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("ILSVRC2012_val")
    rng = np.random.default_rng(0)
    for k, entry in enumerate(class_index()):
        os.makedirs(root / entry.wnid)
        size = (40, 30) if k % 2 else (30, 40)  # landscape and portrait
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / entry.wnid / f"ILSVRC2012_val_{k:08d}.JPEG", quality=90)
    return str(root)


def test_evaluate_imagenet_recipe_on_a_stand_in_folder(imagenet_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv(URL_ENV, weights_helpers.closed_port_url())  # imagenet-caffe is not installed: never the internet
    model = GoogLeNet("bn", preprocessing="torchvision")  # random weights in torchvision's layout
    out = str(tmp_path / "googlenet_torchvision.weights.h5")
    save_converted(model, out, source="torchvision", input_path=__file__, variant="bn", preprocessing="torchvision",
                   num_classes=1000, aux_heads=False, install_name="imagenet-torchvision")

    out_dir = str(tmp_path / "runs")
    results = load_recipe("evaluate_imagenet").main(["--folder", imagenet_folder, "--weights", "imagenet-torchvision", "imagenet-caffe",
                           "--crops", "1", "10", "--limit", "3", "--out-dir", out_dir])
    printed = capsys.readouterr().out
    assert "skipping imagenet-caffe" in printed  # not installed: reported, the others still run
    assert [(r.name, r.crops, r.num_examples) for r in results] == [
        ("imagenet-torchvision", 1, 3), ("imagenet-torchvision", 10, 3)]
    assert results[0].class_names[1] == class_index()[1].name
    with open(os.path.join(out_dir, "imagenet-torchvision_x10", "metrics.json")) as f:
        assert json.load(f)["num_examples"] == 3

    # the same numbers as evaluating the first three files (classes 0, 1, 2) directly
    files = [os.path.join(imagenet_folder, class_index()[k].wnid, f"ILSVRC2012_val_{k:08d}.JPEG") for k in range(3)]
    reference = inference_model(model)
    for result in results:
        direct = evaluate(reference, image_files_dataset(files, [0, 1, 2]), crops=result.crops, progress=False)
        np.testing.assert_array_equal(result.confusion, direct.confusion)
        assert result.top5 == direct.top5


def test_export_recipe_writes_every_format_from_a_run_directory(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    from kgooglenet.saving import ModelInfo, model_info, save_model

    # a 3-class run trained at 40px: the recipe gets the directory and nothing else
    model = GoogLeNet("cifar", num_classes=3, width=0.125, aux_heads=True, input_shape=(None, None, 3))
    classes = ("ant", "bee", "zebra")
    save_model(model, tmp_path / "runs" / "insects" / "model.keras",
               ModelInfo(class_names=classes, image_size=40, variant="cifar", width=0.125, aux_heads=True,
                         preprocessing="imagenet"))
    out = load_recipe("export_savedmodel").main(["--run-dir", str(tmp_path / "runs" / "insects"), "--export-dir",
                                            str(tmp_path / "saved_models"), "--top-k", "3", "--onnx-nchw"])
    assert out["saved_model"] == str(tmp_path / "saved_models" / "insects" / "1")
    with open(os.path.join(out["saved_model"], "kgooglenet_export.json")) as f:
        meta = json.load(f)
    assert meta["class_names"] == list(classes) and meta["image_size"] == 40
    assert set(tf.saved_model.load(out["saved_model"]).signatures) == {"serving_default", "serving_bytes"}
    for kind in ("keras", "tflite", "onnx"):
        assert os.path.getsize(out[kind]) > 100_000, kind
    assert model_info(out["keras"]).class_names == classes
    session = ort.InferenceSession(out["onnx"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 40, 40]  # --onnx-nchw, the trained size
    assert sorted(out["top"]) == sorted(classes)


def test_export_recipe_bad_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_recipe("export_savedmodel").main(["--model", str(tmp_path / "nowhere"), "--export-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--model: no model at" in err and "nowhere" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []
