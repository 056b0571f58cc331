"""A stop of a job on several GPUs, as trainbot does it: the command Supervisor.plan builds, launched by the local
backend, `interrupt` once step N is logged; prints how long each rank took to go and how they ended.

    python3 scripts/gpu/stop_ranks.py --config trainbot.toml --work DIR [--gpus 0,1] [--at 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from pathlib import Path

from compare import plan

from runner.backends import ProcessRef
from runner.backends.local import LocalBackend
from runner.command import SwiftCommand


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--gpus", default="0,1")
    ap.add_argument("--at", type=int, default=5)
    args = ap.parse_args()
    gpus = tuple(args.gpus.split(","))
    out = args.work / "out-stop"
    p = await plan(args.config, args.work, "fast", gpus, out)
    backend = LocalBackend(args.work / "exits")
    ref = ProcessRef("stop", "train")
    log = args.work / "stop.log"
    t0 = time.time()
    launched = await backend.launch(ref, SwiftCommand(p.argv, p.env), log_path=log, gpus=gpus)
    ref = dataclasses.replace(ref, run=launched.run(log))
    mark = f'"global_step/max_steps": "{args.at}/'
    while not any(mark in f.read_text() for f in out.glob("v*/logging.jsonl")):  # noqa: ASYNC110 (a file, polled)
        await asyncio.sleep(0.5)
    t_stop = time.time()
    await backend.interrupt(ref)
    while (await backend.status(ref)).alive:  # noqa: ASYNC110 (another process, polled)
        await asyncio.sleep(0.2)
    text = log.read_text()
    print(json.dumps({"gpus": gpus, "stop_at_s": round(t_stop - t0, 1),
                      "gone_after_s": round(time.time() - t_stop, 1),
                      "returncode": (await backend.status(ref)).returncode,
                      "keyboard_interrupts": text.count("KeyboardInterrupt"),
                      "first_argv": list(p.argv[:6])}))


if __name__ == "__main__":
    asyncio.run(main())
