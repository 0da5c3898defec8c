"""Numerical parity between a converted Keras GoogLeNet and the framework it came from, layer by layer.

References: `CaffeReference` runs the Caffe model with OpenCV's DNN module (`cv2.dnn.readNetFromCaffe`, an independent
implementation of Caffe's layers; needs opencv-python-headless < 5, OpenCV 5 dropped the Caffe importer), fed with
OpenCV's own Caffe-style preprocessing (BGR, mean 104/117/123). `TorchvisionReference` runs
`torchvision.models.googlenet` on torchvision-normalized input (its `transform_input` applies inside the model), with
forward hooks for intermediate outputs and the aux modules called on the 4a/4d outputs (eval mode). torchvision must
be imported before TensorFlow in a process; when it was not, the reference runs in a subprocess that imports torch
first.

Images always enter as RGB pixels in [0, 255], NHWC, exactly what the Keras model takes.

Note on LRN: OpenCV's Caffe importer keeps Caffe's semantics (`norm_by_size=true`: alpha is divided by local_size,
2e-5 for bvlc_googlenet), which is also what the Keras `LocalResponseNormalization` does.

Example:
>>> report = parity_report(model, CaffeReference("deploy.prototxt", "m.caffemodel"), images)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile

import numpy as np

from kgooglenet import specs
from kgooglenet.weights import layer_map

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's normalization of [0, 1] RGB
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)  # bvlc_googlenet train_val.prototxt mean_value


def sample_images(size=(224, 224)) -> np.ndarray:
    """scikit-learn's two sample photos (china.jpg, flower.jpg; shipped with scikit-learn, no download), center
    cropped to the aspect ratio of `size` and resized to it (bilinear): float32 RGB [0, 255], shape (2, h, w, 3)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    h, w = (size, size) if isinstance(size, int) else size
    out = []
    for image in load_sample_images().images:
        ih, iw = image.shape[:2]
        scale = min(ih / h, iw / w)
        ch, cw = int(round(h * scale)), int(round(w * scale))
        top, left = (ih - ch) // 2, (iw - cw) // 2
        crop = Image.fromarray(image[top : top + ch, left : left + cw])
        out.append(np.asarray(crop.resize((w, h), Image.BILINEAR), dtype=np.float32))
    return np.stack(out)


def load_images(paths, size=(224, 224)) -> np.ndarray:
    """Image files as float32 RGB [0, 255] of shape (n, h, w, 3): center cropped to the aspect ratio, resized."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"images: no file at {path!r}")
        with Image.open(path) as image:
            image = image.convert("RGB")
            iw, ih = image.size
            scale = min(ih / h, iw / w)
            ch, cw = int(round(h * scale)), int(round(w * scale))
            top, left = (ih - ch) // 2, (iw - cw) // 2
            image = image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR)
            out.append(np.asarray(image, dtype=np.float32))
    return np.stack(out)


def _to_nhwc(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


class CaffeReference:
    """The Caffe model run by OpenCV's DNN module.

    Args:
        prototxt: the net definition (deploy.prototxt; with the aux heads for aux comparisons, see
            `kgooglenet.weights.caffe.aux_deploy_net`).
        caffemodel: the binary weights.
    """

    source = "caffe"

    def __init__(self, prototxt, caffemodel):
        self.prototxt = os.fspath(prototxt)
        self.caffemodel = os.fspath(caffemodel)

    def reference_name(self, match: layer_map.ActivationMatch) -> str | None:
        return match.caffe

    def outputs(self, images: np.ndarray, names) -> dict[str, np.ndarray]:
        """{layer name: NHWC (or (N, C)) output} for RGB [0, 255] `images`; names OpenCV's net lacks are left out."""
        try:
            import cv2
        except ImportError as err:
            raise ImportError("The Caffe reference needs OpenCV: pip install 'opencv-python-headless<5'") from err
        if not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise ImportError(f"OpenCV {cv2.__version__} has no Caffe importer (removed in OpenCV 5): use 4.x")
        net = cv2.dnn.readNetFromCaffe(self.prototxt, self.caffemodel)
        net.enableFusion(False)  # keep every layer's own output (ReLUs are not folded into the convolutions)
        available = set(net.getLayerNames())
        names = [n for n in names if n in available]
        h, w = images.shape[1:3]
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in np.asarray(images, np.float32)]
        blob = cv2.dnn.blobFromImages(bgr, 1.0, (w, h), CAFFE_MEAN_BGR, swapRB=False, crop=False)
        net.setInput(blob)
        results = net.forward(names)
        return {name: _to_nhwc(result) for name, result in zip(names, results)}


