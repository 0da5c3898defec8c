"""The search space, declared once: `Hyperparameter` rows in `DEFAULT_SPACE`, and how their values become a
`TrainConfig` (`config_from_values`). `SearchSpace` methods fix, narrow, re-choose, drop or add hyperparameters."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import keras_tuner as kt

from kgooglenet import specs
from kgooglenet.data import AugmentConfig, DataConfig
from kgooglenet.train import TrainConfig
from kgooglenet.train.config import with_overrides

KINDS = ("float", "int", "choice", "fixed")
OPTIMIZER_CHOICES = ("sgd", "sgd_nesterov", "adam", "adamw")
# Blocks counted by the "finetune_blocks" hyperparameter, first to last: the stem, then the nine inception modules.
NUM_BLOCKS = 1 + len(specs.INCEPTION_ROWS)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
# The derived names (see `Hyperparameter`): their value type and, for ints, the valid range.
DERIVED = {"batch_size": int, "optimizer": str, "finetune_blocks": int}


def value_type(name: str):
    """The Python type of hyperparameter `name`'s values (int, float, bool, str), or None when the field's type is not
    one of these (e.g. "lr_mult"). ValueError for a name that is no TrainConfig field, "data.<field>",
    "data.augment.<field>" or derived name."""
    if name in DERIVED:
        return DERIVED[name]
    prefix, _, short = name.rpartition(".")
    cls = {"": TrainConfig, "data": DataConfig, "data.augment": AugmentConfig}.get(prefix)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("data", "augment")} if cls else {}
    field = fields.get(short)
    if field is None:
        raise ValueError(
            f"hyperparameter {name!r} does not name a TrainConfig field, 'data.<DataConfig field>', "
            f"'data.augment.<AugmentConfig field>', 'batch_size', 'optimizer' or 'finetune_blocks'"
        )
    return _TYPES.get(str(field.type).replace(" | None", "").strip())


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def coerce_value(name: str, value, what: str = "value"):
    """`value` (a command-line string, or a Python value) as the type of hyperparameter `name`; ValueError naming the
    hyperparameter, the value and the expected type otherwise. Integers stay integers ("2.5" is no int)."""
    kind = value_type(name)
    if kind is None or not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is bool:
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
    except (ValueError, KeyError):
        expected = {int: "an integer", float: "a number", bool: "true or false"}[kind]
        raise ValueError(f"hyperparameter {name!r}: {what} must be {expected}, received {what}={value!r}") from None
    return text


def check_value(name: str, value, what: str = "value") -> None:
    """Raises ValueError unless `value` has the type of hyperparameter `name` and a base TrainConfig accepts it (so
    every range a TrainConfig field checks - learning_rate > 0, label_smoothing in [0, 1), ... - is checked once)."""
    kind = value_type(name)
    expected = {int: "an integer", float: "a number", bool: "True or False", str: "a string"}.get(kind)
    ok = (kind is None or (kind is float and _is_number(value)) or (kind is int and _is_number(value)
          and float(value).is_integer() and not isinstance(value, float)) or (kind is bool and isinstance(value, bool))
          or (kind is str and isinstance(value, str)))
    if not ok:
        raise ValueError(f"hyperparameter {name!r}: {what} must be {expected}, received {what}={value!r} "
                         f"({type(value).__name__})")
    try:
        config_from_values(TrainConfig(variant="bn"), {name: value})  # "bn": every finetune_blocks value maps
    except (TypeError, ValueError) as e:
        reason = str(e).removeprefix(f"hyperparameter {name!r} ")
        raise ValueError(f"hyperparameter {name!r}: {what}={value!r} is not accepted: {reason}") from None


@dataclass(frozen=True)
class Hyperparameter:
    """One tuned hyperparameter: a name, a kind and a range, type- and range-checked when made.

    The name is what KerasTuner records and what the results table shows. It is either a `TrainConfig` field
    ("learning_rate", "weight_decay", "momentum", "ema", ...), a `DataConfig` field written "data.<field>", an
    `AugmentConfig` field written "data.augment.<field>" (tuned only when the base config's data.augment is an
    AugmentConfig, see `SearchSpace.relevant_to`), or one of the three derived names: "batch_size" (sets
    data.batch_size), "optimizer" ("sgd", "sgd_nesterov", "adam", "adamw": sets optimizer and nesterov) and
    "finetune_blocks" (how many of the last blocks of 10 - the stem and the nine inception modules - are trained; 10
    trains everything, 0 only the classifiers: sets freeze_until).

    Example:
    >>> Hyperparameter("learning_rate", "float", low=1e-4, high=1e-1, log=True).describe()
    'learning_rate: float in [0.0001, 0.1] (log)'
    >>> Hyperparameter("batch_size", "choice", values=(32, 64, 128), help="global batch").describe()
    'batch_size: one of [32, 64, 128] - global batch'
    >>> Hyperparameter("batch_size", "choice", values=("32", 64))
    Traceback (most recent call last):
    ...
    ValueError: hyperparameter 'batch_size': value must be an integer, received value='32' (str)
    """

    name: str  # TrainConfig field, "data.<DataConfig field>", "data.augment.<AugmentConfig field>", or a derived name
    kind: str  # "float", "int", "choice" or "fixed"
    low: float | None = None  # float/int: smallest value
    high: float | None = None  # float/int: largest value
    values: tuple = ()  # choice: the candidates, in order; fixed: the one value
    log: bool = False  # float/int: sample log-uniformly between low and high
    step: float | None = None  # float/int: grid step (None: continuous floats, step 1 for ints)
    help: str = ""  # what the hyperparameter does (shown by `SearchSpace.describe`)

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"Hyperparameter: name must be a non-empty string, received {name!r}")
        kind = value_type(name)  # raises for unknown names
        if self.kind not in KINDS:
            raise ValueError(f"hyperparameter {name!r}: kind must be one of {KINDS}, received {self.kind!r}")
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, (tuple, list)):
            raise ValueError(f"hyperparameter {name!r}: values must be a tuple of candidates, received "
                             f"{self.values!r}")
        object.__setattr__(self, "values", tuple(self.values))
        if self.kind in ("float", "int"):
            if kind not in (int, float, None) or (self.kind == "float" and kind is int):
                raise ValueError(f"hyperparameter {name!r}: a {self.kind} range does not fit its "
                                 f"{getattr(kind, '__name__', '?')} values; use kind "
                                 f"{'int' if kind is int else 'choice'!r} instead")
            for what in ("low", "high", "step"):
                value = getattr(self, what)
                if value is None and what == "step":
                    continue
                if not _is_number(value) or (self.kind == "int" and not float(value).is_integer()):
                    expected = "an integer" if self.kind == "int" else "a number"
                    raise ValueError(f"hyperparameter {name!r}: {what} must be {expected}, received {what}={value!r}")
                if not math.isfinite(value):
                    raise ValueError(f"hyperparameter {name!r}: {what} must be finite, received {what}={value!r}")
            if not self.low < self.high:
                raise ValueError(f"hyperparameter {name!r}: a {self.kind} range needs low < high, received "
                                 f"low={self.low!r}, high={self.high!r}")
            if self.log and self.low <= 0:
                raise ValueError(f"hyperparameter {name!r}: log sampling needs low > 0, received low={self.low!r}")
            if self.step is not None and not 0 < self.step <= self.high - self.low:
                raise ValueError(f"hyperparameter {name!r}: step must be in (0, high - low = {self.high - self.low!r}],"
                                 f" received step={self.step!r}")
            if not isinstance(self.log, bool):
                raise ValueError(f"hyperparameter {name!r}: log must be True or False, received {self.log!r}")
            if self.kind == "int":
                object.__setattr__(self, "low", int(self.low))
                object.__setattr__(self, "high", int(self.high))
            cast = int if kind is int or self.kind == "int" else float
            check_value(name, cast(self.low), "low")
            check_value(name, cast(self.high), "high")
            if self.values:
                raise ValueError(f"hyperparameter {name!r}: a {self.kind} range takes low/high, not values="
                                 f"{self.values!r}")
        else:
            if self.kind == "choice" and len(self.values) < 1:
                raise ValueError(f"hyperparameter {name!r}: a choice needs at least one value, received values=()")
            if self.kind == "fixed" and len(self.values) != 1:
                raise ValueError(f"hyperparameter {name!r}: a fixed hyperparameter has exactly one value, received "
                                 f"{self.values!r}")
            if kind is float:  # KerasTuner's Choice needs one type: 0 and 0.5 become 0.0 and 0.5
                object.__setattr__(self, "values", tuple(float(v) if _is_number(v) else v for v in self.values))
            for value in self.values:
                check_value(name, value)
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"hyperparameter {name!r}: values must differ, received {list(self.values)}")
            if self.low is not None or self.high is not None:
                raise ValueError(f"hyperparameter {name!r}: a {self.kind} takes values, not low/high")

    def declare(self, hp: kt.HyperParameters):
        """Registers this hyperparameter in `hp` and returns its current value."""
        if self.kind == "float":
            return hp.Float(self.name, float(self.low), float(self.high), step=self.step,
                            sampling="log" if self.log else "linear")
        if self.kind == "int":
            return hp.Int(self.name, int(self.low), int(self.high), step=int(self.step) if self.step else None,
                          sampling="log" if self.log else "linear")
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values))
        return hp.Fixed(self.name, self.values[0])

    def coerce(self, value, what: str = "value"):
        """`value` (e.g. a command-line string) converted to this hyperparameter's type (see `coerce_value`)."""
        value = coerce_value(self.name, value, what)
        return float(value) if value_type(self.name) is float and _is_number(value) else value

    def describe(self) -> str:
        """One line: name, kind, range (and the help text)."""
        if self.kind in ("float", "int"):
            scale = "log" if self.log else "linear"
            step = f", step {self.step}" if self.step else ""
            text = f"{self.name}: {self.kind} in [{self.low}, {self.high}] ({scale}{step})"
        elif self.kind == "choice":
            text = f"{self.name}: one of {list(self.values)}"
        else:
            text = f"{self.name}: fixed at {self.values[0]!r}"
        return f"{text} - {self.help}" if self.help else text


