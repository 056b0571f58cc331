"""Time the LoRA merge trainbot starts for `export <job>` (runner.command.build_export, the direct entry) on a
GPU or on the CPU, with the time-stamped log and NVML samples of monitor.py.

    python3 scripts/gpu/export.py --config trainbot.toml --checkpoint DIR/checkpoint-94 --out DIR --device 0|cpu
                                  [--warm] [--plain] [--name NAME] [--against DIR/merged-cpu]

`--warm` hands the export to a process that imported swift before it (as the local backend does, runner/warm.py):
the time runs from the hand-over. `--plain` runs `swift export` itself (the wrapper, safetensors writing one shard
after the other), as trainbot did before issue 16. `--against` compares the merged weights with another export's,
tensor by tensor (how many bf16 values differ, and by how much at most).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from compare import warm_start
from monitor import run

from runner.backends.local import device_env
from runner.command import build_export, direct_entry
from runner.config import load_config


def differences(ours: Path, theirs: Path) -> dict[str, Any]:
    """How the merged weights in `ours` differ from those in `theirs` (safetensors shards, same names)."""
    import torch
    from safetensors import safe_open

    def tensors(folder: Path) -> dict[str, tuple[Path, str]]:
        found = {}
        for shard in sorted(folder.glob("*.safetensors")):
            with safe_open(str(shard), "pt") as f:
                found.update({name: (shard, name) for name in f.keys()})  # noqa: SIM118 (safe_open has no __iter__)
        return found

    mine, other = tensors(ours), tensors(theirs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    differ = values = 0
    worst = 0.0
    for name, (shard, key) in mine.items():
        with safe_open(str(shard), "pt", device=device) as f:
            a = f.get_tensor(key)
        with safe_open(str(other[name][0]), "pt", device=device) as f:
            b = f.get_tensor(key)
        values += a.numel()
        unequal = a != b
        differ += int(unequal.sum())
        if unequal.any():
            worst = max(worst, float(((a.float() - b.float()).abs() / b.float().abs().clamp_min(1e-12))[unequal].max()))
    return {"tensors": len(mine), "same_names": sorted(mine) == sorted(other), "values": values,
            "values_differing": differ, "share_differing": differ / max(values, 1),
            "largest_relative_difference": worst}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="0", help="a GPU index, or cpu")
    ap.add_argument("--warm", action="store_true", help="hand it to a process that imported swift before it")
    ap.add_argument("--plain", action="store_true", help="`swift export` itself, not trainbot's entry")
    ap.add_argument("--name", help="the run's name (default export-DEVICE)")
    ap.add_argument("--against", type=Path, help="another export's folder: compare the merged weights")
    args = ap.parse_args()
    config = load_config(args.config)
    name = args.name or f"export-{args.device}"
    export_dir = args.out / f"merged-{name}"
    shutil.rmtree(export_dir, ignore_errors=True)
    cmd = build_export(checkpoint=args.checkpoint, export_dir=export_dir, config=config,
                       entry=None if args.plain else direct_entry(config.swift_bin))
    env = os.environ | cmd.env | device_env((args.device,)) | {"PYTHONUNBUFFERED": "1"}
    argv = [shutil.which(cmd.argv[0]) or cmd.argv[0], *cmd.argv[1:]]
    res = run(name, argv, env=env, output_dir=export_dir, log_path=args.out / f"{name}.log",
              gpu_index=int(args.device) if args.device.isdigit() else 0,
              warm=warm_start(args.config, args.out / f"{name}.exit.json", argv, dict(env)) if args.warm else None)
    size = sum(f.stat().st_size for f in export_dir.glob("*.safetensors")) / 1e9
    summary: dict[str, Any] = {"name": name, "device": args.device, "warm": args.warm, "plain": args.plain,
                               "rc": res.rc, "wall_s": round(res.wall_s, 1), "safetensors_gb": round(size, 2),
                               "gpu_peak_mib": max((g[2] for g in res.gpu), default=None)}
    if args.against is not None and res.rc == 0:
        summary["against"] = {"folder": str(args.against)} | differences(export_dir, args.against)
    (args.out / f"{name}.json").write_text(json.dumps(summary))
    print(json.dumps(summary), flush=True)
    return 0 if res.rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
