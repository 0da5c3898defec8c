"""TFDS source: reading a dataset prepared in a local data_dir (built by the test, offline), clear errors."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kgooglenet.data import DataConfig, make_datasets
from kgooglenet.data.sources import tfds_builder


class KgTinyImages(tfds.core.GeneratorBasedBuilder):
    """12 train / 4 test images of 3 classes (grayscale PNGs: 1 channel, like MNIST)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(20, 24, 1)),
                "label": tfds.features.ClassLabel(names=["zero", "one", "two"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12, 0), "test": self._generate_examples(4, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            label = i % 3
            img = np.full((20, 24, 1), 60 * label + 30, np.uint8) + rng.integers(0, 5, (20, 24, 1), dtype=np.uint8)
            yield i, {"image": img, "label": label}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    KgTinyImages(data_dir=d).download_and_prepare()
    return d


def test_loads_from_local_data_dir(data_dir):
    cfg = DataConfig(source="tfds", name="kg_tiny_images", data_dir=data_dir, image_size=16, batch_size=4, seed=0)
    b = make_datasets(cfg)
    assert (b.train_size, b.val_size, b.num_classes, b.class_names) == (12, 4, 3, ["zero", "one", "two"])
    assert b.steps_per_epoch == 3 and b.validation_steps == 1
    assert b.train.element_spec[0].shape.as_list() == [4, 16, 16, 3]
    labels = np.concatenate([y.numpy() for _, y in b.train])
    assert sorted(labels.tolist()) == sorted([0, 1, 2] * 4)
    xv, yv = next(iter(b.val))
    assert xv.shape == (4, 16, 16, 3) and xv.dtype == tf.float32 and yv.dtype == tf.int32
    # grayscale -> 3 equal channels, values follow the class
    np.testing.assert_allclose(xv[..., 0], xv[..., 2])
    for img, y in zip(xv.numpy(), yv.numpy()):
        assert abs(img.mean() - (60 * y + 32)) < 4
    x1, _ = next(iter(make_datasets(cfg).train))
    x2, _ = next(iter(make_datasets(cfg).train))
    np.testing.assert_array_equal(x1, x2)


def test_split_carving_and_explicit_splits(data_dir):
    b = make_datasets(DataConfig(source="tfds", name="kg_tiny_images", data_dir=data_dir, image_size=16,
                                 val_split_name="train[:25%]", train_split="train[25%:]", batch_size=3))
    assert (b.train_size, b.val_size) == (9, 3)
    with pytest.raises(ValueError, match="no split 'validation'"):
        make_datasets(DataConfig(source="tfds", name="kg_tiny_images", data_dir=data_dir,
                                 val_split_name="validation"))


def test_clear_error_when_absent(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        tfds_builder("kg_tiny_images", str(tmp_path / "empty"))
    msg = str(e.value)
    assert "not prepared" in msg and str(tmp_path / "empty") in msg and "tfds build kg_tiny_images" in msg
    assert "dataset_info.json" in msg
    with pytest.raises(FileNotFoundError, match="cifar10"):
        make_datasets(DataConfig(source="tfds", name="cifar10", data_dir=str(tmp_path / "empty")))
    with pytest.raises(FileNotFoundError, match="no_such_dataset_xyz"):
        make_datasets(DataConfig(source="tfds", name="no_such_dataset_xyz", data_dir=str(tmp_path)))


class KgTinyManual(tfds.core.GeneratorBasedBuilder):
    """Built from a file the user put in manual_dir (like imagenet2012's tars): no network involved."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put tiny.npz (images uint8 [N, 8, 8, 3], labels) in manual_dir."

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(num_classes=2),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        arrays = np.load(dl_manager.manual_dir / "tiny.npz")
        return {"train": self._generate_examples(arrays["images"], arrays["labels"])}

    def _generate_examples(self, images, labels):
        for i, (img, label) in enumerate(zip(images, labels)):
            yield i, {"image": img, "label": int(label)}


def test_manual_dir_is_prepared_offline(tmp_path):
    data_dir, manual = tmp_path / "data", tmp_path / "manual"
    manual.mkdir()
    cfg = DataConfig(source="tfds", name="kg_tiny_manual", data_dir=str(data_dir), manual_dir=str(manual),
                     image_size=8, batch_size=2, val_split=0.5)
    with pytest.raises(FileNotFoundError, match="tiny.npz"):  # archives absent: the instructions say what to put
        make_datasets(cfg)
    rng = np.random.default_rng(0)
    np.savez(manual / "tiny.npz", images=rng.integers(0, 255, (8, 8, 8, 3), dtype=np.uint8), labels=np.arange(8) % 2)
    b = make_datasets(cfg)
    assert (b.train_size, b.val_size, b.num_classes) == (4, 4, 2)
    assert (data_dir / "kg_tiny_manual" / "1.0.0" / "dataset_info.json").exists()
