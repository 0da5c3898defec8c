"""Distributed search on KerasTuner's chief/worker protocol: a chief (oracle server) and two workers, three processes
of `recipes/tune.py` on loopback, finish a 4-trial search together with every trial run exactly once."""

import csv
import os
import re
import socket
import subprocess
import sys

import pytest

from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig
from kgooglenet.tune import load_trials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_TRIALS = 4
TIMEOUT = 420  # seconds per process (the chief polls for finished workers every 20 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path):
    config = TrainConfig(data=DataConfig(seed=0, batch_size=16), variant="cifar", width=0.0625, aux_heads=False,
                         epochs=1, out_dir=str(tmp_path / "best_run"), verbose=0, tensorboard=False, plots=False)
    config.to_json(str(tmp_path / "base.json"))
    args = [sys.executable, os.path.join(ROOT, "recipes", "tune.py"), "--config", str(tmp_path / "base.json"),
            "--directory", str(tmp_path / "search"), "--max-trials", str(MAX_TRIALS), "--steps-per-epoch", "2",
            "--validation-steps", "1", "--patience", "0", "--run-eagerly", "--choices", "batch_size=16,32"]
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()),
               TF_CPP_MIN_LOG_LEVEL="2")
    roles = {"chief": [], "tuner0": [], "tuner1": ["--strategy", "mirrored"]}  # tuner1 trains under MirroredStrategy
    procs, logs = {}, {}
    try:
        for tuner_id, extra in roles.items():
            logs[tuner_id] = open(tmp_path / f"{tuner_id}.log", "w+")
            procs[tuner_id] = subprocess.Popen(args + extra, env=dict(env, KERASTUNER_TUNER_ID=tuner_id), cwd=tmp_path,
                                               stdout=logs[tuner_id], stderr=subprocess.STDOUT)
        codes = {tuner_id: proc.wait(timeout=TIMEOUT) for tuner_id, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = {}
        for tuner_id, f in logs.items():
            f.seek(0)
            text[tuner_id] = f.read()
            f.close()
    if codes != {"chief": 0, "tuner0": 0, "tuner1": 0}:
        pytest.fail(f"exit codes {codes}\n" + "\n".join(f"--- {k} ---\n{v[-2500:]}" for k, v in text.items()))

    # every trial ran once, on one of the workers, and both workers took part
    ran = {w: re.findall(rf"\[kgooglenet.tune\] {w} runs trial (\d+)", text[w]) for w in ("tuner0", "tuner1")}
    all_runs = ran["tuner0"] + ran["tuner1"]
    assert len(all_runs) == len(set(all_runs)) == MAX_TRIALS, ran
    assert ran["tuner0"] and ran["tuner1"], ran
    assert "runs trial" not in text["chief"]  # the chief only serves

    # the oracle's records agree: MAX_TRIALS completed trials, each with one run record naming its worker
    project = tmp_path / "search" / "googlenet"
    trials = load_trials(str(project))
    assert sorted(t["trial_id"] for t in trials) == sorted(all_runs)
    assert all(t["status"] == "COMPLETED" for t in trials), [(t["trial_id"], t["status"], t["message"]) for t in trials]
    by_worker = {t["trial_id"]: t["tuners"] for t in trials}
    assert by_worker == {tid: [w] for w in ran for tid in ran[w]}

    # the chief wrote the reports after the workers were done
    with open(project / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == MAX_TRIALS
    assert (project / "objective.png").stat().st_size > 5000
    assert TrainConfig.from_json(str(project / "best_config.json")).width == 0.0625
