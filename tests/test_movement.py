"""relative_movement against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from overparam.errors import ConfigError
from overparam.measures.movement import relative_movement
from overparam.models import MLP


def test_hand_example():
    init = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    final = {"a": torch.tensor([6.0, 8.0]), "b": torch.tensor([[1.0, 2.0], [0.0, 0.0]])}
    # a: |Δ| = 5, |a0| = 5 -> 1; b: |Δ| = 2, |b0| = 1 -> 2; global sqrt(25 + 4) / sqrt(25 + 1)
    r = relative_movement(init, final)
    assert r["per_layer"] == {"a": pytest.approx(1.0, rel=1e-15), "b": pytest.approx(2.0, rel=1e-15)}
    assert list(r["per_layer"]) == ["a", "b"]
    assert r["global"] == pytest.approx(math.sqrt(29 / 26), rel=1e-15)
    none = relative_movement(init, init)
    assert none["global"] == 0.0 and set(none["per_layer"].values()) == {0.0}


def test_models_and_state_dicts():
    torch.manual_seed(0)
    m0 = MLP(3, 4, 1, 2, parameterization="ntk")
    m1 = MLP(3, 4, 1, 2, parameterization="ntk")
    m1.load_state_dict(m0.state_dict())
    with torch.no_grad():
        m1.hidden[0].weight.add_(0.5)
    w0 = m0.hidden[0].weight.double()
    expected_layer = (0.5 * math.sqrt(w0.numel())) / torch.linalg.vector_norm(w0).item()
    total = math.sqrt(sum(p.double().pow(2).sum().item() for p in m0.parameters()))
    expected_global = 0.5 * math.sqrt(w0.numel()) / total
    for a, b in [(m0, m1), (m0.state_dict(), m1.state_dict()),
                 (dict(m0.named_parameters()), dict(m1.named_parameters()))]:
        r = relative_movement(a, b)
        assert set(r["per_layer"]) == {"hidden.0.weight", "hidden.0.bias", "readout.weight", "readout.bias"}
        assert r["per_layer"]["hidden.0.weight"] == pytest.approx(expected_layer, rel=1e-6)
        assert r["per_layer"]["readout.weight"] == 0.0
        assert r["global"] == pytest.approx(expected_global, rel=1e-6)


def test_integer_buffers_are_skipped_and_zero_init_is_documented():
    init = {"w": torch.ones(2), "count": torch.tensor(3), "zero_moved": torch.zeros(2), "zero_still": torch.zeros(1)}
    final = {"w": torch.ones(2), "count": torch.tensor(7), "zero_moved": torch.tensor([0.0, 1.0]),
             "zero_still": torch.zeros(1)}
    r = relative_movement(init, final)
    assert "count" not in r["per_layer"]
    assert r["per_layer"]["zero_moved"] == math.inf
    assert math.isnan(r["per_layer"]["zero_still"])
    assert r["global"] == pytest.approx(1 / math.sqrt(2))
    zero = relative_movement({"b": torch.zeros(3)}, {"b": torch.ones(3)})
    assert zero["global"] == math.inf


def test_bad_inputs():
    a = {"w": torch.ones(2), "b": torch.ones(1)}
    with pytest.raises(ConfigError, match=r"only in params_init: \['b'\].*only in params_final: \['c'\]"):
        relative_movement(a, {"w": torch.ones(2), "c": torch.ones(1)})
    with pytest.raises(ConfigError, match=r"'w'.*\(2,\).*\(3,\)"):
        relative_movement(a, {"w": torch.ones(3), "b": torch.ones(1)})
    with pytest.raises(ConfigError, match=r"params_final\['b'\].*float"):
        relative_movement(a, {"w": torch.ones(2), "b": 1.0})
    with pytest.raises(ConfigError, match="params_init.*list"):
        relative_movement([torch.ones(2)], a)
    with pytest.raises(ConfigError, match="no floating-point"):
        relative_movement({}, {})
