"""The local Slurm the `slurm` tests need (`scripts/slurm_up.sh up`, which `make test` runs first): find it or
skip with the reason, and wait until no job holds a GPU."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.slurm_cluster import nodes

DEADLINE_S = 30.0


def require_slurm() -> str:
    """The name of a ready node with 2 (fake) GPUs; skips when Slurm is not installed or not up."""
    if shutil.which("sinfo") is None:
        pytest.skip("Slurm is not installed (no sinfo): run scripts/slurm_up.sh up")
    if "SLURM_CONF" not in os.environ and not Path("/etc/slurm/slurm.conf").exists():
        conf = Path(os.environ.get("SLURM_HOME", "/var/tmp/trainbot-slurm")) / "etc/slurm.conf"
        if not conf.exists():
            pytest.skip("no Slurm config (SLURM_CONF, /etc/slurm/slurm.conf): run scripts/slurm_up.sh up")
        os.environ["SLURM_CONF"] = str(conf)
    try:
        p = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T %G"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo got no answer from slurmctld in 10 s: run scripts/slurm_up.sh up")
    lines = [ln.split() for ln in p.stdout.splitlines() if ln.strip()]
    if p.returncode != 0 or not lines:
        pytest.skip(f"Slurm is not up ({p.stderr.strip() or 'no nodes'}): run scripts/slurm_up.sh up")
    ready = [ln for ln in lines if ln[1] in {"idle", "mixed", "allocated"}]  # "idle*" = not responding
    if not ready:
        pytest.skip(f"no usable Slurm node: {p.stdout.strip()}")
    if not any("gpu:2" in ln[2] for ln in ready):
        pytest.skip(f"these tests want a node with 2 (fake) GPUs, sinfo says: {p.stdout.strip()}")
    return str(ready[0][0])


async def wait_gpus_free(limit_s: float = DEADLINE_S) -> None:
    """Until no job holds a GPU (a previous test's jobs may still be completing)."""
    end = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < end:
        if all(n.gpus_used == 0 for n in await nodes()):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"GPUs still in use after {limit_s} s: {await nodes()}")
