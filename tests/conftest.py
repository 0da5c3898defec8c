"""Shared test setup.

torch and torchvision must be imported before TensorFlow in one process (importing torchvision after TensorFlow
segfaults on this machine), so they are imported here first when the optional `torch` extra is installed.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # optional extra: only the parity tests need it
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import pytest  # noqa: E402

ASSETS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "assets")


@pytest.fixture(scope="session")
def assets_dir():
    """../shared/assets from the project root (the BVLC prototxts and the ImageNet class index)."""
    path = os.path.abspath(ASSETS)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"shared assets not found at {path}: CI checks the project out beside ../shared")
    return path
