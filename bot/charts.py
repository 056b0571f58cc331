"""The loss curve of a run, and the curves of compared runs, as PNGs (matplotlib's Agg canvas: no display needed).
The points are runner/metrics.py's, the one reader of swift's logging.jsonl."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from bot.compare import Comparison
from runner.metrics import READER, Point

# (its points, its line style, its colour (None: matplotlib's next), its label)
Curve = tuple[Sequence[Point], str, str | None, str]


def loss_curve_png(run_dir: Path, title: str) -> bytes | None:
    """The run's train loss and eval loss by step; None when it logged no loss (it failed before the first step)."""
    series = READER.read([run_dir]).series
    curves = [
        (series.get(key) or (), style, None, label)
        for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "eval loss", "o--"))
    ]
    return _png(curves, title, size=(6.4, 3.6), markersize=6.0)


def compare_png(cmp: Comparison) -> bytes | None:
    """The compared runs' loss (solid) and eval loss (dashed, with its points) by step, a colour a job; None when
    none of them logged a loss yet."""
    curves = [
        (run.metrics.series.get(key) or (), style, f"C{n}", f"{run.job.id} {label}")
        for n, run in enumerate(cmp.runs)
        for key, label, style in (("loss", "loss", "-"), ("eval_loss", "eval loss", "o--"))
    ]
    title = f"Loss of jobs {', '.join(cmp.ids)}"
    return _png(curves, title, size=(7.2, 4.0), markersize=3.0, legend_cols=2 if len(cmp.runs) > 4 else 1)


def _png(
    curves: Sequence[Curve],
    title: str,
    *,
    size: tuple[float, float],
    markersize: float,
    legend_cols: int | None = None,
) -> bytes | None:
    """The curves that have points, loss by step; None when none has any. `legend_cols`: a small legend in that
    many columns (several jobs), else matplotlib's own."""
    drawn = [curve for curve in curves if curve[0]]
    if not drawn:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # slow to import: only when a chart is drawn
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for points, style, colour, label in drawn:
        ax.plot([s for s, _ in points], [v for _, v in points], style, color=colour, markersize=markersize, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend_cols is None:
        ax.legend()
    else:
        ax.legend(fontsize="small", ncols=legend_cols)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def compare_filename(cmp: Comparison) -> str:
    return f"compare-{'-'.join(cmp.ids)}.png"
