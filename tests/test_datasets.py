"""Data loading: CIFAR-100 from tiny archives built here in the official format, and digits; no network."""

import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy import datasets
from benchmarks.accuracy.datasets import (
    Dataset,
    DatasetError,
    channel_mean,
    load_cifar100,
    load_dataset,
    load_digits,
    normalize,
)

ROOT = Path(__file__).resolve().parents[1]
TRAIN_COUNT, TEST_COUNT = 6, 4


# --- building archives in the official format ------------------------------------------------------


def cifar_batch(count: int, seed: int) -> dict:
    """A batch as the official pickles hold it: bytes keys, N x 3072 uint8 as R, G, B planes of 32x32."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # image 0: R=10, G=20, B=30 everywhere
    data[0, 5] = 99  # R plane, row 0, column 5
    data[0, 1024 + 2 * 32 + 7] = 77  # G plane, row 2, column 7
    data[0, 2048 + 31 * 32 + 31] = 55  # B plane, last row, last column
    return {
        b"data": data,
        b"fine_labels": [int(v) for v in rng.integers(0, 100, count)],
        b"coarse_labels": [int(v) for v in rng.integers(0, 20, count)],
        b"filenames": [b"x.png"] * count,
        b"batch_label": b"training batch 1 of 1",
    }


def official_members(protocol: int = 2) -> dict[str, bytes]:
    meta = {b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fruit"] * 20}
    return {
        "cifar-100-python/": b"",  # the folder entry, as tar writes it
        "cifar-100-python/train": pickle.dumps(cifar_batch(TRAIN_COUNT, 0), protocol=protocol),
        "cifar-100-python/test": pickle.dumps(cifar_batch(TEST_COUNT, 1), protocol=protocol),
        "cifar-100-python/meta": pickle.dumps(meta, protocol=protocol),
    }


def write_archive(path: Path, members: dict[str, bytes], extra: tuple[tarfile.TarInfo, ...] = ()) -> Path:
    """A real tar.gz; names ending in '/' become folders, ``extra`` members go in as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for info in extra:
            tar.addfile(info)
    return path


def write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    """An already-extracted ``cifar-100-python/`` folder."""
    folder.mkdir(parents=True)
    for name, payload in members.items():
        if not name.endswith("/"):
            (folder / name.split("/", 1)[1]).write_bytes(payload)
    return folder


