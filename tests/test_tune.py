"""Tests of kgooglenet.tune: the search space, a Bayesian search with its reports, resuming, failed trials, and the
best config trained by recipes/train.py. Tiny models (cifar variant, width 1/16, digits at 32x32, 2-3 steps per
epoch, eager trials) keep the whole file near a minute on 2 cores."""

import csv
import math
import os

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
from harness import load_recipe
from keras_tuner import errors as kt_errors

from kgooglenet.data import AugmentConfig, DataConfig
from kgooglenet.train import TrainConfig
from kgooglenet.tune import (
    DEFAULT_SPACE,
    GoogLeNetHyperModel,
    Hyperparameter,
    SearchFailed,
    SearchSpace,
    TuneConfig,
    config_from_values,
    load_trials,
    make_tuner,
    objective_name,
    search,
    space_overrides,
)
from kgooglenet.tune.space import config_fields, from_tuner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# keep the output short: the Gaussian process fitted on 2-4 points warns about its length scale
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def base_config(tmp_path, **overrides):
    values = dict(data=DataConfig(seed=0), variant="cifar", width=0.0625, aux_heads=True, epochs=1,
                  steps_per_epoch=2, validation_steps=2, out_dir=str(tmp_path / "best_run"), verbose=0,
                  tensorboard=False, plots=False)
    values.update(overrides)
    return TrainConfig(**values)


def tune_config(tmp_path, train, **overrides):
    values = dict(train=train, space=DEFAULT_SPACE.choices("batch_size", [16, 32]), max_trials=3,
                  directory=str(tmp_path / "search"), trial_epochs=1, trial_steps_per_epoch=2,
                  trial_validation_steps=1, early_stopping_patience=1, run_eagerly=True, seed=1)
    values.update(overrides)
    return TuneConfig(**values)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))




# --- the search space -------------------------------------------------------------------------------------------------
def test_space_overrides_fix_narrow_choices_drop():
    space = DEFAULT_SPACE.with_overrides(**space_overrides(
        fix=["optimizer=adamw", "batch_size=64"], ranges=["learning_rate=1e-4,1e-2"],
        choices=["dropout=0.1,0.3"], drop=["label_smoothing"]))
    assert "label_smoothing" not in space and len(space.names) == len(DEFAULT_SPACE.names) - 1
    assert space["optimizer"].kind == "fixed" and space["optimizer"].values == ("adamw",)
    assert space["batch_size"].values == (64,) and isinstance(space["batch_size"].values[0], int)
    assert (space["learning_rate"].low, space["learning_rate"].high, space["learning_rate"].log) == (1e-4, 1e-2, True)
    assert space["dropout"].kind == "choice" and space["dropout"].values == (0.1, 0.3)
    assert DEFAULT_SPACE["learning_rate"].high == 0.3  # the default table is unchanged (copy-on-write)

    with pytest.raises(KeyError, match="no hyperparameter 'nope'"):
        DEFAULT_SPACE.drop("nope")
    with pytest.raises(ValueError, match="is a choice hyperparameter"):
        DEFAULT_SPACE.narrow("optimizer", 0, 1)
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        space_overrides(fix=["learning_rate"])
    with pytest.raises(ValueError, match="does not name a TrainConfig field"):
        DEFAULT_SPACE.fix("no_such_field", 1)
    with pytest.raises(ValueError, match="log sampling needs low > 0"):
        Hyperparameter("learning_rate", "float", low=0.0, high=1.0, log=True)
    with pytest.raises(ValueError, match="names must be unique"):
        SearchSpace((DEFAULT_SPACE["dropout"], DEFAULT_SPACE["dropout"]))
    # any TrainConfig field (or data.<field>) can be added
    more = DEFAULT_SPACE.add(Hyperparameter("momentum", "float", low=0.8, high=0.99))
    assert more.names[-1] == "momentum"