@dataclass(frozen=True)
class SearchSpace:
    """An ordered table of `Hyperparameter`s, with copy-on-write overrides.

    Example:
    >>> space = DEFAULT_SPACE.fix("optimizer", "adamw").narrow("learning_rate", 1e-4, 1e-2)
    >>> space.drop("finetune_blocks", "label_smoothing", "ema").names
    ('learning_rate', 'batch_size', 'weight_decay', 'dropout', 'aux_dropout', 'optimizer', 'aux_weight')
    >>> space["optimizer"].describe()
    "optimizer: fixed at 'adamw' - SGD + Nesterov momentum, Adam or AdamW"
    """

    params: tuple[Hyperparameter, ...] = ()  # the hyperparameters, in declaration order

    def __post_init__(self):
        for p in self.params:
            if not isinstance(p, Hyperparameter):
                raise ValueError(f"SearchSpace: params must be Hyperparameter objects, received {p!r}")
        names = [p.name for p in self.params]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"SearchSpace: hyperparameter names must be unique, received duplicates {duplicates}")
        object.__setattr__(self, "params", tuple(self.params))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Hyperparameter:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"SearchSpace: no hyperparameter {name!r}; the space has {list(self.names)}")

    def __contains__(self, name) -> bool:
        return name in self.names

    def _replace(self, name: str, **changes) -> "SearchSpace":
        old = self[name]
        return SearchSpace(tuple(dataclasses.replace(old, **changes) if p is old else p for p in self.params))

    def fix(self, name: str, value) -> "SearchSpace":
        """Always use `value` for `name` (still recorded in the results). Unknown names are added as fixed."""
        value = coerce_value(name, value)
        if name not in self:
            return self.add(Hyperparameter(name, "fixed", values=(value,)))
        return self._replace(name, kind="fixed", values=(value,), low=None, high=None, log=False, step=None)

    def narrow(self, name: str, low, high) -> "SearchSpace":
        """New bounds for a float or int hyperparameter."""
        p = self[name]
        if p.kind not in ("float", "int"):
            raise ValueError(f"hyperparameter {name!r} is a {p.kind} hyperparameter, not a float/int range: use "
                             "choices (--choices) or fix (--fix)")
        low, high = coerce_value(name, low, "low"), coerce_value(name, high, "high")
        step = p.step if p.step is None or (_is_number(low) and _is_number(high) and p.step <= high - low) else None
        return self._replace(name, low=low, high=high, step=step)

    def choices(self, name: str, values) -> "SearchSpace":
        """Make `name` a choice among `values` (any previous kind)."""
        if isinstance(values, (str, bytes)):
            raise ValueError(f"hyperparameter {name!r}: choices must be a list of values, received {values!r}")
        values = tuple(coerce_value(name, v) for v in values)
        if name not in self:
            return self.add(Hyperparameter(name, "choice", values=values))
        return self._replace(name, kind="choice", values=values, low=None, high=None, log=False, step=None)

    def drop(self, *names: str) -> "SearchSpace":
        """Stop tuning `names`: trials then use the base TrainConfig's value."""
        for name in names:
            self[name]  # raises KeyError for unknown names
        return SearchSpace(tuple(p for p in self.params if p.name not in names))

    def add(self, param: Hyperparameter) -> "SearchSpace":
        """Tune one more hyperparameter (any TrainConfig field, "data.<field>" or "data.augment.<field>")."""
        if not isinstance(param, Hyperparameter):
            raise ValueError(f"SearchSpace.add takes a Hyperparameter, received {type(param).__name__}")
        return SearchSpace(self.params + (param,))

    def with_overrides(self, fix=None, ranges=None, choices=None, drop=()) -> "SearchSpace":
        """All overrides at once (the recipe's --fix/--range/--choices/--drop): `fix` maps name -> value, `ranges`
        name -> (low, high), `choices` name -> values, `drop` is a list of names. Values may be strings."""
        space = self
        for name in drop or ():
            space = space.drop(name)
        for name, (low, high) in (ranges or {}).items():
            space = space.narrow(name, low, high)
        for name, values in (choices or {}).items():
            space = space.choices(name, values)
        for name, value in (fix or {}).items():
            space = space.fix(name, value)
        return space

    def irrelevant_to(self, config: TrainConfig) -> dict:
        """{name: why} of the hyperparameters that cannot matter for `config`: aux_dropout/aux_weight without aux
        heads, finetune_blocks when training from scratch (weights=None), data.augment.* unless the base
        augmentation is an AugmentConfig (an override would replace "auto" or an AlbumentationsSpec)."""
        why = {}
        for p in self.params:
            if p.kind == "fixed":
                continue
            if p.name in ("aux_dropout", "aux_weight") and not config.aux_heads:
                why[p.name] = "aux_heads=False"
            elif p.name == "finetune_blocks" and config.weights is None:
                why[p.name] = "weights=None: training from scratch"
            elif p.name.startswith("data.augment.") and not isinstance(config.data.augment, AugmentConfig):
                aug = config.data.augment
                shown = repr(aug) if aug is None or isinstance(aug, str) else f"an {type(aug).__name__}"
                why[p.name] = f"data.augment is {shown}, not an AugmentConfig"
        return why

    def relevant_to(self, config: TrainConfig) -> "SearchSpace":
        """The space without the hyperparameters of `irrelevant_to(config)`."""
        irrelevant = self.irrelevant_to(config)
        return SearchSpace(tuple(p for p in self.params if p.name not in irrelevant))

    def fit_to_data(self, train_size: int, batch_size: int) -> tuple["SearchSpace", tuple]:
        """The space without batch sizes above the `train_size` training examples (a batch larger than the split
        trains no step), and the values dropped. ValueError when no batch size is left; `batch_size` is the base
        config's, used when the space does not tune it."""
        if "batch_size" not in self:
            if batch_size > train_size:
                raise ValueError(f"data.batch_size={batch_size} is larger than the {train_size} training examples "
                                 "and is not tuned: lower it, or tune it (--choices batch_size=8,16)")
            return self, ()
        p = self["batch_size"]
        if p.kind in ("choice", "fixed"):
            kept = tuple(v for v in p.values if v <= train_size)
            dropped = tuple(v for v in p.values if v > train_size)
            if not kept and p.kind == "choice" and batch_size <= train_size:  # small data: the base config's batch
                return self.fix("batch_size", batch_size), dropped
            if not kept:
                raise ValueError(f"hyperparameter 'batch_size': every value {list(p.values)} is larger than the "
                                 f"{train_size} training examples; pass smaller ones, e.g. --choices "
                                 f"batch_size={max(1, train_size // 4)},{max(1, train_size // 2)}")
            if not dropped:
                return self, ()
            return self._replace("batch_size", values=kept), dropped
        if p.low > train_size:
            raise ValueError(f"hyperparameter 'batch_size': the range [{p.low}, {p.high}] is above the {train_size} "
                             "training examples; narrow it (--range batch_size=LOW,HIGH)")
        if p.high <= train_size:
            return self, ()
        if p.low == train_size:
            return self.fix("batch_size", train_size), (f"{train_size + 1}-{p.high}",)
        return self._replace("batch_size", high=train_size, step=None), (f"{train_size + 1}-{p.high}",)

    def declare(self, hp: kt.HyperParameters) -> dict:
        """Registers every hyperparameter in `hp`; returns {name: current value}."""
        return {p.name: p.declare(hp) for p in self.params}

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.params)


