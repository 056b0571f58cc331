"""The evidence: the fixed LLM job launched as the seed's literal flags (`profile=exact`) and as trainbot's
default (`profile=fast`), one after the other on the same machine, GPU and data; prints the wall time from launch
to the end of each, the speed-up, the loss at every logged step with the relative difference, the final training
loss, GPU memory and utilisation.

    python3 scripts/gpu/compare.py --config trainbot.toml --work DIR [--gpu 0] [--order exact,fast] [--name NAME]
    python3 scripts/gpu/compare.py --work DIR --report [--pair exact,fast] [--goal 8]
                                                   (the table again, from DIR/exact.json, DIR/fast.json)

`--warm` hands the job to a process that imported swift before it came, as the local backend does
(runner/warm.py): the time runs from the hand-over. `--gpu 0,1` runs the job on two GPUs (what `llm gpu=0,1`
starts); `--name` saves a run as DIR/NAME.json (one profile in --order), so one-GPU and two-GPU runs of the same
profile can be compared with `--pair`.

Each command is the one trainbot itself would start for `llm gpu=0 out=...` (Supervisor.plan: the config, the
profile decided from NVML right before the launch), with the environment the local backend adds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from monitor import Warm, run

from bot.words.profiles import note_words

from runner import launcher, swift_entry
from runner.backends.local import LocalBackend, device_env
from runner.command import swift_env
from runner.config import load_config
from runner.gpus import GpuProbe
from runner.progress import parse_duration
from runner.supervisor import JobRequest, Plan, Supervisor
from runner.warm import warm_entry
from storage.jobs import JobStore
from storage.models import Kind

STEP_TOLERANCE = 0.001  # every logged step's loss within 0.1% of the literal's (issue 16)
FINAL_TOLERANCE = 0.001  # final training loss within 0.1%
SPEEDUP_GOAL = 8.0


async def plan(config_path: Path, work: Path, profile: str, gpus: tuple[str, ...], out_dir: Path,
               padded: bool = False) -> Plan:
    config = load_config(config_path)
    store = await JobStore.open(work / "plan.db")
    try:
        probe = GpuProbe(list(config.gpu_inventory) or None)
        await asyncio.to_thread(probe.refresh)
        sup = Supervisor(store, config, probe, LocalBackend(work / "exits", config), wake=lambda: None)  # no loop here
        await sup.refresh_facts()  # swift's version and Liger, as the runtime probes them at start
        if padded:  # the default as it was before padding-free micro-batches (issue 16: what they bring)
            sup.facts = dataclasses.replace(sup.facts, packed_sdpa=False)
        return sup.plan(JobRequest(Kind.LLM, gpus, out_dir, {}, profile=profile))
    finally:
        await store.close()


def warm_start(config_path: Path, exit_file: Path, argv: list[str], env: dict[str, str]) -> Warm:
    """The job handed to a process that imported swift before it (what the local backend does with
    `[runner] warm_start`: runner/warm.py), through the same launcher and entry, its output on the monitor's pipe."""
    entry = warm_entry(argv)
    if entry is None:
        sys.exit(f"--warm: {argv[:3]} does not start through runner/swift_entry.py in one process")
    order = {"exit_file": str(exit_file), "job": {"args": argv[len(entry):], "argv": argv, "env": env,
                                                   "log": "/dev/stdout", "preamble": None}}
    return Warm([sys.executable, launcher.__file__, "--warm", "--", *entry, swift_entry.WARM],
                os.environ | swift_env(load_config(config_path)) | {"PYTHONUNBUFFERED": "1"},
                json.dumps(order).encode() + b"\n", swift_entry.READY)


