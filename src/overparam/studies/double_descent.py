"""``double_descent``: test error against model size, across the interpolation threshold.

The paper's experiment 3 (arXiv 2604.07603; after Belkin et al. 2019, "Reconciling modern
machine-learning practice and the classical bias-variance trade-off", and Nakkiran et al. 2019,
"Deep double descent"): width sweeps of an MLP and a CNN (CNN1D on MNIST-1D, the CNN5 family
on images), each trained to (near) zero training error where it can be, with and without label
noise. Grid: family x width x label noise x seed; one dataset (subset and noisy labels) for all
seeds when ``data.seed`` is set, so seeds differ in initialization and data order only and are
trained together as one vectorized model.

The ``quick`` and ``notebook`` presets follow the MNIST-1D double-descent protocol (Greydanus & Kobak, "Scaling
down deep learning with MNIST-1D", ICML 2024; greydanus/mnist1d, notebooks/deep-double-descent.ipynb):
MNIST-1D generated with 16000 samples and train_split 0.25 (4000 train / 12000 test, the mnist1d
package's generator seed 42, the notebook's, so with the same mnist1d version the examples are its own);
MLP Linear(40, h)-ReLU-Linear(h, h)-ReLU-Linear(h, 10) (``mlp_depth`` 2) and the notebook's CNN
(overparam's ``cnn1d``: Conv1d(1, c, 5, s2, p1)-ReLU-Conv1d(c, c, 3, s2, p1)-ReLU-Conv1d(c, c, 3,
s2, p1)-ReLU-Flatten-Linear(5c, 10)); SGD lr 0.01, momentum 0.9, batch 100, reshuffled every
epoch, 500 epochs, cross-entropy, no weight decay, the final model measured; the MLP without and
with 15% label noise, the CNN with 15% only (``cnn_label_noise``). Where it differs from the
notebook:

- widths: ``notebook`` runs the notebook's grids; ``quick`` a subset of the MLP's and no CNN, which does
  not fit the suite's 15 minutes on 2 CPU cores (the preset's comment gives the measured costs);
- MLP init: overparam's MLP draws weights N(0, w_std^2 / fan_in) and biases N(0, b_std^2); the
  preset's ``mlp_options`` w_std = 1/sqrt(3) gives PyTorch's default weight variance
  (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) has variance 1/(3 fan_in)), but Gaussian, and the biases
  start at 0 instead of U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The CNN is initialised exactly as
  PyTorch's default (from a seeded generator);
- label noise: overparam replaces exactly round(0.15 * 4000) = 600 labels, chosen without
  replacement, by a uniformly random *other* class, one draw (``data.seed`` 0) shared by all
  seeds and widths; the notebook resamples each label with probability 0.15 from all 10 classes
  (numpy's unseeded global RNG, one draw for all its noisy runs), so about 13.5% of its labels
  (540 +- 22) end up wrong and the rest of the resampled ones keep their class;
- seeds: 5 per grid point (the notebook: one run per width), differing in init and data order.

Per run: final train/test error and loss, the number of parameters and, with label noise, how
many of the noisy training labels the model fits (``noisy_train_acc``: accuracy on the flipped
examples against their *noisy* labels; ``noisy_clean_acc``: against their original labels;
``clean_train_acc``: accuracy on the untouched examples).

Located on the mean curve over seeds, per family and noise level (:func:`locate`): the
interpolation threshold, the smallest width whose mean train error is <= ``interpolation_error``
(default 1%; none when no width gets there); the sweet spot, the width of minimal mean test error
among the widths up to the threshold (all widths without one), the best model of the classical,
under-parameterized regime; the peak, the width of maximal mean test error beyond the sweet spot
when it is above the sweet spot's (not the global maximum: a tiny model that underfits can have
the largest test error of all, the classical regime's first descent), none when test error never
rises beyond the sweet spot. Each is shown as a grid bracket (:func:`~overparam.analysis.locate_on_grid`;
for the threshold: the last width that does not interpolate and the first that does) with the
fraction of seed resamples (each seed keeping its whole width curve) that pick the same width.

Claims (``double_descent.<family>.noise<pct>.<what>``, noise > 0 only; statements in :func:`_curve_claims`,
sources in ``PAPER_CLAIMS``): ``peak_near_threshold`` (log2(peak width / threshold width), both
relocated on seed resamples), ``falls_beyond_peak`` (test error at the largest width minus at the peak)
and ``largest_beats_underparameterized`` (test error at the largest width minus at the sweet spot, in
percentage points: the over-parameterized model beats the classical regime's best).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from overparam.analysis import (NUM_RESAMPLES, Located, Missing, Run, SeedTable, binomial_se, group,
                                locate_on_grid, quiet, resample_seeds, resampled_ci)
from overparam.errors import ConfigError, as_tuple, check_number, check_numbers, check_positive_int, choice_error
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import Published, below, between
from overparam.studies import common
from overparam.studies.base import RunSpec, Study

NAME = "double_descent"
FAMILIES = ("mlp", "cnn")
CNN_MODELS = ("cnn1d", "cnn5", "resnet18")
NAKKIRAN = "Nakkiran et al. 2019"
MNIST1D = "Greydanus & Kobak 2024 (MNIST-1D, ICML), double-descent figure"


@dataclass(frozen=True)
class DoubleDescentConfig:
    # Shared by every run; label noise is the study's axis (``label_noise``), not a data option.
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 2000, "seed": 0})
    train: dict[str, Any] = field(default_factory=lambda: {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": 100})
    models: tuple[str, ...] = ("mlp", "cnn")  # families: 'mlp', 'cnn'
    mlp_widths: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    mlp_depth: int = 1  # hidden layers of the MLP
    mlp_options: dict[str, Any] = field(default_factory=dict)  # other options of the mlp model, e.g. {"w_std": 0.577}
    cnn_model: str = "cnn1d"  # the CNN family: cnn1d (MNIST-1D) | cnn5 (images) | resnet18 (images)
    cnn_widths: tuple[int, ...] = (4, 8, 16, 32)  # channels (cnn1d) or the channel scale k (cnn5, resnet18)
    cnn_data: dict[str, Any] = field(default_factory=dict)  # overrides of ``data`` for the CNN runs
    cnn_train: dict[str, Any] = field(default_factory=dict)  # overrides of ``train`` for the CNN runs
    label_noise: tuple[float, ...] = (0.0, 0.15)
    cnn_label_noise: tuple[float, ...] | None = None  # the CNN's noise levels; None: label_noise
    interpolation_error: float = 0.01  # mean train error at or below which a width "interpolates"
    seeds: int = 5

    def __post_init__(self) -> None:
        from overparam.config import RunConfig

        check_positive_int("seeds", self.seeds)
        check_positive_int("mlp_depth", self.mlp_depth)
        models = as_tuple(self.models)
        if not models or len(set(models)) != len(models):
            raise ConfigError(f"models must be a non-empty list of families without repeats, got {self.models!r}; "
                              f"accepted: {list(FAMILIES)}")
        if self.cnn_model not in CNN_MODELS:
            raise choice_error("cnn_model", self.cnn_model, CNN_MODELS)
        for family in models:  # a threshold and a peak need points on both sides
            if family not in FAMILIES:
                raise choice_error("model family", family, FAMILIES)
            check_numbers(f"{family}_widths", getattr(self, f"{family}_widths"), at_least=3, integer=True, minimum=1)
        common.label_noise_fractions(self.label_noise)
        if self.cnn_label_noise is not None:
            common.label_noise_fractions(self.cnn_label_noise)
        if not isinstance(self.mlp_options, dict):
            raise ConfigError(f"mlp_options must be a mapping of mlp model options, got {self.mlp_options!r}")
        for key in ("name", "width", "depth"):
            if key in self.mlp_options:
                raise ConfigError(f"mlp_options cannot set {key!r} (got {self.mlp_options[key]!r}): the widths are "
                                  "mlp_widths and the depth mlp_depth")
        check_number("interpolation_error (a train error)", self.interpolation_error, minimum=0.0, maximum=1.0,
                     open_high=True)
        for name in ("data", "train", "cnn_data", "cnn_train"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a mapping, got {value!r}")
            if name.endswith("data") and "label_noise" in value:
                raise ConfigError(f"set label noise with the study's label_noise list (e.g. label_noise=[0, 0.15]), "
                                  f"not {name}.label_noise (got {value['label_noise']!r})")
        # the data and train sections as a run would read them (unknown keys, bad values)
        for family in dict.fromkeys(("mlp", *models)):
            RunConfig.from_dict(dict(zip(("data", "train"), _sections(self, family))))


def _sections(config: DoubleDescentConfig, family: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data and train sections of a family's runs (the CNN's with their overrides)."""
    if family == "mlp":
        return dict(config.data), dict(config.train)
    return {**config.data, **config.cnn_data}, {**config.train, **config.cnn_train}


