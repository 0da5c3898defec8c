"""GoogLeNet(...): shapes against torchvision and Caffe's formulas, parameter totals, training, aux heads, saving,
argument errors, the Table-1 summary."""

import math
import os
import shutil
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from kgooglenet import GoogLeNet, aux_compile_args, aux_targets, feature_extractor, inference_model, specs
from kgooglenet.summary import format_table, summary_table

STAGES = ("pool1", "pool2", "inception_3b", "inception_4e", "inception_5b")
TORCH_STAGES = {"maxpool1": "pool1", "maxpool2": "pool2", "inception3b": "inception_3b",
                "inception4e": "inception_4e", "inception5b": "inception_5b"}


def _stage_sizes(model):
    return {name: tuple(model.get_layer(name).output.shape[1:3]) for name in STAGES}


def _caffe_sizes(h, w, pool4):
    """Spatial sizes by Caffe's own formulas (conv: floor, pooling: ceil), written out independently of specs."""

    def conv(s, k, st, p):
        return (s + 2 * p - k) // st + 1

    def pool(s, k, st):
        return int(math.ceil((s - k) / st)) + 1

    out = {}
    h, w = conv(h, 7, 2, 3), conv(w, 7, 2, 3)
    h, w = pool(h, 3, 2), pool(w, 3, 2)
    out["pool1"] = (h, w)
    h, w = pool(h, 3, 2), pool(w, 3, 2)
    out["pool2"] = out["inception_3b"] = (h, w)
    h, w = pool(h, 3, 2), pool(w, 3, 2)
    out["inception_4e"] = (h, w)
    h, w = pool(h, pool4, 2), pool(w, pool4, 2)
    out["inception_5b"] = (h, w)
    return out


@pytest.mark.parametrize("size", [(224, 224), (257, 193), (320, 320)])
def test_paper_sizes_follow_caffe_pooling(size):
    model = GoogLeNet("paper", include_top=False, input_shape=(*size, 3), width=0.125)
    assert _stage_sizes(model) == _caffe_sizes(*size, pool4=3)
    if size == (224, 224):
        assert _stage_sizes(model)["inception_5b"] == (7, 7)
        assert _stage_sizes(model)["pool1"] == (56, 56)


@pytest.mark.parametrize("size", [(224, 224), (257, 193), (320, 320)])
def test_bn_sizes_match_torchvision(size):
    import torch  # the extra: a broken install fails, never skips
    import torchvision  # the extra: a broken install fails, never skips
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    seen = {}
    for tname, kname in TORCH_STAGES.items():
        getattr(net, tname).register_forward_hook(lambda m, i, o, k=kname: seen.__setitem__(k, tuple(o.shape[2:])))
    with torch.no_grad():
        net(torch.zeros(1, 3, *size))
    model = GoogLeNet("bn", include_top=False, input_shape=(*size, 3), width=0.125)
    assert _stage_sizes(model) == seen
    x = np.random.default_rng(0).uniform(0, 255, (1, *size, 3)).astype("float32")
    assert model(x).shape[1:3] == seen["inception_5b"]


def test_cifar_keeps_32x32_until_the_first_pool():
    model = GoogLeNet("cifar", num_classes=10, width=0.125)
    assert model.input.shape[1:] == (32, 32, 3)
    assert model.get_layer("inception_3b").output.shape[1:3] == (32, 32)
    assert model.get_layer("inception_4e").output.shape[1:3] == (16, 16)
    assert model.get_layer("inception_5b").output.shape[1:3] == (8, 8)
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


def test_variable_input_size_model_runs_on_any_size():
    model = GoogLeNet("bn", input_shape=(None, None, 3), width=0.125, num_classes=5)
    for size in [(224, 224), (257, 193)]:
        assert model(np.zeros((1, *size, 3), "float32")).shape == (1, 5)


