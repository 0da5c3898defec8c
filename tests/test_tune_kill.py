"""A search killed (SIGKILL) in the middle of a trial and restarted with the same command counts no trial twice and
loses no finished one: the interrupted trial is rerun under its own id with its own values, the finished trial's
record is untouched, and the search ends with exactly max_trials completed trials."""

import json
import os
import signal
import subprocess
import sys
import time

from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig
from kgooglenet.tune import load_trials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300  # seconds per process


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_search_killed_mid_trial_resumes_without_losing_or_repeating_a_trial(tmp_path):
    base = TrainConfig(data=DataConfig(seed=0, image_size=32), variant="cifar", width=0.125, aux_heads=False, epochs=2,
                       out_dir=str(tmp_path / "base_run"), verbose=0, tensorboard=False, plots=False)
    base.to_json(str(tmp_path / "base.json"))
    command = [sys.executable, os.path.join(ROOT, "recipes", "tune.py"), "--config", str(tmp_path / "base.json"),
               "--directory", str(tmp_path / "search"), "--max-trials", "3", "--steps-per-epoch", "3",
               "--validation-steps", "1", "--patience", "0", "--run-eagerly", "--choices", "batch_size=16,32"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    project = tmp_path / "search" / "googlenet"

    # first run: killed once trial 1 has started (trial 0 finished)
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    seen = []
    try:
        deadline = time.monotonic() + TIMEOUT
        for line in first.stdout:
            seen.append(line)
            if "runs trial 1" in line:
                time.sleep(1.0)  # into the trial's build/fit
                break
            assert time.monotonic() < deadline, "".join(seen[-30:])
        else:
            raise AssertionError("the search ended before trial 1 started:\n" + "".join(seen[-30:]))
        os.kill(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
        first.stdout.close()
    assert first.returncode == -signal.SIGKILL
    trial0 = (project / "trial_0" / "trial.json").read_bytes()
    assert json.loads(trial0)["status"] == "COMPLETED"
    interrupted = read_json(project / "trial_1" / "trial.json")
    assert interrupted["status"] == "RUNNING"  # killed mid-trial
    assert not (project / "trial_2").exists()

    # restart with the same command
    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "runs trial 0" not in second.stdout
    assert second.stdout.count("runs trial 1") == 1 and second.stdout.count("runs trial 2") == 1

    trials = load_trials(str(project))
    assert [t["trial_id"] for t in trials] == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in trials), [(t["trial_id"], t["status"]) for t in trials]
    assert (project / "trial_0" / "trial.json").read_bytes() == trial0  # the finished trial is kept as it was
    assert trials[1]["values"] == interrupted["hyperparameters"]["values"]  # the same trial, rerun
    assert (project / "trial_1" / "trial.log").read_text().count(" runs trial 1: ") == 2  # both attempts logged
    with open(project / "results.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 3
    best = TrainConfig.from_json(str(project / "best_config.json"))
    assert best.out_dir.startswith(str(project / "best_trial_"))