def test_values_map_onto_train_config(tmp_path):
    base = base_config(tmp_path, weights=None)
    config = config_from_values(base, {"learning_rate": 0.02, "batch_size": 64, "optimizer": "sgd_nesterov",
                                       "aux_weight": 0.2, "label_smoothing": 0.1, "finetune_blocks": 10,
                                       "tuner/epochs": 3})
    assert (config.learning_rate, config.data.batch_size, config.optimizer, config.nesterov) == (0.02, 64, "sgd", True)
    assert (config.aux_weight, config.label_smoothing, config.freeze_until) == (0.2, 0.1, None)
    assert base.data.batch_size == 32 and base.learning_rate == 0.05  # base untouched
    assert config_from_values(base, {"optimizer": "adamw"}).optimizer == "adamw"
    # finetune_blocks counts the stem + 9 inception modules from the end: 0 trains only the classifiers
    assert config_from_values(base, {"finetune_blocks": 0}).freeze_until == "inception_5b"
    assert config_from_values(base, {"finetune_blocks": 2}).freeze_until == "inception_4e"
    assert config_from_values(base, {"finetune_blocks": 9}).freeze_until == "conv1"  # cifar stem
    assert config_from_values(TrainConfig(variant="bn"), {"finetune_blocks": 9}).freeze_until == "pool2"
    with pytest.raises(ValueError, match="label_smoothing"):
        config_from_values(base, {"label_smoothing": 1.5})  # TrainConfig validation still applies
    # irrelevant hyperparameters are not tuned: no aux heads -> no aux_*, no weights -> no finetune_blocks
    names = DEFAULT_SPACE.relevant_to(base_config(tmp_path, aux_heads=False)).names
    assert "aux_weight" not in names and "aux_dropout" not in names and "finetune_blocks" not in names
    assert "finetune_blocks" in DEFAULT_SPACE.relevant_to(TrainConfig(weights="imagenet-torchvision")).names
    assert objective_name(base) == "val_main_accuracy"
    assert objective_name(base_config(tmp_path, aux_heads=False)) == "val_accuracy"


def test_ema_and_augmentation_fields_are_tunable(tmp_path):
    assert DEFAULT_SPACE["ema"].values == (False, True)
    assert config_from_values(TrainConfig(), {"ema": True}).ema is True
    base = TrainConfig(data=DataConfig(augment=AugmentConfig.strong(32)))
    space = DEFAULT_SPACE.add(Hyperparameter("data.augment.randaugment_magnitude", "float", low=5.0, high=15.0,
                                             step=2.0)).add(
        Hyperparameter("data.augment.erase_prob", "choice", values=(0.0, 0.25)))
    config = config_from_values(base, {"data.augment.randaugment_magnitude": 13.0, "data.augment.erase_prob": 0.0})
    aug = config.data.augment
    assert (aug.randaugment_magnitude, aug.erase_prob, aug.randaugment_ops, aug.crop_padding) == (13.0, 0.0, 2, 4)
    assert {"data.augment.randaugment_magnitude", "data.augment.erase_prob"} <= set(space.relevant_to(base).names)
    # the "auto" preset (the default) or an AlbumentationsSpec would be replaced by one field's override: not tuned
    assert not any(n.startswith("data.augment.") for n in space.relevant_to(TrainConfig()).names)
    why = space.irrelevant_to(TrainConfig())  # what make_tuner prints, one line each
    assert why["data.augment.erase_prob"] == "data.augment is 'auto', not an AugmentConfig"
    assert why["finetune_blocks"] == "weights=None: training from scratch" and "ema" not in why
    with pytest.raises(ValueError, match="randaugment_magnitude=31"):
        Hyperparameter("data.augment.randaugment_magnitude", "choice", values=(9.0, 31))
    with pytest.raises(ValueError, match="'data.augment.no_such' does not name"):
        Hyperparameter("data.augment.no_such", "choice", values=(1,))
    with pytest.raises(ValueError, match="'data.augment' does not name"):  # the whole AugmentConfig is no value
        config_fields({"data.augment": "strong"})


