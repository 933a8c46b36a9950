"""``igr``: implicit gradient regularization of full-batch gradient descent (Barrett & Dherin
2021, "Implicit Gradient Regularization", ICLR).

Theory. Gradient descent with step h, θ_{k+1} = θ_k − h∇L(θ_k), stays O(h²) per step from
the gradient flow θ' = −∇L but O(h³) from the flow of the modified loss
L̃ = L + (h/4)|∇L|² = L + (hP/4) R_IG, with R_IG = (1/P) Σ_p (∂L/∂θ_p)² = |∇L|²/P over the P
parameters (``measures.implicit_gradient_regularizer``). So GD implicitly penalizes large
gradients, the more so the larger h: it should reach flatter minima (smaller top Hessian
eigenvalue λ_max), smaller R_IG and higher test accuracy; and an explicit penalty λ|∇L|² at a
small step should recover what a large step does (explicit gradient regularization, EGR).

Runs (one model family, one dataset, ``seeds`` initializations; every seed sees the same data
when ``data.seed`` is set):

1. ``one_step`` (per seed): at the initialization θ_0, in float64, one GD step of each size in
   ``one_step_hs`` against both flows integrated over time h from θ_0 with RK4
   (``references.flows.one_step_errors``: 2·``substeps`` RK4 steps, with a Richardson
   estimate of the integration error), on ``one_step_examples`` training examples. Reported:
   the errors |θ_1 − φ(h)| and |θ_1 − φ̃(h)| and λ_max(θ_0), so h·λ_max (the expansion
   parameter) is known.
2. ``gd`` (per h in ``hs`` and seed): full-batch GD (exact gradient, no momentum) for the same
   training *time* t = steps·h = ``time`` at every h (steps = round(time/h)), so every run
   follows (a discretization of) the same flow for the same duration; along training
   (``track_points`` times) the full training loss and R_IG; at the end λ_max (Lanczos, the
   full training set), R_IG, train/test loss and accuracy.
3. ``egr`` (per seed): GD at the smallest h with the explicit penalty λ|∇L|²
   (``TrainConfig.grad_penalty``), λ = ``egr_penalty``, by default (h_large − h_small)/4 with
   h_large, h_small the largest and smallest h: GD at h_small on L + λ|∇L|² follows
   L + (λ + h_small/4)|∇L|² to first order, the modified loss of GD at h_large.

Claims (ids ``igr.<...>``; CIs over seeds, or over runs for rank correlations):

- ``one_step_plain_slope``: the log-log slope of GD's one-step distance to the gradient flow vs
  h lies in [1.8, 2.2] (theory 2), seeds resampled as groups;
- ``one_step_modified_slope``: that to the modified flow lies in [2.8, 3.2] (theory 3);
- ``rig_falls_with_h``: Spearman ρ(h, final R_IG) < 0 over all ``gd`` runs;
- ``lambda_max_falls_with_h``: Spearman ρ(h, final λ_max) < 0;
- ``test_acc_rises_with_h``: Spearman ρ(h, test accuracy) > 0;
- ``egr_recovers_flatness``: the fraction of the λ_max gap between h_small and h_large that EGR
  closes, (λ_small − λ_EGR)/(λ_small − λ_large) (ratio of seed means, paired by seed), > 0.5,
  i.e. EGR lands closer to the large-h value than plain GD at h_small does;
- ``egr_recovers_test_acc``: the same fraction for test accuracy, > 0.5.

Cost: one_step, per seed and h: 24·``substeps`` gradients and 12·``substeps`` Hessian-vector
products on ``one_step_examples`` examples (float64); gd: round(time/h) full-batch gradients,
plus ``track_points`` gradients and ~10-20 HVPs for λ_max; egr: round(time/h_small) penalized
steps, each about three gradients' cost (double backprop).
"""

from __future__ import annotations

