"""tf.data input pipelines for kgooglenet.

Sources: the embedded scikit-learn digits (default), TFDS datasets by name (offline-first), folders of
class subfolders, TFRecord shards written by `python -m kgooglenet prepare`, and in-memory arrays.
Batches are `(float32 RGB [0,255] NHWC, int32 labels)`; the model normalizes inside itself.

Modules: `image` (the one evaluation-style image path: decode incl. EXIF, antialiased shorter-side resize, center
crop; validation, evaluate, predict, the preparer and the serving signature use it), `augment` (the fast training
ops), `sources` (the pipelines), `folders` (listing and the stratified split), `prepare` (the preparer) and
`records` (its on-disk format), `albumentations`, `config`, `malloc` (keeps large freed buffers in the process).

Example:
```python
from kgooglenet.data import DataConfig, make_datasets
bundle = make_datasets(DataConfig())              # digits, 32x32, stratified 80/20 split
model.fit(bundle.train, validation_data=bundle.val, epochs=10)
```
"""

from kgooglenet.data.albumentations import build_compose
from kgooglenet.data.augment import mix_batch
from kgooglenet.data.config import AUTO, AlbumentationsSpec, AugmentConfig, DataConfig, DatasetBundle
from kgooglenet.data.folders import list_image_folder, stratified_split
from kgooglenet.data.prepare import PreparationMismatch, PrepareReport, prepare_folder
from kgooglenet.data.records import read_prepared
from kgooglenet.data.sources import load_digits_arrays, make_dataset, make_datasets, tfds_builder, validation_images

__all__ = [
    "AUTO",
    "AlbumentationsSpec",
    "AugmentConfig",
    "DataConfig",
    "DatasetBundle",
    "PreparationMismatch",
    "PrepareReport",
    "build_compose",
    "list_image_folder",
    "load_digits_arrays",
    "make_dataset",
    "make_datasets",
    "mix_batch",
    "prepare_folder",
    "read_prepared",
    "stratified_split",
    "tfds_builder",
    "validation_images",
]
