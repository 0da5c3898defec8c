"""kgooglenet.data.prepare: the image-folder preparer and reading its shards."""

import csv
import json
import os

import numpy as np
import pytest
from data_helpers import SPECIAL, add_special_files, make_image_folder

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
    with pytest.raises(FileNotFoundError, match="kgooglenet.prepare"):
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
    proc = subprocess.run([sys.executable, "-m", "kgooglenet.prepare", src, str(out), "--size", "16", "--center-crop",
                           "--val-split", "0.34", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 classes, 4 train / 2 val images" in proc.stdout
    assert len(_rows(out / "train.csv")) == 4 and (out / "rgb_stats.json").exists()