import math
import time as timer
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from overparam.errors import ConfigError, check_optional_nonnegative, check_positive_int, choice_error
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "igr"
LOSSES = ("cross_entropy", "mse")
PLAIN_BAND = (1.8, 2.2)  # accepted as "slope 2"
MODIFIED_BAND = (2.8, 3.2)  # accepted as "slope 3"
KINDS = ("one_step", "gd", "egr")


def _positive_steps(name: str, values: Any, minimum: int = 2) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or len({v for v in values if isinstance(v, (int, float))}) < minimum \
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0)
                   for v in values):
        raise ConfigError(f"{name} must be a list of at least {minimum} distinct positive finite step sizes, "
                          f"got {values!r}")
    return tuple(sorted(float(v) for v in values))


@dataclass(frozen=True)
class IGRConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 1000, "seed": 0})
    # a smooth activation: backward error analysis expands L in Taylor series (ReLU's Hessian jumps)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 64, "depth": 2,
                                                           "activation": "tanh"})
    loss: str = "cross_entropy"
    hs: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)  # GD step sizes
    time: float = 200.0  # training time steps·h, equal for every h
    egr_penalty: float | None = None  # λ of EGR at min(hs); None: (max(hs) − min(hs))/4
    track_points: int = 25  # R_IG and loss measured this many times along training (plus step 0)
    one_step_hs: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16)
    one_step_examples: int | None = None  # training examples of the one-step comparison (None: all)
    substeps: int = 4  # RK4 steps per flow over time h (the error estimate doubles them)
    seeds: int = 3

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        check_positive_int("track_points", self.track_points)
        check_positive_int("substeps", self.substeps)
        if self.one_step_examples is not None:
            check_positive_int("one_step_examples", self.one_step_examples, minimum=2)
        if self.loss not in LOSSES:
            raise choice_error("loss", self.loss, LOSSES)
        hs = _positive_steps("hs", self.hs)
        _positive_steps("one_step_hs", self.one_step_hs)
        if isinstance(self.time, bool) or not isinstance(self.time, (int, float)) or not (
                math.isfinite(self.time) and self.time >= max(hs)):
            raise ConfigError(f"time must be a finite number >= the largest h ({max(hs)}) so that every h takes at "
                              f"least one step, got {self.time!r}")
        check_optional_nonnegative("egr_penalty", self.egr_penalty, "(max(hs) − min(hs))/4")
        common.check_workload(self.data, self.model, self.loss)

    @property
    def penalty(self) -> float:
        """The EGR coefficient λ (of λ|∇L|²)."""
        hs = sorted(self.hs)
        return (hs[-1] - hs[0]) / 4 if self.egr_penalty is None else float(self.egr_penalty)


def steps_for(config: IGRConfig, h: float) -> int:
    """Steps of a GD run at step h: the training time divided by h, rounded (>= 1)."""
    return max(1, round(config.time / h))


