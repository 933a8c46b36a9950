"""Figure helpers in the styles studies report: estimates over seeds with 95% CI bars and n.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot (no GUI backend, no
global figure registry, safe in worker processes); :func:`render_report` saves them as PNG::

    fig, ax = new_figure()
    errorbar_plot(ax, widths, ci_est, ci_low, ci_high, label="test error", n=5)
    ax.set(xlabel="width", ylabel="test error")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, NullFormatter

from overparam.errors import ConfigError

FIGSIZE = (6.4, 4.2)


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None, height: float | None = None,
               squeeze: bool = True) -> tuple[Figure, Axes | np.ndarray]:
    """A Figure (tight layout, readable font sizes) and its axes, as ``plt.subplots`` returns."""
    size = (width or FIGSIZE[0] * ncols ** 0.8, height or FIGSIZE[1] * nrows ** 0.8)
    fig = Figure(figsize=size, layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze)
    for ax in np.atleast_1d(axes).reshape(-1):
        style_axes(ax)
    return fig, axes


def style_axes(ax: Axes) -> None:
    ax.grid(True, which="major", alpha=0.3)
    ax.tick_params(labelsize=9)
    ax.xaxis.label.set_size(10)
    ax.yaxis.label.set_size(10)
    ax.title.set_size(11)


def n_label(n: int | Sequence[int]) -> str:
    """``'n=5'``, or ``'n=3–5'`` when the points rest on different numbers of seeds."""
    counts = np.atleast_1d(np.asarray(n)).reshape(-1)
    if counts.size == 0:
        raise ConfigError("n must be a count of seeds or one count per point, got an empty sequence")
    low, high = int(counts.min()), int(counts.max())
    return f"n={low}" if low == high else f"n={low}\u2013{high}"


def _arrays(x, estimates, lows, highs):
    arrays = [np.asarray(a, dtype=float).reshape(-1) for a in (x, estimates, lows, highs)]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ConfigError(f"x, estimates, lows and highs must have the same length, got {[a.size for a in arrays]}")
    return arrays


def errorbar_plot(ax: Axes, x: Sequence[float], estimates: Sequence[float], lows: Sequence[float],
                  highs: Sequence[float], label: str, n: int | Sequence[int], *, color: str | None = None,
                  marker: str = "o", linestyle: str = "-", confidence: float = 0.95, legend: bool = True):
    """Estimates joined by a line, each with its CI as a vertical bar; the legend entry reads
    ``'label (n=5, 95% CI)'``. ``n`` is one count, or one per point (shown as a range).

    Bars are drawn from the bounds themselves (not as ± offsets), so an interval that does not
    contain its estimate (possible for BCa and percentile intervals) is drawn as it is; a NaN
    bound draws no bar. Returns the line.
    """
    xs, est, lo, hi = _arrays(x, estimates, lows, highs)
    text = f"{label} ({n_label(n)}, {confidence:.0%} CI)"
    (line,) = ax.plot(xs, est, marker=marker, linestyle=linestyle, color=color, label=text, markersize=5, zorder=3)
    colour = line.get_color()
    bars = ~(np.isnan(lo) | np.isnan(hi))
    if bars.any():
        ax.vlines(xs[bars], lo[bars], hi[bars], color=colour, linewidth=1.4, zorder=2)
        ax.plot(xs[bars], lo[bars], linestyle="none", marker="_", markersize=8, color=colour, zorder=2)
        ax.plot(xs[bars], hi[bars], linestyle="none", marker="_", markersize=8, color=colour, zorder=2)
    if legend:
        ax.legend(fontsize=9, frameon=False)
    return line


def errorbar_cis(ax: Axes, x: Sequence[float], cis: Sequence, label: str, n: int | Sequence[int] | None = None,
                 **kwargs):
    """:func:`errorbar_plot` of a list of intervals (``(estimate, low, high)`` each, e.g. a
    :class:`~overparam.report.stats.CI` per axis point); ``n`` defaults to each interval's ``n``."""
    counts = n if n is not None else [getattr(c, "n", 0) for c in cis]
    return errorbar_plot(ax, x, [c[0] for c in cis], [c[1] for c in cis], [c[2] for c in cis], label, counts, **kwargs)


def log2_axis(ax: Axes, xs: Sequence[float]) -> None:
    """A base-2 log x axis with a tick labelled in plain numbers at each of ``xs`` (batch sizes,
    widths)."""
    ax.set_xscale("log", base=2)
    ax.set_xticks([float(x) for x in xs])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plain_number(value: float) -> str:
    """64, 0.06, 1000 as written; 10^6 and 10^-5 as powers of ten."""
    if value == 0 or not np.isfinite(value):
        return f"{value:g}"
    exponent = np.log10(abs(value))
    if -4 <= exponent < 6:
        return f"{value:g}"
    if abs(exponent - round(exponent)) < 1e-9:
        return f"$10^{{{round(exponent)}}}$"
    return f"{value:.0e}"


class PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers (0.2, 64)."""

    def __call__(self, x, pos=None):
        return _plain_number(x) if super().__call__(x, pos) else ""


def _plain_log_ticks(ax: Axes, xs: np.ndarray) -> None:
    """Log-axis labels as plain numbers (64, 0.1), not 6.4x10^1; x ticks at the measured x
    values when there are few of them (widths, sample sizes)."""
    values = np.unique(xs[np.isfinite(xs) & (xs > 0)])
    if 0 < values.size <= 10:
        ax.set_xticks(values)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _plain_number(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_formatter(PlainLogFormatter())
        ax.xaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))


def loglog_with_reference(ax: Axes, x: Sequence[float], y_est: Sequence[float], lows: Sequence[float],
                          highs: Sequence[float], slope: float = -0.5, *, label: str = "measured",
                          n: int | Sequence[int] | None = None, color: str | None = None):
    """Log-log axes with the estimates and their CI bars, plus a dashed reference line
    ``y = y0 (x / x0)^slope`` through the first point (in the order given) with positive x and y. Non-positive
    values are masked (log axes cannot show them). Returns the measured line."""
    xs, est, lo, hi = _arrays(x, y_est, lows, highs)
    ax.set_xscale("log", nonpositive="mask")
    ax.set_yscale("log", nonpositive="mask")
    if n is None:
        (line,) = ax.plot(xs, est, marker="o", color=color, label=label, markersize=5, zorder=3)
        bars = ~(np.isnan(lo) | np.isnan(hi))
        ax.vlines(xs[bars], lo[bars], hi[bars], color=line.get_color(), linewidth=1.4, zorder=2)
    else:
        line = errorbar_plot(ax, xs, est, lo, hi, label=label, n=n, color=color, legend=False)
    _plain_log_ticks(ax, xs)
    usable = np.flatnonzero((xs > 0) & (est > 0) & np.isfinite(xs) & np.isfinite(est))
    if usable.size:
        first = usable[0]
        x0, y0 = xs[first], est[first]
        grid = np.geomspace(np.nanmin(xs[usable]), np.nanmax(xs[usable]), 50) if usable.size > 1 else np.array([x0])
        ax.plot(grid, y0 * (grid / x0) ** slope, linestyle="--", color="0.45", linewidth=1.2,
                label=f"reference slope {slope:g}", zorder=1)
    ax.legend(fontsize=9, frameon=False)
    return line
