"""EMA of the weights in a run: which weights validation, checkpoints, resume and the returned model see.

The average itself is Keras' (`TrainConfig.ema` sets the optimizer's `use_ema`/`ema_momentum`: after every batch
`average = decay * average + (1 - decay) * weights`, started at the weights by the first step). `EMAWeights` is
Keras' `SwapEMAWeights` (the average in the model during every validation) plus `averaged()`, the average in the
model for a block of code: the run commits each epoch's backup with the training weights (the optimizer's state
holds the average, so a resume restores both) and writes best/last inside `averaged()`. Keras' own
`swap_on_epoch=True` would leave the average in the model through every epoch-end callback, the backup included,
and a resumed run would train on from the average. At the end of training the model keeps the average (what
`TrainResult.model`, evaluate and export use).
"""

from __future__ import annotations

import contextlib

import keras


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """The average in the model during validation (Keras) and inside `averaged()`; the model keeps it at the end."""

    def __init__(self):
        super().__init__(swap_on_epoch=False)

    @contextlib.contextmanager
    def averaged(self):
        self._swap_variables()
        try:
            yield
        finally:
            self._swap_variables()

    def on_train_end(self, logs=None):
        # fit() already copied the average into the weights for a plain optimizer (finalize_variable_values);
        # do it for every EMA optimizer (MultiOptimizer groups, a LossScaleOptimizer's inner one) alike.
        self._apply_to_ema_optimizers(_copy_average_in, _copy_average_in)


def _copy_average_in(optimizer):
    optimizer._overwrite_model_variables_with_average_value(optimizer._trainable_variables)


def ema_callback(config) -> EMAWeights | None:
    """`EMAWeights` with `config.ema`, else None."""
    return EMAWeights() if config.ema else None


def ema_weights(model) -> list:
    """The optimizer's EMA of the model's trainable weights, as NumPy arrays in `model.trainable_weights` order."""
    optimizer = model.optimizer
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    optimizers = getattr(optimizer, "optimizers", [optimizer])
    by_path = {}
    for opt in optimizers:
        if getattr(opt, "use_ema", False) and hasattr(opt, "_model_variables_moving_average"):
            for var, avg in zip(opt._trainable_variables, opt._model_variables_moving_average):
                by_path[var.path] = keras.ops.convert_to_numpy(avg)
    if not by_path:
        raise ValueError("ema_weights: the model's optimizer keeps no EMA (train with TrainConfig(ema=True))")
    return [by_path[v.path] for v in model.trainable_weights]
