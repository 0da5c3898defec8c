"""The package's public names resolve, and the README's commands exist."""

import os

import kgooglenet


def test_public_names_resolve():
    import importlib.metadata
    import inspect

    import kgooglenet.evaluate.crops  # importing submodules must not change what the top-level names are
    import kgooglenet.train.loop  # noqa: F401

    modules = {"evaluate", "predict", "train"}
    for name in kgooglenet.__all__:
        obj = getattr(kgooglenet, name)
        if name in modules:
            assert inspect.ismodule(obj) and obj.__name__ == f"kgooglenet.{name}", name
        else:  # a function or class defined in kgooglenet, re-exported as itself
            assert inspect.isfunction(obj) or inspect.isclass(obj), (name, obj)
            assert obj.__module__.startswith("kgooglenet.") and obj.__name__ == name, (name, obj.__module__)
    assert kgooglenet.load_model is kgooglenet.saving.load_model
    assert kgooglenet.evaluate.evaluate is kgooglenet.evaluate.run.evaluate
    assert kgooglenet.train.TrainConfig is kgooglenet.TrainConfig
    assert kgooglenet.__version__ == importlib.metadata.version("kgooglenet")


def test_readme_states_the_two_commands_and_ci_runs_the_test_one():
    root = os.path.join(os.path.dirname(__file__), "..")
    readme = open(os.path.join(root, "README.md")).read()
    ci = open(os.path.join(root, ".ci", "run")).read()
    assert "pip install -e . && python recipes/quickstart.py" in readme
    test_command = 'pip install -e ".[torch,opencv,onnx,dev]" && python -m pytest -n 2'
    assert test_command in readme
    assert test_command in ci
