"""MIUB by depth: the per-module figures (``miub_layers``) as a profile over layer index.

The headline ``miub`` averages every adapted module; the profile shows where in the network
the LoRA branch follows the frozen features and where it departs from them: one line per
(group, module kind, e.g. q_proj), the mean over rows (seeds) at each layer, with the seeds'
standard deviation as a band. Works on result rows as the store returns them (``miub_layers``
as a dict or as pyarrow's list of (key, value) pairs).
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_LAYER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def layer_position(module: str) -> tuple[int, str] | None:
    """("model.layers.3.self_attn.q_proj") -> (3, "q_proj"); None without a layer index."""
    found = _LAYER.search(module)
    if found is None:
        return None
    return int(found.group(1)), module.rsplit(".", 1)[-1]


def _layers(value) -> dict[str, float]:
    if value is None:
        return {}
    return dict(value.items() if isinstance(value, dict) else value)


def depth_profile(rows: list[dict], by: tuple[str, ...] = (), column: str = "miub_layers") -> list[dict]:
    """One record per (group, module kind, depth): mean, sd and count of the per-module MIUB.

    ``rows`` are result rows (one per trial, typically the final evaluation); ``by`` names
    the columns that make a group (e.g. ``("rank",)``); modules without a layer index in their
    name and non-finite values are left out.
    """
    cells: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        group = tuple(row.get(name) for name in by)
        for module, value in _layers(row.get(column)).items():
            position = layer_position(module)
            if position is None or value is None or not math.isfinite(value):
                continue
            depth, kind = position
            cells[(group, kind, depth)].append(float(value))
    records = []
    for (group, kind, depth), values in cells.items():
        array = np.asarray(values)
        records.append({
            "group": dict(zip(by, group)),
            "module": kind,
            "depth": depth,
            "mean": float(array.mean()),
            "sd": float(array.std(ddof=1)) if len(array) > 1 else None,
            "n": len(array),
        })
    return sorted(records, key=lambda r: (tuple(_order(v) for v in r["group"].values()), r["module"], r["depth"]))


def _order(value) -> tuple:
    """Numbers in numeric order, before anything else in text order."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def _label(record: dict) -> str:
    group = ", ".join(f"{k}={v}" for k, v in record["group"].items())
    return f"{group} {record['module']}".strip()


def plot_depth_profile(path, profile: list[dict], title: str = "MIUB by layer") -> Path:
    """A PNG: MIUB against layer index, one line (and ±sd band) per group and module kind."""
    figure = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    lines: dict[str, list[dict]] = defaultdict(list)
    for record in profile:
        lines[_label(record)].append(record)
    for label, records in lines.items():
        x = np.array([r["depth"] for r in records])
        y = np.array([r["mean"] for r in records])
        (line,) = ax.plot(x, y, marker="o", label=label)
        sd = np.array([r["sd"] if r["sd"] is not None else np.nan for r in records])
        if np.isfinite(sd).any():
            ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.15, linewidth=0)
    depths = sorted({r["depth"] for r in profile})
    if depths:
        ax.set_xticks(depths)
    ax.set_xlabel("layer index")
    ax.set_ylabel("MIUB of the module (nats)")
    ax.set_title(title)
    if lines:
        ax.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)


def markdown_table(profile: list[dict]) -> str:
    """Depth-profile table: one row per line of the plot, one column per layer."""
    depths = sorted({r["depth"] for r in profile})
    lines: dict[str, dict[int, dict]] = defaultdict(dict)
    for record in profile:
        lines[_label(record)][record["depth"]] = record
    out = ["| group, module | " + " | ".join(f"layer {d}" for d in depths) + " |",
           "|---|" + "---:|" * len(depths)]
    for label, by_depth in lines.items():
        cells = []
        for d in depths:
            r = by_depth.get(d)
            cells.append("" if r is None else f"{r['mean']:.4f}" + (f" ± {r['sd']:.4f}" if r["sd"] is not None else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def write(rows: list[dict], report_dir, by: tuple[str, ...] = ()) -> list[str]:
    """Write depth_miub.png and depth_miub.json into report_dir; the report section's lines
    (empty when no row has per-module figures)."""
    profile = depth_profile(rows, by)
    if not profile:
        return []
    root = Path(report_dir)
    root.mkdir(parents=True, exist_ok=True)
    plot_depth_profile(root / "depth_miub.png", profile)
    (root / "depth_miub.json").write_text(json.dumps(profile, indent=1, default=str))
    return ["## MIUB by depth", "", markdown_table(profile), "", "![depth_miub](depth_miub.png)", ""]
