"""The registered layers: Caffe/torch semantics against torch and a direct formula; each through the harness's
layer test (config and .keras round trips, dtype policies, a dynamic batch)."""

import keras
import numpy as np
import pytest
from harness import run_layer_test

from kgooglenet import layers as kl


def _rand(shape, seed=0, low=-3.0, high=3.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype("float32")


@pytest.mark.parametrize("size,k,s", [((112, 112), 3, 2), ((129, 97), 3, 2), ((14, 14), 2, 2), ((15, 9), 2, 2), ((9, 13), 3, 2)])
def test_ceil_max_pool_matches_torch(size, k, s):
    import torch  # the extra: a broken install fails, never skips
    x = _rand((2, *size, 5))
    ours = kl.CeilPooling2D(k, s)(x).numpy()
    ref = torch.nn.functional.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), k, s, ceil_mode=True)
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("size", [(14, 14), (17, 11), (8, 8)])
def test_ceil_avg_pool_matches_torch(size):
    import torch  # the extra: a broken install fails, never skips
    x = _rand((2, *size, 4))
    ours = kl.CeilPooling2D(5, 3, mode="avg")(x).numpy()
    ref = torch.nn.functional.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 5, 3, ceil_mode=True)
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [(14, 14), (13, 9), (4, 4), (5, 7)])
def test_adaptive_pool_matches_torch(size):
    import torch  # the extra: a broken install fails, never skips
    x = _rand((2, *size, 3))
    ours = kl.AdaptiveAveragePooling2D((4, 4))(x).numpy()
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), (4, 4))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_pools_work_on_dynamic_sizes():
    import tensorflow as tf

    ceil = kl.CeilPooling2D(3, 2)
    adaptive = kl.AdaptiveAveragePooling2D(4)
    fn = tf.function(lambda t: (ceil(t), adaptive(t)), input_signature=[tf.TensorSpec([None, None, None, 2])])
    x = _rand((1, 13, 9, 2))
    a, b = fn(x)
    np.testing.assert_allclose(a, ceil(x))
    np.testing.assert_allclose(b, adaptive(x), rtol=1e-6)
    assert a.shape[1:3] == (6, 4)


def test_lrn_follows_caffes_formula():
    x = _rand((1, 3, 3, 12), low=0, high=50)
    ours = kl.LocalResponseNormalization(local_size=5, alpha=1e-4, beta=0.75, k=1.0)(x).numpy()
    sq = np.pad(x**2, [(0, 0), (0, 0), (0, 0), (2, 2)])
    window = sum(sq[..., i : i + 12] for i in range(5))
    expected = x / (1.0 + 1e-4 / 5 * window) ** 0.75
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_preprocess_caffe_is_bgr_minus_mean():
    x = _rand((1, 2, 2, 3), low=0, high=255)
    out = kl.Preprocess(mean=[104, 117, 123], std=[1, 1, 1], bgr=True)(x).numpy()
    np.testing.assert_allclose(out, x[..., ::-1] - np.array([104, 117, 123], "float32"), rtol=1e-6)


# (class, constructor arguments, input shape, output shape): every registered layer, tiny shapes
LAYER_CASES = [
    (kl.Inception, dict(conv1x1=8, reduce3x3=4, conv3x3=8, reduce5x5=2, conv5x5=4, pool_proj=4, branch5_kernel=3,
                        batch_norm=True), (2, 14, 14, 3), (2, 14, 14, 24)),
    (kl.Inception, dict(conv1x1=8, reduce3x3=4, conv3x3=8, reduce5x5=2, conv5x5=4, pool_proj=4,
                        output_pool=kl.CeilPooling2D(3, 2)), (2, 14, 14, 3), (2, 7, 7, 24)),  # ceil((14-3)/2)+1
    (kl.ConvBlock, dict(filters=8, kernel_size=7, strides=2, padding=3, batch_norm=False), (2, 14, 14, 3),
     (2, 7, 7, 8)),
    (kl.AuxHead, dict(num_classes=5, pool="caffe", conv_filters=4, fc_units=8, dropout=0.5), (2, 14, 14, 3), (2, 5)),
    (kl.AuxHead, dict(num_classes=5, pool="adaptive", conv_filters=4, fc_units=8, batch_norm=True), (2, 14, 14, 3),
     (2, 5)),
    (kl.CeilPooling2D, dict(pool_size=3, strides=2, mode="avg"), (2, 14, 14, 3), (2, 7, 7, 3)),
    (kl.AdaptiveAveragePooling2D, dict(output_size=(4, 3)), (2, 14, 14, 3), (2, 4, 3, 3)),
    (kl.LocalResponseNormalization, dict(local_size=3, alpha=2e-4, beta=0.5, k=2.0), (2, 6, 6, 5), (2, 6, 6, 5)),
    (kl.Preprocess, dict(mean=[1, 2, 3], std=[4, 5, 6], bgr=True), (2, 4, 4, 3), (2, 4, 4, 3)),
    (kl.FusedBatchNormalization, dict(momentum=0.9, epsilon=1e-3), (2, 5, 5, 6), (2, 5, 5, 6)),
]


