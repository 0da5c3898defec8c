"""`GoogLeNet(weights="imagenet")` the keras.applications way, against an HTTP server on 127.0.0.1 serving stand-in
originals (a random torchvision state dict, a random caffemodel): the first call downloads, checks the checksum,
converts, caches and loads; a later process makes no request; failed, truncated and wrong-checksum downloads leave
nothing in the cache and say what to do; a retry succeeds. The real code path runs: only the published checksum in
NAMED_WEIGHTS is replaced by the stand-in's (so the check itself runs), and the address by the mirror variable."""

import dataclasses
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
import weights_helpers

from kgooglenet import GoogLeNet
from kgooglenet.weights import cache, caffe, named
from kgooglenet.weights.torchvision import convert_torchvision


@pytest.fixture(scope="module")
def tv_original(tmp_path_factory):
    """A random googlenet(aux_logits=True) state dict in torch's legacy format, as the published file is."""
    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    path = tmp_path_factory.mktemp("tv") / "googlenet-1378be20.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


@pytest.fixture(scope="module")
def caffe_original(assets_dir, tmp_path_factory):
    folder = os.path.join(assets_dir, "bvlc_googlenet")
    deploy = caffe.read_prototxt(os.path.join(folder, "deploy.prototxt"))
    net = caffe.aux_deploy_net(deploy, caffe.read_prototxt(os.path.join(folder, "train_val.prototxt")))
    path = tmp_path_factory.mktemp("caffe") / "bvlc_googlenet.caffemodel"
    weights_helpers.write_caffemodel(net, weights_helpers.random_blobs(net, seed=4), path)
    return path.read_bytes()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home" / "kgooglenet"


def _publish(monkeypatch, name, data):
    """Makes the stand-in the 'published' file of `name`: its checksum replaces the real one."""
    entry = named.NAMED_WEIGHTS[name]
    if entry.sha1:
        entry = dataclasses.replace(entry, sha1=hashlib.sha1(data).hexdigest())
    else:
        entry = dataclasses.replace(entry, sha256_prefix=hashlib.sha256(data).hexdigest()[:8])
    monkeypatch.setitem(named.NAMED_WEIGHTS, name, entry)


def _files(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture
def server(tv_original):
    s = weights_helpers.WeightsServer({"googlenet-1378be20.pth": tv_original})
    yield s
    s.close()


def test_first_call_downloads_checks_converts_caches_then_no_request(tv_original, server, home, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.URL_ENV, server.url)
    _publish(monkeypatch, "imagenet-torchvision", tv_original)
    model = GoogLeNet("bn", weights="imagenet", classifier_activation=None)
    assert server.requests == ["/models/googlenet-1378be20.pth"]
    assert _files(home) == ["googlenet-1378be20.pth", "googlenet_torchvision.weights.h5", "googlenet_torchvision.weights.json"]
    record = named.read_sidecar(home / "googlenet_torchvision.weights.h5")
    assert record["installed_as"] == "imagenet-torchvision" and record["variant"] == "bn"
    assert record["source_sha256"] == hashlib.sha256(tv_original).hexdigest()
    assert record["checksum_check"].startswith("sha256 ") and record["aux_heads"] is True

    direct = tmp_path / "direct.pth"
    direct.write_bytes(tv_original)
    reference = convert_torchvision(direct, tmp_path / "direct.weights.h5")
    expected = GoogLeNet("bn", weights=reference.weights_path, classifier_activation=None)
    x = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    logits = model.predict(x, verbose=0)
    np.testing.assert_array_equal(logits, expected.predict(x, verbose=0))
    assert model.get_layer("preprocess").mean == [127.5] * 3  # the set's own preprocessing, bound by its sidecar

    np.save(tmp_path / "x.npy", x)
    code = (
        "import numpy as np, kgooglenet; "
        f"m = kgooglenet.GoogLeNet('bn', weights='imagenet-torchvision', classifier_activation=None); "
        f"np.save({str(tmp_path / 'again.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # the published checksum is NOT patched there
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert server.requests == ["/models/googlenet-1378be20.pth"]  # no second request
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), logits)


