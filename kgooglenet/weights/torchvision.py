"""Converts torchvision GoogLeNet weights (`googlenet-1378be20.pth`, or any state dict of
`torchvision.models.googlenet`) to the Keras "bn" variant.

The checkpoint is read without torch by `torch_reader`, which, like `torch.load(..., weights_only=True)`, unpickles
only what a state dict needs: it is data, never code to run. Neither torch nor torchvision is needed. Aux heads (aux1.*, aux2.*) are converted when the state dict has them (torchvision's
ImageNet file has them, but torchvision documents that they are not trained). torchvision's `transform_input=True`
(the setting of its ImageNet weights) becomes the model's "torchvision" preprocessing (x / 127.5 - 1 on RGB pixels);
a model trained with transform_input=False takes "imagenet" mean/std normalization instead.

Example (command line):
    python -m kgooglenet convert torchvision --checkpoint googlenet-1378be20.pth --out googlenet_tv.weights.h5
"""

from __future__ import annotations

import zipfile

import numpy as np

from kgooglenet import specs
from kgooglenet.architecture import build_googlenet
from kgooglenet.weights import conversion, layer_map, torch_reader

VARIANT = "bn"
INSTALL_NAME = "imagenet-torchvision"
_BN = ("weight", "bias", "running_mean", "running_var")


def _describe_non_checkpoint(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4096)
    what = conversion.known_file_type(head)
    if what is not None:
        return what
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None  # zip (torch.save's format) or a legacy pickle: let torch decide
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return (
            "an unknown binary file (a PyTorch checkpoint is a zip archive written by torch.save, or a legacy "
            "pickle; a Caffe .caffemodel? use `convert caffe --caffemodel`)"
        )
    if text.lstrip().startswith(("name:", "layer")):
        return "a text file (a Caffe .prototxt?)"
    return "a text file"


