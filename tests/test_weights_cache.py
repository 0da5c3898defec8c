"""Weight resolution: paths, sidecars binding preprocessing, named sets in the cache, mirrors and their errors."""

import json
import os

import numpy as np
import pytest

import weights_helpers

from kgooglenet import GoogLeNet, specs
from kgooglenet.weights import cache


def test_none_resolves_to_none():
    assert cache.resolve_weights(None, "paper") is None


def test_missing_path_and_wrong_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at .*absent.weights.h5"):
        cache.resolve_weights(tmp_path / "absent.weights.h5", "bn")
    other = tmp_path / "model.pth"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="model.pth' is not a Keras weights file"):
        cache.resolve_weights(other, "bn")
    with pytest.raises(ValueError, match="`weights` must be None, .imagenet., one of .* received weights=3"):
        cache.resolve_weights(3, "bn")


@pytest.mark.parametrize("name", sorted(cache.NAMED_WEIGHTS))
def test_named_set_that_cannot_be_fetched_says_where_from_and_what_to_do(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv(cache.URL_ENV, weights_helpers.closed_port_url())  # never the internet
    entry = cache.NAMED_WEIGHTS[name]
    with pytest.raises(cache.WeightsDownloadError) as err:
        cache.resolve_weights(name, entry.variant)
    message = str(err.value)
    assert os.path.join(str(tmp_path), "kgooglenet", entry.original) in message  # where a hand-fetched file goes
    assert os.environ[cache.URL_ENV] + entry.original in message and entry.command in message
    assert (entry.sha1 or entry.sha256_prefix) in message and cache.URL_ENV in message


def test_origin_url_takes_the_argument_then_the_variable_then_the_canonical_address(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.URL_ENV, raising=False)
    entry = cache.NAMED_WEIGHTS["imagenet-torchvision"]
    assert cache.origin_url(entry.name) == entry.url
    monkeypatch.setenv(cache.URL_ENV, "https://mirror.example/weights")
    assert cache.origin_url(entry.name) == "https://mirror.example/weights/googlenet-1378be20.pth"
    assert cache.origin_url(entry.name, "http://h/x/googlenet-1378be20.pth") == "http://h/x/googlenet-1378be20.pth"
    assert cache.origin_url(entry.name, tmp_path) == (tmp_path / entry.original).as_uri()


def test_caffe_set_documents_the_bvlc_sha1():
    entry = cache.NAMED_WEIGHTS["imagenet-caffe"]
    assert entry.sha1 == "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
    assert entry.url == "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
    assert entry.variant == "paper"


def test_named_set_for_the_wrong_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="'imagenet-caffe' are for variant 'paper', received variant='bn'"):
        cache.resolve_weights("imagenet-caffe", "bn")


def test_sidecar_binds_preprocessing_and_variant(tmp_path):
    model = GoogLeNet("cifar", num_classes=10, width=0.125, preprocessing=None)
    path = str(tmp_path / "small.weights.h5")
    model.save_weights(path)
    assert cache.resolve_weights(path, "cifar").preprocessing is None  # no sidecar: nothing bound
    preprocessing = specs.PREPROCESSING["caffe"]
    cache.write_sidecar(path, {"variant": "cifar", "preprocessing": preprocessing.to_config(), "source": "test"})
    resolved = cache.resolve_weights(path, "cifar")
    assert resolved.preprocessing == preprocessing and resolved.metadata["source"] == "test"
    assert resolved.metadata["weights_sha256"] == cache.file_digest(path)
    loaded = GoogLeNet("cifar", num_classes=10, width=0.125, weights=path)  # preprocessing="auto" -> the sidecar's
    assert loaded.get_layer("preprocess").bgr is True
    assert loaded.get_layer("preprocess").mean == [104.0, 117.0, 123.0]
    explicit = GoogLeNet("cifar", num_classes=10, width=0.125, weights=path, preprocessing="unit")
    assert explicit.get_layer("preprocess").std == [255.0] * 3
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x[..., ::-1] - np.array([104, 117, 123], "float32"), verbose=0),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    with pytest.raises(ValueError, match="small.weights.h5' holds weights for variant 'cifar'.*received variant='bn'"):
        cache.resolve_weights(path, "bn")


def test_bad_sidecar_is_reported(tmp_path):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"x")
    (tmp_path / "w.weights.json").write_text("{not json")
    with pytest.raises(ValueError, match="w.weights.json' is not valid JSON"):
        cache.resolve_weights(path, "bn")


def test_install_copies_weights_and_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"weights")
    cache.write_sidecar(path, {"variant": "paper", "preprocessing": None})
    target = cache.install(path, "imagenet-caffe")
    assert target == os.path.join(str(tmp_path / "home"), "kgooglenet", "googlenet_caffe.weights.h5")
    with open(cache.sidecar_path(target)) as f:
        record = json.load(f)
    assert record["installed_as"] == "imagenet-caffe" and record["weights_file"] == "googlenet_caffe.weights.h5"
    assert cache.resolve_weights("imagenet-caffe", "paper").path == target


def test_verify_original_checks_the_published_checksums(tmp_path):
    path = tmp_path / "bvlc_googlenet.caffemodel"
    path.write_bytes(b"not the real file")
    with pytest.raises(ValueError, match="has sha1 [0-9a-f]{40}, but the published .* 405fc5acd08a"):
        cache.verify_original(path, "imagenet-caffe")
    with pytest.raises(ValueError, match="sha256 starting with 1378be20"):
        cache.verify_original(path, "imagenet-torchvision")
