"""``label_noise``: SGD on data with a fraction of flipped labels — clean examples are fitted
first, noisy ones late; early stopping catches the model in between.

After Zhang et al. 2017 ("Understanding deep learning requires rethinking generalization"),
Arpit et al. 2017 ("A closer look at memorization in deep networks"), Li, Soltanolkotabi & Oymak
2020 ("Gradient descent with early stopping is provably robust to label noise") and Liu et al.
2020 ("Early-learning regularization prevents memorization of noisy labels").

Grid: label-noise fraction p x seed. A fraction p of the training labels is replaced by a
uniformly random *incorrect* class (:func:`overparam.data.transforms.add_label_noise`); the
flipped positions are ``Dataset.noisy_indices`` (N, |N| = round(p n)), the rest are clean (C).
Unless ``data.seed`` is set, the noise draw follows the run's seed, so the CIs over seeds cover
the noise draw as well as the initialization and data order. Each run trains one model (no
batching of seeds: the measures run as a training callback); the training loop's own evaluation
runs only at the start and the end (``train.eval_every`` defaults to beyond the run's length).

Every ``record_every`` steps (and at step 0 and the last step) the callback (:class:`Tracker`)
measures, with the model in eval mode, on every training example (the gradients: on a fixed
random subset of ``grad_examples``) and on the test set, with ℓ_i the training loss of example i
against its *training* label (noisy on N). Cost per record: one forward pass over the training
and test sets, and one forward and two backward passes over the gradient subset.

- accuracy on C and on N against the noisy labels (memorization of N), and on N against the
  original labels (whether the model still predicts the true class of a mislabeled example);
- mean loss on C and N, and the noisy share of the summed loss, Σ_N ℓ_i / Σ_{N∪C} ℓ_i;
- the per-example gradient weighting. With G_S = Σ_{i∈S} ∇_θ ℓ_i (a sum, so G = G_N + G_C is
  n times the full-batch gradient of the mean loss):
    * ``noisy_grad_share`` = <G_N, G> / ||G||². The additive share of the noisy examples in the
      full-batch gradient along its own direction (the clean share is 1 minus it); equivalently
      the fraction of the first-order decrease of the summed training loss under a full-batch
      step θ -> θ - ηG that is a decrease of the noisy examples' loss (η<G_N, G> of η||G||²).
      Below 0 the step raises the noisy loss; above 1 it raises the clean loss. Compared with
      the noisy fraction |N|/n (≈ p; measured on the gradient subset): a share below it means a
      noisy example weighs less than a clean one.
    * ``noisy_grad_norm_ratio`` = ||G_N|| / ||G||; per-example contributions ||G_N||/|N| and
      ||G_C||/|C|; cos(G_N, G_C).
- test accuracy, on a validation part of the test split (``validation_fraction`` of it, a fixed
  random subset) and on the held-out rest.

Each measure is stored as the run's curve ``tracked_<name>`` (step, value); the figures read them.

Per run (:func:`run_metrics`): the first recorded step at which the accuracy on C, and on N
(noisy labels), reaches ``fit_threshold``; the early-stopping step (maximal validation accuracy)
and the held-out accuracy there and at the end; the noisy gradient share at initialization and
averaged over the records after step 0 up to the early-stopping step (the early-learning phase)
and after it (the memorization phase).

Claims (:func:`claims`, sources in ``PAPER_CLAIMS``, all qualitative) at the highest noise level
p_max, per seed then over seeds: ``noisy_fitted_late``, ``early_stopping_helps``,
``early_stopping_gain_grows`` (with p = 0 in the grid), ``noisy_weight_small_early`` and
``noisy_weight_grows``; the table reports every level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from overparam.analysis import Missing, Run, SeedTable, binomial_se, mean_ci, paired_ratio, quiet
from overparam.errors import ConfigError, as_tuple, check_number, check_positive_int
from overparam.measures.common import flatten, preserved, trainable_parameters
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import Published, above, below
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "label_noise"
SPLIT_SEED = 0  # the validation/held-out split of the test set and the gradient subset: the same in every run
QUICK_DATA = {"name": "mnist1d", "num_samples": 8000, "train_split": 0.5}  # 4000 train / 4000 test signals
# 125 divides 4000: no partial last batch, whose noisier step at this LR knocks the training accuracy down
QUICK_TRAIN = {"optimizer": "sgd", "lr": 0.2, "momentum": 0.0, "batch_size": 125, "epochs": 60}
LOOP_EVAL_EVERY = 10**9  # the loop's own evaluations (the tracker's repeated): only at the start and the end


@dataclass(frozen=True)
class LabelNoiseConfig:
    # Shared by every run; label noise is the study's axis (``label_noise``), not a data option.
    data: dict[str, Any] = field(default_factory=lambda: dict(QUICK_DATA))
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 256, "depth": 2})
    train: dict[str, Any] = field(default_factory=lambda: dict(QUICK_TRAIN))
    label_noise: tuple[float, ...] = (0.0, 0.2, 0.4)
    record_every: int = 50  # steps between measurements
    fit_threshold: float = 0.9  # accuracy at which a set of examples counts as fitted
    validation_fraction: float = 0.5  # part of the test split that picks the early-stopping step
    grad_examples: int | None = 1000  # training examples the gradients are measured on (None: all)
    seeds: int = 5

    def __post_init__(self) -> None:
        from overparam.config import RunConfig

        check_positive_int("seeds", self.seeds)
        check_positive_int("record_every", self.record_every)
        noise = common.label_noise_fractions(self.label_noise)
        if max(noise) <= 0:
            raise ConfigError(f"label_noise needs at least one fraction > 0 (the study compares noisy with clean "
                              f"examples), got {list(noise)!r}")
        check_number("fit_threshold", self.fit_threshold, minimum=0.0, maximum=1.0, open_low=True)
        check_number("validation_fraction (the rest of the test split is held out)", self.validation_fraction,
                     minimum=0.0, maximum=1.0, open_low=True, open_high=True)
        if self.grad_examples is not None:
            check_positive_int("grad_examples (or null for all training examples)", self.grad_examples, minimum=2)
        for name in ("data", "model", "train"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if "label_noise" in self.data:
            raise ConfigError(f"set label noise with the study's label_noise list (e.g. label_noise=[0, 0.2, 0.4]), "
                              f"not data.label_noise (got {self.data['label_noise']!r})")
        # the sections as a run would read them (unknown keys, bad values)
        RunConfig.from_dict({"data": self.data, "model": self.model, "train": self.train})


def validation_size(n_test: int, fraction: float) -> int:
    """Test examples in the validation part (the rest is the held-out part): in [1, n_test − 1]."""
    return min(n_test - 1, max(1, round(fraction * n_test)))


def grid(config: LabelNoiseConfig) -> list[RunSpec]:
    """noise level x seed; every distinct (data, model) is built on the meta device first."""
    settings = {"record_every": config.record_every, "fit_threshold": float(config.fit_threshold),
                "validation_fraction": float(config.validation_fraction),
                "grad_examples": config.grad_examples, "split_seed": SPLIT_SEED}
    train = {"eval_every": LOOP_EVAL_EVERY, **config.train}
    specs = [common.spec(NAME, common.run_config({**config.data, "label_noise": p}, config.model, train, seed),
                         label_noise=p, **settings)
             for p in sorted(map(float, as_tuple(config.label_noise))) for seed in range(config.seeds)]
    common.validate_specs(specs)
    return specs


# --- the measures --------------------------------------------------------------------------------


def noise_mask(dataset: Any) -> Tensor:
    """(n_train,) bool: True at the training examples whose label was flipped
    (``Dataset.noisy_indices``). Checked against the labels: exactly the positions where the
    training label differs from ``clean_y_train`` (all False without noise)."""
    mask = torch.zeros(dataset.n_train, dtype=torch.bool, device=dataset.y_train.device)
    mask[dataset.noisy_indices.to(mask.device)] = True
    if dataset.clean_y_train is not None:
        differs = dataset.y_train != dataset.clean_y_train.to(dataset.y_train.device)
        if not torch.equal(differs, mask):
            raise ConfigError("the dataset's noisy_indices do not match the labels that differ from clean_y_train")
    elif bool(mask.any()):
        raise ConfigError("the dataset lists noisy indices but has no clean labels (clean_y_train is None)")
    return mask


def per_example_loss(loss: str, outputs: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """(n,) losses ℓ_i whose mean is the training loop's batch loss
    (:func:`overparam.train.loss_function`): cross_entropy -log softmax(f(x_i))[y_i]; mse
    (1/k) Σ_j (f(x_i)_j - [y_i = j])² with one-hot targets over the k = ``num_classes`` outputs."""
    if loss == "cross_entropy":
        return F.cross_entropy(outputs, y, reduction="none")
    if loss == "mse":
        return (outputs - F.one_hot(y, num_classes).to(outputs.dtype)).pow(2).mean(dim=1)
    raise ConfigError(f"label_noise needs a classification loss; got {loss!r}, accepted: 'cross_entropy', 'mse'")


def split_gradients(model: nn.Module, x: Tensor, y: Tensor, noisy: Tensor, loss: str, num_classes: int,
                    chunk: int = 4096) -> dict[str, float]:
    """Inner products of the summed loss gradients of the noisy and the clean examples.

    With ℓ_i = ``per_example_loss`` of example i (against its label y_i) and
    G_S = Σ_{i∈S} ∇_θ ℓ_i over the trainable parameters, for S = N (``noisy`` True) and C (the
    rest): returns, in float64, ``nn`` = ||G_N||², ``cc`` = ||G_C||², ``nc`` = <G_N, G_C>. The
    model runs in eval mode (:func:`~overparam.measures.common.preserved`); ``.grad`` is not touched.

    Shapes: x (n, ...), y (n,), noisy (n,) bool. Cost: one forward and two backward passes over
    the n examples, ``chunk`` at a time; memory O(chunk activations + 2P).
    """
    params = trainable_parameters(model)
    sums = {"N": [torch.zeros_like(p) for p in params], "C": [torch.zeros_like(p) for p in params]}
    with preserved(model), torch.enable_grad():
        for start in range(0, len(x), chunk):
            xc, yc, mc = x[start:start + chunk], y[start:start + chunk], noisy[start:start + chunk]
            per_example = per_example_loss(loss, model(xc), yc, num_classes)
            parts = [(key, members) for key, members in (("N", mc), ("C", ~mc)) if bool(members.any())]
            for j, (key, members) in enumerate(parts):
                grads = torch.autograd.grad(per_example[members].sum(), params, retain_graph=j < len(parts) - 1,
                                            allow_unused=True)
                for total, g in zip(sums[key], grads):
                    if g is not None:
                        total.add_(g)
    g_n, g_c = flatten(sums["N"]).to(torch.float64), flatten(sums["C"]).to(torch.float64)
    return {"nn": float(g_n @ g_n), "cc": float(g_c @ g_c), "nc": float(g_n @ g_c)}


def gradient_weighting(nn_: float, cc: float, nc: float, n_noisy: int, n_clean: int) -> dict[str, float]:
    """From ||G_N||², ||G_C||² and <G_N, G_C> (see :func:`split_gradients`), with G = G_N + G_C:
    ``noisy_grad_share`` <G_N, G>/||G||², ``noisy_grad_norm_ratio`` ||G_N||/||G||, the per-example
    contributions ||G_N||/|N| and ||G_C||/|C|, and ``grad_cosine`` cos(G_N, G_C) (NaN where a
    norm is 0)."""
    total = nn_ + 2 * nc + cc
    nan = math.nan
    return {
        "noisy_grad_share": (nn_ + nc) / total if total > 0 else nan,
        "noisy_grad_norm_ratio": math.sqrt(nn_ / total) if total > 0 else nan,
        "noisy_grad_per_example": math.sqrt(nn_) / n_noisy if n_noisy else nan,
        "clean_grad_per_example": math.sqrt(cc) / n_clean if n_clean else nan,
        "grad_cosine": nc / math.sqrt(nn_ * cc) if nn_ > 0 and cc > 0 else nan,
    }


@torch.no_grad()
def _outputs(model: nn.Module, x: Tensor, chunk: int) -> Tensor:
    with preserved(model):
        return torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)])


class Tracker:
    """The training callback: measures (see the module docstring) at each call and appends to
    ``series`` (name -> list, one entry per call; ``series['step']`` the steps)."""

    def __init__(self, loss: str, validation_fraction: float, grad_examples: int | None, split_seed: int,
                 chunk: int) -> None:
        self.loss, self.validation_fraction = loss, validation_fraction
        self.grad_examples, self.split_seed, self.chunk = grad_examples, split_seed, chunk
        self.series: dict[str, list[float]] = {"step": []}
        self._setup: dict[str, Any] | None = None
        self.grad_noisy_fraction = math.nan  # |N|/n among the examples the gradients are measured on

    def _prepare(self, data: Any) -> dict[str, Any]:
        if data.num_classes is None:
            raise ConfigError(f"label_noise needs a classification dataset; {data.name!r} is regression")
        if data.n_test < 2:
            raise ConfigError(f"label_noise splits the test set into validation and held-out parts; it needs at "
                              f"least 2 test examples, got {data.n_test}")
        noisy = noise_mask(data)
        index = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(self.split_seed))
        index = index[:self.grad_examples or data.n_train].sort().values
        order = torch.randperm(data.n_test, generator=torch.Generator().manual_seed(self.split_seed + 1))
        validation = torch.zeros(data.n_test, dtype=torch.bool)
        validation[order[:validation_size(data.n_test, self.validation_fraction)]] = True
        clean_y = data.y_train if data.clean_y_train is None else data.clean_y_train
        self.grad_noisy_fraction = float(noisy[index.to(noisy.device)].float().mean())
        device = data.x_train.device
        return {"noisy": noisy, "clean_y": clean_y, "grad_index": index.to(device),
                "validation": validation.to(device)}

    def __call__(self, state: Any) -> None:
        data, model = state.data, state.model
        s = self._setup = self._setup or self._prepare(data)
        noisy, clean = s["noisy"], ~s["noisy"]
        outputs = _outputs(model, data.x_train, self.chunk)
        losses = per_example_loss(self.loss, outputs, data.y_train, data.num_classes)
        predictions = outputs.argmax(dim=1)
        correct = predictions == data.y_train
        values = {"clean_train_acc": float(correct[clean].float().mean()), "clean_loss": float(losses[clean].mean())}
        if bool(noisy.any()):
            total = float(losses.sum())
            values.update(noisy_train_acc=float(correct[noisy].float().mean()),
                          noisy_true_acc=float((predictions[noisy] == s["clean_y"][noisy]).float().mean()),
                          noisy_loss=float(losses[noisy].mean()),
                          noisy_loss_share=float(losses[noisy].sum()) / total if total > 0 else math.nan)
            index = s["grad_index"]
            members = noisy[index]
            grads = split_gradients(model, data.x_train[index], data.y_train[index], members, self.loss,
                                    data.num_classes, self.chunk)
            n_noisy = int(members.sum())
            values.update(gradient_weighting(grads["nn"], grads["cc"], grads["nc"], n_noisy, len(index) - n_noisy))
        hits = (_outputs(model, data.x_test, self.chunk).argmax(dim=1) == data.y_test).float()
        values.update(val_acc=float(hits[s["validation"]].mean()), heldout_acc=float(hits[~s["validation"]].mean()),
                      test_acc=float(hits.mean()))
        self.series["step"].append(state.step)
        for name, value in values.items():
            self.series.setdefault(name, []).append(value)


# --- per-run summaries of the recorded series ----------------------------------------------------


def first_step_reaching(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first step whose value is >= ``threshold`` (None if none is)."""
    return next((int(step) for step, value in zip(steps, values) if value >= threshold), None)


