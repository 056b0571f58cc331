"""The loss curve of a run, as a PNG, from swift's logging.jsonl (matplotlib's Agg canvas: no display needed)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

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
