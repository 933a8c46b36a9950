"""The lottery study: the tiny preset end to end (store rows, exact per-level weight counts,
pruned weights at zero, curves, report and claims), summaries on hand-made rows, config errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from overparam.errors import ConfigError
from overparam.studies import get_study
from overparam.studies.lottery import NETWORKS, STUDY
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore

CLAIM_IDS = ["lottery.ticket_vs_dense_10pct", "lottery.reinit_loss_10pct", "lottery.random_mask_loss_10pct"]


def test_registered():
    assert get_study("lottery") is STUDY


def test_tiny_preset_end_to_end(tmp_path):
    config = STUDY.resolve("tiny")
    summary = run_sweep(STUDY, config, tmp_path, progress=False)
    assert summary.counts["done"] == config.seeds == 2 and not summary.failures
    with ResultsStore(tmp_path) as store:
        rows = store.runs("lottery", curves=True)
        curves = {row["run_key"]: store.curves("lottery", row["run_key"]) for row in rows}
    assert sorted(row["seed"] for row in rows) == [0, 1]
    for row in rows:
        metrics = row["metrics"]
        levels = metrics["levels"]
        assert [e["level"] for e in levels] == [0, 1, 2]
        # mlp 40 -> 16 -> 10: hidden 640 weights lose round(0.2 * remaining) per round, the readout's
        # 160 lose round(0.1 * remaining): 640 -> 512 -> 410, 160 -> 144 -> 130.
        assert levels[1]["counts"] == {"hidden.0.weight": 512, "readout.weight": 144}
        assert levels[2]["counts"] == {"hidden.0.weight": 410, "readout.weight": 130}
        assert levels[2]["remaining"] == pytest.approx((410 + 130) / 800)
        assert levels[2]["remaining_by_layer"] == pytest.approx({"hidden.0.weight": 410 / 640,
                                                                 "readout.weight": 130 / 160})
        assert set(levels[1]) == {"level", "remaining", "remaining_by_layer", "counts"}  # accuracies: curves
        assert metrics["max_abs_pruned_weight"] == 0.0  # pruned weights stayed exactly zero
        assert metrics["diverged"] == []
        run_curves = curves[row["run_key"]]
        assert run_curves == row["curves"]
        assert [step for step, _ in run_curves["remaining"]] == [0, 1, 2]
        assert [v for _, v in run_curves["remaining"]] == pytest.approx([e["remaining"] for e in levels])
        assert run_curves["ticket_test_acc"][0] == (0, pytest.approx(metrics["dense_test_acc"]))
        assert run_curves["ticket_early_stopping_test_acc"][0] == (0, pytest.approx(
            metrics["dense_early_stopping_test_acc"]))
        for net in NETWORKS:  # every network at every level (the ticket from the dense level 0 on)
            steps = [0, 1, 2] if net == "ticket" else [1, 2]
            for key in ("test_acc", "train_acc", "early_stopping_test_acc"):
                assert [step for step, _ in run_curves[f"{net}_{key}"]] == steps
                assert all(0.0 <= v <= 1.0 for _, v in run_curves[f"{net}_{key}"])

    sections = STUDY.summarize(rows, config)
    assert len(sections) == 1
    assert [c.id for c in sections[0].claims] == CLAIM_IDS
    assert [name for name, _ in sections[0].figures] == ["lottery_accuracy_vs_remaining"]
    assert "67.5%" in sections[0].claims[0].statement  # the level closest to 10% in a 2-round run
    assert all(c.n_seeds == 2 and c.verdict == "inconclusive" and c.reason == "n < 5" for c in sections[0].claims)
    assert all(c.test_examples == 200 and c.binomial_se > 0 for c in sections[0].claims)

    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == CLAIM_IDS
    assert all(c["verdict"] == "inconclusive" and c["source"] == "arXiv 2604.07603" for c in claims)
    assert [c["paper_value"] for c in claims] == [None, 2.80, None]
    assert claims[1]["band"] == [pytest.approx(1.4), pytest.approx(4.2)] and claims[1]["unit"] == "pp"
    assert (tmp_path / "figures" / "lottery_accuracy_vs_remaining.png").stat().st_size > 0
    assert "lottery.reinit_loss_10pct" in paths.markdown.read_text()

    again = run_sweep(STUDY, config, tmp_path, progress=False)  # resumable: nothing left to do
    assert (again.skipped, again.ran) == (2, 0)


def _reference(spec) -> tuple[dict, list]:
    """One seed's IMP trajectory the plain way: every network trained alone by ``fit`` with
    ``mask_callback`` (the protocol of the module docstring). {(level, network): test_acc}, masks."""
    import torch

    from overparam.prune import apply_masks, magnitude_prune, mask_callback, random_prune, rewind, snapshot
    from overparam.run import build_model, load_data
    from overparam.seeding import derive_seed
    from overparam.train import fit

    config, target = spec.config, torch.device("cpu")
    data = load_data(config, target, quiet=True)
    ticket, control = build_model(config, data, target), build_model(config, data, target)
    init = snapshot(ticket)

    def train(model, masks):
        return fit(model, data, config.train, seed=config.seed,
                   callbacks=[] if masks is None else [mask_callback(masks)]).metrics["test_acc"]

    accuracies, all_masks, masks = {(0, "ticket"): train(ticket, None)}, [], None
    for level in range(1, spec.params["rounds"] + 1):
        masks = magnitude_prune(ticket, masks, spec.params["prune_fraction"], spec.params["output_prune_fraction"])
        all_masks.append(masks)
        rewind(ticket, init, masks)
        accuracies[(level, "ticket")] = train(ticket, masks)
        reinit = build_model(replace(config, seed=derive_seed(config.seed, "lottery", "reinit", level)), data, target)
        apply_masks(reinit, masks)
        accuracies[(level, "reinit")] = train(reinit, masks)
        random_masks = random_prune(masks, seed=derive_seed(config.seed, "lottery", "random_mask", level))
        rewind(control, init, random_masks)
        accuracies[(level, "random")] = train(control, random_masks)
    return accuracies, all_masks


def test_seeds_in_lockstep_give_each_seed_its_own_trajectory():
    """run_batch trains the seeds' trajectories together (one ensemble per level); each run's
    stored numbers are those of the seed run alone, and those of the plain per-network fit loop."""
    import torch

    from overparam.studies import lottery

    config = STUDY.resolve("tiny", overrides=["seeds=3", "train.optimizer=adam", "train.lr=0.01"])
    specs = lottery.grid(config)
    assert len({STUDY.batch_key(spec) for spec in specs}) == 1  # one unit of work for the executor
    together = STUDY.run_batch(specs, "cpu")
    alone = [STUDY.run_one(spec, "cpu") for spec in specs]
    for batched, single in zip(together, alone):
        assert batched.status == single.status == "done"
        assert batched.metrics["levels"] == single.metrics["levels"]  # the same weight counts per layer and level
        assert batched.metrics["max_abs_pruned_weight"] == single.metrics["max_abs_pruned_weight"] == 0.0
        assert batched.curves.keys() == single.curves.keys()
        for name, points in batched.curves.items():
            assert [s for s, _ in points] == [s for s, _ in single.curves[name]]
            assert [v for _, v in points] == pytest.approx([v for _, v in single.curves[name]], abs=1e-6), name
        assert batched.provenance["batched_with"] == 3 and "batched_with" not in single.provenance
    # the masks themselves, level by level, against the plain fit loop (seed 1)
    runs = lottery._trajectories(specs[1:2], torch.device("cpu"))
    accuracies, masks = _reference(specs[1])
    assert {key: result["test_acc"] for key, result in runs[0].trained.items()} == pytest.approx(accuracies, abs=1e-6)
    assert all(torch.equal(runs[0].masks[name], masks[-1][name]) for name in masks[-1])
    assert runs[0].levels[-1]["counts"] == {name: int(m.sum()) for name, m in masks[-1].items()}


def _row(seed: int, remaining: list[float], dense: float, ticket: list[float], reinit: list[float],
         random: list[float], n_test: int | None = None) -> dict:
    """A store row (with curves, step = level) of one finished IMP trajectory."""
    levels = range(len(remaining) + 1)
    metrics = {"dense_test_acc": dense, "dense_early_stopping_test_acc": dense, "diverged": [],
               "levels": [{"level": i, "remaining": r} for i, r in zip(levels, [1.0] + remaining)],
               "max_abs_pruned_weight": 0.0, **({} if n_test is None else {"n_test": n_test})}
    curves = {"remaining": list(zip(levels, [1.0] + remaining)), "ticket_test_acc": list(zip(levels, [dense] + ticket)),
              "ticket_early_stopping_test_acc": list(zip(levels, [dense] + ticket)),
              "reinit_test_acc": list(zip(levels[1:], reinit)), "random_test_acc": list(zip(levels[1:], random))}
    return {"seed": seed, "status": "done", "metrics": metrics, "curves": curves, "config": {}}


REMAINING = [0.5, 0.12, 0.09, 0.05]  # closest to 10%: level 3 (9%)


def _rows(reinit_loss: float, random_loss: float, seeds: int = 5, n_test: int | None = None) -> list[dict]:
    """Seeds around one trajectory: the ticket 0.5 pp below dense at level 3, reinit and random-mask
    ``reinit_loss``/``random_loss`` (fractions) below the ticket there; per-seed jitter of 0.1 pp."""
    rows = []
    for seed in range(seeds):
        shift, jitter = 0.01 * (seed - 2), 0.001 * (seed % 2)
        ticket = [0.81 + shift, 0.80 + shift, 0.795 + shift + jitter, 0.70 + shift]
        reinit = [t - 0.02 - jitter for t in ticket[:2]] + [ticket[2] - reinit_loss - jitter, 0.60 + shift]
        random = [t - 0.03 for t in ticket[:2]] + [ticket[2] - random_loss + jitter, 0.65 + shift]
        rows.append(_row(seed, REMAINING, 0.80 + shift, ticket, reinit, random, n_test))
    return rows


def _claims(rows: list[dict]) -> tuple[dict, object]:
    (section,) = STUDY.summarize(rows, STUDY.resolve("tiny"))
    return {c.id: c for c in section.claims}, section


def test_summary_claims_use_the_level_closest_to_ten_percent_and_paired_differences():
    rows = _rows(0.03, 0.04) + [{"seed": 5, "status": "failed", "metrics": {}, "config": {}}]  # failed: ignored
    claims, section = _claims(rows)
    assert list(claims) == CLAIM_IDS
    gap = claims["lottery.ticket_vs_dense_10pct"]
    assert "9.0%" in gap.statement and "level 3" in gap.statement
    assert gap.measured == pytest.approx(0.5 - 100 * np.mean([0.001 * (s % 2) for s in range(5)]))
    assert gap.n_seeds == 5 and gap.ci_method == "t" and gap.verdict == "reproduced"  # every seed within 1.15 pp
    reinit = claims["lottery.reinit_loss_10pct"]
    assert reinit.measured == pytest.approx(3.04)  # 3 pp plus the mean jitter, 0.04 pp
    assert reinit.verdict == "reproduced" and reinit.magnitude == "holds"  # inside [1.4, 4.2]
    random = claims["lottery.random_mask_loss_10pct"]
    assert random.measured == pytest.approx(3.96) and random.verdict == "reproduced" and random.magnitude == "n/a"
    assert all(c.details["level"] == 3 for c in claims.values())
    assert "| 3 | 9 | 5 |" in section.text  # the per-level table: level, remaining %, n
    # the sparsest level's margin over the better control stays in the table and the reading: 0.70 − 0.65 = 5 pp
    assert "| 5 [5, 5] |" in section.text and "5 [5, 5] pp at the sparsest (5.0%)" in section.text


def test_published_number_and_verdict_rules():
    claims, _ = _claims(_rows(0.03, 0.04))
    reinit = claims["lottery.reinit_loss_10pct"]
    assert (reinit.paper_value, reinit.unit, reinit.source) == (2.80, "pp", "arXiv 2604.07603")
    assert reinit.band == [pytest.approx(1.4), pytest.approx(4.2)] and reinit.ratio_to_paper == pytest.approx(
        reinit.measured / 2.80)
    # ten times the paper's loss: the direction holds, the magnitude is outside the band
    claims, _ = _claims(_rows(0.28, 0.04))
    reinit = claims["lottery.reinit_loss_10pct"]
    assert reinit.measured == pytest.approx(28.04) and reinit.ratio_to_paper == pytest.approx(28.04 / 2.80)
    assert (reinit.direction, reinit.magnitude, reinit.verdict) == ("holds", "fails", "direction_only")
    # a reinit that does as well as the ticket: the direction fails
    claims, _ = _claims(_rows(-0.01, 0.04))
    assert claims["lottery.reinit_loss_10pct"].verdict == "not_reproduced"
    # on a 1000-example test set, a 0.5 pp gap is within 2 binomial SE of the 1.15 pp bound: undecided
    claims, _ = _claims(_rows(0.03, 0.04, n_test=1000))
    gap = claims["lottery.ticket_vs_dense_10pct"]
    assert gap.test_examples == 1000 and gap.binomial_se == pytest.approx(100 * np.sqrt(2 * 0.8 * 0.2 / 1000), rel=0.02)
    assert gap.verdict == "inconclusive" and gap.reason == "within 2 binomial SE of the test set"
    assert claims["lottery.random_mask_loss_10pct"].verdict == "reproduced"  # 3.96 pp: more than 2 SE (3.7 pp) from 0
    # fewer than 5 seeds: no verdict
    claims, _ = _claims(_rows(0.03, 0.04, seeds=3))
    assert all(c.verdict == "inconclusive" and c.reason == "n < 5" for c in claims.values())


def test_summary_without_pruned_levels_says_so():
    (section,) = STUDY.summarize([], STUDY.resolve("tiny"))
    assert section.claims == [] and "No finished run" in section.text


@pytest.mark.parametrize("override, match", [
    ("prune_fraction=1.2", r"prune_fraction must be a number in \[0, 1\), got 1.2"),
    ("prune_fraction=0", r"prune_fraction must be a number in \(0, 1\), got 0"),
    ("output_prune_fraction=-0.1", r"output_prune_fraction must be a number in \[0, 1\), got -0.1"),
    ("rounds=0", "rounds must be an integer >= 1, got 0"),
    ("seeds=0", "seeds must be an integer >= 1, got 0"),
])
def test_bad_configs_are_config_errors_naming_the_value(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


def test_a_model_without_hidden_layers_fails_before_any_run(tmp_path):
    config = STUDY.resolve("tiny", overrides=["model.depth=0"])
    with pytest.raises(ConfigError, match="no prunable layer besides its output layer"):
        run_sweep(STUDY, config, tmp_path, progress=False)
