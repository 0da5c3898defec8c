"""Fine-tuning: new classifiers for another class count, freeze_until, frozen BatchNorm, lr_mult on the heads."""

import keras
import numpy as np
import pytest

from kgooglenet import GoogLeNet
from kgooglenet.data import DataConfig
from kgooglenet.train import TrainConfig, train
from kgooglenet.train.finetune import CLASSIFIER_LAYERS, freeze_until, inspect_weights_file, load_pretrained

HEADS = ("classifier", "aux1_head", "aux2_head")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 7-class cifar GoogLeNet with aux heads, its weights file and its weights by layer."""
    source = GoogLeNet("cifar", num_classes=7, aux_heads=True, width=0.125)
    rng = np.random.default_rng(0)
    # distinct BatchNorm statistics, so that "unchanged" is a real check
    source.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in source.get_weights()])
    path = str(tmp_path_factory.mktemp("weights") / "source.weights.h5")
    source.save_weights(path)
    return path, {layer.name: [w.copy() for w in layer.get_weights()] for layer in source.layers if layer.weights}


def test_load_pretrained_replaces_all_three_classifiers(pretrained):
    path, source = pretrained
    assert inspect_weights_file(path) == (7, True)
    model = GoogLeNet("cifar", num_classes=10, aux_heads=True, width=0.125)
    report = load_pretrained(model, path, variant="cifar", width=0.125)
    assert sorted(report.reinitialized) == ["aux1_head/classifier", "aux2_head/classifier", "classifier"]
    assert {name for name in source} - set(report.copied) == set(HEADS)
    for name in report.copied:
        if "/" in name:  # an aux head's conv or FC: copied, only its classifier is new
            head, part = name.split("/")
            got = getattr(model.get_layer(head), part).get_weights()
            want = source[head][:len(got)] if part == "conv" else source[head][-4:-2]
            assert len(got) == len(want) and got[0].shape == want[0].shape
        else:
            got, want = model.get_layer(name).get_weights(), source[name]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    fresh = model.get_layer("aux1_head").classifier.get_weights()[0]
    assert fresh.shape[-1] == 10
    assert {k: v.shape[-1] for k, v in model.output.items()} == {"main": 10, "aux1": 10, "aux2": 10}
    # a model without aux heads takes the backbone too; a model of another width is refused
    plain = GoogLeNet("cifar", num_classes=3, width=0.125)
    assert load_pretrained(plain, path, variant="cifar", width=0.125).reinitialized == ["classifier"]
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(GoogLeNet("cifar", num_classes=7, width=0.25), path, variant="cifar", width=0.25)


def test_freeze_until_validates_the_name():
    model = GoogLeNet("cifar", num_classes=10, aux_heads=True, width=0.125)
    frozen = freeze_until(model, "inception_4a")
    assert frozen[-1] == "inception_4a" and "conv1" in frozen and not set(frozen) & set(CLASSIFIER_LAYERS)
    assert model.get_layer("inception_4b").trainable and model.get_layer("aux1_head").trainable
    with pytest.raises(ValueError, match="no layer 'inception_9z'"):
        freeze_until(model, "inception_9z")


def test_finetune_run_frozen_layers_stay_heads_move(pretrained, tmp_path):
    path, source = pretrained
    config = TrainConfig(
        data=DataConfig(batch_size=32, seed=0), variant="cifar", width=0.125, weights=path,
        freeze_until="inception_4a", freeze_bn=True, lr_mult={name: 10.0 for name in HEADS},
        optimizer="sgd", learning_rate=0.01, schedule="constant", epochs=1, steps_per_epoch=3, validation_steps=1,
        out_dir=str(tmp_path / "ft"), verbose=0, tensorboard=False, plots=False,
    )

    class HeadsAtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = {name: [w.copy() for w in self.model.get_layer(name).get_weights()] for name in HEADS}

    start = HeadsAtStart()
    result = train(config, callbacks=[start])
    model = result.model
    assert result.num_classes == 10 and {k: v.shape[-1] for k, v in model.output.items()} == {
        "main": 10, "aux1": 10, "aux2": 10}
    for name in ("conv1", "inception_3a", "inception_3b", "inception_4a"):  # frozen: bit-identical
        for got, want in zip(model.get_layer(name).get_weights(), source[name]):
            np.testing.assert_array_equal(got, want, err_msg=name)
    # trainable layer after the freeze point: kernels move, BatchNorm statistics do not (freeze_bn)
    layer = model.get_layer("inception_5b")
    moved = {w.path: not np.array_equal(w.numpy(), s) for w, s in zip(layer.weights, source["inception_5b"])}
    assert all(moved[p] for p in moved if p.endswith("/kernel"))
    assert not any(moved[p] for p in moved if "moving_" in p or p.endswith(("gamma", "beta")))
    # the new heads (all three) move, with lr_mult 10 further than the base-rate layers
    for name in HEADS:
        step = max(np.abs(a - b).max() for a, b in zip(model.get_layer(name).get_weights(), start.weights[name]))
        assert step > 1e-3, name
    base_step = np.abs(layer.get_weights()[0] - source["inception_5b"][0]).max()
    head_step = np.abs(model.get_layer("classifier").get_weights()[0] - start.weights["classifier"][0]).max()
    assert head_step > 2 * base_step
