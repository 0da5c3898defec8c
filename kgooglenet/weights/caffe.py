"""Converts BVLC Caffe GoogLeNet weights (`bvlc_googlenet.caffemodel`) to the Keras "paper" variant.

The `.caffemodel` is read with protobuf through the message subset in `caffe_proto` (no Caffe install), in both the
legacy V1 format (`layers`, enum types) and the current one (`layer`), with blobs given by `shape` or by
num/channels/height/width. The optional `deploy.prototxt` is checked against the caffemodel (every blob shape, by
shape inference through the net) and against the Keras architecture (kernels, strides, pads, pools, LRN parameters).
The trained aux heads (loss1/*, loss2/*) are converted when the caffemodel has them. Caffe's BGR input with mean
104/117/123 becomes the model's "caffe" preprocessing, recorded in the sidecar.

Example (command line):
    python -m kgooglenet convert caffe --caffemodel bvlc_googlenet.caffemodel --prototxt deploy.prototxt \\
        --out googlenet_caffe.weights.h5
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from google.protobuf import message as protobuf_message
from google.protobuf import text_format

from kgooglenet import specs
from kgooglenet.architecture import build_googlenet
from kgooglenet.weights import caffe_proto, conversion, layer_map

VARIANT = "paper"
PREPROCESSING = "caffe"
INSTALL_NAME = "imagenet-caffe"
DEFAULT_INPUT = (3, 224, 224)  # C, H, W assumed for a net input without a declared shape (Data layers)


@dataclasses.dataclass
class CaffeLayer:
    """One layer of a Caffe net, the same for both formats."""

    name: str
    type: str  # current string type ("Convolution"); V1 enum types are translated
    bottom: list
    top: list
    blobs: list  # np.float32 arrays, in the blob's declared shape
    proto: object  # the LayerParameter / V1LayerParameter (for its *_param fields)


# ----------------------------------------------------------------------------------------------------------- reading


def _sniff(data: bytes) -> str | None:
    """What a file that is not a caffemodel looks like it is, from its first bytes (None if nothing known)."""
    head = data[:16]
    what = conversion.known_file_type(
        head,
        {
            b"PK\x03\x04": "a zip archive (a PyTorch .pth checkpoint? use `convert torchvision --checkpoint`)",
            b"\x1f\x8b": "a gzip archive (unpack it first)",
        },
    )
    if what is not None:
        return what
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a PyTorch checkpoint?)"
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(("name:", "layer", "layers", "input", "#", "<", "{")):
        return "a text file (a .prototxt? pass it as the prototxt, and the binary .caffemodel as the caffemodel)"
    return None


def blob_to_array(blob, where: str) -> np.ndarray:
    """A BlobProto as a float32 array of its declared shape (`shape`, or legacy num/channels/height/width)."""
    if blob.HasField("shape"):
        dims = tuple(int(d) for d in blob.shape.dim)
    else:
        dims = (blob.num, blob.channels, blob.height, blob.width)
    values = np.asarray(blob.data, dtype=np.float32) if len(blob.data) else np.asarray(blob.double_data, np.float32)
    expected = int(np.prod(dims)) if dims else 1
    if values.size != expected:
        raise ValueError(
            f"{where}: blob of shape {dims} should hold {expected} values but holds {values.size}: the file is "
            f"truncated or corrupt"
        )
    return values.reshape(dims)


def set_blob_data(blob, array: np.ndarray) -> None:
    """Fills a BlobProto's `data` with `array` (float32), fast: the packed field is appended as wire-format bytes
    (field 5, length-delimited, little-endian floats) rather than value by value."""
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    length = len(raw)
    varint = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    blob.ClearField("data")
    blob.MergeFromString(bytes([5 << 3 | 2]) + bytes(varint) + raw)


def net_layers(net, where: str) -> list[CaffeLayer]:
    """The layers of a NetParameter in either format, with their blobs as arrays."""
    if len(net.layer) and len(net.layers):
        raise ValueError(f"{where}: has both `layer` and legacy `layers` entries; Caffe rejects such nets")
    result = []
    if len(net.layers):
        for v1 in net.layers:
            blobs = [blob_to_array(b, f"{where}: layer {v1.name!r} blob {i}") for i, b in enumerate(v1.blobs)]
            result.append(CaffeLayer(v1.name, caffe_proto.v1_type_name(v1), list(v1.bottom), list(v1.top), blobs, v1))
    for layer in net.layer:
        blobs = [blob_to_array(b, f"{where}: layer {layer.name!r} blob {i}") for i, b in enumerate(layer.blobs)]
        result.append(CaffeLayer(layer.name, layer.type, list(layer.bottom), list(layer.top), blobs, layer))
    return result


def read_caffemodel(path):
    """Parses a binary `.caffemodel` into a `caffe_proto.NetParameter`, with clear errors for other files."""
    path = conversion.check_input_file(path, "caffemodel")
    with open(path, "rb") as f:
        data = f.read()
    what = _sniff(data)
    if what is not None:
        raise ValueError(f"caffemodel: {path!r} is not a binary Caffe model but {what}")
    net = caffe_proto.NetParameter()
    try:
        net.ParseFromString(data)
    except protobuf_message.DecodeError as err:
        raise ValueError(
            f"caffemodel: {path!r} is not a valid binary Caffe model ({err}): a truncated download, or not a "
            f".caffemodel file ({len(data)} bytes read)"
        ) from err
    if not any(len(layer.blobs) for layer in list(net.layer) + list(net.layers)):
        raise ValueError(
            f"caffemodel: {path!r} parsed but holds no layer with weights ({len(net.layer) + len(net.layers)} "
            f"layers): not a trained .caffemodel (a truncated file, or a net definition without weights)"
        )
    return net


def read_prototxt(path):
    """Parses a text `.prototxt` net definition into a `caffe_proto.NetParameter`."""
    path = conversion.check_input_file(path, "prototxt")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"prototxt: {path!r} is a binary file, not a text .prototxt (a .caffemodel? pass that as the "
            f"caffemodel)"
        ) from None
    try:
        net = caffe_proto.parse_prototxt(text)
    except text_format.ParseError as err:
        raise ValueError(f"prototxt: {path!r} is not a valid Caffe text net definition: {err}") from err
    if not len(net.layer) and not len(net.layers):
        raise ValueError(f"prototxt: {path!r} defines no layers")
    return net


# --------------------------------------------------------------------------------------------------- shape inference


def _pair(repeated, h_field, w_field, param, default):
    """Caffe's (h, w) of a kernel/pad/stride given as `x: n` or `x_h`/`x_w`."""
    if param.HasField(h_field) or param.HasField(w_field):
        return int(getattr(param, h_field)), int(getattr(param, w_field))
    if isinstance(repeated, int):
        return repeated, repeated
    values = [int(v) for v in repeated]
    if not values:
        return default, default
    return values[0], values[-1]


