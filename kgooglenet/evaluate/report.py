"""Evaluation results: metrics, the paper's Table-3-style table, the confusion-matrix PNG and per-class CSV.

Confusion plot: with up to `max_classes` (100) classes, the full row-normalized confusion matrix (true class rows,
predicted class columns, class names on both axes). With more classes (ImageNet's 1000) a full matrix is unreadable,
so the PNG shows the `top_pairs` (30) most confused (true -> predicted) pairs as a bar chart of the fraction of the
true class's images that went to the wrong class, and `most_confused` returns the same pairs as data.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np


@dataclasses.dataclass
class EvaluationResult:
    """What `kgooglenet.evaluate.evaluate` returns."""

    name: str  # label of the model or ensemble
    num_models: int  # models in the ensemble
    crops: int  # crops per image (1 = as given or center crop)
    num_examples: int  # images evaluated
    top1: float  # top-1 accuracy in [0, 1]
    top5: float | None  # top-k accuracy in [0, 1] with k = `top_k`; None when k would reach the class count (always 1)
    confusion: np.ndarray  # int64 (classes, classes): rows true class, columns predicted class
    class_names: list[str]  # class names by id
    macs_per_image: int | None = None  # multiply-adds per image over all models and crops
    seconds: float = 0.0  # wall time of the evaluation
    heads: list | None = None  # per model, the heads averaged ("main", "aux1", "aux2")
    top_k: int = 5  # the k of `top5` (5, or fewer classes minus one; 0 when there is no top-k for so few classes)
    undecodable: list = dataclasses.field(default_factory=list)  # images that could not be decoded (paths), not counted
    probabilities: np.ndarray | None = None  # float32 (num_examples, classes) per image, in data order, when asked
    labels: np.ndarray | None = None  # int32 (num_examples,) true classes, with `probabilities`

    @property
    def cost(self) -> int:
        """Forward passes per image: models x crops (the paper's "cost" column)."""
        return self.num_models * self.crops

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float | None:
        return None if self.top5 is None else 1.0 - self.top5

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Recall of each class (NaN for classes without images)."""
        support = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.confusion) / np.maximum(support, 1), np.nan)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "num_models": self.num_models,
            "crops": self.crops,
            "cost": self.cost,
            "num_examples": self.num_examples,
            "top1": self.top1,
            "top5": self.top5,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "macs_per_image": self.macs_per_image,
            "seconds": self.seconds,
            "heads": self.heads,
            "top_k": self.top_k,
            "undecodable_count": len(self.undecodable),
            "undecodable": list(self.undecodable),
        }

    def save(self, output_dir: str, max_classes: int = 100) -> dict:
        """Writes metrics.json (with the undecodable images), per_class.csv, most_confused.csv, confusion.png and
        per_class.png (per-class accuracy bars) into `output_dir`.

        Returns:
            {"metrics": path, "per_class": path, "most_confused": path, "confusion": path, "per_class_plot": path}
        """
        os.makedirs(output_dir, exist_ok=True)
        paths = {k: os.path.join(output_dir, f) for k, f in (
            ("metrics", "metrics.json"), ("per_class", "per_class.csv"), ("most_confused", "most_confused.csv"),
            ("confusion", "confusion.png"), ("per_class_plot", "per_class.png"))}
        with open(paths["metrics"], "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        support = self.confusion.sum(axis=1)
        with open(paths["per_class"], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["class_id", "class_name", "images", "correct", "accuracy"])
            for i, (name, acc) in enumerate(zip(self.class_names, self.per_class_accuracy)):
                w.writerow([i, name, int(support[i]), int(self.confusion[i, i]), "" if np.isnan(acc) else f"{acc:.4f}"])
        with open(paths["most_confused"], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true_id", "true_name", "predicted_id", "predicted_name", "count", "fraction_of_true"])
            for p in most_confused(self.confusion, self.class_names, top=100):
                w.writerow([p["true"], p["true_name"], p["predicted"], p["predicted_name"], p["count"],
                            f"{p['fraction']:.4f}"])
        plot_confusion(self.confusion, self.class_names, paths["confusion"], max_classes=max_classes,
                       title=f"{self.name}, {self.crops} crop(s): top-1 {self.top1:.2%}")
        plot_per_class(self.confusion, self.class_names, paths["per_class_plot"], max_classes=max_classes,
                       title=f"{self.name}, {self.crops} crop(s): per-class accuracy (top-1 {self.top1:.2%})")
        return paths


def most_confused(confusion, class_names=None, top: int = 30) -> list[dict]:
    """The `top` off-diagonal (true, predicted) pairs with the most images, largest first.

    Returns:
        dicts with keys true, predicted, true_name, predicted_name, count, fraction (of the true class's images).
    """
    confusion = np.asarray(confusion)
    off = confusion.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:top]
    support = confusion.sum(axis=1)
    names = class_names or [str(i) for i in range(len(confusion))]
    pairs = []
    for idx in flat:
        t, p = np.unravel_index(idx, off.shape)
        if off[t, p] == 0:
            break
        pairs.append({"true": int(t), "predicted": int(p), "true_name": names[t], "predicted_name": names[p],
                      "count": int(off[t, p]), "fraction": float(off[t, p] / max(support[t], 1))})
    return pairs


def plot_confusion(confusion, class_names, path: str, max_classes: int = 100, top_pairs: int = 30, title=None):
    """Writes the confusion PNG (full matrix up to `max_classes` classes, else the most confused pairs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    n = len(confusion)
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    if n <= max_classes:
        support = confusion.sum(axis=1, keepdims=True)
        norm = confusion / np.maximum(support, 1)
        side = min(24.0, max(5.0, 0.22 * n + 3))
        fig, ax = plt.subplots(figsize=(side + 1.5, side))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        font = max(4.0, min(10.0, 0.5 * side * 72 / max(n, 1)))  # half a matrix row, in points
        short = [s if len(s) <= 20 else s[:19] + "~" for s in names]
        ax.set_xticks(range(n), short, rotation=90, fontsize=font)
        ax.set_yticks(range(n), short, fontsize=font)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if confusion[i, j]:
                        ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=font,
                                color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    else:
        pairs = most_confused(confusion, names, top=top_pairs)
        fig, ax = plt.subplots(figsize=(11, 0.32 * max(len(pairs), 1) + 1.5))
        labels = [f"{p['true_name'][:28]} -> {p['predicted_name'][:28]}" for p in pairs]
        ax.barh(range(len(pairs)), [p["fraction"] for p in pairs], color="tab:red")
        ax.set_yticks(range(len(pairs)), labels, fontsize=8)
        ax.invert_yaxis()
        for i, p in enumerate(pairs):
            ax.text(p["fraction"], i, f" {p['count']}", va="center", fontsize=7)
        ax.set_xlabel("fraction of the true class's images predicted as the other class")
        ax.set_title(f"{len(pairs)} most confused pairs of {n} classes", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_class(confusion, class_names, path: str, max_classes: int = 100, title=None):
    """Writes a PNG of per-class top-1 accuracy bars (images per class beside each bar), sorted worst first; with
    more than `max_classes` classes only the `max_classes` worst. The overall accuracy is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    n = len(confusion)
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    order = [i for i in np.argsort(np.nan_to_num(acc, nan=2.0), kind="stable") if support[i] > 0][:max_classes]
    fig, ax = plt.subplots(figsize=(9, 0.28 * max(len(order), 1) + 1.6))
    values = [acc[i] for i in order]
    ax.barh(range(len(order)), values, color=[plt.cm.RdYlGn(v) for v in values])
    ax.set_yticks(range(len(order)), [names[i][:32] for i in order], fontsize=8)
    ax.invert_yaxis()
    for row, i in enumerate(order):
        ax.text(min(acc[i], 1.0), row, f" {acc[i]:.0%} of {int(support[i])}", va="center", fontsize=7)
    total = support.sum()
    if total:
        ax.axvline(np.trace(confusion) / total, color="black", linestyle="--", linewidth=1, label="overall")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("top-1 accuracy of the class's images")
    shown = f"{len(order)} worst of {n} classes" if len(order) < int((support > 0).sum()) else f"{len(order)} classes"
    ax.set_title(title or f"per-class accuracy ({shown})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def results_table(results, base: int = 0) -> str:
    """A table like Table 3 of the paper: models, crops, cost, multiply-adds, top-1/top-5 accuracy and the top-5
    error, and its difference to the `base` row (the paper's "compared to base" column).

    Example:
    >>> print(results_table([r1, r10, r144]))  # doctest: +SKIP
    """
    results = list(results)
    if not results:
        return "(no results)"
    k = min(r.top_k for r in results)
    topk = all(r.top5 is not None for r in results) and k > 0
    # the "vs base" column compares the top-k error (the paper's top-5), or the top-1 error when there is no top-k
    err = (lambda r: r.top5_error) if topk else (lambda r: r.top1_error)  # noqa: E731
    base_err = err(results[base])
    header = ["model", "models", "crops", "cost", "GMACs/img", "images", "top-1 acc",
              *([f"top-{k} acc", f"top-{k} err"] if topk else ["top-1 err"]), "vs base"]
    rows = []
    for i, r in enumerate(results):
        delta = err(r) - base_err
        rows.append([
            r.name, str(r.num_models), str(r.crops), str(r.cost),
            "-" if r.macs_per_image is None else f"{r.macs_per_image / 1e9:.1f}", str(r.num_examples),
            f"{r.top1:.2%}", *([f"{r.top5:.2%}", f"{r.top5_error:.2%}"] if topk else [f"{r.top1_error:.2%}"]),
            "base" if i == base else f"{delta:+.2%}",
        ])
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(header)]
    line = "  ".join(h.ljust(w) if j == 0 else h.rjust(w) for j, (h, w) in enumerate(zip(header, widths)))
    out = [line, "-" * len(line)]
    for row in rows:
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)