def early_stopping(steps: Sequence[int], validation: Sequence[float], heldout: Sequence[float]) -> dict[str, Any]:
    """The step of maximal validation accuracy (the first of ties) and the held-out accuracy
    there and at the last step; ``early_stopping_gain`` is their difference."""
    best = int(np.argmax(np.asarray(validation, dtype=float)))
    return {"early_stopping_step": int(steps[best]), "early_stopping_acc": float(heldout[best]),
            "final_heldout_acc": float(heldout[-1]), "early_stopping_gain": float(heldout[best]) - float(heldout[-1])}


def phase_means(steps: Sequence[int], values: Sequence[float], boundary: int) -> tuple[float, float]:
    """Means of the finite values recorded at 0 < step <= boundary (early) and step > boundary
    (late); NaN for a phase without any."""
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    early, late = finite & (s > 0) & (s <= boundary), finite & (s > boundary)
    return (float(v[early].mean()) if early.any() else math.nan, float(v[late].mean()) if late.any() else math.nan)


def run_metrics(series: Mapping[str, Sequence[float]], fit_threshold: float) -> dict[str, Any]:
    """The per-run metrics (module docstring) from a run's recorded series."""
    steps = [int(s) for s in series["step"]]
    out: dict[str, Any] = {"last_step": steps[-1]}
    for which in ("clean", "noisy"):
        acc = series.get(f"{which}_train_acc")
        if acc:
            out[f"{which}_fit_step"] = first_step_reaching(steps, acc, fit_threshold)
            out[f"max_{which}_train_acc"] = float(max(acc))
            out[f"final_{which}_train_acc"] = float(acc[-1])
    out.update(early_stopping(steps, series["val_acc"], series["heldout_acc"]))
    share = series.get("noisy_grad_share")
    if share:
        early, late = phase_means(steps, share, out["early_stopping_step"])
        out.update(noisy_grad_share_init=float(share[0]) if steps[0] == 0 else math.nan,
                   noisy_grad_share_early=early, noisy_grad_share_late=late, noisy_grad_share_growth=late - early)
        loss_early, loss_late = phase_means(steps, series["noisy_loss_share"], out["early_stopping_step"])
        out.update(noisy_loss_share_early=loss_early, noisy_loss_share_late=loss_late)
    return out


