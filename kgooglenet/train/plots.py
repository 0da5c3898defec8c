"""PNG plots of a training run (matplotlib, Agg): the history (loss, accuracy, learning rate), the learning rate per
step, and a grid of augmented training samples with their labels.

- `plot_history(history, out_dir)`: loss.png (log scale when the values span more than `WIDE_RANGE`x, so a val-loss
  spike does not flatten the train curve), accuracy.png (top-1 and top-5, train solid and val dashed in one colour per
  metric) and learning_rate.png, all with integer epoch ticks. Given `lr_steps_csv` (written by
  `StepLearningRateLogger`), learning_rate.png shows the rate at every logged step, so the warmup is visible.
- `StepLearningRateLogger(path)`: a Keras callback writing a CSV of (step, epoch, learning_rate) during training.
- `plot_samples(dataset, class_names, path)`: the first `n` images of a (augmented) training dataset in a grid, each
  titled with its label, to check labels and crops before a long run.

Example:
```python
from kgooglenet.train.plots import plot_history, read_history_csv
paths = plot_history(read_history_csv("runs/digits/history.csv"), "runs/digits/plots",
                     lr_steps_csv="runs/digits/learning_rate_steps.csv")
```
"""

from __future__ import annotations

import csv
import io
import math
import os

import keras
import numpy as np

from kgooglenet.saving import atomic_write
from kgooglenet.train.optim import current_learning_rate

WIDE_RANGE = 20.0  # loss.png uses a log axis when max / min of the plotted losses exceeds this
LR_STEPS_CSV = "learning_rate_steps.csv"  # suggested name of StepLearningRateLogger's file in a run directory
# One colour per metric; train solid, validation dashed (matplotlib's default cycle: blue, orange, green).
COLORS = {"loss": "C0", "top-1": "C0", "top-5": "C1", "learning rate": "C2"}


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


def is_wide_range(values) -> bool:
    """True when the finite positive `values` span more than WIDE_RANGE (max / min): a log axis reads better."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > WIDE_RANGE


def _figure(figsize=(6, 4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    """The figure as a PNG at `path`, written atomically (a kill never leaves half a PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())

    return atomic_write(path, write)


