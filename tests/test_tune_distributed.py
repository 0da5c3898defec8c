"""Distributed search on KerasTuner's chief/worker protocol: a chief (oracle server) and two workers, three processes
of `recipes/tune.py` on loopback, finish a 4-trial search together with every trial run exactly once."""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig
from kgooglenet.tune import TuneConfig, load_trials, make_tuner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_TRIALS = 4
TIMEOUT = 420  # seconds for the whole search (the chief polls for finished workers every 20 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_search(tmp_path, roles: dict, extra_args=(), expected_codes=None) -> dict:
    """Runs one `recipes/tune.py` process per role ({tuner_id: (extra args, extra env)}) on a tiny base config and
    returns {tuner_id: output}; fails, with every output, unless they exit with `expected_codes` (default all 0)."""
    config = TrainConfig(data=DataConfig(seed=0, batch_size=16), variant="cifar", width=0.0625, aux_heads=False,
                         epochs=1, out_dir=str(tmp_path / "best_run"), verbose=0, tensorboard=False, plots=False)
    config.to_json(str(tmp_path / "base.json"))
    args = [sys.executable, os.path.join(ROOT, "recipes", "tune.py"), "--config", str(tmp_path / "base.json"),
            "--directory", str(tmp_path / "search"), "--max-trials", str(MAX_TRIALS), "--steps-per-epoch", "2",
            "--validation-steps", "1", "--patience", "0", "--run-eagerly", "--choices", "batch_size=16,32",
            *extra_args]
    # the processes import this checkout's kgooglenet (not whichever one is installed)
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    procs, logs = {}, {}
    try:
        for tuner_id, (extra, extra_env) in roles.items():
            logs[tuner_id] = open(tmp_path / f"{tuner_id}.log", "w+")
            procs[tuner_id] = subprocess.Popen(args + list(extra), env=dict(env, KERASTUNER_TUNER_ID=tuner_id,
                                                                            **extra_env),
                                               cwd=tmp_path, stdout=logs[tuner_id], stderr=subprocess.STDOUT)
        # fail fast when a process ends with a code it should not (the chief would wait for a dead worker until the
        # timeout); an expected non-zero code (the chief's 1) waits for the others
        expected = expected_codes or {tuner_id: 0 for tuner_id in roles}
        deadline = time.monotonic() + TIMEOUT
        while (time.monotonic() < deadline and any(p.poll() is None for p in procs.values())
               and not any(p.poll() not in (None, expected[t]) for t, p in procs.items())):
            time.sleep(1)
        codes = {tuner_id: proc.poll() for tuner_id, proc in procs.items()}  # None: still running, killed below
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
    if codes != expected:
        pytest.fail(f"exit codes {codes} (None: still running after another process failed or after {TIMEOUT} s, "
                    "killed)\n" + "\n".join(f"--- {k} ---\n{v[-2500:]}" for k, v in text.items()))
    return text


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path):
    # tuner1 trains under MirroredStrategy
    text = run_search(tmp_path, {"chief": ((), {}), "tuner0": ((), {}), "tuner1": (("--strategy", "mirrored"), {})})

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


def test_chief_stops_the_workers_after_consecutive_failures(tmp_path, monkeypatch):
    # KerasTuner raises its max_consecutive_failed_trials error inside the chief's EndTrial handler, which left the
    # oracle's lock held and the trial ongoing: the workers died on the RPC error and the chief waited forever
    from keras_tuner.src.distribute import oracle_chief

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(free_port()))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    train = TrainConfig(data=DataConfig(seed=0, batch_size=16), variant="cifar", width=0.0625, aux_heads=False,
                        epochs=1, out_dir=str(tmp_path / "best_run"), verbose=0, tensorboard=False, plots=False)
    oracle = make_tuner(TuneConfig(train=train, max_trials=6, max_consecutive_failed_trials=2,
                                   directory=str(tmp_path / "search"))).oracle
    trials = [oracle.create_trial(w) for w in ("tuner0", "tuner1")]
    for t in trials:
        t.status, t.message = "FAILED", "ValueError: boom"
    # the gRPC handler thread ends both trials; the second one is the limit
    handler = threading.Thread(target=lambda: [oracle.end_trial(t) for t in trials])
    handler.start()
    handler.join(30)
    assert oracle.stop_reason == ("the search stopped: 2 trials in a row failed (max_consecutive_failed_trials); "
                                  "the last one: ValueError: boom")
    assert [oracle.trials[t.trial_id].status for t in trials] == ["FAILED", "FAILED"] and not oracle.ongoing_trials
    assert [oracle.create_trial(w).status for w in ("tuner1", "tuner0")] == ["STOPPED", "STOPPED"]
    assert len(oracle.trials) == 2 and not oracle.tuner_ids
    # the chief's own loop (another thread) gets the lock and may exit
    exited = threading.Event()
    threading.Thread(target=lambda: oracle_chief.exit_chief(oracle) and exited.set(), daemon=True).start()
    assert exited.wait(30)
    with open(tmp_path / "search" / "googlenet" / f"trial_{trials[1].trial_id}" / "trial.json") as f:
        assert json.load(f)["status"] == "FAILED"


def test_a_failing_worker_stops_the_search_with_a_clear_error(tmp_path):
    # tuner0's first batch is NaN: its trial fails, the limit of 1 failure in a row is reached, the worker is told to
    # stop and exits normally, and the chief writes the reports and exits 1 saying why (before: both hung or died)
    text = run_search(tmp_path, {"chief": ((), {}), "tuner0": ((), {"KGOOGLENET_FAULT": "nan:1"})},
                      ["--max-consecutive-failed-trials", "1"], expected_codes={"chief": 1, "tuner0": 0})
    assert re.findall(r"\[kgooglenet.tune\] tuner0 runs trial (\d+)", text["tuner0"]) == ["0"]
    assert ("[kgooglenet.tune] the search stopped: 1 trials in a row failed (max_consecutive_failed_trials)"
            in text["chief"])
    assert "error: no trial of the search in" in text["chief"] and "completed (1 failed)" in text["chief"]
    trials = load_trials(str(tmp_path / "search" / "googlenet"))
    assert [(t["trial_id"], t["status"]) for t in trials] == [("0", "FAILED")]
    with open(tmp_path / "search" / "googlenet" / "results.csv") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["FAILED"]
