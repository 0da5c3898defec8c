"""kgooglenet.data.image: the one evaluation-style image path, and no train/serve skew.

The skew test runs one folder of JPEGs of mixed sizes through the training pipeline's validation split, `evaluate` at
1 crop and the exported SavedModel's bytes signature, and checks that they agree image by image. The fuzz test feeds
the bytes signature 200+ random and structured byte strings in a subprocess where kgooglenet cannot be imported.
"""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from kgooglenet.data import image as image_ops

SIZE = 128  # >= 128: the default crop fraction is 0.875 (shorter side 146, center 128), the antialiased downscale


def _photo(h, w, seed=0):
    """A crop of one of scikit-learn's two sample photos, resized to h x w (real photo statistics)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(seed)
    photo = load_sample_image(("china.jpg", "flower.jpg")[seed % 2])
    top, left = rng.integers(0, 100), rng.integers(0, 200)
    crop = photo[top:top + 300, left:left + 400]
    return np.asarray(Image.fromarray(crop).resize((w, h), Image.BICUBIC))


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF",
                                  b"RIFF\0\0\0\0WEBP", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 30])
def test_decode_and_crop_gives_our_error_for_any_bad_bytes(data):
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_bytes: input") as info:
        image_ops.decode_and_crop(tf.constant(data), 32)
    magic = image_ops.is_image_header(tf.constant(data)).numpy()
    expected = image_ops.BAD_DATA_MESSAGE if magic else image_ops.BAD_HEADER_MESSAGE
    assert expected in info.value.message


def test_is_image_header_for_every_length():
    for n in range(0, 14):
        assert not image_ops.is_image_header(tf.constant(b"x" * n)).numpy()
    for magic in (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF\0\0\0\0WEBP"):
        assert image_ops.is_image_header(tf.constant(magic)).numpy()
    assert not image_ops.is_image_header(tf.constant(b"RIFF\0\0\0\0WAVE")).numpy()


def test_center_crop_sizes_and_one_scale():
    assert image_ops.eval_scale(224) == 256 and image_ops.eval_scale(32) == 32 and image_ops.eval_scale(128) == 146
    assert image_ops.eval_scale(224, crop_fraction=0.5) == 448
    image = np.random.default_rng(0).integers(0, 256, (300, 200, 3), np.uint8)
    out = image_ops.center_crop(image, 224).numpy()
    resized = tf.image.resize(image[None].astype("float32"), (384, 256), "bilinear", antialias=True)[0].numpy()
    np.testing.assert_allclose(out, resized[80:304, 16:240], atol=1e-4)
    # the 1-crop of evaluate is this function
    from kgooglenet.evaluate import multi_crop

    np.testing.assert_array_equal(multi_crop(image, 1, 224).numpy()[0], out)


def test_orient_undoes_every_exif_orientation(tmp_path):
    from PIL import Image

    upright = _photo(30, 40)
    # the transposes that store an upright image under each EXIF orientation (PIL's exif_transpose inverts them)
    store = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
             6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}
    for orientation, op in store.items():
        stored = Image.fromarray(upright).transpose(op)
        exif = Image.Exif()
        exif[image_ops.EXIF_ORIENTATION_TAG] = orientation
        path = tmp_path / f"o{orientation}.png"
        stored.save(path, exif=exif.tobytes())
        assert image_ops.exif_orientation(path) == orientation
        np.testing.assert_array_equal(image_ops.load_image(path), upright, err_msg=f"orientation {orientation}")
        got, *_ = next(iter(image_ops.files_dataset([path], [0])))
        np.testing.assert_array_equal(got.numpy(), upright)
    with pytest.raises(FileNotFoundError, match="directory"):
        image_ops.load_image(tmp_path)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """3 classes x 6 JPEGs of mixed sizes and aspect ratios (larger and smaller than the model input)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    sizes = [(150, 200), (300, 170), (128, 128), (96, 140), (181, 240), (400, 300)]
    for c in range(3):
        os.makedirs(root / f"class{c}")
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(_photo(h, w, seed=3 * i + c)).save(root / f"class{c}" / f"im{i}.jpg", quality=90)
    return str(root)


@pytest.fixture(scope="module")
def served(mixed_folder, tmp_path_factory):
    """A random-weight tiny model and its SavedModel export."""
    import keras

    from kgooglenet import GoogLeNet
    from kgooglenet.export import export_savedmodel

    keras.utils.set_random_seed(3)
    model = GoogLeNet("cifar", num_classes=3, width=0.125, input_shape=(SIZE, SIZE, 3))
    path = export_savedmodel(model, str(tmp_path_factory.mktemp("sm")), name="skew",
                             class_names=["class0", "class1", "class2"])
    return model, path


