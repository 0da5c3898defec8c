"""Caffe conversion: random-weight caffemodels for the real BVLC deploy.prototxt (both file formats), converted and
compared with OpenCV's Caffe importer on real photos; reader unit tests; clear errors for bad files."""

import datetime
import hashlib
import json
import os

import numpy as np
import pytest

from kgooglenet import GoogLeNet
import weights_helpers
from kgooglenet.weights import caffe, caffe_proto, parity

TOLERANCE = 1e-4  # max |keras - reference| / max |reference|


@pytest.fixture(scope="module")
def nets(assets_dir):
    folder = os.path.join(assets_dir, "bvlc_googlenet")
    deploy_path = os.path.join(folder, "deploy.prototxt")
    deploy = caffe.read_prototxt(deploy_path)
    train_val = caffe.read_prototxt(os.path.join(folder, "train_val.prototxt"))
    return {"deploy_path": deploy_path, "deploy": deploy, "aux": caffe.aux_deploy_net(deploy, train_val)}


@pytest.fixture(scope="module")
def converted(nets, tmp_path_factory):
    """{format: (caffemodel, aux prototxt, weights)}: one random model, written in both formats and converted."""
    tmp = tmp_path_factory.mktemp("caffe")
    aux_prototxt = tmp / "deploy_with_aux.prototxt"
    aux_prototxt.write_text(caffe_proto.to_prototxt(nets["aux"]))
    blobs = weights_helpers.random_blobs(nets["aux"], seed=1)
    result = {}
    for fmt, legacy in (("layer+shape", False), ("V1 layers+nchw", True)):
        model_path = tmp / f"{'v1' if legacy else 'v2'}.caffemodel"
        weights_helpers.write_caffemodel(nets["aux"], blobs, model_path, legacy=legacy)
        out = tmp / f"{'v1' if legacy else 'v2'}.weights.h5"
        conversion = caffe.convert_caffe(model_path, out, prototxt=nets["deploy_path"])
        result[fmt] = (str(model_path), str(aux_prototxt), conversion)
    return result


@pytest.fixture(scope="module")
def photos():
    return parity.sample_images(224)


@pytest.mark.parametrize("fmt", ["layer+shape", "V1 layers+nchw"])
def test_caffe_conversion_matches_opencv_on_photos(converted, photos, fmt):
    import cv2  # noqa: F401  (the extra: a broken install fails, never skips)
    caffemodel, aux_prototxt, conversion = converted[fmt]
    model = GoogLeNet("paper", aux_heads=True, weights=conversion.weights_path, classifier_activation=None)
    report = parity.parity_report(model, parity.CaffeReference(aux_prototxt, caffemodel), photos, verbose=False)
    compared = [row.keras_layer for row in report.rows]
    for name in ("conv1", "lrn1", "lrn2", "inception_3a", "inception_5b", "avg_pool", "classifier", "aux1_head"):
        assert name in compared
    for row in report.rows:
        assert row.relative <= TOLERANCE, (fmt, row)
    for head in ("classifier", "aux1_head", "aux2_head"):
        row = report.row(head)
        assert row.shape == (2, 1000)
        assert row.top5_match, row
        assert row.reference_scale > 1.0  # the random weights give logits of a real scale


def test_converted_file_loads_with_bound_preprocessing_and_without_aux_heads(converted, photos):
    import cv2

    caffemodel, _, conversion = converted["layer+shape"]
    model = GoogLeNet("paper", weights=conversion.weights_path, classifier_activation=None)  # aux weights ignored
    pre = model.get_layer("preprocess")
    assert (pre.mean, pre.std, pre.bgr) == ([104.0, 117.0, 123.0], [1.0, 1.0, 1.0], True)
    net = cv2.dnn.readNetFromCaffe(converted["layer+shape"][1], caffemodel)
    net.setInput(cv2.dnn.blobFromImages(list(photos[..., ::-1]), 1.0, (224, 224), (104, 117, 123), swapRB=False))
    reference = net.forward("loss3/classifier")
    logits = model.predict(photos, verbose=0)
    assert np.abs(logits - reference).max() / np.abs(reference).max() <= TOLERANCE
    probs = GoogLeNet("paper", weights=conversion.weights_path).predict(photos, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(1) == reference.argmax(1)).all()


