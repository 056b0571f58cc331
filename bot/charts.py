"""The loss curve of a run, and the curves of compared runs, as PNGs, from swift's logging.jsonl (matplotlib's Agg
canvas: no display needed)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

from bot.compare import Comparison
from runner.run_files import LOGGING_FILE

Points = list[tuple[int, float]]


def loss_points(lines: Iterable[str]) -> tuple[Points, Points]:
    """(step, loss) of the training records and (step, eval_loss) of the evaluations."""
    train: Points = []
    evals: Points = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        step_text = str(rec.get("global_step/max_steps", "")).partition("/")[0]
        if not step_text.isdigit():
            continue
        step = int(step_text)
        for key, points in (("loss", train), ("eval_loss", evals)):
            value = rec.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                points.append((step, float(value)))
    return train, evals


def loss_curve_png(run_dir: Path, title: str) -> bytes | None:
    """None when the run logged no loss (it failed before the first step)."""
    try:
        lines = (run_dir / LOGGING_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    train, evals = loss_points(lines)
    if not train and not evals:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # slow to import: only when a chart is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for points, label, style in ((train, "train loss", "-"), (evals, "eval loss", "o--")):
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points], style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def compare_png(cmp: Comparison) -> bytes | None:
    """The compared runs' loss (solid) and eval loss (dashed, with its points) by step, a colour a job; None when
    none of them logged a loss yet."""
    if not any(r.metrics.series.get(k) for r in cmp.runs for k in ("loss", "eval_loss")):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.2, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for n, run in enumerate(cmp.runs):
        colour = f"C{n}"
        for key, label, style in (("loss", "loss", "-"), ("eval_loss", "eval loss", "o--")):
            points = run.metrics.series.get(key) or ()
            if points:
                ax.plot(
                    [s for s, _ in points],
                    [v for _, v in points],
                    style,
                    color=colour,
                    markersize=3,
                    label=f"{run.job.id} {label}",
                )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"Loss of jobs {', '.join(cmp.ids)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncols=2 if len(cmp.runs) > 4 else 1)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def compare_filename(cmp: Comparison) -> str:
    return f"compare-{'-'.join(cmp.ids)}.png"