def test_bool_choice_round_trips_through_keras_tuner(tmp_path):
    # KerasTuner's Choice stores booleans as the ints 0/1 (in memory and in the chief/worker protos); a trial's
    # TrainConfig must still get False/True, which its validation requires (ema=0 is refused)
    base = TrainConfig(data=DataConfig(augment=AugmentConfig.strong(32)))
    space = SearchSpace((DEFAULT_SPACE["ema"], Hyperparameter("data.augment.horizontal_flip", "choice",
                                                              values=(True, False))))
    hp = kt.HyperParameters()
    space.declare(hp)
    assert hp.values == {"ema": 0, "data.augment.horizontal_flip": 1}  # what KerasTuner hands back: ints
    with pytest.raises(ValueError, match="TrainConfig.ema must be True or False, received ema=0"):
        TrainConfig(ema=hp.values["ema"])
    for ema, flip in ((1, 0), (0, 1)):
        hp.values.update({"ema": ema, "data.augment.horizontal_flip": flip})
        wire = kt.HyperParameters.from_proto(hp.to_proto())  # as a worker receives a trial from the chief
        assert wire.values == {"ema": ema, "data.augment.horizontal_flip": flip}
        config = GoogLeNetHyperModel(base, space).config_for(wire)
        assert config.ema is bool(ema) and config.data.augment.horizontal_flip is bool(flip)
    # the reports read the stored trial the same way: best_config.json gets a bool, results.csv True/False
    assert from_tuner("ema", 1, tidy_floats=False) is True and from_tuner("tuner/epochs", 3) == 3
    assert from_tuner("dropout", 0.30000000000000004) == 0.3 and from_tuner("dropout", 0.1 + 0.2, False) == 0.1 + 0.2