def launch(config_path: Path, work: Path, profile: str, gpu: str, name: str, wrap: str | None = None,
           env_over: dict[str, str] | None = None, padded: bool = False, warm: bool = False,
           stop_after: int | None = None) -> dict[str, Any]:
    gpus = tuple(gpu.split(","))
    out_dir = work / f"out-{name}"
    shutil.rmtree(out_dir, ignore_errors=True)
    p = asyncio.run(plan(config_path, work, profile, gpus, out_dir, padded))
    print(f"[{profile}] {p.display}", flush=True)
    for note in p.notes:
        print(f"[{profile}] note: {note_words(note)}", flush=True)
    exe = shutil.which(p.argv[0]) or p.argv[0]
    env = os.environ | p.env | device_env(gpus) | {"PYTHONUNBUFFERED": "1"} | (env_over or {})
    argv = [exe, *p.argv[1:]]
    if wrap and p.argv[1] == "sft":  # `swift sft` (exact): its script, run by this python under the wrapper
        spec = importlib.util.find_spec("swift.cli.sft")
        assert spec is not None and spec.origin is not None
        argv = [sys.executable, wrap, spec.origin, *p.argv[2:]]
    elif wrap:  # the direct start: the wrapper before runner/swift_entry.py
        argv = [exe, wrap, *p.argv[1:]]
    res = run(name, argv, env=env, output_dir=out_dir, log_path=work / f"{name}.log",
              gpu_index=int(gpus[0]) if gpus[0].isdigit() else 0, stop_after_step=stop_after,
              warm=warm_start(config_path, work / f"{name}.exit.json", argv, env) if warm else None)
    summary = res.summary() | {"display": p.display, "profile_notes": [note_words(n) for n in p.notes]}
    (work / f"{name}.json").write_text(json.dumps({"summary": summary, "logged": res.logged, "gpu": res.gpu},
                                                      indent=1))
    print(f"[{profile}] rc={res.rc} wall {res.wall_s:.1f} s", flush=True)
    return summary


def eta_lines(name: str, logged: list[tuple[float, dict[str, Any]]], wall_s: float) -> list[str]:
    """swift's remaining_time (what trainbot's card shows as ETA, parsed by trainbot) against the real end."""
    out = []
    rows = [(t, rec) for t, rec in logged if "remaining_time" in rec and "loss" in rec]
    for frac in (0.1, 0.25, 0.5, 0.75):
        for t, rec in rows:
            step, _, total = str(rec.get("global_step/max_steps", "")).partition("/")
            if step.isdigit() and total.isdigit() and int(step) >= frac * int(total):
                eta = parse_duration(rec["remaining_time"])
                out.append(f"{name}: at step {step}/{total} ({t:.0f} s) ETA {rec['remaining_time']!s:>8} = "
                           f"{eta or 0:.0f} s; it really ended {wall_s - t:.0f} s later")
                break
    return out


def _rel(a: float, b: float) -> float:
    return (a - b) / b