def test_sidecar_records_source_hash_variant_preprocessing_and_class_index(converted):
    caffemodel, _, conversion = converted["V1 layers+nchw"]
    assert conversion.sidecar_path == conversion.weights_path[: -len(".weights.h5")] + ".weights.json"
    with open(conversion.sidecar_path) as f:
        record = json.load(f)
    with open(caffemodel, "rb") as f:
        assert record["source_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert record["source"] == "caffe"
    assert record["source_file"] == "v1.caffemodel"
    assert record["variant"] == "paper"
    assert record["preprocessing_name"] == "caffe"
    assert record["preprocessing"] == {"mean": [104.0, 117.0, 123.0], "std": [1.0, 1.0, 1.0], "bgr": True}
    assert record["class_index"] == "imagenet1k_class_index.tsv"
    assert record["aux_heads"] is True and record["num_classes"] == 1000
    assert record["caffe_format"] == "V1 layers"
    written = datetime.datetime.fromisoformat(record["date"])  # the conversion's time, timezone-aware UTC
    assert abs(datetime.datetime.now(datetime.timezone.utc) - written) < datetime.timedelta(hours=2)
    assert record["ignored_caffe_layers"] == []


def _tiny_net():
    return caffe_proto.parse_prototxt(
        """
        name: "tiny"
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } some_unknown_field: 3 }
        layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
        layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
                pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
        layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }
        """
    )


def test_blob_shapes_follow_caffe_shape_inference():
    shapes = caffe.blob_shapes(_tiny_net())
    # conv: 8 -> 4 (pad 1, stride 2); pool 3/2 ceil: 4 -> 2; fc input 4 * 2 * 2
    assert shapes == {"conv": [(4, 3, 3, 3), (4,)], "fc": [(5, 16), (5,)]}


@pytest.mark.parametrize("legacy", [False, True])
def test_both_formats_round_trip_every_blob(tmp_path, legacy):
    net = _tiny_net()
    blobs = weights_helpers.random_blobs(net, seed=3)
    path = weights_helpers.write_caffemodel(net, blobs, tmp_path / "tiny.caffemodel", legacy=legacy)
    read = caffe.read_caffemodel(path)
    assert (len(read.layers) > 0) == legacy and (len(read.layer) > 0) == (not legacy)
    layers = {layer.name: layer for layer in caffe.net_layers(read, path)}
    assert layers["conv"].type == "Convolution" and layers["fc"].type == "InnerProduct"
    for name, arrays in blobs.items():
        for got, expected in zip(layers[name].blobs, arrays):
            np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    if legacy:  # legacy blobs are 4-D: an FC weight is 1 x 1 x out x in
        assert layers["fc"].blobs[0].shape == (1, 1, 5, 16)


def test_legacy_blob_dims_inside_current_format_and_double_data():
    blob = caffe_proto.BlobProto(num=2, channels=3, height=1, width=1)
    blob.double_data.extend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    array = caffe.blob_to_array(blob, "test")
    assert array.shape == (2, 3, 1, 1) and array.dtype == np.float32
    blob = caffe_proto.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 5)
    with pytest.raises(ValueError, match="should hold 6 values but holds 5"):
        caffe.blob_to_array(blob, "layer 'x' blob 0")


# ---------------------------------------------------------------------------------------------------------- errors


def test_missing_caffemodel_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="caffemodel: no file at .*nope.caffemodel"):
        caffe.convert_caffe(tmp_path / "nope.caffemodel", tmp_path / "w.weights.h5")


def test_png_passed_as_caffemodel(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.caffemodel"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, format="PNG")
    with pytest.raises(ValueError, match="photo.caffemodel.*not a binary Caffe model but a PNG image"):
        caffe.convert_caffe(path, tmp_path / "w.weights.h5")


def test_prototxt_passed_as_caffemodel(nets, tmp_path):
    with pytest.raises(ValueError, match="deploy.prototxt.*a text file .*prototxt"):
        caffe.convert_caffe(nets["deploy_path"], tmp_path / "w.weights.h5")


def test_truncated_caffemodel(converted, tmp_path):
    caffemodel = converted["layer+shape"][0]
    with open(caffemodel, "rb") as f:
        data = f.read()
    for cut in (1000, len(data) // 2):
        path = tmp_path / f"cut{cut}.caffemodel"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.caffemodel.*truncated"):
            caffe.convert_caffe(path, tmp_path / "w.weights.h5")


def test_prototxt_and_caffemodel_mismatch(nets, tmp_path):
    blobs = weights_helpers.random_blobs(nets["deploy"], seed=0)
    blobs["inception_4c/3x3"][0] = blobs["inception_4c/3x3"][0][:, :64]  # 64 input channels instead of 128
    path = weights_helpers.write_caffemodel(nets["deploy"], blobs, tmp_path / "other.caffemodel")
    with pytest.raises(ValueError) as err:
        caffe.convert_caffe(path, tmp_path / "w.weights.h5", prototxt=nets["deploy_path"])
    message = str(err.value)
    assert "other.caffemodel" in message and "deploy.prototxt" in message
    assert "'inception_4c/3x3' blob 0 has shape (256, 64, 3, 3), the prototxt implies (256, 128, 3, 3)" in message
    # without the prototxt, the Keras model's shapes catch it
    with pytest.raises(ValueError, match=r"other.caffemodel' layer 'inception_4c/3x3' blob 0.*does not fit"):
        caffe.convert_caffe(path, tmp_path / "w.weights.h5")


def test_prototxt_of_another_architecture(nets, tmp_path):
    changed = caffe_proto.NetParameter()
    changed.CopyFrom(nets["deploy"])
    lrn = next(layer for layer in changed.layer if layer.type == "LRN")
    lrn.lrn_param.alpha = 1e-7
    prototxt = tmp_path / "changed.prototxt"
    prototxt.write_text(caffe_proto.to_prototxt(changed))
    path = weights_helpers.write_caffemodel(nets["deploy"], weights_helpers.random_blobs(nets["deploy"]), tmp_path / "m.caffemodel")
    with pytest.raises(ValueError, match="changed.prototxt.*'pool1/norm1' has LRN parameters"):
        caffe.convert_caffe(path, tmp_path / "w.weights.h5", prototxt=prototxt)


def test_caffemodel_without_aux_converts_main_only_and_rejects_aux_true(nets, tmp_path):
    path = weights_helpers.write_caffemodel(nets["deploy"], weights_helpers.random_blobs(nets["deploy"]), tmp_path / "m.caffemodel")
    with pytest.raises(ValueError, match="m.caffemodel.*has no aux heads"):
        caffe.convert_caffe(path, tmp_path / "w.weights.h5", aux_heads=True)
    result = caffe.convert_caffe(path, tmp_path / "w.weights.h5")
    assert result.metadata["aux_heads"] is False and os.path.isfile(result.weights_path)