class TorchvisionReference:
    """torchvision's GoogLeNet with a converted state dict.

    Args:
        checkpoint: the state dict file (`.pth`).
        transform_input: the model's `transform_input` (True for torchvision's ImageNet weights).
    """

    source = "torchvision"

    def __init__(self, checkpoint, transform_input: bool = True):
        self.checkpoint = os.fspath(checkpoint)
        self.transform_input = bool(transform_input)

    def reference_name(self, match: layer_map.ActivationMatch) -> str | None:
        return match.torch

    def outputs(self, images: np.ndarray, names) -> dict[str, np.ndarray]:
        images = np.asarray(images, np.float32)
        if _torchvision_usable_here():
            return torch_outputs(self.checkpoint, images, list(names), self.transform_input)
        with tempfile.TemporaryDirectory() as tmp:
            inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
            np.savez(inp, images=images, names=np.array(list(names)), transform_input=self.transform_input)
            code = (
                "import sys, torch, torchvision\n"
                "from kgooglenet.weights.parity import _torch_outputs_main\n"
                "_torch_outputs_main(*sys.argv[1:])\n"
            )
            proc = subprocess.run(
                [sys.executable, "-c", code, self.checkpoint, inp, out], capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise RuntimeError(f"the torchvision reference failed (subprocess):\n{proc.stderr[-3000:]}")
            with np.load(out) as data:
                return {name: data[name] for name in data.files}


def _torchvision_usable_here() -> bool:
    """torchvision works in this process when it was imported before TensorFlow (or TensorFlow is not loaded)."""
    modules = list(sys.modules)
    if "tensorflow" not in sys.modules:
        return True
    return "torchvision" in sys.modules and modules.index("torchvision") < modules.index("tensorflow")


def torch_outputs(checkpoint, images: np.ndarray, names, transform_input=True) -> dict[str, np.ndarray]:
    """Runs torchvision's GoogLeNet (eval mode) with the state dict `checkpoint` on RGB [0, 255] `images` and returns
    the outputs of the modules `names` (NHWC / (N, C)); "aux1"/"aux2" are the aux modules applied to the outputs of
    inception4a / inception4d. Call only where torchvision was imported before TensorFlow."""
    import torch
    import torchvision
    from torchvision.transforms.functional import normalize

    state = torch.load(os.fspath(checkpoint), map_location="cpu", weights_only=True)
    has_aux = any(k.startswith("aux1.") for k in state)
    model = torchvision.models.googlenet(
        weights=None,
        aux_logits=has_aux,
        transform_input=transform_input,
        init_weights=False,
        num_classes=int(state["fc.weight"].shape[0]),
    )
    model.load_state_dict(state)
    model.eval()
    captured = {}
    wanted = [n for n in names if n not in ("aux1", "aux2")]
    if has_aux:
        wanted += [n for n in ("inception4a", "inception4d") if n not in wanted]
    modules = dict(model.named_modules())
    hooks = [
        modules[name].register_forward_hook(lambda _m, _i, output, name=name: captured.__setitem__(name, output))
        for name in wanted
        if name in modules
    ]
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)) / 255.0).float()
    x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    try:
        with torch.no_grad():
            model(x)
            if has_aux:
                captured["aux1"] = model.aux1(captured["inception4a"])
                captured["aux2"] = model.aux2(captured["inception4d"])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: _to_nhwc(captured[name].numpy()) for name in names if name in captured}


def _torch_outputs_main(checkpoint, inp, out):
    with np.load(inp) as data:
        images, names, transform_input = data["images"], [str(n) for n in data["names"]], bool(data["transform_input"])
    np.savez(out, **torch_outputs(checkpoint, images, names, transform_input))


@dataclasses.dataclass(frozen=True)
class ParityRow:
    keras_layer: str
    reference_layer: str
    shape: tuple
    max_abs_diff: float  # max |keras - reference|
    reference_scale: float  # max |reference|
    top5_match: bool | None = None  # for classifier outputs: same top-5 classes (in order) for every image

    @property
    def relative(self) -> float:
        """max |keras - reference| / max |reference|."""
        return self.max_abs_diff / self.reference_scale if self.reference_scale > 0 else self.max_abs_diff


