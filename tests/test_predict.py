"""Tests of kgooglenet.predict: image decoding (TF, then Pillow, EXIF orientation), class names, predictions and the
CLI on a run directory, a named weight set, bad inputs, directories and `python -m` without a runpy warning."""

import os
import subprocess
import sys

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
from kgooglenet.saving import ModelInfo, save_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("ant", "bee", "zebra")


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


@pytest.fixture(scope="module")
def run_dir(model, tmp_path_factory):
    """A run directory as training leaves it (model.keras with the class names and size inside)."""
    folder = tmp_path_factory.mktemp("runs") / "insects"
    save_model(model, str(folder / "model.keras"), ModelInfo(class_names=CLASSES, image_size=32, variant="cifar",
                                                             width=0.125, aux_heads=False, preprocessing="imagenet"))
    return str(folder)


def test_cli_takes_a_run_directory_and_nothing_else(model, run_dir, images, capsys):
    _, paths = images
    code = main([paths["a.png"], paths["notes.txt"], paths["b.jpg"], "--model", run_dir, "--top", "2"])
    out = capsys.readouterr()
    assert code == 1
    lines = out.out.splitlines()
    assert lines[0] == paths["a.png"] and lines[1].startswith("  1. ") and lines[2].startswith("  2. ")
    assert lines[3].startswith(paths["notes.txt"] + ": error: cannot decode image")
    assert "BytesIO" not in lines[3] and lines[3].count("notes.txt") >= 2  # Pillow's reason names the file too
    assert lines[4] == paths["b.jpg"] and len(lines) == 7
    assert lines[1].split()[1] in CLASSES and lines[2].split()[1] in CLASSES  # the run's names, not class ids
    expected = predict(model, [paths["a.png"]], top=2, class_names=CLASSES)[0].top
    assert lines[1] == f"  1. {expected[0][1]} ({expected[0][0]})  {expected[0][2]:.4f}"
    assert "1 of 3 images could not be predicted" in out.err
    # the model file itself works the same; --top is capped at the class count
    assert main([paths["a.png"], "--model", os.path.join(run_dir, "model.keras"), "--top", "9"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_cli_bad_model_is_one_line_not_a_traceback(model, images, tmp_path, capsys):
    _, paths = images
    model.save_weights(str(tmp_path / "best.weights.h5"))
    (tmp_path / "empty_run").mkdir()
    cases = {str(tmp_path / "nowhere"): "no model at", str(tmp_path / "empty_run"): "without model.keras",
             paths["notes.txt"]: "not a .keras model file", str(tmp_path / "best.weights.h5"): "weights only"}
    for bad, message in cases.items():
        assert main([paths["a.png"], "--model", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --model: ") and message in err and bad in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_directories_are_predicted_and_missing_files_named(model, images, tmp_path):
    _, paths = images
    folder = os.path.dirname(paths["a.png"])
    (tmp_path / "empty").mkdir()
    preds = predict(model, [folder, str(tmp_path / "empty"), str(tmp_path / "gone.jpg")], top=1)
    names = [os.path.basename(p.source) for p in preds]
    # the folder's image files, sorted (notes.txt is no image; subfolders are not searched), then the two errors
    assert names == ["a.png", "b.jpg", "broken.jpg", "c.tiff", "d_cmyk.jpg", "e_gray.bmp", "empty", "gone.jpg"]
    assert preds[2].error and "broken.jpg" in preds[2].error
    assert "directory" in preds[6].error and "holds no image files" in preds[6].error
    assert preds[7].error == f"image file {str(tmp_path / 'gone.jpg')!r} does not exist"
    with pytest.raises(OSError, match="is a directory"):
        load_image(folder)


def test_exif_rotated_photo_predicts_as_its_upright_twin(model, tmp_path):
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:64]
    upright = np.clip(np.stack([xx * 4, yy * 5, 255 - xx * 3], -1) + rng.integers(0, 6, (48, 64, 3)), 0, 255)
    upright = upright.astype(np.uint8)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=100)
    # a portrait camera stores the pixels turned a quarter and says so in EXIF (orientation 6: rotate 90 CW to show)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # 64x48, turned counter-clockwise
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif.tobytes())
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=100, exif=exif.tobytes())
    assert tf.io.decode_image((tmp_path / "phone.jpg").read_bytes()).shape == (64, 48, 3)  # TF alone: sideways
    np.testing.assert_array_equal(load_image(tmp_path / "phone.png"), upright)
    jpg = load_image(tmp_path / "phone.jpg")
    assert jpg.shape == (48, 64, 3) and np.abs(jpg.astype(int) - load_image(tmp_path / "upright.jpg")).mean() < 2
    twin, phone, sideways = predict(model, [str(tmp_path / "upright.png"), str(tmp_path / "phone.png"), stored],
                                    top=3)
    np.testing.assert_allclose([p for _, _, p in phone.top], [p for _, _, p in twin.top], atol=1e-6)
    assert [c for c, _, _ in phone.top] == [c for c, _, _ in twin.top]
    assert max(abs(a[2] - b[2]) for a, b in zip(sorted(sideways.top), sorted(twin.top))) > 1e-4  # it matters


def test_named_weight_set_still_works(tmp_path, monkeypatch, images, capsys):
    from kgooglenet.weights.conversion import save_converted

    _, paths = images
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    imagenet = GoogLeNet("bn", preprocessing="torchvision")  # random weights in torchvision's layout
    save_converted(imagenet, str(tmp_path / "tv.weights.h5"), source="torchvision", input_path=__file__, variant="bn",
                   preprocessing="torchvision", num_classes=1000, aux_heads=False, install_name="imagenet-torchvision")
    assert main([paths["a.png"], "--weights", "imagenet-torchvision", "--top", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    from kgooglenet.evaluate.crops import center_crop

    expected = int(np.argmax(imagenet(center_crop(load_image(paths["a.png"]), 224)[None], training=False)))
    assert lines[1].startswith(f"  1. {default_class_names(1000)[expected]} ({expected})")


def test_python_m_kgooglenet_predict_runs_without_runpy_warning(run_dir, images):
    _, paths = images
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "kgooglenet", "predict", "--model", run_dir, paths["a.png"], "--top", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RuntimeWarning" not in proc.stderr and "found in sys.modules" not in proc.stderr
    assert proc.stdout.splitlines()[0] == paths["a.png"] and proc.stdout.splitlines()[1].split()[1] in CLASSES
