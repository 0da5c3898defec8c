"""Where the weights of `GoogLeNet(weights=...)` come from: a path, or a named ImageNet set ("imagenet" = the variant's
own, "imagenet-caffe", "imagenet-torchvision") in the cache folder `$KERAS_HOME/kgooglenet/`.

A named set that is not in the cache yet is fetched the keras.applications way on first use: the original file is
downloaded from its canonical address with `keras.utils.get_file` (Keras' progress bar, kept in the cache folder),
checked against its published checksum, converted once, and installed with its sidecar. Later calls read the
converted file and touch no network. A failed, truncated or wrong-checksum download is deleted, never converted, and
the error names the address, the expected checksum and where a file fetched by hand goes.

Machines without internet access name a mirror: the `origin` argument of `fetch` / `resolve_weights`, or the
environment variable `KGOOGLENET_WEIGHTS_URL`: a base address (http(s)://, file://) or a local folder to which the
original file name is appended, or the address of the file itself.

Example:
>>> resolve_weights(None, "bn") is None
True
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import urllib.parse

import keras

from kgooglenet.weights import caffe, torchvision
from kgooglenet.weights.named import (  # noqa: F401  (re-exported: the cache's names are read through this module)
    NAMED_WEIGHTS,
    SIDECAR_SUFFIX,
    WEIGHTS_SUFFIX,
    NamedWeights,
    cache_dir,
    expected_checksum,
    file_digest,
    imagenet_name,
    install,
    named_weights_path,
    original_path,
    partial_path,
    read_sidecar,
    sidecar_path,
    sidecar_preprocessing,
    verify_original,
    write_sidecar,
)

URL_ENV = "KGOOGLENET_WEIGHTS_URL"  # a mirror: base address or folder of the original files, or one file's address
IMAGENET = "imagenet"  # keras.applications' name: the variant's own ImageNet set
_CONVERTERS = {"caffe": caffe.convert_caffe, "torchvision": torchvision.convert_torchvision}


class WeightsDownloadError(OSError):
    """A named weight set could not be downloaded or its download failed the checksum (nothing is left behind)."""


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    path: str  # the .weights.h5 file
    preprocessing: object = None  # a kgooglenet.specs.Preprocessing read from the JSON sidecar, or None
    metadata: dict | None = None  # the whole sidecar, or None when the file has none


def origin_url(name: str, origin=None) -> str:
    """The address the original file of `name` is fetched from: `origin`, else $KGOOGLENET_WEIGHTS_URL, else the
    canonical one. A folder or base address gets the original file name appended; local paths become file:// URLs."""
    entry = NAMED_WEIGHTS[name]
    origin = origin if origin is not None else os.environ.get(URL_ENV) or entry.url
    origin = os.fspath(origin)
    scheme = urllib.parse.urlparse(origin).scheme
    if scheme not in ("http", "https", "ftp", "file"):  # a local path
        path = pathlib.Path(origin).expanduser().absolute()
        return (path if path.is_file() else path / entry.original).as_uri()
    if origin.rstrip("/").rsplit("/", 1)[-1] == entry.original:
        return origin
    return origin.rstrip("/") + "/" + entry.original


