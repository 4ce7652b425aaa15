"""Data loading: CIFAR-100 from a small archive built here in the official format, and digits."""

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import datasets
from benchmarks.datasets import DatasetError, load_cifar100, load_dataset, load_digits


def cifar_batch(count: int, seed: int) -> dict:
    """A batch as the official pickles hold it: bytes keys, N x 3072 uint8 as R, G, B planes."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # image 0: R=10, G=20, B=30 everywhere
    data[0, 5] = 99  # R plane, row 0, column 5
    return {
        b"data": data,
        b"fine_labels": [int(v) for v in rng.integers(0, 100, count)],
        b"coarse_labels": [int(v) for v in rng.integers(0, 20, count)],
        b"filenames": [b"x.png"] * count,
    }


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def official_members(train: dict | None = None) -> dict[str, bytes]:
    return {
        "cifar-100-python/train": pickle.dumps(train or cifar_batch(6, 0), protocol=2),
        "cifar-100-python/test": pickle.dumps(cifar_batch(4, 1), protocol=2),
        "cifar-100-python/meta": pickle.dumps({b"fine_label_names": [b"apple"] * 100}, protocol=2),
    }


@pytest.fixture
def archive_dir(tmp_path, monkeypatch):
    """A folder with a good archive; the expected md5 is set to it, so the real check still runs."""
    path = write_archive(tmp_path / datasets.CIFAR100_ARCHIVE, official_members())
    monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-home"))
    return tmp_path


def test_cifar100_loads_planes_as_hwc_with_fine_labels(archive_dir):
    data = load_cifar100(archive_dir)
    assert data.x_train.shape == (6, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.classes == 100
    assert tuple(data.x_train[0, 1, 1]) == (10, 20, 30)
    assert tuple(data.x_train[0, 0, 5]) == (99, 20, 30)
    assert list(data.y_train) == cifar_batch(6, 0)[b"fine_labels"]


def test_a_wrong_checksum_is_refused(archive_dir, monkeypatch):
    monkeypatch.setattr(datasets, "CIFAR100_MD5", "0" * 32)
    with pytest.raises(DatasetError, match="expected 0{32}: the file is corrupt"):
        load_cifar100(archive_dir)


def test_a_path_traversal_member_is_refused(tmp_path, monkeypatch):
    path = write_archive(tmp_path / datasets.CIFAR100_ARCHIVE, {**official_members(), "../evil": b"x"})
    monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    with pytest.raises(DatasetError, match="unsafe path '../evil'"):
        load_cifar100(tmp_path)
    assert not (tmp_path.parent / "evil").exists()


class Malicious:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    members = official_members()
    members["cifar-100-python/train"] = pickle.dumps({b"data": Malicious(marker)}, protocol=2)
    path = write_archive(tmp_path / datasets.CIFAR100_ARCHIVE, members)
    monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    with pytest.raises(DatasetError, match="refusing (posix|os).system"):
        load_cifar100(tmp_path)
    assert not marker.exists()


def test_a_missing_archive_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    with pytest.raises(DatasetError) as raised:
        load_dataset("cifar100", tmp_path / "mine")
    message = str(raised.value)
    assert str(tmp_path / "mine") in message and str(tmp_path / "keras" / "datasets") in message
    assert "--data-dir" in message and "--download" in message


def test_download_writes_the_archive_then_loads_it(tmp_path, monkeypatch):
    payload = write_archive(tmp_path / "served.tar.gz", official_members()).read_bytes()
    monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    target = tmp_path / "downloads"
    data = load_cifar100(target, download=True)
    assert (target / datasets.CIFAR100_ARCHIVE).read_bytes() == payload
    assert data.x_train.shape == (6, 32, 32, 3)
    assert not list(target.glob("*.part"))


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(DatasetError, match="valid: cifar100, digits"):
        load_dataset("imagenet")


def test_digits_are_cifar_shaped_split_by_seed():
    data = load_digits(seed=0)
    assert data.x_train.shape[1:] == (32, 32, 3) and data.x_train.dtype == np.uint8
    assert len(data.x_train) + len(data.x_test) == 1797
    assert abs(len(data.x_test) - 0.2 * 1797) < 10 and data.classes == 10
    assert set(np.unique(data.y_test)) == set(range(10))  # stratified: every class in the test set
    assert data.x_train.max() == 255 and np.array_equal(data.x_train[..., 0], data.x_train[..., 2])
    again, other = load_digits(seed=0), load_digits(seed=1)
    assert np.array_equal(again.x_train, data.x_train) and np.array_equal(again.y_test, data.y_test)
    assert not np.array_equal(other.y_test, data.y_test)
