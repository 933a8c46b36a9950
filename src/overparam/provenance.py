"""What produced a result: package versions, git revision, device, host, threading."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from overparam.threads import WAIT_VARIABLES

# libgomp read its environment when torch was imported (just above, unless something imported
# torch earlier): the wait policy in effect is this snapshot, whatever os.environ says later
_OPENMP_AT_IMPORT = {name: os.environ.get(name) for name in WAIT_VARIABLES}


def git_revision(path: str | Path | None = None) -> str | None:
    """The git commit of the source tree (with '+dirty' if it has uncommitted changes), or None."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{platform.processor() or platform.machine()}"


def provenance(device: torch.device) -> dict[str, str | None]:
    import numpy

    from overparam import __version__

    return {
        "overparam": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "git_revision": git_revision(),
        "device": device_name(device),
        "torch_threads": str(torch.get_num_threads()),
        # None: not set, libgomp's default (spin ~300 000 times, then sleep)
        "omp_wait_policy": _OPENMP_AT_IMPORT["OMP_WAIT_POLICY"],
        "gomp_spincount": _OPENMP_AT_IMPORT["GOMP_SPINCOUNT"],
    }
