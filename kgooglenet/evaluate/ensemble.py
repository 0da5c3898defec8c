"""Ensembles: the softmax of several models (and optionally of their aux heads) averaged over test-time crops.

A single model is an ensemble of one. Every model sees the same crops (float32 RGB in [0, 255]: each model applies
its own preprocessing inside), and the ensemble's probability for an image is the mean over models of each model's
mean softmax over crops, as in the paper (section 7: "softmax probabilities averaged over multiple crops and over
all the individual classifiers").
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from kgooglenet.model import has_aux_heads
from kgooglenet.specs import HEADS  # the keys of an output dict ("main", "aux1", "aux2"); head_weights weighs them

# Traced forward functions and MAC counts per model, so repeated evaluations do not retrace.
_FORWARDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_MACS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _output_is_probability(tensor) -> bool:
    """True when the layer that produced `tensor` ends in a softmax (so no softmax needs to be applied on top)."""
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None)
    activation = getattr(op, "activation", None)
    if activation is None:
        return True  # unknown layer type: assume the model returns probabilities
    return activation is not keras.activations.linear


def forward_macs(model, image_size: int | None = None) -> int:
    """Multiply-adds of one forward pass of one image: the total of `kgooglenet.summary.summary_table` (the paper's
    Table 1 "ops": convolutions and linear layers; pooling, BatchNorm and activations are not counted, as in the
    paper's "1.5 billion multiply-adds"); layers that are not kgooglenet's count nothing.

    Args:
        model: a Keras model taking (B, H, W, 3) images.
        image_size: the square input size for models with a dynamic input size (default: the model's, else 224).

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> round(forward_macs(GoogLeNet("bn")) / 1e9, 2)
    1.5
    """
    from kgooglenet.summary import summary_table

    cached = _MACS.setdefault(model, {})
    if image_size in cached:
        return cached[image_size]
    shape = list(model.inputs[0].shape)
    h, w = shape[1], shape[2]
    counted = model
    if h is None or w is None:  # the count needs static shapes: a copy of the architecture at that size
        h = w = image_size or 224
        counted = keras.models.clone_model(model, input_tensors=keras.Input((h, w, shape[3])))
    elif image_size is not None and (h, w) != (image_size, image_size):
        raise ValueError(f"`image_size`: model {model.name!r} takes {h}x{w} inputs, received image_size={image_size}")
    total = sum(row.ops for row in summary_table(counted))
    cached[image_size] = int(total)
    return int(total)


class Ensemble:
    """Averages the softmax of several models over crops.

    Args:
        models: a keras.Model or a list of them (same number of classes; inputs RGB float in [0, 255]).
        head_weights: for models with aux heads, the weight of each head's softmax, e.g.
            {"main": 1.0, "aux1": 0.3, "aux2": 0.3} (normalized to sum 1); None = the main classifier only.
        from_logits: True when the models return logits (softmax applied here), False for probabilities; None
            detects it from each output layer's activation.
        batch_size: the most crops sent through a model at once.
        jit_compile: compile the forward passes with XLA.
        name: a label for tables (default: the model names joined by "+").

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> m = GoogLeNet("cifar", num_classes=10, width=0.125)
    >>> Ensemble([m, m]).predict(np.zeros((2, 32, 32, 3), "float32")).shape
    (2, 10)
    """

    def __init__(self, models, head_weights=None, from_logits=None, batch_size=64, jit_compile=False, name=None):
        if isinstance(models, Ensemble):
            models = models.models
        if isinstance(models, keras.Model):
            models = [models]
        models = list(models)
        if not models or not all(isinstance(m, keras.Model) for m in models):
            raise ValueError(f"`models` must be a keras.Model or a non-empty list of them, received {models!r}")
        if head_weights is not None:
            unknown = set(head_weights) - set(HEADS)
            if unknown or "main" not in head_weights or any(v < 0 for v in head_weights.values()):
                raise ValueError(
                    f"`head_weights` must map some of {HEADS} (including 'main') to non-negative weights, "
                    f"received head_weights={head_weights!r}"
                )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, received batch_size={batch_size!r}")
        self.models = models
        self.head_weights = dict(head_weights) if head_weights else None
        self.from_logits = from_logits
        self.batch_size = batch_size
        self.jit_compile = jit_compile
        self.name = name or "+".join(m.name for m in models)
        sizes = {self.model_size(m) for m in models} - {None}
        if len(sizes) > 1:
            raise ValueError(f"`models` must share one input size, received models with input sizes {sorted(sizes)}")
        self.image_size = sizes.pop() if sizes else None
        classes = {self._num_classes(m) for m in models}
        if len(classes) != 1:
            raise ValueError(f"`models` must have the same number of classes, received {sorted(classes)}")
        self.num_classes = classes.pop()
        self._forwards = [self._make_forward(m) for m in models]

    @staticmethod
    def model_size(model):
        shape = model.inputs[0].shape
        if shape[1] is None or shape[2] is None:
            return None
        if shape[1] != shape[2]:
            raise ValueError(f"`models`: {model.name!r} takes non-square {shape[1]}x{shape[2]} inputs")
        return int(shape[1])

    @staticmethod
    def _num_classes(model):
        out = model.output["main"] if isinstance(model.output, dict) else model.output
        return int(out.shape[-1])

    @property
    def heads_used(self) -> list[list[str]]:
        """Per model, the output heads whose softmax enters the average."""
        used = []
        for m in self.models:
            if has_aux_heads(m) and self.head_weights:
                used.append([h for h in HEADS if self.head_weights.get(h, 0) > 0])
            else:
                used.append(["main"])
        return used

    def _make_forward(self, model):
        key = (self.from_logits, tuple(sorted((self.head_weights or {}).items())), bool(self.jit_compile))
        cache = _FORWARDS.setdefault(model, {})
        if key not in cache:
            cache[key] = self._trace_forward(model)
        return cache[key]

    def _trace_forward(self, model):
        outputs = model.output if isinstance(model.output, dict) else {"main": model.output}
        is_prob = {k: (not self.from_logits) if self.from_logits is not None else _output_is_probability(v)
                   for k, v in outputs.items()}
        weights = {"main": 1.0}
        if self.head_weights and has_aux_heads(model):
            weights = {k: float(v) for k, v in self.head_weights.items() if v > 0}
        total = sum(weights.values())
        channels = model.inputs[0].shape[-1]

        def forward(x):
            y = model(x, training=False)
            y = y if isinstance(y, dict) else {"main": y}
            p = 0.0
            for key, w in weights.items():
                v = tf.cast(y[key], tf.float32)
                p += (w / total) * (v if is_prob[key] else tf.nn.softmax(v, axis=-1))
            return p

        spec = tf.TensorSpec([None, self.model_size(model), self.model_size(model), channels], tf.float32)
        return tf.function(forward, input_signature=[spec], jit_compile=self.jit_compile)

    @property
    def forward_passes_per_crop(self) -> int:
        return len(self.models)

    def macs_per_crop(self, image_size: int | None = None) -> int:
        """Multiply-adds of all models for one crop (see `forward_macs`)."""
        size = image_size or self.image_size
        return sum(forward_macs(m, size) for m in self.models)

    def predict(self, images) -> np.ndarray:
        """Probabilities (B, C) for images (B, S, S, 3) (one crop each)."""
        images = np.asarray(images, np.float32)
        return self.predict_crops(images[:, None])

    def predict_crops(self, crops) -> np.ndarray:
        """Probabilities (B, C) for crops (B, N, S, S, 3): softmax averaged over the N crops and over the models."""
        crops = tf.convert_to_tensor(crops, tf.float32)
        if crops.shape.rank != 5:
            raise ValueError(f"`crops` must be (batch, crops, height, width, channels), received shape {crops.shape}")
        b, n = int(crops.shape[0]), int(crops.shape[1])
        flat = tf.reshape(crops, [b * n, *crops.shape[2:]])
        total = np.zeros((b * n, self.num_classes), np.float64)
        for forward in self._forwards:
            for start in range(0, b * n, self.batch_size):
                total[start : start + self.batch_size] += forward(flat[start : start + self.batch_size]).numpy()
        probs = total.reshape(b, n, self.num_classes).mean(axis=1) / len(self._forwards)
        return probs.astype(np.float32)
