"""kgooglenet: GoogLeNet (Inception v1) for Keras 3 on TensorFlow.

The model names are imported here; the heavier entry points (training pulls in tf.data and TFDS) are loaded on first
use, so `import kgooglenet` stays quick.
"""

import importlib

from kgooglenet.model import (
    GoogLeNet,
    aux_compile_args,
    aux_targets,
    feature_extractor,
    features,
    inference_model,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "make_datasets": "kgooglenet.data",
    "DataConfig": "kgooglenet.data",
    "train": "kgooglenet.train",
    "TrainConfig": "kgooglenet.train",
    "evaluate": "kgooglenet.evaluate",
    "export_savedmodel": "kgooglenet.export",
    "predict": "kgooglenet.predict",
    "decode_predictions": "kgooglenet.weights",
    "convert_caffe": "kgooglenet.weights.caffe",
    "convert_torchvision": "kgooglenet.weights.torchvision",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kgooglenet' has no attribute {name!r}")


__all__ = [
    "GoogLeNet",
    "aux_compile_args",
    "aux_targets",
    "feature_extractor",
    "features",
    "inference_model",
    *_LAZY,
]