def parse_assignment(text: str, what: str = "--fix") -> tuple[str, str]:
    """Splits a command-line "NAME=VALUE" into (NAME, VALUE); ValueError names the option and the text otherwise."""
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"{what}: expected NAME=VALUE, received {text!r}")
    return name.strip(), value.strip()


def space_overrides(fix=(), ranges=(), choices=(), drop=()) -> dict:
    """`SearchSpace.with_overrides` keyword arguments from command-line texts: fix "NAME=VALUE", ranges
    "NAME=LOW,HIGH", choices "NAME=A,B,C", drop "NAME".

    Example:
    >>> space = DEFAULT_SPACE.with_overrides(**space_overrides(fix=["batch_size=64"], ranges=["dropout=0,0.3"]))
    >>> space["batch_size"].values, space["dropout"].high
    ((64,), 0.3)
    """
    out = {"fix": dict(parse_assignment(t, "--fix") for t in fix), "ranges": {}, "choices": {}, "drop": list(drop)}
    for text in ranges:
        name, value = parse_assignment(text, "--range")
        bounds = [v.strip() for v in value.split(",")]
        if len(bounds) != 2:
            raise ValueError(f"--range: expected NAME=LOW,HIGH, received {text!r}")
        out["ranges"][name] = tuple(bounds)
    for text in choices:
        name, value = parse_assignment(text, "--choices")
        out["choices"][name] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def _block_names(variant: str) -> list[str]:
    """The 10 blocks counted by "finetune_blocks": the stem's last layer, then inception_3a .. inception_5b."""
    stem_last = specs.VARIANTS[variant].stem[-1]
    stem_last = stem_last if isinstance(stem_last, str) else stem_last.name
    return [stem_last] + [f"inception_{row.name}" for row in specs.INCEPTION_ROWS]


