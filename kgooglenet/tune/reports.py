"""Reports of a search directory: the trials as rows (`load_trials`), results.csv, objective.png, hyperparameters.png
and best_config.json (`write_reports`). The best config trains into its own new run directory,
`<project_dir>/best_trial_<id>` (`best_out_dir`), never into the base config's `out_dir`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from dataclasses import dataclass, field

import tensorflow as tf

from kgooglenet.saving import atomic_write
from kgooglenet.train import TrainConfig
from kgooglenet.tune.config import TuneConfig
from kgooglenet.tune.space import config_from_values, from_tuner, tidy

RESULTS_CSV = "results.csv"
OBJECTIVE_PNG = "objective.png"
HYPERPARAMETERS_PNG = "hyperparameters.png"
BEST_CONFIG_JSON = "best_config.json"
_FAILED_PREFIXES = ("keras_tuner.src.errors.FailedTrialError: ", "keras_tuner.errors.FailedTrialError: ")


def best_out_dir(project_dir: str, trial_id: str) -> str:
    """The run directory of the best config: its own, named after the trial, so that a resumed search whose winner
    changed trains the new winner afresh instead of resuming the old one's run."""
    return os.path.join(project_dir, f"best_trial_{trial_id}")


def error_line(message: str | None) -> str:
    """The last line of a failed trial's traceback, without KerasTuner's FailedTrialError prefix."""
    lines = (message or "").strip().splitlines()
    line = lines[-1] if lines else ""
    for prefix in _FAILED_PREFIXES:
        line = line.removeprefix(prefix)
    return line


def _write(path: str, data) -> str:
    """`data` (str or bytes) to `path`: atomically on a local disk, through tf.io.gfile on remote storage (gs://)."""
    if "://" in str(path):
        with tf.io.gfile.GFile(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return path

    def write(tmp):
        with open(tmp, "wb" if isinstance(data, bytes) else "w", newline="" if isinstance(data, str) else None) as f:
            f.write(data)

    return atomic_write(path, write)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _trial_sort_key(trial_id: str):
    return (0, int(trial_id), "") if str(trial_id).isdigit() else (1, 0, str(trial_id))


def load_trials(project_dir: str) -> list[dict]:
    """The trials of a search directory, in trial order: dicts with trial_id, status, score, best_step, values
    (hyperparameter values, booleans as False/True), message (error text of failed trials) and tuners (ids of the
    tuners that ran it)."""
    rows = []
    for fname in tf.io.gfile.glob(os.path.join(project_dir, "trial_*", "trial.json")):
        with tf.io.gfile.GFile(fname) as f:
            state = json.load(f)
        trial_dir = os.path.dirname(fname)
        tuners = []
        for run in sorted(tf.io.gfile.glob(os.path.join(trial_dir, "run_*.json"))):
            with tf.io.gfile.GFile(run) as f:
                tuners.append(json.load(f)["tuner_id"])
        rows.append({
            "trial_id": state["trial_id"],
            "status": state["status"],
            "score": state["score"],
            "best_step": state["best_step"],
            "values": {k: from_tuner(k, v, tidy_floats=False) for k, v in state["hyperparameters"]["values"].items()},
            "message": state["message"],
            "tuners": tuners,
        })
    return sorted(rows, key=lambda r: _trial_sort_key(r["trial_id"]))


def best_trial(trials: list[dict], direction: str = "max") -> dict | None:
    """The COMPLETED trial with the best finite score, or None."""
    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None and math.isfinite(t["score"])]
    if not done:
        return None
    return (max if direction == "max" else min)(done, key=lambda t: t["score"])


def write_table(trials: list[dict], path: str, objective: str) -> str:
    """results.csv: trial_id, status, tuner, <objective>, best_epoch (1-based, as in training logs), one column per
    hyperparameter, error (the reason of a failed trial)."""
    names = []
    for t in trials:
        names += [n for n in t["values"] if n not in names]
    f = io.StringIO()
    writer = csv.writer(f)
    writer.writerow(["trial_id", "status", "tuner", objective, "best_epoch", *names, "error"])
    for t in trials:
        writer.writerow([
            t["trial_id"], t["status"], " ".join(t["tuners"]),
            "" if t["score"] is None else t["score"],
            "" if t["status"] != "COMPLETED" or t["best_step"] is None else int(t["best_step"]) + 1,
            *[tidy(t["values"].get(n, "")) for n in names],
            error_line(t["message"]) if t["status"] != "COMPLETED" else "",
        ])
    return _write(path, f.getvalue())


