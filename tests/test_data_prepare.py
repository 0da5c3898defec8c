"""kgooglenet.data.prepare: the image-folder preparer and reading its shards."""

import csv
import json
import os

import numpy as np
import pytest
from data_helpers import SPECIAL, add_special_files, make_image_folder
from harness import load_recipe

from kgooglenet.data import DataConfig, make_datasets
from kgooglenet.data.prepare import main, prepare_folder
from kgooglenet.data.records import read_prepared


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("src") / "imgs", classes=3, per_class=6)
    add_special_files(root)
    return root


@pytest.fixture(scope="module")
def prepared(messy, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("out") / "prep")
    report = prepare_folder(messy, out, val_split=0.25, size=32, center_crop=True, images_per_shard=4,
                            workers=2, progress=False)
    return out, report


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_counts_ids_listings_and_report(messy, prepared):
    out, report = prepared
    good = {c: 6 + sum(ok for _, ok in SPECIAL.get(c, [])) for c in ("cls_a", "cls_b", "cls_c")}
    assert report.class_names == ["cls_a", "cls_b", "cls_c"]
    assert report.train_count + report.val_count == sum(good.values()) == 25
    assert sorted(p for p, _ in report.skipped) == ["cls_a/truncated.jpg", "cls_b/notes.txt", "cls_b/text.jpg"]
    reasons = dict(report.skipped)
    assert "truncated" in reasons["cls_a/truncated.jpg"]
    assert "extension" in reasons["cls_b/notes.txt"] and "identify" in reasons["cls_b/text.jpg"]
    assert [(r["class_name"], r["class_id"]) for r in _rows(os.path.join(out, "categories.csv"))] == [
        ("cls_a", "0"), ("cls_b", "1"), ("cls_c", "2")]
    train, val = _rows(os.path.join(out, "train.csv")), _rows(os.path.join(out, "val.csv"))
    assert len(train) == report.train_count and len(val) == report.val_count
    assert not {r["path"] for r in train} & {r["path"] for r in val}
    for r in train + val:
        assert r["class_name"] == r["path"].split("/")[0]
        assert int(r["class_id"]) == report.class_names.index(r["class_name"])
        assert (r["height"], r["width"]) == ("32", "32")
    for c, n_good in good.items():  # stratified over the image candidates (bad ones drop out afterwards)
        cand = 6 + sum(name.endswith((".jpg", ".png", ".gif", ".bmp")) for name, _ in SPECIAL.get(c, []))
        bad = cand - n_good
        n_val = sum(r["class_name"] == c for r in val)
        assert round(cand * 0.25) - bad <= n_val <= round(cand * 0.25)
        assert n_val + sum(r["class_name"] == c for r in train) == n_good
    assert {r["path"] for r in train + val} >= {"cls_a/gray.jpg", "cls_a/cmyk.jpg", "cls_a/rgba.png",
                                                "cls_b/palette.gif", "cls_b/bitmap.bmp", "cls_c/la.png"}
    skipped = _rows(os.path.join(out, "skipped.csv"))
    assert [r["path"] for r in skipped] == sorted(p for p, _ in report.skipped)
    info = json.load(open(os.path.join(out, "report.json")))
    assert info["skipped_count"] == 3
    per_shard = {}
    for r in train:
        per_shard[r["shard"]] = per_shard.get(r["shard"], 0) + 1
    assert sorted(per_shard) == info["shards"]["train"] and max(per_shard.values()) == 4


def test_rgb_stats_are_train_only(messy, prepared):
    out, report = prepared
    from kgooglenet.data.prepare import load_image

    train = _rows(os.path.join(out, "train.csv"))
    px = np.concatenate([load_image(os.path.join(messy, r["path"]), 32, True)[1].reshape(-1, 3) for r in train])
    stats = json.load(open(os.path.join(out, "rgb_stats.json")))
    np.testing.assert_allclose(stats["mean"], px.mean(0), atol=1e-3)
    np.testing.assert_allclose(stats["std"], px.std(0), atol=1e-3)
    assert stats["images"] == len(train) and stats["split"] == "train"


def test_rerun_is_a_noop(messy, prepared):
    out, _ = prepared
    before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
    report = prepare_folder(messy, out, val_split=0.25, size=32, center_crop=True, images_per_shard=4,
                            progress=False)
    after = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
    assert report.shards_written == 0 and report.shards_skipped == len([f for f in before if f.endswith(".tfrecord")])
    assert before == after
    with pytest.raises(ValueError, match="overwrite"):
        prepare_folder(messy, out, val_split=0.25, size=24, images_per_shard=4, progress=False)


def test_resume_rewrites_only_missing_shards(messy, tmp_path):
    out = str(tmp_path / "p")
    prepare_folder(messy, out, size=16, images_per_shard=5, progress=False)
    os.remove(os.path.join(out, "train-00001-of-00005.tfrecord"))  # an interrupted run
    report = prepare_folder(messy, out, size=16, images_per_shard=5, progress=False)
    assert report.shards_written == 1
    assert read_prepared(out)["train_size"] == report.train_count