def _download_error(name: str, url: str, problem: str) -> WeightsDownloadError:
    entry = NAMED_WEIGHTS[name]
    return WeightsDownloadError(
        f"`weights`={name!r}: {problem}. Expected {entry.original} from {url} with {expected_checksum(name)}; "
        f"nothing was kept. Retry, name a mirror (the `origin` argument, or ${URL_ENV}: a base address or a "
        f"folder holding {entry.original}), or download the file by hand and put it at {original_path(name)} (it "
        f"is checked and converted on the next call; or convert it with `{entry.command}`)."
    )


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def fetch_original(name: str, origin=None) -> str:
    """The original file of the named set `name`, checked against its published checksum: the one in the cache
    folder, else downloaded there with `keras.utils.get_file`. Raises WeightsDownloadError (and deletes the file)
    on any failure or a checksum mismatch."""
    target = original_path(name)
    url = origin_url(name, origin)
    if not os.path.isfile(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            # get_file only knows md5/sha256 and full hashes; the published checksums (a sha1, a sha256 prefix) are
            # checked below.
            keras.utils.get_file(
                fname=NAMED_WEIGHTS[name].original,
                origin=url,
                cache_dir=os.path.dirname(cache_dir()),
                cache_subdir=os.path.basename(cache_dir()),
            )
        except (Exception, KeyboardInterrupt) as err:
            _remove(target)
            if isinstance(err, KeyboardInterrupt):
                raise
            raise _download_error(name, url, f"the download failed ({type(err).__name__}: {err})") from err
    try:
        verify_original(target, name)
    except ValueError as err:
        size = os.path.getsize(target)
        _remove(target)
        raise _download_error(name, url, f"the file fetched ({size} bytes) failed its checksum: {err}") from None
    return target


def fetch(name: str, origin=None) -> str:
    """Downloads (or finds), checks, converts and installs the named set `name` unless it is installed; returns the
    path of its `.weights.h5`. `name` may be "imagenet-caffe" or "imagenet-torchvision"."""
    if name not in NAMED_WEIGHTS:
        raise ValueError(f"`name` must be one of {sorted(NAMED_WEIGHTS)}, received name={name!r}")
    path = named_weights_path(name)
    if os.path.isfile(path):
        return path
    original = fetch_original(name, origin)
    try:
        _CONVERTERS[NAMED_WEIGHTS[name].source](original, install=True)
    finally:  # an interrupted or failed conversion leaves no partial file (install renames it when done)
        for leftover in (partial_path(name), sidecar_path(partial_path(name))):
            _remove(leftover)
    return path


def named_set(weights, variant: str) -> str | None:
    """The named set `weights` stands for ("imagenet" -> the variant's own), or None when it names none."""
    if isinstance(weights, str) and weights == IMAGENET:
        return imagenet_name(variant)
    return weights if isinstance(weights, str) and weights in NAMED_WEIGHTS else None


def resolve_weights(weights, variant: str, origin=None) -> ResolvedWeights | None:
    """The weights file for `GoogLeNet(weights=...)`, checked to exist; None for `weights=None`.

    Args:
        weights: None, "imagenet" (the variant's own set), a named set ("imagenet-caffe", "imagenet-torchvision"),
            downloaded and converted on first use, or the path of a `.weights.h5` file.
        variant: the GoogLeNet variant being built; must be the one the weights were converted for.
        origin: where to download a named set from when it is not in the cache (see `origin_url`).

    Returns:
        ResolvedWeights(path, preprocessing, metadata): `preprocessing` is the one bound to the weights by their
        sidecar (None without sidecar).
    """
    if weights is None:
        return None
    if named_set(weights, variant) is not None:
        weights = named_set(weights, variant)
        entry = NAMED_WEIGHTS[weights]
        if variant != entry.variant:
            raise ValueError(
                f"`weights`={weights!r} are for variant {entry.variant!r}, received variant={variant!r}. "
                f"Use GoogLeNet(variant={entry.variant!r}, weights={weights!r})."
            )
        path = fetch(weights, origin)
    else:
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(
                f"`weights` must be None, {IMAGENET!r}, one of {sorted(NAMED_WEIGHTS)} or the path of a .weights.h5 "
                f"file, received weights={weights!r}"
            )
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"`weights`: no file at {path!r}. Pass None (random initialization), {IMAGENET!r}, one of "
                f"{sorted(NAMED_WEIGHTS)} or the path of a .weights.h5 file."
            )
        if not path.endswith((WEIGHTS_SUFFIX, ".keras")):
            raise ValueError(
                f"`weights`: {path!r} is not a Keras weights file (its name must end in {WEIGHTS_SUFFIX!r}, as "
                f"written by `python -m kgooglenet convert` or `model.save_weights`, or in '.keras')"
            )
    record = read_sidecar(path)
    if record is None:
        return ResolvedWeights(path)
    if record.get("variant") not in (None, variant):
        raise ValueError(
            f"`weights`: {path!r} holds weights for variant {record['variant']!r} (see {sidecar_path(path)}), "
            f"received variant={variant!r}"
        )
    return ResolvedWeights(path, sidecar_preprocessing(record), record)


__all__ = [
    "IMAGENET",
    "NAMED_WEIGHTS",
    "NamedWeights",
    "ResolvedWeights",
    "URL_ENV",
    "WeightsDownloadError",
    "cache_dir",
    "fetch",
    "fetch_original",
    "file_digest",
    "install",
    "named_weights_path",
    "named_set",
    "origin_url",
    "read_sidecar",
    "resolve_weights",
    "sidecar_path",
    "verify_original",
    "write_sidecar",
]