@dataclasses.dataclass(frozen=True)
class ParityReport:
    source: str
    rows: tuple[ParityRow, ...]

    def row(self, keras_layer: str) -> ParityRow:
        for row in self.rows:
            if row.keras_layer == keras_layer:
                return row
        raise KeyError(f"no parity row for Keras layer {keras_layer!r}; rows: {[r.keras_layer for r in self.rows]}")

    @property
    def max_relative(self) -> float:
        return max(row.relative for row in self.rows)

    def format(self) -> str:
        header = f"{'keras layer':<16} {self.source + ' layer':<26} {'shape':<20} {'max|diff|':>11} {'max|ref|':>10} "
        header += f"{'relative':>10}  top-5"
        lines = [header, "-" * len(header)]
        for r in self.rows:
            top5 = "" if r.top5_match is None else ("same" if r.top5_match else "DIFFERENT")
            lines.append(
                f"{r.keras_layer:<16} {r.reference_layer:<26} {str(r.shape):<20} {r.max_abs_diff:>11.3g} "
                f"{r.reference_scale:>10.3g} {r.relative:>10.2e}  {top5}"
            )
        return "\n".join(lines)


_CLASSIFIERS = tuple(specs.CLASSIFIER_LAYERS.values())


def parity_report(keras_model, reference, images, layers=None, verbose: bool = True) -> ParityReport:
    """Per-layer max |difference| between `keras_model` and `reference` on `images`.

    Args:
        keras_model: a converted GoogLeNet (paper variant for Caffe, bn for torchvision), taking RGB [0, 255].
        reference: a `CaffeReference` or `TorchvisionReference`.
        images: float RGB [0, 255], shape (n, h, w, 3), the size of the model's input.
        layers: Keras layer names to compare (default: every row of `layer_map.ACTIVATION_TABLE` that both have).
        verbose: print the table.

    Returns:
        A `ParityReport`; classifier rows (logits) also say whether the top-5 classes agree.
    """
    import keras

    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"`images` must be RGB of shape (n, h, w, 3), received shape {images.shape}")
    model_layers = {layer.name for layer in keras_model.layers}
    matches = [
        m
        for m in layer_map.ACTIVATION_TABLE
        if m.keras in model_layers and reference.reference_name(m) and (layers is None or m.keras in layers)
    ]
    ref = reference.outputs(images, [reference.reference_name(m) for m in matches])
    matches = [m for m in matches if reference.reference_name(m) in ref]
    if not matches:
        raise ValueError(f"no layer of {keras_model.name} has a counterpart in the {reference.source} reference")
    probe = keras.Model(keras_model.input, [keras_model.get_layer(m.keras).output for m in matches])
    ours = probe.predict(images, verbose=0, batch_size=len(images))
    if len(matches) == 1:
        ours = [ours]
    rows = []
    for match, out in zip(matches, ours):
        theirs = ref[reference.reference_name(match)]
        out = np.asarray(out, np.float32)
        if theirs.ndim == 4 and out.ndim == 2 and theirs.shape[1:3] == (1, 1):
            theirs = theirs[:, 0, 0, :]
        if theirs.shape != out.shape:
            raise ValueError(
                f"parity: Keras layer {match.keras!r} gives shape {out.shape}, {reference.source} layer "
                f"{reference.reference_name(match)!r} gives {theirs.shape}"
            )
        top5 = None
        if match.keras in _CLASSIFIERS:
            top5 = bool(np.array_equal(np.argsort(-out, 1)[:, :5], np.argsort(-theirs, 1)[:, :5]))
        rows.append(
            ParityRow(
                match.keras,
                reference.reference_name(match),
                tuple(out.shape),
                float(np.abs(out - theirs).max()),
                float(np.abs(theirs).max()),
                top5,
            )
        )
    report = ParityReport(reference.source, tuple(rows))
    if verbose:
        print(report.format())
    return report


__all__ = [
    "CaffeReference",
    "ParityReport",
    "ParityRow",
    "TorchvisionReference",
    "load_images",
    "parity_report",
    "sample_images",
    "torch_outputs",
]