def conv_geometry(param):
    """(kernel, pad, stride, dilation) pairs of a ConvolutionParameter."""
    kernel = _pair(param.kernel_size, "kernel_h", "kernel_w", param, 1)
    pad = _pair(param.pad, "pad_h", "pad_w", param, 0)
    stride = _pair(param.stride, "stride_h", "stride_w", param, 1)
    dilation = (int(param.dilation[0]),) * 2 if len(param.dilation) else (1, 1)
    return kernel, pad, stride, dilation


def pool_geometry(param):
    """(kernel, pad, stride) pairs of a PoolingParameter."""
    kernel = _pair(int(param.kernel_size), "kernel_h", "kernel_w", param, 1)
    pad = _pair(int(param.pad), "pad_h", "pad_w", param, 0)
    stride = _pair(int(param.stride), "stride_h", "stride_w", param, 1)
    return kernel, pad, stride


def _pooled(size, kernel, pad, stride, ceil):
    if ceil:
        out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    else:
        out = (size + 2 * pad - kernel) // stride + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _input_shapes(net) -> dict:
    shapes = {}
    for i, name in enumerate(net.input):
        if i < len(net.input_shape):
            dims = tuple(int(d) for d in net.input_shape[i].dim)
        elif len(net.input_dim) >= 4 * (i + 1):
            dims = tuple(int(d) for d in net.input_dim[4 * i : 4 * i + 4])
        else:
            dims = (1, *DEFAULT_INPUT)
        shapes[name] = dims[1:]
    return shapes