# --- searches -----------------------------------------------------------------------------------------------------
def test_bayesian_search_reports_best_config_trains_and_resumes(tmp_path):
    config = tune_config(tmp_path, base_config(tmp_path), num_initial_points=2)  # trial 2 comes from the GP
    result = search(config)
    project = tmp_path / "search" / "googlenet"

    # table: one row per trial, all completed, objective in [0, 1], hyperparameters recorded
    rows = read_csv(project / "results.csv")
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert all(r["status"] == "COMPLETED" and r["tuner"] == "tuner0" for r in rows)
    scores = [float(r["val_accuracy"]) for r in rows]  # the objective's user-facing name (Keras: val_main_accuracy)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {"learning_rate", "batch_size", "weight_decay", "dropout", "aux_dropout", "optimizer", "aux_weight",
            "label_smoothing"} <= set(rows[0])
    assert "finetune_blocks" not in rows[0]  # training from scratch
    assert all(int(r["batch_size"]) in (16, 32) for r in rows)
    assert result.best_value == max(scores) and result.best_trial_id == rows[scores.index(max(scores))]["trial_id"]

    # plot: a real PNG
    png = (project / "objective.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # best config: the base config with the best trial's values (and the base's budget, not the trials' 1 val step)
    best = TrainConfig.from_json(str(project / "best_config.json"))
    best_row = rows[scores.index(max(scores))]
    assert math.isclose(best.learning_rate, float(best_row["learning_rate"]))
    assert best.data.batch_size == int(best_row["batch_size"])
    assert best.optimizer == ("sgd" if best_row["optimizer"].startswith("sgd") else best_row["optimizer"])
    assert (best.epochs, best.steps_per_epoch, best.validation_steps, best.width) == (1, 2, 2, 0.0625)
    assert best.to_dict() == result.best_config.to_dict()

    # ... which recipes/train.py trains as is, into its own new directory: the base run is never touched
    assert best.out_dir == str(project / f"best_trial_{best_row['trial_id']}") != base_config(tmp_path).out_dir
    base_run = tmp_path / "best_run"
    base_run.mkdir()
    (base_run / "config.json").write_text(base_config(tmp_path).to_json())
    base_bytes = (base_run / "config.json").read_bytes()
    run = load_recipe("train").main(["--config", str(project / "best_config.json"), "--epochs", "1"])
    assert run.epochs_run == 1 and run.initial_epoch == 0 and run.out_dir == best.out_dir
    assert sorted(p.name for p in base_run.iterdir()) == ["config.json"]
    assert (base_run / "config.json").read_bytes() == base_bytes
    assert 0.0 <= run.history["val_main_accuracy"][0] <= 1.0
    assert TrainConfig.from_json(run.config_path).learning_rate == best.learning_rate

    # rerun with more trials: the finished trials are reloaded, not rerun
    before = {}
    for tid in ("0", "1", "2"):
        d = project / f"trial_{tid}"
        before[tid] = ((d / "trial.json").read_bytes(), {p.name: p.stat().st_mtime_ns for p in d.iterdir()})
    resumed = search(tune_config(tmp_path, base_config(tmp_path), num_initial_points=2, max_trials=5))
    assert [t["trial_id"] for t in resumed.trials] == ["0", "1", "2", "3", "4"]
    assert all(t["status"] == "COMPLETED" for t in resumed.trials)
    for tid, (trial_json, mtimes) in before.items():
        d = project / f"trial_{tid}"
        assert (d / "trial.json").read_bytes() == trial_json
        assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == mtimes
    assert len(read_csv(project / "results.csv")) == 5

    # resuming with another space is refused instead of silently ignoring the change
    with pytest.raises(ValueError, match="differs from the space of the search stored"):
        make_tuner(tune_config(tmp_path, base_config(tmp_path), max_trials=5,
                               space=DEFAULT_SPACE.fix("optimizer", "adam")))


class FailFirstTwoTrials(keras.callbacks.Callback):
    """Trial 1: NaN weights -> NaN loss; trial 2: a (simulated) out-of-memory error; later trials train normally.
    The counter is a class attribute because KerasTuner deep-copies callbacks for every trial."""

    started = []

    def on_train_begin(self, logs=None):
        FailFirstTwoTrials.started.append(1)
        if len(FailFirstTwoTrials.started) == 1:
            for w in self.model.trainable_weights:
                w.assign(tf.fill(w.shape, np.nan))
        elif len(FailFirstTwoTrials.started) == 2:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor (simulated)")


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    FailFirstTwoTrials.started.clear()
    config = tune_config(tmp_path, base_config(tmp_path, aux_heads=False), tuner="random")
    result = search(config, callbacks=[FailFirstTwoTrials()])
    assert [t["status"] for t in result.trials] == ["FAILED", "FAILED", "COMPLETED"]
    rows = read_csv(tmp_path / "search" / "googlenet" / "results.csv")
    assert "non-finite training loss" in rows[0]["error"]
    assert "out of memory" in rows[1]["error"] and "ResourceExhaustedError" in rows[1]["error"]
    assert rows[0]["val_accuracy"] == "" and rows[2]["val_accuracy"] != ""
    assert result.best_trial_id == "2"
    assert TrainConfig.from_json(result.best_config_path).learning_rate == pytest.approx(
        result.trials[2]["values"]["learning_rate"])
    assert load_trials(str(tmp_path / "search" / "googlenet"))[0]["tuners"] == ["tuner0"]


# --- the space is checked when made -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, words", [
    (lambda: Hyperparameter("learning_rate", "float", low=-1.0, high=0.1), ["'learning_rate'", "low=-1.0", "a number > 0"]),
    (lambda: Hyperparameter("learning_rate", "float", low="abc", high=0.1), ["'learning_rate'", "'abc'", "number"]),
    (lambda: Hyperparameter("batch_size", "choice", values=("32", 64)), ["'batch_size'", "'32'", "integer"]),
    (lambda: Hyperparameter("batch_size", "float", low=8, high=64), ["'batch_size'", "float range", "'int'"]),
    (lambda: Hyperparameter("epochs", "int", low=1, high=2.5), ["'epochs'", "high=2.5", "integer"]),
    (lambda: Hyperparameter("label_smoothing", "float", low=0.0, high=1.5),
     ["'label_smoothing'", "high=1.5", ">= 0 and < 1"]),
    (lambda: Hyperparameter("optimizer", "choice", values=("sgd", "rmsprop")), ["'optimizer'", "'rmsprop'", "adamw"]),
    (lambda: Hyperparameter("finetune_blocks", "int", low=0, high=11), ["'finetune_blocks'", "high=11", "[0, 10]"]),
    (lambda: Hyperparameter("dropout", "float", low=0.0, high=0.5, step=0.7), ["'dropout'", "step=0.7"]),
    (lambda: Hyperparameter("no_such_field", "fixed", values=(1,)), ["'no_such_field'", "TrainConfig field"]),
    (lambda: DEFAULT_SPACE.with_overrides(**space_overrides(ranges=["learning_rate=abc,0.1"])),
     ["'learning_rate'", "'abc'", "number"]),
    (lambda: DEFAULT_SPACE.with_overrides(**space_overrides(choices=["batch_size=32,2.5"])),
     ["'batch_size'", "'2.5'", "integer"]),
    (lambda: DEFAULT_SPACE.with_overrides(**space_overrides(fix=["epochs=2.5"])), ["'epochs'", "'2.5'", "integer"]),
    (lambda: DEFAULT_SPACE.with_overrides(**space_overrides(fix=["batch_size=0"])), ["'batch_size'", "value=0"]),
    (lambda: DEFAULT_SPACE.with_overrides(**space_overrides(ranges=["weight_decay=-1,0.1"])),
     ["'weight_decay'", "low=-1.0"]),
])
def test_space_is_type_and_range_checked_when_made(make, words):
    with pytest.raises(ValueError) as info:
        make()
    assert all(w in str(info.value) for w in words), str(info.value)


