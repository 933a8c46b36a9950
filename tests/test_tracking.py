"""λ_max along training with warm starts agrees with cold measurements at the same iterates."""

from __future__ import annotations

import torch
from torch import nn

from overparam.data.base import Dataset
from overparam.measures.curvature import hessian_eigenvalues
from overparam.measures.tracking import sharpness_callback
from overparam.train import Callback, TrainConfig, fit


def test_sharpness_callback_matches_cold_measurements_and_saves_hvps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=gen)
    ds = Dataset("toy", x, y, x[:10], y[:10], 3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    loss_fn = nn.functional.cross_entropy
    snapshots = {}

    def snapshot(state):
        snapshots[state.step] = [p.detach().clone() for p in state.model.parameters()]

    tracker = sharpness_callback(loss_fn, (x, y), every=10, tol=1e-8, criterion="residual")
    result = fit(model, ds, TrainConfig(optimizer="gd", lr=0.2, momentum=0.0, steps=30),
                 callbacks=[tracker, Callback(snapshot, steps=(0,), every=10)])
    steps = [s for s, _ in result.curves["lambda_max"]]
    assert steps == [0, 10, 20, 30]
    for (step, value), (_, hvps) in zip(result.curves["lambda_max"], result.curves["lambda_max_hvps"]):
        with torch.no_grad():
            for p, saved in zip(model.parameters(), snapshots[step]):
                p.copy_(saved)
        cold = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-8, criterion="residual")
        assert abs(value - cold.values[0].item()) <= 1e-7 * abs(value)
        if step > 0:
            assert hvps < cold.num_hvps  # the warm start pays off
