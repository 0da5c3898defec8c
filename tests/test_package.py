"""The package's public names resolve, and the README's commands exist."""

import os

import kgooglenet


def test_public_names_resolve():
    import kgooglenet.evaluate.crops  # importing submodules must not change what the top-level names are
    import kgooglenet.train.loop  # noqa: F401

    for name in set(kgooglenet.__all__) - {"evaluate", "predict"}:
        assert callable(getattr(kgooglenet, name)), name
    assert callable(kgooglenet.evaluate.evaluate)
    assert callable(kgooglenet.predict.predict)
    assert kgooglenet.train.TrainConfig is kgooglenet.TrainConfig


def test_readme_states_the_two_commands_and_ci_runs_the_test_one():
    root = os.path.join(os.path.dirname(__file__), "..")
    readme = open(os.path.join(root, "README.md")).read()
    ci = open(os.path.join(root, ".ci", "run")).read()
    assert "pip install -e . && python recipes/quickstart.py" in readme
    test_command = 'pip install -e ".[torch,opencv,onnx,dev]" && python -m pytest -n 2'
    assert test_command in readme
    assert test_command in ci
