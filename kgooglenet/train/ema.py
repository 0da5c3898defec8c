"""EMA of the weights in a run: which weights validation, checkpoints, resume and the returned model see.

The average itself is Keras' (`TrainConfig.ema` sets the optimizer's `use_ema`/`ema_momentum`: after every batch
`average = decay * average + (1 - decay) * weights`, started at the weights by the first step). Keras'
`SwapEMAWeights` swaps the average into the model around each validation. Its `swap_on_epoch` would also leave the
average in the model through every epoch-end callback, BackupAndRestore included: the backup would then hold the
average as the weights and the weights as the average, and a resumed run would train on from the average. So
`ema_callbacks` returns two callbacks sharing one swap: the first (placed before the best/last checkpoints) swaps the
average in, the second (placed after them, before the backup) swaps it back, and at the end of training the model is
left holding the average (what `TrainResult.model`, evaluate and export use).
"""

from __future__ import annotations

import keras


class EMASwapIn(keras.callbacks.SwapEMAWeights):
    """Keras' SwapEMAWeights (average in the model during validation) that also swaps the average in at each
    epoch end, for the checkpoints after it; `EMASwapOut` swaps it back. At the end of training the model keeps
    the average."""

    def __init__(self):
        super().__init__(swap_on_epoch=False)

    def on_epoch_end(self, epoch, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def swap_out(self):
        if self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False

    def on_train_end(self, logs=None):
        # fit() already copied the average into the weights for a plain optimizer (finalize_variable_values);
        # do it for every EMA optimizer (MultiOptimizer groups, a LossScaleOptimizer's inner one) alike.
        self._apply_to_ema_optimizers(_copy_average_in, _copy_average_in)


def _copy_average_in(optimizer):
    optimizer._overwrite_model_variables_with_average_value(optimizer._trainable_variables)


class EMASwapOut(keras.callbacks.Callback):
    """Swaps the training weights back after the epoch-end checkpoints (see `EMASwapIn`)."""

    def __init__(self, swap_in: EMASwapIn):
        super().__init__()
        self.swap_in = swap_in

    def on_epoch_end(self, epoch, logs=None):
        self.swap_in.swap_out()


def ema_callbacks(config) -> tuple[list, list]:
    """([EMASwapIn], [EMASwapOut]) with `config.ema`, else ([], []): the first list goes right before the run's
    checkpoint callbacks, the second right after them (before BackupAndRestore)."""
    if not config.ema:
        return [], []
    swap_in = EMASwapIn()
    return [swap_in], [EMASwapOut(swap_in)]


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