# --- one run -------------------------------------------------------------------------------------


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """Train with the :class:`Tracker` as a callback every ``record_every`` steps."""
    from overparam import run
    from overparam.config import RunConfig
    from overparam.train import Callback

    settings = spec.params
    config = RunConfig.from_dict(settings["run"])
    tracker = Tracker(config.train.loss, settings["validation_fraction"], settings["grad_examples"],
                      settings["split_seed"], config.train.eval_batch_size)
    record = run.run_one(config, device=device, callbacks=[Callback(tracker, every=settings["record_every"])],
                         quiet=True)
    series = tracker.series
    # the loop's early stopping (minimal loss on the whole test split) is replaced by the tracker's
    metrics = {k: v for k, v in record.metrics.items() if k != "early_stopping_test_acc"}
    metrics.update(run_metrics(series, settings["fit_threshold"]), label_noise=settings["label_noise"],
                   grad_noisy_fraction=tracker.grad_noisy_fraction)
    curves = {**record.curves, **{f"tracked_{name}": list(zip(series["step"], values))
                                  for name, values in series.items() if name != "step"}}
    return RunOutcome(record.status, metrics, curves, record.wall_time_s, record.provenance)


# --- analysis ------------------------------------------------------------------------------------


TITLE = "label_noise: clean examples first, noisy labels late, and early stopping"
METRICS = ("early_stopping_step", "early_stopping_acc", "final_heldout_acc", "early_stopping_gain",
           "final_clean_train_acc", "final_noisy_train_acc", "noisy_grad_share_init", "noisy_grad_share_early",
           "noisy_grad_share_late", "noisy_grad_share_growth", "noisy_loss_share_early", "grad_noisy_fraction")


