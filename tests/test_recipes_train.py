"""The training recipes run as documented: train.py --config FILE, train_folder.py (preparer + training),
finetune.py (weights for another class count), and the clear errors of train_cifar10.py / train_multiworker.py."""

import importlib.util
import os

import numpy as np
import pytest

from kgooglenet import GoogLeNet
from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--width", "0.125", "--epochs", "1", "--steps-per-epoch", "2", "--validation-steps", "1", "--verbose", "0"]


def recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipes_{name}", os.path.join(ROOT, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_recipe_runs_a_config_file(tmp_path):
    config_path = tmp_path / "best_config.json"
    TrainConfig(data=DataConfig(batch_size=16, seed=0), width=0.125, aux_heads=False, epochs=1, steps_per_epoch=2,
                validation_steps=1, learning_rate=0.02, tensorboard=False, verbose=0).to_json(str(config_path))
    result = recipe("train").main(["--config", str(config_path), "--out-dir", str(tmp_path / "run")])
    assert result.epochs_run == 1 and result.num_classes == 10
    saved = TrainConfig.from_json(result.config_path)
    assert (saved.learning_rate, saved.aux_heads, saved.out_dir) == (0.02, False, str(tmp_path / "run"))
    assert set(result.history) >= {"loss", "accuracy", "val_accuracy", "learning_rate"}


def test_train_folder_recipe_prepares_then_trains(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog", "owl")):
        os.makedirs(tmp_path / "images" / name)
        for i in range(6):
            pixels = np.clip(rng.normal(60 + 70 * c, 30, (40, 48, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{i}.png")
    (tmp_path / "images" / "dog" / "broken.jpg").write_bytes(b"not an image")
    result = recipe("train_folder").main([
        str(tmp_path / "images"), "--prepared", str(tmp_path / "prepared"), "--image-size", "32",
        "--variant", "cifar", "--batch-size", "4", "--no-aux", "--out-dir", str(tmp_path / "run"), *QUICK])
    assert result.class_names == ["cat", "dog", "owl"] and result.num_classes == 3
    assert os.path.isfile(tmp_path / "prepared" / "categories.csv") and result.epochs_run == 1


def test_finetune_recipe_replaces_the_heads(tmp_path):
    weights = str(tmp_path / "source.weights.h5")
    GoogLeNet("cifar", num_classes=4, aux_heads=True, width=0.125).save_weights(weights)
    result = recipe("finetune").main([
        "--weights", weights, "--variant", "cifar", "--freeze-until", "inception_3b", "--freeze-bn",
        "--out-dir", str(tmp_path / "ft"), *QUICK])
    assert result.num_classes == 10
    assert {k: v.shape[-1] for k, v in result.model.output.items()} == {"main": 10, "aux1": 10, "aux2": 10}
    assert not result.model.get_layer("inception_3b").trainable and result.model.get_layer("inception_4a").trainable
    saved = TrainConfig.from_json(result.config_path)
    assert saved.lr_mult == {"classifier": 10.0, "aux1_head": 10.0, "aux2_head": 10.0} and saved.freeze_bn


def test_cifar10_recipe_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no prepared TFDS cifar10.*tfds build cifar10"):
        recipe("train_cifar10").main(["--data-dir", str(tmp_path)])


def test_multiworker_recipe_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        recipe("train_multiworker").main([])