def _independent_param_count(variant, num_classes=1000, aux=False):
    """Trainable parameters computed from the paper's table by hand (conv weights + bias or BN gamma/beta)."""
    spec = specs.VARIANTS[variant]

    def conv(cin, cout, k):
        return cin * cout * k * k + (2 * cout if spec.batch_norm else cout)

    total = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    cin, k5 = 192, spec.branch5_kernel
    for row in specs.INCEPTION_ROWS:
        total += conv(cin, row.conv1x1, 1) + conv(cin, row.reduce3x3, 1) + conv(row.reduce3x3, row.conv3x3, 3)
        total += conv(cin, row.reduce5x5, 1) + conv(row.reduce5x5, row.conv5x5, k5) + conv(cin, row.pool_proj, 1)
        if aux and row.name in ("4a", "4d"):
            total += conv(row.out_channels, 128, 1) + 2048 * 1024 + 1024 + 1024 * num_classes + num_classes
        cin = row.out_channels
    return total + cin * num_classes + num_classes


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_parameter_totals():
    bn = GoogLeNet("bn")
    bn_aux = GoogLeNet("bn", aux_heads=True)
    assert _trainable(bn) == 6_624_904  # torchvision googlenet(aux_logits=False)
    assert _trainable(bn_aux) == 13_004_888  # torchvision googlenet(aux_logits=True)
    paper = GoogLeNet("paper")
    paper_aux = GoogLeNet("paper", aux_heads=True)
    assert _trainable(paper) == _independent_param_count("paper") == 6_998_552
    assert _trainable(paper_aux) == _independent_param_count("paper", aux=True) == 13_378_280
    assert sum(r.params for r in summary_table(bn)) == 6_624_904


def test_parameter_totals_equal_torchvision_count():
    import torch  # noqa: F401  (the extra: a broken install fails, never skips)
    import torchvision  # the extra: a broken install fails, never skips
    for aux in (False, True):
        net = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=False)
        expected = sum(p.numel() for p in net.parameters())
        assert _trainable(GoogLeNet("bn", aux_heads=aux)) == expected


@pytest.mark.parametrize("variant", ["paper", "bn", "cifar"])
def test_every_variant_trains_one_step(variant):
    keras.utils.set_random_seed(0)
    size = 32 if variant == "cifar" else 96
    model = GoogLeNet(variant, num_classes=4, aux_heads=True, width=0.125, input_shape=(size, size, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), **aux_compile_args())
    x = np.random.default_rng(1).uniform(0, 255, (8, size, size, 3)).astype("float32")
    y = np.arange(8) % 4
    before = [w.numpy().copy() for w in model.trainable_weights]
    _, targets = aux_targets(x, y)
    logs = model.train_on_batch(x, targets, return_dict=True)
    assert np.isfinite(logs["loss"])
    after = model.trainable_weights
    changed = sum(not np.allclose(a, b.numpy()) for a, b in zip(before, after))
    assert changed == len(before)


def test_aux_outputs_only_when_asked_and_inference_model_shares_weights():
    plain = GoogLeNet("cifar", num_classes=3, width=0.125)
    assert not isinstance(plain.output, dict)
    assert inference_model(plain) is plain
    model = GoogLeNet("cifar", num_classes=3, aux_heads=True, width=0.125)
    assert set(model.output) == {"main", "aux1", "aux2"}
    assert model.get_layer("aux1_head").input is model.get_layer("inception_4a").output
    assert model.get_layer("aux2_head").input is model.get_layer("inception_4d").output
    serve = inference_model(model)
    assert not isinstance(serve.output, dict)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(serve(x), model(x)["main"], rtol=1e-6)
    w = model.get_layer("classifier").kernel
    w.assign(w + 1.0)
    np.testing.assert_allclose(serve(x), model(x)["main"], rtol=1e-6)
    assert len(serve.weights) < len(model.weights)


def test_aux_loss_weights_default_to_the_papers():
    args = aux_compile_args()
    assert args["loss_weights"] == {"main": 1.0, "aux1": 0.3, "aux2": 0.3}


def test_feature_extractor_returns_named_maps():
    model = GoogLeNet("bn", include_top=False, width=0.125)
    backbone = feature_extractor(model, ("stem", "inception_3b", "inception_4e", "inception_5b"))
    maps = backbone(np.zeros((1, 224, 224, 3), "float32"))
    assert {k: tuple(v.shape[1:3]) for k, v in maps.items()} == {
        "stem": (28, 28), "inception_3b": (28, 28), "inception_4e": (14, 14), "inception_5b": (7, 7)}
    assert maps["inception_5b"].shape[-1] == specs.scaled(1024, 0.125)
    with pytest.raises(ValueError, match="inception_9z"):
        feature_extractor(model, ("inception_9z",))


@pytest.mark.parametrize("pooling,shape", [("avg", (None, 128)), ("max", (None, 128)), (None, (None, 7, 7, 128))])
def test_include_top_false_pooling(pooling, shape):
    model = GoogLeNet("bn", include_top=False, pooling=pooling, width=0.125)
    assert tuple(model.output.shape) == shape