def curve_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of curves ``values`` (S, T) and the 95% t-interval of that mean at every
    column (:func:`~overparam.analysis.mean_ci`; NaN band with one seed)."""
    cis = [mean_ci(values[:, k]) for k in range(values.shape[1])]
    return tuple(np.array([c[i] for c in cis]) for i in range(3))


def _fit_step(which: str, censor: bool) -> Callable[[Run], Any]:
    """A run's SGD steps until its ``which`` ('clean' or 'noisy') examples reach the fit threshold;
    a run that never gets there counts with its last step (a lower bound) when ``censor``, else
    as unknown (None)."""
    key = f"{which}_fit_step"
    return lambda run: run.metrics.get("last_step") if censor and run.metrics.get(key) is None else run.metrics.get(key)


def _heldout_size(run: Run) -> float:
    n_test = run.metric("n_test")  # NaN when not recorded
    return n_test - validation_size(int(n_test), run.settings["validation_fraction"]) if n_test >= 2 else math.nan


@dataclass
class LabelNoiseAnalysis:
    """The finished runs. Every interval is of the mean over seeds at one noise level p; list
    entries follow ``table.axis``."""

    table: SeedTable  # seed x label-noise fraction p (ascending)
    # per METRICS name (steps in SGD steps; accuracies, gains and shares as fractions), "clean_fit" and "noisy_fit"
    # (SGD steps to the fit threshold, see _fit_step: noisy censored, clean not) and "share_excess_early" (the
    # early-learning noisy gradient share minus the noisy fraction of the examples it is measured on)
    cis: dict[str, list[CI]]
    never: dict[str, list[int]]  # "clean" / "noisy": runs whose examples never reached the fit threshold
    noisy: list[bool]  # whether the runs at p have flipped labels (else their noisy-example entries mean nothing)
    fit_ratio: list[CI]  # noisy_fit / clean_fit: geometric mean of the per-seed ratios (log-t)
    gain_growth: CI | None  # early-stopping gain at p_max minus at p = 0, paired by seed; None without p = 0
    heldout: int | None  # test examples in the held-out part (None when the runs do not record n_test)
    gain_se: float  # binomial standard error (a fraction) the held-out part adds to the gain at p_max
    growth_se: float | None  # ... and to gain_growth


def _gain_se(table: SeedTable, p: float, heldout: int | None) -> float:
    """The binomial SE of the early-stopping gain at p: of the difference of the two held-out accuracies."""
    acc = [float(np.nanmean(table.at(m, p))) for m in ("early_stopping_acc", "final_heldout_acc")]
    return binomial_se(acc[0], acc[1], heldout or 0, scale=1.0)


def analyze(runs: list[Run], config: LabelNoiseConfig) -> LabelNoiseAnalysis | Missing:
    done = [r for r in runs if "early_stopping_gain" in r.metrics]
    if not done:
        return Missing(TITLE, "No finished runs yet.")
    table = SeedTable(done, lambda run: float(run.settings["label_noise"]))
    # censoring the noisy step (a lower bound) can only understate "noisy fitted late"
    clean, noisy = _fit_step("clean", censor=False), _fit_step("noisy", censor=True)
    cis = {m: table.cis(m) for m in METRICS}
    cis.update(clean_fit=table.cis(clean), noisy_fit=table.cis(noisy), share_excess_early=table.cis(
        lambda run: run.metric("noisy_grad_share_early") - run.metric("grad_noisy_fraction")))
    never = {w: table.counts(lambda run, w=w: 1.0 if run.metrics.get(f"{w}_fit_step") is None else None)
             for w in ("clean", "noisy")}
    ratios = [paired_ratio(table[noisy][:, j], table[clean][:, j]) for j in range(len(table))]
    top = table.axis[-1]
    sizes = table.at(_heldout_size, top)
    heldout = int(np.nanmax(sizes)) if np.isfinite(sizes).any() else None
    gain_se = _gain_se(table, top, heldout)
    growth = growth_se = None
    if 0.0 in table.axis and top > 0:
        growth = table.difference("early_stopping_gain", top, 0.0)
        growth_se = math.hypot(gain_se, _gain_se(table, 0.0, heldout))  # four accuracies on the same part
    noisy_labels = [c > 0 for c in table.counts(lambda run: 1.0 if "noisy_fit_step" in run.metrics else None)]
    return LabelNoiseAnalysis(table, cis, never, noisy_labels, ratios, growth, heldout, gain_se, growth_se)


# --- claims --------------------------------------------------------------------------------------


PAPER_CLAIMS = {  # all qualitative: the sources state directions, not numbers
    "noisy_fitted_late": Published("networks fit the clean examples first and memorize noisy labels later (and, "
                                   "Zhang et al. 2017, eventually fit them all)", "Arpit et al. 2017", above(1.0)),
    "early_stopping_helps": Published(
        "test accuracy peaks before the noisy labels are memorized, so early stopping is robust to label noise",
        "Li, Soltanolkotabi & Oymak 2020; Arpit et al. 2017", above(0.0)),
    "early_stopping_gain_grows": Published("early stopping matters because of the noise: without noise, late training "
                                           "costs little", "Li, Soltanolkotabi & Oymak 2020", above(0.0)),
    "noisy_weight_small_early": Published("in the early-learning phase the gradient is dominated by the clean "
                                          "examples", "Liu et al. 2020 (ELR)", below(0.0)),
    "noisy_weight_grows": Published(
        "later, the noisy examples' gradient dominates, and they are memorized", "Liu et al. 2020 (ELR)", above(0.0)),
}


def claims(a: LabelNoiseAnalysis, config: LabelNoiseConfig) -> list[Claim]:
    """The claims at the highest noise level p_max (none until its runs have noisy labels)."""
    if not a.noisy[-1]:
        return []
    top, cis = a.table.axis[-1], {name: values[-1] for name, values in a.cis.items()}
    where = f"at p = {top:g}"

    def judged(name: str, statement: str, ci: CI | None, **extra: Any) -> list[Claim]:
        """The claim ``name`` as a list: empty when ``ci`` is None (no interval)."""
        return [] if ci is None else [Claim.judged(f"{NAME}.{name}", NAME, statement, PAPER_CLAIMS[name], ci, **extra)]

    return [
        *judged("noisy_fitted_late",
                f"Noisy labels are fitted late {where}: steps until the training accuracy on the flipped examples "
                f"(against their noisy labels) reaches {config.fit_threshold:.0%} / steps until the clean examples "
                f"reach it > 1 (geometric mean of the per-seed ratios; a run that never gets there counts with its "
                f"last step, a lower bound).", a.fit_ratio[-1],
                details={"noisy_never_fitted": a.never["noisy"][-1], "clean_never_fitted": a.never["clean"][-1]}),
        *judged("early_stopping_helps",
                f"Early stopping helps under label noise {where}: held-out test accuracy (fraction) at the "
                f"early-stopping step (maximal accuracy on a separate validation part of the test split) minus at the "
                f"end of training > 0.", cis["early_stopping_gain"], test_examples=a.heldout, binomial_se=a.gain_se),
        *judged("early_stopping_gain_grows",  # needs p = 0 in the grid
                f"The gain from early stopping is larger with label noise p = {top:g} than without: gain(p = {top:g}) "
                f"- gain(p = 0) > 0 (fractions; paired by seed: same initialization and data order).",
                a.gain_growth, test_examples=a.heldout, binomial_se=a.growth_se),
        *judged("noisy_weight_small_early",
                f"During early learning the noisy examples carry less than their share of the gradient {where}: "
                f"<G_N, G>/||G||² (G_N the summed loss gradient of the noisy examples, G of all) averaged over the "
                f"records up to the early-stopping step, minus the noisy fraction of the examples it is measured on, "
                f"< 0.", cis["share_excess_early"]),
        *judged("noisy_weight_grows",
                f"The noisy examples' share of the gradient grows once early learning is over {where}: mean "
                f"<G_N, G>/||G||² after the early-stopping step minus up to it > 0.", cis["noisy_grad_share_growth"]),
    ]


# --- report --------------------------------------------------------------------------------------


def render(a: LabelNoiseAnalysis, claims: list[Claim], config: LabelNoiseConfig) -> list[Section]:
    train = config.train
    setup = (f"{config.model.get('name')} on {config.data.get('name')}, {train.get('optimizer', 'sgd')} "
             f"(lr {train.get('lr')}, momentum {train.get('momentum', 0.9)}, batch {train.get('batch_size')}, "
             f"{train.get('epochs', train.get('steps'))} {'epochs' if 'epochs' in train else 'steps'}), measured every "
             f"{config.record_every} steps; fit threshold {config.fit_threshold:.0%}. Means over seeds with 95% "
             f"t-intervals (the noisy/clean ratio: geometric mean of the per-seed ratios, log-t).")
    verdicts = {c.id.removeprefix(f"{NAME}."): c.verdict for c in claims}
    text = f"{setup}\n\n{_table(a)}\n\n{_reading(a, config, verdicts)}"
    figures = [("label_noise_fitting", _figure_fitting(a, config))]
    if any(a.noisy):
        figures.append(("label_noise_weighting", _figure_weighting(a)))
    return [Section(TITLE, text, figures, claims)]


def _table(a: LabelNoiseAnalysis) -> str:
    header = ["p", "n", "steps to fit clean", "steps to fit noisy", "noisy/clean steps", "final acc clean / noisy",
              "early-stop step", "test acc at early stop", "test acc at end", "gain",
              "noisy grad share: init", "early", "late", "noisy fraction"]
    def shown(text: str, j: int) -> str:  # the noisy-example cells of a level without noisy labels: "—"
        return text if a.noisy[j] else "—"

    body = []
    for j, (p, n) in enumerate(zip(a.table.axis, a.table.n_runs())):
        c = {name: values[j] for name, values in a.cis.items()}
        clean_never, noisy_never = a.never["clean"][j], a.never["noisy"][j]
        body.append([
            f"{p:g}", n, common.ci_text(c["clean_fit"], 4) + (f" ({clean_never} never)" if clean_never else ""),
            shown(common.ci_text(c["noisy_fit"], 4) + (f" ({noisy_never} never: last step)" if noisy_never else ""), j),
            shown(common.ci_text(a.fit_ratio[j], 3), j),
            f"{common.fmt(c['final_clean_train_acc'][0], 3)} / "
            + shown(common.fmt(c["final_noisy_train_acc"][0], 3), j),
            common.ci_text(c["early_stopping_step"], 4),
            *(common.ci_text(c[m], 3) for m in ("early_stopping_acc", "final_heldout_acc", "early_stopping_gain")),
            *(shown(common.ci_text(c[m], 3), j) for m in ("noisy_grad_share_init", "noisy_grad_share_early",
                                                         "noisy_grad_share_late")),
            shown(common.fmt(c["grad_noisy_fraction"][0], 3), j)])
    return common.table(header, body)


def _reading(a: LabelNoiseAnalysis, config: LabelNoiseConfig, verdicts: dict[str, str]) -> str:
    """What the table's columns mean, the noisy loss share at p_max (in no column), what the
    gradient-share verdicts (``verdicts``: claim name -> verdict) say together, and the caveats."""
    if not a.noisy[-1]:
        return "No finished run with label noise yet."
    c = {name: values[-1] for name, values in a.cis.items()}
    text = ("Noisy/clean steps above 1: the flipped examples are memorized after the clean ones are fitted. The "
            "gain is the held-out accuracy early stopping saves; without noise (p = 0) a gain would be ordinary "
            "overfitting, and the held-out accuracy there bounds what early stopping can recover. A noisy gradient "
            "share below the noisy fraction means a noisy example weighs less in the gradient than a clean one (init: "
            "step 0; early: the records after it up to the early-stopping step; late: after that step). At p = "
            f"{a.table.axis[-1]:g} the noisy examples' share of the summed loss averaged "
            f"{common.ci_text(c['noisy_loss_share_early'], 3)} early.")
    small, init = verdicts.get("noisy_weight_small_early"), c["noisy_grad_share_init"]
    if small == "not_reproduced":
        text += (" So " + ("a noisy example weighs less than a clean one only at initialization; "
                           if init.decided and init.high < c["grad_noisy_fraction"][0] else "")
                 + "the noisy examples, whose losses are larger, carry more than their share of the gradient already "
                 "during early learning" + (", and their share grows further as they are memorized."
                                            if verdicts.get("noisy_weight_grows") == "reproduced" else "."))
    elif small == "reproduced":
        text += " So during early learning a noisy example weighs less in the gradient than a clean one."
    return text + (
        "\n\nCaveats: the early-stopping step is chosen on the validation part of the test split and the accuracy "
        "reported on the held-out part, so the selection does not inflate the gain, but only recorded steps can be "
        "chosen. The noise draw differs between seeds unless data.seed is set, so the intervals include it. Steps to "
        f"fit depend on the threshold and the recording interval ({config.record_every} steps). The gradient shares "
        "are measured on " + (f"a fixed subset of {config.grad_examples}" if config.grad_examples else "all")
        + " training examples, in eval mode, between SGD steps; single records are noisy, hence the phase averages.")


def _tracked(a: LabelNoiseAnalysis, name: str, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps (K,), values (S', K)) of the tracked measure ``name`` (the stored curve
    ``tracked_<name>``) at the j-th noise level, over the seeds whose run recorded it. The
    per-example gradient ratio (‖G_N‖/|N|) / (‖G_C‖/|C|) is ``per_example_ratio``."""
    if name == "per_example_ratio":
        steps, noisy = a.table.curve("tracked_noisy_grad_per_example")
        with quiet():
            values = noisy / a.table.curve("tracked_clean_grad_per_example")[1]
    else:
        steps, values = a.table.curve(f"tracked_{name}")
    values = values[:, j] if values.size else np.zeros((0, 0))
    return steps, values[np.isfinite(values).any(axis=1)]