def test_recipe_reports_a_bad_space_value_in_one_line(capsys):
    assert load_recipe("tune").main(["--range", "learning_rate=abc,0.1", "--show-space"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: hyperparameter 'learning_rate': low must be a number, received low='abc'"


# --- reproducible, fitted to the data -----------------------------------------------------------------------------
def _first_values(tmp_path, name, tuner, seed, n=3):
    tuner = make_tuner(tune_config(tmp_path, base_config(tmp_path), tuner=tuner, seed=seed, directory=str(
        tmp_path / name), space=DEFAULT_SPACE))
    # one trial per tuner id: the oracle hands out new values without any trial being trained
    return [tuner.oracle.create_trial(f"t{i}").hyperparameters.values for i in range(n)]


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_a_seed_of_zero_gives_the_same_trials(tmp_path, tuner):
    first = _first_values(tmp_path, "a", tuner, seed=0)
    assert first == _first_values(tmp_path, "b", tuner, seed=0)
    assert first != _first_values(tmp_path, "c", tuner, seed=1)
    assert len({str(v) for v in first}) == 3


def small_split_config(tmp_path, **overrides):
    """60 digits as in-memory arrays: 49 training and 11 validation images (a stratified split)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:60] * 16).clip(0, 255).astype("uint8")
    data = DataConfig(source="arrays", train_arrays=(images, digits.target[:60]), val_split=0.2, image_size=32,
                      seed=0)
    return base_config(tmp_path, data=data, aux_heads=False, **overrides)


class FailEveryTrial(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise kt_errors.FailedTrialError("simulated failure for the test")


def test_small_split_drops_batch_sizes_and_a_search_with_no_completed_trial_says_so(tmp_path, capsys):
    config = tune_config(tmp_path, small_split_config(tmp_path), space=DEFAULT_SPACE, max_trials=2, tuner="random")
    tuner = make_tuner(config)
    out = capsys.readouterr().out
    assert out.count("batch_size: dropped") == 1
    assert "dropped 64, 128, 256 from the space (larger than the 49 training examples)" in out
    assert tuner.hypermodel.space["batch_size"].values == (32,)

    with pytest.raises(SearchFailed, match=r"no trial of the search in .* completed \(2 failed\).*simulated failure"):
        search(config, callbacks=[FailEveryTrial()])
    out, err = capsys.readouterr()
    project = tmp_path / "search" / "googlenet"
    lines = [line for line in out.splitlines() if " FAILED in " in line]
    assert len(lines) == 2 and all("simulated failure for the test" in line for line in lines), out
    assert "Traceback" not in out + err  # the tracebacks are in the trial logs
    assert "Traceback" in (project / "trial_0" / "trial.log").read_text()
    rows = read_csv(project / "results.csv")
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    assert all(r["error"] == "simulated failure for the test" for r in rows)
    assert all(r["batch_size"] == "32" and float(r["learning_rate"]) > 0 for r in rows)  # the hyperparameters
    assert not (project / "best_config.json").exists()

    # a dataset smaller than every batch size of the space searches at the base config's batch size
    fitted, dropped = DEFAULT_SPACE.fit_to_data(train_size=20, batch_size=8)
    assert dropped == (32, 64, 128, 256) and fitted["batch_size"].kind == "fixed"
    assert fitted["batch_size"].values == (8,)
    with pytest.raises(ValueError, match="every value \\[256\\] is larger than the 49 training examples"):
        make_tuner(tune_config(tmp_path, small_split_config(tmp_path), space=DEFAULT_SPACE.fix("batch_size", 256)))
