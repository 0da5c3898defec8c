"""The training configuration: one dataclass, every field commented, round-tripping through JSON.

`TrainConfig` holds everything `kgooglenet.train.train(config)` needs: the data (`kgooglenet.data.DataConfig`), the
model, the optimizer and schedule, precision and distribution strategy, where outputs go, fine-tuning and adversarial
training. `to_json(path)` / `TrainConfig.from_json(path)` round-trip it through a file, so a config written by the tuner
(or by hand) is what `python recipes/train.py --config FILE` runs.

Example:
```python
from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig, train

config = TrainConfig(data=DataConfig(batch_size=64), variant="cifar", width=0.25, epochs=10, out_dir="runs/digits")
config.to_json("runs/digits.json")                      # same run later: recipes/train.py --config runs/digits.json
result = train(config)
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from kgooglenet.data.config import AlbumentationsSpec, AugmentConfig, ConfigError, DataConfig, Field, validate
from kgooglenet.saving import atomic_write
from kgooglenet.specs import PREPROCESSING, VARIANTS

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "poly", "cosine", "plateau")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")


@dataclass
class TrainConfig:
    """Everything one training run needs. See the module docstring for an example.

    Learning-rate schedules (`schedule`), all per step and preceded by `warmup_epochs` of linear warmup from 0:
      - "constant": `learning_rate` throughout;
      - "step": the paper's step decay, lr * `step_decay_rate` ** floor(epoch / `step_decay_epochs`) (0.96 every 8
        epochs = "decreasing the learning rate by 4% every 8 epochs");
      - "poly": Caffe's "quick" solver policy, lr * (1 - step / total_steps) ** `poly_power` (power 0.5 in
        bvlc_googlenet's quick_solver.prototxt);
      - "cosine": cosine decay to `min_learning_rate` over the run after warmup;
      - "plateau": constant, multiplied by `plateau_factor` when `monitor` has not improved for `plateau_patience`
        epochs (keras.callbacks.ReduceLROnPlateau).
    """

    # --- data -------------------------------------------------------------------------------------------------------
    data: DataConfig = field(default_factory=DataConfig)  # where the images come from; data.batch_size is the GLOBAL batch

    # --- model ------------------------------------------------------------------------------------------------------
    variant: str = "cifar"  # GoogLeNet variant: "paper", "bn" or "cifar" (see kgooglenet.specs.VARIANTS)
    width: float = 1.0  # channel multiplier (1.0 = the real model; 0.25 trains digits in about a minute)
    aux_heads: bool = True  # train with the two auxiliary classifiers (on 4a and 4d), as in the paper
    aux_weight: float = 0.3  # loss weight of each aux head (the paper's 0.3); the main head has weight 1
    num_classes: int | None = None  # classes of all three classifiers; None = the dataset's class count
    weights: str | None = None  # initial weights: None (random), a .weights.h5 path or "imagenet-caffe"/"imagenet-torchvision"; classifiers with another class count are re-initialized (fine-tuning)
    dropout: float | None = None  # dropout before the main classifier; None = the variant's (0.4 paper, 0.2 bn/cifar)
    aux_dropout: float | None = None  # dropout inside the aux heads; None = 0.7
    preprocessing: str | None = "auto"  # the model's input normalization: "auto" (variant/weights default), "caffe", "torchvision", "imagenet", "unit" or None

    # --- optimizer --------------------------------------------------------------------------------------------------
    optimizer: str = "sgd"  # "sgd" (momentum, optionally Nesterov), "adam" or "adamw"
    learning_rate: float = 0.05  # peak learning rate (after warmup) for the global batch
    momentum: float = 0.9  # SGD momentum (the paper: 0.9)
    nesterov: bool = False  # SGD: Nesterov momentum
    weight_decay: float = 5e-4  # SGD/Adam: L2 penalty added to the gradient of kernels (Caffe's weight_decay, 2e-4 in the paper's solver); AdamW: decoupled decay coefficient
    decay_all: bool = False  # also decay biases and BatchNorm gamma/beta (Caffe decays every blob with decay_mult 1; modern recipes skip them)
    label_smoothing: float = 0.0  # label smoothing of the cross-entropy (0 = off, 0.1 is common)
    clipnorm: float | None = None  # clip each gradient to this norm; None = no clipping
    gradient_accumulation_steps: int = 1  # average the gradients of this many batches of data.batch_size before each update (Keras' optimizer option): the step of one batch this many times larger; 1 = off. steps_per_epoch and the schedule count batches
    ema: bool = False  # keep an exponential moving average of the weights (Keras' optimizer use_ema); validation, the best/last checkpoints and the returned model use it, the training weights go on training
    ema_decay: float = 0.999  # EMA: average = decay * average + (1 - decay) * weights after every batch (Keras' ema_momentum; Keras has no EMA warmup: the first step starts the average at the weights)

    # --- learning-rate schedule -------------------------------------------------------------------------------------
    schedule: str = "cosine"  # "constant", "step", "poly", "cosine" or "plateau" (see the class docstring)
    warmup_epochs: float = 0.0  # linear warmup from 0 to learning_rate over this many epochs (fractions allowed)
    step_decay_rate: float = 0.96  # "step": multiply the lr by this ...
    step_decay_epochs: float = 8.0  # ... every this many epochs
    poly_power: float = 0.5  # "poly": exponent of (1 - progress)
    min_learning_rate: float = 0.0  # "cosine": final lr; "plateau": lower bound
    plateau_factor: float = 0.1  # "plateau": multiply the lr by this when the monitored metric stalls
    plateau_patience: int = 3  # "plateau": epochs without improvement before reducing

    # --- run length -------------------------------------------------------------------------------------------------
    epochs: int = 10  # total epochs (a resumed run continues up to the same total)
    steps_per_epoch: int | None = None  # training steps per epoch; None = one pass over the training split
    validation_steps: int | None = None  # validation steps per epoch; None = the whole validation split
    steps_per_execution: int = 1  # training steps run per tf.function call in fit (larger amortizes Python overhead; progress/callbacks update less often)

    # --- hardware ---------------------------------------------------------------------------------------------------
    precision: str = "float32"  # "float32", "mixed_float16" (loss scaling; float32 logits/softmax), "mixed_bfloat16" (1.4x faster than float32 at 224 on an AVX512-BF16 CPU, 8x slower on one without) or "auto" (mixed_bfloat16 where the hardware computes bfloat16 natively, else float32: `strategy.resolve_precision`)
    strategy: str = "auto"  # "auto" (multiworker if TF_CONFIG names several workers, mirrored if several GPUs, else default), "default", "mirrored" (all local GPUs, or `devices`), "multiworker" (TF_CONFIG; custom training loop)
    devices: list[str] | None = None  # "mirrored": explicit device list (e.g. ["/cpu:0", "/cpu:1"] with logical CPUs); None = all local GPUs
    jit_compile: Any = "auto"  # XLA: "auto" (Keras' choice: off on CPU and under a strategy), True or False
    seed: int | None = 0  # seeds Python, NumPy, TensorFlow and Keras (weight init, dropout); None = unseeded

    # --- outputs ----------------------------------------------------------------------------------------------------
    out_dir: str = "runs/googlenet"  # run directory: checkpoints/, logs/ (TensorBoard), history.csv, train.log, plots/, config.json
    resume: bool = True  # continue an interrupted run found in out_dir (from its last completed epoch); False starts over
    monitor: str = "val_accuracy"  # metric for the best checkpoint, early stopping and "plateau" (main-head accuracy; "val_loss" also works)
    early_stopping_patience: int | None = None  # stop after this many epochs without improvement of `monitor`; None = never
    early_stopping_min_delta: float = 0.0  # minimum change of `monitor` that counts as an improvement
    tensorboard: bool = True  # write TensorBoard logs to out_dir/logs
    keep_epoch_checkpoints: int = 0  # also keep the weights of the last this many epochs as checkpoints/epoch_NNNN.weights.h5 (for `python -m kgooglenet average-checkpoints`); 0 = none
    plots: bool = True  # write PNG plots (loss, accuracy, learning rate per epoch) to out_dir/plots
    verbose: int = 1  # console progress: 0 silent, 1 progress bar, 2 one line per epoch

    # --- fine-tuning ------------------------------------------------------------------------------------------------
    freeze_until: str | None = None  # freeze every layer up to and including this one (e.g. "inception_4e"); None = train all
    lr_mult: dict[str, float] = field(default_factory=dict)  # Caffe-style per-layer lr multipliers by layer name, e.g. {"classifier": 10, "aux1_head": 10, "aux2_head": 10}; 0 freezes the layer; others 1
    freeze_bn: bool = False  # keep every BatchNorm layer in inference mode with its statistics and gamma/beta frozen

    # --- adversarial training ---------------------------------------------------------------------------------------
    adversarial: bool = False  # mix FGSM adversarial examples into each training batch
    fgsm_epsilon: float = 2.0  # FGSM step in pixel units of the [0, 255] input (x_adv = clip(x + eps * sign(grad), 0, 255))
    adversarial_fraction: float = 0.5  # fraction of each batch replaced by its adversarial version

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = _data_config_from_dict(self.data)
        validate(self, TRAIN_RULES)
        self.lr_mult = {str(k): float(v) for k, v in self.lr_mult.items()}
        if (self.schedule == "plateau" and self.precision == "mixed_float16"
                and any(v not in (0.0, 1.0) for v in self.lr_mult.values())):
            raise ValueError(
                "TrainConfig: schedule='plateau' with precision='mixed_float16' and lr_mult values other than 0 and 1 "
                "is not supported (Keras' ReduceLROnPlateau cannot reach the per-multiplier optimizers through the "
                "loss-scale optimizer); use schedule 'step', 'poly' or 'cosine', or precision 'mixed_bfloat16'"
            )

    # --- (de)serialization ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (nested `data`, augmentation as a dict). Raises ValueError for in-memory array data."""
        if self.data.train_arrays is not None or self.data.val_arrays is not None:
            raise ValueError(
                "TrainConfig.to_dict: data.source='arrays' holds in-memory arrays (data.train_arrays/val_arrays) that "
                "cannot be written to JSON; save them to a folder or TFRecords (python -m kgooglenet prepare) first"
            )
        out = dataclasses.asdict(self)
        augment = self.data.augment
        if isinstance(augment, AlbumentationsSpec):
            out["data"]["augment"] = {"transforms": list(augment.transforms), **{
                k: v for k, v in dataclasses.asdict(augment).items() if k != "transforms"}}
        return out

    def to_json(self, path: str | None = None) -> str:
        """The config as indented JSON; also written to `path` when given (directories are created)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False)
        if path is not None:
            def write(tmp):
                with open(tmp, "w") as f:
                    f.write(text + "\n")

            atomic_write(path, write)
        return text

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of `to_dict`. Unknown keys raise ValueError (a typo must not be silently ignored)."""
        if not isinstance(values, dict):
            raise ValueError(f"TrainConfig.from_dict expects a dict, received {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        values = dict(values)
        if "data" in values and isinstance(values["data"], dict):
            values["data"] = _data_config_from_dict(values["data"])
        return cls(**values)

    @classmethod
    def from_json(cls, path_or_text: str) -> "TrainConfig":
        """Read a config from a JSON file path (or a JSON string starting with "{")."""
        text = path_or_text
        if not path_or_text.lstrip().startswith("{"):
            if not os.path.isfile(path_or_text):
                raise FileNotFoundError(f"TrainConfig.from_json: no config file at {path_or_text!r}")
            with open(path_or_text) as f:
                text = f.read()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"TrainConfig.from_json: {path_or_text!r} is not valid JSON: {e}") from e
        return cls.from_dict(values)