def _band(ax: Any, a: LabelNoiseAnalysis, name: str, j: int, color: Any, alpha: float, label: str,
          **line: Any) -> int:
    """Plot the mean over seeds of the tracked measure ``name`` at the j-th noise level with its
    95% band (:func:`curve_band`); ``{n}`` in ``label`` becomes the number of seeds, returned."""
    steps, values = _tracked(a, name, j)
    if len(values):
        mean, low, high = curve_band(values)
        ax.plot(steps, mean, color=color, label=label.format(n=len(values)), **line)
        ax.fill_between(steps, low, high, color=color, alpha=alpha, linewidth=0)
    return len(values)


def _figure_fitting(a: LabelNoiseAnalysis, config: LabelNoiseConfig):
    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, len(a.table), width=5.2 * len(a.table), height=4.2, squeeze=False)
    lines = (("clean_train_acc", "train acc, clean examples", "tab:blue", "-"),
             ("noisy_train_acc", "train acc, noisy examples (noisy labels)", "tab:red", "-"),
             ("noisy_true_acc", "noisy examples predicted as their true class", "tab:red", ":"),
             ("heldout_acc", "test acc (held-out part)", "black", "-"))
    for j, (ax, p) in enumerate(zip(axes[0], a.table.axis)):
        n = max(_band(ax, a, name, j, color, 0.18, label, linestyle=style) for name, label, color, style in lines)
        stop = a.cis["early_stopping_step"][j][0]
        if math.isfinite(stop):
            ax.axvline(stop, color="0.4", linestyle="--", linewidth=1, label="mean early-stopping step")
        ax.axhline(config.fit_threshold, color="0.7", linestyle=":", linewidth=1)
        ax.set(ylim=(0, 1.02), xlabel="SGD step", ylabel="accuracy (mean over seeds, 95% CI band)",
               title=f"label noise p = {p:g} (n={n} seeds)")
    # the lowest noise level's panel has no noisy-example curves: its lower right stays empty for the legend
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][0].legend(handles, labels, fontsize=8, frameon=False, loc="lower right")
    return fig


