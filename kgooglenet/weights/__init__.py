"""ImageNet weights for GoogLeNet: converters from Caffe (`caffe.convert_caffe`) and torchvision
(`torchvision.convert_torchvision`), the local cache of named sets (`cache`), the class index and `decode_predictions`
(`imagenet`), and per-layer parity against the source frameworks (`parity`).

Submodules are imported on use (the converters need TensorFlow, torch or OpenCV), except these light ones.
"""

from kgooglenet.weights.cache import NAMED_WEIGHTS, resolve_weights
from kgooglenet.weights.imagenet import decode_predictions

__all__ = ["NAMED_WEIGHTS", "decode_predictions", "resolve_weights"]