@pytest.fixture(autouse=True)
def no_real_caches(tmp_path, monkeypatch):
    """Every place the loader looks is inside tmp_path, so this machine's caches never leak in."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


@pytest.fixture
def trust(monkeypatch):
    """Makes the expected md5 that of a given archive, so the real checksum check still runs."""

    def trust_archive(path: Path) -> Path:
        monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(path.read_bytes()).hexdigest())
        return path

    return trust_archive


@pytest.fixture
def archive_dir(tmp_path, trust) -> Path:
    trust(write_archive(tmp_path / "mine" / datasets.CIFAR100_ARCHIVE, official_members()))
    return tmp_path / "mine"


# --- CIFAR-100: the happy paths ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar100_reads_rgb_planes_as_hwc_with_fine_labels(tmp_path, trust, protocol):
    archive = trust(write_archive(tmp_path / datasets.CIFAR100_ARCHIVE, official_members(protocol)))
    data = load_dataset("cifar100", tmp_path)
    assert data.x_train.shape == (TRAIN_COUNT, 32, 32, 3) and data.x_test.shape == (TEST_COUNT, 32, 32, 3)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert (data.classes, data.name, data.source) == (100, "cifar100", str(archive))
    assert tuple(data.x_train[0, 1, 1]) == (10, 20, 30)
    assert tuple(data.x_train[0, 0, 5]) == (99, 20, 30)
    assert tuple(data.x_train[0, 2, 7]) == (10, 77, 30)
    assert tuple(data.x_train[0, 31, 31]) == (10, 20, 55)
    flat = cifar_batch(TRAIN_COUNT, 0)[b"data"]
    n, h, w, c = np.indices(data.x_train.shape).reshape(4, -1)
    assert np.array_equal(data.x_train[n, h, w, c], flat[n, c * 1024 + h * 32 + w])  # every pixel
    assert list(data.y_train) == cifar_batch(TRAIN_COUNT, 0)[b"fine_labels"]
    assert list(data.y_test) == cifar_batch(TEST_COUNT, 1)[b"fine_labels"]


def test_numpy1_pickles_like_the_official_archive_read_without_warnings(tmp_path, trust):
    """The official pickles name numpy.core.multiarray; NumPy 2 must read them, and quietly."""
    members = official_members(protocol=2)
    for name in ("cifar-100-python/train", "cifar-100-python/test"):
        members[name] = members[name].replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct" in members[name]
    trust(write_archive(tmp_path / datasets.CIFAR100_ARCHIVE, members))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_cifar100(tmp_path)
    assert tuple(data.x_train[0, 0, 5]) == (99, 20, 30)


@pytest.mark.parametrize(
    "place",
    [
        "keras/datasets/cifar-100-python.tar.gz",  # Keras 2, KERAS_HOME honoured
        "keras/datasets/cifar-100-python-target_archive",  # Keras 3's name for the same archive
        "home/.cache/torchvision/cifar-100-python.tar.gz",
        "cwd/data/cifar-100-python.tar.gz",  # torchvision's usual root=./data
    ],
)
def test_an_archive_is_found_in_the_framework_caches(tmp_path, trust, place):
    archive = trust(write_archive(tmp_path / place, official_members()))
    data = load_dataset("cifar100")
    assert data.source == str(archive) and data.x_test.shape == (TEST_COUNT, 32, 32, 3)


@pytest.mark.parametrize("place", ["mine/cifar-100-python", "keras/datasets/cifar-100-python-target/cifar-100-python"])
def test_an_extracted_folder_is_read(tmp_path, place):
    folder = write_folder(tmp_path / place, official_members())
    data = load_cifar100(tmp_path / "mine")
    assert data.source == str(folder)
    assert tuple(data.x_train[0, 0, 5]) == (99, 20, 30)
    assert list(data.y_test) == cifar_batch(TEST_COUNT, 1)[b"fine_labels"]


def test_the_data_dir_is_looked_in_first(tmp_path, archive_dir):
    write_folder(tmp_path / "keras" / "datasets" / "cifar-100-python", official_members())
    assert load_cifar100(archive_dir).source == str(archive_dir / datasets.CIFAR100_ARCHIVE)


# --- CIFAR-100: untrusted archives -------------------------------------------------------------------------


def test_a_wrong_checksum_is_refused_naming_the_file_and_both_checksums(archive_dir, monkeypatch):
    archive = archive_dir / datasets.CIFAR100_ARCHIVE
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(datasets, "CIFAR100_MD5", "0" * 32)
    with pytest.raises(DatasetError) as raised:
        load_cifar100(archive_dir)
    assert f"{archive} has md5 {actual}, expected {'0' * 32}" in str(raised.value)


def test_the_real_checksum_is_the_official_one():
    assert datasets.CIFAR100_MD5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert datasets.CIFAR100_URL == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


def special_member(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("members", "extra", "reason"),
    [
        ({"../evil": b"x"}, (), "a path that leaves its folder, '../evil'"),
        ({"cifar-100-python/../../evil": b"x"}, (), "a path that leaves its folder"),
        ({"/abs-evil": b"x"}, (), "an absolute path, '/abs-evil'"),
        ({}, (special_member("cifar-100-python/link", tarfile.SYMTYPE, "/etc/passwd"),), "a link or special file"),
        ({}, (special_member("cifar-100-python/hard", tarfile.LNKTYPE, "/etc/passwd"),), "a link or special file"),
        ({}, (special_member("cifar-100-python/dev", tarfile.CHRTYPE),), "a link or special file"),
        ({}, (special_member("cifar-100-python/fifo", tarfile.FIFOTYPE),), "a link or special file"),
    ],
)
def test_an_archive_with_an_unsafe_member_is_refused(tmp_path, trust, members, extra, reason):
    archive = trust(write_archive(tmp_path / "d" / datasets.CIFAR100_ARCHIVE, {**official_members(), **members}, extra))
    with pytest.raises(DatasetError, match="refusing the whole archive") as raised:
        load_cifar100(archive.parent)
    assert reason in str(raised.value)
    assert not (tmp_path / "evil").exists() and not Path("/abs-evil").exists()


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


class RunsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


@pytest.mark.parametrize(
    ("payload", "refused"), [(RunsShell, r"(posix|os|nt)\.system"), (RunsEval, r"(__builtin__|builtins)\.eval")]
)
@pytest.mark.parametrize("container", ["archive", "folder"])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, trust, payload, refused, container):
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(payload(live)))  # the payload is real: a plain unpickler runs it
    assert live.exists()
    marker = tmp_path / "pwned"
    members = official_members()
    members["cifar-100-python/train"] = pickle.dumps({b"data": payload(marker), b"fine_labels": []}, protocol=2)
    if container == "archive":
        trust(write_archive(tmp_path / "d" / datasets.CIFAR100_ARCHIVE, members))
    else:
        write_folder(tmp_path / "d" / "cifar-100-python", members)
    with pytest.raises(DatasetError, match=f"train is an unsafe or corrupt pickle \\(refusing {refused}"):
        load_cifar100(tmp_path / "d")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("cifar-100-python/meta"), "lacks cifar-100-python/meta"),
        (
            lambda m: m.update({"cifar-100-python/test": m["cifar-100-python/test"][:50]}),
            "test is an unsafe or corrupt",
        ),
        (lambda m: m.update({"cifar-100-python/test": pickle.dumps([1, 2])}), r"test has no b'data'"),
        (
            lambda m: m.update(
                {
                    "cifar-100-python/train": pickle.dumps(
                        {b"data": np.zeros((2, 3000), np.uint8), b"fine_labels": [1, 2]}
                    )
                }
            ),
            "train data is not an N x 3072 uint8 array",
        ),
        (
            lambda m: m.update(
                {"cifar-100-python/train": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [1]})}
            ),
            "train has 2 images but fine labels of shape",
        ),
        (lambda m: m.update({"cifar-100-python/meta": pickle.dumps({b"fine_label_names": [b"a"] * 20})}), "20 fine"),
    ],
)
def test_an_archive_not_in_the_official_format_is_refused(tmp_path, trust, change, message):
    members = official_members()
    change(members)
    trust(write_archive(tmp_path / datasets.CIFAR100_ARCHIVE, members))
    with pytest.raises(DatasetError, match=message):
        load_cifar100(tmp_path)


def test_a_file_that_is_not_a_tar_gz_is_refused(tmp_path, trust):
    archive = tmp_path / datasets.CIFAR100_ARCHIVE
    archive.write_bytes(b"not gzip at all")
    trust(archive)
    with pytest.raises(DatasetError, match="is not a readable tar.gz archive"):
        load_cifar100(tmp_path)


def test_a_missing_dataset_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.urllib.request, "urlopen", pytest.fail)  # no download unless asked
    with pytest.raises(DatasetError) as raised:
        load_dataset("cifar100", tmp_path / "mine")
    message = str(raised.value)
    for place in (
        tmp_path / "mine",
        tmp_path / "keras" / "datasets",
        tmp_path / "home" / ".cache" / "torchvision",
        tmp_path / "cwd" / "data",
    ):
        assert str(place) in message
    assert "--data-dir" in message and "--download" in message and "\n" not in message


def test_an_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; valid: cifar100, digits"):
        load_dataset("imagenet")


# --- CIFAR-100: download ---------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path, monkeypatch):
    """urllib's opener replaced by one that serves bytes from here; returns (payload holder, URLs asked for)."""
    served = {"payload": write_archive(tmp_path / "served.tar.gz", official_members()).read_bytes(), "urls": []}

    def urlopen(url, timeout):
        served["urls"].append(url)
        return io.BytesIO(served["payload"])

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    return served


