"""Tests of kgooglenet.evaluate: crop boxes and crops, ensembles, metrics, reports."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from data_helpers import make_image_folder
from harness import load_recipe

from kgooglenet import GoogLeNet
from kgooglenet.evaluate import (
    Ensemble,
    center_crop,
    crop_boxes,
    crop_count,
    evaluate,
    forward_macs,
    most_confused,
    multi_crop,
    plot_confusion,
    results_table,
)


def _reference_crops(image, boxes, size=224):
    """Each crop built independently from its documented box: resize, slice, resize a whole square, mirror."""
    out = []
    for c in boxes:
        resized = tf.image.resize(image[None].astype("float32"), c.resized, "bilinear", antialias=True)[0].numpy()
        t, l, h, w = c.box
        window = resized[t : t + h, l : l + w]
        if (h, w) != (size, size):
            window = tf.image.resize(window[None], (size, size), "bilinear", antialias=True)[0].numpy()
        out.append(window[:, ::-1] if c.flip else window)
    return np.stack(out)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(300, 400), (400, 300)], ids=["landscape", "portrait"])
def test_144_crops_match_documented_boxes(shape, rng):
    h, w = shape
    boxes = crop_boxes(h, w, 144)
    assert len(boxes) == 144
    assert sum(c.flip for c in boxes) == 72
    assert [c.scale for c in boxes[:72]] == [256] * 18 + [288] * 18 + [320] * 18 + [352] * 18
    # shorter side 256 -> 256 x 341 (landscape) or 341 x 256 (portrait)
    first = boxes[:18]
    assert first[0].resized == ((256, 341) if w > h else (341, 256))
    along = [0, (341 - 256) // 2, 341 - 256]  # left/center/right (or top/center/bottom) squares
    for sq in range(3):
        six = first[sq * 6 : sq * 6 + 6]
        o = along[sq]
        st, sl = (0, o) if w > h else (o, 0)
        assert [c.box for c in six] == [
            (st, sl, 224, 224), (st, sl + 32, 224, 224), (st + 32, sl, 224, 224), (st + 32, sl + 32, 224, 224),
            (st + 16, sl + 16, 224, 224), (st, sl, 256, 256)]
    assert boxes[72 + 5].name == boxes[5].name + "/flip" and boxes[72 + 5].box == boxes[5].box
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    crops = multi_crop(image, 144).numpy()
    assert crops.shape == (144, 224, 224, 3) and crops.dtype == np.float32
    np.testing.assert_allclose(crops, _reference_crops(image, boxes), atol=1e-3)


@pytest.mark.parametrize("shape", [(300, 400), (500, 260)], ids=["landscape", "portrait"])
def test_10_crops_match_documented_boxes(shape, rng):
    h, w = shape
    boxes = crop_boxes(h, w, "ten")
    assert len(boxes) == 10 and all(c.scale == 256 for c in boxes)
    rh, rw = boxes[0].resized
    assert min(rh, rw) == 256 and abs(rh / rw - h / w) < 0.01
    assert [c.box[:2] for c in boxes[:5]] == [
        (0, 0), (0, rw - 224), (rh - 224, 0), (rh - 224, rw - 224), ((rh - 224) // 2, (rw - 224) // 2)]
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    crops = multi_crop(image, 10).numpy()
    assert crops.shape == (10, 224, 224, 3)
    np.testing.assert_allclose(crops, _reference_crops(image, boxes), atol=1e-3)
    np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1])
    # the 1-crop scheme is the 10-crop scheme's center crop
    np.testing.assert_array_equal(multi_crop(image, 1).numpy()[0], crops[4])
    np.testing.assert_array_equal(center_crop(image).numpy(), crops[4])


def test_crops_in_tf_data_with_dynamic_sizes(rng):
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(230, 250), (260, 240)]]
    ds = tf.data.Dataset.from_generator(lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    got = [x.numpy() for x in ds.map(lambda x: multi_crop(x, 10))]
    for image, crops in zip(images, got):
        np.testing.assert_allclose(crops, multi_crop(image, 10).numpy(), atol=1e-4)


def test_crop_scheme_arguments():
    assert [crop_count(s) for s in (1, 10, 144, "center", "ten", "paper144", "10")] == [1, 10, 144, 1, 10, 144, 10]
    for bad in (2, "five", True, None):
        with pytest.raises(ValueError, match="scheme"):
            crop_count(bad)
    with pytest.raises(ValueError, match="height"):
        crop_boxes(0, 10, 1)
    # scales follow the model size: a 32px model uses shorter sides 37, 41, 46, 50
    assert sorted({c.scale for c in crop_boxes(40, 60, 144, size=32)}) == [37, 41, 46, 50]


@pytest.fixture(scope="module")
def tiny():
    import keras

    keras.utils.set_random_seed(1)
    return GoogLeNet("cifar", num_classes=10, width=0.125)


def test_multi_crop_of_constant_image_equals_single_crop(tiny):
    image = np.full((45, 60, 3), 117, np.uint8)
    ensemble = Ensemble(tiny)
    single = ensemble.predict_crops(multi_crop(image, 1, 32)[None])
    for n in (10, 144):
        crops = multi_crop(image, n, 32)
        np.testing.assert_allclose(crops.numpy(), 117.0, atol=1e-3)
        np.testing.assert_allclose(ensemble.predict_crops(crops[None]), single, atol=1e-5)


def test_ensemble_of_identical_models_equals_one(tiny, rng):
    images = rng.uniform(0, 255, (3, 40, 50, 3)).astype("float32")
    crops = tf.stack([multi_crop(im, 10, 32) for im in images])
    one = Ensemble(tiny).predict_crops(crops)
    two = Ensemble([tiny, tiny]).predict_crops(crops)
    np.testing.assert_allclose(two, one, atol=1e-6)
    np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-5)
    # a different model changes the average: the mean of the two members' probabilities
    other = GoogLeNet("cifar", num_classes=10, width=0.125, name="other")
    mixed = Ensemble([tiny, other]).predict_crops(crops)
    np.testing.assert_allclose(mixed, (one + Ensemble(other).predict_crops(crops)) / 2, atol=1e-6)
    labels = one.argmax(axis=1)
    r1 = evaluate(tiny, tf.data.Dataset.from_tensor_slices((images, labels)), crops=10, progress=False)
    r2 = evaluate([tiny, tiny], tf.data.Dataset.from_tensor_slices((images, labels)), crops=10, progress=False)
    assert r1.top1 == r2.top1 == 1.0
    np.testing.assert_array_equal(r1.confusion, r2.confusion)
    assert (r1.cost, r2.cost) == (10, 20)


def test_aux_heads_weights(rng):
    model = GoogLeNet("cifar", num_classes=5, width=0.125, aux_heads=True)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    out = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    main_only = Ensemble(model).predict(x)
    np.testing.assert_allclose(main_only, out["main"], atol=1e-6)
    weighted = Ensemble(model, head_weights={"main": 1.0, "aux1": 0.3, "aux2": 0.3}).predict(x)
    np.testing.assert_allclose(weighted, (out["main"] + 0.3 * out["aux1"] + 0.3 * out["aux2"]) / 1.6, atol=1e-6)
    assert Ensemble(model, head_weights={"main": 1, "aux1": 1}).heads_used == [["main", "aux1"]]
    with pytest.raises(ValueError, match="head_weights"):
        Ensemble(model, head_weights={"aux3": 1.0})
    logits = GoogLeNet("cifar", num_classes=5, width=0.125, classifier_activation=None)
    np.testing.assert_allclose(Ensemble(logits).predict(x).sum(axis=1), 1.0, atol=1e-5)


def test_evaluate_metrics_and_report(tiny, rng, tmp_path):
    x = rng.uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    pred = Ensemble(tiny).predict(x)
    order = np.argsort(-pred, axis=1)
    # labels: 12 images labelled with the top-1 class, 6 with the 3rd class (top-5 hit), 6 with the last class
    y = np.concatenate([order[:12, 0], order[12:18, 2], order[18:, -1]]).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)  # batched input, partial last batch
    result = evaluate(tiny, ds, crops=None, class_names=list("abcdefghij"), output_dir=str(tmp_path), progress=False)
    assert result.num_examples == 24
    assert result.top1 == pytest.approx(12 / 24) and result.top5 == pytest.approx(18 / 24)
    assert result.confusion.sum() == 24 and np.trace(result.confusion) == 12
    acc = result.per_class_accuracy
    support = np.bincount(y, minlength=10)
    assert np.all(np.isnan(acc[support == 0]))
    np.testing.assert_allclose(np.nansum(acc * support), 12)
    assert result.macs_per_image == forward_macs(tiny) > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(0.5) and metrics["cost"] == 1
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "per_class.csv").read_text().splitlines()) == 11
    # the same images through multi-crop: 144 crops x 2 models
    r144 = evaluate([tiny, tiny], (x[:4], y[:4]), crops="paper144", progress=False, name="2 models")
    table = results_table([result, r144])
    assert "2 models" in table and " 288 " in table and "base" in table
    assert r144.cost == 288 and r144.macs_per_image == 288 * forward_macs(tiny)
    with pytest.raises(ValueError, match="labels"):
        evaluate(tiny, (x[:2], np.array([0, 10])), progress=False)
    with pytest.raises(ValueError, match="crops=1"):
        evaluate(tiny, (rng.uniform(0, 255, (2, 40, 40, 3)).astype("float32"), np.zeros(2)), crops=None,
                 progress=False)


def test_evaluate_from_data_config(tiny):
    from kgooglenet.data import DataConfig

    images = np.random.default_rng(1).integers(0, 256, (30, 36, 44, 3), dtype=np.uint8)
    labels = np.arange(30) % 10
    config = DataConfig(source="arrays", train_arrays=(images, labels), val_arrays=(images[:10], labels[:10]),
                        image_size=32, batch_size=4, class_names=[f"c{i}" for i in range(10)])
    r1 = evaluate(tiny, config, progress=False)
    r10 = evaluate(tiny, config, crops=10, progress=False)
    assert r1.num_examples == r10.num_examples == 10
    assert r1.class_names[3] == "c3" and r10.crops == 10
    # multi-crop sees the whole 36x44 images, as when they are passed directly
    direct = evaluate(tiny, (images[:10], labels[:10]), crops=10, progress=False)
    np.testing.assert_array_equal(r10.confusion, direct.confusion)


def test_confusion_plot_many_classes(tmp_path, rng):
    confusion = np.diag(rng.integers(5, 10, 1000)).astype(np.int64)
    confusion[3, 7] = 9
    confusion[10, 2] = 4
    pairs = most_confused(confusion, [f"class{i}" for i in range(1000)], top=5)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [(3, 7, 9), (10, 2, 4)]
    assert pairs[0]["true_name"] == "class3"
    path = plot_confusion(confusion, None, str(tmp_path / "c.png"))
    assert os.path.getsize(path) > 1000


def test_forward_macs_matches_paper():
    # "1.5 billion multiply-adds at inference time" (Szegedy et al. 2015, section 1)
    assert forward_macs(GoogLeNet("bn")) == pytest.approx(1.5e9, rel=0.01)


# ----------------------------------------------------------------------------------------------------------------
# run directories, prepared datasets, folders: the hand-offs
# ----------------------------------------------------------------------------------------------------------------
CLASSES = ("cls_a", "cls_b", "cls_c")


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """3 classes x 6 JPEGs, plus a text file named .jpg and a truncated JPEG (both undecodable)."""
    root = make_image_folder(tmp_path_factory.mktemp("folder") / "imgs", classes=3, per_class=6)
    with open(os.path.join(root, "cls_b", "text.jpg"), "w") as f:
        f.write("not an image\n")
    good = open(os.path.join(root, "cls_a", "img000.jpg"), "rb").read()
    with open(os.path.join(root, "cls_a", "truncated.jpg"), "wb") as f:
        f.write(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as a training run leaves it: RUN_DIR/model.keras with its ModelInfo."""
    import keras

    from kgooglenet.saving import RUN_MODEL_FILE, ModelInfo, save_model

    keras.utils.set_random_seed(2)
    model = GoogLeNet("cifar", num_classes=3, width=0.125, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("run")
    info = ModelInfo(class_names=CLASSES, image_size=32, variant="cifar", width=0.125, aux_heads=False,
                     preprocessing=None)
    save_model(model, str(path / RUN_MODEL_FILE), info)
    return str(path), model


def test_evaluate_a_run_dir_on_a_folder_counts_undecodable_images(run_dir, small_folder, tmp_path):
    path, model = run_dir
    result = evaluate(path, small_folder, output_dir=str(tmp_path), progress=False)
    assert result.class_names == list(CLASSES) and result.num_examples == 18
    assert sorted(os.path.relpath(p, small_folder) for p in result.undecodable) == ["cls_a/truncated.jpg",
                                                                                     "cls_b/text.jpg"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["undecodable_count"] == 2 and len(metrics["undecodable"]) == 2
    # the same numbers as the in-memory model on the decodable files
    from kgooglenet.data import list_image_folder
    from kgooglenet.evaluate import image_files_dataset

    files, labels, _ = list_image_folder(small_folder)
    keep = [i for i, f in enumerate(files) if not f.endswith(("truncated.jpg", "text.jpg"))]
    direct = evaluate(model, image_files_dataset([files[i] for i in keep], labels[keep]), progress=False)
    np.testing.assert_array_equal(result.confusion, direct.confusion)
    assert direct.undecodable == []


def test_evaluate_the_val_split_of_a_prepared_dataset(run_dir, small_folder, tmp_path):
    from kgooglenet.data import DataConfig, prepare_folder, read_prepared

    path, _ = run_dir
    prepared = str(tmp_path / "prepared")
    report = prepare_folder(small_folder, prepared, val_split=0.5, size=40, progress=False)
    result = evaluate(path, prepared, progress=False, keep_probabilities=True)
    assert result.num_examples == report.val_count == 9 and result.class_names == list(CLASSES)
    val_rows = open(os.path.join(prepared, "val.csv")).read().splitlines()[1:]
    assert sorted(result.labels.tolist()) == sorted(int(r.split(",")[1]) for r in val_rows)
    skipped_val = [p for p, _ in read_prepared(prepared)["val_skipped"]]
    assert result.undecodable == skipped_val and set(skipped_val) <= {"cls_a/truncated.jpg", "cls_b/text.jpg"}
    # a DataConfig of the preparation gives the same, and the 10-crop scheme sees the same 9 images
    same = evaluate(path, DataConfig(source="tfrecord", path=prepared, image_size=32), progress=False)
    np.testing.assert_array_equal(same.confusion, result.confusion)
    assert evaluate(path, prepared, crops=10, progress=False).num_examples == 9


def test_top_k_stays_below_the_class_count(tiny, rng):
    x = rng.uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    three = GoogLeNet("cifar", num_classes=3, width=0.125)
    two = GoogLeNet("cifar", num_classes=2, width=0.125)
    r10 = evaluate(tiny, (x, np.arange(6)), crops=None, progress=False)
    r3 = evaluate(three, (x, np.arange(6) % 3), crops=None, progress=False)
    r2 = evaluate(two, (x, np.arange(6) % 2), crops=None, progress=False)
    assert (r10.top_k, r3.top_k, r2.top_k) == (5, 2, 0)
    assert r2.top5 is None and r2.top5_error is None and 0 <= r3.top5 <= 1
    assert "top-2 acc" in results_table([r3]) and "top-5" not in results_table([r3])
    assert "top-1 err" in results_table([r2]) and "top-" not in results_table([r2]).replace("top-1", "")


def test_per_class_bars_next_to_the_confusion_matrix(tmp_path):
    from kgooglenet.evaluate import EvaluationResult, plot_per_class

    confusion = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    result = EvaluationResult("m", 1, 1, 10, 0.7, None, confusion, list(CLASSES), top_k=0)
    paths = result.save(str(tmp_path))
    for key in ("confusion", "per_class_plot"):
        assert open(paths[key], "rb").read(4) == b"\x89PNG" and os.path.getsize(paths[key]) > 2000
    assert os.path.dirname(paths["per_class_plot"]) == os.path.dirname(paths["confusion"])
    many = np.diag(np.arange(1, 301))
    assert os.path.getsize(plot_per_class(many, None, str(tmp_path / "many.png"))) > 2000


def test_exif_rotated_photo_is_evaluated_as_its_upright_twin(tiny, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from kgooglenet.evaluate import image_files_dataset

    photo = Image.fromarray(load_sample_image("flower.jpg")).resize((60, 40))
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to view"
    photo.save(tmp_path / "upright.png")
    photo.transpose(Image.ROTATE_270).save(tmp_path / "rotated.png", exif=exif.tobytes())
    result = evaluate(tiny, image_files_dataset([tmp_path / "upright.png", tmp_path / "rotated.png"], [0, 0]),
                      keep_probabilities=True, progress=False)
    np.testing.assert_allclose(result.probabilities[1], result.probabilities[0], atol=1e-6)
    plain = evaluate(tiny, (np.asarray(photo.transpose(Image.ROTATE_270))[None], [0]), keep_probabilities=True,
                     progress=False)
    assert np.abs(plain.probabilities[0] - result.probabilities[0]).max() > 1e-6  # the rotation does matter


def test_evaluate_recipe_takes_a_run_dir_and_a_prepared_dataset(run_dir, small_folder, tmp_path, capsys):

    from kgooglenet.data import prepare_folder

    path, _ = run_dir
    prepared = str(tmp_path / "prepared")
    prepare_folder(small_folder, prepared, val_split=0.5, size=40, progress=False)
    recipe = load_recipe("evaluate")
    out = tmp_path / "eval"
    results = recipe.main(["--model", path, "--prepared", prepared, "--crops", "1", "--out-dir", str(out)])
    text = capsys.readouterr().out
    assert [r.num_examples for r in results] == [9] and results[0].class_names == list(CLASSES)
    assert "top-2" in text and "top-5" not in text
    assert {f for f in os.listdir(out / "single_x1")} >= {"metrics.json", "per_class.csv", "per_class.png",
                                                         "confusion.png"}
    folder = recipe.main(["--model", path, "--folder", small_folder, "--crops", "1", "--out-dir", str(out)])
    assert folder[0].num_examples == 18 and "2 image(s) could not be decoded" in capsys.readouterr().out
