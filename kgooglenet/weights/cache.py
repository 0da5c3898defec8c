"""Where weights files are found: a path, or a named ImageNet set ("imagenet-caffe", "imagenet-torchvision") in the
cache folder `$KERAS_HOME/kgooglenet/` (KERAS_HOME defaults to ~/.keras), plus the JSON sidecar that every converted
file carries (source, sha256 of the original file, variant, preprocessing, class index, date).

Nothing here downloads: a named set that is not installed raises an error that says which original file to download
from where, what its checksum is, and the one `python -m kgooglenet.convert ... --install` command that converts and
installs it.

Example:
>>> resolve_weights(None, "bn") is None
True
>>> sidecar_path("W.weights.h5")
'W.weights.json'
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil

from kgooglenet import specs

SIDECAR_FORMAT = 1  # version of the sidecar's JSON layout
WEIGHTS_SUFFIX = ".weights.h5"
SIDECAR_SUFFIX = ".weights.json"


@dataclasses.dataclass(frozen=True)
class NamedWeights:
    """A named ImageNet weight set: what to download, from where, and how it is checked."""

    name: str  # value of GoogLeNet(weights=...)
    variant: str  # the GoogLeNet variant the weights are for
    source: str  # converter: "caffe" or "torchvision"
    filename: str  # installed file name in the cache folder
    original: str  # file name of the original download
    url: str  # where the user downloads it (by hand: nothing here downloads)
    sha1: str | None  # full sha1 of the original file, when its publisher documents one
    sha256_prefix: str | None  # leading hex digits of its sha256, when that is all that is published
    command: str  # the one command that converts and installs it
    notes: str  # what the user should know about these weights


NAMED_WEIGHTS: dict[str, NamedWeights] = {
    "imagenet-caffe": NamedWeights(
        name="imagenet-caffe",
        variant="paper",
        source="caffe",
        filename="googlenet_caffe.weights.h5",
        original="bvlc_googlenet.caffemodel",
        url="http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        # BVLC/caffe models/bvlc_googlenet/readme.md publishes the sha1 only; no sha256 is documented anywhere we know.
        sha1="405fc5acd08a3bb12de8ee5e23a96bec22f08204",
        sha256_prefix=None,
        command="python -m kgooglenet.convert caffe --caffemodel bvlc_googlenet.caffemodel --install",
        notes="BVLC GoogLeNet (about 53 MB), trained aux heads included; reported 68.7% top-1 / 88.9% top-5 on the "
        "ImageNet validation set (center crop). BGR, mean 104/117/123 (applied inside the model).",
    ),
    "imagenet-torchvision": NamedWeights(
        name="imagenet-torchvision",
        variant="bn",
        source="torchvision",
        filename="googlenet_torchvision.weights.h5",
        original="googlenet-1378be20.pth",
        url="https://download.pytorch.org/models/googlenet-1378be20.pth",
        sha1=None,
        # torch.hub names files "<name>-<first 8+ hex digits of sha256>.pth"; torchvision publishes no full hash.
        sha256_prefix="1378be20",
        command="python -m kgooglenet.convert torchvision --checkpoint googlenet-1378be20.pth --install",
        notes="torchvision GoogLeNet_Weights.IMAGENET1K_V1 (about 50 MB), 69.778% top-1 / 89.530% top-5 per "
        "torchvision; its aux heads are NOT trained (torchvision says so). x/127.5 - 1 applied inside the model.",
    ),
}


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    path: str  # the .weights.h5 file
    preprocessing: object = None  # a kgooglenet.specs.Preprocessing read from the JSON sidecar, or None
    metadata: dict | None = None  # the whole sidecar, or None when the file has none


def cache_dir() -> str:
    """`$KERAS_HOME/kgooglenet` (KERAS_HOME defaults to ~/.keras, as in Keras), read at call time."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "kgooglenet")


def named_weights_path(name: str) -> str:
    """Where the named set `name` is installed (whether or not it is)."""
    return os.path.join(cache_dir(), NAMED_WEIGHTS[name].filename)


def sidecar_path(weights_path) -> str:
    """The JSON sidecar next to a weights file: W.weights.h5 -> W.weights.json."""
    path = os.fspath(weights_path)
    if path.endswith(WEIGHTS_SUFFIX):
        return path[: -len(WEIGHTS_SUFFIX)] + SIDECAR_SUFFIX
    return os.path.splitext(path)[0] + ".json"


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(weights_path, metadata: dict) -> str:
    """Writes `metadata` (plus the format version, the date and the weights file's own sha256) next to the weights."""
    record = {
        "format": SIDECAR_FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **metadata,
        "weights_file": os.path.basename(os.fspath(weights_path)),
        "weights_sha256": file_digest(weights_path),
    }
    path = sidecar_path(weights_path)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return path


def read_sidecar(weights_path) -> dict | None:
    """The sidecar of a weights file, or None when there is none. Raises ValueError for an unreadable sidecar."""
    path = sidecar_path(weights_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"weights sidecar {path!r} is not valid JSON: {err}") from err
    if not isinstance(record, dict) or "preprocessing" not in record:
        raise ValueError(f"weights sidecar {path!r} has no 'preprocessing' entry: not a kgooglenet sidecar")
    return record


