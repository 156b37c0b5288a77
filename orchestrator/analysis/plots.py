"""One PNG per (metric, x): points per group, fitted curves and their 95% bootstrap bands.

Drawn with matplotlib's Agg backend through the object API (no pyplot, no display, no
global state), on log-log axes because every law form is a power law in x; the y axis falls
back to linear when a plotted value is not positive.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (FixedLocator, FuncFormatter, LogFormatter, NullFormatter,
                               NullLocator)

from .fit import CI_LEVEL
from .laws import predict

_STYLE = {"saturating": "-", "power": "--"}


def _band(fit, grid: np.ndarray):
    """Pointwise percentile band of the bootstrap curves, or None without a bootstrap."""
    if not fit.boot:
        return None
    boot = {k: np.asarray(v)[:, None] for k, v in fit.boot.items()}
    with np.errstate(over="ignore", invalid="ignore"):
        curves = predict(boot, grid[None, :])
        q = 100 * (1 - CI_LEVEL) / 2
        lo, hi = np.nanpercentile(curves, [q, 100 - q], axis=0)
    centre = predict(fit.params, grid)
    # widen about the fitted curve by the same factor as the parameter intervals
    return centre + fit.rescale * (lo - centre), centre + fit.rescale * (hi - centre)


def _ticks(ax, xk: np.ndarray, log_y: bool) -> None:
    """Ticks at the swept x values and plain-text log labels (mathtext is slow to lay out)."""
    if 0 < len(xk) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(xk))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.xaxis.set_major_formatter(LogFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        lo, hi = ax.get_ylim()
        ax.yaxis.set_major_formatter(plain)
        # label the 2..9 ticks only when fewer than ~1.5 decades are shown
        ax.yaxis.set_minor_formatter(plain if np.log10(hi / lo) < 1.5 else NullFormatter())


def _label(group: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) or "all"


def plot_panel(path: Path, metric: str, target: str, x_name: str, series) -> Path:
    """Write one panel: ``series`` is a list of pipeline.Series for this (metric, x)."""
    fig = Figure(figsize=(5.2, 3.8), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    for i, s in enumerate(series):
        color = f"C{i % 10}"
        if len(s.x):
            ax.scatter(s.x, s.y, s=10, alpha=0.45, color=color, label=_label(s.group))
            positive &= bool(np.all(s.y > 0))
        if not s.fits or not len(s.x):
            continue
        grid = np.geomspace(np.min(s.x), np.max(s.x), 80)
        for j, (name, fit) in enumerate(s.fits.items()):
            curve = predict(fit.params, grid)
            ax.plot(grid, curve, _STYLE.get(name, ":"), color=color, lw=1.4,
                    label=f"{name} fit (b={fit.params['b']:.2f})")
            band = _band(fit, grid) if j == 0 else None  # one band per group stays legible
            if band is not None:
                ax.fill_between(grid, band[0], band[1], color=color, alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log" if positive else "linear")
    ax.set_xlabel(x_name)
    ax.set_ylabel(target)
    ax.set_title(f"{target} vs {x_name}", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="upper right")  # "best" scans every point: slow
    _ticks(ax, np.unique(np.concatenate([s.x for s in series])) if series else np.array([]),
           positive)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.13, top=0.92)
    fig.savefig(path)
    return path
