"""The named ImageNet weight sets and the files around them: where they live (`$KERAS_HOME/kgooglenet/`, KERAS_HOME
defaulting to ~/.keras as in Keras), the JSON sidecar that every converted file carries (source, sha256 of the
original file, variant, preprocessing, class index, date), the published checksums of the originals, and the atomic
install of a converted file into the cache.

Nothing here downloads or converts (`kgooglenet.weights.cache` does, on first use); the converters write through here.

Example:
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
    url: str  # the canonical address of the original file (downloaded from there on first use)
    sha1: str | None  # full sha1 of the original file, when its publisher documents one
    sha256_prefix: str | None  # leading hex digits of its sha256, when that is all that is published
    command: str  # the one command that converts and installs a file downloaded by hand
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
        command="python -m kgooglenet convert caffe --caffemodel bvlc_googlenet.caffemodel --install",
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
        command="python -m kgooglenet convert torchvision --checkpoint googlenet-1378be20.pth --install",
        notes="torchvision GoogLeNet_Weights.IMAGENET1K_V1 (about 50 MB), 69.778% top-1 / 89.530% top-5 per "
        "torchvision; its aux heads are NOT trained (torchvision says so). x/127.5 - 1 applied inside the model.",
    ),
}


def cache_dir() -> str:
    """`$KERAS_HOME/kgooglenet` (KERAS_HOME defaults to ~/.keras, as in Keras), read at call time."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "kgooglenet")


def named_weights_path(name: str) -> str:
    """Where the named set `name` is installed (whether or not it is)."""
    return os.path.join(cache_dir(), NAMED_WEIGHTS[name].filename)


def original_path(name: str) -> str:
    """Where the original (downloaded) file of the named set `name` is kept, and where a file fetched by hand goes."""
    return os.path.join(cache_dir(), NAMED_WEIGHTS[name].original)


def partial_path(name: str) -> str:
    """A temporary path in the cache folder that `install` renames to the named set's file (one per process)."""
    filename = NAMED_WEIGHTS[name].filename
    return os.path.join(cache_dir(), f".partial-{os.getpid()}-{filename}")


def imagenet_name(variant: str) -> str:
    """The named set `weights="imagenet"` means for `variant`: the one converted for that variant."""
    names = [entry.name for entry in NAMED_WEIGHTS.values() if entry.variant == variant]
    if not names:
        sets = ", ".join(f"{e.name!r} (variant {e.variant!r})" for e in NAMED_WEIGHTS.values())
        raise ValueError(
            f"`weights`='imagenet': variant {variant!r} has no ImageNet weights (ImageNet sets: {sets}). Use "
            f"weights=None, the path of a .weights.h5 file, or another variant."
        )
    return names[0]


def expected_checksum(name: str) -> str:
    """The published checksum of the original file of `name`, in words."""
    entry = NAMED_WEIGHTS[name]
    if entry.sha1:
        return f"sha1 {entry.sha1}"
    return f"a sha256 starting with {entry.sha256_prefix} (the hash prefix in its file name)"


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


def verify_original(path, name: str) -> str:
    """Checks a downloaded original file against the published checksum of the named set `name`.

    Returns a short description of the check; raises ValueError naming the file and both checksums on a mismatch.
    """
    entry = NAMED_WEIGHTS[name]
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path!r} is empty (0 bytes): an interrupted download, not the file from {entry.url}")
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


def _replace_json(path: str, record: dict) -> None:
    tmp = f"{path}.partial-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def install(weights_path, name: str, extra: dict | None = None) -> str:
    """Puts a converted weights file and its sidecar into the cache as the named set `name`; returns the path.

    The sidecar goes first and the weights file last, each renamed into place from a temporary file in the cache
    folder, so an interrupted install never leaves a weights file that looks installed. A file at `partial_path(name)`
    is moved, any other is copied. `extra` entries are added to the sidecar.
    """
    if name not in NAMED_WEIGHTS:
        raise ValueError(f"`name` must be one of {sorted(NAMED_WEIGHTS)}, received name={name!r}")
    target = named_weights_path(name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    source = os.fspath(weights_path)
    record = read_sidecar(source)
    if record is not None:
        record = {**record, **(extra or {}), "weights_file": os.path.basename(target), "installed_as": name}
        _replace_json(sidecar_path(target), record)
    partial = partial_path(name)
    if os.path.abspath(source) != os.path.abspath(partial):
        shutil.copyfile(source, partial)
    os.replace(partial, target)
    if os.path.abspath(source) == os.path.abspath(partial) and os.path.isfile(sidecar_path(source)):
        os.remove(sidecar_path(source))
    return target


__all__ = [
    "NAMED_WEIGHTS",
    "NamedWeights",
    "cache_dir",
    "expected_checksum",
    "file_digest",
    "imagenet_name",
    "install",
    "named_weights_path",
    "original_path",
    "partial_path",
    "read_sidecar",
    "sidecar_path",
    "sidecar_preprocessing",
    "verify_original",
    "write_sidecar",
]