def sidecar_preprocessing(record: dict):
    """The `specs.Preprocessing` recorded in a sidecar (None when it records None)."""
    value = record.get("preprocessing")
    if value is None:
        return None
    return specs.Preprocessing(mean=tuple(value["mean"]), std=tuple(value["std"]), bgr=bool(value["bgr"]))


def missing_named_weights_message(name: str) -> str:
    entry = NAMED_WEIGHTS[name]
    if entry.sha1:
        checksum = f"sha1 {entry.sha1} (the publisher documents no sha256)"
    else:
        checksum = (
            f"sha256 starting with {entry.sha256_prefix} (the hash prefix in its file name; the full sha256 is "
            f"not published)"
        )
    return (
        f"`weights`={name!r}: {named_weights_path(name)} is not installed, and nothing is downloaded "
        f"automatically. Download {entry.original} yourself from {entry.url} ({checksum}), then convert and "
        f"install it with:\n    {entry.command}\n(the converter checks the checksum; KERAS_HOME sets the cache "
        f"folder, now {cache_dir()!r}). {entry.notes}"
    )


def resolve_weights(weights, variant: str) -> ResolvedWeights | None:
    """The weights file for `GoogLeNet(weights=...)`, checked to exist; None for `weights=None`.

    Args:
        weights: None, a named set ("imagenet-caffe", "imagenet-torchvision") or the path of a `.weights.h5` file.
        variant: the GoogLeNet variant being built; must be the one the weights were converted for.

    Returns:
        ResolvedWeights(path, preprocessing, metadata): `preprocessing` is the one bound to the weights by their
        sidecar (None without sidecar).
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights in NAMED_WEIGHTS:
        entry = NAMED_WEIGHTS[weights]
        if variant != entry.variant:
            raise ValueError(
                f"`weights`={weights!r} are for variant {entry.variant!r}, received variant={variant!r}. "
                f"Use GoogLeNet(variant={entry.variant!r}, weights={weights!r})."
            )
        path = named_weights_path(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(missing_named_weights_message(weights))
    else:
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(
                f"`weights` must be None, one of {sorted(NAMED_WEIGHTS)} or the path of a .weights.h5 file, "
                f"received weights={weights!r}"
            )
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"`weights`: no file at {path!r}. Pass None (random initialization), one of {sorted(NAMED_WEIGHTS)} "
                f"or the path of a .weights.h5 file."
            )
        if not path.endswith((WEIGHTS_SUFFIX, ".keras")):
            raise ValueError(
                f"`weights`: {path!r} is not a Keras weights file (its name must end in {WEIGHTS_SUFFIX!r}, as "
                f"written by `python -m kgooglenet.convert` or `model.save_weights`, or in '.keras')"
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


def verify_original(path, name: str) -> str:
    """Checks a downloaded original file against the published checksum of the named set `name`.

    Returns a short description of the check; raises ValueError naming the file and both checksums on a mismatch.
    """
    entry = NAMED_WEIGHTS[name]
    path = os.fspath(path)
    if entry.sha1:
        got = file_digest(path, "sha1")
        if got != entry.sha1:
            raise ValueError(
                f"{path!r} has sha1 {got}, but the published {entry.original} has sha1 {entry.sha1}: not the file "
                f"from {entry.url} (or a damaged download). Pass allow_unverified=True (--allow-unverified) to "
                f"install it anyway."
            )
        return f"sha1 {got} matches"
    got = file_digest(path, "sha256")
    if not got.startswith(entry.sha256_prefix):
        raise ValueError(
            f"{path!r} has sha256 {got}, but the published {entry.original} has a sha256 starting with "
            f"{entry.sha256_prefix}: not the file from {entry.url} (or a damaged download). Pass "
            f"allow_unverified=True (--allow-unverified) to install it anyway."
        )
    return f"sha256 {got} starts with {entry.sha256_prefix}"


def install(weights_path, name: str) -> str:
    """Copies a converted weights file and its sidecar into the cache as the named set `name`; returns the path."""
    if name not in NAMED_WEIGHTS:
        raise ValueError(f"`name` must be one of {sorted(NAMED_WEIGHTS)}, received name={name!r}")
    target = named_weights_path(name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    source = os.fspath(weights_path)
    if os.path.abspath(source) != os.path.abspath(target):
        shutil.copyfile(source, target)
    record = read_sidecar(source)
    if record is not None:
        record = {**record, "weights_file": os.path.basename(target), "installed_as": name}
        with open(sidecar_path(target), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    return target


__all__ = [
    "NAMED_WEIGHTS",
    "NamedWeights",
    "ResolvedWeights",
    "cache_dir",
    "file_digest",
    "install",
    "named_weights_path",
    "read_sidecar",
    "resolve_weights",
    "sidecar_path",
    "verify_original",
    "write_sidecar",
]