def test_download_fetches_into_the_keras_cache_then_reuses_it(tmp_path, monkeypatch, served):
    monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(served["payload"]).hexdigest())
    data = load_dataset("cifar100", download=True)
    cache = tmp_path / "keras" / "datasets"
    assert served["urls"] == [datasets.CIFAR100_URL]
    assert (cache / datasets.CIFAR100_ARCHIVE).read_bytes() == served["payload"]
    assert sorted(p.name for p in cache.iterdir()) == [datasets.CIFAR100_ARCHIVE]  # no temporary file left
    assert data.source == str(cache / datasets.CIFAR100_ARCHIVE) and data.x_train.shape == (TRAIN_COUNT, 32, 32, 3)
    load_dataset("cifar100", download=True)
    assert len(served["urls"]) == 1  # found the second time, not fetched again


def test_download_goes_to_the_data_dir_when_given(tmp_path, monkeypatch, served):
    monkeypatch.setattr(datasets, "CIFAR100_MD5", hashlib.md5(served["payload"]).hexdigest())
    load_cifar100(tmp_path / "mine", download=True)
    assert (tmp_path / "mine" / datasets.CIFAR100_ARCHIVE).is_file()
    assert not (tmp_path / "keras").exists()


def test_a_tampered_download_is_refused_and_not_kept(tmp_path, monkeypatch, served):
    expected = hashlib.md5(served["payload"]).hexdigest()
    monkeypatch.setattr(datasets, "CIFAR100_MD5", expected)
    served["payload"] = served["payload"][:-1] + b"!"
    with pytest.raises(DatasetError) as raised:
        load_cifar100(tmp_path / "mine", download=True)
    assert f"md5 {hashlib.md5(served['payload']).hexdigest()}, expected {expected}" in str(raised.value)
    assert list((tmp_path / "mine").iterdir()) == []


