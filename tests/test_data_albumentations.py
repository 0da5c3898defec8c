"""kgooglenet.data.albumentations: declarative specs, errors naming the transform, seeded per element."""

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import make_image_folder

from kgooglenet.data import AlbumentationsSpec, DataConfig, make_datasets
from kgooglenet.data.albumentations import albumentations_fn, build_compose

SPEC = {"transforms": [
    {"RandomResizedCrop": {"size": [24, 24], "scale": [0.5, 1.0]}},
    {"HorizontalFlip": {"p": 0.5}},
    {"type": "ElasticTransform", "alpha": 1.0, "sigma": 8.0, "p": 0.5},
    {"ColorJitter": {"brightness": 0.2, "contrast": 0.2, "p": 0.8}},
    {"OneOf": {"transforms": [{"GaussNoise": {}}, {"Blur": {"blur_limit": 3}}]}},
]}


def test_build_compose_from_dict_and_yaml(tmp_path):
    import albumentations as alb

    c = build_compose(SPEC)
    assert isinstance(c, alb.Compose) and [type(t).__name__ for t in c.transforms] == [
        "RandomResizedCrop", "HorizontalFlip", "ElasticTransform", "ColorJitter", "OneOf"]
    assert c.transforms[0].size == (24, 24)
    (tmp_path / "aug.yaml").write_text(
        "transforms:\n  - RandomCrop: {height: 20, width: 20}\n  - HorizontalFlip: {p: 0.5}\nmixup_alpha: 0.2\n")
    spec = AlbumentationsSpec.from_yaml(str(tmp_path / "aug.yaml"))
    assert spec.mixup_alpha == 0.2 and spec.mixes
    assert type(build_compose(spec).transforms[0]).__name__ == "RandomCrop"


@pytest.mark.parametrize("bad,match", [
    ([{"RandomCrap": {}}], "unknown transform 'RandomCrap'"),
    ([{"RandomCrop": {"height": 8, "widht": 8}}], r"RandomCrop got unknown argument\(s\) \['widht'\]"),
    ([{"ElasticTransform": {"alpha_affine": 3}}], r"ElasticTransform got unknown argument\(s\) \['alpha_affine'\]"),
    ([{"RandomResizedCrop": {"height": 8, "width": 8}}], "RandomResizedCrop got unknown argument"),
    ([{"RandomCrop": {"height": "x", "width": 8}}], "bad argument for RandomCrop"),
    ([{"OneOf": {"transforms": [{"Nope": {}}]}}], r"OneOf\[0\]: unknown transform 'Nope'"),
    ([{"HorizontalFlip": 0.5}], "arguments of 'HorizontalFlip' must be a dict"),
    ({"transform": []}, "'transforms' key"),
    ([{"HorizontalFlip": {}}, {"Normalize": {}}], r"transforms\[1\]: Normalize is not allowed.*mean=..., std="),
])
def test_spec_errors_name_the_transform(bad, match):
    with pytest.raises(ValueError, match=match):
        build_compose(bad)


def test_spec_errors_surface_in_make_datasets():
    with pytest.raises(ValueError, match="Flipp"):
        make_datasets(DataConfig(augment={"transforms": [{"Flipp": {}}]}))


def test_fn_restores_static_shape_and_resizes():
    fn = albumentations_fn(AlbumentationsSpec.from_dict([{"RandomCrop": {"height": 10, "width": 12}}]), 16)
    g = tf.function(fn)
    img = tf.cast(tf.random.stateless_uniform([20, 30, 3], [0, 1], 0, 255), tf.uint8)
    out = g(img, tf.constant([1, 2], tf.int64))
    assert g.get_concrete_function(tf.TensorSpec([None, None, 3], tf.uint8),
                                   tf.TensorSpec([2], tf.int64)).output_shapes == [16, 16, 3]
    assert out.dtype == tf.float32 and out.shape == (16, 16, 3)
    assert np.array_equal(out, g(img, tf.constant([1, 2], tf.int64)))
    assert not np.array_equal(out, g(img, tf.constant([5, 2], tf.int64)))


def test_same_seed_same_batches_digits():
    def first_two(seed):
        it = iter(make_datasets(DataConfig(seed=seed, batch_size=32, image_size=24, augment=SPEC)).train)
        return [next(it) for _ in range(2)]

    a, b, c = first_two(0), first_two(0), first_two(1)
    assert a[0][0].shape == (32, 24, 24, 3) and a[0][0].dtype == tf.float32 and a[0][1].dtype == tf.int32
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_folder_albumentations_with_mixup(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=2, per_class=6, size=(40, 50))
    spec = dict(SPEC, mixup_alpha=0.4)
    cfg = DataConfig(source="folder", path=root, image_size=24, batch_size=4, seed=3, augment=spec)
    b = make_datasets(cfg)
    assert b.one_hot_train
    assert b.train.element_spec[0].shape.as_list() == [4, 24, 24, 3]
    (x1, y1), (x2, y2) = next(iter(b.train)), next(iter(make_datasets(cfg).train))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_allclose(y1, y2)
    assert y1.shape == (4, 2) and np.allclose(y1.numpy().sum(1), 1)
    xv, yv = next(iter(b.val))
    assert xv.shape[1:] == (24, 24, 3) and yv.dtype == tf.int32
