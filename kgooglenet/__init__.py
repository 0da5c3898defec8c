"""kgooglenet: GoogLeNet (Inception v1) for Keras 3 on TensorFlow."""

from kgooglenet.model import (
    GoogLeNet,
    aux_compile_args,
    aux_targets,
    feature_extractor,
    features,
    inference_model,
)

__version__ = "0.1.0"

__all__ = [
    "GoogLeNet",
    "aux_compile_args",
    "aux_targets",
    "feature_extractor",
    "features",
    "inference_model",
]