def _run_config(config: IGRConfig, seed: int, h: float = 1.0, penalty: float = 0.0):
    steps = steps_for(config, h)
    train = {"optimizer": "gd", "momentum": 0.0, "lr": h, "steps": steps, "loss": config.loss,
             "eval_every": max(1, steps // config.track_points), "grad_penalty": penalty}
    return common.run_config(config.data, config.model, train, seed)


def grid(config: IGRConfig) -> list[RunSpec]:
    """one_step x seed, gd x h x seed, egr x seed; every distinct model is built on the meta
    device first."""
    hs = sorted(config.hs)
    specs = []
    for seed in range(config.seeds):
        # the one-step comparison uses the run config's data, model, loss and seed (not its training settings)
        specs.append(common.spec(NAME, _run_config(config, seed), kind="one_step", hs=list(sorted(config.one_step_hs)),
                                 substeps=config.substeps, examples=config.one_step_examples))
        specs += [common.spec(NAME, _run_config(config, seed, h), kind="gd", h=h, track_points=config.track_points)
                  for h in hs]
        specs.append(common.spec(NAME, _run_config(config, seed, hs[0], config.penalty), kind="egr", h=hs[0],
                                 h_large=hs[-1], track_points=config.track_points))
    common.validate_specs(specs)
    return specs


# --- one run -------------------------------------------------------------------------------------


def _one_step(spec: RunSpec, device: str | None) -> RunOutcome:
    """GD's one-step distance to the gradient flow and to the modified flow at the initialization."""
    from overparam.config import RunConfig
    from overparam.device import resolve_device
    from overparam.measures import hessian_eigenvalues
    from overparam.provenance import provenance
    from overparam.references.flows import loss_fields, network_loss, one_step_errors
    from overparam.run import build_model, load_data
    from overparam.train import loss_function

    started = timer.perf_counter()
    config = RunConfig.from_dict(spec.params["run"])
    target = resolve_device(device)
    dataset = load_data(config, target, torch.float64, quiet=True)
    model = build_model(config, dataset, target)
    x, y = common.probe(dataset.x_train, dataset.y_train, spec.params["examples"], seed=0)
    loss_fn = loss_function(config.train.loss, dataset.num_classes)
    loss, theta0 = network_loss(model, loss_fn, x, y)
    gradient, hvp = loss_fields(loss)
    result = one_step_errors(gradient, hvp, theta0, spec.params["hs"], substeps=spec.params["substeps"])
    top = float(hessian_eigenvalues(model, loss_fn, (x, y), k=1, seed=spec.seed).values[0])
    metrics = {
        "one_step_hs": result.hs.tolist(), "plain_error": result.plain.tolist(),
        "modified_error": result.modified.tolist(), "integration_error": result.integration.tolist(),
        "gd_step": result.step.tolist(), "plain_slope": result.plain_slope, "modified_slope": result.modified_slope,
        "lambda_max_init": top, "max_h_lambda": max(result.hs) * top, "loss_init": float(loss(theta0)),
        "examples": len(x), "num_parameters": theta0.numel(),
    }
    return RunOutcome("done", metrics, {}, timer.perf_counter() - started,
                      {**provenance(target), "data": dataset.info})


def _train(spec: RunSpec, device: str | None) -> RunOutcome:
    """Full-batch GD (with the EGR penalty for kind 'egr'), R_IG and the loss tracked along
    training, λ_max and R_IG at the end."""
    from overparam.config import RunConfig
    from overparam.measures import hessian_eigenvalues, implicit_gradient_regularizer
    from overparam.run import run_one as train_run
    from overparam.train import Callback, loss_function

    started = timer.perf_counter()
    config = RunConfig.from_dict(spec.params["run"])
    chunk = config.train.gd_chunk_size

    def track(state) -> None:
        loss_fn = loss_function(config.train.loss, state.data.num_classes)
        r = implicit_gradient_regularizer(state.model, loss_fn, (state.data.x_train, state.data.y_train),
                                          batch_size=chunk)
        state.record("r_ig", r.r_ig)
        state.record("full_loss", r.loss)

    every = max(1, config.train.steps // spec.params["track_points"])
    record = train_run(config, device=device, callbacks=[Callback(track, every=every)], quiet=True)
    metrics = dict(record.metrics)
    # the tracked curves also go into the metrics: summaries read stored metrics only
    metrics["track_steps"] = [step for step, _ in record.curves.get("r_ig", [])]
    metrics["track_r_ig"] = [value for _, value in record.curves.get("r_ig", [])]
    metrics["track_loss"] = [value for _, value in record.curves.get("full_loss", [])]
    if record.status == "done":
        loss_fn = common.loss_fn(record)
        data = (record.dataset.x_train, record.dataset.y_train)
        final = implicit_gradient_regularizer(record.model, loss_fn, data, batch_size=chunk)
        top = hessian_eigenvalues(record.model, loss_fn, data, k=1, batch_size=chunk, seed=spec.seed)
        metrics.update(r_ig=final.r_ig, grad_norm_sq=final.grad_norm_sq, lambda_max=float(top.values[0]),
                       h=spec.params["h"], grad_penalty=config.train.grad_penalty,
                       time=config.train.steps * spec.params["h"])
    return RunOutcome(record.status, metrics, record.curves, timer.perf_counter() - started, record.provenance)


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    return _one_step(spec, device) if spec.params["kind"] == "one_step" else _train(spec, device)


# --- summary -------------------------------------------------------------------------------------


def _kind(rows: list, kind: str) -> list:
    return [r for r in rows if common.run_params(r)["kind"] == kind]


def _slope(rows: list, metric: str):
    from overparam.report import loglog_slope_ci

    xs, ys, groups = [], [], []
    for row in rows:
        for h, error in zip(row["metrics"]["one_step_hs"], row["metrics"][metric]):
            if error > 0:
                xs.append(h)
                ys.append(error)
                groups.append(row["seed"])
    return loglog_slope_ci(xs, ys, groups=groups)


def summarize(rows: list[dict[str, Any]], config: IGRConfig) -> list:
    from overparam.report import Claim, Section, bootstrap_ci, spearman_ci

    title = "igr: implicit gradient regularization of full-batch GD"
    done = common.done_rows(rows)
    one_step, gd, egr = _kind(done, "one_step"), _kind(done, "gd"), _kind(done, "egr")
    if not one_step and len(gd) < 2:
        return [Section(title, "No finished runs yet.")]
    claims, parts, figures = [], [], []

    # (1) one GD step against the two flows
    if one_step:
        plain, modified = _slope(one_step, "plain_error"), _slope(one_step, "modified_error")
        hs = one_step[0]["metrics"]["one_step_hs"]
        where = (f"one full-batch GD step from the initialization ({len(one_step)} seeds, float64, "
                 f"h = {min(hs):g}..{max(hs):g}, h·λ_max(θ_0) <= "
                 f"{common.fmt(max(r['metrics']['max_h_lambda'] for r in one_step), 3)})")
        claims += [
            Claim.from_ci(f"{NAME}.one_step_plain_slope", NAME,
                          f"GD's distance to the gradient flow after one step is O(h²): the log-log slope of "
                          f"|θ_1 − φ(h)| vs h lies in [{PLAIN_BAND[0]}, {PLAIN_BAND[1]}], {where}.",
                          "2 (GD = gradient flow + O(h²) per step)", plain, within=PLAIN_BAND),
            Claim.from_ci(f"{NAME}.one_step_modified_slope", NAME,
                          f"GD follows the modified flow of L + (h/4)|∇L|² to O(h³) per step: the log-log slope of "
                          f"|θ_1 − φ̃(h)| vs h lies in [{MODIFIED_BAND[0]}, {MODIFIED_BAND[1]}], {where}.",
                          "3 (backward error analysis: modified flow + O(h³) per step)", modified,
                          within=MODIFIED_BAND),
        ]
        parts.append(_one_step_text(one_step, plain, modified))
        figures.append(("igr_one_step", _one_step_figure(one_step, plain, modified)))

    # (2) GD at several h, equal training time; (3) EGR
    if gd:
        by_h = common.group(gd, lambda r: r["metrics"]["h"])
        metrics = ("train_loss", "train_acc", "test_acc", "r_ig", "lambda_max")
        cis = {h: {m: bootstrap_ci(common.values(rs, m)) for m in metrics} for h, rs in by_h.items()}
        egr_cis = {m: bootstrap_ci(common.values(egr, m)) for m in metrics} if egr else None
        setting = (f"full-batch GD on {len({r['seed'] for r in gd})} seeds, equal training time "
                   f"t = steps·h = {config.time:g} for h = {', '.join(f'{h:g}' for h in by_h)}")
        rho = {m: spearman_ci(*common.finite_pairs(gd, "h", m)) for m in ("r_ig", "lambda_max", "test_acc")}
        n_seeds = max(len(rs) for rs in by_h.values())
        claims += [
            Claim.from_ci(f"{NAME}.rig_falls_with_h", NAME,
                          f"Larger steps end with a smaller implicit gradient regularizer R_IG = |∇L|²/P: Spearman "
                          f"ρ(h, final R_IG) < 0 over the runs ({setting}).",
                          "larger learning rate -> smaller R_IG", rho["r_ig"], less_than=0.0, n_seeds=n_seeds,
                          details={"n_runs": rho["r_ig"].n}),
            Claim.from_ci(f"{NAME}.lambda_max_falls_with_h", NAME,
                          f"Larger steps end in flatter minima: Spearman ρ(h, final λ_max) < 0 ({setting}).",
                          "larger learning rate -> flatter minimum", rho["lambda_max"], less_than=0.0,
                          n_seeds=n_seeds, details={"n_runs": rho["lambda_max"].n}),
            Claim.from_ci(f"{NAME}.test_acc_rises_with_h", NAME,
                          f"Larger steps generalize better: Spearman ρ(h, test accuracy) > 0 ({setting}).",
                          "larger learning rate -> higher test accuracy", rho["test_acc"], greater_than=0.0,
                          n_seeds=n_seeds, details={"n_runs": rho["test_acc"].n}),
        ]
        fractions = {}
        h_small, h_large = min(by_h), max(by_h)
        if egr and h_small != h_large:
            small, large = by_h[h_small], by_h[h_large]
            fractions = {m: common.gap_fraction(small, large, egr, m) for m in ("lambda_max", "test_acc")}
            penalty = egr[0]["metrics"]["grad_penalty"]
            egr_setting = (f"GD at h = {h_small:g} with the explicit penalty {penalty:g}·|∇L|² "
                           f"(= (h_large − h_small)/4 by default, so that L + (λ + h_small/4)|∇L|² is the modified "
                           f"loss of h_large = {h_large:g}), paired by seed")
            claims += [
                Claim.from_ci(f"{NAME}.egr_recovers_flatness", NAME,
                              f"Explicit gradient regularization at a small step recovers the large step's flatness: "
                              f"the fraction (λ_max(h_small) − λ_max(EGR))/(λ_max(h_small) − λ_max(h_large)) of the "
                              f"gap that EGR closes is > 0.5, i.e. EGR ends closer to the large-h λ_max ({egr_setting}).",
                              "EGR at small h behaves like IGR at large h", fractions["lambda_max"], greater_than=0.5),
                Claim.from_ci(f"{NAME}.egr_recovers_test_acc", NAME,
                              f"Explicit gradient regularization at a small step recovers the large step's test "
                              f"accuracy: the fraction of the test-accuracy gap between h_small and h_large that EGR "
                              f"closes is > 0.5 ({egr_setting}).",
                              "EGR at small h reaches the large-h test accuracy", fractions["test_acc"],
                              greater_than=0.5),
            ]
        parts.append(_training_text(config, by_h, cis, egr, egr_cis, rho, fractions))
        figures.append(("igr_training", _training_figure(by_h, egr)))
        figures.append(("igr_flatness", _flatness_figure(by_h, cis, egr, egr_cis)))
    return [Section(title, "\n\n".join(parts), figures, claims)]


def _one_step_text(rows: list, plain, modified) -> str:
    from overparam.report import bootstrap_ci

    hs = rows[0]["metrics"]["one_step_hs"]
    body = []
    for i, h in enumerate(hs):
        p = bootstrap_ci([r["metrics"]["plain_error"][i] for r in rows])
        m = bootstrap_ci([r["metrics"]["modified_error"][i] for r in rows])
        e = max(r["metrics"]["integration_error"][i] for r in rows)
        body.append([f"{h:g}", common.ci_text(p, 3), common.ci_text(m, 3), common.fmt(m[0] / p[0], 3),
                     common.fmt(e, 2)])
    table = common.table(["h", "‖θ_1 − φ(h)‖ (gradient flow)", "‖θ_1 − φ̃(h)‖ (modified flow)", "ratio",
                          "max RK4 error estimate"], body)
    lam = [r["metrics"]["lambda_max_init"] for r in rows]
    m0 = rows[0]["metrics"]
    return (f"**One GD step against the two flows.** From each seed's initialization θ_0 (a "
            f"{m0['num_parameters']}-parameter model, {m0['examples']} training examples, float64), one GD step "
            f"θ_1 = θ_0 − h∇L(θ_0) is compared with the gradient flow φ and the modified flow φ̃ of "
            f"L + (h/4)|∇L|², both integrated over time h from θ_0 by RK4. λ_max(θ_0) = "
            f"{common.fmt(min(lam), 3)}..{common.fmt(max(lam), 3)}, so h·λ_max stays small. Distances are means "
            f"over {len(rows)} seeds with 95% CIs.\n\n{table}\n\n"
            f"Log-log slopes (seeds resampled as groups): gradient flow {common.ci_text(plain, 3)} (theory 2), "
            f"modified flow {common.ci_text(modified, 3)} (theory 3). The RK4 error estimate is the difference "
            f"between integrations with K and 2K steps; it is far below the distances measured, so the slopes "
            f"are those of GD itself, not of the integrator.")


def _training_text(config: IGRConfig, by_h: dict, cis: dict, egr: list, egr_cis: dict | None, rho: dict,
                   fractions: dict) -> str:
    metrics = ("train_loss", "train_acc", "test_acc", "r_ig", "lambda_max")
    header = ["run", "steps", "n", "train loss", "train acc", "test acc", "R_IG = ‖∇L‖²/P", "λ_max", "2/h"]
    body = [[f"GD h={h:g}", steps_for(config, h), len(rs)] + [common.ci_text(cis[h][m], 3) for m in metrics]
            + [common.fmt(2 / h, 3)] for h, rs in by_h.items()]
    if egr_cis is not None:
        h = egr[0]["metrics"]["h"]
        body.append([f"EGR h={h:g}, λ={egr[0]['metrics']['grad_penalty']:g}", steps_for(config, h), len(egr)]
                    + [common.ci_text(egr_cis[m], 3) for m in metrics] + [common.fmt(2 / h, 3)])
    table = common.table(header, body)
    h_small, h_large = min(by_h), max(by_h)
    loss_small, loss_large = cis[h_small]["train_loss"][0], cis[h_large]["train_loss"][0]
    edge = {h: h * cis[h]["lambda_max"][0] / 2 for h in by_h}
    reading = (f"Spearman ρ with h: final R_IG {common.ci_text(rho['r_ig'], 3)}, λ_max "
               f"{common.ci_text(rho['lambda_max'], 3)}, test accuracy {common.ci_text(rho['test_acc'], 3)}. "
               f"At equal time the runs end at different training losses (h = {h_small:g}: "
               f"{common.fmt(loss_small, 3)}, h = {h_large:g}: {common.fmt(loss_large, 3)}), so the final R_IG, "
               f"which shrinks with the loss, mixes how far a run has trained with how strongly it is regularized; "
               f"the R_IG-vs-loss panel of the training figure compares the runs at matched loss instead. "
               f"At the end h·λ_max/2 = " + ", ".join(f"{common.fmt(v, 2)} (h = {h:g})" for h, v in edge.items())
               + ": 1 is the stability limit λ_max = 2/h, where GD oscillates (the edge of stability) and the "
               "small-h expansion behind the modified loss no longer holds. With cross-entropy λ_max and R_IG "
               "also shrink as the loss goes to zero.")
    if fractions:
        reading += (f" EGR closes a fraction {common.ci_text(fractions['lambda_max'], 3)} of the λ_max gap and "
                    f"{common.ci_text(fractions['test_acc'], 3)} of the test-accuracy gap between h = {h_small:g} "
                    f"and h = {h_large:g} (a fraction is unstable when the gap itself is small: see the table).")
    return (f"**GD at several step sizes, equal training time.** Full-batch GD (no momentum) for time "
            f"t = steps·h = {config.time:g} at every h; means over seeds with 95% bootstrap CIs. The EGR row trains at "
            f"the smallest h on L + λ|∇L|² (λ = {config.penalty:g}).\n\n{table}\n\n{reading}")


def _one_step_figure(rows: list, plain, modified):
    from overparam.report import bootstrap_ci, errorbar_plot, new_figure

    fig, ax = new_figure(width=6.8, height=4.6)
    hs = np.asarray(rows[0]["metrics"]["one_step_hs"])
    n = len(rows)
    for metric, label, color, slope, ci in (("plain_error", "GD vs gradient flow", "tab:red", 2, plain),
                                            ("modified_error", "GD vs modified flow", "tab:blue", 3, modified)):
        c = [bootstrap_ci([r["metrics"][metric][i] for r in rows]) for i in range(len(hs))]
        est = np.array([x[0] for x in c])
        errorbar_plot(ax, hs, est, [x[1] for x in c], [x[2] for x in c],
                      label=f"{label}, slope {common.ci_text(ci, 3)}", n=n, color=color, legend=False)
        # drawn a factor 3 below the first point, so that it does not hide the measured line
        ax.plot(hs, est[0] / 3 * (hs / hs[0]) ** slope, linestyle="--", color=color, alpha=0.7, linewidth=1.1,
                label=f"reference slope {slope}")
    integration = [max(r["metrics"]["integration_error"][i] for r in rows) for i in range(len(hs))]
    ax.plot(hs, integration, linestyle=":", marker=".", color="0.4", label="RK4 error estimate (max over seeds)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _h_ticks(ax, hs)
    ax.set_xlabel("step size h")
    ax.set_ylabel("distance after one step  ‖θ_1 − flow(h)‖")
    ax.set_title("one GD step vs gradient flow and modified flow")
    ax.legend(fontsize=8, frameon=False)
    return fig


def _h_ticks(ax, hs) -> None:
    """Log x axis ticked at the step sizes used, written plainly (0.2, not 2×10⁻¹)."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(list(hs)))
    ax.xaxis.set_major_formatter(FixedFormatter([f"{h:g}" for h in hs]))
    ax.xaxis.set_minor_locator(NullLocator())


def _mean_curve(rows: list, name: str, h: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(training time, geometric mean over seeds) of the tracked positive metric ``name``
    (``track_*`` lists): on log axes, a single seed's spike does not dominate it."""
    tracked = [r["metrics"] for r in rows if r["metrics"].get(name)]
    if not tracked:
        return None
    length = min(len(m[name]) for m in tracked)
    times = np.asarray(tracked[0]["track_steps"][:length], dtype=float) * h
    return times, np.exp(common.mean_curve([np.log(m[name][:length]) for m in tracked]))


def _training_figure(by_h: dict, egr: list):
    from matplotlib import colormaps

    from overparam.report import new_figure

    fig, axes = new_figure(1, 3, width=16, height=4.4)
    colors = colormaps["viridis"](np.linspace(0.0, 0.85, len(by_h)))
    arms = [(f"GD h={h:g} (n={len(rs)})", rs, h, color, "-") for (h, rs), color in zip(by_h.items(), colors)]
    if egr:
        h = egr[0]["metrics"]["h"]
        arms.append((f"EGR h={h:g}, λ={egr[0]['metrics']['grad_penalty']:g} (n={len(egr)})", egr, h, "tab:red", "--"))
    for label, rows, h, color, style in arms:
        loss, rig = _mean_curve(rows, "track_loss", h), _mean_curve(rows, "track_r_ig", h)
        if loss is None or rig is None:
            continue
        axes[0].plot(*loss, linestyle=style, color=color, label=label)
        axes[1].plot(*rig, linestyle=style, color=color, label=label)
        axes[2].plot(loss[1], rig[1], linestyle=style, marker=".", markersize=3, color=color, label=label)
    axes[0].set(xlabel="training time t = step · h", ylabel="training loss (geometric mean over seeds)", yscale="log",
                title="loss along training")
    axes[1].set(xlabel="training time t = step · h", ylabel="R_IG = ‖∇L‖²/P (geometric mean over seeds)", yscale="log",
                title="implicit gradient regularizer along training")
    axes[2].set(xlabel="training loss", ylabel="R_IG", xscale="log", yscale="log",
                title="R_IG at matched training loss")
    axes[2].invert_xaxis()  # training proceeds left to right
    axes[0].legend(fontsize=8, frameon=False)
    return fig


def _flatness_figure(by_h: dict, cis: dict, egr: list, egr_cis: dict | None):
    from overparam.report import errorbar_plot, new_figure

    fig, axes = new_figure(1, 2, width=12, height=4.4)
    hs = np.array(list(by_h))
    n = [len(rs) for rs in by_h.values()]
    for ax, metric, label in ((axes[0], "lambda_max", "λ_max (top Hessian eigenvalue)"),
                              (axes[1], "test_acc", "test accuracy")):
        c = [cis[h][metric] for h in by_h]
        errorbar_plot(ax, hs, [x[0] for x in c], [x[1] for x in c], [x[2] for x in c], label="GD", n=n,
                      legend=False)
        if egr_cis is not None:
            h = egr[0]["metrics"]["h"]
            e = egr_cis[metric]
            # drawn 5% to the right of its h so that it does not cover the plain GD point
            errorbar_plot(ax, [h * 1.05], [e[0]], [e[1]], [e[2]],
                          label=f"EGR at h={h:g}, λ={egr[0]['metrics']['grad_penalty']:g}", n=len(egr),
                          color="tab:red", marker="*", linestyle="none", legend=False)
        ax.set_xscale("log")
        _h_ticks(ax, hs)
        ax.set_xlabel("step size h")
        ax.set_ylabel(f"{label}, end of training")
    grid = np.geomspace(hs.min(), hs.max(), 50)
    axes[0].plot(grid, 2 / grid, linestyle="--", color="0.5", label="stability limit 2/h")
    axes[0].set_yscale("log")
    axes[0].set_title("flatness vs step size")
    axes[1].set_title("test accuracy vs step size")
    for ax in axes:
        ax.legend(fontsize=8, frameon=False)
    return fig


STUDY = Study(
    name=NAME,
    description="implicit gradient regularization: GD follows L + (h/4)|∇L|² (one-step O(h³)), larger h -> "
                "smaller R_IG and λ_max; explicit gradient regularization at small h",
    config_type=IGRConfig,
    grid=grid,
    run_one=run_one,
    legacy_summarize=summarize,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1, "activation": "tanh"},
                 "hs": [0.5, 2.0], "time": 10.0, "track_points": 4, "one_step_hs": [0.02, 0.04, 0.08],
                 "one_step_examples": 100, "substeps": 2, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "n_train": 1000, "seed": 0},
                  "model": {"name": "mlp", "width": 64, "depth": 2, "activation": "tanh"},
                  "hs": [0.2, 0.5, 1.0, 2.0], "time": 200.0, "seeds": 5},
        # Barrett & Dherin's MNIST MLPs, at a subset the CPU can hold in full-batch GD
        "paper": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 400, "depth": 2, "activation": "tanh"},
                  "hs": [0.05, 0.1, 0.2, 0.5, 1.0], "time": 500.0, "one_step_examples": 2000, "seeds": 5},
    },
)