def _noise_levels(config: DoubleDescentConfig, family: str) -> tuple[float, ...]:
    """The label-noise fractions a family is trained at (the CNN's may be its own list)."""
    if family == "cnn" and config.cnn_label_noise is not None:
        return tuple(float(p) for p in as_tuple(config.cnn_label_noise))
    return tuple(float(p) for p in as_tuple(config.label_noise))


def _run_config(config: DoubleDescentConfig, family: str, width: int, noise: float, seed: int):
    model = {"name": "mlp", **config.mlp_options, "width": width, "depth": config.mlp_depth} if family == "mlp" else {
        "name": config.cnn_model, "width": width}
    data, train = _sections(config, family)
    return common.run_config({**data, "label_noise": float(noise)}, model, train, seed)


def grid(config: DoubleDescentConfig) -> list[RunSpec]:
    """family x label noise x width x seed; every distinct (data, model) is built on the meta
    device first, so a bad width, model option or dataset fails before any run starts."""
    specs = [common.spec(NAME, _run_config(config, family, w, p, seed), family=family, width=w,
                         label_noise=float(p))
             for family in as_tuple(config.models) for p in _noise_levels(config, family)
             for w in sorted(as_tuple(getattr(config, f"{family}_widths"))) for seed in range(config.seeds)]
    common.validate_specs(specs)
    return specs


# --- one run -------------------------------------------------------------------------------------


def _measure(spec: RunSpec, record: Any) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """Errors, and with label noise the fit to the noisy and the clean training examples (one
    forward pass over the training set)."""
    from overparam.train.loop import evaluate

    metrics, dataset, loss = record.metrics, record.dataset, common.loss_fn(record)
    out: dict[str, Any] = {f"{split}_error": 1.0 - metrics[f"{split}_acc"] for split in ("train", "test")
                           if f"{split}_acc" in metrics}
    noisy = dataset.noisy_indices
    if len(noisy) and dataset.clean_y_train is not None:
        mask = torch.ones(dataset.n_train, dtype=torch.bool, device=noisy.device)
        mask[noisy] = False
        x = dataset.x_train
        out["noisy_train_acc"] = evaluate(record.model, x[noisy], dataset.y_train[noisy], loss)["acc"]
        out["noisy_clean_acc"] = evaluate(record.model, x[noisy], dataset.clean_y_train[noisy], loss)["acc"]
        if bool(mask.any()):
            out["clean_train_acc"] = evaluate(record.model, x[mask], dataset.y_train[mask], loss)["acc"]
    return out, {}


