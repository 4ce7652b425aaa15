"""Real data sets for accuracy runs, loaded once for both frameworks (byte-identical arrays).

- ``cifar100``: the official python archive (cifar-100-python.tar.gz), or a folder already
  extracted from it. The archive is untrusted input: its md5 is checked, members are read in
  memory without extracting anything (an archive holding an absolute, ``..``, link or device
  member is refused as a whole), and the pickles are read by an unpickler that admits only plain
  containers and NumPy arrays. It is downloaded only when asked to.
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), offline, upsampled to 32x32x3.

Images are uint8 NHWC (N, 32, 32, 3) and labels int64 (N,); framework code transposes to NCHW
itself. No framework is imported here, so both get the same bytes from one loader.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

DATASETS = ("cifar100", "digits")

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
# An archive re-packed in the official format (a mirror's, or the tests' tiny one) is read only when the user names
# its md5 here; a download is always held to the official checksum.
CIFAR100_MD5_VARIABLE = "ALEXNET_BENCH_CIFAR100_MD5"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_CLASSES = 100
# Keras 3 caches the same archive as <cache>/cifar-100-python-target_archive and extracts it
# into <cache>/cifar-100-python-target/cifar-100-python/; Keras 2 and torchvision use the plain names.
CIFAR100_ARCHIVE_NAMES = (CIFAR100_ARCHIVE, "cifar-100-python-target_archive")
CIFAR100_FOLDER_NAMES = (CIFAR100_FOLDER, f"cifar-100-python-target/{CIFAR100_FOLDER}")
CIFAR100_SPLITS = ("train", "test", "meta")
DOWNLOAD_TIMEOUT_S = 60
DIGITS_TEST_FRACTION = 0.2
DIGITS_SOURCE = "sklearn.datasets.load_digits"


class DatasetError(Exception):
    """A data set that cannot be loaded; the one-line message says where it looked and what to do."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """One data set, split; images uint8 (N, 32, 32, 3), labels int64 (N,) in 0..classes-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    name: str
    source: str

    def __post_init__(self) -> None:
        """Checked once here, so every consumer can rely on the layout instead of re-checking it."""
        for split, images, labels in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
                raise DatasetError(
                    f"{self.name} {split} images are {images.dtype} {images.shape}, not uint8 (N, 32, 32, 3)"
                )
            if labels.dtype != np.int64 or labels.shape != (len(images),):
                raise DatasetError(
                    f"{self.name} {split} labels are {labels.dtype} {labels.shape}, not int64 ({len(images)},)"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= self.classes):
                raise DatasetError(f"{self.name} {split} labels fall outside 0..{self.classes - 1}")


def load_dataset(name: str, data_dir: Path | None = None, download: bool = False, seed: int = 0) -> Dataset:
    """The named data set; ``data_dir`` and ``download`` concern cifar100, ``seed`` the digits split."""
    if name == "cifar100":
        return load_cifar100(data_dir, download)
    if name == "digits":
        return load_digits(seed)
    raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


