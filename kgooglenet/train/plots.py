"""PNG plots of a training history: loss, accuracy (train/val) and learning rate per epoch (matplotlib, Agg).

Example:
```python
from kgooglenet.train.plots import plot_history, read_history_csv
paths = plot_history(read_history_csv("runs/digits/history.csv"), "runs/digits/plots")
```
"""

from __future__ import annotations

import csv
import os


def read_history_csv(path: str) -> dict:
    """A CSVLogger file as {column: [float per epoch]} (the "epoch" column included)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"history: no CSV file at {path!r}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history: dict = {}
    for row in rows:
        for key, value in row.items():
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                history.setdefault(key, []).append(float("nan"))
    return history


def _metric_key(history: dict, name: str) -> str | None:
    """"accuracy" or, for a model with aux heads, "main_accuracy"."""
    for key in (name, f"main_{name}"):
        if key in history:
            return key
    return None


def plot_history(history: dict, out_dir: str, title: str | None = None) -> dict:
    """Write loss.png, accuracy.png and learning_rate.png (those with data) to `out_dir`.

    Args:
        history: {metric: per-epoch values}, as `keras.callbacks.History.history` or `read_history_csv`. Keys "loss",
            "val_loss", "accuracy"/"main_accuracy", "val_accuracy"/"val_main_accuracy", "learning_rate" are plotted.
        out_dir: folder for the PNG files (created).
        title: figure title prefix.

    Returns:
        {"loss": path, "accuracy": path, "learning_rate": path} for the plots written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    n = max((len(v) for v in history.values()), default=0)
    epochs = [int(e) + 1 for e in history["epoch"]] if "epoch" in history else list(range(1, n + 1))
    panels = {
        "loss": [("loss", "train"), ("val_loss", "val")],
        "accuracy": [(_metric_key(history, "accuracy"), "train top-1"),
                     (("val_" + _metric_key(history, "accuracy")) if _metric_key(history, "accuracy") else None,
                      "val top-1"),
                     (_metric_key(history, "top5"), "train top-5"),
                     (("val_" + _metric_key(history, "top5")) if _metric_key(history, "top5") else None, "val top-5")],
        "learning_rate": [("learning_rate", "learning rate")],
    }
    written = {}
    for name, series in panels.items():
        series = [(k, label) for k, label in series if k and k in history]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for key, label in series:
            values = history[key]
            ax.plot(epochs[: len(values)], values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.replace("_", " "))
        if name == "learning_rate" and min(history["learning_rate"]) > 0:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title(f"{title}: {name.replace('_', ' ')}" if title else name.replace("_", " "))
        fig.tight_layout()
        path = os.path.join(out_dir, f"{name}.png")
        fig.savefig(path)
        plt.close(fig)
        written[name] = path
    return written