def report(exact: dict[str, Any], fast: dict[str, Any], goal: float = SPEEDUP_GOAL) -> tuple[str, bool]:
    """The comparison table, and whether all three goals are met."""
    le = {int(k): float(v) for k, v in exact["losses"].items()}
    lf = {int(k): float(v) for k, v in fast["losses"].items()}
    steps = sorted(set(le) & set(lf))
    diffs = [_rel(lf[s], le[s]) for s in steps]
    worst = max((abs(d) for d in diffs), default=float("nan"))
    ratio = exact["wall_s"] / fast["wall_s"]
    final = None
    if exact.get("train_loss") and fast.get("train_loss"):
        final = _rel(fast["train_loss"], exact["train_loss"])

    def sps(s: dict[str, Any]) -> str:
        v = s.get("s_per_step_after_first")
        return "?" if not v else f"{v:.3f} s/step = {1 / v:.2f} steps/s"

    rows = [
        ("launch to end (s)", f"{exact['wall_s']:.1f}", f"{fast['wall_s']:.1f}"),
        ("launch to first logged step (s)", str(exact["first_step_s"]), str(fast["first_step_s"])),
        ("steady speed", sps(exact), sps(fast)),
        ("steps", f"{exact['last_step']}/{exact['max_steps']}", f"{fast['last_step']}/{fast['max_steps']}"),
        ("peak GPU memory, NVML (MiB)", str(exact["gpu_peak_mib"]), str(fast["gpu_peak_mib"])),
        ("peak reserved, swift (GiB)", str(exact["swift_peak_gib"]), str(fast["swift_peak_gib"])),
        ("GPU utilisation mean / max (%)", f"{exact['util_mean_pct']} / {exact['util_max_pct']}",
         f"{fast['util_mean_pct']} / {fast['util_max_pct']}"),
        ("power mean (W)", str(exact["power_mean_w"]), str(fast["power_mean_w"])),
        ("final train_loss", str(exact.get("train_loss")), str(fast.get("train_loss"))),
    ]
    out = [f"{'':34}{'exact (seed flags)':>34}{'fast (trainbot default)':>34}"]
    out += [f"{a:34}{b:>34}{c:>34}" for a, b, c in rows]
    out.append("")
    out.append(f"{'step':>6}{'exact loss':>14}{'fast loss':>14}{'rel. diff':>12}")
    out += [f"{s:>6}{le[s]:>14.6f}{lf[s]:>14.6f}{d * 100:>+11.3f}%" for s, d in zip(steps, diffs, strict=True)]
    failed = [name for name, r in (("exact", exact), ("fast", fast)) if r["rc"] != 0 or not r.get("train_loss")]
    if failed:
        out.append(f"\nNOT COMPARABLE: {' and '.join(failed)} did not finish (see its log)")
    ok_speed = ratio >= goal and not failed
    ok_steps = bool(steps) and worst <= STEP_TOLERANCE and set(le) == set(lf)
    ok_final = final is not None and abs(final) <= FINAL_TOLERANCE
    out.append("")
    met = {True: "met", False: "NOT met"}
    out.append(f"speed-up, launch to end: {ratio:.2f}x (goal >= {goal:g}x): {met[ok_speed]}")
    out.append(f"largest per-step loss difference: {worst * 100:.3f}% over {len(steps)} logged steps "
               f"(goal <= {STEP_TOLERANCE:.1%}): {met[ok_steps]}")
    out.append("final train_loss difference: " + ("?" if final is None else f"{final * 100:+.4f}%")
               + f" (goal within {FINAL_TOLERANCE:.1%}): {met[ok_final]}")
    return "\n".join(out), ok_speed and ok_steps and ok_final


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--gpu", default="0")
    ap.add_argument("--order", default="exact,fast")
    ap.add_argument("--name", help="save the run as WORK/NAME.json (default: the profile's name)")
    ap.add_argument("--pair", default="exact,fast", help="the two saved runs to compare: base,candidate")
    ap.add_argument("--goal", type=float, default=SPEEDUP_GOAL, help="the speed-up the candidate must reach")
    ap.add_argument("--report", action="store_true", help="only print the comparison of the saved runs")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE over the plan's environment")
    ap.add_argument("--wrap", help="a script run by the job's python before the entry (scripts/gpu/step_profile.py)")
    ap.add_argument("--stop-after", type=int, help="kill the job once this step is logged (a warm-up)")
    ap.add_argument("--warm", action="store_true",
                    help="hand each job to a process that imported swift before it (runner/warm.py)")
    ap.add_argument("--padded", action="store_true", help="the default without padding-free micro-batches")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report:
        if args.config is None:
            ap.error("--config is needed to run the jobs")
        for profile in args.order.split(","):
            launch(args.config, args.work, profile, args.gpu, args.name or profile, args.wrap,
                   dict(kv.split("=", 1) for kv in args.env), args.padded, args.warm, args.stop_after)
            time.sleep(3)  # let the driver release the GPU memory before the next launch
    base, candidate = args.pair.split(",")
    if not all((args.work / f"{p}.json").exists() for p in (base, candidate)):
        return 0  # the other run of the pair is elsewhere (e.g. on another GPU at the same time): --report later
    runs = {p: json.loads((args.work / f"{p}.json").read_text()) for p in (base, candidate)}
    text, ok = report(runs[base]["summary"], runs[candidate]["summary"], args.goal)
    for p, r in runs.items():
        text += "\n" + "\n".join(eta_lines(p, r["logged"], r["summary"]["wall_s"]))
    (args.work / "report.txt").write_text(text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