@pytest.mark.parametrize("cls,kwargs,input_shape,output_shape", LAYER_CASES,
                         ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(LAYER_CASES)])
def test_registered_layer(cls, kwargs, input_shape, output_shape):
    run_layer_test(cls, kwargs, input_shape, output_shape)


def test_every_registered_layer_has_a_case():
    registered = {getattr(kl, name) for name in kl.__all__
                  if isinstance(getattr(kl, name), type) and issubclass(getattr(kl, name), keras.layers.Layer)}
    assert registered == {case[0] for case in LAYER_CASES}
    for cls in registered:  # registered under kgooglenet's package name, so .keras files find them
        assert keras.saving.get_registered_name(cls) == f"kgooglenet>{cls.__name__}"


@pytest.mark.parametrize(
    "pool",
    [kl.CeilPooling2D(3, 2), kl.CeilPooling2D(3, 2, mode="avg"), keras.layers.MaxPooling2D(2),
     keras.layers.GlobalAveragePooling2D()],
    ids=["ceil-max", "ceil-avg", "max2", "global-avg"],
)
def test_inception_output_pool_equals_pooling_the_concatenation(pool):
    x = _rand((2, 13, 13, 6), low=-1, high=1)
    plain = kl.Inception(8, 4, 8, 2, 4, 4, batch_norm=True)
    pooled = kl.Inception(8, 4, 8, 2, 4, 4, batch_norm=True, output_pool=pool)
    ref = pool(plain(x))
    pooled.build(x.shape)
    pooled.set_weights(plain.get_weights())
    out = pooled(x)
    assert tuple(out.shape) == tuple(ref.shape) == pooled.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_preprocess_skips_identity_steps():
    x = _rand((1, 2, 2, 3), low=0, high=255)
    np.testing.assert_array_equal(kl.Preprocess()(x), x)
    np.testing.assert_allclose(kl.Preprocess(mean=[0, 0, 0], std=[2, 4, 8])(x), x / [2, 4, 8], rtol=1e-6)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: kl.Inception(0, 1, 1, 1, 1, 1), "conv1x1=0"),
        (lambda: kl.Inception(1, 1, 1, 1, 1, 1, branch5_kernel=7), "branch5_kernel=7"),
        (lambda: kl.Inception(1, 1, 1, 1, 1, 1, output_pool="max"), "output_pool='max'"),
        (lambda: kl.CeilPooling2D(3, 2, mode="median"), "mode='median'"),
        (lambda: kl.LocalResponseNormalization(local_size=4), "local_size=4"),
        (lambda: kl.AuxHead(3, pool="global"), "pool='global'"),
        (lambda: kl.Preprocess(mean=[1, 2], std=[1, 1, 1]), "mean=\\[1, 2\\]"),
        (lambda: kl.preprocessing_layer("opencv"), "preprocessing='opencv'"),
    ],
)
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("size", [(8, 8), (13, 13), (14, 15), (112, 112), (9, 16), (17, 11)])
@pytest.mark.parametrize("k,s,mode", [(3, 2, "max"), (2, 2, "max"), (5, 3, "avg"), (3, 2, "avg")])
def test_ceil_pool_fast_path_equals_explicit_padding(size, k, s, mode):
    """Static shapes may take TF's own VALID/SAME pooling; it must equal the explicit-padding path exactly."""
    import tensorflow as tf

    layer = kl.CeilPooling2D(k, s, mode=mode)
    x = _rand((1, *size, 2))
    dynamic = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, None, 2])])
    np.testing.assert_allclose(layer(x), dynamic(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_fused_batchnorm_equals_keras_batchnorm(policy):
    """Same outputs as Keras' own BatchNormalization in training and inference, moving mean alike, moving variance
    updated with the unbiased batch variance (as torch and Caffe do)."""
    x = _rand((4, 5, 5, 6), low=-2, high=4)
    fused = kl.FusedBatchNormalization(momentum=0.9, epsilon=1e-3, dtype=policy)
    stock = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=policy)
    for layer in (fused, stock):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 6))
        layer.beta.assign(np.linspace(-1, 1, 6))
    tol = 1e-5 if policy == "float32" else 5e-2
    np.testing.assert_allclose(fused(x, training=True), stock(x, training=True), rtol=tol, atol=tol)
    assert fused(x, training=True).dtype == stock(x, training=True).dtype
    n = x.size // 6
    mean, var = x.reshape(-1, 6).mean(0), x.reshape(-1, 6).var(0)
    m = 0.9
    np.testing.assert_allclose(fused.moving_mean, (1 - m) * mean * (1 + m), rtol=1e-2 if policy != "float32" else 1e-5)
    unbiased = var * n / (n - 1)
    expected_var = (m * m) + (1 - m) * unbiased * (1 + m)  # two updates from the initial variance 1
    np.testing.assert_allclose(fused.moving_variance, expected_var, rtol=1e-2 if policy != "float32" else 1e-5)
    stock.moving_mean.assign(fused.moving_mean)
    stock.moving_variance.assign(fused.moving_variance)
    np.testing.assert_allclose(fused(x, training=False), stock(x, training=False), rtol=tol, atol=tol)
