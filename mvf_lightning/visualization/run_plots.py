"""Pictures of several runs side by side (``results --plot DIR``): each metric over the epochs,
one line per run, and a bar chart of every metric's final value across the runs.

Plain data in (:class:`RunCurves`: a label, ``metric -> [(epochs trained, value)]`` and the
final values), PNG files out, drawn with matplotlib's Agg canvas (no display, no pyplot
state). Runs keep one colour and marker in every picture; legends sit beside the axes, never
on the data; long labels wrap.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.atomic import atomic_path
from .figure import new_figure

__all__ = ["FINAL_VALUES_FILE", "RunCurves", "curves_figure", "final_values_figure",
           "metric_file_name", "plot_final_values", "plot_metric_curves", "plot_runs"]

FINAL_VALUES_FILE = "final_values.png"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", "-.", ":")
_DPI = 100
_LABEL_WIDTH = 38  # characters per line of a run label


@dataclass
class RunCurves:
    """One run as the pictures show it."""

    label: str
    """What tells the run apart: the settings that differ between the runs, or its name."""
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """``metric -> [(epochs trained, value)]``, sorted by epoch."""
    final: dict[str, float] = field(default_factory=dict)
    """``metric -> the last value logged``."""
    averaged: set[str] = field(default_factory=set)
    """Metrics whose points are means of several values logged within an epoch."""


def metric_file_name(metric: str) -> str:
    """``val/demo/mean/kendalls_tau`` -> ``val_demo_mean_kendalls_tau.png``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", metric).strip("_") + ".png"


