"""TrainConfig: JSON round trip through a file, validation errors, the recipe flags, schedules and callbacks."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from kgooglenet.data import AlbumentationsSpec, AugmentConfig, DataConfig
from kgooglenet.train import TrainConfig
from kgooglenet.train import callbacks as cb
from kgooglenet.train.cli import add_train_flags, apply_flags
from kgooglenet.train.run import RunDir
from kgooglenet.train.optim import Crossentropy, lr_multiplier, make_schedule


def test_json_file_round_trip(tmp_path):
    config = TrainConfig(
        data=DataConfig(batch_size=16, augment=AugmentConfig.cifar(scale=(0.5, 1.0)), seed=3),
        width=0.5, lr_mult={"classifier": 10, "aux1_head/fc": 0}, schedule="step", precision="mixed_bfloat16",
        adversarial=True, fgsm_epsilon=4.0, freeze_until="inception_4e",
    )
    path = tmp_path / "sub" / "config.json"
    text = config.to_json(str(path))
    assert json.loads(path.read_text()) == json.loads(text)
    loaded = TrainConfig.from_json(str(path))
    assert loaded == config
    assert isinstance(loaded.data.augment, AugmentConfig) and loaded.data.augment.scale == (0.5, 1.0)
    assert loaded.lr_mult == {"classifier": 10.0, "aux1_head/fc": 0.0}
    # albumentations specs survive too, and a JSON string works as well as a file
    alb = dataclasses.replace(config, data=DataConfig(augment=AlbumentationsSpec([{"HorizontalFlip": {"p": 0.5}}])))
    assert TrainConfig.from_json(alb.to_json()).data.augment == alb.data.augment


def test_bad_values_raise_with_the_field_name(tmp_path):
    with pytest.raises(ValueError, match="TrainConfig.optimizer.*'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="TrainConfig.precision"):
        TrainConfig(precision="float16")
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"unknown keys \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(FileNotFoundError, match="no config file"):
        TrainConfig.from_json(str(tmp_path / "missing.json"))
    arrays = TrainConfig(data=DataConfig(source="arrays", train_arrays=(np.zeros((4, 8, 8)), np.zeros(4))))
    with pytest.raises(ValueError, match="in-memory arrays"):
        arrays.to_json()


def test_recipe_flags_override_the_config_file(tmp_path):
    import argparse

    path = tmp_path / "c.json"
    TrainConfig(width=0.5, epochs=7, learning_rate=0.2).to_json(str(path))
    args = add_train_flags(argparse.ArgumentParser()).parse_args(
        ["--config", str(path), "--epochs", "2", "--batch-size", "8", "--no-aux", "--fresh"])
    config = apply_flags(TrainConfig(), args)
    assert (config.width, config.epochs, config.learning_rate) == (0.5, 2, 0.2)
    assert (config.data.batch_size, config.aux_heads, config.resume) == (8, False, False)


def test_schedules():
    lr = lambda config, step: float(make_schedule(config, steps_per_epoch=10)(step))  # noqa: E731
    step = TrainConfig(schedule="step", learning_rate=0.1, epochs=40)  # 4% every 8 epochs
    assert [round(lr(step, s), 6) for s in (0, 79, 80, 160)] == [0.1, 0.1, 0.096, round(0.1 * 0.96**2, 6)]
    poly = TrainConfig(schedule="poly", learning_rate=0.1, epochs=10, poly_power=0.5)
    assert lr(poly, 50) == pytest.approx(0.1 * 0.5**0.5, rel=1e-5) and lr(poly, 100) == pytest.approx(0.0, abs=1e-7)
    cosine = TrainConfig(schedule="cosine", learning_rate=0.1, epochs=11, warmup_epochs=1, min_learning_rate=0.001)
    assert lr(cosine, 0) == pytest.approx(0.01) and lr(cosine, 9) == pytest.approx(0.1)
    assert lr(cosine, 60) == pytest.approx(0.001 + 0.099 * 0.5, rel=1e-4) and lr(cosine, 110) == pytest.approx(0.001)
    assert make_schedule(TrainConfig(schedule="plateau", learning_rate=0.1), 10, multiplier=10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        make_schedule(TrainConfig(schedule="plateau", warmup_epochs=1), 10)


def test_lr_multiplier_matches_layer_paths():
    mult = {"classifier": 10.0, "aux1_head": 5.0, "aux1_head/fc": 0.0}
    assert lr_multiplier("classifier/kernel", mult) == 10
    assert lr_multiplier("aux1_head/conv/conv/kernel", mult) == 5
    assert lr_multiplier("aux1_head/fc/kernel", mult) == 0  # the longest matching key wins
    assert lr_multiplier("classifier_2/kernel", mult) == 1  # a prefix must end at a "/"


def test_crossentropy_sparse_onehot_and_smoothing():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    y = np.array([0, 2])
    expected = -np.mean(np.log([0.7, 0.8]))
    assert float(Crossentropy()(y, p)) == pytest.approx(expected, rel=1e-5)
    assert float(Crossentropy()(np.eye(3)[y], p)) == pytest.approx(expected, rel=1e-5)
    smooth = 0.9 * np.eye(3)[y] + 0.1 / 3
    assert float(Crossentropy(label_smoothing=0.1)(y, p)) == pytest.approx(-np.mean((smooth * np.log(p)).sum(1)),
                                                                          rel=1e-5)


def test_monitor_names_and_callbacks(tmp_path):
    assert cb.resolve_monitor("val_accuracy", aux_heads=True, has_val=True) == "val_main_accuracy"
    assert cb.resolve_monitor("val_loss", aux_heads=True, has_val=True) == "val_loss"
    assert cb.resolve_monitor("val_top5", aux_heads=False, has_val=False) == "top5"
    assert cb.monitor_mode("val_main_top5") == "max" and cb.monitor_mode("val_loss") == "min"
    config = TrainConfig(early_stopping_patience=3, schedule="plateau")
    kinds = [type(c).__name__ for c in cb.make_callbacks(config, RunDir(str(tmp_path)), "val_loss", 2)]
    # the learning rate is in the logs before the commit
    assert kinds == ["LearningRateLogger", "RunCheckpoint", "EpochLogger", "ReduceLROnPlateau", "EarlyStopping",
                     "TensorBoard", "StepLearningRateLogger", "PlotHistory"]
    assert "TerminateOnNaN" not in kinds and "ModelCheckpoint" not in kinds  # RunCheckpoint writes atomically
    assert keras.config.dtype_policy().name == "float32"


def test_kgooglenet_train_is_the_package_and_train_train_the_function():
    import kgooglenet
    import kgooglenet.train as package
    from kgooglenet.train import build, config, loop, run

    assert kgooglenet.train is package  # a package, as kgooglenet.evaluate is; the function has the same name inside
    assert not callable(package)
    assert package.train is loop.train and package.TrainConfig is config.TrainConfig is TrainConfig
    assert package.build_model_and_compile is build.build_model_and_compile and package.TrainResult is run.TrainResult
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        package.train({"epochs": 1})


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, tmp_path):
    # without native bfloat16 TensorFlow emulates it (8x slower steps on an AVX2 CPU), so "auto" must not pick it there
    from kgooglenet.train import build, strategy

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k))
    assert not strategy.native_bfloat16_cpu() and strategy.resolve_precision("auto") == "float32"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert strategy.native_bfloat16_cpu() and strategy.resolve_precision("auto") == "mixed_bfloat16"
    assert strategy.resolve_precision("mixed_float16") == "mixed_float16"  # explicit choices are kept

    config = TrainConfig(width=0.125, epochs=1, precision="auto", data=DataConfig(source="digits", image_size=32),
                         variant="cifar")
    model = build.build_model_and_compile(config, num_classes=10)
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert "precision mixed_bfloat16 (auto)" in build.summary_line("default", 1, config, 5, model, 0)
    cpuinfo.write_text("flags\t\t: fpu avx2\n")
    assert build.build_model_and_compile(config, num_classes=10).get_layer("conv1").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="bfloat16")
