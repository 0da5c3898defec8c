"""kgooglenet.data.policies: RandAugment, TrivialAugment, AutoAugment, AugMix, random erasing (issue 13)."""

import math

import numpy as np
import pytest
import tensorflow as tf
import torch
import torchvision.transforms.functional as TF

from kgooglenet.data import AugmentConfig, DataConfig, make_datasets
from kgooglenet.data import augment as A
from kgooglenet.data import policies as P

POLICIES = {
    "randaugment": lambda img, s: P.rand_augment(img, s, 2, 9.0),
    "trivial": P.trivial_augment,
    "autoaugment": P.auto_augment,
    "augmix": lambda img, s: P.augmix(img, s, severity=3),
    "erasing": lambda img, s: P.random_erasing(img, s, probability=1.0, value="random"),
}


def photo(n=32, seed=0):
    """A smooth colour image with some noise (integer pixel values)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.stack([xx * 255 / n, yy * 255 / n, 255 - (xx + yy) * 127 / n], -1) + rng.normal(0, 8, (n, n, 3))
    return np.round(np.clip(img, 0, 255)).astype(np.float32)


def flat(n=32, seed=0):
    """Every channel a permutation of 0..255 (each value n*n/256 times): AutoContrast and Equalize leave it as is."""
    rng = np.random.default_rng(seed)
    reps = n * n // 256
    return np.stack([rng.permutation(np.repeat(np.arange(256), reps)).reshape(n, n) for _ in range(3)],
                    -1).astype(np.float32)


def run(fn, img, seed, count=12):
    """`fn` over `count` copies of `img` inside a parallel tf.data map with per-element stateless seeds."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2).take(count)
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensors(tf.constant(img)).repeat(count), seeds))
    ds = ds.map(fn, num_parallel_calls=4, deterministic=True)
    assert ds.element_spec.shape == img.shape and ds.element_spec.dtype == tf.float32
    return np.stack([x.numpy() for x in ds])


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_is_seeded_static_and_changes_images(name):
    img = photo()
    first, again, other = run(POLICIES[name], img, 1), run(POLICIES[name], img, 1), run(POLICIES[name], img, 2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    changed = [not np.allclose(x, img, atol=0.5) for x in first]
    assert sum(changed) >= len(changed) // 2, f"{name} changed only {sum(changed)} of {len(changed)} images"
    assert first.min() >= 0 and first.max() <= 255
    assert len({x.tobytes() for x in first}) > len(first) // 2  # different copies get different augmentations


def test_magnitude_zero_is_the_identity():
    img = flat()
    for op in range(14):  # every op of RandAugment / TrivialAugment at level 0 (AutoContrast, Equalize: flat image)
        out = P.apply_op(tf.constant(img), tf.constant(op), 0.0, tf.constant([op, 1], tf.int64)).numpy()
        np.testing.assert_allclose(out, img, atol=1e-3, err_msg=P.OP_NAMES[op])
    for fn in (lambda x, s: P.rand_augment(x, s, 3, 0.0), lambda x, s: P.trivial_augment(x, s, max_level=0.0),
               lambda x, s: P.augmix(x, s, severity=1)):  # AugMix severity 1 draws level 0 (torchvision's too)
        np.testing.assert_allclose(run(fn, img, 3, count=16), np.broadcast_to(img, (16, *img.shape)), atol=1e-3)
    assert not np.allclose(P.apply_op(tf.constant(img), tf.constant(5), 1.0, tf.constant([0, 1], tf.int64)), img)


@pytest.mark.parametrize("op,value,reference", [
    ("posterize", 3.0, lambda t: TF.posterize(t, 5)),
    ("solarize", 256.0 - 128.0, lambda t: TF.solarize(t, 128)),
    ("autocontrast", 0.0, TF.autocontrast),
    ("equalize", 0.0, TF.equalize),
    ("invert", 0.0, TF.invert),
    ("brightness", 0.5, lambda t: TF.adjust_brightness(t, 1.5)),
    ("color", -0.6, lambda t: TF.adjust_saturation(t, 0.4)),
    ("contrast", 0.7, lambda t: TF.adjust_contrast(t, 1.7)),
    ("sharpness", 0.9, lambda t: TF.adjust_sharpness(t, 1.9)),
    ("rotate", 30.0, lambda t: TF.rotate(t, 30.0)),
    ("shear_x", 0.3, lambda t: TF.affine(t, 0.0, [0, 0], 1.0, [math.degrees(math.atan(0.3)), 0.0], center=[0, 0])),
    # (-0.15: no sample lands exactly between two pixels, where nearest-neighbour ties break differently)
    ("shear_y", -0.15, lambda t: TF.affine(t, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(-0.15))], center=[0, 0])),
    ("translate_x", 0.25, lambda t: TF.affine(t, 0.0, [9, 0], 1.0, [0.0, 0.0])),
    ("translate_y", -0.1, lambda t: TF.affine(t, 0.0, [0, -4], 1.0, [0.0, 0.0])),
])
def test_ops_match_torchvision(op, value, reference):
    img = photo(40, seed=5)[:, :36] * np.float32(0.8)  # not square, not full range
    img = np.round(img).astype(np.float32)
    ours = P._FUNCTIONS[op](tf.constant(img), tf.constant(value)).numpy()
    theirs = reference(torch.from_numpy(img.astype(np.uint8)).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    # torchvision rounds to uint8 at each step (its grayscale too): up to 1.5 grey levels apart
    atol = 1.5 if op in P._ENHANCE else 1.0 if op == "autocontrast" else 0
    np.testing.assert_allclose(ours, theirs.astype(np.float32), atol=atol)


def test_random_erasing_erases_the_drawn_box():
    img = photo(48)
    for i in range(10):
        seed = tf.constant([i, 7], tf.int64)
        out = P.random_erasing(tf.constant(img), seed, probability=1.0, value=(10.0, 20.0, 30.0)).numpy()
        top, left, h, w, found = (int(v) for v in P.erasing_box(P._seeds(seed, 3)[1], 48, 48))
        assert found
        inside = np.zeros((48, 48), bool)
        inside[top:top + h, left:left + w] = True
        np.testing.assert_array_equal(out[inside], np.broadcast_to([10.0, 20.0, 30.0], (inside.sum(), 3)))
        np.testing.assert_array_equal(out[~inside], img[~inside])
        assert 0.02 * 48 * 48 * 0.8 <= h * w <= 0.33 * 48 * 48 * 1.2  # area range, up to rounding of h and w
        assert 0.3 / 1.5 <= h / w <= 3.3 * 1.5
    np.testing.assert_array_equal(P.random_erasing(tf.constant(img), seed, probability=0.0).numpy(), img)
    erased = [not np.array_equal(P.random_erasing(tf.constant(img), tf.constant([i, 0], tf.int64), 0.5).numpy(), img)
              for i in range(40)]
    assert 10 <= sum(erased) <= 30


def test_policies_run_in_the_pipeline_deterministically():
    def first_batch(aug):
        x, _ = next(iter(make_datasets(DataConfig(batch_size=16, seed=0, augment=aug)).train))
        return x.numpy()

    base = AugmentConfig.digits(32)
    strong = AugmentConfig.strong(32, horizontal_flip=False)
    assert strong.randaugment_ops == 2 and strong.erase_prob == 0.25 and strong.crop_padding == 4
    a, b, plain = first_batch(strong), first_batch(strong), first_batch(base)
    np.testing.assert_array_equal(a, b)
    assert a.shape == plain.shape == (16, 32, 32, 3) and a.dtype == np.float32
    assert not np.allclose(a, plain)
    assert AugmentConfig.strong(224).scale == (0.25, 1.0) and AugmentConfig.strong(224).random_resized_crop


@pytest.mark.parametrize("fields,match", [
    (dict(randaugment_ops=-1), "randaugment_ops must be an int >= 0.*-1"),
    (dict(randaugment_magnitude=31), "randaugment_magnitude must be a number >= 0 and <= 30, received .*=31"),
    (dict(augmix_severity=11), "augmix_severity must be an int >= 0 and <= 10, received .*=11"),
    (dict(randaugment_ops=2, trivial_augment=True), "at most one automatic policy.*randaugment_ops, trivial_augment"),
    (dict(erase_prob=1.5), "erase_prob must be a number >= 0 and <= 1, received erase_prob=1.5"),
    (dict(erase_scale=(0.5, 0.2)), r"erase_scale must be a \(low, high\) pair of numbers with low <= high"),
    (dict(erase_value="noise"), "erase_value must be .*'noise'"),
    (dict(repeats=0), "repeats must be an int >= 1, received repeats=0"),
])
def test_bad_fields_name_the_field_and_value(fields, match):
    with pytest.raises(ValueError, match="AugmentConfig." + match if not match.startswith("at most") else match):
        A.resolve_augment(AugmentConfig(**fields), "digits", 32)


def test_repeated_augmentation_yields_each_image_k_times_across_2_replicas():
    n, k = 30, 3
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)
    aug = AugmentConfig(random_resized_crop=False, random_crop=True, crop_padding=4, repeats=k)
    config = DataConfig(source="arrays", train_arrays=(images, np.arange(n)), val_split=0.0, num_classes=n,
                        image_size=16, batch_size=8, drop_remainder=False, seed=0, augment=aug)
    seen = {}
    for replica in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=replica, num_replicas_in_sync=2)
        for x, y in make_datasets(config, context).train:  # one epoch
            assert x.shape[0] <= 4  # the per-replica batch
            for image, label in zip(x.numpy(), y.numpy()):
                seen.setdefault(int(label), []).append((replica, image))
    assert sorted(seen) == list(range(n))  # no image lost
    for label, copies in seen.items():
        assert len(copies) == k, label
        assert len({replica for replica, _ in copies}) == 1  # a replica's shard keeps its images
        assert len({image.tobytes() for _, image in copies}) > 1  # augmented differently
    assert make_datasets(config).steps_per_epoch == int(np.ceil(n * k / 8))


def test_finetune_recipe_exposes_the_strong_preset():
    import argparse

    from harness import load_recipe

    finetune = load_recipe("finetune")
    args = argparse.Namespace(image_size=None, prepared=None, tfds=None, data_dir=None, augment="strong")
    assert finetune.data_config(args).augment == AugmentConfig.strong(32, horizontal_flip=False)
    args.prepared, args.image_size = "prepared/", 224
    assert finetune.data_config(args).augment == AugmentConfig.strong(224)
    args.augment = "default"
    assert finetune.data_config(args).augment.randaugment_ops == 0


def test_quickstart_recipe_exposes_the_strong_preset():
    from harness import load_recipe

    quickstart = load_recipe("quickstart")
    assert quickstart.quickstart_config(augment="strong").data.augment == AugmentConfig.strong(32, horizontal_flip=False)
    assert quickstart.quickstart_config().data.augment == DataConfig().augment  # the default: the dataset's own