def _wrap(text: str, width: int = _LABEL_WIDTH) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def _style(i: int, n: int) -> dict:
    from matplotlib import colormaps

    palette = colormaps["tab10" if n <= 10 else "tab20"]
    return {
        "color": palette(i % palette.N),
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _LINESTYLES[(i // len(_MARKERS)) % len(_LINESTYLES)],
    }


def _short(metric: str) -> str:
    """A metric's own name, without the stage / dataset / set path."""
    return metric.rsplit("/", 1)[-1]


def _wrap_key(key: str, width: int) -> str:
    """A metric key on lines of at most ``width`` characters, broken after a ``/``."""
    lines = [""]
    for part in re.split(r"(?<=/)", key):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _title(metric: str, width: int = 80) -> str:
    """The metric's key as logged (as in the table and the logs), and what it is in words."""
    parts = metric.split("/")
    key = _wrap_key(metric, width)
    stage = {"val": "validation", "test": "test", "train": "training"}.get(parts[0], parts[0])
    if len(parts) == 4:  # <stage>/<dataset>/<set>/<metric>
        where = "mean over its sets" if parts[2] == "mean" else f"set {parts[2]}"
        return f"{key}\n{stage}, dataset {parts[1]}, {where}"
    return f"{key}\n{stage}" if len(parts) > 1 else key


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=_DPI)
    return path


def curves_figure(runs: Sequence[RunCurves], metric: str, legend_title: str = "run"):
    """One metric over the epochs, a line (with markers) per run that logged it; the legend,
    titled ``legend_title``, beside the axes (a matplotlib ``Figure`` on the Agg canvas)."""
    from matplotlib.ticker import MaxNLocator

    drawn = [(i, r) for i, r in enumerate(runs) if r.curves.get(metric)]
    # Tall enough for the legend beside the axes: every run's label, however many lines.
    legend_lines = sum(_wrap(r.label).count("\n") + 1 for _, r in drawn) + 2
    fig = new_figure(1100, max(520, 40 + 16 * legend_lines + 6 * len(drawn)), dpi=_DPI)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    for i, run in drawn:
        x, y = zip(*run.curves[metric])
        ax.plot(x, y, label=_wrap(run.label), markersize=5, linewidth=1.6,
                **_style(i, len(runs)))
    ax.set_title(_title(metric), fontsize=12)
    ax.set_xlabel("epochs trained")
    averaged = any(metric in r.averaged for _, r in drawn)
    ax.set_ylabel(_short(metric) + (" (mean of the epoch's logged values)" if averaged else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    epochs = [x for _, r in drawn for x, _ in r.curves[metric]]
    if epochs and max(epochs) - min(epochs) < 2:  # one or two epochs: whole-epoch ticks still
        ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
    ax.grid(True, alpha=0.3)
    if drawn:
        fig.legend(loc="outside right upper", fontsize=9, title=legend_title,
                   title_fontsize=9, frameon=False)
    else:
        ax.text(0.5, 0.5, "no run logged this metric", ha="center", va="center",
                transform=ax.transAxes)
    return fig


def plot_metric_curves(
    runs: Sequence[RunCurves], metric: str, path: str | Path, legend_title: str = "run"
) -> Path:
    """:func:`curves_figure` written as a PNG to ``path``."""
    return _save(curves_figure(runs, metric, legend_title), Path(path))


def final_values_figure(
    runs: Sequence[RunCurves], metrics: Sequence[str], columns: int | None = None
):
    """A horizontal bar per run for each metric (one panel each, ``columns`` per row: by
    default up to 3, as square as the count allows), the value written at the bar's end; run
    labels on the vertical axis, where they never overlap."""
    metrics = list(metrics)
    columns = columns or min(3, math.ceil(math.sqrt(len(metrics))))
    columns = max(1, min(columns, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    labels = [_wrap(r.label) for r in runs]
    lines = sum(label.count("\n") + 1 for label in labels)
    widest = max((len(line) for label in labels for line in label.split("\n")), default=10)
    label_px = 7 * min(_LABEL_WIDTH, widest)
    panel_h = max(160, 22 * lines + 70)
    fig = new_figure(label_px + 360 * columns + 40, panel_h * rows + 60, dpi=_DPI)
    fig.set_layout_engine("constrained", wspace=0.06)
    fig.suptitle("Final value of each metric, per run (the last value logged)", fontsize=13)
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
    y = list(range(len(runs)))
    for k, ax in enumerate(axes.flat):
        if k >= len(metrics):
            ax.set_visible(False)
            continue
        metric = metrics[k]
        values = [r.final.get(metric, math.nan) for r in runs]
        finite = [v for v in values if math.isfinite(v)]
        colors = [_style(i, len(runs))["color"] for i in range(len(runs))]
        ax.barh(y, [v if math.isfinite(v) else 0.0 for v in values], color=colors, height=0.7)
        span = (max(finite + [0.0]) - min(finite + [0.0])) or 1.0
        for i, v in enumerate(values):
            text = f"{v:.4f}" if math.isfinite(v) else "not logged"
            ax.text(max(v, 0.0) if math.isfinite(v) else 0.0, i, " " + text, va="center",
                    fontsize=8)
        low, high = min(finite + [0.0]), max(finite + [0.0])
        ax.set_xlim(low - (0.05 * span if low < 0 else 0), high + 0.35 * span)
        ax.set_title(_title(metric, width=40), fontsize=10)
        ax.set_xlabel(_short(metric), fontsize=9)
        if k == 0:  # shared by every panel; shown in the first column only
            ax.set_yticks(y, labels, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.get_major_locator().set_params(nbins=4)
        ax.grid(True, axis="x", alpha=0.3)
    axes.flat[0].invert_yaxis()  # the first run on top, as in the table
    return fig


def plot_final_values(
    runs: Sequence[RunCurves], metrics: Sequence[str], path: str | Path
) -> Path:
    """:func:`final_values_figure` written as a PNG to ``path``."""
    return _save(final_values_figure(runs, metrics), Path(path))


def plot_runs(
    runs: Sequence[RunCurves],
    metrics: Sequence[str],
    out_dir: str | Path,
    legend_title: str = "run",
) -> list[Path]:
    """``<out_dir>/<metric>.png`` for every metric (over the epochs) and
    ``<out_dir>/final_values.png`` (the bar chart); returns the files written.
    ``legend_title`` says what the run labels are (e.g. the settings that differ)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, names = [], set()
    for metric in metrics:
        name = metric_file_name(metric)
        while name in names or name == FINAL_VALUES_FILE:
            name = name[: -len(".png")] + "_.png"
        names.add(name)
        written.append(plot_metric_curves(runs, metric, out_dir / name, legend_title))
    if metrics:
        written.append(plot_final_values(runs, metrics, out_dir / FINAL_VALUES_FILE))
    return written
