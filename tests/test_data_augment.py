"""kgooglenet.data.augment: native decoding windows, the JPEG fast path, mixup/cutmix."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kgooglenet.data import AugmentConfig, DataConfig, make_datasets
from kgooglenet.data import augment as A


def _jpeg(h=300, w=400, seed=0, quality=95):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], -1).astype(np.float32)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), img


def _png(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_eval_path_is_resize_then_center_crop():
    data, img = _jpeg()
    out = A.preprocess_encoded(tf.constant(data), tf.constant([0, 0], tf.int64), training=False, aug=None,
                               image_size=64, crop_fraction=0.875).numpy()
    side = round(300 * 0.875)
    ref = tf.image.resize(img[(300 - side) // 2:(300 - side) // 2 + side, (400 - side) // 2:(400 - side) // 2 + side],
                          [64, 64]).numpy()
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    assert np.abs(out - ref).mean() < 3.0  # JPEG + reduced-DCT decode vs exact pixels
    # the same through the generic (PNG) decoder
    png = A.preprocess_encoded(tf.constant(_png(img)), tf.constant([0, 0], tf.int64), training=False, aug=None,
                               image_size=64, crop_fraction=0.875).numpy()
    np.testing.assert_allclose(png, ref, atol=1e-3)


@pytest.mark.parametrize("fast", [True, False])
def test_jpeg_window_decode_matches_full_decode(fast):
    data, _ = _jpeg(600, 800)
    full = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy().astype(np.float32)
    window = tf.constant([40, 100, 500, 520])  # large: the fast path decodes at 1/2 DCT scale
    crop = A._decode_jpeg_window(tf.constant(data), window, 224, fast).numpy().astype(np.float32)
    ref = tf.image.resize(full[40:540, 100:620], crop.shape[:2], antialias=True).numpy()
    assert crop.shape == (250, 260, 3)  # window >= 2x the target: decoded at 1/2 DCT scale
    assert np.abs(crop - ref).mean() < 3.0
    small = A._decode_jpeg_window(tf.constant(data), tf.constant([40, 100, 400, 300]), 224, fast).numpy()
    assert small.shape == (400, 300, 3)  # < 2x: full scale, never upscaled
    np.testing.assert_allclose(small.astype(np.float32).mean(), full[40:440, 100:400].mean(), atol=1.0)
    assert np.abs(small.astype(np.float32) - full[40:440, 100:400]).mean() < (3.0 if fast else 0.5)


def test_random_resized_crop_window_statistics():
    hw = tf.constant([300, 400])
    aug = AugmentConfig(scale=(0.25, 0.5), ratio=(0.5, 2.0))
    areas, ratios = [], []
    for i in range(200):
        y, x, h, w = A._rrc_window(hw, aug, tf.constant([i, 7])).numpy()
        assert 0 <= y and y + h <= 300 and 0 <= x and x + w <= 400
        areas.append(h * w / 120000)
        ratios.append(w / h)
    areas, ratios = np.array(areas), np.array(ratios)
    assert 0.23 <= areas.min() and areas.max() <= 0.52
    assert 0.45 <= ratios.min() and ratios.max() <= 2.1 and ratios.std() > 0.2
    same = [A._rrc_window(hw, aug, tf.constant([3, 7])).numpy() for _ in range(2)]
    assert np.array_equal(*same)


def test_training_ops_are_seeded_and_static():
    data, _ = _jpeg()
    aug = AugmentConfig(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, rotate90=True, vertical_flip=True)
    f = tf.function(lambda s: A.preprocess_encoded(tf.constant(data), s, training=True, aug=aug, image_size=48,
                                                   crop_fraction=1.0))
    a, b, c = f(tf.constant([1, 2], tf.int64)), f(tf.constant([1, 2], tf.int64)), f(tf.constant([1, 3], tf.int64))
    assert f.get_concrete_function(tf.TensorSpec([2], tf.int64)).output_shapes == [48, 48, 3]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 <= a.numpy().min() and a.numpy().max() <= 255


def test_crop_padding_shifts_without_resizing():
    img = tf.reshape(tf.range(16 * 16 * 3, dtype=tf.float32) % 251, [16, 16, 3])
    aug = AugmentConfig.digits(16)
    outs = [A.preprocess_decoded(img, tf.constant([i, 0], tf.int64), training=True, aug=aug, image_size=16,
                                 crop_fraction=1.0).numpy() for i in range(20)]
    assert any(not np.array_equal(o, img.numpy()) for o in outs)
    # every output is a shifted copy: some 8x8 block of the original appears unchanged
    for o in outs:
        found = any(np.array_equal(o[dy:dy + 8, dx:dx + 8], img.numpy()[dy + sy:dy + sy + 8, dx + sx:dx + sx + 8])
                    for sy in range(-2, 3) for sx in range(-2, 3) for dy in (4,) for dx in (4,))
        assert found


def test_mix_batch_label_weights_match_pixels():
    x = tf.concat([tf.zeros([1, 8, 8, 3]), tf.fill([1, 8, 8, 3], 255.0)], 0)
    y = tf.constant([0, 1])
    xm, ym = A.mix_batch(x, y, tf.constant([1, 2], tf.int64), num_classes=2, mixup_alpha=0.5, cutmix_alpha=0.0)
    lam = 1 - xm.numpy()[0].mean() / 255  # image 0 = lam * zeros + (1 - lam) * 255
    np.testing.assert_allclose(ym.numpy()[0], [lam, 1 - lam], atol=1e-5)
    xc, yc = A.mix_batch(x, y, tf.constant([3, 4], tf.int64), num_classes=2, mixup_alpha=0.0, cutmix_alpha=1.0)
    frac = (xc.numpy()[0, :, :, 0] == 255).mean()  # pasted area from image 1
    np.testing.assert_allclose(yc.numpy()[0], [1 - frac, frac], atol=1e-5)
    _, yn = A.mix_batch(x, y, tf.constant([3, 4], tf.int64), num_classes=2, mixup_alpha=0.2, cutmix_alpha=0.0,
                        mix_prob=0.0)
    np.testing.assert_array_equal(yn.numpy(), [[1, 0], [0, 1]])


def test_auto_augment_per_source():
    assert A.default_augment("digits", 32).horizontal_flip is False
    assert A.default_augment("tfds", 32).random_crop and A.default_augment("folder", 224).random_resized_crop
    assert isinstance(A.resolve_augment({"transforms": [{"HorizontalFlip": {}}]}, "folder", 224).transforms, list)
    cfg = A.resolve_augment({"brightness": 0.2}, "folder", 224)
    assert isinstance(cfg, AugmentConfig) and cfg.brightness == 0.2


def test_none_augment_train_equals_eval():
    b = make_datasets(DataConfig(seed=0, augment=None, batch_size=8, shuffle_buffer=1))
    x, _ = next(iter(b.train))
    assert x.shape == (8, 32, 32, 3)
    from kgooglenet.data import load_digits_arrays, stratified_split

    xd, yd, _ = load_digits_arrays(32)
    tr, _ = stratified_split(yd, 0.2, 0)
    np.testing.assert_array_equal(x.numpy(), xd[tr[:8]].astype(np.float32))