@pytest.mark.parametrize("variant", ["paper", "bn", "cifar"])
def test_keras_round_trip(tmp_path, variant):
    model = GoogLeNet(variant, num_classes=6, aux_heads=True, width=0.125,
                      input_shape=None if variant == "cifar" else (96, 96, 3))
    size = model.input.shape[1]
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    path = tmp_path / f"{variant}.keras"
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(path)
    assert not [w for w in caught if "build" in str(w.message).lower()]
    a, b = model(x), loaded(x)
    for key in ("main", "aux1", "aux2"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert loaded.get_config()["name"] == model.get_config()["name"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_classes=0), "num_classes=0"),
        (dict(pooling="min", include_top=False), "pooling='min'"),
        (dict(weights="/no/such/file.weights.h5"), "/no/such/file.weights.h5"),
        (dict(aux_heads=True, include_top=False), "include_top=False"),
        (dict(input_shape=(16, 16, 3)), "16x16 is too small"),
        (dict(variant="resnet"), "variant='resnet'"),
        (dict(width=0), "width=0"),
        (dict(dropout=1.5), "dropout=1.5"),
        (dict(input_shape=(224, 224)), r"input_shape=\(224, 224\)"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        GoogLeNet(**kwargs)


def test_summary_table_rows():
    model = GoogLeNet("paper")
    rows = {r.name: r for r in summary_table(model)}
    assert rows["inception_3a"].inception == (64, 96, 128, 16, 32, 32)
    assert rows["inception_3a"].output == (28, 28, 256)
    assert rows["inception_5b"].output == (7, 7, 1024)
    assert rows["conv1"].patch == "7x7/2"
    # 3a: 28*28*(192*64 + 192*96 + 9*96*128 + 192*16 + 25*16*32 + 192*32) multiply-adds, as in the paper (128M)
    assert rows["inception_3a"].ops == 28 * 28 * (192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32)
    assert 1.4e9 < sum(r.ops for r in rows.values()) < 1.7e9  # the paper: about 1.5 billion multiply-adds
    text = format_table(model)
    assert "inception (4e)" in text and "6,998,552" in text


def test_nested_layers_walks_every_sublayer_once():
    from kgooglenet.layers import nested_layers

    model = GoogLeNet("bn", num_classes=10, aux_heads=True)
    found = nested_layers(model)
    assert len({id(layer) for layer in found}) == len(found) and model not in found
    assert nested_layers(model, include_self=True) == [model, *found]

    def count(kind):
        return sum(isinstance(layer, kind) for layer in found)

    # torchvision's GoogLeNet: 3 stem convs + 6 per inception block x 9, each with BN; one more in each aux head
    assert count(keras.layers.Conv2D) == count(keras.layers.BatchNormalization) == 3 + 6 * 9 + 2
    assert count(keras.layers.Dense) == 1 + 2 * 2  # the classifier; fc and classifier in each aux head
    paths = {layer.path for layer in found}
    assert {"inception_5b/1x1/conv", "aux1_head/fc", "classifier"} <= paths


def test_summary_cli_prints_torchvision_total():
    """Both entry points: `python -m kgooglenet` and the `kgooglenet` console script that `pip install` puts on PATH
    (pyproject's [project.scripts]; CI installs with `pip install -e`, so a missing script is a failure)."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    env = dict(os.environ, PYTHONPATH=root)  # this checkout's code, whichever checkout the script was installed from
    out = subprocess.run([sys.executable, "-m", "kgooglenet", "summary", "--variant", "bn"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "6,624,904" in out.stdout
    assert "inception (5b)" in out.stdout
    script = shutil.which("kgooglenet")
    assert script, "no `kgooglenet` console script on PATH: install the package (pip install -e .)"
    out = subprocess.run([script, "summary", "--variant", "bn", "--aux-heads"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "13,004,888" in out.stdout


def test_command_usage_names_the_console_script(capsys):
    from kgooglenet.__main__ import main

    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: kgooglenet {summary,convert,prepare,predict,average-checkpoints}")
    assert main(["nope"]) == 2
    assert "kgooglenet: unknown command 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "--variant", "nope"])
    assert exit_info.value.code == 2
    assert "usage: kgooglenet summary" in capsys.readouterr().err


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    path = tmp_path / "plain.weights.h5"
    GoogLeNet("cifar", num_classes=10, width=0.125).save_weights(path)
    with pytest.raises(ValueError, match="plain.weights.h5.*load_pretrained"):
        GoogLeNet("cifar", num_classes=10, width=0.125, aux_heads=True, weights=path)
    loaded = GoogLeNet("cifar", num_classes=10, width=0.125, weights=path)
    assert loaded.get_layer("classifier").kernel.shape == (128, 10)
