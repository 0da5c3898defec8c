"""The shipped ImageNet class index and decode_predictions."""

import os

import numpy as np
import pytest

from kgooglenet.weights import decode_predictions, imagenet


def test_class_index_is_shipped_with_provenance_and_license():
    folder = os.path.dirname(imagenet.class_index_path())
    assert os.path.isfile(os.path.join(folder, "LICENSE.timm-apache-2.0"))
    with open(os.path.join(folder, "imagenet1k_class_index.README.txt")) as f:
        assert "aa4b5850c1543fa488abf260f18390eda46cf85d" in f.read()


def test_class_index_matches_the_shared_asset(assets_dir):
    with open(os.path.join(assets_dir, "imagenet", "imagenet1k_class_index.tsv"), "rb") as f:
        shared = f.read()
    with open(imagenet.class_index_path(), "rb") as f:
        assert f.read() == shared


def test_class_index_content():
    classes = imagenet.class_index()
    assert len(classes) == 1000 and len(imagenet.CLASS_INDEX) == 1000
    assert (classes[0].wnid, classes[0].name) == ("n01440764", "tench")
    assert classes[0].names == ("tench", "Tinca tinca")
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)  # Caffe's and torchvision's order
    assert len({c.wnid for c in classes}) == 1000
    assert classes[134].name == classes[517].name == "crane" and classes[134].wnid != classes[517].wnid


def test_decode_predictions_top_k_in_order():
    preds = np.full((2, 1000), 1e-4, "float32")
    preds[0, [1, 517, 999]] = [0.5, 0.3, 0.1]
    preds[1, 134] = 0.9
    decoded = decode_predictions(preds, top=3)
    assert [item[:2] for item in decoded[0]] == [
        ("n01443537", "goldfish"),
        ("n03126707", "crane"),
        ("n15075141", "toilet tissue"),
    ]
    assert decoded[0][0][2] == pytest.approx(0.5)
    assert decoded[1][0][:2] == ("n02012849", "crane")
    assert len(decode_predictions(preds)[1]) == 5
    assert decode_predictions({"main": preds, "aux1": preds}, top=1)[0][0][1] == "goldfish"


@pytest.mark.parametrize("bad", [np.zeros((2, 10)), np.zeros(1000)])
def test_decode_predictions_rejects_other_shapes(bad):
    with pytest.raises(ValueError, match=r"shape \(batch, 1000\), received an array of shape"):
        decode_predictions(bad)


def test_decode_predictions_rejects_bad_top():
    with pytest.raises(ValueError, match="`top` must be an integer in"):
        decode_predictions(np.zeros((1, 1000)), top=0)