def plot_objective(trials: list[dict], path: str, objective: str, direction: str = "max") -> str:
    """objective.png: the objective of each trial (failed trials as red crosses) and the best so far."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs, ys, best, running = [], [], [], None
    failed = []
    for i, t in enumerate(trials):
        score = t["score"]
        if t["status"] == "COMPLETED" and score is not None and math.isfinite(score):
            xs.append(i)
            ys.append(score)
            running = score if running is None else (max if direction == "max" else min)(running, score)
            best.append((i, running))
        elif t["status"] in ("FAILED", "INVALID"):
            failed.append(i)
    ax.plot(xs, ys, "o", label="trial")
    if best:
        ax.step([b[0] for b in best], [b[1] for b in best], where="post", label="best so far")
    if failed:
        floor = min(ys) if ys else 0.0
        ax.plot(failed, [floor] * len(failed), "x", color="red", label="failed")
    ax.set_xticks(range(len(trials)))
    ax.set_xticklabels([t["trial_id"] for t in trials], rotation=90 if len(trials) > 20 else 0)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} per trial")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    return _write(path, _png(fig))


def plot_hyperparameters(trials: list[dict], path: str, objective: str, direction: str = "max") -> str | None:
    """hyperparameters.png: one panel per tuned hyperparameter, its value against the objective for each completed
    trial (log x axis for values spanning a decade or more; choices as categories), the best trial as a star.
    Returns None (and writes nothing) before any trial completed."""
    fig = hyperparameter_figure(trials, objective, direction)
    return None if fig is None else _write(path, _png(fig))


def hyperparameter_figure(trials: list[dict], objective: str, direction: str = "max"):
    """The figure of `plot_hyperparameters` (None without a completed trial); its axes are in hyperparameter order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None and math.isfinite(t["score"])]
    names = []
    for t in done:
        names += [n for n in t["values"] if n not in names and not n.startswith("tuner/")]
    if not done or not names:
        return None
    best = best_trial(done, direction)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        points = [(t["values"][name], t["score"], t is best) for t in done if name in t["values"]]
        values = [p[0] for p in points]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = values
            if min(values) > 0 and max(values) >= 10 * min(values):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # labels on decades only: minor labels overlap
        else:
            categories = list(dict.fromkeys(str(v) for v in values))
            xs = [categories.index(str(v)) for v in values]
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels(categories)
        ax.scatter(xs, [p[1] for p in points], color="tab:blue", alpha=0.7, label="trial")
        starred = [(x, p[1]) for x, p in zip(xs, points) if p[2]]
        if starred:
            ax.scatter(*zip(*starred), marker="*", s=180, color="tab:orange", zorder=3, label="best")
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(loc="best")
    fig.suptitle(f"{objective} against each hyperparameter ({len(done)} completed trials)")
    fig.tight_layout()
    return fig


@dataclass
class TuneResult:
    """What `search` returns (workers of a distributed search get `role="worker"` and no reports)."""

    role: str  # "local", "chief" or "worker"
    project_dir: str  # directory of the trials and reports
    objective: str  # the maximized (or minimized, for a loss) metric, as TuneConfig.objective names it
    trials: list = field(default_factory=list)  # `load_trials` rows, in trial order
    best_trial_id: str | None = None  # id of the best completed trial
    best_value: float | None = None  # its objective
    best_values: dict = field(default_factory=dict)  # its hyperparameter values
    best_config: TrainConfig | None = None  # the base TrainConfig with those values
    best_config_path: str | None = None  # project_dir/best_config.json (for recipes/train.py --config)
    table_path: str | None = None  # project_dir/results.csv
    plot_path: str | None = None  # project_dir/objective.png
    hyperparameters_plot_path: str | None = None  # project_dir/hyperparameters.png (None before a trial completed)
    stopped: str | None = None  # why the search ended before max_trials (too many failures in a row), else None


def write_reports(config: TuneConfig, role: str = "local") -> TuneResult:
    """Reads the trials of config.project_dir and writes results.csv, objective.png, hyperparameters.png and
    best_config.json (the base TrainConfig with the best values, training into `best_out_dir`)."""
    objective, direction = config.objective, config.direction
    trials = load_trials(config.project_dir)
    result = TuneResult(role=role, project_dir=config.project_dir, objective=objective, trials=trials)
    result.table_path = write_table(trials, os.path.join(config.project_dir, RESULTS_CSV), objective)
    result.plot_path = plot_objective(trials, os.path.join(config.project_dir, OBJECTIVE_PNG), objective, direction)
    result.hyperparameters_plot_path = plot_hyperparameters(
        trials, os.path.join(config.project_dir, HYPERPARAMETERS_PNG), objective, direction)
    best = best_trial(trials, direction)
    if best is not None:
        result.best_trial_id, result.best_value = best["trial_id"], best["score"]
        result.best_values = {k: v for k, v in best["values"].items() if not k.startswith("tuner/")}
        result.best_config = dataclasses.replace(config_from_values(config.train, result.best_values),
                                                 out_dir=best_out_dir(config.project_dir, best["trial_id"]))
        result.best_config_path = os.path.join(config.project_dir, BEST_CONFIG_JSON)
        _write(result.best_config_path, result.best_config.to_json() + "\n")
    return result