def load_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint as numpy arrays, read without torch by `torch_reader` (which, like
    `torch.load(weights_only=True)`, unpickles nothing but what a state dict needs).

    Accepts a plain state dict, or a dict wrapping one under "state_dict" or "model" (training checkpoints); strips
    a "module." prefix (DataParallel).
    """
    path = conversion.check_input_file(path, "checkpoint")
    what = _describe_non_checkpoint(path)
    if what is not None:
        raise ValueError(f"checkpoint: {path!r} is not a PyTorch checkpoint but {what}")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as err:
            raise ValueError(f"checkpoint: {path!r} is a damaged zip archive ({err}): a truncated download?") from err
        if bad is not None:
            raise ValueError(f"checkpoint: {path!r} is damaged: member {bad!r} fails its CRC check")
    obj = torch_reader.load(path)  # UnsafeCheckpointError (a ValueError) names any global it refuses
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"checkpoint: {path!r} holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    arrays = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray):
            continue
        name = key[len("module.") :] if key.startswith("module.") else key
        arrays[name] = value
    return arrays


def _expected_keys(with_aux: bool) -> list[str]:
    keys = []
    for match in layer_map.WEIGHT_TABLE:
        if match.head != specs.MAIN_HEAD and not with_aux:
            continue
        if match.kind == "conv":
            keys.append(f"{match.torch}.conv.weight")
            keys += [f"{match.torch}.bn.{k}" for k in _BN]
        else:
            keys += [f"{match.torch}.weight", f"{match.torch}.bias"]
    return keys


def check_state_dict(state: dict, path: str) -> bool:
    """Checks that `state` is a torchvision GoogLeNet state dict; returns whether it has the aux heads."""
    missing = [k for k in _expected_keys(False) if k not in state]
    if missing:
        found = sorted(state)[:6]
        hint = ""
        if any(k.startswith("layer1.") for k in state):
            hint = " (it looks like a ResNet)"
        elif any(k.startswith("Conv2d_1a") or k.startswith("Mixed_") for k in state):
            hint = " (it looks like Inception v3)"
        raise ValueError(
            f"checkpoint: {path!r} is not a torchvision GoogLeNet state dict{hint}: {len(missing)} of the "
            f"{len(_expected_keys(False))} tensors GoogLeNet needs are missing, e.g. {missing[:3]}; the file has "
            f"{len(state)} tensors, e.g. {found}"
        )
    aux_keys = [k for k in _expected_keys(True) if k.startswith(tuple(f"{head}." for head in specs.AUX_ON))]
    present = [k for k in aux_keys if k in state]
    if present and len(present) != len(aux_keys):
        raise ValueError(
            f"checkpoint: {path!r} has only part of the aux heads: missing {sorted(set(aux_keys) - set(present))[:3]}"
        )
    return bool(present)


def load_into(model, state: dict, path: str) -> None:
    """Assigns a torchvision GoogLeNet state dict to the bn-variant `model` (aux entries when it has aux heads)."""
    for match in layer_map.WEIGHT_TABLE:
        target = layer_map.keras_layer(model, match.keras)
        if target is None:
            continue
        where = f"checkpoint {path!r} tensor"
        if match.kind == "conv":
            weight = state[f"{match.torch}.conv.weight"]
            kernel = layer_map.conv_kernel_from_oihw(weight)
            layer_map.assign(target.conv.kernel, kernel, f"{where} {match.torch}.conv.weight {weight.shape}")
            bn = target.bn
            for key, variable in zip(_BN, (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)):
                name = f"{match.torch}.bn.{key}"
                layer_map.assign(variable, state[name], f"{where} {name}")
        else:
            weight = state[f"{match.torch}.weight"]
            kernel = layer_map.dense_kernel_from_out_in(weight, match.flatten_from)
            layer_map.assign(target.kernel, kernel, f"{where} {match.torch}.weight {weight.shape}")
            layer_map.assign(target.bias, state[f"{match.torch}.bias"], f"{where} {match.torch}.bias")


def convert_torchvision(
    checkpoint,
    out=None,
    aux_heads="auto",
    transform_input: bool = True,
    install: bool = False,
    allow_unverified: bool = False,
) -> conversion.ConversionResult:
    """Converts a torchvision GoogLeNet checkpoint to a Keras `.weights.h5` (+ JSON sidecar) for variant "bn".

    Args:
        checkpoint: path of the state dict (`.pth`).
        out: the `.weights.h5` to write; may be None with install=True.
        aux_heads: "auto" (convert aux1/aux2 when present), True (require them) or False.
        transform_input: the torch model's `transform_input` (True for torchvision's ImageNet weights): selects the
            bound preprocessing, "torchvision" (x / 127.5 - 1) or, when False, "imagenet" (mean/std).
        install: also install the result as `weights="imagenet-torchvision"`; the checkpoint must then be the
            published file (sha256 prefix 1378be20 checked) unless allow_unverified=True.
        allow_unverified: install even when the checksum differs.

    Returns:
        A `ConversionResult`.

    Example:
    >>> convert_torchvision("googlenet-1378be20.pth", "googlenet_tv.weights.h5")  # doctest: +SKIP
    """
    checkpoint, out, verified = conversion.start(
        checkpoint, "checkpoint", out, install, allow_unverified, INSTALL_NAME, aux_heads
    )
    state = load_state_dict(checkpoint)
    has_aux = check_state_dict(state, checkpoint)
    aux = conversion.resolve_aux(aux_heads, has_aux, "checkpoint", checkpoint, "aux1.*, aux2.*")
    num_classes = int(state["fc.weight"].shape[0])
    preprocessing = "torchvision" if transform_input else "imagenet"
    model = build_googlenet(VARIANT, num_classes=num_classes, aux_heads=aux, preprocessing=preprocessing)
    load_into(model, state, checkpoint)
    return conversion.save_converted(
        model,
        out,
        source="torchvision",
        input_path=checkpoint,
        variant=VARIANT,
        preprocessing=preprocessing,
        num_classes=num_classes,
        aux_heads=aux,
        install_name=INSTALL_NAME if install else None,
        extra={
            "transform_input": bool(transform_input),
            "checksum_check": verified,
            "aux_heads_note": "torchvision's ImageNet aux heads are not trained" if aux else None,
        },
    )


__all__ = ["check_state_dict", "convert_torchvision", "load_into", "load_state_dict"]
