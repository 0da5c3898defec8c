"""kgooglenet.data.sources: digits, arrays, folder sources, make_datasets / make_dataset, sharding."""

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import add_special_files, make_image_folder

from kgooglenet.data import (
    AugmentConfig,
    DataConfig,
    list_image_folder,
    load_digits_arrays,
    make_dataset,
    make_datasets,
    stratified_split,
    validation_images,
)


def _first(ds, n=1):
    it = iter(ds)
    return [tuple(t.numpy() for t in next(it)) for _ in range(n)]


def test_digits_arrays_scaled_resized_rgb():
    x, y, names = load_digits_arrays(32)
    assert x.shape == (1797, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (1797,) and y.dtype == np.int32 and names == [str(i) for i in range(10)]
    assert x.max() == 255 and x.min() == 0
    assert np.array_equal(x[..., 0], x[..., 2])  # gray tiled to RGB
    x8, _, _ = load_digits_arrays()
    from sklearn.datasets import load_digits

    np.testing.assert_allclose(x8[..., 0], np.round(load_digits().images * 255 / 16), atol=0.5)


def test_stratified_split_is_seeded_and_stratified():
    labels = np.repeat(np.arange(4), [10, 20, 5, 2])
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va]).tolist() == [2, 4, 1, 1]
    tr2, va2 = stratified_split(labels, 0.2, seed=3)
    tr3, va3 = stratified_split(labels, 0.2, seed=4)
    assert np.array_equal(va, va2) and not np.array_equal(va, va3)
    with pytest.raises(ValueError, match="val_split"):
        stratified_split(labels, 1.0)


def test_digits_bundle_shapes_sizes_and_determinism():
    cfg = DataConfig(seed=0, batch_size=64)
    b = make_datasets(cfg)
    assert (b.train_size, b.val_size, b.num_classes) == (1438, 359, 10)
    assert b.steps_per_epoch == 1438 // 64 and b.validation_steps == 6
    assert b.train.element_spec[0].shape.as_list() == [64, 32, 32, 3]  # drop_remainder: fully static
    assert b.train.element_spec[1].dtype == tf.int32
    assert b.val.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    (x, y), = _first(b.train)
    assert sum(1 for _ in b.train) == b.steps_per_epoch
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255 and x.max() > 200
    (x2, y2), = _first(make_datasets(cfg).train)
    (x3, y3), = _first(make_datasets(DataConfig(seed=1, batch_size=64)).train)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(y, y3)
    # validation: no augmentation, the stored images in order
    xd, yd, _ = load_digits_arrays(32)
    _, va = stratified_split(yd, 0.2, 0)
    xv, yv = _first(b.val)[0]
    assert np.array_equal(xv, xd[va[:64]].astype(np.float32)) and np.array_equal(yv, yd[va[:64]])


def test_epochs_differ_but_replay_identically():
    cfg = DataConfig(seed=5, batch_size=256)
    b1, b2 = make_datasets(cfg), make_datasets(cfg)
    e1 = [x.numpy() for x, _ in b1.train]
    e2 = [x.numpy() for x, _ in b1.train]
    f1 = [x.numpy() for x, _ in b2.train]
    f2 = [x.numpy() for x, _ in b2.train]
    assert not np.array_equal(e1[0], e2[0])
    assert np.array_equal(e1[0], f1[0]) and np.array_equal(e2[-1], f2[-1])


def test_mixup_cutmix_give_one_hot_labels():
    aug = AugmentConfig.digits(32, mixup_alpha=0.4, cutmix_alpha=1.0)
    b = make_datasets(DataConfig(seed=0, batch_size=16, augment=aug))
    assert b.one_hot_train
    x, y = _first(b.train)[0]
    assert x.shape == (16, 32, 32, 3) and y.shape == (16, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
    assert (y.max(1) < 1).any()  # something was actually mixed
    assert b.val.element_spec[1].dtype == tf.int32


def test_arrays_source_and_normalization():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 20, 24), dtype=np.uint8)  # grayscale, not square
    y = np.arange(40) % 4
    cfg = DataConfig(source="arrays", train_arrays=(x, y), image_size=16, batch_size=8, seed=0,
                     augment=AugmentConfig.none(), class_names=list("abcd"))
    b = make_datasets(cfg)
    assert (b.train_size, b.val_size, b.num_classes, b.class_names) == (32, 8, 4, list("abcd"))
    xb, _ = _first(b.val)[0]
    assert xb.shape == (8, 16, 16, 3)
    aug = AugmentConfig.none()
    aug.mean, aug.std = (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)
    bn = make_datasets(DataConfig(source="arrays", train_arrays=(x, y), image_size=16, batch_size=8, seed=0,
                                  augment=aug))
    for ds in (bn.train, bn.val):  # normalization is opt-in and applies to both splits
        xn, _ = _first(ds)[0]
        assert -1.0 <= xn.min() and xn.max() <= 1.0 and xn.min() < -0.5
    np.testing.assert_allclose(_first(bn.val)[0][0], (xb - 127.5) / 127.5, atol=1e-5)
    with pytest.raises(ValueError, match="train_arrays"):
        make_datasets(DataConfig(source="arrays"))
    with pytest.raises(ValueError, match="class_names"):
        make_datasets(DataConfig(source="arrays", train_arrays=(x, y), class_names=["a"]))


