"""kgooglenet: GoogLeNet (Inception v1) for Keras 3 on TensorFlow.

Public names: `GoogLeNet` and its helpers, `make_datasets`/`DataConfig`, `train`/`TrainConfig` (`kgooglenet.train` is
the training package and is itself callable: `kgooglenet.train(config)`), `export_savedmodel`, `decode_predictions`,
the converters; the modules `kgooglenet.evaluate` (`evaluate`, crops, ensembles) and `kgooglenet.predict`.
"""

from kgooglenet.model import (
    GoogLeNet,
    aux_compile_args,
    aux_targets,
    feature_extractor,
    features,
    inference_model,
)

__version__ = "0.1.0"

# Imported after __version__ (the converters record it); all of these are light next to TensorFlow itself.
from kgooglenet import evaluate, predict, train  # noqa: E402  (modules; kgooglenet.train is callable)
from kgooglenet.data import DataConfig, make_datasets  # noqa: E402
from kgooglenet.export import export_savedmodel  # noqa: E402
from kgooglenet.train import TrainConfig  # noqa: E402
from kgooglenet.weights import decode_predictions  # noqa: E402
from kgooglenet.weights.caffe import convert_caffe  # noqa: E402
from kgooglenet.weights.torchvision import convert_torchvision  # noqa: E402

__all__ = [
    "GoogLeNet",
    "aux_compile_args",
    "aux_targets",
    "feature_extractor",
    "features",
    "inference_model",
    "DataConfig",
    "make_datasets",
    "train",
    "TrainConfig",
    "export_savedmodel",
    "decode_predictions",
    "convert_caffe",
    "convert_torchvision",
    "evaluate",
    "predict",
]