def test_a_failed_download_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match="could not download .*no route to host"):
        load_cifar100(tmp_path / "mine", download=True)
    assert list((tmp_path / "mine").iterdir()) == []


def test_a_download_that_cannot_be_written_says_where(tmp_path, served):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(DatasetError, match=f"cannot write the download into {blocker / 'sub'}"):
        load_cifar100(blocker / "sub", download=True)
    assert served["urls"] == []


# --- digits ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def test_digits_have_the_documented_shapes(digits):
    assert digits.x_train.shape == (1438, 32, 32, 3) and digits.x_test.shape == (359, 32, 32, 3)
    assert digits.x_train.dtype == np.uint8 and digits.y_train.dtype == np.int64
    assert (digits.classes, digits.name, digits.source) == (10, "digits", "sklearn.datasets.load_digits")
    assert digits.x_train.max() == 255 and digits.x_train.min() == 0


def test_digits_are_sklearns_images_scaled_upsampled_and_grey(digits):
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.concatenate([digits.x_train, digits.x_test])
    labels = np.concatenate([digits.y_train, digits.y_test])
    assert np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2])
    small = images[:, ::4, ::4, 0]
    assert np.array_equal(images[..., 0], small.repeat(4, axis=1).repeat(4, axis=2))  # 4x4 blocks
    expected = np.round(bunch.images * 255 / 16).astype(np.uint8)
    pairs = sorted(zip((x.tobytes() for x in small), labels.tolist(), strict=True))
    assert pairs == sorted(
        zip((x.tobytes() for x in expected), bunch.target.tolist(), strict=True)
    )  # images kept their labels


def test_digits_split_is_stratified_and_seeded(digits):
    train_counts, test_counts = np.bincount(digits.y_train), np.bincount(digits.y_test)
    assert np.array_equal(test_counts, np.round((train_counts + test_counts) * 0.2).astype(int))
    again, other = load_digits(seed=0), load_digits(seed=1)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(again, field).tobytes() == getattr(digits, field).tobytes()
    assert not np.array_equal(other.x_test, digits.x_test)
    assert np.array_equal(np.bincount(other.y_test), test_counts)


# --- normalisation and the contract ------------------------------------------------------------------------


def test_normalize_subtracts_the_training_channel_mean_at_pixel_scale():
    train = np.zeros((2, 1, 2, 3), np.uint8)
    train[..., 0], train[..., 1], train[..., 2] = 10, 200, [[[0, 255]], [[255, 255]]]
    mean = channel_mean(train)
    assert mean.dtype == np.float32 and np.allclose(mean, [10, 200, 191.25])
    centred = normalize(train)
    assert centred.dtype == np.float32 and np.allclose(centred.reshape(-1, 3).mean(axis=0), 0)
    assert np.allclose(centred[1, 0, 0], [0, 0, 63.75]) and np.allclose(centred[0, 0, 0], [0, 0, -191.25])
    test = np.full((1, 1, 1, 3), 100, np.uint8)
    assert np.allclose(normalize(test, mean), [[[[90, -100, -91.25]]]])  # the training mean, not its own


def test_the_dataset_contract_is_enforced():
    images, labels = np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64)
    with pytest.raises(DatasetError, match="not uint8"):
        Dataset(images.astype(np.float32), labels, images, labels, 10, "x", "here")
    with pytest.raises(DatasetError, match="not int64"):
        Dataset(images, labels.astype(np.int32), images, labels, 10, "x", "here")
    with pytest.raises(DatasetError, match="outside 0..9"):
        Dataset(images, labels + 10, images, labels, 10, "x", "here")


def test_the_loader_imports_no_framework():
    code = (
        "import sys, benchmarks.accuracy.datasets;"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