def _lr_mult(value) -> str:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        for k, v in value.items())
    return "" if ok else "a dict of layer name -> multiplier >= 0 (0 freezes the layer)"


def _is_data(value) -> str:
    return "" if isinstance(value, DataConfig) else "a kgooglenet.data.DataConfig (or a dict of its fields)"


# One rule per field (see kgooglenet.data.config.Field); a new TrainConfig field adds its line here.
TRAIN_RULES = {
    "data": Field("any", check=_is_data),
    "variant": Field("choice", choices=tuple(VARIANTS)),
    "width": Field("float", low=0.0, low_open=True),
    "aux_heads": Field("bool"),
    "aux_weight": Field("float", low=0.0),
    "num_classes": Field("int", low=1, optional=True),
    "weights": Field("str", optional=True),
    "dropout": Field("float", low=0.0, high=1.0, high_open=True, optional=True),
    "aux_dropout": Field("float", low=0.0, high=1.0, high_open=True, optional=True),
    "preprocessing": Field("choice", choices=("auto", *PREPROCESSING), optional=True),
    "optimizer": Field("choice", choices=OPTIMIZERS),
    "learning_rate": Field("float", low=0.0, low_open=True),
    "momentum": Field("float", low=0.0, high=1.0, high_open=True),
    "nesterov": Field("bool"),
    "weight_decay": Field("float", low=0.0),
    "decay_all": Field("bool"),
    "label_smoothing": Field("float", low=0.0, high=1.0, high_open=True),
    "clipnorm": Field("float", low=0.0, low_open=True, optional=True),
    "schedule": Field("choice", choices=SCHEDULES),
    "warmup_epochs": Field("float", low=0.0),
    "step_decay_rate": Field("float", low=0.0, high=1.0, low_open=True),
    "step_decay_epochs": Field("float", low=0.0, low_open=True),
    "poly_power": Field("float", low=0.0),
    "min_learning_rate": Field("float", low=0.0),
    "plateau_factor": Field("float", low=0.0, high=1.0, low_open=True, high_open=True),
    "plateau_patience": Field("int", low=0),
    "epochs": Field("int", low=1),
    "steps_per_epoch": Field("int", low=1, optional=True),
    "validation_steps": Field("int", low=1, optional=True),
    "steps_per_execution": Field("int", low=1),
    "gradient_accumulation_steps": Field("int", low=1),
    "ema": Field("bool"),
    "ema_decay": Field("float", low=0.0, high=1.0, low_open=True, high_open=True),
    "precision": Field("choice", choices=PRECISIONS),
    "strategy": Field("choice", choices=STRATEGIES),
    "devices": Field("strs", optional=True),
    "jit_compile": Field("choice", choices=("auto", True, False)),
    "seed": Field("int", low=0, optional=True),
    "out_dir": Field("str"),
    "resume": Field("bool"),
    "keep_epoch_checkpoints": Field("int", low=0),
    "monitor": Field("str"),
    "early_stopping_patience": Field("int", low=1, optional=True),
    "early_stopping_min_delta": Field("float", low=0.0),
    "tensorboard": Field("bool"),
    "plots": Field("bool"),
    "verbose": Field("choice", choices=(0, 1, 2)),
    "freeze_until": Field("str", optional=True),
    "lr_mult": Field("any", check=_lr_mult),
    "freeze_bn": Field("bool"),
    "adversarial": Field("bool"),
    "fgsm_epsilon": Field("float", low=0.0),
    "adversarial_fraction": Field("float", low=0.0, high=1.0, low_open=True),
}