def test_no_skew_between_validation_evaluate_and_serving(mixed_folder, served):
    import keras

    from kgooglenet.data import DataConfig, list_image_folder, make_datasets, stratified_split
    from kgooglenet.evaluate import evaluate

    model, path = served
    config = DataConfig(source="folder", path=mixed_folder, image_size=SIZE, val_split=0.5, seed=0, batch_size=4)
    files, labels, _ = list_image_folder(mixed_folder)
    _, va = stratified_split(labels, config.val_split, config.seed)
    assert len(va) == 9

    # 1. the training pipeline's validation split, and the Keras accuracy a training run prints on it
    bundle = make_datasets(config)
    pipeline = np.concatenate([model.predict_on_batch(x) for x, _ in bundle.val])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    keras_accuracy = model.evaluate(bundle.val, steps=bundle.validation_steps, verbose=0, return_dict=True)["accuracy"]
    # 2. evaluate at 1 crop, from the same DataConfig
    result = evaluate(model, config, crops=1, keep_probabilities=True, progress=False)
    # 3. the SavedModel's bytes signature on the files themselves
    loaded = tf.saved_model.load(path)
    blobs = [open(files[i], "rb").read() for i in va]
    served_probs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(blobs))["probabilities"].numpy()

    assert pipeline.shape == result.probabilities.shape == served_probs.shape == (9, 3)
    np.testing.assert_array_equal(result.labels, labels[va])
    np.testing.assert_allclose(result.probabilities, pipeline, atol=1e-5)
    np.testing.assert_allclose(served_probs, pipeline, atol=1e-4)  # BatchNorm folded in the export
    assert (pipeline.argmax(1) == result.probabilities.argmax(1)).all()
    assert (pipeline.argmax(1) == served_probs.argmax(1)).all()
    assert result.top1 == pytest.approx(keras_accuracy, abs=1e-6)
    assert result.top1 == pytest.approx(float((pipeline.argmax(1) == labels[va]).mean()))
    # the crops really differ between images: no degenerate agreement
    assert np.ptp(pipeline, axis=0).max() > 1e-4


FUZZ = r'''
import importlib.abc, io, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kgooglenet" or name.startswith("kgooglenet."):
            raise ImportError("kgooglenet is blocked in this process")

sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_sample_image
try:
    import kgooglenet  # noqa: F401
    sys.exit("kgooglenet was importable")
except ImportError:
    pass

rng = np.random.default_rng(0)
photo = Image.fromarray(load_sample_image("flower.jpg")).resize((90, 60))
files = {}
for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP"):
    buf = io.BytesIO()
    photo.save(buf, fmt)
    files[fmt] = buf.getvalue()
cases = [("empty", b"")]
cases += [(f"random{n}", rng.bytes(n)) for n in range(1, 17) for _ in range(2)]
magics = [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0", b"\x89PNG", b"\x89PNG\r\n\x1a\n", b"GIF8", b"GIF87a", b"GIF89a",
          b"BM", b"RIFF", b"RIFF\0\0\0\0WEBP", b"RIFF\0\0\0\0WEBPVP8 "]
cases += [(f"magic{m!r}", m) for m in magics]
cases += [(f"magic{m!r}+random", m + rng.bytes(int(rng.integers(1, 64)))) for m in magics]
for fmt, data in files.items():
    cases.append((f"{fmt} whole", data))
    cases += [(f"{fmt}[:{k}]", data[:k]) for k in sorted(set(rng.integers(1, len(data), 26).tolist()))]
    cases.append((f"{fmt}[:-1]", data[:-1]))
cases += [(f"random long {i}", rng.bytes(int(rng.integers(17, 4000)))) for i in range(10)]
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_bytes"]
out = {"cases": len(cases), "errors": 0, "valid": 0, "bad": []}
for name, data in cases:
    try:
        probs = serve(image_bytes=tf.constant([data]))["probabilities"].numpy()
    except tf.errors.InvalidArgumentError as e:
        out["errors"] += 1
        if "serving_bytes: input" not in e.message:
            out["bad"].append([name, e.message[:200]])
        continue
    except Exception as e:
        out["bad"].append([name, f"{type(e).__name__}: {str(e)[:200]}"])
        continue
    if probs.shape == (1, 3) and np.isfinite(probs).all() and abs(probs.sum() - 1) < 1e-4:
        out["valid"] += 1
    else:
        out["bad"].append([name, f"probabilities {probs.tolist()}"])
after = serve(image_bytes=tf.constant([files["JPEG"], files["PNG"]]))["probabilities"].numpy()
out["after"] = after.tolist()
print(json.dumps(out))
'''


def test_bytes_signature_fuzz_without_kgooglenet(served, tmp_path):
    _, path = served
    script = tmp_path / "fuzz.py"
    script.write_text(textwrap.dedent(FUZZ))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, str(script), path], capture_output=True, text=True, timeout=900, env=env,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cases"] >= 200
    assert out["bad"] == []
    assert out["valid"] >= 5 and out["errors"] >= 150  # the 5 whole files are valid, the empty/magic ones are not
    after = np.asarray(out["after"])
    assert after.shape == (2, 3) and np.allclose(after.sum(1), 1, atol=1e-4)
