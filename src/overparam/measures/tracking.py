"""Measures along training: callbacks for :func:`overparam.train.fit`.

``sharpness_callback`` records the top Hessian eigenvalue (and its Lanczos cost) every
``every`` steps on fixed data, warm-starting each Lanczos run from the previous top
eigenvector: between nearby iterates the eigenvector changes little, so later measurements
cost a few HVPs instead of a full cold start.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from overparam.measures.common import Batch, LossFn
from overparam.measures.curvature import hessian_eigenvalues
from overparam.train.loop import Callback, TrainState


def sharpness_callback(loss_fn: LossFn, data: Batch | Iterable[Batch], every: int, *, tol: float = 1e-3,
                       steps: Iterable[int] = (0,), name: str = "lambda_max", **options) -> Callback:
    """A callback recording curves ``name`` (λ_max), ``name + '_hvps'`` and
    ``name + '_converged'`` at step 0, every ``every`` steps and at the end."""
    batches = list(data) if not isinstance(data, tuple) else data
    previous: dict[str, Tensor | None] = {"vector": None}

    def measure(state: TrainState) -> None:
        result = hessian_eigenvalues(state.model, loss_fn, batches, k=1, tol=tol, v0=previous["vector"], **options)
        previous["vector"] = result.vectors[:, 0].detach()
        state.record(name, result.values[0].item())
        state.record(name + "_hvps", result.num_hvps)
        state.record(name + "_converged", float(result.converged))

    return Callback(measure, steps=tuple(steps), every=every)
