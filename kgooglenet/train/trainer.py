"""`TrainingModel`: the functional GoogLeNet with a `train_step` that adds what `fit` lacks.

The model is the very same functional graph (same layers, same names, same `.weights.h5` layout: a plain
`GoogLeNet(...)` loads its weights). Its `train_step` is Keras' own (TensorFlow backend) plus:
- coupled L2 weight decay (`l2 * w` added to the gradient of every kernel, as Caffe's and torch's SGD/Adam
  `weight_decay`; AdamW's decoupled decay lives in the optimizer instead);
- FGSM adversarial training: a fraction of each batch is replaced by `clip(x + epsilon * sign(dL/dx), 0, 255)`,
  the gradient taken through the model in inference mode (no BatchNorm statistics update, no dropout) on the main
  head's loss.
The same `train_step` runs under `fit`, under MirroredStrategy and inside the multi-worker custom loop.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kgooglenet.train.optim import Crossentropy, is_decayed

_PACKAGE = "kgooglenet"


def unscale_for_distribution(loss):
    """Keras scales the loss by 1 / replicas under a strategy (so gradients sum correctly); undo it for logging."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * tf.cast(replicas, loss.dtype) if replicas > 1 else loss


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TrainingModel(keras.Model):
    """A functional GoogLeNet whose `train_step` adds coupled L2 weight decay and FGSM adversarial examples.

    Build it from a GoogLeNet and call `configure_training` (the defaults change nothing: plain Keras training).

    Example:
    >>> from kgooglenet import GoogLeNet
    >>> base = GoogLeNet("cifar", num_classes=10, width=0.125)
    >>> model = TrainingModel(base.input, base.output, name=base.name)
    >>> model.configure_training(l2=5e-4, adversarial=True, fgsm_epsilon=2.0)
    >>> model.get_layer("classifier") is base.get_layer("classifier")
    True
    """

    l2 = 0.0
    decay_all = False
    adversarial = False
    fgsm_epsilon = 2.0
    adversarial_fraction = 0.5
    label_smoothing = 0.0

    def configure_training(self, l2=0.0, decay_all=False, adversarial=False, fgsm_epsilon=2.0,
                           adversarial_fraction=0.5, label_smoothing=0.0):
        """Set the extras of `train_step` (call before `compile`/`fit`: they are read when the step is traced).

        Args:
            l2: coupled L2 weight decay coefficient (0 = off).
            decay_all: also decay biases and BatchNorm gamma/beta (default: kernels only).
            adversarial: mix FGSM examples into each batch.
            fgsm_epsilon: FGSM step in pixels of the [0, 255] input.
            adversarial_fraction: fraction of each batch replaced by adversarial examples.
            label_smoothing: label smoothing of the FGSM attack loss (the training loss has its own).
        """
        self.l2 = float(l2)
        self.decay_all = bool(decay_all)
        self.adversarial = bool(adversarial)
        self.fgsm_epsilon = float(fgsm_epsilon)
        self.adversarial_fraction = float(adversarial_fraction)
        self.label_smoothing = float(label_smoothing)

    def fgsm(self, x, y, epsilon=None):
        """FGSM examples for images `x` (pixels in [0, 255]) with labels `y` (sparse, one-hot, or the aux dict)."""
        epsilon = self.fgsm_epsilon if epsilon is None else epsilon
        labels = y["main"] if isinstance(y, dict) else y
        x = tf.convert_to_tensor(x, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            pred = self(x, training=False)
            pred = pred["main"] if isinstance(pred, dict) else pred
            loss = Crossentropy(self.label_smoothing)(labels, pred)
        grad = tape.gradient(loss, x)
        return tf.stop_gradient(tf.clip_by_value(x + epsilon * tf.sign(grad), 0.0, 255.0))

    def _mix_adversarial(self, x, y):
        n = tf.shape(x)[0]
        k = tf.cast(tf.round(self.adversarial_fraction * tf.cast(n, tf.float32)), tf.int32)
        y_head = tf.nest.map_structure(lambda t: t[:k], y)
        x_adv = self.fgsm(x[:k], y_head)
        return tf.concat([x_adv, tf.cast(x[k:], x_adv.dtype)], axis=0)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self.adversarial and self.fgsm_epsilon > 0:
            x = self._mix_adversarial(x, y)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            # Keras' own train_step tracks the unscaled loss the same way in its "loss" metric, found by name in
            # the public `metrics` as Keras' customizing-fit guide does.
            loss_metric = next(m for m in self.metrics if m.name == "loss")
            loss_metric.update_state(unscale_for_distribution(loss), sample_weight=tf.shape(x)[0])
            scaled = self.optimizer.scale_loss(loss)
        trainable = self.trainable_weights
        grads = tape.gradient(scaled, trainable)
        if self.l2 > 0:
            # The gradient above is of the (loss-scaled) loss: scale the L2 term the same way.
            factor = self.l2 * self.optimizer.scale_loss(tf.constant(1.0))
            grads = [
                g + tf.cast(factor, g.dtype) * tf.cast(v.value, g.dtype)
                if g is not None and (self.decay_all or is_decayed(v)) else g
                for g, v in zip(grads, trainable)
            ]
        self.optimizer.apply_gradients(zip(grads, trainable))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