def _figure_weighting(a: LabelNoiseAnalysis):
    from matplotlib.ticker import FuncFormatter

    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, 3, width=16, height=4.4)
    levels = [j for j in range(len(a.table)) if a.noisy[j]]
    colors = dict(zip(levels, ("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")))
    panels = (("noisy_grad_share", "noisy share of the gradient  <G_N, G>/‖G‖²",
               "gradient share (dotted: noisy fraction; dashed: early stop)"),
              ("noisy_loss_share", "noisy share of the summed loss  Σ_N ℓ / Σ ℓ",
               "loss share (dotted: noise fraction p)"),
              ("per_example_ratio", "per-example gradient: (‖G_N‖/|N|) / (‖G_C‖/|C|)",
               "noisy vs clean per-example gradient (dotted: equal)"))
    for ax, (name, ylabel, title) in zip(axes, panels):
        for j in levels:
            p, color, stop = a.table.axis[j], colors.get(j), a.cis["early_stopping_step"][j][0]
            if not _band(ax, a, name, j, color, 0.2, f"p = {p:g} (n={{n}})"):
                continue
            if name != "per_example_ratio":
                fraction = a.cis["grad_noisy_fraction"][j][0] if name == "noisy_grad_share" else p
                ax.axhline(fraction, color=color, linestyle=":", linewidth=1.2)
            if math.isfinite(stop):
                ax.axvline(stop, color=color, linestyle="--", linewidth=0.9, alpha=0.7)
        ax.set(xlabel="SGD step", ylabel=ylabel, title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
    axes[2].set_yscale("log")
    for axis in (axes[2].yaxis.set_major_formatter, axes[2].yaxis.set_minor_formatter):
        axis(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[2].axhline(1.0, color="0.5", linestyle=":", linewidth=1.2)
    return fig


STUDY = Study(
    name=NAME,
    description="SGD with flipped labels: clean examples fitted first, noisy ones late; early stopping; "
                "the noisy examples' share of the gradient over training",
    config_type=LabelNoiseConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100},
                 "model": {"name": "mlp", "width": 32, "depth": 1},
                 "train": {"optimizer": "sgd", "lr": 0.2, "momentum": 0.0, "batch_size": 50, "epochs": 3},
                 "label_noise": [0.0, 0.4], "record_every": 4, "grad_examples": 100, "seeds": 2},
        "quick": {"data": dict(QUICK_DATA), "model": {"name": "mlp", "width": 256, "depth": 2},
                  "train": dict(QUICK_TRAIN), "label_noise": [0.0, 0.2, 0.4], "record_every": 50,
                  "grad_examples": 1000, "seeds": 5},
        # CIFAR-10 with up to 80% noise, as in Zhang et al. 2017 and Arpit et al. 2017; one record per epoch
        "paper": {"data": {"name": "cifar10", "standardize": "feature"}, "model": {"name": "resnet18", "width": 64},
                  "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 128, "epochs": 200,
                            "eval_batch_size": 500},
                  "label_noise": [0.0, 0.2, 0.4, 0.6, 0.8], "record_every": 391, "grad_examples": 5000, "seeds": 5},
    },
)
