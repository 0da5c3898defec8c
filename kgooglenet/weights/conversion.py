"""What every converter shares: checking the output path, saving the Keras weights with their JSON sidecar, and
installing the result as a named set in the cache."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os

from kgooglenet import specs
from kgooglenet.weights import imagenet
from kgooglenet.weights import named


def package_version() -> str:
    """kgooglenet's version from its installed package metadata (recorded in every sidecar)."""
    try:
        return importlib.metadata.version("kgooglenet")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """The outcome of a conversion."""

    weights_path: str  # the written .weights.h5 (in the cache when installed)
    sidecar_path: str  # its JSON sidecar
    metadata: dict  # the sidecar's content
    installed_as: str | None = None  # the named set it was installed as, or None


# First bytes of files users pass by mistake, and what to call them in an error.
FILE_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x89HDF": "an HDF5 file (a Keras .weights.h5?)",
    b"%PDF": "a PDF document",
}


def known_file_type(head: bytes, extra: dict | None = None) -> str | None:
    """What a file starting with `head` is, from `FILE_SIGNATURES` plus a converter's own `extra` signatures."""
    for magic, what in {**FILE_SIGNATURES, **(extra or {})}.items():
        if head.startswith(magic):
            return what
    return None


def output_path(out, install_name: str | None) -> str:
    """The .weights.h5 path to write: `out`, or the cache path of `install_name` when `out` is None."""
    if out is None:
        if install_name is None:
            raise ValueError("`out`: give the path of the .weights.h5 file to write, or install=True")
        os.makedirs(named.cache_dir(), exist_ok=True)
        return named.partial_path(install_name)  # renamed into place by `named.install` once complete
    path = os.fspath(out)
    if not path.endswith(named.WEIGHTS_SUFFIX):
        raise ValueError(f"`out` must end in {named.WEIGHTS_SUFFIX!r} (Keras weights format), received out={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"`out`: the folder {folder!r} of {path!r} does not exist")
    return path


def check_input_file(path, what: str) -> str:
    """`path` as a string, checked to be an existing, non-empty file; `what` names the argument in errors."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: no file at {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{what}: {path!r} is a directory, expected a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what}: {path!r} is empty (0 bytes): an interrupted download?")
    return path


def start(source, what: str, out, install: bool, allow_unverified: bool, install_name: str, aux_heads):
    """The checks every converter makes first: the `aux_heads` choice, the input file, the output path and, when
    installing a published set, the original file's checksum. Returns (source path, output path, verification)."""
    if aux_heads not in ("auto", True, False):
        raise ValueError(f"`aux_heads` must be 'auto', True or False, received aux_heads={aux_heads!r}")
    source = check_input_file(source, what)
    out = output_path(out, install_name if install else None)
    verified = named.verify_original(source, install_name) if install and not allow_unverified else None
    return source, out, verified


def resolve_aux(aux_heads, has_aux: bool, what: str, path: str, heads: str) -> bool:
    """Whether to convert the aux heads: the file's own when "auto"; an error when they are required but absent."""
    if aux_heads is True and not has_aux:
        raise ValueError(f"{what}: {path!r} has no aux heads ({heads}), but aux_heads=True")
    return has_aux if aux_heads == "auto" else aux_heads


def save_converted(
    model,
    out: str,
    *,
    source: str,
    input_path: str,
    variant: str,
    preprocessing: str,
    num_classes: int,
    aux_heads: bool,
    install_name: str | None,
    extra: dict | None = None,
) -> ConversionResult:
    """Saves `model`'s weights to `out` with a sidecar, and installs them as `install_name` when given."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    model.save_weights(out)
    metadata = {
        "source": source,
        "source_file": os.path.basename(input_path),
        "source_sha256": named.file_digest(input_path, "sha256"),
        "variant": variant,
        "preprocessing_name": preprocessing,
        "preprocessing": specs.PREPROCESSING[preprocessing].to_config(),
        "num_classes": num_classes,
        "aux_heads": aux_heads,
        "class_index": imagenet.CLASS_INDEX_FILE if num_classes == imagenet.NUM_CLASSES else None,
        "class_index_sha256": (
            named.file_digest(imagenet.class_index_path()) if num_classes == imagenet.NUM_CLASSES else None
        ),
        "converter": f"kgooglenet {package_version()}",
        **(extra or {}),
    }
    sidecar = named.write_sidecar(out, metadata)
    installed = None
    if install_name is not None:
        target = named.install(out, install_name)
        installed = install_name
        out, sidecar = target, named.sidecar_path(target)
    return ConversionResult(out, sidecar, named.read_sidecar(out), installed)


__all__ = ["ConversionResult", "check_input_file", "output_path", "save_converted"]
