"""Tests of kgooglenet.predict: image decoding (TF, then Pillow), class names, predictions and the CLI."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kgooglenet import GoogLeNet
from kgooglenet.predict import (
    ImageDecodeError,
    default_class_names,
    load_image,
    main,
    predict,
    read_class_names,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:56]
    smooth = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1)  # JPEG-friendly gradients plus a little noise
    rgb = np.clip(smooth + rng.integers(0, 8, (40, 56, 3)), 0, 255).astype(np.uint8)
    paths = {}
    Image.fromarray(rgb).save(d / "a.png")
    Image.fromarray(rgb).save(d / "b.jpg", quality=95)
    Image.fromarray(rgb).save(d / "c.tiff")  # TF cannot decode TIFF: Pillow fallback
    Image.fromarray(rgb).convert("CMYK").save(d / "d_cmyk.jpg")
    Image.fromarray(rgb[..., 0]).save(d / "e_gray.bmp")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (d / "notes.txt").write_text("hello")
    for name in ("a.png", "b.jpg", "c.tiff", "d_cmyk.jpg", "e_gray.bmp", "broken.jpg", "notes.txt"):
        paths[name] = str(d / name)
    return rgb, paths


def test_load_image_formats(images):
    rgb, paths = images
    np.testing.assert_array_equal(load_image(paths["a.png"]), rgb)
    np.testing.assert_array_equal(load_image(paths["c.tiff"]), rgb)
    jpg = load_image(paths["b.jpg"])
    assert jpg.shape == (40, 56, 3) and np.abs(jpg.astype(int) - rgb).mean() < 6
    cmyk = load_image(paths["d_cmyk.jpg"])
    assert cmyk.shape == (40, 56, 3) and cmyk.dtype == np.uint8
    gray = load_image(paths["e_gray.bmp"])
    assert gray.shape == (40, 56, 3)
    np.testing.assert_array_equal(gray[..., 1], rgb[..., 0])
    with pytest.raises(ImageDecodeError, match="notes.txt.*TensorFlow.*Pillow"):
        load_image(paths["notes.txt"])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(paths["a.png"].replace("a.png", "missing.png"))


def test_read_class_names(tmp_path):
    (tmp_path / "categories.csv").write_text("class_name,class_id\nzebra,2\nant,0\nbee,1\n")
    assert read_class_names(tmp_path / "categories.csv") == ["ant", "bee", "zebra"]
    (tmp_path / "ids.csv").write_text("0,cat\n1,dog\n")
    assert read_class_names(tmp_path / "ids.csv") == ["cat", "dog"]
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    assert read_class_names(tmp_path / "names.txt") == ["cat", "dog"]
    (tmp_path / "gap.csv").write_text("class_name,class_id\na,0\nb,2\n")
    with pytest.raises(ValueError, match="without gaps"):
        read_class_names(tmp_path / "gap.csv")
    names = default_class_names(1000)
    assert len(names) == 1000 and names[1] == "goldfish"
    with pytest.raises(ValueError, match="3 class names but the model has 10"):
        default_class_names(10, ["a", "b", "c"])


@pytest.fixture(scope="module")
def model():
    return GoogLeNet("cifar", num_classes=3, width=0.125)


def test_predict_reports_bad_files_and_predicts_the_others(model, images):
    _, paths = images
    files = [paths[n] for n in ("a.png", "broken.jpg", "c.tiff", "notes.txt", "d_cmyk.jpg")]
    preds = predict(model, files, top=2, class_names=["ant", "bee", "zebra"])
    assert [p.error is None for p in preds] == [True, False, True, False, True]
    assert "broken.jpg" in preds[1].error and "notes.txt" in preds[3].error
    # a 32px model: shorter side 32 (kgooglenet.data.image.eval_scale: crop fraction 1 below 128 px, as training
    # validates) -> 40x56 becomes 32x45, center crop at (0, 6)
    x = tf.image.resize(load_image(paths["a.png"])[None].astype("float32"), (32, 45), antialias=True)
    expected = np.asarray(model(x[:, 0:32, 6:38], training=False))[0]
    ids = [cid for cid, _, _ in preds[0].top]
    assert ids == list(np.argsort(-expected)[:2])
    assert preds[0].top[0][1] == ["ant", "bee", "zebra"][ids[0]]
    np.testing.assert_allclose([p for _, _, p in preds[0].top], np.sort(expected)[::-1][:2], atol=1e-5)
    arr = predict(model, np.zeros((30, 30, 3), np.uint8), top=5, crops=10)
    assert len(arr) == 1 and len(arr[0].top) == 3 and arr[0].source == "array[0]"


def test_cli(model, images, tmp_path, capsys):
    _, paths = images
    path = str(tmp_path / "m.keras")
    model.save(path)
    (tmp_path / "categories.csv").write_text("class_name,class_id\nant,0\nbee,1\nzebra,2\n")
    code = main([paths["a.png"], paths["notes.txt"], paths["b.jpg"], "--weights", path, "--top", "2",
                 "--classes", str(tmp_path / "categories.csv")])
    out = capsys.readouterr()
    assert code == 1
    lines = out.out.splitlines()
    assert lines[0] == paths["a.png"] and lines[1].startswith("  1. ") and lines[2].startswith("  2. ")
    assert lines[3].startswith(paths["notes.txt"] + ": error: cannot decode image")
    assert lines[4] == paths["b.jpg"] and len(lines) == 7
    assert any(name in lines[1] for name in ("ant", "bee", "zebra"))
    assert "1 of 3 images could not be predicted" in out.err
    weights = str(tmp_path / "m.weights.h5")
    model.save_weights(weights)
    assert main([paths["a.png"], "--weights", weights, "--variant", "cifar", "--num-classes", "3", "--width",
                 "0.125", "--top", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("  1. ")
