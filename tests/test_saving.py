"""kgooglenet.saving: self-describing .keras files and atomic writes."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from kgooglenet import GoogLeNet
from kgooglenet.saving import RUN_MODEL_FILE, ModelInfo, atomic_write, load_model, model_info, save_model


def _info(**kw):
    values = dict(class_names=("cat", "dog", "owl"), image_size=32, variant="cifar", width=0.125, aux_heads=True,
                  preprocessing="imagenet", provenance={"run_dir": "runs/x", "epoch": 2})
    values.update(kw)
    return ModelInfo(**values)


def test_round_trip_through_a_run_directory(tmp_path):
    model = GoogLeNet("cifar", num_classes=3, width=0.125, aux_heads=True, input_shape=(32, 32, 3))
    path = save_model(model, tmp_path / RUN_MODEL_FILE, _info())
    assert path == str(tmp_path / RUN_MODEL_FILE)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    loaded = load_model(tmp_path)  # the run directory
    expected, got = model(x, training=False), loaded(x, training=False)
    np.testing.assert_allclose(got["main"], expected["main"], atol=1e-6)
    info = model_info(tmp_path)
    assert info == _info() and info.num_classes == 3
    assert not [f for f in os.listdir(tmp_path) if f != RUN_MODEL_FILE]  # no temporary file left behind


def test_the_file_loads_with_keras_alone_in_a_fresh_process(tmp_path):
    model = GoogLeNet("cifar", num_classes=3, width=0.125, input_shape=(32, 32, 3))
    path = save_model(model, tmp_path / "m.keras", _info(aux_heads=False))
    code = ("import kgooglenet, keras, numpy as np; m = keras.saving.load_model(%r); "
            "print(m(np.zeros((1, 32, 32, 3), 'float32')).shape)" % path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(1, 3)")


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="without model.keras"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model at"):
        model_info(tmp_path / "missing.keras")
    plain = tmp_path / "plain.keras"
    GoogLeNet("cifar", num_classes=3, width=0.125, input_shape=(32, 32, 3)).save(plain)
    with pytest.raises(ValueError, match="without kgooglenet's kgooglenet.json"):
        model_info(plain)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(plain.read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged"):
        model_info(broken)
    with pytest.raises(ValueError, match="must end in '.keras'"):
        save_model(GoogLeNet("cifar", num_classes=3, width=0.125), tmp_path / "m.h5", _info())


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]
    (tmp_path / ".state.123.tmp.json").write_text("left by a killed writer")
    atomic_write(target, lambda tmp: open(tmp, "w").write("new"))
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["state.json"]
    assert zipfile.is_zipfile(save_model(GoogLeNet("cifar", num_classes=3, width=0.125, input_shape=(32, 32, 3)),
                                         tmp_path / "m.keras", _info(aux_heads=False)))
