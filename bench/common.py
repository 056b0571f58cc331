"""What every figure shares: a result row, percentiles, and configs for real and stand-in swift runs."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from demo.run import build_tiny_assets, default_swift_bin, tiny_config_toml
from runner.config import Config, load_config
from tests.fake_swift import fake_swift_bin  # bench uses the tests' stand-ins; tests never import bench

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank: no interpolation that would invent a value."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def tiny_config(root: Path, *, extra: dict[str, object] | None = None, sections: str = "") -> Config:
    """The fixed recipe on the tiny local model (real swift), as in `make demo`."""
    swift = default_swift_bin()
    assets = build_tiny_assets(REPO / ".cache" / "tiny" / "llm", swift)
    (root / "trainbot.toml").write_text(tiny_config_toml(assets, swift_bin=swift, extra=extra, sections=sections))
    return load_config(root / "trainbot.toml", base_dir=root)


def fake_config(
    root: Path,
    *,
    gpus: int,
    step_s: float,
    max_steps: int,
    logging_steps: int = 5,
    card_interval_s: float = 3.0,
    env: dict[str, str] | None = None,
) -> Config:
    """Jobs on tests/fake_swift.py: `max_steps` steps of `step_s` seconds, a log line every `logging_steps`;
    `env`: more of its FAKE_SWIFT_* settings."""
    more = [f'{k} = "{v}"' for k, v in (env or {}).items()]
    lines = [
        "[swift]",
        f'bin = "{fake_swift_bin(root)}"',
        'version = "4.6.0"',
        "[swift.env]",
        f'FAKE_SWIFT_STEP_S = "{step_s}"',
        *more,
        "[llm]",
        f"max_steps = {max_steps}",
        f"logging_steps = {logging_steps}",
        "save_steps = 1000000",
        "eval_steps = 1000000",
        "[gpus]",
        f"inventory = {gpus}",
        "[slack]",
        f"card_interval_s = {card_interval_s}",
    ]
    (root / "trainbot.toml").write_text("\n".join(lines) + "\n")
    return load_config(root / "trainbot.toml", base_dir=root)


def machine() -> str:
    import platform

    return f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
