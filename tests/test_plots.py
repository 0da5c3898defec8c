"""Tests of the PNG plots: training history (log loss axis for a wide range, integer epoch ticks, train/val pairs in
one colour, solid and dashed), the learning rate per step, the augmented-sample grid and the tuner's
hyperparameter-vs-objective view. The figures' matplotlib objects are inspected, not pixels."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgooglenet.train.plots import (
    StepLearningRateLogger,
    history_figures,
    plot_history,
    plot_samples,
    read_lr_steps_csv,
    sample_figure,
)
from kgooglenet.tune.reports import hyperparameter_figure, plot_hyperparameters

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = {  # 3 epochs of a model with aux heads; val loss spikes at epoch 2
    "epoch": [0.0, 1.0, 2.0],
    "loss": [2.30, 0.50, 0.06],
    "val_loss": [2.20, 45.0, 0.90],
    "main_accuracy": [0.20, 0.70, 0.95],
    "val_main_accuracy": [0.25, 0.10, 0.80],
    "main_top5": [0.60, 0.95, 1.00],
    "val_main_top5": [0.55, 0.50, 0.99],
    "learning_rate": [0.1, 0.05, 0.01],
}


def lines_by_label(fig):
    return {line.get_label(): line for line in fig.axes[0].get_lines()}


def test_history_plots_are_written_with_integer_epoch_ticks(tmp_path):
    paths = plot_history(HISTORY, str(tmp_path / "plots"), title="googlenet")
    assert sorted(paths) == ["accuracy", "learning_rate", "loss"]
    assert all(open(p, "rb").read(8) == PNG for p in paths.values())
    for name, fig in history_figures(HISTORY).items():
        ticks = fig.axes[0].get_xticks()
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (name, ticks)


def test_loss_axis_is_log_only_for_a_wide_range():
    assert history_figures(HISTORY)["loss"].axes[0].get_yscale() == "log"  # 0.06 .. 45
    narrow = dict(HISTORY, loss=[1.2, 0.9, 0.7], val_loss=[1.3, 1.1, 0.9])
    assert history_figures(narrow)["loss"].axes[0].get_yscale() == "linear"


def test_train_and_val_pairs_share_a_colour_solid_and_dashed():
    lines = lines_by_label(history_figures(HISTORY)["accuracy"])
    assert sorted(lines) == ["train top-1", "train top-5", "val top-1", "val top-5"]
    for metric in ("top-1", "top-5"):
        train, val = lines[f"train {metric}"], lines[f"val {metric}"]
        assert train.get_color() == val.get_color()
        assert (train.get_linestyle(), val.get_linestyle()) == ("-", "--")
    assert lines["train top-1"].get_color() != lines["train top-5"].get_color()
    loss = lines_by_label(history_figures(HISTORY)["loss"])
    assert loss["train"].get_color() == loss["val"].get_color() and loss["val"].get_linestyle() == "--"
    # a model without aux heads logs plain names
    plain = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    assert sorted(lines_by_label(history_figures(plain)["accuracy"])) == ["train top-1", "val top-1"]


def test_learning_rate_is_logged_and_plotted_per_step(tmp_path):
    steps, epochs = 5, 2
    warmup = keras.optimizers.schedules.PolynomialDecay(0.0, decay_steps=steps * epochs, end_learning_rate=0.1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(warmup), loss="mse")
    x, y = np.zeros((steps * 4, 4), "float32"), np.zeros((steps * 4, 2), "float32")
    path = tmp_path / "learning_rate_steps.csv"
    model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[StepLearningRateLogger(str(path))])

    logged = read_lr_steps_csv(str(path))
    assert logged["step"] == list(range(1, steps * epochs + 1))
    assert logged["epoch"][steps - 1] == 1.0 and logged["epoch"][0] == pytest.approx(0.2)
    assert np.allclose(logged["learning_rate"], [0.01 * s for s in logged["step"]], atol=1e-7)  # the warmup ramp

    # a resumed run drops the rows past its step, so no step is logged twice
    model.optimizer.iterations.assign(steps)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[StepLearningRateLogger(str(path))])
    assert read_lr_steps_csv(str(path))["step"] == list(range(1, 2 * steps + 1))

    figure = history_figures(HISTORY, lr_steps=read_lr_steps_csv(str(path)))["learning_rate"]
    (line,) = figure.axes[0].get_lines()
    assert len(line.get_xdata()) == 2 * steps and line.get_label() == "learning rate (per step)"
    written = plot_history(HISTORY, str(tmp_path / "plots"), lr_steps_csv=str(path))
    assert open(written["learning_rate"], "rb").read(8) == PNG
    with open(path) as f:
        assert next(csv.reader(f)) == ["step", "epoch", "learning_rate"]


def test_sample_grid_shows_each_image_with_its_label(tmp_path):
    names = ["cat", "dog", "bird"]
    images = np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)).astype("float32")
    labels = np.array([0, 1, 2, 2, 1, 0])
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    path = plot_samples(dataset, names, str(tmp_path / "samples.png"), n=5)
    assert open(path, "rb").read(8) == PNG
    fig = sample_figure(dataset, names, n=5)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["cat", "dog", "bird", "bird", "dog"]

    # aux-head label dicts and mixup's soft labels
    soft = np.array([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]], "float32")
    mixed = tf.data.Dataset.from_tensor_slices((images[:2], {"main": soft, "aux1": soft})).batch(2)
    assert [ax.get_title() for ax in sample_figure(mixed, names, n=2).axes if ax.get_visible()] == [
        "cat 0.70 / dog 0.30", "bird"]
    with pytest.raises(ValueError, match="n must be a positive integer"):
        sample_figure(dataset, names, n=0)


def test_hyperparameter_scatter_for_the_tuner(tmp_path):
    trials = [
        {"trial_id": str(i), "status": status, "score": score,
         "values": {"learning_rate": lr, "optimizer": opt, "dropout": drop}}
        for i, (status, score, lr, opt, drop) in enumerate([
            ("COMPLETED", 0.5, 1e-4, "adam", 0.1), ("COMPLETED", 0.9, 1e-2, "adamw", 0.3),
            ("FAILED", None, 0.3, "sgd_nesterov", 0.5), ("COMPLETED", 0.7, 3e-3, "adam", 0.2)])
    ]
    fig = hyperparameter_figure(trials, "val_accuracy")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == ["learning_rate", "optimizer", "dropout"]
    assert axes[0].get_xscale() == "log" and axes[2].get_xscale() == "linear"
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["adam", "adamw"]  # choices as categories
    trial_points, best_point = axes[0].collections
    assert len(trial_points.get_offsets()) == 3  # the completed trials
    assert tuple(best_point.get_offsets()[0]) == (1e-2, 0.9)
    path = plot_hyperparameters(trials, str(tmp_path / "hyperparameters.png"), "val_accuracy")
    assert open(path, "rb").read(8) == PNG
    assert plot_hyperparameters(trials[2:3], str(tmp_path / "none.png"), "val_accuracy") is None
    assert not (tmp_path / "none.png").exists()
