"""The torch-free checkpoint reader: bit-identical to torch.load(weights_only=True) on state dicts in both of torch's
formats (zip and legacy), refusing planted code and other architectures, and converting without torch."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch  # the torch extra is the reference here: CI installs it
import torchvision

from kgooglenet.weights import torch_reader
from kgooglenet.weights import torchvision as tv_weights


@functools.lru_cache(maxsize=1)
def _state_dicts():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    with_aux = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    without_aux = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).state_dict()
    return {
        "float32": {"w": torch.randn(3, 4, 5, generator=g), "b": torch.randn(7, generator=g), "s": torch.tensor(2.5)},
        "float16": {"w": torch.randn(4, 3, generator=g).half(), "counter": torch.tensor(7, dtype=torch.int64)},
        "non_contiguous": {  # views of one storage: a transpose, a slice with an offset, a strided column
            "t": base.t(),
            "slice": base[2:5, 1:],
            "column": base[:, 3],
            "same_storage": base,
            "empty": torch.zeros(0, 3),
        },
        "googlenet_with_aux": with_aux,
        "googlenet_without_aux": without_aux,
    }


def _assert_identical(ours: dict, theirs: dict):
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        expected = tensor.numpy()
        got = ours[key]
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), key


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("name", list(_state_dicts()))
def test_same_tensors_as_torch_load(name, legacy, tmp_path):
    state = _state_dicts()[name]
    path = tmp_path / f"{name}.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    _assert_identical(torch_reader.load(path), torch.load(path, weights_only=True))


def test_aux_heads_present_and_absent_through_the_converter(tmp_path):
    for aux in (True, False):
        path = tmp_path / f"aux_{aux}.pth"
        torch.save(torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=False).state_dict(), path)
        state = tv_weights.load_state_dict(path)
        assert tv_weights.check_state_dict(state, str(path)) is aux
        assert any(k.startswith("aux1.") for k in state) is aux


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_planted_os_system_reduce_is_refused_and_never_runs(legacy, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Planted(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(torch_reader.UnsafeCheckpointError, match=r"evil.pth' contains pickled Python objects.*"
                       r"global (posix|os)\.system"):  # fmt: skip
        torch_reader.load(path)
    with pytest.raises(ValueError, match="evil.pth' contains pickled Python objects"):
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")
    assert not marker.exists()


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "inception_v3.pth"
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), path)
    with pytest.raises(ValueError, match=r"inception_v3.pth' is not a torchvision GoogLeNet state dict \(it looks "
                       r"like Inception v3\)"):  # fmt: skip
        tv_weights.convert_torchvision(path, tmp_path / "w.weights.h5")


def test_conversion_needs_no_torch(tmp_path):
    path = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"  # any import of torch or torchvision fails, as uninstalled
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from kgooglenet.weights.torchvision import convert_torchvision\n"
        f"r = convert_torchvision({str(path)!r}, {str(tmp_path / 'w.weights.h5')!r})\n"
        "print(r.metadata['aux_heads'], 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["True", "False"]
