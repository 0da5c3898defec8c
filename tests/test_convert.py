"""`python -m kgooglenet convert`: conversion and parity commands, exit codes and error messages."""

import os
import subprocess
import sys

import pytest

import weights_helpers
from kgooglenet.weights import caffe, cli, parity


@pytest.fixture(scope="module")
def caffe_files(assets_dir, tmp_path_factory):
    folder = os.path.join(assets_dir, "bvlc_googlenet")
    deploy, train_val = os.path.join(folder, "deploy.prototxt"), os.path.join(folder, "train_val.prototxt")
    net = caffe.aux_deploy_net(caffe.read_prototxt(deploy), caffe.read_prototxt(train_val))
    path = tmp_path_factory.mktemp("cli") / "random.caffemodel"
    weights_helpers.write_caffemodel(net, weights_helpers.random_blobs(net, seed=2), path, legacy=True)
    return {"deploy": deploy, "train_val": train_val, "caffemodel": str(path)}


def test_caffe_convert_then_parity_commands(caffe_files, tmp_path, capsys):
    import cv2  # noqa: F401  (the extra: a broken install fails, never skips)
    out = str(tmp_path / "g.weights.h5")
    code = cli.main(
        ["caffe", "--caffemodel", caffe_files["caffemodel"], "--prototxt", caffe_files["deploy"], "--out", out]
    )
    printed = capsys.readouterr().out
    assert code == 0 and os.path.isfile(out) and os.path.isfile(str(tmp_path / "g.weights.json"))
    assert "variant='paper' preprocessing='caffe' aux_heads=True" in printed
    code = cli.main(
        ["parity", "caffe", "--weights", out, "--caffemodel", caffe_files["caffemodel"],
         "--prototxt", caffe_files["deploy"], "--train-val", caffe_files["train_val"]]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = {line.split()[0]: line for line in printed.splitlines() if line.strip()}
    pairs = {"lrn1": "pool1/norm1", "inception_4d": "inception_4d/output", "aux2_head": "loss2/classifier"}
    for keras_name, caffe_name in pairs.items():
        assert caffe_name in lines[keras_name]
    assert lines["classifier"].rstrip().endswith("same")
    assert "(tolerance 0.0001): OK" in printed


def test_torchvision_parity_command_runs_torch_in_a_subprocess(tmp_path, capsys, monkeypatch):
    import torch  # the extra: a broken install fails, never skips
    import torchvision  # the extra: a broken install fails, never skips
    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.normal_(0.0, 0.1)
    checkpoint, out = str(tmp_path / "tv.pth"), str(tmp_path / "tv.weights.h5")
    torch.save(net.state_dict(), checkpoint)
    assert cli.main(["torchvision", "--checkpoint", checkpoint, "--out", out]) == 0
    # what a `python -m kgooglenet convert` process does, where TensorFlow is imported before torchvision
    monkeypatch.setattr(parity, "_torchvision_usable_here", lambda: False)
    code = cli.main(["parity", "torchvision", "--weights", out, "--checkpoint", checkpoint, "--size", "160", "200"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "aux1_head        aux1" in printed and "(tolerance 0.0001): OK" in printed


def test_errors_exit_2_and_name_the_file(tmp_path, capsys):
    missing = str(tmp_path / "nope.caffemodel")
    assert cli.main(["caffe", "--caffemodel", missing, "--out", str(tmp_path / "w.weights.h5")]) == 2
    assert f"caffemodel: no file at {missing!r}" in capsys.readouterr().err
    assert cli.main(["caffe", "--caffemodel", missing]) == 2
    assert "give --out" in capsys.readouterr().err
    existing = tmp_path / "some.pth"
    existing.write_bytes(b"PK")
    assert cli.main(["torchvision", "--checkpoint", str(existing), "--out", str(tmp_path / "w.h5")]) == 2
    assert "`out` must end in '.weights.h5'" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    missing = str(tmp_path / "absent.pth")
    proc = subprocess.run(
        [sys.executable, "-m", "kgooglenet", "convert", "torchvision", "--checkpoint", missing, "--out",
         str(tmp_path / "w.weights.h5")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"checkpoint: no file at {missing!r}" in proc.stderr
