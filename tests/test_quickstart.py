"""The README's main command, at reduced size: recipes/quickstart.py trains the cifar variant on the embedded digits,
evaluates the best checkpoint, writes the plots and a SavedModel, and says where everything is.

Full size (8 epochs, width 0.25) reaches 0.98-0.99; here 3 epochs at width 0.125 reached 0.944 in mixed_bfloat16
and 0.891 in float32 (precision "auto" on a CPU without native bfloat16), asserted >= 0.85 (chance: 0.10)."""

import importlib.util
import os

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_reaches_its_accuracy_and_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("recipes_quickstart", os.path.join(ROOT, "recipes", "quickstart.py"))
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    out = quickstart.main(["--epochs", "3", "--width", "0.125", "--verbose", "0"])
    printed = capsys.readouterr().out
    assert out["accuracy"] >= 0.85, out["accuracy"]
    result = out["result"]
    assert result.epochs_run == 3 and result.best_metric >= 0.85
    assert sorted(os.path.basename(p) for p in result.plots.values()) == ["accuracy.png", "learning_rate.png",
                                                                          "loss.png"]
    assert os.path.isfile("runs/quickstart/checkpoints/best.weights.h5")
    # the SavedModel under saved_models/<name>/<version>/ serves float32 probabilities that agree with the model
    assert out["saved_model"] == os.path.join("saved_models", "googlenet_digits", "1")
    loaded = tf.saved_model.load(out["saved_model"])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    probs = loaded.signatures["serving_default"](image=tf.constant(x))["probabilities"].numpy()
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-3)
    for where in ("runs/quickstart/checkpoints/best.weights.h5", "runs/quickstart/plots/accuracy.png",
                  "saved_models/googlenet_digits/1", "validation accuracy of the best checkpoint"):
        assert where in printed
