"""Every field of TrainConfig, DataConfig and AugmentConfig is checked when the config is made, from Python, from
JSON and from the command line: the error names the field, the value and what is expected; ints stay ints."""

import argparse
import dataclasses
import json

import pytest

from kgooglenet.data import AugmentConfig, DataConfig
from kgooglenet.data.config import AUGMENT_RULES, DATA_RULES, ConfigError, missing_rules
from kgooglenet.train import TrainConfig
from kgooglenet.train.cli import add_train_flags, apply_flags
from kgooglenet.train.config import TRAIN_RULES


ANY_BAD = {"erase_value": ["noise", [1, 2]]}  # "any" fields whose own check accepts numbers


def bad_values(rule, name=None):
    """A wrong-type value and, where the rule has bounds or choices, an out-of-range one."""
    kind = rule.kind
    if kind == "any" and name in ANY_BAD:
        return list(ANY_BAD[name])
    wrong = {"int": ["3", 2.5, True], "float": ["abc", True], "bool": ["yes", 1], "str": [3], "choice": ["nope"],
             "pair": [[0.5], "ab"], "floats": [[1.0, 2.0]], "strs": ["cpu"], "any": [3.5]}[kind]
    if rule.low is not None and kind in ("int", "float"):
        wrong.append(rule.low - 1 if kind == "int" else rule.low - 0.5)
    if rule.high is not None and kind == "float":
        wrong.append(rule.high + 0.5)
    if kind == "pair":
        wrong.append([0.9, 0.5] if rule.high is None or rule.high >= 0.9 else [rule.high, 0.0])
    return wrong


def cases(cls, table, nested=None):
    return [pytest.param(cls, name, value, nested, id=f"{cls.__name__}.{name}={value!r}")
            for name, rule in table.items() for value in bad_values(rule, name)]


CASES = (cases(TrainConfig, TRAIN_RULES) + cases(DataConfig, DATA_RULES, "data")
         + cases(AugmentConfig, AUGMENT_RULES, "data.augment"))


def test_every_field_has_a_rule():
    for cls, table in ((TrainConfig, TRAIN_RULES), (DataConfig, DATA_RULES), (AugmentConfig, AUGMENT_RULES)):
        assert missing_rules(cls, table) == [], f"{cls.__name__}: add one line per new field to its rule table"


def nested_dict(path, name, value):
    if path is None:
        return {name: value}
    out = {name: value}
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


@pytest.mark.parametrize("cls,name,value,nested", CASES)
def test_bad_value_is_named_from_python_json_and_cli(cls, name, value, nested):
    where = f"{cls.__name__}.{name}"
    # Python
    with pytest.raises(ConfigError, match=rf"{where} must be .*received {name}="):
        cls(**{name: value})
    # JSON (a nested field inside the TrainConfig file)
    if name in ("data", "train_arrays", "val_arrays"):
        return  # not JSON-representable fields (a DataConfig object / in-memory arrays)
    text = json.dumps(nested_dict(nested, name, value))
    with pytest.raises(ConfigError, match=rf"{where} must be .*received {name}="):
        TrainConfig.from_json(text)
    # command line: --set FIELD=VALUE (JSON or, failing that, a string)
    key = name if nested is None else f"{nested}.{name}"
    args = add_train_flags(argparse.ArgumentParser()).parse_args(["--set", f"{key}={json.dumps(value)}"])
    with pytest.raises(ConfigError, match=rf"{where} must be"):
        apply_flags(TrainConfig(), args)


@pytest.mark.parametrize("flag,value", [("--epochs", "2.5"), ("--batch-size", "x"), ("--width", "abc"),
                                        ("--variant", "resnet")])
def test_typed_flags_refuse_what_they_cannot_parse(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        add_train_flags(argparse.ArgumentParser()).parse_args([flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_flags_are_parsed_and_ints_stay_ints():
    args = add_train_flags(argparse.ArgumentParser()).parse_args(
        ["--batch-size", "32", "--set", "epochs=3", "--set", "data.augment.scale=[0.5, 1.0]", "--set", "variant=bn",
         "--set", "clipnorm=null", "--width", "1"])
    config = apply_flags(TrainConfig(), args)
    assert config.data.batch_size == 32 and type(config.data.batch_size) is int
    assert config.epochs == 3 and type(config.epochs) is int and config.variant == "bn"
    assert config.data.augment.scale == (0.5, 1.0) and config.clipnorm is None
    assert config.width == 1.0 and type(config.width) is float
    assert TrainConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("make,name", [
    (lambda: TrainConfig(epoch=3), "epoch"),
    (lambda: TrainConfig.from_dict({"epoch": 3}), "epoch"),
    (lambda: TrainConfig.from_json('{"data": {"batchsize": 8}}'), "batchsize"),
    (lambda: TrainConfig.from_json('{"data": {"augment": {"scal": [0.5, 1]}}}'), "scal"),
    (lambda: apply_flags(TrainConfig(), add_train_flags(argparse.ArgumentParser()).parse_args(
        ["--set", "data.batchsize=8"])), "data.batchsize"),
])
def test_unknown_names_are_named(make, name):
    with pytest.raises((TypeError, ConfigError), match=name):
        make()


def test_the_issues_examples():
    for kwargs, text in [({"learning_rate": "abc"}, "learning_rate='abc'"), ({"width": "abc"}, "width='abc'"),
                         ({"epochs": 2.5}, "TrainConfig.epochs must be an int >= 1, received epochs=2.5")]:
        with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace(".", r"\.")):
            TrainConfig(**kwargs)
    with pytest.raises(ConfigError, match="DataConfig.batch_size must be an int >= 1, received batch_size='32'"):
        DataConfig(batch_size="32")
    assert dataclasses.replace(TrainConfig(), epochs=4).epochs == 4  # replace() is checked too
    with pytest.raises(ConfigError, match="epochs"):
        dataclasses.replace(TrainConfig(), epochs=0)
