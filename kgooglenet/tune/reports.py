"""Reports of a search directory: the trials as rows (`load_trials`), results.csv, objective.png and
best_config.json (`write_reports`)."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field

import tensorflow as tf

from kgooglenet.train import TrainConfig
from kgooglenet.tune.config import TuneConfig
from kgooglenet.tune.space import config_from_values, tidy

RESULTS_CSV = "results.csv"
OBJECTIVE_PNG = "objective.png"
BEST_CONFIG_JSON = "best_config.json"


def _trial_sort_key(trial_id: str):
    return (0, int(trial_id), "") if str(trial_id).isdigit() else (1, 0, str(trial_id))


def load_trials(project_dir: str) -> list[dict]:
    """The trials of a search directory, in trial order: dicts with trial_id, status, score, best_step, values
    (hyperparameter values), message (error text of failed trials) and tuners (ids of the tuners that ran it)."""
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
            "values": state["hyperparameters"]["values"],
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
    """results.csv: trial_id, status, tuner, <objective>, best_epoch, one column per hyperparameter, error."""
    names = []
    for t in trials:
        names += [n for n in t["values"] if n not in names]
    with tf.io.gfile.GFile(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", "status", "tuner", objective, "best_epoch", *names, "error"])
        for t in trials:
            error = (t["message"] or "").strip().splitlines()
            writer.writerow([
                t["trial_id"], t["status"], " ".join(t["tuners"]),
                "" if t["score"] is None else t["score"],
                "" if t["status"] != "COMPLETED" else t["best_step"],
                *[tidy(t["values"].get(n, "")) for n in names],
                error[-1] if error else "",
            ])
    return path


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
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


@dataclass
class TuneResult:
    """What `search` returns (workers of a distributed search get `role="worker"` and no reports)."""

    role: str  # "local", "chief" or "worker"
    project_dir: str  # directory of the trials and reports
    objective: str  # the maximized (or minimized, for a loss) metric
    trials: list = field(default_factory=list)  # `load_trials` rows, in trial order
    best_trial_id: str | None = None  # id of the best completed trial
    best_value: float | None = None  # its objective
    best_values: dict = field(default_factory=dict)  # its hyperparameter values
    best_config: TrainConfig | None = None  # the base TrainConfig with those values
    best_config_path: str | None = None  # project_dir/best_config.json (for recipes/train.py --config)
    table_path: str | None = None  # project_dir/results.csv
    plot_path: str | None = None  # project_dir/objective.png


def write_reports(config: TuneConfig, role: str = "local") -> TuneResult:
    """Reads the trials of config.project_dir and writes results.csv, objective.png and best_config.json."""
    objective, direction = config.objective_key, config.direction
    trials = load_trials(config.project_dir)
    result = TuneResult(role=role, project_dir=config.project_dir, objective=objective, trials=trials)
    result.table_path = write_table(trials, os.path.join(config.project_dir, RESULTS_CSV), objective)
    result.plot_path = plot_objective(trials, os.path.join(config.project_dir, OBJECTIVE_PNG), objective, direction)
    best = best_trial(trials, direction)
    if best is not None:
        result.best_trial_id, result.best_value = best["trial_id"], best["score"]
        result.best_values = {k: v for k, v in best["values"].items() if not k.startswith("tuner/")}
        result.best_config = config_from_values(config.train, result.best_values)
        result.best_config_path = os.path.join(config.project_dir, BEST_CONFIG_JSON)
        with tf.io.gfile.GFile(result.best_config_path, "w") as f:
            f.write(result.best_config.to_json() + "\n")
    return result
