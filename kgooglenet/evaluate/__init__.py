"""Evaluation the way the paper measured GoogLeNet: 1, 10 or 144 test-time crops, ensembles of models (and of their
aux heads), top-1/top-5, per-class accuracy, a confusion-matrix PNG and a Table-3-style summary.

Example:
```python
from kgooglenet import GoogLeNet
from kgooglenet.evaluate import evaluate, results_table

model = GoogLeNet("bn", weights="imagenet-torchvision")
results = [evaluate(model, val_images, crops=c) for c in (1, 10, 144)]
print(results_table(results))
```
"""

from kgooglenet.data.image import center_crop, resized_shape
from kgooglenet.evaluate.crops import Crop, crop_boxes, crop_count, multi_crop, scheme_scales
from kgooglenet.evaluate.ensemble import Ensemble, forward_macs
from kgooglenet.evaluate.report import EvaluationResult, most_confused, plot_confusion, plot_per_class, results_table
from kgooglenet.evaluate.run import data_from_path, decode_file, evaluate, image_files_dataset, prepared_val_dataset

__all__ = [
    "Crop",
    "Ensemble",
    "EvaluationResult",
    "center_crop",
    "crop_boxes",
    "crop_count",
    "data_from_path",
    "decode_file",
    "evaluate",
    "forward_macs",
    "image_files_dataset",
    "most_confused",
    "multi_crop",
    "plot_confusion",
    "plot_per_class",
    "prepared_val_dataset",
    "resized_shape",
    "results_table",
    "scheme_scales",
]
