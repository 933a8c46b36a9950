"""Writers for the real on-disk formats, used to test loaders on small files.

* IDX (LeCun): magic 0x00000803/0x00000801, big-endian uint32 dims, ubyte payload, gzipped.
* Python 2 numpy pickles, as in CIFAR-10's python tarball and Nielsen's mnist.pkl.gz:
  protocol 2, byte strings as py2 ``str`` (BINSTRING opcodes) and arrays reduced through
  ``numpy.core.multiarray._reconstruct`` -- the global names the official files contain.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> bytes:
    """Write ``array`` as a gzipped IDX file; return the uncompressed bytes."""
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return raw


_RECONSTRUCT = (getattr(np, "_core", None) or np.core).multiarray._reconstruct


class Py2NumpyPickler(pickle._Pickler):
    """Protocol-2 pickler that writes bytes as Python 2 ``str`` and names numpy's reconstructor
    ``numpy.core.multiarray._reconstruct``, as Python 2 numpy did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_numpy_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2NumpyPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_cifar10_tarball(path: Path, n_per_batch: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """A CIFAR-10 python tarball in the official layout with ``n_per_batch`` images per batch.

    Returns the arrays written: train_x (5n, 3072) uint8, train_y, test_x, test_y.
    """
    rng = np.random.default_rng(seed)
    members, train_x, train_y = {}, [], []
    for i in range(1, 7):
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        name = "test_batch" if i == 6 else f"data_batch_{i}"
        batch = {b"batch_label": f"batch {i}".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n_per_batch)]}
        members[name] = py2_numpy_pickle(batch)
        if i < 6:
            train_x.append(data)
            train_y.append(labels)
        else:
            test_x, test_y = data, np.array(labels)
    members["batches.meta"] = py2_numpy_pickle({b"num_cases_per_batch": n_per_batch, b"num_vis": 3072,
                                                b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                                 b"dog", b"frog", b"horse", b"ship", b"truck"]})
    members["readme.html"] = b"<html></html>"
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return {"train_x": np.concatenate(train_x), "train_y": np.concatenate(train_y), "test_x": test_x,
            "test_y": test_y}
