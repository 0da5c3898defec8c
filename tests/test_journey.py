"""The user's journey, as the README's "Typical workflow" writes it, one command after another in fresh processes:
prepare -> train_folder -> tune -> train the winner -> evaluate -> export -> serve. Only the first training command
gets model flags; every later command gets a directory or a file, nothing else."""

import csv
import json
import os
import subprocess
import sys
import textwrap

from data_helpers import make_image_folder

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def run(cwd, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def recipe(name):
    return os.path.join(ROOT, "recipes", f"{name}.py")


def test_prepare_train_tune_train_the_winner_evaluate_export_serve(tmp_path):
    images = make_image_folder(tmp_path / "images", classes=3, per_class=14, size=(44, 52))
    (tmp_path / "images" / "cls_b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    classes = ["cls_a", "cls_b", "cls_c"]

    out = run(tmp_path, "-m", "kgooglenet", "prepare", "images", "prepared", "--val-split", "0.25", "--size", "40",
              "--center-crop")
    assert "broken.jpg" in open(tmp_path / "prepared" / "skipped.csv").read(), out

    run(tmp_path, recipe("train_folder"), "images", "--prepared", "prepared", "--out-dir", "runs/base",
        "--image-size", "32", "--width", "0.125", "--epochs", "2", "--batch-size", "8", "--verbose", "0")
    base_config = (tmp_path / "runs" / "base" / "config.json").read_bytes()

    out = run(tmp_path, recipe("tune"), "--config", "runs/base/config.json", "--max-trials", "2",
              "--directory", "tuning")
    best_config = tmp_path / "tuning" / "googlenet" / "best_config.json"
    winner_dir = json.loads(best_config.read_text())["out_dir"]
    assert os.path.abspath(os.path.join(tmp_path, winner_dir)) != str(tmp_path / "runs" / "base"), out

    out = run(tmp_path, recipe("train"), "--config", str(best_config))
    winner = os.path.join(tmp_path, winner_dir)
    history = open(os.path.join(winner, "history.csv")).read().splitlines()
    assert len(history) == 1 + 2, history  # the winner trained its own 2 epochs in its own directory
    assert (tmp_path / "runs" / "base" / "config.json").read_bytes() == base_config  # the base run untouched

    run(tmp_path, recipe("evaluate"), "--model", winner, "--crops", "1", "--out-dir", "evaluation")
    rows = [(json.load(open(os.path.join(d, "metrics.json"))),
             list(csv.DictReader(open(os.path.join(d, "per_class.csv")))))
            for d, _, files in os.walk(tmp_path / "evaluation") if "metrics.json" in files]
    assert rows, "evaluate wrote no metrics.json"
    metrics, per_class = rows[0]
    assert [r["class_name"] for r in per_class] == classes  # the folder's classes, not digits
    assert metrics["num_examples"] == sum(int(r["images"]) for r in per_class) > 0
    assert metrics["top_k"] < 3  # no top-5 for 3 classes

    run(tmp_path, recipe("export_savedmodel"), "--model", winner, "--export-dir", "saved_models", "--no-extras")
    name = os.path.basename(winner)
    meta = json.load(open(tmp_path / "saved_models" / name / "1" / "kgooglenet_export.json"))
    assert meta["class_names"] == classes and meta["image_size"] == 32

    # A serving process with only TensorFlow: kgooglenet cannot even be imported there.
    photo = os.path.join(images, "cls_c", "img000.jpg")
    serve = textwrap.dedent(f"""
        import sys
        sys.modules["kgooglenet"] = None
        import tensorflow as tf
        sm = tf.saved_model.load({str(tmp_path / "saved_models" / name / "1")!r})
        out = sm.signatures["serving_bytes"](image_bytes=tf.constant([open({photo!r}, "rb").read()]))
        p = out["probabilities"].numpy()
        print(p.shape, round(float(p.sum()), 4), [n.decode() for n in out["top_k_names"].numpy()[0]])
    """)
    printed = run(tmp_path, "-c", serve).strip().splitlines()[-1]
    assert printed.startswith("(1, 3) 1.0 ["), printed
    assert sorted(eval(printed[printed.index("["):])) == classes
