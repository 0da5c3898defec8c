"""Self-describing model files: a Keras `.keras` file that also carries what the model was trained on.

A trained GoogLeNet is only useful with its class names and its input size. `save_model(model, path, info)` writes
the model as Keras' own `.keras` zip and adds one more entry, `kgooglenet.json` (a `ModelInfo`: class names, trained
input size, variant, width, aux heads, preprocessing and where it came from), so a single file restores everything.
Keras ignores the extra entry: `keras.saving.load_model(path)` still loads the file (after `import kgooglenet`,
which registers the layers). The write is atomic (a temporary file in the same directory, fsynced, then renamed), so
a kill never leaves a half-written model behind.

A training run keeps its model in `RUN_DIR/model.keras` (`RUN_MODEL_FILE`); every later tool takes that directory
or the file itself:

>>> model = load_model("runs/digits")              # doctest: +SKIP
>>> model_info("runs/digits").class_names          # doctest: +SKIP
('0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import tempfile
import zipfile

import keras

RUN_MODEL_FILE = "model.keras"  # the self-describing model a training run keeps in its directory
INFO_ENTRY = "kgooglenet.json"  # the extra entry of the .keras zip
INFO_FORMAT = 1  # version of the entry's JSON layout


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model file says about the model it holds (beyond its architecture and weights)."""

    class_names: tuple[str, ...]  # class names by class id (len == number of classes)
    image_size: int | None  # the square input size it was trained at (None: any size)
    variant: str  # GoogLeNet variant: "paper", "bn" or "cifar"
    width: float  # channel multiplier
    aux_heads: bool  # the file holds the two aux heads too (outputs {"main", "aux1", "aux2"})
    preprocessing: str | None  # the input normalization inside the model (a kgooglenet.specs.PREPROCESSING key)
    provenance: dict = dataclasses.field(default_factory=dict)  # where it came from: run dir, epoch, monitor/value, initial weights

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {"format": INFO_FORMAT, **dataclasses.asdict(self), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, values: dict, where: str = "model file") -> "ModelInfo":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(values) - {"provenance"})
        if missing:
            raise ValueError(f"{where}: {INFO_ENTRY} lacks {missing}; it was not written by kgooglenet.save_model")
        return cls(**{k: (tuple(str(n) for n in v) if k == "class_names" else v)
                      for k, v in values.items() if k in names})


def atomic_write(path: str, write) -> str:
    """Call `write(tmp_path)`, fsync the result and rename it to `path` (same directory, so the rename is atomic):
    readers see the old file or the new one, never a half-written one. Returns `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    # Keras picks the format from the suffix ("x.weights.h5", "x.keras"), so the temporary name keeps it.
    suffix = ".weights.h5" if path.endswith(".weights.h5") else ext
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(base)}.*.tmp{suffix}")):
        os.remove(stale)  # left by a writer killed before its rename (one writer per target)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600: give the file the mode open() would
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
    return path


def save_model(model, path, info: ModelInfo) -> str:
    """Write `model` (uncompiled: no optimizer state) to the `.keras` file `path` with `info` inside, atomically."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"save_model: the path must end in '.keras', received path={path!r}")
    if not isinstance(info, ModelInfo):
        raise ValueError(f"save_model: info must be a kgooglenet.saving.ModelInfo, received {type(info).__name__}")
    plain = keras.Model(model.input, model.output, name=model.name)  # same layers, no optimizer or train step

    def write(tmp):
        plain.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(INFO_ENTRY, json.dumps(info.to_dict(), indent=1))

    return atomic_write(path, write)


def model_path(path) -> str:
    """The `.keras` file of `path`: the file itself, or `path/model.keras` for a run directory."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path):
        candidate = os.path.join(path, RUN_MODEL_FILE)
        if not os.path.isfile(candidate):
            raise FileNotFoundError(
                f"{path!r} is a directory without {RUN_MODEL_FILE}: a training run writes it when it finishes "
                f"(rerun the same training command to finish an interrupted run), or pass a .keras file")
        return candidate
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model at {path!r}: pass a run directory (holding {RUN_MODEL_FILE}) or a .keras file")
    if not path.endswith(".keras"):
        raise ValueError(f"{path!r} is not a .keras model file: pass a run directory or a .keras file")
    return path


def model_info(path) -> ModelInfo:
    """The `ModelInfo` inside the model file of `path` (a run directory or a `.keras` file)."""
    file = model_path(path)
    try:
        with zipfile.ZipFile(file) as z:
            if INFO_ENTRY not in z.namelist():
                raise ValueError(
                    f"{file!r} is a Keras model without kgooglenet's {INFO_ENTRY} (class names, input size): "
                    f"write it with kgooglenet.saving.save_model, or load it with keras.saving.load_model")
            values = json.loads(z.read(INFO_ENTRY))
    except zipfile.BadZipFile as e:
        raise ValueError(f"{file!r} is damaged (not a readable .keras zip): {e}") from e
    return ModelInfo.from_dict(values, where=file)


def load_model(path, compile: bool = False):
    """The Keras model in `path` (a run directory or a `.keras` file); its `model_info(path)` says the rest."""
    import kgooglenet.layers  # noqa: F401  (registers the layers the file names)

    file = model_path(path)
    try:
        return keras.saving.load_model(file, compile=compile)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{file!r} is damaged and cannot be loaded: {e}") from e