def normalize(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Pixels minus a per-channel mean, as float32 at the 0..255 scale: the paper's only preprocessing.

    ``mean`` should be the training set's (:func:`channel_mean`); it defaults to ``x``'s own, which is
    right for the training images only. Test images must be given the training mean.
    """
    mean = channel_mean(x) if mean is None else np.asarray(mean, dtype=np.float32)
    return x.astype(np.float32) - mean


def channel_mean(x: np.ndarray) -> np.ndarray:
    """The per-channel mean of NHWC images, summed in float64 so that the order of the sum hardly matters."""
    return x.reshape(-1, x.shape[-1]).mean(axis=0, dtype=np.float64).astype(np.float32)


# --- CIFAR-100: where it is ----------------------------------------------------------------------


def cifar100_search_dirs(data_dir: Path | None = None) -> list[Path]:
    """Where an archive may already be: ``data_dir``, the Keras cache, torchvision's usual roots."""
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    dirs = [Path(data_dir)] if data_dir is not None else []
    dirs += [keras_home / "datasets", Path.home() / ".cache" / "torchvision", Path("data").absolute()]
    return list(dict.fromkeys(dirs))


def find_cifar100(dirs: list[Path]) -> Path | None:
    """The first archive or extracted folder in ``dirs``; an archive wins in its folder, as it can be checked."""
    for directory in dirs:
        for name in CIFAR100_ARCHIVE_NAMES:
            if (directory / name).is_file():
                return directory / name
        for name in CIFAR100_FOLDER_NAMES:
            if (directory / name).is_dir():
                return directory / name
    return None


def load_cifar100(data_dir: Path | None = None, download: bool = False) -> Dataset:
    """CIFAR-100 with its 100 fine labels: 50,000 training and 10,000 test images."""
    dirs = cifar100_search_dirs(data_dir)
    found = find_cifar100(dirs)
    if found is None and download:
        found = download_cifar100(dirs[0])
    if found is None:
        looked = ", ".join(str(d) for d in dirs)
        raise DatasetError(
            f"CIFAR-100 not found: no {CIFAR100_ARCHIVE} or {CIFAR100_FOLDER}/ in {looked}; "
            f"pass --data-dir to where it is, or --download to fetch it from {CIFAR100_URL}"
        )
    raw = read_folder_members(found) if found.is_dir() else read_archive_members(found)
    return cifar100_from_members(raw, found)


def cifar100_from_members(raw: dict[str, bytes], origin: Path) -> Dataset:
    """Unpickles the three members (safely) and turns them into arrays."""
    train, test, meta = (restricted_loads(raw[split], origin, split) for split in CIFAR100_SPLITS)
    fine_names = _field(meta, b"fine_label_names", origin, "meta")
    if len(fine_names) != CIFAR100_CLASSES:
        raise DatasetError(f"{origin}: meta names {len(fine_names)} fine classes, expected {CIFAR100_CLASSES}")
    x_train, y_train = cifar_arrays(train, origin, "train")
    x_test, y_test = cifar_arrays(test, origin, "test")
    return Dataset(x_train, y_train, x_test, y_test, CIFAR100_CLASSES, "cifar100", str(origin))


# --- CIFAR-100: download ----------------------------------------------------------------------------


def download_cifar100(directory: Path) -> Path:
    """Fetches the archive into ``directory``: into a temporary file, renamed only once complete and
    its md5 right, so an interrupted or tampered download never sits where the loader looks."""
    target = directory / CIFAR100_ARCHIVE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, part_name = tempfile.mkstemp(dir=directory, prefix=f".{CIFAR100_ARCHIVE}.", suffix=".part")
    except OSError as error:
        raise DatasetError(
            f"cannot write the download into {directory} ({error}); pass a writable --data-dir"
        ) from None
    part = Path(part_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _fetch(CIFAR100_URL, out)
        if digest != CIFAR100_MD5:
            raise DatasetError(
                f"the download from {CIFAR100_URL} has md5 {digest}, expected {CIFAR100_MD5}; "
                f"nothing was kept, try again or put the archive into {directory} by hand"
            )
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target


def _fetch(url: str, out: BinaryIO) -> str:
    """Copies ``url`` into ``out``; the md5 of what was written, computed on the way."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except (OSError, http.client.HTTPException) as error:
        raise DatasetError(f"could not download {url}: {error}; check the network, or fetch it by hand") from None
    return digest.hexdigest()


# --- CIFAR-100: reading, safely ------------------------------------------------------------------------


def file_md5(path: Path) -> str:
    """The file's md5, the checksum the data set's authors publish (not used as a security primitive)."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise DatasetError(f"cannot read {path} ({error}); check its permissions or pass another --data-dir") from None
    return digest.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    """Refuses a file whose md5 differs: a corrupt download, or not the official archive."""
    actual = file_md5(path)
    if actual != expected:
        raise DatasetError(
            f"{path} has md5 {actual}, expected {expected}: the file is corrupt or not the official "
            "archive; delete it and download it again (--download)"
        )


def unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member could write outside the extraction folder or touch something else; None if safe."""
    parts = PurePosixPath(member.name).parts
    if member.name.startswith(("/", "\\")) or (parts and ":" in parts[0]):
        return "an absolute path"
    if ".." in parts or "\\" in member.name:
        return "a path that leaves its folder"
    if not (member.isfile() or member.isdir()):
        return "a link or special file"
    return None


def read_archive_members(archive: Path) -> dict[str, bytes]:
    """The train/test/meta pickles, read in memory after the md5 check; nothing is written to disk."""
    verify_md5(archive, os.environ.get(CIFAR100_MD5_VARIABLE) or CIFAR100_MD5)
    wanted = {f"{CIFAR100_FOLDER}/{split}": split for split in CIFAR100_SPLITS}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                reason = unsafe_member_reason(member)
                if reason:
                    raise DatasetError(f"{archive} holds {reason}, {member.name!r}; refusing the whole archive")
                if member.name in wanted and member.isfile():
                    found[wanted[member.name]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(
            f"{archive} is not a readable tar.gz archive ({error}); delete it and download it again"
        ) from None
    return _complete(found, archive)


def read_folder_members(folder: Path) -> dict[str, bytes]:
    """The train/test/meta pickles of an already-extracted folder (no checksum exists for these)."""
    try:
        found = {split: (folder / split).read_bytes() for split in CIFAR100_SPLITS if (folder / split).is_file()}
    except OSError as error:
        raise DatasetError(
            f"cannot read {folder} ({error}); check its permissions or pass another --data-dir"
        ) from None
    return _complete(found, folder)


def _complete(found: dict[str, bytes], origin: Path) -> dict[str, bytes]:
    missing = [split for split in CIFAR100_SPLITS if split not in found]
    if missing:
        raise DatasetError(
            f"{origin} lacks {', '.join(f'{CIFAR100_FOLDER}/{m}' for m in missing)}: "
            "not the CIFAR-100 python version; download it again (--download)"
        )
    return found


class RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and NumPy arrays only, because a pickle can otherwise call anything."""

    ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy._core.multiarray", "_reconstruct"),  # arrays, protocols 0-4
            ("numpy._core.multiarray", "scalar"),  # NumPy scalars
            ("numpy._core.numeric", "_frombuffer"),  # arrays, protocol 5
            ("builtins", "bytearray"),
            # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"): str to bytes.
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        """NumPy 1 names (numpy.core.*, the official archive's) read as NumPy 2's numpy._core.*."""
        canonical = "numpy._core" + module[len("numpy.core") :] if module.startswith("numpy.core.") else module
        if (canonical, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only containers and NumPy arrays are allowed")
        if not hasattr(np, "_core"):  # NumPy 1 has only numpy.core
            canonical = canonical.replace("numpy._core", "numpy.core", 1)
        return super().find_class(canonical, name)


def restricted_loads(data: bytes, origin: Path, member: str) -> Any:
    """Unpickles with byte strings kept as bytes, as the CIFAR pickles (written by Python 2) need."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise DatasetError(f"{origin}: {member} is an unsafe or corrupt pickle ({error}); refusing it") from None


def _field(batch: Any, key: bytes, origin: Path, member: str) -> Any:
    if not isinstance(batch, dict) or key not in batch:
        raise DatasetError(f"{origin}: {member} has no {key!r}: not the CIFAR-100 python format")
    return batch[key]


def cifar_arrays(batch: Any, origin: Path, member: str) -> tuple[np.ndarray, np.ndarray]:
    """b'data' rows are 1024 R, then 1024 G, then 1024 B values of a 32x32 image; to (N, 32, 32, 3)."""
    data = _field(batch, b"data", origin, member)
    labels = np.asarray(_field(batch, b"fine_labels", origin, member))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{origin}: {member} data is not an N x 3072 uint8 array: not the CIFAR-100 python format")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{origin}: {member} has {len(data)} images but fine labels of shape {labels.shape}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


# --- digits ----------------------------------------------------------------------------------------


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits as CIFAR-shaped images, offline.

    Values 0..16 are scaled to 0..255 (rounded), each pixel is repeated into a 4x4 block (nearest
    neighbour, 8x8 to 32x32) and the grey copied to three channels. The split is stratified: within
    each class, a ``numpy.random.default_rng(seed)`` permutation puts round(20%) of the images in
    the test set, so every seed gives 1,438 training and 359 test images, with every class in both.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DatasetError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    bunch = sklearn_digits()
    grey = upsample_nearest(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8), 4)
    images = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=3))
    labels = bunch.target.astype(np.int64)
    test = stratified_test_mask(labels, DIGITS_TEST_FRACTION, seed)
    return Dataset(images[~test], labels[~test], images[test], labels[test], 10, "digits", DIGITS_SOURCE)


def upsample_nearest(images: np.ndarray, factor: int) -> np.ndarray:
    """(N, H, W) to (N, H*factor, W*factor) by repeating pixels: exact and the same on every machine."""
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def stratified_test_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the test images: round(fraction) of each class, drawn by a seeded permutation."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[: round(len(members) * fraction)]] = True
    return test