def blob_shapes(net) -> dict[str, list[tuple]]:
    """The parameter blob shapes that the layers of a net definition imply, by shape inference through the net.

    Returns {layer name: [weight shape, bias shape?]} for Convolution and InnerProduct layers whose inputs could be
    inferred. Data layers without a declared shape are taken as 3x224x224 images.
    """
    shapes = _input_shapes(net)  # blob name -> (C, H, W)
    result = {}
    for layer in net_layers(net, "prototxt"):
        if layer.type == "Input":
            param = layer.proto.input_param
            for i, top in enumerate(layer.top):
                dims = param.shape[min(i, len(param.shape) - 1)].dim if len(param.shape) else None
                shapes[top] = tuple(int(d) for d in dims)[1:] if dims else DEFAULT_INPUT
            continue
        if layer.type in ("Data", "ImageData", "MemoryData") and layer.top:
            shapes[layer.top[0]] = DEFAULT_INPUT
            continue
        if not layer.bottom or any(b not in shapes for b in layer.bottom):
            continue
        c, h, w = shapes[layer.bottom[0]]
        out = None
        if layer.type == "Convolution":
            param = layer.proto.convolution_param
            (kh, kw), (ph, pw), (sh, sw), (dh, dw) = conv_geometry(param)
            n, group = int(param.num_output), int(param.group)
            result[layer.name] = [(n, c // group, kh, kw)] + ([(n,)] if param.bias_term else [])
            out = (n, (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1, (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1)
        elif layer.type == "Pooling":
            param = layer.proto.pooling_param
            if param.global_pooling:
                out = (c, 1, 1)
            else:
                (kh, kw), (ph, pw), (sh, sw) = pool_geometry(param)
                ceil = param.round_mode == param.CEIL
                out = (c, _pooled(h, kh, ph, sh, ceil), _pooled(w, kw, pw, sw, ceil))
        elif layer.type == "InnerProduct":
            param = layer.proto.inner_product_param
            n = int(param.num_output)
            result[layer.name] = [(n, c * h * w)] + ([(n,)] if param.bias_term else [])
            out = (n, 1, 1)
        elif layer.type == "Concat":
            out = (sum(shapes[b][0] for b in layer.bottom), h, w)
        elif layer.type in ("ReLU", "LRN", "Dropout", "Softmax", "Split", "Sigmoid", "TanH", "BatchNorm", "Scale"):
            out = (c, h, w)
        if out is not None:
            for top in layer.top:
                shapes[top] = out
    return result


def _canonical(array: np.ndarray, rank: int, where: str) -> np.ndarray:
    """Drops the leading 1s of a legacy 4-D blob (Caffe stores an FC weight as 1x1xOUTxIN, a bias as 1x1x1xN)."""
    while array.ndim > rank and array.shape[0] == 1:
        array = array[0]
    if array.ndim != rank:
        raise ValueError(f"{where}: blob of shape {array.shape} cannot be a {rank}-D parameter")
    return array


def _same_shape(a, b) -> bool:
    def strip(s):
        s = tuple(s)
        while len(s) > 1 and s[0] == 1:
            s = s[1:]
        return s

    return strip(a) == strip(b)


def check_prototxt(prototxt_net, layers: dict, caffemodel_path: str, prototxt_path: str) -> None:
    """Every weight layer of the prototxt exists in the caffemodel with blobs of the shapes the prototxt implies."""
    expected = blob_shapes(prototxt_net)
    if not expected:
        raise ValueError(f"prototxt: {prototxt_path!r} has no Convolution/InnerProduct layer whose shape is known")
    for name, shapes in expected.items():
        if name not in layers:
            raise ValueError(
                f"caffemodel {caffemodel_path!r} does not match prototxt {prototxt_path!r}: the prototxt's layer "
                f"{name!r} has no weights in the caffemodel (a truncated file, or the model of another net)"
            )
        blobs = layers[name].blobs
        if len(blobs) != len(shapes):
            raise ValueError(
                f"caffemodel {caffemodel_path!r} does not match prototxt {prototxt_path!r}: layer {name!r} has "
                f"{len(blobs)} blobs, the prototxt implies {len(shapes)}"
            )
        for i, (blob, shape) in enumerate(zip(blobs, shapes)):
            if not _same_shape(blob.shape, shape):
                raise ValueError(
                    f"caffemodel {caffemodel_path!r} does not match prototxt {prototxt_path!r}: layer {name!r} "
                    f"blob {i} has shape {tuple(blob.shape)}, the prototxt implies {tuple(shape)}"
                )


def check_architecture(prototxt_net, model, prototxt_path: str) -> None:
    """The prototxt describes the Keras paper GoogLeNet: conv kernels/strides/pads, pools and LRNs agree."""
    layers = {layer.name: layer for layer in net_layers(prototxt_net, "prototxt")}

    def fail(name, what, got, expected):
        raise ValueError(
            f"prototxt: {prototxt_path!r} is not bvlc_googlenet's architecture: layer {name!r} has {what} {got}, "
            f"the Keras GoogLeNet(variant='paper') uses {expected}"
        )

    for match in layer_map.WEIGHT_TABLE:
        layer = layers.get(match.caffe)
        block = layer_map.keras_layer(model, match.keras)
        if layer is None or block is None or match.kind != "conv":
            continue
        (kh, kw), (ph, pw), (sh, sw), _ = conv_geometry(layer.proto.convolution_param)
        for what, got, expected in (
            ("kernel", (kh, kw), (block.kernel_size,) * 2),
            ("stride", (sh, sw), (block.strides,) * 2),
            ("pad", (ph, pw), (block.padding,) * 2),
        ):
            if got != expected:
                fail(match.caffe, what, got, expected)
    pools = {"pool1/3x3_s2": "pool1", "pool2/3x3_s2": "pool2", "pool3/3x3_s2": "pool3", "pool4/3x3_s2": "pool4"}
    for caffe_name, keras_name in pools.items():
        layer = layers.get(caffe_name)
        if layer is None:
            continue
        pool = model.get_layer(keras_name)
        (kh, kw), (ph, pw), (sh, sw) = pool_geometry(layer.proto.pooling_param)
        param = layer.proto.pooling_param
        got = (kh, kw, sh, sw, ph, pw, param.pool == param.MAX)
        if got != (pool.pool_size, pool.pool_size, pool.strides, pool.strides, 0, 0, True):
            fail(caffe_name, "(kernel, stride, pad, method)", got, (pool.pool_size, pool.strides, 0, "MAX"))
    for layer in layers.values():
        if layer.type == "LRN":
            p = layer.proto.lrn_param
            got = {"local_size": int(p.local_size), "alpha": p.alpha, "beta": p.beta, "k": p.k}
            expected = dataclasses.asdict(specs.LRN)
            if any(not math.isclose(got[k], v, rel_tol=1e-6) for k, v in expected.items()):
                fail(layer.name, "LRN parameters", got, expected)


# -------------------------------------------------------------------------------------------------------- conversion


def _aux_present(layers: dict) -> bool:
    names = [m.caffe for m in layer_map.WEIGHT_TABLE if m.head != specs.MAIN_HEAD]
    return all(name in layers for name in names)


def _num_classes(layers: dict, caffemodel_path: str) -> int:
    if "loss3/classifier" not in layers or not layers["loss3/classifier"].blobs:
        raise ValueError(
            f"caffemodel: {caffemodel_path!r} has no 'loss3/classifier' weights: not a bvlc_googlenet model "
            f"(or a truncated file). Layers with weights: {sorted(layers)[:8]}..."
        )
    weight = _canonical(layers["loss3/classifier"].blobs[0], 2, f"caffemodel {caffemodel_path!r} loss3/classifier")
    return int(weight.shape[0])


def load_into(model, layers: dict, caffemodel_path: str) -> list[str]:
    """Assigns the Caffe blobs of `layers` ({name: CaffeLayer}) to the paper-variant `model`; returns the Caffe
    layer names used. Aux entries are skipped when the model has no aux heads."""
    used = []
    for match in layer_map.WEIGHT_TABLE:
        target = layer_map.keras_layer(model, match.keras)
        if target is None:
            continue
        where = f"caffemodel {caffemodel_path!r} layer {match.caffe!r}"
        layer = layers.get(match.caffe)
        if layer is None:
            raise ValueError(
                f"caffemodel: {caffemodel_path!r} has no weights for layer {match.caffe!r} (needed by Keras layer "
                f"{'/'.join(match.keras)}): not a bvlc_googlenet model, or a truncated file"
            )
        if len(layer.blobs) != 2:
            raise ValueError(f"{where}: expected 2 blobs (weight, bias), found {len(layer.blobs)}")
        weight, bias = layer.blobs
        if match.kind == "conv":
            kernel = layer_map.conv_kernel_from_oihw(_canonical(weight, 4, where))
            layer_map.assign(target.conv.kernel, kernel, f"{where} blob 0 (out, in, kh, kw) {tuple(weight.shape)}")
            layer_map.assign(target.conv.bias, _canonical(bias, 1, where), f"{where} blob 1")
        else:
            weight = _canonical(weight, 2, where)
            flat = match.flatten_from
            if flat is not None and weight.shape[1] != int(np.prod(flat)):
                raise ValueError(f"{where}: FC weight of shape {weight.shape} does not flatten a 128x4x4 map")
            kernel = layer_map.dense_kernel_from_out_in(weight, flat)
            layer_map.assign(target.kernel, kernel, f"{where} blob 0 (out, in) {tuple(weight.shape)}")
            layer_map.assign(target.bias, _canonical(bias, 1, where), f"{where} blob 1")
        used.append(match.caffe)
    return used


def convert_caffe(
    caffemodel,
    out=None,
    prototxt=None,
    aux_heads="auto",
    install: bool = False,
    allow_unverified: bool = False,
) -> conversion.ConversionResult:
    """Converts a BVLC GoogLeNet `.caffemodel` to a Keras `.weights.h5` (+ JSON sidecar) for variant "paper".

    Args:
        caffemodel: path of the binary `.caffemodel` (V1 `layers` or current `layer` format).
        out: the `.weights.h5` to write; may be None with install=True.
        prototxt: optional `deploy.prototxt` to check the caffemodel (blob shapes) and the architecture against.
        aux_heads: "auto" (convert loss1/loss2 when the caffemodel has them), True (require them) or False.
        install: also install the result as `weights="imagenet-caffe"` in the cache; the caffemodel must then be
            the published BVLC file (sha1 checked) unless allow_unverified=True.
        allow_unverified: install even when the checksum differs from BVLC's.

    Returns:
        A `ConversionResult` (weights path, sidecar path, metadata).

    Example:
    >>> convert_caffe("bvlc_googlenet.caffemodel", "googlenet_caffe.weights.h5")  # doctest: +SKIP
    """
    caffemodel, out, verified = conversion.start(
        caffemodel, "caffemodel", out, install, allow_unverified, INSTALL_NAME, aux_heads
    )
    net = read_caffemodel(caffemodel)
    layers = {layer.name: layer for layer in net_layers(net, f"caffemodel {caffemodel!r}") if layer.blobs}
    prototxt_net = None
    if prototxt is not None:
        prototxt = conversion.check_input_file(prototxt, "prototxt")
        prototxt_net = read_prototxt(prototxt)
        check_prototxt(prototxt_net, layers, caffemodel, prototxt)
    aux = conversion.resolve_aux(aux_heads, _aux_present(layers), "caffemodel", caffemodel, "loss1/*, loss2/*")
    num_classes = _num_classes(layers, caffemodel)
    model = build_googlenet(VARIANT, num_classes=num_classes, aux_heads=aux, preprocessing=PREPROCESSING)
    if prototxt_net is not None:
        check_architecture(prototxt_net, model, prototxt)
    used = load_into(model, layers, caffemodel)
    ignored = sorted(set(layers) - set(used))
    return conversion.save_converted(
        model,
        out,
        source="caffe",
        input_path=caffemodel,
        variant=VARIANT,
        preprocessing=PREPROCESSING,
        num_classes=num_classes,
        aux_heads=aux,
        install_name=INSTALL_NAME if install else None,
        extra={
            "caffe_format": "V1 layers" if len(net.layers) else "layer",
            "prototxt": os.path.basename(prototxt) if prototxt else None,
            "checksum_check": verified,
            "ignored_caffe_layers": ignored,
        },
    )


# ------------------------------------------------------------------------------------------------- building nets


def aux_deploy_net(deploy_net, train_val_net):
    """A deploy net with the aux heads: `deploy_net` plus train_val's loss1/* and loss2/* layers up to their
    classifiers (pool, conv, ReLU, FC, ReLU, dropout, FC; no loss or accuracy layers). OpenCV can run it."""
    net = caffe_proto.NetParameter()
    net.CopyFrom(deploy_net)
    keep = ("Pooling", "Convolution", "ReLU", "InnerProduct", "Dropout")
    added = 0
    for layer in train_val_net.layer:
        if layer.name.split("/")[0] in ("loss1", "loss2") and layer.type in keep:
            new = net.layer.add()
            new.CopyFrom(layer)
            added += 1
    if added == 0:
        raise ValueError("train_val net: no loss1/* or loss2/* layers found (is it bvlc_googlenet's train_val?)")
    return net


__all__ = [
    "CaffeLayer",
    "aux_deploy_net",
    "blob_shapes",
    "blob_to_array",
    "check_architecture",
    "check_prototxt",
    "convert_caffe",
    "load_into",
    "net_layers",
    "read_caffemodel",
    "read_prototxt",
]
