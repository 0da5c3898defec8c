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

from kgooglenet.data.config import AlbumentationsSpec, AugmentConfig, DataConfig

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "poly", "cosine", "plateau")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
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
    precision: str = "float32"  # "float32", "mixed_float16" (loss scaling; float32 logits/softmax) or "mixed_bfloat16" (1.4x faster than float32 at 224 on this AVX512-BF16 CPU)
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
        if not isinstance(self.data, DataConfig):
            raise ValueError(f"TrainConfig.data must be a kgooglenet.data.DataConfig, got {type(self.data).__name__}")
        choices = {
            "variant": ("paper", "bn", "cifar"),
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "precision": PRECISIONS,
            "strategy": STRATEGIES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = {"width": self.width, "learning_rate": self.learning_rate, "epochs": self.epochs,
                    "steps_per_execution": self.steps_per_execution}
        for name, value in positive.items():
            if value is None or value <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {value!r}")
        for name in ("steps_per_epoch", "validation_steps", "num_classes", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name} must be None or >= 1, got {value!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.weight_decay < 0 or self.aux_weight < 0 or self.warmup_epochs < 0:
            raise ValueError(
                "TrainConfig.weight_decay, aux_weight and warmup_epochs must be >= 0, got "
                f"{self.weight_decay!r}, {self.aux_weight!r}, {self.warmup_epochs!r}"
            )
        if not 0.0 < self.adversarial_fraction <= 1.0:
            raise ValueError(f"TrainConfig.adversarial_fraction must be in (0, 1], got {self.adversarial_fraction!r}")
        if self.fgsm_epsilon < 0:
            raise ValueError(f"TrainConfig.fgsm_epsilon must be >= 0 (pixels), got {self.fgsm_epsilon!r}")
        if not isinstance(self.lr_mult, dict) or any(float(v) < 0 for v in self.lr_mult.values()):
            raise ValueError(f"TrainConfig.lr_mult must be a dict of layer name -> multiplier >= 0, got {self.lr_mult!r}")
        self.lr_mult = {str(k): float(v) for k, v in self.lr_mult.items()}
        if (self.schedule == "plateau" and self.precision == "mixed_float16"
                and any(v not in (0.0, 1.0) for v in self.lr_mult.values())):
            raise ValueError(
                "TrainConfig: schedule='plateau' with precision='mixed_float16' and lr_mult values other than 0 and 1 "
                "is not supported (Keras' ReduceLROnPlateau cannot reach the per-multiplier optimizers through the "
                "loss-scale optimizer); use schedule 'step', 'poly' or 'cosine', or precision 'mixed_bfloat16'"
            )
        if not isinstance(self.gradient_accumulation_steps, int) or self.gradient_accumulation_steps < 1:
            raise ValueError(f"TrainConfig.gradient_accumulation_steps must be an int >= 1 (1 = off), got {self.gradient_accumulation_steps!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1) (e.g. 0.999), got {self.ema_decay!r}")
        if not isinstance(self.keep_epoch_checkpoints, int) or self.keep_epoch_checkpoints < 0:
            raise ValueError(f"TrainConfig.keep_epoch_checkpoints must be an int >= 0 (0 = none), got {self.keep_epoch_checkpoints!r}")
        if self.jit_compile not in ("auto", True, False):
            raise ValueError(f"TrainConfig.jit_compile must be 'auto', True or False, got {self.jit_compile!r}")

    # --- (de)serialization ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (nested `data`, augmentation as a dict). Raises ValueError for in-memory array data."""
        if self.data.train_arrays is not None or self.data.val_arrays is not None:
            raise ValueError(
                "TrainConfig.to_dict: data.source='arrays' holds in-memory arrays (data.train_arrays/val_arrays) that "
                "cannot be written to JSON; save them to a folder or TFRecords (python -m kgooglenet.prepare) first"
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
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of `to_dict`. Unknown keys raise ValueError (a typo must not be silently ignored)."""
        if not isinstance(values, dict):
            raise ValueError(f"TrainConfig.from_dict expects a dict, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {unknown}; expected some of {sorted(known)}")
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


def _tuple_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}


def _data_config_from_dict(values: dict) -> DataConfig:
    known = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"TrainConfig.data: unknown keys {unknown}; expected some of {sorted(known)}")
    values = dict(values)
    augment = values.get("augment")
    if isinstance(augment, dict):
        if "transforms" in augment:
            values["augment"] = AlbumentationsSpec.from_dict(augment)
        else:
            tuples = _tuple_fields(AugmentConfig)
            values["augment"] = AugmentConfig(
                **{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in augment.items()})
    return DataConfig(**values)