def with_overrides(config: TrainConfig, overrides: dict) -> TrainConfig:
    """`config` with dotted-name overrides applied ({"epochs": 3, "data.batch_size": 64, "data.augment.hue": 0.1}),
    each checked like a constructor argument; an unknown name raises ValueError naming it."""
    top, data, augment = {}, {}, {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    aug_fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1 and key in fields and key != "data":
            top[key] = value
        elif len(parts) == 2 and parts[0] == "data" and parts[1] in data_fields:
            data[parts[1]] = value
        elif len(parts) == 3 and parts[:2] == ["data", "augment"] and parts[2] in aug_fields:
            augment[parts[2]] = value
        else:
            raise ConfigError(f"TrainConfig: unknown field {key!r} (received {key}={value!r}); expected a TrainConfig "
                             f"field, data.<DataConfig field> or data.augment.<AugmentConfig field>")
    if augment:
        base = config.data.augment
        data["augment"] = (dataclasses.replace(base, **augment) if isinstance(base, AugmentConfig)
                           else AugmentConfig(**augment))
    if data:
        top["data"] = dataclasses.replace(config.data, **data)
    return dataclasses.replace(config, **top)


def _tuple_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}


def _data_config_from_dict(values: dict) -> DataConfig:
    known = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"TrainConfig.data: unknown keys {unknown}; expected some of {sorted(known)}")
    values = dict(values)
    augment = values.get("augment")
    if isinstance(augment, dict):
        if "transforms" in augment:
            values["augment"] = AlbumentationsSpec.from_dict(augment)
        else:
            unknown = sorted(set(augment) - {f.name for f in dataclasses.fields(AugmentConfig)})
            if unknown:
                raise ConfigError(f"TrainConfig.data.augment: unknown keys {unknown}; expected some of "
                                 f"{sorted(f.name for f in dataclasses.fields(AugmentConfig))}")
            tuples = _tuple_fields(AugmentConfig)
            values["augment"] = AugmentConfig(
                **{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in augment.items()})
    return DataConfig(**values)