def tidy(value):
    """Floats rounded to 12 significant digits (KerasTuner's stepped grids give 0.30000000000000004)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


def from_tuner(name: str, value, tidy_floats: bool = True):
    """`value` as KerasTuner hands it back, in the type of hyperparameter `name`: False/True for a bool field
    (KerasTuner's Choice stores booleans as the ints 0/1, which TrainConfig refuses) and, with `tidy_floats`, floats
    tidied. Names that are no hyperparameter ("tuner/epochs", ...) keep their type."""
    try:
        kind = value_type(name)
    except ValueError:
        kind = None
    if kind is bool and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return tidy(value) if tidy_floats else value


def config_fields(values: dict, variant: str = "cifar") -> dict:
    """Translates hyperparameter values into TrainConfig changes: {"field": v} and {"data.field": v} entries.

    Raises ValueError for a name that is neither a TrainConfig field, "data.<field>", "data.augment.<field>", nor a
    derived name.
    """
    out = {}
    for name, value in values.items():
        if name.startswith("tuner/"):  # Hyperband bookkeeping
            continue
        value = from_tuner(name, value)
        if name == "batch_size":
            out["data.batch_size"] = int(value)
        elif name == "optimizer":
            if value not in OPTIMIZER_CHOICES:
                raise ValueError(f"hyperparameter 'optimizer' must be one of {OPTIMIZER_CHOICES}, received {value!r}")
            out["optimizer"] = "sgd" if value.startswith("sgd") else value
            if value.startswith("sgd"):
                out["nesterov"] = value == "sgd_nesterov"
        elif name == "finetune_blocks":
            k = int(value)
            if not 0 <= k <= NUM_BLOCKS:
                raise ValueError(f"hyperparameter 'finetune_blocks' must be in [0, {NUM_BLOCKS}], received {k}")
            out["freeze_until"] = None if k == NUM_BLOCKS else _block_names(variant)[NUM_BLOCKS - k - 1]
        else:
            value_type(name)  # the one rule for what names a field: ValueError naming `name` otherwise
            out[name] = value
    return out


def config_from_values(base: TrainConfig, values: dict) -> TrainConfig:
    """`base` with the hyperparameter `values` applied (a new, validated TrainConfig; `base` is unchanged)."""
    return with_overrides(copy.deepcopy(base), config_fields(values, base.variant))


# The search space, in one place. Names are TrainConfig fields unless noted (see `Hyperparameter`).
DEFAULT_SPACE = SearchSpace((
    Hyperparameter("learning_rate", "float", low=1e-4, high=0.3, log=True, help="peak learning rate"),
    Hyperparameter("batch_size", "choice", values=(32, 64, 128, 256), help="global batch size (data.batch_size)"),
    Hyperparameter("weight_decay", "float", low=1e-6, high=1e-2, log=True, help="L2 / decoupled weight decay"),
    Hyperparameter("dropout", "float", low=0.0, high=0.7, step=0.1, help="dropout before the main classifier"),
    Hyperparameter("aux_dropout", "float", low=0.3, high=0.8, step=0.1, help="dropout inside the aux heads"),
    Hyperparameter("optimizer", "choice", values=("sgd_nesterov", "adam", "adamw"),
                   help="SGD + Nesterov momentum, Adam or AdamW"),
    Hyperparameter("aux_weight", "float", low=0.0, high=0.6, step=0.1, help="loss weight of each aux head"),
    Hyperparameter("label_smoothing", "float", low=0.0, high=0.2, step=0.05, help="label smoothing"),
    Hyperparameter("finetune_blocks", "int", low=0, high=NUM_BLOCKS,
                   help="trained last blocks of 10 (stem + 9 inception modules); 10 = all (sets freeze_until)"),
    Hyperparameter("ema", "choice", values=(False, True), help="evaluate and keep an EMA of the weights"),
))
# Augmentation strength is tunable with DEFAULT_SPACE.add(Hyperparameter("data.augment.randaugment_magnitude", ...))
# etc., not by default: the default base augmentation is "auto" (the source's preset), which an override of one
# AugmentConfig field would replace by AugmentConfig() (relevant_to drops data.augment.* for such a base).