# --- the locator ---------------------------------------------------------------------------------


def threshold_index(train_error: np.ndarray, tolerance: float) -> np.ndarray:
    """Index of the first (smallest) width whose mean train error is <= ``tolerance``, along the
    last axis of ``train_error`` (..., W); -1 where no width gets there (NaN never does)."""
    ok = np.nan_to_num(np.asarray(train_error, dtype=float), nan=np.inf) <= tolerance
    return np.where(ok.any(axis=-1), ok.argmax(axis=-1), -1)


def sweet_spot_index(test_error: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Index of the width of minimal mean test error among the widths up to the threshold (all
    widths where there is none, ``threshold = -1``): the best model of the classical regime.
    NaN is ignored; the first of equal minima."""
    test = np.nan_to_num(np.asarray(test_error, dtype=float), nan=np.inf)
    columns = np.arange(test.shape[-1])
    limit = np.where(np.asarray(threshold) >= 0, threshold, test.shape[-1] - 1)
    return np.where(columns <= np.asarray(limit)[..., None], test, np.inf).argmin(axis=-1)


def peak_index(test_error: np.ndarray, start: np.ndarray | int = 0) -> np.ndarray:
    """Index of the width of maximal mean test error among the widths from ``start`` on (NaN
    ignored; the first of equal maxima)."""
    test = np.nan_to_num(np.asarray(test_error, dtype=float), nan=-np.inf)
    columns = np.arange(test.shape[-1])
    return np.where(columns >= np.asarray(start)[..., None], test, -np.inf).argmax(axis=-1)


def _statistics(widths: np.ndarray, train: np.ndarray, test: np.ndarray, tolerance: float) -> dict[str, np.ndarray]:
    """Threshold, sweet spot and peak indices (peak -1: test error never rises beyond the sweet
    spot) and log2(peak width / threshold width) from mean errors (..., W), vectorized over the
    leading axes."""
    t = threshold_index(train, tolerance)
    sweet = sweet_spot_index(test, t)
    p = peak_index(test, sweet)
    rises = p != sweet
    log_widths = np.log2(widths.astype(float))
    ratio = np.where(t >= 0, np.where(rises, log_widths[p] - log_widths[np.maximum(t, 0)], np.inf), -np.inf)
    return {"threshold": t, "sweet": sweet, "peak": np.where(rises, p, -1), "log2_peak_over_threshold": ratio}


@dataclass
class Location:
    """Where one curve's threshold, sweet spot and peak lie on its widths: picked on the mean
    curve over all seeds (index -1: none), with the bracket of widths and the fraction of seed
    resamples that pick the same width; and log2(peak width / threshold width) with its 95%
    percentile interval over those resamples (n = seeds; NaN bounds with fewer than two)."""

    threshold: Located  # between the last width that does not interpolate and the first that does
    sweet: Located
    peak: Located  # index -1: no peak
    log2_peak_over_threshold: CI  # -inf: no width interpolates; +inf: no peak


def locate(train_error: np.ndarray, test_error: np.ndarray, widths: np.ndarray, tolerance: float = 0.01,
           num_resamples: int = NUM_RESAMPLES, seed: int = 0) -> Location:
    """Threshold, sweet spot, peak and their log2 width ratio from per-seed errors ``(S, W)``
    (NaN where missing) at ``widths`` (W,), located again on every seed resample
    (:func:`~overparam.analysis.resample_seeds`: each seed keeps its whole width curve)."""
    widths = np.asarray(widths)
    estimate, draws = resample_seeds(
        {"train": np.asarray(train_error, dtype=float), "test": np.asarray(test_error, dtype=float)},
        lambda means: _statistics(widths, means["train"], means["test"], tolerance), num_resamples, seed)
    n = len(train_error)

    def where(key: str, kind: str) -> Located:
        return locate_on_grid(widths, int(estimate[key]), None if draws is None else draws[key], n, kind=kind)

    ratio = resampled_ci(estimate["log2_peak_over_threshold"],
                         None if draws is None else draws["log2_peak_over_threshold"], n)
    return Location(where("threshold", "crossing"), where("sweet", "extremum"), where("peak", "extremum"), ratio)


# --- analysis ------------------------------------------------------------------------------------

TITLE = "double_descent: test error vs model size around the interpolation threshold"


@dataclass
class CurveAnalysis:
    """One family at one label-noise level, across its widths (W of them, ascending)."""

    family: str
    noise: float  # label-noise fraction
    table: SeedTable  # the finished runs, seed x width
    widths: np.ndarray  # (W,) int
    params: np.ndarray  # (W,) int, parameters of each width
    train_mean: np.ndarray  # (W,) mean train error over seeds (a fraction)
    test_mean: np.ndarray  # (W,) mean test error over seeds
    # per width, mean over seeds with 95% t-interval: "train_error", "test_error" (+ "noisy_/clean_train_acc")
    cis: dict[str, list[CI]]
    located: Location
    fall: CI  # test error at the largest width minus at the peak, paired by seed (NaN bounds without a peak)
    fall_se: float  # the test set's binomial standard error of that difference (NaN: unknown)
    n_test: int | None  # test examples
    # test error at the largest width minus at the sweet spot, in percentage points, paired by seed (NaN
    # bounds when no width interpolates or the sweet spot is the largest width), and its binomial SE (pp)
    beats: CI
    beats_se: float


@dataclass
class DoubleDescentAnalysis:
    curves: dict[tuple[str, float], CurveAnalysis]  # (family, noise) -> curve (>= 2 widths), family then noise order


def analyze(runs: list[Run], config: DoubleDescentConfig) -> DoubleDescentAnalysis | Missing:
    groups = group(runs, lambda r: (r.settings["family"], float(r.settings["label_noise"])))
    tables = {key: SeedTable(groups[key], lambda r: int(r.settings["width"]))
              for key in sorted(groups, key=lambda k: (FAMILIES.index(k[0]) if k[0] in FAMILIES else 99, k[1]))}
    curves = {key: _curve(key, table, config.interpolation_error) for key, table in tables.items() if len(table) >= 2}
    if not curves:
        return Missing(TITLE, "No family has finished runs at two or more widths yet.")
    return DoubleDescentAnalysis(curves)


def _curve(key: tuple[str, float], table: SeedTable, tolerance: float) -> CurveAnalysis:
    widths = np.asarray(table.axis)
    with quiet():
        params = np.nan_to_num(np.nanmax(table["num_parameters"], axis=0)).astype(np.int64)
        n_test = np.nanmax(table["n_test"])
    n_test = int(n_test) if math.isfinite(n_test) else None
    noisy = ("noisy_train_acc", "clean_train_acc") if np.isfinite(table["noisy_train_acc"]).any() else ()
    cis = {name: table.cis(name) for name in ("train_error", "test_error", *noisy)}
    located, test = locate(table["train_error"], table["test_error"], widths, tolerance), table.mean("test_error")
    p = located.peak.index  # -1: no peak, so no fall to measure
    fall, se = (CI(0.0, math.nan, math.nan, n=len(table.seeds), method="none: no peak"), math.nan) if p < 0 else (
        table.difference("test_error", table.axis[-1], table.axis[p]),
        binomial_se(test[-1], test[p], n_test, scale=1.0))
    beats, beats_se = _beats_sweet_spot(table, located, test, n_test)
    return CurveAnalysis(key[0], key[1], table, widths, params, table.mean("train_error"), test, cis, located,
                         fall, se, n_test, beats, beats_se)


def _beats_sweet_spot(table: SeedTable, located: Location, test: np.ndarray, n_test: int | None) -> tuple[CI, float]:
    """Test error at the largest width minus at the sweet spot (the classical regime's best), in
    percentage points, paired by seed, and the test set's binomial SE of it (pp). No interval when
    no width interpolates (the largest model is not over-parameterized) or the sweet spot is the
    largest width (nothing beyond it to compare)."""
    sweet, n = located.sweet.index, len(table.seeds)
    if located.threshold.index < 0:
        return CI(math.nan, math.nan, math.nan, n=n, method="none: no width interpolates"), math.nan
    if sweet == len(table.axis) - 1:
        return CI(math.nan, math.nan, math.nan, n=n, method="none: the sweet spot is the largest width"), math.nan
    return (table.difference("test_error", table.axis[-1], table.axis[sweet], scale=100.0),
            binomial_se(test[-1], test[sweet], n_test))


# --- claims --------------------------------------------------------------------------------------

# Nakkiran et al. 2019 (label noise) and the MNIST-1D paper's double-descent figure, fixed before any run.
# The figure's numbers (the notebook's stored outputs, one run per width, 15% label noise): MLP 45.47% test
# error at width 300 vs 47.24% at width 16, the best width below its threshold (61); CNN 27.66% at 100
# channels vs 19.64% at 10 (threshold 24): the published CNN run does not show it. Direction only.
PAPER_CLAIMS = {
    "peak_near_threshold": Published("the peak in test error occurs around the interpolation threshold, where models "
                                     "are just barely able to fit the train set", NAKKIRAN, between(-1.0, 1.0)),
    "falls_beyond_peak": Published("\"as we increase model size, performance first gets worse and then gets better\"",
                                   NAKKIRAN, below(0.0)),
    "largest_beats_underparameterized": Published(
        "the largest model's test error is below the best under-parameterized model's (stored notebook run, 15% "
        "noise: MLP 45.5% at width 300 vs 47.2% at 16; the CNN run does not show it: 27.7% at 100 channels vs "
        "19.6% at 10)", MNIST1D, below(0.0)),
}


def _noise_text(noise: float) -> str:
    return f"{noise:.0%} label noise" if noise > 0 else "no label noise"


def _claim_base(curve: CurveAnalysis) -> str:
    pct = curve.noise * 100
    return f"{NAME}.{curve.family}.noise" + (f"{round(pct):d}" if abs(pct - round(pct)) < 1e-9 else f"{curve.noise:g}")


def _family_label(config: DoubleDescentConfig, family: str) -> str:
    depth = config.mlp_depth
    return f"MLP ({depth} hidden layer{'s' if depth > 1 else ''})" if family == "mlp" else config.cnn_model.upper()


def claims(a: DoubleDescentAnalysis, config: DoubleDescentConfig,
           paper: dict[str, Published] = PAPER_CLAIMS) -> list[Claim]:
    return [claim for curve in a.curves.values() if curve.noise > 0 and len(curve.widths) >= 3
            for claim in _curve_claims(curve, config, paper)]


def _curve_claims(curve: CurveAnalysis, config: DoubleDescentConfig, paper: dict[str, Published]) -> list[Claim]:
    base, found, widths = _claim_base(curve), curve.located, curve.widths
    where = f"{_family_label(config, curve.family)}, {_noise_text(curve.noise)}"
    peak = f"width {widths[found.peak.index]}" if found.peak.index >= 0 else "none"
    sweet = f"width {widths[found.sweet.index]}"
    return [
        Claim.judged(
            f"{base}.peak_near_threshold", NAME,
            f"{where}: test error peaks near the interpolation threshold: log2(peak width / threshold width) is "
            f"within [-1, 1] (a factor 2 in width). Threshold: the smallest width with mean train error <= "
            f"{config.interpolation_error:.0%}; peak: the width of maximal test error beyond the best "
            "under-parameterized width; both relocated on every seed resample (percentile interval); -inf: no "
            "width interpolates; +inf: no peak.", paper["peak_near_threshold"], found.log2_peak_over_threshold),
        Claim.judged(
            f"{base}.falls_beyond_peak", NAME,
            f"{where}: test error falls again beyond the peak: test error at the largest width ({widths[-1]}) minus "
            f"at the peak ({peak}), paired by seed, is < 0 (no interval without a peak). The peak is selected on the "
            "mean over the same seeds the difference is measured on.", paper["falls_beyond_peak"], curve.fall,
            test_examples=curve.n_test, binomial_se=curve.fall_se),
        Claim.judged(
            f"{base}.largest_beats_underparameterized", NAME,
            f"{where}: the largest model beats the classical regime's best: test error at the largest width "
            f"({widths[-1]}) minus at the sweet spot ({sweet}; the width of minimal mean test error up to the "
            f"interpolation threshold), in percentage points, paired by seed, is < 0 (no interval when no width "
            "interpolates or the sweet spot is the largest width). The sweet spot is selected on the mean over the "
            "same seeds, which biases its error down and the difference up (against the claim).",
            paper["largest_beats_underparameterized"], curve.beats, test_examples=curve.n_test,
            binomial_se=curve.beats_se),
    ]


# --- report --------------------------------------------------------------------------------------


def render(a: DoubleDescentAnalysis, claims: list[Claim], config: DoubleDescentConfig) -> list[Section]:
    placed = {key: [c for c in claims if c.id.startswith(_claim_base(curve) + ".")] for key, curve in a.curves.items()}
    figures = [(name, fig) for name, fig in [("double_descent_errors", _errors_figure(a, config)),
                                             ("double_descent_noisy_labels", _noisy_figure(a, config))]
               if fig is not None]
    readings = [_reading(curve, config, placed[key]) for key, curve in a.curves.items()]
    sections = [Section(TITLE, _settings_text(config, a) + "\n\n**Reading.**\n\n" + "\n\n".join(readings), figures, [])]
    for family in dict.fromkeys(f for f, _ in a.curves):
        keys = [k for k in a.curves if k[0] == family]
        parts = ["Per width: the mean over seeds with a 95% t-interval; the last column marks the located widths."]
        parts += [part for k in keys for part in (f"**{_noise_text(k[1])}**", _table(a.curves[k]),
                                                  _located_text(a.curves[k].located))]
        sections.append(Section(f"double_descent: {_family_label(config, family)}", "\n\n".join(parts), [],
                                [c for k in keys for c in placed[k]]))
    return sections


def _at(found: Located, none: str) -> str:
    agree = f" ({found.agreement:.0%} of seed resamples agree)" * math.isfinite(found.agreement)
    return f"width {found.describe()}" if found.index >= 0 else none + agree


def _located_text(found: Location) -> str:
    """Where the threshold, sweet spot and peak lie: grid brackets with the resamples' agreement."""
    return (f"Located on the mean over seeds: interpolation threshold: {_at(found.threshold, 'none')}; sweet spot: "
            f"{_at(found.sweet, 'none')}; peak: {_at(found.peak, 'none, test error never rises past the sweet spot')}.")


def _table(curve: CurveAnalysis) -> str:
    found, cis = curve.located, curve.cis
    metrics = ["train_error", "test_error"] + (["noisy_train_acc"] if "noisy_train_acc" in cis else [])
    marks = (("threshold", found.threshold), ("sweet spot", found.sweet), ("peak", found.peak))
    rows = [[w, f"{int(curve.params[j]):,}", n] + [common.ci_text(cis[m][j], 3) for m in metrics]
            + [", ".join(name for name, located in marks if j == located.index)]
            for j, (w, n) in enumerate(zip(curve.widths, curve.table.counts("test_error")))]
    return common.table(["width", "params", "n", "train error", "test error", "noisy labels fitted"][:3 + len(metrics)]
                        + [""], rows)


def _reading(curve: CurveAnalysis, config: DoubleDescentConfig, claims: list[Claim]) -> str:
    """A plain-language paragraph: where train error first reaches the tolerance, where test error
    turns (the numbers are in the per-width table) and the claims' verdicts."""
    tolerance, widths, found = config.interpolation_error, curve.widths, curve.located
    t, p, steps = found.threshold.index, found.peak.index, float(found.log2_peak_over_threshold[0])
    text = f"**{_family_label(config, curve.family)}, {_noise_text(curve.noise)}.** "
    if t < 0:
        j = int(np.nanargmin(curve.train_mean))
        text += (f"No width reaches mean train error <= {tolerance:.0%} (the lowest is "
                 f"{common.fmt(float(curve.train_mean[j]), 3)} at width {widths[j]}), so this sweep has no "
                 "interpolation threshold and cannot show the peak at it: train longer or add wider models.")
    else:
        text += (f"Mean train error first reaches <= {tolerance:.0%} at width {found.threshold.describe()}, "
                 f"{int(curve.params[t]):,} parameters." + " The smallest width already fits the training set, so "
                 "the sweep does not show the threshold." * (t == 0))
    text += " Test error is lowest" + " up to the threshold" * (t >= 0) + f" at width {widths[found.sweet.index]}"
    if p < 0:
        text += "; it does not rise above that at larger widths (no peak)."
    else:
        text += f", then rises to a peak at width {widths[p]}"
        if t >= 0:
            text += ", at the threshold" if steps == 0 else (f", {abs(steps):.2g} doubling{'s' * (abs(steps) != 1)} of "
                                                            f"width {'below' if steps < 0 else 'above'} the threshold")
        text += ("; the peak is the largest width, so test error does not come down again within this sweep."
                 if p == len(widths) - 1 else f"; from there to the largest width ({widths[-1]}) it changes by "
                 f"{common.ci_text(curve.fall, 3)} (paired by seed).")
    s = found.sweet.index
    if t >= 0 and s < len(widths) - 1:
        text += (f" The largest width's test error minus the sweet spot's (width {widths[s]}): "
                 f"{common.ci_text(curve.beats, 3)} percentage points (paired by seed).")
    words = {"peak_near_threshold": "peak near the threshold", "falls_beyond_peak": "fall beyond the peak",
             "largest_beats_underparameterized": "largest beats the under-parameterized best"}
    verdicts = {c.id.rsplit(".", 1)[-1]: c.verdict for c in claims}
    if claims:
        text += " Verdicts: " + "; ".join(f"{words[c.id.rsplit('.', 1)[-1]]}: {c.verdict.replace('_', ' ')}"
                                          for c in claims) + "."
    descent = verdicts.get("peak_near_threshold") == verdicts.get("falls_beyond_peak") == "reproduced"
    return text + " Together: a double descent in model size" * descent + (
        ", and the over-parameterized model generalizes best." if verdicts.get(
            "largest_beats_underparameterized") == "reproduced" else ".") * descent


def _settings_text(config: DoubleDescentConfig, a: DoubleDescentAnalysis) -> str:
    train, data = config.train, config.data
    budget = f"{train['steps']} steps" if train.get("steps") is not None else f"{train.get('epochs', 10)} epochs"
    draw = "one draw of the data and noisy labels shared by all seeds" if data.get("seed") is not None else (
        "a data draw per seed")
    decay = f"weight decay {train['weight_decay']}" if train.get("weight_decay") else "no weight decay"
    declared = ("name", "n_train", "n_test", "label_noise", "standardize", "flatten", "options", "seed")
    source = ", ".join(f"{k}={v}" for k, v in data.items() if k not in declared)  # e.g. mnist1d's num_samples
    first = next(iter(a.curves.values()))
    with quiet():
        n_train = float(np.nanmax(first.table["n_train"]))  # as the runs report it
    n_train = int(n_train) if math.isfinite(n_train) else data.get("n_train") or "all"
    sizes = f"{n_train} training examples" + f", {first.n_test} test examples" * (first.n_test is not None)
    mlp = ""
    if "mlp" in as_tuple(config.models):
        layers = f"{config.mlp_depth} hidden layer{'s' * (config.mlp_depth > 1)}"
        mlp = f"; the MLP with {layers} of the swept width" + f", options {config.mlp_options}" * bool(
            config.mlp_options)
    text = (f"Width sweeps on {data.get('name')}" + f" (generated with {source})" * bool(source)
            + f" ({sizes}, {draw}){mlp}; trained with {train.get('optimizer', 'sgd')} (lr {train.get('lr', 0.05)}, "
            f"momentum {train.get('momentum', 0.9)}, "
            f"batch {train.get('batch_size', 128)}, {train.get('schedule', 'constant')} schedule, {budget}, {decay}, "
            "no early stopping: the final model is measured)")
    if "cnn" in as_tuple(config.models) and (config.cnn_data or config.cnn_train):
        text += (f"; the {config.cnn_model} runs with data overrides {config.cnn_data} and train overrides "
                 f"{config.cnn_train}")
    if "cnn" in as_tuple(config.models) and config.cnn_label_noise is not None:
        levels = ", ".join(f"{p:g}" for p in _noise_levels(config, "cnn"))
        text += f"; the {config.cnn_model} at label noise {levels} only"
    return text + (
        f". {len(next(iter(a.curves.values())).table.seeds)} seeds per point (initialization and data order). Label "
        "noise replaces a fraction of the training labels by a random wrong class. Interpolation threshold: the "
        f"smallest width whose mean train error is <= {config.interpolation_error:.0%}; sweet spot: the width of "
        "minimal mean test error up to the threshold (the classical regime's best model); peak: the width of maximal "
        "mean test error beyond the sweet spot, if above the sweet spot's (not an underfit tiny model). Located "
        "widths: the bracket they lie in and the share of seed resamples (each seed with its whole width curve) that "
        "pick the same width. The peak is selected on the same seeds as the fall beyond it, so on a flat, noisy "
        "curve both can look significant: read the claims with the per-width tables.")


# --- figures -------------------------------------------------------------------------------------


def _errors_panel(ax, curves: list[CurveAnalysis], noises: list[float], title: str) -> None:
    """A family's train and test error, one colour per noise level, with each curve's threshold
    (dotted line; band: from the width before it) and peak (star; at noise > 0 or the only noise
    level), and its widths (at most 9) on a top axis."""
    from matplotlib.ticker import FixedLocator, NullLocator

    from overparam.report.figures import errorbar_cis

    for curve in curves:
        x, noise, colour = curve.params.astype(float), _noise_text(curve.noise), f"C{noises.index(curve.noise)}"
        for name, style, marker in (("test", "-", "o"), ("train", "--", "s")):
            errorbar_cis(ax, x, curve.cis[f"{name}_error"], f"{name}, {noise}", curve.table.counts("test_error"),
                         color=colour, linestyle=style, marker=marker, legend=False)
        t, p = curve.located.threshold.index, curve.located.peak.index
        if t >= 0:
            ax.axvline(x[t], color=colour, linestyle=":", linewidth=1.6, label=f"interpolation threshold, {noise}")
            if t > 0:
                ax.axvspan(x[t - 1], x[t], color=colour, alpha=0.08, linewidth=0)
        if p >= 0 and (curve.noise > 0 or len(noises) == 1):
            ax.plot([x[p]], [curve.test_mean[p]], marker="*", markersize=15, color=colour, markeredgecolor="black",
                    linestyle="none", zorder=4, label=f"peak, {noise}")
    ax.set_title(title)
    top, step = ax.secondary_xaxis("top"), math.ceil(len(curves[0].widths) / 9)
    top.set_xscale("log")
    top.xaxis.set_major_locator(FixedLocator(curves[0].params[::step].astype(float)))
    top.set_xticklabels([str(w) for w in curves[0].widths[::step]])
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xlabel("width", fontsize=9)
    top.tick_params(labelsize=8)


def _legend(fig, handles: list[Any], labels: list[str], columns: tuple[int, ...]) -> None:
    """A legend below the panels in the first of ``columns`` (counts) that fits the figure's width, else the last."""
    for ncol in columns:
        legend = fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
        if ncol == columns[-1] or legend.get_window_extent().width <= 0.98 * fig.bbox.width:
            return
        legend.remove()


def _panels(families: list[str], height: float, ylim: tuple[float, float | None], ylabel: str, draw):
    """One panel per family, filled by ``draw(ax, family)``, on a log axis of parameter counts
    (labelled in plain numbers); the figure and the panels' legend handles by label (first seen first)."""
    from overparam.report.figures import PlainLogFormatter, new_figure

    fig, axes = new_figure(1, len(families), height=height, squeeze=False)
    fig.set_layout_engine("constrained")
    handles: dict[str, Any] = {}
    for ax, family in zip(axes[0], families):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PlainLogFormatter())
        ax.xaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
        draw(ax, family)
        ax.set(xlabel="number of parameters (log scale)", ylabel=ylabel, ylim=ylim)
        handles.update({t: h for h, t in zip(*ax.get_legend_handles_labels()) if t not in handles})
    return fig, handles


def _errors_figure(a: DoubleDescentAnalysis, config: DoubleDescentConfig):
    """Train and test error vs parameters, one panel per family, one colour per noise level;
    dotted line: the interpolation threshold; shaded: from the width before it to it. The legend
    has one row per noise level where the figure is wide enough (matplotlib fills a legend column
    by column), else one column for test and train and one for threshold and peak."""
    from matplotlib.patches import Patch

    noises = sorted({p for _, p in a.curves})
    fig, handles = _panels(list(dict.fromkeys(f for f, _ in a.curves)), 5.4, (-0.02, None), "error (1 − accuracy)",
                           lambda ax, family: _errors_panel(ax, [c for (f, _), c in a.curves.items() if f == family],
                                                            noises, _family_label(config, family)))
    kinds = ("test", "train", "interpolation threshold", "peak")  # errorbar labels end in " (n=..., 95% CI)"
    labels = [next((t for t in handles if t.split(" (")[0] == f"{kind}, {_noise_text(noise)}"), "")
              for kind in kinds for noise in noises]
    _legend(fig, [handles.get(t) or Patch(alpha=0) for t in labels], labels, (len(kinds), 2, 1))
    title = ("test (solid) and train (dashed) error vs model size; dotted: interpolation threshold (train error ≤ "
             f"{config.interpolation_error:.0%}), shaded: the width step that crosses it")
    fig.suptitle("\n".join(textwrap.wrap(title, int(13 * fig.get_figwidth()))), fontsize=10)  # ~13 chars/inch
    return fig


def _noisy_figure(a: DoubleDescentAnalysis, config: DoubleDescentConfig):
    """Fraction of the noisy training labels each model fits, vs parameters."""
    from overparam.report.figures import errorbar_cis

    keys = [k for k, curve in a.curves.items() if k[1] > 0 and "noisy_train_acc" in curve.cis]
    if not keys:
        return None

    def draw(ax, family: str) -> None:
        for i, key in enumerate(k for k in keys if k[0] == family):
            curve, x = a.curves[key], a.curves[key].params.astype(float)
            for j, (metric, name, style) in enumerate((("noisy_train_acc", "noisy labels fitted", "-"),
                                                        ("clean_train_acc", "clean labels fitted", "--"))):
                errorbar_cis(ax, x, curve.cis[metric], f"{name}, {_noise_text(key[1])}", curve.table.counts(metric),
                             color=f"C{2 * i + j}", linestyle=style, legend=False)
            if curve.located.threshold.index >= 0:
                ax.axvline(x[curve.located.threshold.index], color="0.4", linestyle=":", linewidth=1.4,
                           label="interpolation threshold")
        ax.set_title(f"{_family_label(config, family)}: memorizing the noisy labels")

    fig, handles = _panels(list(dict.fromkeys(f for f, _ in keys)), 4.6, (-0.02, 1.02),
                           "fraction of training labels fitted", draw)
    _legend(fig, list(handles.values()), list(handles), (3, 2, 1))
    return fig


STUDY = Study(
    name=NAME,
    description="double descent: train/test error vs width (MLP and CNN) with and without label noise; the "
                "interpolation threshold, the test-error peak near it and the fall beyond it",
    config_type=DoubleDescentConfig,
    grid=grid,
    run_one=common.single(_measure),
    run_batch=common.batched(_measure),
    batch_key=common.batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200, "seed": 0},
                 "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 50, "epochs": 1},
                 "models": ["mlp", "cnn"], "mlp_widths": [4, 16, 64], "cnn_widths": [2, 4, 8],
                 "label_noise": [0.0, 0.2], "seeds": 2},
        # The MNIST-1D double-descent protocol (module docstring): the notebook's data, models, SGD (lr 0.01,
        # momentum 0.9, batch 100), 500 epochs and 15% label noise, 5 seeds, on a subset of its width grid:
        # both sides of the interpolation threshold (notebook: width 61 with noise, 47 without), its sweet spot
        # (16) and peak (47-61), and its largest width (300). Cost on this project's 2-core CPU (2026-12-08, other
        # jobs running), one batch of 5 seeds for 500 epochs (20,000 steps), from 10-epoch runs: MLP with 2
        # threads at load ~5 (CPU time 2x wall): width 2-16 4-5 s, 47 8 s, 104 12 s, 300 53 s; 1 thread, CPU
        # time at load 12: 7-9 s, 17 s, 26 s, 129 s. This preset ran in 5 min 1 s of CPU time on 1 thread (20.5
        # min wall at load 10-15); on a quiet machine with 2 threads about 3.5 min. The notebook's 19 widths
        # would take about twice that. The CNN (vmap kernel) costs 60-90 s per batch at 2-16 channels and
        # 220 s at 32 (2 threads, load ~5), so the thin channel grid below (about 10 min) does not fit the
        # 15 minutes of `overparam run paper` and is off here (models: [mlp]): --set "models=[mlp, cnn]" runs
        # it (around the notebook's CNN sweet spot 10, peak 18 and threshold 24), the `notebook` preset runs
        # the full grids.
        "quick": {"data": {"name": "mnist1d", "num_samples": 16000, "train_split": 0.25, "seed": 0},
                  "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 100, "epochs": 500,
                            "eval_every": 4000},
                  "models": ["mlp"], "mlp_depth": 2, "mlp_options": {"w_std": 0.5773502691896258},
                  "mlp_widths": [4, 9, 16, 27, 36, 47, 61, 104, 300],
                  "cnn_model": "cnn1d", "cnn_widths": [4, 10, 14, 18, 24, 30], "label_noise": [0.0, 0.15],
                  "cnn_label_noise": [0.15], "seeds": 5},
        # The notebook's full grids (MLP: 19 widths 2..300; CNN: 29 channel counts 2..100): hours on 2 CPU cores.
        "notebook": {"data": {"name": "mnist1d", "num_samples": 16000, "train_split": 0.25, "seed": 0},
                     "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 100, "epochs": 500,
                               "eval_every": 4000},
                     "models": ["mlp", "cnn"], "mlp_depth": 2, "mlp_options": {"w_std": 0.5773502691896258},
                     "mlp_widths": [2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 47, 61, 80, 104, 135, 177, 230, 300],
                     "cnn_model": "cnn1d", "cnn_widths": [*range(2, 30, 2), *range(30, 101, 5)],
                     "label_noise": [0.0, 0.15], "cnn_label_noise": [0.15], "seeds": 5},
        "mnist": {"data": {"name": "mnist", "n_train": 4000, "n_test": 2000, "seed": 0, "standardize": True},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": 200,
                            "eval_every": 320},
                  "models": ["mlp"], "mlp_widths": [4, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024],
                  "mlp_depth": 1, "label_noise": [0.0, 0.15], "seeds": 5},
        # MNIST MLP (Belkin et al.: 4000 examples) and CIFAR-10 CNN5 (Nakkiran et al.: k = 1..64, Adam 1e-4,
        # 15% noise, no augmentation), long training; meant for a GPU.
        "paper": {"data": {"name": "mnist", "n_train": 4000, "seed": 0, "standardize": True},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": 2000},
                  "models": ["mlp", "cnn"], "mlp_depth": 1,
                  "mlp_widths": [4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048],
                  "cnn_model": "cnn5", "cnn_widths": [1, 2, 4, 6, 8, 10, 12, 16, 24, 32, 48, 64],
                  "cnn_data": {"name": "cifar10", "n_train": None, "standardize": "feature"},
                  "cnn_train": {"optimizer": "adam", "lr": 0.0001, "batch_size": 128, "epochs": 1000},
                  "label_noise": [0.0, 0.15], "seeds": 5},
    },
)
