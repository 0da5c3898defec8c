"""ImageNet weights for GoogLeNet: converters from Caffe (`caffe.convert_caffe`) and torchvision
(`torchvision.convert_torchvision`, with or without torch: `torch_zip`), the named sets and their files (`named`), the
resolver that downloads, checks, converts and caches them on first use (`cache`), the class index and
`decode_predictions` (`imagenet`), and per-layer parity against the source frameworks (`parity`).

Submodules not imported here are imported on use (parity needs torch or OpenCV).
"""

from kgooglenet.weights.cache import NAMED_WEIGHTS, fetch, resolve_weights
from kgooglenet.weights.imagenet import decode_predictions

__all__ = ["NAMED_WEIGHTS", "decode_predictions", "fetch", "resolve_weights"]
