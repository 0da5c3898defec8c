"""kgooglenet: GoogLeNet (Inception v1) for Keras 3 on TensorFlow.

Public names: `GoogLeNet` and its helpers, `preprocess_input` / `decode_predictions` (keras.applications' pair),
`make_datasets`/`DataConfig`, `TrainConfig`, `export_savedmodel`, `load_model`/`model_info` (a run directory or
`.keras` file), the converters; the packages `kgooglenet.train` (`train`), `kgooglenet.evaluate` (`evaluate`, crops,
ensembles) and `kgooglenet.predict`, each holding the function of its own name: `kgooglenet.train.train(config)`.
"""

from kgooglenet.model import (
    GoogLeNet,
    aux_compile_args,
    aux_targets,
    feature_extractor,
    features,
    inference_model,
    preprocess_input,
)
from kgooglenet import evaluate, predict, train  # packages: kgooglenet.train.train(config)  # noqa: I001
from kgooglenet.data import DataConfig, make_datasets
from kgooglenet.export import export_savedmodel
from kgooglenet.saving import load_model, model_info
from kgooglenet.train import TrainConfig
from kgooglenet.weights import decode_predictions
from kgooglenet.weights.caffe import convert_caffe
from kgooglenet.weights.conversion import package_version
from kgooglenet.weights.torchvision import convert_torchvision

__version__ = package_version()  # from the installed package metadata (pyproject.toml is the single source)

__all__ = [
    "GoogLeNet",
    "aux_compile_args",
    "aux_targets",
    "feature_extractor",
    "features",
    "inference_model",
    "preprocess_input",
    "decode_predictions",
    "DataConfig",
    "make_datasets",
    "train",
    "TrainConfig",
    "export_savedmodel",
    "load_model",
    "model_info",
    "convert_caffe",
    "convert_torchvision",
    "evaluate",
    "predict",
]
