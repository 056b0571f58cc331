"""Time the LoRA merge trainbot starts for `export <job>` (runner.command.build_export, the direct entry) on a
GPU or on the CPU, with the time-stamped log and NVML samples of monitor.py.

    python3 scripts/gpu/export.py --config trainbot.toml --checkpoint DIR/checkpoint-94 --out DIR --device 0|cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from monitor import run

from runner.backends.local import device_env
from runner.command import build_export, direct_entry
from runner.config import load_config


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="0", help="a GPU index, or cpu")
    args = ap.parse_args()
    config = load_config(args.config)
    export_dir = args.out / f"merged-{args.device}"
    shutil.rmtree(export_dir, ignore_errors=True)
    cmd = build_export(checkpoint=args.checkpoint, export_dir=export_dir, config=config,
                       entry=direct_entry(config.swift_bin))
    env = os.environ | cmd.env | device_env((args.device,)) | {"PYTHONUNBUFFERED": "1"}
    res = run(f"export-{args.device}", [shutil.which(cmd.argv[0]) or cmd.argv[0], *cmd.argv[1:]], env=env,
              output_dir=export_dir, log_path=args.out / f"export-{args.device}.log",
              gpu_index=int(args.device) if args.device.isdigit() else 0)
    size = sum(f.stat().st_size for f in export_dir.glob("*.safetensors")) / 1e9
    summary = {"device": args.device, "rc": res.rc, "wall_s": round(res.wall_s, 1), "safetensors_gb": round(size, 2),
               "gpu_peak_mib": max((g[2] for g in res.gpu), default=None)}
    (args.out / f"export-{args.device}.json").write_text(json.dumps(summary))
    print(json.dumps(summary), flush=True)
    return 0 if res.rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
