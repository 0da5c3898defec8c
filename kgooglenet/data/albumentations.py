"""Declarative albumentations pipelines (2.x API) run inside tf.data.

`build_compose(spec)` turns an `AlbumentationsSpec` (or the plain dict / list it is made from) into an
`A.Compose`, naming the transform in every error. `apply_albumentations` runs it on one decoded image
under `tf.numpy_function` with a per-element seed and gives the result its static shape back.

Seeding: albumentations keeps its random state in each transform (`random_generator`, `py_random`),
which `Compose.set_random_seed(seed)` resets. tf.data calls the function from several threads at once,
so each thread gets its own Compose (built from the same spec) and reseeds it before every element:
the output then depends only on (image, element seed), never on thread scheduling.
"""

from __future__ import annotations

import inspect
import threading

import numpy as np
import tensorflow as tf

from kgooglenet.data.config import AlbumentationsSpec

_REFUSED = {
    "Normalize": "kgooglenet models normalize inside themselves and validation batches do not go through the "
                 "spec; set AlbumentationsSpec(mean=..., std=...) to normalize train and val in the pipeline",
    "ToTensorV2": "tf.data batches stay NHWC float32; there is nothing to convert",
    "ToTensor": "tf.data batches stay NHWC float32; there is nothing to convert",
}
_COMPOSITIONS = ("Compose", "OneOf", "SomeOf", "Sequential", "OneOrOther", "SelectiveChannelTransform")


def _albumentations():
    import albumentations as A  # imported lazily: it pulls in cv2

    return A


def _parse_item(item, where: str):
    """Return (name, kwargs) from {"Name": {...}} or {"type": "Name", ...}."""
    if isinstance(item, dict) and "type" in item:
        kwargs = dict(item)
        name = kwargs.pop("type")
    elif isinstance(item, dict) and len(item) == 1:
        (name, kwargs), = item.items()
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, dict):
            raise ValueError(f"albumentations spec {where}: arguments of {name!r} must be a dict, received {kwargs!r}")
        kwargs = dict(kwargs)
    else:
        raise ValueError(f"albumentations spec {where}: expected {{'Name': {{args}}}} or {{'type': 'Name', ...}}, "
                         f"received {item!r}")
    if not isinstance(name, str):
        raise ValueError(f"albumentations spec {where}: transform name must be a string, received {name!r}")
    return name, kwargs


def _tuplify(kwargs: dict) -> dict:
    # YAML gives lists where albumentations 2.x wants tuples (size=(h, w), scale=(lo, hi))
    return {k: tuple(v) if isinstance(v, list) and k != "transforms" else v for k, v in kwargs.items()}


def _build(item, where: str, strict: bool = True):
    A = _albumentations()
    name, kwargs = _parse_item(item, where)
    cls = getattr(A, name, None)
    if cls is None or not inspect.isclass(cls) or not issubclass(cls, A.BasicTransform if name not in _COMPOSITIONS
                                                                  else A.BaseCompose):
        raise ValueError(f"albumentations spec {where}: unknown transform {name!r} "
                         f"(albumentations {A.__version__} has no such transform class)")
    if name in _REFUSED:
        raise ValueError(f"albumentations spec {where}: {name} is not allowed here: {_REFUSED[name]}")
    kwargs = _tuplify(kwargs)
    if name in _COMPOSITIONS:
        children = kwargs.pop("transforms", None)
        if not isinstance(children, list):
            raise ValueError(f"albumentations spec {where}: {name} needs a 'transforms' list, received {children!r}")
        kwargs["transforms"] = [_build(c, f"{where} > {name}[{i}]", strict) for i, c in enumerate(children)]
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_kwargs:
        allowed = sorted(k for k in params if k not in ("self", "args", "kwargs"))
        raise ValueError(f"albumentations spec {where}: {name} got unknown argument(s) {unknown}; "
                         f"{name} accepts {allowed}")
    if not strict:
        return cls(**kwargs)
    try:
        import warnings

        # albumentations 2.x warns (not raises) on arguments it ignores: make that an error. This mutates
        # the process-wide warning filters, so it only runs once, in the caller's thread (build_compose).
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return cls(**kwargs)
    except Exception as e:  # pydantic ValidationError, TypeError, ValueError, UserWarning
        raise ValueError(f"albumentations spec {where}: bad argument for {name}({kwargs}): {e}") from e


def build_compose(spec: AlbumentationsSpec | dict | list, seed: int | None = None, *, strict: bool = True):
    """Build an `A.Compose` from a spec; errors name the offending transform.

    Args:
        spec: AlbumentationsSpec, or the dict / list `AlbumentationsSpec.from_dict` accepts.
        seed: optional seed of the Compose's random state.
        strict: turn albumentations' warnings about ignored/deprecated arguments into ValueErrors
            (changes the global warning filters while building: use strict=False in worker threads).

    Example:
    ```python
    compose = build_compose([{"RandomCrop": {"height": 24, "width": 24}}, {"HorizontalFlip": {"p": 0.5}}])
    ```
    """
    if not isinstance(spec, AlbumentationsSpec):
        spec = AlbumentationsSpec.from_dict(spec)
    if not isinstance(spec.transforms, list) or not spec.transforms:
        raise ValueError(f"albumentations spec: 'transforms' must be a non-empty list, received {spec.transforms!r}")
    A = _albumentations()
    transforms = [_build(item, f"transforms[{i}]", strict) for i, item in enumerate(spec.transforms)]
    return A.Compose(transforms, p=spec.p, seed=seed)


class _ThreadLocalCompose:
    """One Compose per calling thread, reseeded per element."""

    def __init__(self, spec: AlbumentationsSpec, image_size: int):
        build_compose(spec)  # validate eagerly, in the caller's thread
        self.spec = spec
        self.image_size = image_size
        self.local = threading.local()

    def __call__(self, image: np.ndarray, seed: np.ndarray) -> np.ndarray:
        compose = getattr(self.local, "compose", None)
        if compose is None:
            compose = self.local.compose = build_compose(self.spec, strict=False)
        # a 32-bit seed from the element's two int64 seed words
        s = ((int(seed[0]) * 0x9E3779B97F4A7C15) ^ int(seed[1])) % (2**32)
        compose.set_random_seed(s)
        out = compose(image=np.ascontiguousarray(image))["image"]
        if out.ndim == 2:
            out = out[:, :, None]
        if out.shape[-1] == 1:
            out = np.repeat(out, 3, axis=-1)
        size = self.image_size
        if out.shape[:2] != (size, size):
            import cv2

            out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
        return out.astype(np.float32)


def albumentations_fn(spec: AlbumentationsSpec, image_size: int):
    """A TF function `(uint8 image [H, W, 3], int64 seed [2]) -> float32 [image_size, image_size, 3]`."""
    fn = _ThreadLocalCompose(spec, image_size)

    def apply(image, seed):
        out = tf.numpy_function(fn, [image, tf.cast(seed, tf.int64)], tf.float32, stateful=False)
        return tf.ensure_shape(out, [image_size, image_size, 3])  # numpy_function loses the static shape

    return apply