def test_errors(tmp_path):
    one = make_image_folder(tmp_path / "one", classes=1, per_class=2)
    with pytest.raises(ValueError, match="at least two"):
        prepare_folder(one, str(tmp_path / "o1"), progress=False)
    two = make_image_folder(tmp_path / "two", classes=2, per_class=2)
    os.makedirs(tmp_path / "two" / "cls_z")
    (tmp_path / "two" / "cls_z" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="cls_z"):
        prepare_folder(two, str(tmp_path / "o2"), progress=False)
    with pytest.raises(FileNotFoundError, match="nope"):
        prepare_folder(str(tmp_path / "nope"), str(tmp_path / "o3"), progress=False)
    with pytest.raises(FileNotFoundError, match="kgooglenet prepare"):
        make_datasets(DataConfig(source="tfrecord", path=str(tmp_path / "o3")))


def test_cli(messy, tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert main([messy, out, "--val-split", "0.2", "--size", "20", "--no-progress", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "3 classes" in text and "3 skipped" in text and "truncated.jpg" in text
    rows = _rows(os.path.join(out, "train.csv"))
    assert min(min(int(r["height"]), int(r["width"])) for r in rows) == 20  # aspect kept without --center-crop
    assert main([str(tmp_path / "missing"), out, "--no-progress"]) == 2


def test_training_reads_the_shards(prepared):
    import keras

    from kgooglenet import GoogLeNet

    out, report = prepared
    cfg = DataConfig(source="tfrecord", path=out, image_size=32, batch_size=8, seed=0)
    b = make_datasets(cfg)
    assert (b.train_size, b.val_size, b.num_classes) == (report.train_count, report.val_count, 3)
    assert b.class_names == report.class_names and b.rgb_mean == tuple(report.mean)
    x, y = next(iter(b.train))
    assert x.shape == (8, 32, 32, 3) and y.dtype == "int32"
    assert sum(int(x.shape[0]) for x, _ in b.val) == report.val_count
    model = GoogLeNet(variant="cifar", width=0.125, input_shape=(32, 32, 3), num_classes=3)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"],
                  jit_compile=False)
    hist = model.fit(b.train, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)  # train repeats
    assert np.isfinite(hist.history["loss"][0]) and 0 <= hist.history["accuracy"][0] <= 1


def test_module_shim(tmp_path):
    import subprocess
    import sys

    src = make_image_folder(tmp_path / "src", classes=2, per_class=3, size=(20, 30))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "kgooglenet", "prepare", src, str(out), "--size", "16", "--center-crop",
                           "--val-split", "0.34", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 classes, 4 train / 2 val images" in proc.stdout
    assert len(_rows(out / "train.csv")) == 4 and (out / "rgb_stats.json").exists()


def test_warning_filters_untouched_by_the_thread_pool(messy, tmp_path):
    import warnings

    before = list(warnings.filters)
    prepare_folder(messy, str(tmp_path / "w"), size=16, images_per_shard=3, workers=2, progress=False)
    assert warnings.filters == before  # no "ignore" left behind by a per-thread catch_warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("after the preparer", UserWarning)
    assert [str(w.message) for w in caught] == ["after the preparer"]


def _exif_twins(root):
    """cls_a/upright.png and cls_a/rotated.png (one photo, stored turned with EXIF orientation 6), and a JPEG pair."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photo = Image.fromarray(load_sample_image("china.jpg")).resize((64, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": PIL's exif_transpose applies ROTATE_270
    for cls in ("cls_a", "cls_b"):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
    photo.save(os.path.join(root, "cls_a", "upright.png"))
    photo.transpose(Image.ROTATE_90).save(os.path.join(root, "cls_a", "rotated.png"), exif=exif.tobytes())
    photo.save(os.path.join(root, "cls_b", "upright.jpg"), quality=95)
    photo.transpose(Image.ROTATE_90).save(os.path.join(root, "cls_b", "rotated.jpg"), quality=95, exif=exif.tobytes())
    return root


def _decoded_records(out):
    import tensorflow as tf

    from kgooglenet.data.records import parse_example

    info = read_prepared(out)
    got = {}
    for raw, label, name in tf.data.TFRecordDataset(info["train_files"] + info["val_files"]).map(
            lambda s: parse_example(s, with_filename=True)):
        got[name.numpy().decode()] = tf.io.decode_jpeg(raw).numpy()
    return got


def test_exif_rotated_photo_is_prepared_as_its_upright_twin(tmp_path):
    src = _exif_twins(str(tmp_path / "src"))
    out = str(tmp_path / "p")
    prepare_folder(src, out, val_split=0.0, size=0, progress=False)
    images = _decoded_records(out)
    assert images["cls_a/upright.png"].shape == (40, 64, 3)
    np.testing.assert_array_equal(images["cls_a/rotated.png"], images["cls_a/upright.png"])
    diff = np.abs(images["cls_b/rotated.jpg"].astype(int) - images["cls_b/upright.jpg"]).mean()
    assert images["cls_b/rotated.jpg"].shape == (40, 64, 3) and diff < 3  # JPEG re-encoding only


def test_resize_is_the_evaluation_path(messy, prepared):
    from kgooglenet.data.image import resize_shorter
    from kgooglenet.data.prepare import load_image

    path = os.path.join(messy, "cls_a", "img000.jpg")  # 48x64 -> 32x43 (shorter side 32, half-to-even)
    _, arr = load_image(path, 32)
    from PIL import Image

    expected = resize_shorter(np.asarray(Image.open(path).convert("RGB"))[None], 32)[0].numpy()
    assert arr.shape == (32, 43, 3)
    np.testing.assert_array_equal(arr, np.clip(np.round(expected), 0, 255).astype(np.uint8))


def test_cli_preparation_is_reused_by_train_folder_and_a_mismatch_names_the_option(messy, tmp_path, capsys):

    out = str(tmp_path / "cli")
    assert main([messy, out, "--size", "24", "--center-crop", "--images-per-shard", "5", "--no-progress"]) == 0
    files = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
    recipe = load_recipe("train_folder")
    # the recipe's own defaults (--image-size 32 would store a shorter side of 37) give way to the preparation's
    report = recipe.prepare(recipe.parse_args([messy, "--prepared", out, "--image-size", "32", "--verbose", "0"]))
    assert report.shards_written == 0 and report.options["size"] == 24 and report.options["center_crop"]
    assert {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)} == files
    with pytest.raises(ValueError) as info:
        recipe.prepare(recipe.parse_args([messy, "--prepared", out, "--prepare-size", "20",
                                          "--no-prepare-center-crop", "--verbose", "0"]))
    text = str(info.value)
    assert "size=24 there, 20 asked" in text and "--prepare-size" in text
    assert "center_crop=True there, False asked" in text and "--prepare-center-crop" in text
    assert "--prepare-overwrite" in text
    # the preparer's CLI names its own flags; a changed source folder is named too
    assert main([messy, out, "--quality", "80", "--no-progress"]) == 2
    assert "quality=95 there, 80 asked" in capsys.readouterr().out
    extra = os.path.join(messy, "cls_c", "new.png")
    from PIL import Image

    Image.new("RGB", (30, 30), "red").save(extra)
    try:
        with pytest.raises(ValueError, match=r"source files changed since: 1 added \(e.g. 'cls_c/new.png'\)"):
            prepare_folder(messy, out, progress=False)
    finally:
        os.remove(extra)


KILL = r'''
import os, signal, sys
from kgooglenet.data import prepare, records

mode, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
calls = {"n": 0}
if mode == "mid-shard":  # SIGKILL while the 2nd shard has 2 of its 4 images written
    encode = records.encode_example

    def encode_then_die(*a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return encode(*a, **k)

    records.encode_example = encode_then_die
else:  # SIGKILL right after the 3rd shard is renamed into place, before its completion record
    replace = prepare._fsync_replace

    def replace_then_die(tmp, path):
        replace(tmp, path)
        if path.endswith(".tfrecord"):
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGKILL)

    prepare._fsync_replace = replace_then_die
prepare.prepare_folder(src, out, size=16, images_per_shard=4, workers=1, progress=False)
sys.exit("not killed")
'''


def test_killed_mid_shard_and_restarted_writes_every_good_image_once(messy, tmp_path):
    import subprocess
    import sys

    reference = str(tmp_path / "reference")
    prepare_folder(messy, reference, size=16, images_per_shard=4, progress=False)
    out = str(tmp_path / "killed")
    script = tmp_path / "kill.py"
    script.write_text(KILL)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for mode in ("mid-shard", "after-rename"):
        proc = subprocess.run([sys.executable, str(script), mode, messy, out], capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == -9, (mode, proc.returncode, proc.stderr[-2000:])
        names = " ".join(sorted(os.listdir(out)))
        if mode == "mid-shard":  # the 2nd shard was being written: only its temporary file exists
            assert "train-00001-of-00006.tfrecord.tmp" in names and "train-00001-of-00006.tfrecord " not in names
        else:  # the 3rd shard this run wrote (shard 0 was done) is in place but has no completion record
            assert "train-00003-of-00006.tfrecord" in names and "train-00003-of-00006.json" not in names
    report = prepare_folder(messy, out, size=16, images_per_shard=4, progress=False)
    assert 0 < report.shards_written < report.shards_written + report.shards_skipped
    got, expected = _decoded_records(out), _decoded_records(reference)
    rows = _rows(os.path.join(out, "train.csv")) + _rows(os.path.join(out, "val.csv"))
    assert len(rows) == len({r["path"] for r in rows}) == len(expected) == 25  # each good image exactly once
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    for split in ("train", "val"):
        assert _rows(os.path.join(out, f"{split}.csv")) == _rows(os.path.join(reference, f"{split}.csv"))
