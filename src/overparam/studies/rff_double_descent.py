"""``rff_double_descent``: random-Fourier-features regression with the minimum-norm least-squares
solution, swept across the interpolation threshold N = n (Belkin, Hsu, Ma & Mandal 2019,
"Reconciling modern machine-learning practice and the classical bias-variance trade-off", Fig. 2:
RFF on an MNIST subset of n = 10⁴).

Model. Features φ(x) = sqrt(2/N) cos(W x + b), W (N, d) with iid N(0, σ⁻²) entries, b iid
U[0, 2π) (:func:`overparam.data.transforms.random_fourier_features`), so φ(x)ᵀφ(x') → the
Gaussian kernel exp(−‖x − x'‖²/(2σ²)) as N → ∞. Bandwidth σ: the median heuristic (the median
pairwise distance of up to 2000 training inputs, :func:`overparam.references.rff.median_bandwidth`)
unless ``bandwidth`` is a number. Predictor f(x) = Aᵀφ(x) with A (N, k) the minimum-norm
least-squares fit of the one-hot training targets Y (n, k):

    A = Φ⁺ Y,   Φ = φ(X_train) (n, N),

computed exactly (QR + SVD, :func:`overparam.references.rff.min_norm_lstsq`, float64, singular
values below max(n, N)·2⁻⁵²·s_max dropped). For N < n it is the least-squares fit, for N ≥ n the
interpolant of smallest ‖A‖_F. With the sqrt(2/N) scale ‖A‖_F tends, as N → ∞, to the RKHS norm
of the kernel interpolant (summed over the k outputs): the function-space norm Belkin et al. plot
beside the test error. No SGD.

Runs: feature count N x seed, N = round(r n) for each ratio r in ``feature_ratios``; the seed draws
the features (stream derive_seed(seed, 'rff_double_descent', 'features')); the data (a
class-stratified subset, ``data.seed``) is the same for every run. Per run: test and train
zero-one error (argmax of f against the label), squared loss (1/n) Σ_i ‖f(x_i) − e_{y_i}‖²,
‖A‖_F, and Φ's extreme singular values and numerical rank. Cost per run: the features
O((n + n_test) d N), the solve 2 max(n,N) min(n,N)² + O(min(n,N)³) flops.

Located quantities (:func:`locate`, on the mean curves over seeds): the sweet spot (the best N < n),
the error and squared-loss peaks from the sweet spot on (a tiny N that underfits is the classical
first descent, not the peak), the norm peak; each shown as its grid bracket with the share of seed
resamples that pick the same N (:func:`~overparam.analysis.locate_on_grid`).

Claims (ids ``rff_double_descent.<what>``; qualitative, Belkin et al. 2019, :func:`paper_claims`):
the three peaks at N = n, and the test error at the largest N below that at the error peak and at
the sweet spot.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.analysis import (NUM_RESAMPLES, Located, Missing, Run, SeedTable, binomial_se, locate_on_grid,
                                resample_seeds, resampled_ci)
from overparam.errors import ConfigError, check_number, check_numbers, check_positive_int
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import Published, below, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key

NAME = "rff_double_descent"
# N/n for each feature count N = round(ratio n): log-spaced, denser near the threshold 1
RATIOS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.3, 1.6, 2.0, 3.0, 5.0, 10.0)
BELKIN = "Belkin et al. 2019"
NUMERICAL_ZERO = 1e-12  # a squared training loss below this is an exact fit up to rounding
METRICS = ("test_error", "test_sq_loss", "coef_norm", "train_error", "train_sq_loss", "sigma_min_ratio")
PEAKS = ("error_peak", "sq_peak", "norm_peak")


@dataclass(frozen=True)
class RFFDoubleDescentConfig:
    # One data draw for every run (data.seed); n = data.n_train.
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 1000, "seed": 0})
    feature_ratios: tuple[float, ...] = RATIOS
    bandwidth: float | str = "median"  # σ of the Gaussian kernel: 'median' (heuristic) or a number
    peak_factor: float = 1.5  # claims: a peak within [n/peak_factor, n·peak_factor]
    seeds: int = 5

    def __post_init__(self) -> None:
        from overparam.config import RunConfig

        check_positive_int("seeds", self.seeds)
        if not isinstance(self.data, dict):
            raise ConfigError(f"data must be a mapping, e.g. {{name: mnist1d, n_train: 1000, seed: 0}}, got "
                              f"{self.data!r}")
        data = RunConfig.from_dict({"data": self.data}).data  # unknown keys, bad values
        if (n := data.n_train) is None or data.seed is None:
            raise ConfigError("data.n_train and data.seed must be set (integers): N is measured against n, and every "
                              f"run shares one data draw; got {self.data!r}")
        ratios = check_numbers("feature_ratios (N/n)", self.feature_ratios, minimum=0, open_low=True)
        counts = [feature_count(r, n) for r in ratios]
        if len(set(counts)) != len(counts):
            raise ConfigError(f"feature_ratios {list(ratios)} give repeated feature counts {counts} for n = {n}; give "
                              "distinct ratios (no repeats)")
        if sum(c < n for c in counts) < 2 or sum(c > n for c in counts) < 2:
            raise ConfigError(f"feature_ratios must put at least two feature counts below n and two above n (the sweet "
                              f"spot, peak and fall need both sides), got counts {sorted(counts)} for n = {n}")
        if self.bandwidth != "median":
            check_number("bandwidth (or 'median')", self.bandwidth, minimum=0, open_low=True)
        check_number("peak_factor", self.peak_factor, minimum=1, open_low=True)


def feature_count(ratio: float, n: int) -> int:
    """N = round(ratio · n), at least 1."""
    return max(1, round(ratio * n))


def grid(config: RFFDoubleDescentConfig) -> list[RunSpec]:
    """feature count x seed; the data section is resolved to its full form so the key is stable."""
    from overparam.config import RunConfig

    data = RunConfig.from_dict({"data": config.data}).to_dict()["data"]
    params = [{"data": data, "num_features": feature_count(ratio, data["n_train"]), "bandwidth": config.bandwidth}
              for ratio in sorted(config.feature_ratios)]
    return [RunSpec(run_key(NAME, p, seed), p, seed) for p in params for seed in range(config.seeds)]


# --- one run -------------------------------------------------------------------------------------


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """Features -> minimum-norm least squares on one-hot targets -> errors, losses, norm."""
    import torch

    from overparam.config import RunConfig
    from overparam.data.transforms import random_fourier_features
    from overparam.device import resolve_device
    from overparam.provenance import provenance
    from overparam.references.rff import median_bandwidth, min_norm_lstsq
    from overparam.run import load_data
    from overparam.seeding import derive_seed

    p, target, start = spec.params, resolve_device(device), time.perf_counter()
    dataset = load_data(RunConfig.from_dict({"data": p["data"]}), target, dtype=torch.float64, quiet=True)
    x, x_test = dataset.x_train.reshape(dataset.n_train, -1), dataset.x_test.reshape(dataset.n_test, -1)
    if (k := dataset.num_classes) is None:
        raise ConfigError(f"rff_double_descent needs a classification dataset; {p['data']['name']!r} is regression")
    sigma = median_bandwidth(x) if p["bandwidth"] == "median" else float(p["bandwidth"])
    seed = derive_seed(spec.seed, NAME, "features")
    features = random_fourier_features(x, p["num_features"], sigma, seed=seed)
    fit = min_norm_lstsq(features, torch.nn.functional.one_hot(dataset.y_train, k).to(torch.float64))
    metrics: dict[str, Any] = {"num_features": p["num_features"], "n_train": dataset.n_train,
                               "n_test": dataset.n_test, "ratio": p["num_features"] / dataset.n_train,
                               "bandwidth": sigma, "feature_seed": seed}
    test_features = random_fourier_features(x_test, p["num_features"], sigma, seed=seed)
    for split, phi, labels in (("train", features, dataset.y_train), ("test", test_features, dataset.y_test)):
        outputs = phi @ fit.solution
        onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)
        metrics[f"{split}_error"] = float((outputs.argmax(dim=1) != labels).double().mean())
        metrics[f"{split}_sq_loss"] = float((outputs - onehot).pow(2).sum(dim=1).mean())
    s = fit.singular_values
    metrics.update({"coef_norm": float(torch.linalg.matrix_norm(fit.solution)), "sigma_max": float(s[0]),
                    "sigma_min": float(s[-1]), "sigma_min_ratio": float(s[-1] / s[0]), "rank": fit.rank})
    status = "done" if all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)) else "diverged"
    return RunOutcome(status, metrics, {}, time.perf_counter() - start, provenance(target))


# --- analysis ------------------------------------------------------------------------------------


def locate(mean: dict[str, np.ndarray], counts: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Indices into the sorted feature counts ``counts`` (W,) from mean curves (..., W): 'sweet'
    (argmin of test error among N < n), 'error_peak' and 'sq_peak' (argmax of the test error /
    squared loss from the sweet spot on), 'norm_peak' (argmax of ‖A‖_F). NaN entries never win an
    argmin/argmax."""
    error = mean["test_error"]
    sweet = np.where(counts < n, np.nan_to_num(error, nan=np.inf), np.inf).argmin(axis=-1)
    beyond = np.arange(len(counts)) >= sweet[..., None]

    def peak(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.where(where, np.nan_to_num(values, nan=-np.inf), -np.inf).argmax(axis=-1)

    return {"sweet": sweet, "error_peak": peak(error, beyond), "sq_peak": peak(mean["test_sq_loss"], beyond),
            "norm_peak": peak(mean["coef_norm"], np.ones_like(beyond))}


@dataclass
class RFFAnalysis:
    """The sweep of one data set and bandwidth. Axes: seeds (S, feature draws) and the feature
    counts N (W, ascending)."""

    table: SeedTable  # the finished runs, seed x feature count N
    counts: np.ndarray  # (W,) feature counts N, ascending
    n: int  # training examples
    n_test: int  # test examples
    bandwidth: float  # the kernel bandwidth σ the runs used (input units)
    mean: dict[str, np.ndarray]  # metric of METRICS -> (W,) mean over seeds (NaN where no run)
    per_n: dict[str, list[CI]]  # metric of METRICS -> per N, the mean over seeds with its 95% t-interval
    found: dict[str, Any]  # locate() of the mean curves: indices into counts
    where: dict[str, Located]  # 'sweet' and PEAKS on the N/n grid, with the seed resamples' agreement
    peaks: dict[str, CI]  # PEAKS: N_peak/n, percentile interval over seed resamples
    fall: CI  # test error at the largest N − at the error peak (fraction), paired by seed
    gain: CI  # test error at the largest N − at the sweet spot, paired by seed
    binomial_se: dict[str, float]  # 'fall', 'gain': the test set's binomial SE of that difference


def analyze(runs: list[Run], config: RFFDoubleDescentConfig) -> RFFAnalysis | Missing:
    from overparam.config import RunConfig

    data = RunConfig.from_dict({"data": config.data}).to_dict()["data"]  # a store may hold other data, bandwidths
    mine = [r for r in runs if r.settings["data"] == data and r.settings["bandwidth"] == config.bandwidth]
    table = SeedTable(mine, lambda r: r.settings["num_features"])
    counts, n, seeds = np.asarray(table.axis, dtype=int), config.data["n_train"], len(table.seeds)
    if not (counts < n).any() or not (counts > n).any():
        return Missing(TITLE, "No finished runs on both sides of N = n yet.")
    values = {m: table[m] for m in ("test_error", "test_sq_loss", "coef_norm")}
    found, draws = resample_seeds(values, lambda mean: locate(mean, counts, n), NUM_RESAMPLES, seed=0)
    ratios, draws = counts / n, draws or {}
    where = {key: locate_on_grid(ratios, int(found[key]), draws.get(key), seeds, kind="extremum")
             for key in PEAKS + ("sweet",)}
    peaks = {key: resampled_ci(ratios[found[key]], ratios[draws[key]] if draws else None, seeds) for key in PEAKS}
    error, n_test = table.mean("test_error"), int(mine[0].metric("n_test"))
    refs = {"fall": int(found["error_peak"]), "gain": int(found["sweet"])}  # test error at the largest N − at these
    diff = {key: table.difference("test_error", counts[-1], counts[j]) for key, j in refs.items()}
    se = {key: binomial_se(error[-1], error[j], n_test, scale=1.0) for key, j in refs.items()}
    return RFFAnalysis(table, counts, n, n_test, mine[0].metric("bandwidth"), {m: table.mean(m) for m in METRICS},
                       {m: table.cis(m) for m in METRICS}, found, where, peaks, diff["fall"], diff["gain"], se)


# --- claims --------------------------------------------------------------------------------------


def _where(a: RFFAnalysis, config: RFFDoubleDescentConfig) -> tuple[str, str]:
    """(the bandwidth, the setting in parentheses) as text."""
    bandwidth = (f"σ = {common.fmt(a.bandwidth, 4)} (median pairwise distance of the training inputs)"
                 if config.bandwidth == "median" else f"σ = {common.fmt(float(config.bandwidth), 4)}")
    return bandwidth, f"({config.data['name']}, n = {a.n}, {a.n_test} test examples, {bandwidth})"


def paper_claims(peak_factor: float = 1.5) -> dict[str, Published]:
    """Belkin et al.'s claims as tested here, all qualitative (no published number); a peak "at
    N = n" means N_peak/n in [1/peak_factor, peak_factor], the config's band fixed before the runs."""
    at_threshold = between(1 / peak_factor, peak_factor)
    return {
        "error_peak_at_threshold": Published("test error peaks at N = n (n = 10⁴ MNIST)", BELKIN, at_threshold),
        "squared_loss_peak_at_threshold": Published("squared loss peaks at N = n", BELKIN, at_threshold),
        "norm_peak_at_threshold": Published("the norm of the solution peaks at N = n and falls beyond", BELKIN,
                                            at_threshold),
        "error_falls_beyond_peak": Published("a second descent beyond N = n", BELKIN, below(0.0)),
        "overparameterized_beats_classical": Published(
            "the best test error is reached in the over-parameterized regime (RFF on MNIST)", BELKIN, below(0.0)),
    }


PAPER_CLAIMS = paper_claims()  # at the default peak_factor; claims() uses the config's


def claims(a: RFFAnalysis, config: RFFDoubleDescentConfig) -> list[Claim]:
    paper, f, (_, where) = paper_claims(config.peak_factor), config.peak_factor, _where(a, config)
    peak_text = (f"lies within a factor {f:g} of n (N_peak/n in [{1 / f:.3g}, {f:g}]; interval: percentile over seed "
                 "resamples, the peak relocated in each)")
    last = f"the largest N ({int(a.counts[-1])} = {a.counts[-1] / a.n:.3g} n)"
    fixed = "located on the mean curve of the same seeds and held fixed; paired by seed, t-interval"
    beyond, accuracy = "(from the best under-parameterized N on) ", {"test_examples": a.n_test}
    peaks = {"error_peak_at_threshold": ("error_peak", "The zero-one test error peaks at the interpolation threshold",
                                         f"test error {beyond}"),
             "squared_loss_peak_at_threshold": ("sq_peak", "The squared test loss peaks at",
                                                f"squared test loss {beyond}"),
             "norm_peak_at_threshold": ("norm_peak", "The coefficient norm ‖A‖_F of the minimum-norm solution peaks at",
                                        "‖A‖_F ")}
    return [Claim.judged(f"{NAME}.{key}", NAME, f"{head} N = n {where}: the N of the largest mean {what}{peak_text}.",
                         paper[key], a.peaks[peak]) for key, (peak, head, what) in peaks.items()] + [
        Claim.judged(f"{NAME}.error_falls_beyond_peak", NAME,
                     f"Past the peak the test error falls again {where}: test error (fraction) at {last} minus at "
                     f"the error peak (N = {int(a.counts[a.found['error_peak']])}, {fixed}) < 0.",
                     paper["error_falls_beyond_peak"], a.fall, binomial_se=a.binomial_se["fall"], **accuracy),
        Claim.judged(f"{NAME}.overparameterized_beats_classical", NAME,
                     f"The largest model beats the best under-parameterized one {where}: test error (fraction) at "
                     f"{last} minus at the sweet spot (the N < n of smallest mean test error, N = "
                     f"{int(a.counts[a.found['sweet']])}, {fixed}) < 0.", paper["overparameterized_beats_classical"],
                     a.gain, binomial_se=a.binomial_se["gain"], **accuracy),
    ]


# --- report --------------------------------------------------------------------------------------


TITLE = "rff_double_descent: random-features regression across the interpolation threshold N = n"


def render(a: RFFAnalysis, claims: list[Claim], config: RFFDoubleDescentConfig) -> list[Section]:
    counts, (bandwidth, where) = a.counts, _where(a, config)
    intro = (f"Random Fourier features of the Gaussian kernel exp(−‖x − x'‖²/(2σ²)) on {config.data['name']} "
             f"(n = {a.n} training examples, one class-stratified draw for all runs; {a.n_test} test examples), "
             f"{bandwidth}; the predictor Aᵀφ(x) with A = Φ⁺Y, the exact minimum-norm least-squares fit of the "
             f"one-hot labels (QR + SVD in float64, no SGD), for {len(counts)} feature counts N from {counts[0]} to "
             f"{counts[-1]} and {len(a.table.seeds)} feature draws (seeds); per N the mean over seeds, 95% t-interval. "
             "Sweet spot: the N < n of smallest mean test error; peaks: the largest mean from the sweet spot on "
             f"(‖A‖_F: the global largest); each relocated in {NUM_RESAMPLES} seed resamples (whole curves).")
    text = "\n\n".join([intro, _table(a), "**Reading.** " + _reading(a)])
    return [Section(TITLE, text, [("rff_double_descent_curves", _figure(a, where))], claims)]


def _table(a: RFFAnalysis) -> str:
    per_n, marks = a.per_n, {int(a.found["sweet"]): "sweet spot", int(a.found["error_peak"]): "error peak"}
    header = ["N", "N/n", "seeds", "test error", "test sq. loss", "train error", "train sq. loss", "‖A‖_F",
              "σ_min/σ_max of Φ", "located"]
    body = [[int(count), f"{count / a.n:.3g}", per_n["test_error"][j].n,
             common.ci_text(per_n["test_error"][j], 3), common.ci_text(per_n["test_sq_loss"][j], 3),
             common.fmt(per_n["train_error"][j][0], 3), common.fmt(per_n["train_sq_loss"][j][0], 3),
             common.ci_text(per_n["coef_norm"][j], 3), common.fmt(per_n["sigma_min_ratio"][j][0], 3),
             marks.get(j, "")] for j, count in enumerate(a.counts)]
    return common.table(header, body)


def _reading(a: RFFAnalysis) -> str:
    where, error, ratio, counts = a.where, a.mean["test_error"], a.mean["sigma_min_ratio"], a.counts
    sweet, peak = int(a.found["sweet"]), int(a.found["error_peak"])
    return (
        f"The zero-one test error is smallest among the under-parameterized models at N = {int(counts[sweet])} "
        f"({common.fmt(error[sweet], 3)}; N/n = {where['sweet'].describe()}), rises to {common.fmt(error[peak], 3)} "
        f"at N = {int(counts[peak])} (N/n = {where['error_peak'].describe()}) and ends at {common.fmt(error[-1], 3)} "
        f"at N = {int(counts[-1])}. The squared loss peaks at N/n = {where['sq_peak'].describe()}, ‖A‖_F at N/n = "
        f"{where['norm_peak'].describe()}. Φ's smallest singular value relative to its largest is smallest at N = "
        f"{int(counts[int(np.nanargmin(ratio))])} (mean σ_min/σ_max = {common.fmt(float(np.nanmin(ratio)), 3)}); "
        f"since A = Φ⁺Y has ‖A‖_F² = Σ_i ‖u_iᵀY‖²/σ_i² (u_i the left singular vectors), a near-zero σ_i forces a "
        f"large norm, which is the usual account of the peak. Its height at N = n depends on how ill-conditioned "
        f"each draw of Φ is and on the pseudo-inverse's cutoff (max(n, N)·2⁻⁵²·σ_max), which is why the intervals "
        f"at N = n are wide.")


def _figure(a: RFFAnalysis, where: str):
    """2 x 2 panels vs N/n (log x): zero-one error, squared loss, ‖A‖_F, σ_min/σ_max of Φ; mean
    over seeds with a 95% t-interval band, the threshold N = n dotted, located peaks starred."""
    from overparam.report.figures import PlainLogFormatter, n_label, new_figure

    ratio = a.counts / a.n
    fig, axes = new_figure(2, 2, width=12.0, height=8.6)
    panels = (
        (axes[0, 0], (("test_error", "test", "tab:blue", "-"), ("train_error", "train", "tab:gray", "--")),
         "zero-one error", False, "error_peak"),
        (axes[0, 1], (("test_sq_loss", "test", "tab:red", "-"),
                      ("train_sq_loss", f"train (< {NUMERICAL_ZERO:g} for N ≥ n: not drawn)", "tab:gray", "--")),
         "squared loss (1/n) Σ‖f(x) − e_y‖² (log)", True, "sq_peak"),
        (axes[1, 0], (("coef_norm", "‖A‖_F", "tab:purple", "-"),), "coefficient norm ‖A‖_F (log)", True,
         "norm_peak"),
        (axes[1, 1], (("sigma_min_ratio", "σ_min/σ_max of Φ", "tab:green", "-"),),
         "smallest / largest singular value of Φ (log)", True, None),
    )
    for (ax, series, ylabel, log_y, peak), corner in zip(panels, ("upper left",) * 3 + ("lower left",)):
        for metric, label, color, style in series:
            cis = np.asarray([tuple(c) for c in a.per_n[metric]], dtype=float)
            positive = cis[:, 0] > NUMERICAL_ZERO if log_y else np.ones(len(cis), dtype=bool)
            ax.plot(ratio[positive], cis[positive, 0], color=color, linestyle=style, marker="o", markersize=3.5,
                    label=f"{label} ({n_label([c.n for c in a.per_n[metric]])} seeds, 95% CI)")
            ax.fill_between(ratio[positive], cis[positive, 1], cis[positive, 2], color=color, alpha=0.2, linewidth=0)
            if peak is not None and metric == series[0][0]:
                j = int(a.found[peak])
                ax.plot([ratio[j]], [cis[j, 0]], marker="*", markersize=14, color=color, markeredgecolor="black",
                        linestyle="none", label=f"located peak, N/n = {ratio[j]:.3g}", zorder=4)
        ax.axvline(1.0, color="black", linestyle=":", linewidth=1.3, label="interpolation threshold N = n")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PlainLogFormatter())
        ax.xaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        if log_y:
            ax.set_yscale("log")
        ax.set(xlabel="number of random features / training examples, N/n (log)", ylabel=ylabel)
        ax.legend(fontsize=7.5, frameon=False, loc=corner)
    axes[0, 0].set_ylim(bottom=-0.02)
    fig.suptitle(f"random Fourier features, minimum-norm least squares {where}", fontsize=10)
    return fig


STUDY = Study(
    name=NAME,
    description="random Fourier features + minimum-norm least squares: test error, squared loss and coefficient "
                "norm vs the number of features N across N = n",
    config_type=RFFDoubleDescentConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 100, "n_test": 200, "seed": 0},
                 "feature_ratios": [0.3, 0.7, 1.0, 1.5, 4.0], "seeds": 3},
        "quick": {"data": {"name": "mnist1d", "n_train": 1000, "seed": 0}, "feature_ratios": list(RATIOS), "seeds": 5},
        # the quick sweep on real MNIST (Belkin et al.'s data) at n = 1000; one CPU thread, about a minute
        "mnist": {"data": {"name": "mnist", "n_train": 1000, "n_test": 2000, "seed": 0}, "feature_ratios": list(RATIOS),
                  "seeds": 5},
        # Belkin et al. Fig. 2: n = 10^4 MNIST examples, N up to 6 10^4 (a GPU job: Φ is 10^4 x 6 10^4)
        "paper": {"data": {"name": "mnist", "n_train": 10_000, "seed": 0},
                  "feature_ratios": [0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0,
                                     3.0, 4.0, 6.0], "seeds": 5},
    },
)
