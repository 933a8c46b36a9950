"""The width study end to end on its tiny preset, its infinite-width limits, and its config validation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from overparam.errors import ConfigError
from overparam.measures import analytic_ntk, empirical_ntk, kernel_distance
from overparam.models import build
from overparam.studies import get_study
from overparam.studies.width import STUDY, limit_kernel, normalization, standard_limit_kernel
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore

IDS = ["width.movement_ratio", "width.movement_slope", "width.kernel_drift_falls", "width.ntk_approaches_analytic"]
STANDARD_IDS = [i.replace("width.", "width.standard.") for i in IDS]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("width")
    summary = run_sweep(STUDY, STUDY.resolve("tiny"), out, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 2 * 3 * 3  # parameterizations x widths x seeds
    return out


@pytest.fixture(scope="module")
def tiny_rows(tiny_store):
    with ResultsStore(tiny_store) as store:
        return store.runs("width")


def test_registered_under_its_name():
    assert get_study("width") is STUDY


def test_runs_store_movement_and_kernel_measures(tiny_rows):
    assert len(tiny_rows) == 18
    for row in tiny_rows:
        m, run = row["metrics"], row["config"]["params"]["run"]
        width, p = run["model"]["options"]["width"], run["model"]["options"]["parameterization"]
        assert run["model"]["options"]["depth"] == 1 and run["train"]["lr"] == {"standard": 0.05, "ntk": 1.0}[p]
        assert 0 < m["movement"] < 1 and math.isfinite(m["movement"])
        for name in ("hidden.0.weight", "hidden.0.bias", "readout.weight", "readout.bias"):
            assert m[f"movement_{name}"] > 0
        assert 0 < m["ntk_drift"] < 1 and 0 <= m["ntk_drift_cka"] < 1 and m["ntk_drift_full"] > 0
        assert 0 < m["ntk_init_distance"] < 2 and 0 < m["ntk_final_distance"] < 2
        assert m["ntk_init_distance_full"] >= m["ntk_init_distance"] * 0.5
        assert m["probe_examples"] == 16 and m["ntk_outputs"] == 10
        assert m["ntk_normalization"] == normalization(p, width)
        assert 0 <= m["test_acc"] <= 1
        assert row["provenance"]["batched_with"] == 3  # seeds share data.seed: trained together
    # the same fixed probe set and data for every run: the init kernels of seed 0 at one width
    # differ between parameterizations only by the standard one's fan-in factors, so the NTK
    # parameterization's kernel scale is flat in width while the standard one's grows ∝ width
    scale = {(r["config"]["params"]["run"]["model"]["options"]["parameterization"],
              r["config"]["params"]["run"]["model"]["options"]["width"], r["seed"]): r["metrics"]["ntk_scale"]
             for r in tiny_rows}
    for seed in range(3):
        assert 0.5 < scale[("ntk", 256, seed)] / scale[("ntk", 16, seed)] < 2
        assert 4 < scale[("standard", 256, seed)] / scale[("standard", 16, seed)] < 16


@pytest.mark.parametrize("parameterization, depth, widths", [
    ("ntk", 1, (64, 4096)), ("standard", 1, (64, 4096)), ("ntk", 2, (32, 1024)), ("standard", 2, (32, 1024)),
])
def test_init_kernel_converges_to_its_infinite_width_limit(parameterization, depth, widths):
    """An independent check of the scaling the study uses: Θ_0 summed over k outputs, divided
    by c (1 or width), tends to k times the scalar limit kernel, in float64."""
    torch.manual_seed(0)
    x = torch.randn(24, 12, dtype=torch.float64)
    w_std, b_std, k = math.sqrt(2), 0.1, 3
    limit = limit_kernel(x, parameterization, depth, w_std, b_std)
    distances = []
    for width in widths:
        torch.manual_seed(1)
        model = build("mlp", (12,), k, width=width, depth=depth, parameterization=parameterization, w_std=w_std,
                      b_std=b_std).double()
        kernel = empirical_ntk(model, x, method="structured")  # (n, n, k, k)
        traced = torch.einsum("ijaa->ij", kernel) / normalization(parameterization, width)
        assert torch.allclose(traced, empirical_ntk(model, x, trace_outputs=True, method="structured")
                              / normalization(parameterization, width))
        distances.append(kernel_distance(k * limit, traced)["relative_frobenius"])
    assert distances[1] < distances[0] / 2 and distances[1] < 0.12, distances


def test_standard_limit_of_one_hidden_layer_is_the_readout_nngp_term():
    torch.manual_seed(0)
    x = torch.randn(10, 7, dtype=torch.float64)
    w_std, b_std = 1.3, 0.2
    nngp = analytic_ntk(x, depth=1, w_std=w_std, b_std=b_std).nngp
    assert torch.allclose(standard_limit_kernel(x, 1, w_std, b_std), (nngp - b_std ** 2) / w_std ** 2)
    assert torch.equal(limit_kernel(x, "ntk", 2, w_std, b_std), analytic_ntk(x, depth=2, w_std=w_std, b_std=b_std).ntk)


def test_summarize_gives_claims_tables_and_figures(tiny_rows):
    sections = STUDY.summarize(tiny_rows, STUDY.resolve("tiny"))
    assert len(sections) == 1
    section = sections[0]
    assert [c.id for c in section.claims] == IDS + STANDARD_IDS
    assert all(c.n_seeds == 3 and c.verdict in ("reproduced", "not_reproduced", "inconclusive") for c in section.claims)
    assert [name for name, _ in section.figures] == ["width_movement", "width_kernel_drift", "width_ntk_vs_analytic",
                                                     "width_test_accuracy"]
    assert "widths 16 to 256" in section.claims[0].statement and section.claims[0].paper.startswith("11.3x")
    assert "lr 1 (NTK parameterization), lr 0.05 (standard parameterization)" in section.text
    # one width only: no claims, a plain message
    one = [r for r in tiny_rows if r["config"]["params"]["run"]["model"]["options"]["width"] == 16]
    (only,) = STUDY.summarize(one, STUDY.resolve("tiny"))
    assert only.claims == [] and "two or more widths" in only.text


def test_report_has_the_claims_and_figures(tiny_store):
    paths = build_report(tiny_store)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == IDS + STANDARD_IDS
    assert {p.name for p in paths.figures} == {"width_movement.png", "width_kernel_drift.png",
                                               "width_ntk_vs_analytic.png", "width_test_accuracy.png"}
    assert "## width" in paths.markdown.read_text() and paths.html.read_text().count("data:image/png;base64,") == 4


@pytest.mark.parametrize("override, match", [
    ("widths=[32]", "at least two different widths"),
    ("widths=[32, 32, 64]", "no repeats"),
    ("widths=[32, 0]", "each width must be an integer >= 1, got 0"),
    ("parameterizations=[mup]", "unknown parameterization 'mup'"),
    ("lr={ntk: 1.0}", r"lr\['standard'\] must be a positive finite number"),
    ("lr={standard: 0.05, ntk: -1}", r"lr\['ntk'\] must be a positive finite number"),
    ("lr={standard: 0.05, ntk: 1, mup: 2}", "unknown parameterization"),
    ("train.lr=0.1", "not train.lr"),
    ("train.optimizer=adam", "plain \\(S\\)GD"),
    ("train.epoch=3", r"unknown config key\(s\) \['train.epoch'\]"),
    ("data.seed=null", "data.seed must be set to an integer"),
    ("probe_split=val", "unknown probe_split 'val'"),
    ("probe_examples=1", "probe_examples must be an integer >= 2"),
    ("depth=0", "depth must be an integer >= 1"),
    ("w_std=0", "w_std must be a finite number > 0"),
    ("seeds=0", "seeds must be an integer >= 1"),
])
def test_bad_configs_fail_before_anything_runs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


def test_presets_are_valid():
    for preset in ("tiny", "quick", "mnist", "paper"):
        config = STUDY.resolve(preset)
        assert config.seeds >= 3 and config.depth == 1
    quick = STUDY.resolve("quick")
    assert quick.data["name"] == "mnist1d" and quick.data["seed"] == 0 and max(quick.widths) == 4096
    assert len(STUDY.grid(quick)) == 2 * 8 * 3
