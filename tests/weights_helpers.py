"""Stand-in weight files for the weights tests: random caffemodels of a net definition, random torchvision state dicts
(made with the torch-free writer below only where torch is not needed), and a local HTTP server to download from."""

from __future__ import annotations

import math
import os

import numpy as np

from kgooglenet.weights import caffe_proto
from kgooglenet.weights.caffe import DEFAULT_INPUT, blob_shapes, net_layers, set_blob_data

_V1_TYPES = {v: k for k, v in caffe_proto.V1_TYPE_NAMES.items()}


def random_blobs(net, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Random parameters for every weight layer of a net definition: He-normal weights (activations keep their
    scale through the ReLUs, so logits neither vanish nor explode) and small random biases."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shapes in blob_shapes(net).items():
        weight_shape = shapes[0]
        fan_in = int(np.prod(weight_shape[1:]))
        arrays = [rng.normal(0.0, math.sqrt(2.0 / fan_in), weight_shape).astype(np.float32)]
        for shape in shapes[1:]:
            arrays.append(rng.uniform(-0.5, 0.5, shape).astype(np.float32))
        blobs[name] = arrays
    return blobs


def write_caffemodel(net, blobs: dict, path, legacy: bool = False) -> str:
    """Writes a binary caffemodel: the layers of `net` (a NetParameter) with `blobs` ({layer: [arrays]}).

    Args:
        legacy: write the legacy V1 format (`layers` with enum types, blobs with num/channels/height/width, the
            input as `input`/`input_dim`) instead of the current one (`layer`, blobs with `shape`).
    """
    model = caffe_proto.NetParameter(name=net.name)
    for layer in net_layers(net, "net"):
        arrays = blobs.get(layer.name, [])
        if legacy:
            if layer.type == "Input":
                dims = layer.proto.input_param.shape[0].dim if len(layer.proto.input_param.shape) else ()
                model.input.append(layer.top[0])
                model.input_dim.extend([int(d) for d in dims] or [1, *DEFAULT_INPUT])
                continue
            if layer.type not in _V1_TYPES:
                raise ValueError(f"layer {layer.name!r}: type {layer.type!r} has no V1 enum type")
            new = model.layers.add(name=layer.name, bottom=layer.bottom, top=layer.top)
            new.type = caffe_proto.V1LayerParameter.LayerType.Value(_V1_TYPES[layer.type])
            for field in ("convolution_param", "pooling_param", "lrn_param", "inner_product_param", "dropout_param"):
                if layer.proto.HasField(field):
                    getattr(new, field).CopyFrom(getattr(layer.proto, field))
        else:
            new = model.layer.add()
            new.CopyFrom(layer.proto)
            new.ClearField("blobs")
        for array in arrays:
            blob = new.blobs.add()
            if legacy:
                dims = (1,) * (4 - array.ndim) + tuple(array.shape)
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            set_blob_data(blob, array)
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path




class WeightsServer:
    """An HTTP server on 127.0.0.1 serving `files` ({name: bytes}) from a thread, counting requests.

    `truncate=True` makes it announce the whole length but stop after half the bytes (a dropped connection).
    """

    def __init__(self, files: dict):
        import http.server
        import threading

        self.files = dict(files)
        self.requests = []
        self.truncate = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                server.requests.append(self.path)
                data = server.files.get(self.path.rsplit("/", 1)[-1])
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if server.truncate else data)
                if server.truncate:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/"
