"""Seeds: one integer per run, split into independent named streams.

A run's seed drives several random choices (which examples form the subset, which labels are
noisy, the initial weights, the data order). Each gets its own stream derived from the run seed
and a name, so that, e.g., changing the data-order seed never changes the initial weights.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *names: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``names`` (stable across Python runs)."""
    text = ":".join([str(int(seed)), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, *names: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``derive_seed(seed, *names)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *names))
    return gen