def test_failed_downloads_leave_nothing_and_a_retry_succeeds(tv_original, server, home, monkeypatch):
    entry = named.NAMED_WEIGHTS["imagenet-torchvision"]
    hand_placed = str(home / "googlenet-1378be20.pth")

    monkeypatch.setenv(cache.URL_ENV, weights_helpers.closed_port_url())  # no server at all
    with pytest.raises(cache.WeightsDownloadError) as err:
        GoogLeNet("bn", weights="imagenet")
    message = str(err.value)
    assert "the download failed" in message and os.environ[cache.URL_ENV] + entry.original in message
    assert "1378be20" in message and hand_placed in message and cache.URL_ENV in message
    assert _files(home) == []

    monkeypatch.setenv(cache.URL_ENV, server.url)  # the real published checksum: the stand-in fails it
    with pytest.raises(cache.WeightsDownloadError, match=r"failed its checksum.*sha256 starting with 1378be20") as err:
        GoogLeNet("bn", weights="imagenet-torchvision")
    assert server.url + entry.original in str(err.value) and hand_placed in str(err.value)
    assert _files(home) == []

    _publish(monkeypatch, "imagenet-torchvision", tv_original)
    server.truncate = True  # the server stops mid-file
    with pytest.raises(cache.WeightsDownloadError, match="the download failed"):
        GoogLeNet("bn", weights="imagenet")
    assert _files(home) == []
    assert len(server.requests) == 2

    server.truncate = False
    model = GoogLeNet("bn", weights="imagenet", include_top=False, pooling="avg")  # the retry
    assert len(server.requests) == 3 and model.output.shape == (None, 1024)
    assert "googlenet_torchvision.weights.h5" in _files(home)
    assert not [f for f in _files(home) if f.startswith(".partial")]


def test_a_file_fetched_by_hand_or_from_a_local_mirror(tv_original, home, tmp_path, monkeypatch):
    _publish(monkeypatch, "imagenet-torchvision", tv_original)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "googlenet-1378be20.pth").write_bytes(tv_original)
    path = cache.fetch("imagenet-torchvision", origin=mirror)  # a local folder as the mirror
    assert path == str(home / "googlenet_torchvision.weights.h5")
    os.remove(path)  # the converted file goes; the checked original stays and is converted again, offline
    monkeypatch.setenv(cache.URL_ENV, weights_helpers.closed_port_url())
    assert cache.fetch("imagenet-torchvision") == path and os.path.isfile(path)


def test_paper_variant_gets_the_caffe_set(caffe_original, home, tmp_path, monkeypatch):
    server = weights_helpers.WeightsServer({"bvlc_googlenet.caffemodel": caffe_original})
    try:
        monkeypatch.setenv(cache.URL_ENV, server.url)
        _publish(monkeypatch, "imagenet-caffe", caffe_original)
        model = GoogLeNet("paper", weights="imagenet", aux_heads=True, classifier_activation=None)
        assert server.requests == ["/models/bvlc_googlenet.caffemodel"]
    finally:
        server.close()
    record = named.read_sidecar(home / "googlenet_caffe.weights.h5")
    assert record["checksum_check"].startswith("sha1 ") and record["installed_as"] == "imagenet-caffe"
    direct = tmp_path / "direct.caffemodel"
    direct.write_bytes(caffe_original)
    reference = caffe.convert_caffe(direct, tmp_path / "direct.weights.h5")
    expected = GoogLeNet("paper", weights=reference.weights_path, aux_heads=True, classifier_activation=None)
    x = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    got, want = model.predict(x, verbose=0), expected.predict(x, verbose=0)
    for head in ("main", "aux1", "aux2"):
        np.testing.assert_array_equal(got[head], want[head])
    assert model.get_layer("preprocess").bgr is True


def test_imagenet_names_and_their_errors(home):
    assert named.imagenet_name("bn") == "imagenet-torchvision" and named.imagenet_name("paper") == "imagenet-caffe"
    with pytest.raises(ValueError, match="variant 'cifar' has no ImageNet weights.*'imagenet-caffe' .variant 'paper'"):
        GoogLeNet("cifar", weights="imagenet")
    with pytest.raises(ValueError, match="Only None and 'softmax' are allowed for `classifier_activation`"):
        GoogLeNet("bn", weights="imagenet", classifier_activation="sigmoid")  # refused before any download
    with pytest.raises(ValueError, match="with include_top=True need num_classes=1000 .*received num_classes=10"):
        GoogLeNet("paper", weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="are for 3-channel RGB inputs, received an input with 1 channels"):
        GoogLeNet("bn", weights="imagenet", include_top=False, input_shape=(None, None, 1))
    assert _files(home) == []
