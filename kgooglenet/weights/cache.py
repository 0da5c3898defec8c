"""Where weights files are found: a path, or a named set ("imagenet-caffe", "imagenet-torchvision") in the cache."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    path: str  # the .weights.h5 file
    preprocessing: object = None  # a kgooglenet.specs.Preprocessing read from the JSON sidecar, or None


def resolve_weights(weights, variant: str) -> ResolvedWeights | None:
    """The weights file for `GoogLeNet(weights=...)`, checked to exist; None for `weights=None`."""
    if weights is None:
        return None
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`weights`: no file at {path!r}. Pass None (random initialization) or the path of a .weights.h5 file."
        )
    return ResolvedWeights(path)
