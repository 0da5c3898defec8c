"""torchvision conversion: a random-weight googlenet(aux_logits=True, transform_input=True) with non-trivial BatchNorm
statistics, saved as a state dict, converted, and compared with torch on real photos (224 and a non-224 size);
installing as "imagenet-torchvision"; clear errors for bad checkpoints."""

import json
import os

import numpy as np
import pytest
import torch  # the torch extra: CI installs it, so a broken install fails here instead of skipping
import torchvision
import weights_helpers

from kgooglenet import GoogLeNet
from kgooglenet.weights import cache, parity
from kgooglenet.weights import torchvision as tv_weights

TOLERANCE = 1e-4


def _randomize(model, seed=0):
    """He-normal convs (activations keep their scale), random FC, and BatchNorm with non-trivial affine parameters
    and running statistics (so a wrong mapping of gamma/beta/mean/var shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=g)
            elif isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, (1.0 / module.weight.shape[1]) ** 0.5, generator=g)
                module.bias.uniform_(-0.5, 0.5, generator=g)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=g)
                module.bias.uniform_(-0.5, 0.5, generator=g)
                module.running_mean.normal_(0.0, 0.5, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    _randomize(model)
    path = tmp_path_factory.mktemp("tv") / "googlenet-random.pth"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    return tv_weights.convert_torchvision(checkpoint, tmp_path_factory.mktemp("tvout") / "tv.weights.h5")


@pytest.mark.parametrize("size", [(224, 224), (193, 257)])
def test_torchvision_conversion_matches_torch_on_photos(checkpoint, converted, size):
    photos = parity.sample_images(size)
    model = GoogLeNet(
        "bn", aux_heads=True, weights=converted.weights_path, input_shape=(*size, 3), classifier_activation=None
    )
    report = parity.parity_report(model, parity.TorchvisionReference(checkpoint), photos, verbose=False)
    assert {"conv1", "inception_4e", "avg_pool", "classifier", "aux1_head", "aux2_head"} <= {
        row.keras_layer for row in report.rows
    }
    for row in report.rows:
        assert row.relative <= TOLERANCE, (size, row)
    for head in ("classifier", "aux1_head", "aux2_head"):
        assert report.row(head).top5_match, report.row(head)
        assert report.row(head).shape == (2, 1000)


def test_aux_outputs_through_the_torch_modules_directly(checkpoint, converted):
    """Independent of parity.py: torch's own forward + aux modules called on hooked 4a/4d outputs, in eval mode."""
    photos = parity.sample_images(224)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    net.eval()
    seen = {}
    hooks = [
        getattr(net, name).register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
        for name in ("inception4a", "inception4d")
    ]
    x = torch.from_numpy(photos.transpose(0, 3, 1, 2).copy() / 255.0).float()
    x = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(x)
    with torch.no_grad():
        expected = {"main": net(x), "aux1": net.aux1(seen["inception4a"]), "aux2": net.aux2(seen["inception4d"])}
    for hook in hooks:
        hook.remove()
    model = GoogLeNet("bn", aux_heads=True, weights=converted.weights_path)  # softmax, bound preprocessing
    pre = model.get_layer("preprocess")
    assert (pre.mean, pre.std, pre.bgr) == ([127.5] * 3, [127.5] * 3, False)
    got = model.predict(photos, verbose=0)
    for head, logits in expected.items():
        probs = torch.softmax(logits, dim=1).numpy()
        assert np.abs(got[head] - probs).max() <= TOLERANCE * probs.max()
        assert (np.argsort(-got[head], 1)[:, :5] == np.argsort(-probs, 1)[:, :5]).all()


def test_sidecar_and_no_aux_checkpoint(checkpoint, converted, tmp_path):
    record = converted.metadata
    assert record["source"] == "torchvision" and record["variant"] == "bn"
    assert record["preprocessing_name"] == "torchvision" and record["transform_input"] is True
    assert record["source_sha256"] == cache.file_digest(checkpoint)
    assert record["aux_heads"] is True
    with open(converted.sidecar_path) as f:
        assert json.load(f)["preprocessing"] == {"mean": [127.5] * 3, "std": [127.5] * 3, "bgr": False}
    state = {k: v for k, v in torch.load(checkpoint, weights_only=True).items() if not k.startswith("aux")}
    path = tmp_path / "noaux.pth"
    torch.save({"state_dict": state}, path)  # a training checkpoint wrapping the state dict
    result = tv_weights.convert_torchvision(path, tmp_path / "noaux.weights.h5", transform_input=False)
    assert result.metadata["aux_heads"] is False and result.metadata["preprocessing_name"] == "imagenet"
    a = GoogLeNet("bn", weights=converted.weights_path, preprocessing=None, classifier_activation=None)
    b = GoogLeNet("bn", weights=result.weights_path, preprocessing=None, classifier_activation=None)
    x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype("float32")
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))


def test_install_as_named_set_and_load_by_name(checkpoint, converted, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv(cache.URL_ENV, weights_helpers.closed_port_url())  # no test reaches the internet
    with pytest.raises(cache.WeightsDownloadError) as err:
        GoogLeNet("bn", weights="imagenet-torchvision")
    message = str(err.value)
    assert os.environ[cache.URL_ENV] + "googlenet-1378be20.pth" in message
    assert "1378be20" in message and "sha256" in message
    assert "python -m kgooglenet convert torchvision --checkpoint googlenet-1378be20.pth --install" in message
    with pytest.raises(ValueError, match="googlenet-random.pth' has sha256 .* starting with 1378be20"):
        tv_weights.convert_torchvision(checkpoint, install=True)
    result = tv_weights.convert_torchvision(checkpoint, install=True, allow_unverified=True)
    assert result.installed_as == "imagenet-torchvision"
    assert result.weights_path == str(tmp_path / "keras_home" / "kgooglenet" / "googlenet_torchvision.weights.h5")
    named = GoogLeNet("bn", weights="imagenet-torchvision", classifier_activation=None)
    by_path = GoogLeNet("bn", weights=converted.weights_path, classifier_activation=None)
    x = parity.sample_images(224)[:1]
    np.testing.assert_array_equal(named.predict(x, verbose=0), by_path.predict(x, verbose=0))
    with pytest.raises(ValueError, match="'imagenet-torchvision' are for variant 'bn', received variant='paper'"):
        GoogLeNet("paper", weights="imagenet-torchvision")


# ---------------------------------------------------------------------------------------------------------- errors


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: no file at .*missing.pth"):
        tv_weights.convert_torchvision(tmp_path / "missing.pth", tmp_path / "w.weights.h5")


def test_text_file_as_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are notes, not weights\n")
    with pytest.raises(ValueError, match="notes.pth' is not a PyTorch checkpoint but a text file"):
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")


def test_png_as_checkpoint(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.pth"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, format="PNG")
    with pytest.raises(ValueError, match="photo.pth' is not a PyTorch checkpoint but a PNG image"):
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")


def test_truncated_checkpoint(checkpoint, tmp_path):
    with open(checkpoint, "rb") as f:
        data = f.read()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth.*(truncated|damaged)"):
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")


def test_state_dict_of_another_architecture(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    expected = r"resnet18.pth' is not a torchvision GoogLeNet state dict \(it looks like a ResNet\)"
    with pytest.raises(ValueError, match=expected):
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")


def test_pickled_module_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: unpickling it would run code
    with pytest.raises(ValueError, match="whole_model.pth' contains pickled Python objects"):
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")
