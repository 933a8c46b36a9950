"""Checkpoints without unpickling: weights in safetensors, metadata in JSON.

``save_checkpoint`` writes ``model.safetensors`` (the model's state dict, plain tensors) and
``meta.json`` (step, config, anything JSON-serializable). ``load_checkpoint`` reads them back
with safetensors, which cannot execute code. Optimizer state, when saved, goes through
``torch.save`` and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from overparam.errors import DataError


def save_checkpoint(directory: str | Path, model: nn.Module, meta: dict[str, Any] | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(directory / "model.safetensors", lambda p: save_file(state, str(p)))
    _atomic(directory / "meta.json", lambda p: p.write_text(json.dumps(meta or {}, indent=2, default=str)))
    if optimizer is not None:
        _atomic(directory / "optimizer.pt", lambda p: torch.save(optimizer.state_dict(), p))
    return directory


def load_checkpoint(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load weights (and optimizer state) saved by :func:`save_checkpoint` into ``model``;
    return the metadata. A missing or malformed file raises ``DataError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        state = load_file(str(directory / "model.safetensors"), device=str(map_location))
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, SafetensorError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read checkpoint in {directory}: {error}") from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise DataError(f"checkpoint in {directory} does not fit this model: {error}") from error
    if optimizer is not None:
        try:
            optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location=map_location,
                                                 weights_only=True))
        except Exception as error:  # noqa: BLE001 - any failure means an unusable file
            raise DataError(f"cannot read optimizer state in {directory}: {error}") from error
    return meta


def _atomic(path: Path, write) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    partial = path.with_name(path.name + ".part")
    write(partial)
    os.replace(partial, path)
