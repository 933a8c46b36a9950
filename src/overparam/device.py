"""Device selection: CUDA when available, else CPU; ``--device`` forces one."""

from __future__ import annotations

import torch

from overparam.errors import ConfigError


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``None`` or ``'auto'`` -> ``cuda`` if available else ``cpu``; otherwise the named device,
    which must exist on this machine (``'cuda'`` without a GPU is an error, not a silent CPU run)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {name!r}; accepted: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available; use 'cpu' or 'auto'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; accepted: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    return device
