"""Training GoogLeNet: `train(config) -> TrainResult` from a `TrainConfig`.

`train` builds the data (`kgooglenet.data.make_datasets`), the model (aux heads weighted 0.3), the optimizer, schedule
and callbacks, then runs `model.fit` (or a `tf.distribute` custom loop for multi-worker runs, where Keras 3 `fit`
fails), resuming an interrupted run found in `config.out_dir`. `build_model_and_compile(config, num_classes)` is the
model + optimizer + losses part alone (for KerasTuner HyperModels).

Example:
```python
from kgooglenet.train import TrainConfig, train
result = train(TrainConfig(variant="cifar", width=0.25, epochs=10, out_dir="runs/digits"))
print(result.best_metric, result.best_checkpoint)
```
"""

import sys

from kgooglenet.train.config import TrainConfig
from kgooglenet.train.loop import TrainResult, build_model_and_compile, train

__all__ = ["TrainConfig", "TrainResult", "build_model_and_compile", "train"]


class _CallableModule(type(sys.modules[__name__])):
    """`kgooglenet.train` is both this package and the function `train`: once the package is imported, Python binds
    the attribute `kgooglenet.train` to the package, so the package itself forwards calls to `train` and
    `kgooglenet.train(config)` works whichever of the two the name refers to."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