def test_folder_source_skips_bad_files(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=3, per_class=6)
    add_special_files(root)
    files, labels, names = list_image_folder(root)
    assert names == ["cls_a", "cls_b", "cls_c"]
    assert not any(f.endswith(".txt") for f in files) and len(files) == 18 + 4 + 4 + 1
    cfg = DataConfig(source="folder", path=root, image_size=24, batch_size=4, seed=0, drop_remainder=False,
                     augment=AugmentConfig(scale=(0.3, 1.0), brightness=0.1, saturation=0.1, hue=0.05,
                                           rotate90=True))
    b = make_datasets(cfg)
    assert b.train_size + b.val_size == len(files)
    n_train = sum(int(x.shape[0]) for x, _ in b.train)
    n_val = sum(int(x.shape[0]) for x, _ in b.val)
    # the truncated JPEG and the text file named .jpg are dropped (ignore_errors), the rest decodes
    assert n_train + n_val == len(files) - 2
    x, y = _first(b.train)[0]
    assert x.shape == (4, 24, 24, 3) and x.dtype == np.float32 and y.dtype == np.int32


def test_validation_images_keep_their_size(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=2, per_class=5, size=(48, 64))
    cfg = DataConfig(source="folder", path=root, image_size=24, val_split=0.4, seed=0)
    ds, names, size = validation_images(cfg)
    items = [(x.numpy(), int(y)) for x, y in ds]
    assert names == ["cls_a", "cls_b"] and len(items) == size == make_datasets(cfg).val_size == 4
    assert all(x.shape == (48, 64, 3) and x.dtype == np.uint8 for x, _ in items)
    assert sorted(y for _, y in items) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="val_split=0"):
        validation_images(DataConfig(val_split=0.0))


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        make_datasets(DataConfig(source="folder", path=str(tmp_path / "nope")))
    one = make_image_folder(tmp_path / "one", classes=1, per_class=2)
    with pytest.raises(ValueError, match="at least two"):
        make_datasets(DataConfig(source="folder", path=one))
    two = make_image_folder(tmp_path / "two", classes=2, per_class=2)
    (tmp_path / "two" / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        make_datasets(DataConfig(source="folder", path=two))


def test_config_validation():
    with pytest.raises(ValueError, match="source"):
        DataConfig(source="imagenet")
    with pytest.raises(ValueError, match="val_split"):
        DataConfig(val_split=1.5)
    assert DataConfig().image_size == 32 and DataConfig(source="folder", path="x").image_size == 224
    with pytest.raises(ValueError, match="augment"):
        make_datasets(DataConfig(augment="heavy"))
    with pytest.raises(ValueError, match="unknown AugmentConfig fields"):
        make_datasets(DataConfig(augment={"flip": True}))
    with pytest.raises(ValueError, match="scale"):
        make_datasets(DataConfig(augment=AugmentConfig(scale=(0.5, 2.0))))


def test_input_context_shards_and_uses_per_replica_batch():
    cfg = DataConfig(seed=0, batch_size=32, augment=None)
    seen = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=4)
        b = make_datasets(cfg, ctx)
        assert b.train.element_spec[0].shape[0] == 8  # 32 global / 4 replicas
        seen.append(np.concatenate([y.numpy() for _, y in b.val]))
    _, yd, _ = load_digits_arrays(32)
    _, va = stratified_split(yd, 0.2, 0)
    assert len(seen[0]) + len(seen[1]) == len(va)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(yd[va]))
    np.testing.assert_array_equal(seen[0], yd[va][0::2])


def test_distribute_datasets_from_function():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    cfg = DataConfig(seed=0, batch_size=16)
    dist = strategy.distribute_datasets_from_function(lambda ctx: make_datasets(cfg, ctx).train)
    x, y = next(iter(dist))
    assert x.shape == (16, 32, 32, 3) and y.shape == (16,)


def test_cache_keeps_encoded_files_and_epochs(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=2, per_class=5)
    cfg = DataConfig(source="folder", path=root, image_size=16, batch_size=2, seed=0, cache=True, val_split=0.2)
    b = make_datasets(cfg)
    first = [y.numpy() for _, y in b.train]
    for f in (tmp_path / "imgs").rglob("*.jpg"):
        f.unlink()  # served from the cache now
    second = [y.numpy() for _, y in b.train]
    assert len(first) == len(second) == 4
    assert sorted(np.concatenate(first).tolist()) == sorted(np.concatenate(second).tolist()) == [0] * 4 + [1] * 4
