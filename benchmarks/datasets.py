"""Real data sets for accuracy runs, loaded once for both frameworks (byte-identical arrays).

- ``cifar100``: the official python archive (cifar-100-python.tar.gz). The archive is untrusted
  input: its md5 is checked, members are read without extracting anything (and an archive with
  a path-traversal or link member is refused), and the pickles are read by an unpickler that
  admits only plain containers and NumPy arrays.
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), offline, upsampled to 32x32x3.

Images are uint8 NHWC (N, 32, 32, 3); labels int64. Framework code transposes as it needs.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_MEMBERS = {"train": "cifar-100-python/train", "test": "cifar-100-python/test"}
DATASETS = ("cifar100", "digits")


class DatasetError(Exception):
    """A data set that cannot be loaded; the message says where it looked and what to do."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str


def load_dataset(name: str, data_dir: Path | None = None, download: bool = False, seed: int = 0) -> Dataset:
    if name == "cifar100":
        return load_cifar100(data_dir, download)
    if name == "digits":
        return load_digits(seed)
    raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


# --- CIFAR-100 ---------------------------------------------------------------------------------


def cifar100_search_dirs(data_dir: Path | None) -> list[Path]:
    """Where an existing archive may be: --data-dir, the Keras cache, torchvision's usual roots."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    dirs = [data_dir] if data_dir else []
    dirs += [keras_home / "datasets", Path("data"), Path.home() / ".cache" / "torchvision", Path.home() / "data"]
    return [d for d in dirs if d is not None]


def load_cifar100(data_dir: Path | None = None, download: bool = False) -> Dataset:
    dirs = cifar100_search_dirs(data_dir)
    archive = next((d / CIFAR100_ARCHIVE for d in dirs if (d / CIFAR100_ARCHIVE).is_file()), None)
    if archive is None and download:
        archive = download_cifar100(dirs[0])
    if archive is None:
        looked = ", ".join(str(d) for d in dirs)
        raise DatasetError(
            f"{CIFAR100_ARCHIVE} not found (looked in {looked}); pass --data-dir to where it is, "
            f"or --download to fetch it from {CIFAR100_URL}"
        )
    verify_md5(archive, CIFAR100_MD5)
    parts = read_archive_members(archive, set(CIFAR100_MEMBERS.values()))
    train, test = (restricted_loads(parts[CIFAR100_MEMBERS[split]], archive) for split in ("train", "test"))
    x_train, y_train = _cifar_arrays(train, archive, "train")
    x_test, y_test = _cifar_arrays(test, archive, "test")
    return Dataset("cifar100", x_train, y_train, x_test, y_test, 100, str(archive))


def download_cifar100(directory: Path) -> Path:
    """Fetch the archive into ``directory`` through a temporary file, renamed only when complete."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CIFAR100_ARCHIVE
    try:
        with (
            urllib.request.urlopen(CIFAR100_URL, timeout=60) as response,
            tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".part") as part,
        ):
            shutil.copyfileobj(response, part)
    except OSError as error:
        raise DatasetError(
            f"could not download {CIFAR100_URL}: {error}; download it by hand into {directory}"
        ) from None
    os.replace(part.name, target)
    return target


def verify_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DatasetError(
            f"{path} has md5 {digest.hexdigest()}, expected {expected}: the file is corrupt or not the official "
            "archive; delete it and download it again"
        )


def read_archive_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of ``wanted`` members, read in memory; unsafe members make the archive refused."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise DatasetError(f"{archive} contains an unsafe path {member.name!r}; refusing to read it")
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(f"{archive} contains a link or special file {member.name!r}; refusing it")
                if member.name in wanted:
                    handle = tar.extractfile(member)
                    found[member.name] = handle.read() if handle else b""
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"{archive} is not a readable tar.gz archive: {error}") from None
    missing = wanted - set(found)
    if missing:
        raise DatasetError(f"{archive} lacks {', '.join(sorted(missing))}: not the CIFAR-100 python archive")
    return found


class RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and NumPy arrays only: a pickle can otherwise run any callable."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("builtins", "bytearray"),
        # Python 3 writes array bytes into protocol-2 pickles as _codecs.encode(text, "latin1"):
        # a pure conversion from str to bytes.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only containers and NumPy arrays are allowed")


def restricted_loads(data: bytes, origin: Path) -> dict:
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DatasetError(f"{origin}: unsafe or corrupt pickle ({error})") from None


def _cifar_arrays(batch: dict, origin: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """b'data' rows are 1024 R, 1024 G, 1024 B values of a 32x32 image; to (N, 32, 32, 3)."""
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"fine_labels"], dtype=np.int64)
    except (KeyError, TypeError) as error:
        raise DatasetError(f"{origin}: the {split} batch lacks {error}: not the CIFAR-100 python format") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DatasetError(f"{origin}: the {split} batch has data {data.shape} and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= 100):
        raise DatasetError(f"{origin}: the {split} batch has fine labels outside 0..99")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


# --- digits ------------------------------------------------------------------------------------


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 digits (values 0..16) scaled to 0..255, upsampled 4x by pixel repetition
    to 32x32, grey copied to three channels; a seeded 80/20 split stratified by class."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DatasetError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = images.repeat(4, axis=1).repeat(4, axis=2)
    images = np.repeat(images[..., None], 3, axis=3)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[: round(len(members) * test_fraction)]] = True
    return Dataset(
        "digits", images[~test], labels[~test], images[test], labels[test], 10, "sklearn.datasets.load_digits"
    )
