"""Short probes of launch layouts for the fixed LLM recipe on one GPU: each runs the full job's schedule (same
steps, warmup and decay as the whole 1500-sample job) and is killed once a logged step reaches --steps, so its
losses at steps 1, 5, 10 compare directly with any other launch's, including the full literal job's.

    python3 scripts/gpu/probe.py --config trainbot.toml --out DIR [--steps 10] [--budget-s 420] [NAME ...]

The base command is what trainbot builds for `llm` (config applied, profile `exact`); each probe changes flags
on top. `long-*` probes train on long.jsonl (every sample ~2000 tokens) for the worst-case memory at
max_length 2048 and stop after step 1. Results: DIR/<name>.json, DIR/probes.json, and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from monitor import RunResult, run

from runner.backends.local import device_env
from runner.command import build_sft, resolve_recipe
from runner.config import load_config
from runner.recipes import ArgValue
from runner.swift_version import SwiftVersion, detect_version
from storage.models import Kind

GC_OFF = {"gradient_checkpointing": "false"}
LIGER = {"use_liger_kernel": "true"}


def layout(bs: int) -> dict[str, ArgValue]:
    return {"per_device_train_batch_size": str(bs), "gradient_accumulation_steps": str(16 // bs)}


@dataclass(frozen=True)
class Probe:
    name: str
    changes: dict[str, ArgValue] = field(default_factory=dict)
    long: bool = False  # train on long.jsonl, stop after step 1 (worst-case memory)
    est_s: float = 45.0  # what it costs, for the budget


PROBES: tuple[Probe, ...] = (  # in priority order: the budget drops the last ones
    Probe("b16-nogc-liger", {**layout(16), **GC_OFF, **LIGER}),
    Probe("b16-nogc-liger-compile", {**layout(16), **GC_OFF, **LIGER, "torch_compile": "true"}, est_s=100),
    Probe("b16-gc-liger", {**layout(16), **LIGER}),
    Probe("b8x2-nogc-liger", {**layout(8), **GC_OFF, **LIGER}),
    Probe("exact", {}, est_s=80),
    Probe("b16-gc", layout(16)),
    Probe("long-b16-gc-liger", {**layout(16), **LIGER}, long=True, est_s=40),
    Probe("b4x4-nogc-liger", {**layout(4), **GC_OFF, **LIGER}),
    Probe("long-b2-nogc-liger", {**layout(2), **GC_OFF, **LIGER}, long=True, est_s=40),
    Probe("b8x2-gc-liger", {**layout(8), **LIGER}),
    Probe("long-b8-gc", layout(8), long=True, est_s=40),
    Probe("long-b16-gc", layout(16), long=True, est_s=40),
    Probe("long-b4-nogc-liger", {**layout(4), **GC_OFF, **LIGER}, long=True, est_s=40),
    Probe("b2x8-nogc-liger", {**layout(2), **GC_OFF, **LIGER}, est_s=60),
)


def rel(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None or b == 0 else f"{(a - b) / b * 100:+.3f}%"


def table(results: list[dict[str, object]], ref: dict[int, float]) -> str:
    head = f"{'probe':<20}{'rc':>4}{'wall':>7}{'1st':>6}{'s/step':>8}{'est job':>8}{'NVML pk':>9}{'swift pk':>9}" \
           f"{'util':>6}  losses 1/5/10 (rel. to exact)"
    lines = [head]
    for r in results:
        losses: dict[int, float] = {int(k): v for k, v in r["losses"].items()}  # type: ignore[attr-defined]
        sps = r["s_per_step_after_first"]
        first = r["first_step_s"]
        est = "" if sps is None or first is None else f"{first + sps * 93:.0f}"  # type: ignore[operator]
        base = {} if str(r["name"]).startswith("long-") else ref
        ls = " ".join(f"{losses[s]:.5f}({rel(losses[s], base.get(s))})" for s in (1, 5, 10) if s in losses)
        lines.append(f"{r['name']!s:<20}{r['rc']!s:>4}{r['wall_s']!s:>7}{first!s:>6}{sps!s:>8}{est:>8}"
                     f"{r['gpu_peak_mib']!s:>9}{r['swift_peak_gib']!s:>9}{r['util_mean_pct']!s:>6}  {ls}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip probes that would end past this")
    ap.add_argument("--gpu", default="0")
    ap.add_argument("--full", action="store_true", help="run the named probes to the end of the job")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    config = load_config(args.config)
    try:
        version = detect_version(config.swift_bin)
    except Exception:
        version = SwiftVersion(4, 6, 0)
    base = resolve_recipe(Kind.LLM, config)
    datasets = base.value("dataset")
    data_dir = Path(str(datasets[0] if isinstance(datasets, tuple) else datasets).split("#")[0]).parent
    chosen = [p for p in PROBES if not args.names or p.name in args.names]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: list[dict[str, object]] = []
    for probe in chosen:
        if time.time() - t0 + probe.est_s > args.budget_s:
            print(f"skipped {probe.name}: budget", flush=True)
            continue
        changes = dict(probe.changes)
        if probe.long:
            changes["dataset"] = (str(data_dir / "long.jsonl"),)
        recipe = base.with_args(changes)
        out_dir = args.out / "runs" / probe.name
        cmd = build_sft(recipe, output_dir=out_dir, config=config, version=version)
        env = os.environ | cmd.env | device_env((args.gpu,)) | {"PYTHONUNBUFFERED": "1"}
        stop = None if args.full else (1 if probe.long else (5 if probe.name == "exact" else args.steps))
        res: RunResult = run(probe.name, cmd.argv, env=env, output_dir=out_dir,
                             log_path=args.out / f"{probe.name}.log", stop_after_step=stop,
                             deadline_s=args.budget_s if args.full else probe.est_s * 3)
        res.save(args.out / f"{probe.name}.json")
        summary = res.summary()
        if res.rc not in (0, None) and res.killed_after_step is None:
            tail = (args.out / f"{probe.name}.log").read_text(errors="replace")[-4000:]
            summary["notes"] = [*summary["notes"], "OOM" if "out of memory" in tail else "failed", tail[-600:]]
        results.append(summary)
        print(json.dumps({k: v for k, v in summary.items() if k != "notes"}), flush=True)
    (args.out / "probes.json").write_text(json.dumps(results, indent=1))
    ref = next(({int(k): v for k, v in r["losses"].items()} for r in results  # type: ignore[attr-defined]
                if r["name"] == "exact"), {})
    print(table(results, ref))
    for r in results:
        for note in r["notes"]:  # type: ignore[attr-defined]
            print(f"note {r['name']}: {str(note)[-300:]}")


if __name__ == "__main__":
    main()
