"""Training GoogLeNet: `kgooglenet.train.train(config) -> TrainResult` from a `TrainConfig`.

`kgooglenet.train` is this package and `kgooglenet.train.train` the function, as `kgooglenet.evaluate.evaluate` is
in `kgooglenet.evaluate`.

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

from kgooglenet.train.build import build_model_and_compile
from kgooglenet.train.config import TrainConfig
from kgooglenet.train.loop import train
from kgooglenet.train.run import TrainResult

__all__ = ["TrainConfig", "TrainResult", "build_model_and_compile", "train"]