def read_lr_steps_csv(path: str) -> dict:
    """`StepLearningRateLogger`'s CSV as {"step": [...], "epoch": [...], "learning_rate": [...]}."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"learning rate per step: no CSV file at {path!r}")
    out = {"step": [], "epoch": [], "learning_rate": []}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                values = int(row["step"]), float(row["epoch"]), float(row["learning_rate"])
            except (TypeError, ValueError):  # a row cut by a kill mid-append: the plot can do without it
                continue
            for key, value in zip(("step", "epoch", "learning_rate"), values):
                out[key].append(value)
    return out


def history_figures(history: dict, title: str | None = None, lr_steps: dict | None = None) -> dict:
    """The matplotlib figures `plot_history` writes, by name ("loss", "accuracy", "learning_rate"), for the panels
    with data (tests inspect them: scales, ticks, colours and line styles)."""
    from matplotlib.ticker import MaxNLocator

    n = max((len(v) for v in history.values()), default=0)
    epochs = [int(e) + 1 for e in history["epoch"]] if "epoch" in history else list(range(1, n + 1))
    top1, top5 = _metric_key(history, "accuracy"), _metric_key(history, "top5")
    panels = {  # name -> [(history key, label, colour, linestyle)]
        "loss": [("loss", "train", COLORS["loss"], "-"), ("val_loss", "val", COLORS["loss"], "--")],
        "accuracy": [(top1, "train top-1", COLORS["top-1"], "-"), (top1 and "val_" + top1, "val top-1",
                                                                    COLORS["top-1"], "--"),
                     (top5, "train top-5", COLORS["top-5"], "-"), (top5 and "val_" + top5, "val top-5",
                                                                   COLORS["top-5"], "--")],
        "learning_rate": [("learning_rate", "learning rate", COLORS["learning rate"], "-")],
    }
    figures = {}
    for name, series in panels.items():
        series = [s for s in series if s[0] and s[0] in history]
        per_step = name == "learning_rate" and lr_steps is not None and len(lr_steps.get("step", ())) > 0
        if not series and not per_step:
            continue
        fig = _figure()
        ax = fig.subplots()
        if per_step:
            # x in epochs (fractional), so the step curve lines up with the other plots; the warmup shows
            ax.plot(lr_steps["epoch"], lr_steps["learning_rate"], color=COLORS["learning rate"], linestyle="-",
                    label="learning rate (per step)")
            values = lr_steps["learning_rate"]
        else:
            values = []
            for key, label, color, style in series:
                ys = history[key]
                ax.plot(epochs[: len(ys)], ys, color=color, linestyle=style, marker="o", markersize=3, label=label)
                values += list(ys)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name.replace("_", " "))
        if name in ("loss", "learning_rate") and is_wide_range(values):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title(f"{title}: {name.replace('_', ' ')}" if title else name.replace("_", " "))
        fig.tight_layout()
        figures[name] = fig
    return figures


def plot_history(history: dict, out_dir: str, title: str | None = None, lr_steps_csv: str | None = None) -> dict:
    """Write loss.png, accuracy.png and learning_rate.png (those with data) to `out_dir`.

    Args:
        history: {metric: per-epoch values}, as `keras.callbacks.History.history` or `read_history_csv`. Keys "loss",
            "val_loss", "accuracy"/"main_accuracy", "val_accuracy"/"val_main_accuracy", "top5"/"main_top5" (and
            their val_), "learning_rate" are plotted.
        out_dir: folder for the PNG files (created).
        title: figure title prefix.
        lr_steps_csv: `StepLearningRateLogger`'s CSV: learning_rate.png then shows the rate per step (when the file
            exists and has rows; else the per-epoch "learning_rate" column).

    Returns:
        {"loss": path, "accuracy": path, "learning_rate": path} for the plots written.
    """
    os.makedirs(out_dir, exist_ok=True)
    lr_steps = read_lr_steps_csv(lr_steps_csv) if lr_steps_csv and os.path.isfile(lr_steps_csv) else None
    return {name: _save(fig, os.path.join(out_dir, f"{name}.png"))
            for name, fig in history_figures(history, title, lr_steps).items()}


class StepLearningRateLogger(keras.callbacks.Callback):
    """Writes the optimizer's learning rate (base group) every `every` steps to a CSV of (step, epoch,
    learning_rate), `epoch` fractional (1.5 = halfway through the second epoch). Rows are appended at each epoch end;
    a resumed run first drops the rows past the step it resumes from, so a redone epoch is not logged twice.

    Args:
        path: the CSV file (e.g. RUN_DIR/learning_rate_steps.csv, `LR_STEPS_CSV`).
        every: log every this many steps; None = about 100 points per epoch (every step for short epochs).
        steps_per_epoch: steps of one epoch; None = the `steps` fit passes to its callbacks (a custom loop that
            does not set `params` passes it here).
    """

    def __init__(self, path: str, every: int | None = None, steps_per_epoch: int | None = None):
        super().__init__()
        for name, value in (("every", every), ("steps_per_epoch", steps_per_epoch)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"StepLearningRateLogger: {name} must be None or a positive integer, received "
                                 f"{name}={value!r}")
        self.path, self.every, self.steps_per_epoch, self._rows = path, every, steps_per_epoch, []

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        self._steps = int(self.steps_per_epoch or (self.params or {}).get("steps") or 1)
        self.every = self.every or max(1, self._steps // 100)
        start = self._step()
        if os.path.isfile(self.path):  # keep the rows of finished steps only
            kept = read_lr_steps_csv(self.path)
            rows = [(s, e, lr) for s, e, lr in zip(kept["step"], kept["epoch"], kept["learning_rate"]) if s <= start]
            self._write(rows, "w")
        self._rows = []

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.every == 0 or batch == 0:
            self._rows.append((step, step / self._steps, current_learning_rate(self.model.optimizer)))

    def on_epoch_end(self, epoch, logs=None):
        self._write(self._rows, "a")
        self._rows = []

    def _write(self, rows, mode: str) -> None:
        new = mode == "w" or not os.path.isfile(self.path)

        def write(f):
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "epoch", "learning_rate"])
            writer.writerows([(s, f"{e:.6g}", f"{lr:.8g}") for s, e, lr in rows])

        if mode == "w":
            def write_tmp(tmp):
                with open(tmp, "w", newline="") as f:
                    write(f)

            atomic_write(self.path, write_tmp)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a", newline="") as f:
                write(f)


def _label_text(label, class_names) -> str:
    """A class name for an int label; for a soft (mixup/cutmix) one-hot label the two largest classes with weights."""
    label = np.asarray(label)
    name = (lambda i: str(class_names[i]) if class_names is not None and i < len(class_names) else str(i))
    if label.ndim == 0:
        return name(int(label))
    order = np.argsort(label)[::-1]
    if label[order[0]] >= 0.999:
        return name(int(order[0]))
    return " / ".join(f"{name(int(i))} {label[i]:.2f}" for i in order[:2] if label[i] > 0)


def sample_figure(dataset, class_names=None, n: int = 16, title: str | None = None):
    """The figure `plot_samples` writes (tests inspect its axes titles)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"plot_samples: n must be a positive integer, received {n!r}")
    images, labels = [], []
    for x, y in dataset:
        if isinstance(y, dict):  # aux-head targets: every head has the same labels
            y = y["main"]
        images += list(np.asarray(x))
        labels += list(np.asarray(y))
        if len(images) >= n:
            break
    if not images:
        raise ValueError("plot_samples: the dataset yielded no images")
    images, labels = images[:n], labels[:n]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig = _figure((2.0 * cols, 2.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, image, label in zip(axes, images, labels):
        image = image.astype("float32")
        if image.min() < 0 or image.max() > 255:  # normalized (mean/std): stretch to the visible range
            image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6) * 255
        ax.imshow(np.clip(image, 0, 255).astype("uint8").squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(_label_text(label, class_names), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(images):]:
        ax.set_visible(False)
    fig.suptitle(title or f"{len(images)} augmented training samples")
    fig.tight_layout()
    return fig


def plot_samples(dataset, class_names, path: str, n: int = 16, title: str | None = None) -> str:
    """Write a grid of the first `n` images of `dataset` (batches of (images in [0, 255], labels)), each titled with
    its class name, to the PNG `path`. Use the training dataset as augmented (before the aux-head label map, or
    after: dict labels are read from "main"); mixup/cutmix labels show their two classes with weights.

    Returns `path`.
    """
    return _save(sample_figure(dataset, class_names, n, title), path)
