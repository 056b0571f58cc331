"""trainbot on the test Slurm: configs for the real swift on the tiny model or for tests/fake_swift.py, a running
bot that leaves no Slurm job behind, and waits on a job's state in the store."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from demo.run import default_swift_bin, tiny_config_toml
from runner import slurm_cli
from runner.config import Config, load_config
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from storage.models import Job, Kind
from tests import fake_swift
from tests.waiting import wait_until

FAKE_SWIFT = Path(__file__).resolve().parent / "fake_swift.py"
SLURM_SECTIONS = '[backend]\nkind = "slurm"\n[gpus]\ninventory = 2\n[slurm]\npoll_seconds = {poll}\n'


def real_config(tmp_path: Path, assets: Mapping[str, object], **extra: object) -> Config:
    path = tmp_path / "trainbot.toml"
    path.write_text(
        tiny_config_toml(assets, swift_bin=default_swift_bin(), extra=extra, sections=SLURM_SECTIONS.format(poll=0.2))
    )
    return load_config(path, base_dir=tmp_path)


# tests/fake_swift.py (shared with the bot's tests) behind a small `swift`: it says which GPUs Slurm gave the job,
# takes a moment to start like swift loading a model, and can fail at the end (FAKE_EXIT).
FAKE_BIN = f"""#!/bin/bash
echo "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-(unset)}}"
sleep "${{FAKE_START_S:-1}}"
{shlex.quote(sys.executable)} {shlex.quote(str(fake_swift.SCRIPT))} "$@"
rc=$?
if [ "$rc" = 0 ] && [ -n "${{FAKE_EXIT:-}}" ]; then echo "RuntimeError: fake failure" >&2; exit "$FAKE_EXIT"; fi
exit "$rc"
"""
# A trainer that carries on after SIGINT, as a stuck one would.
STUBBORN_BIN = """#!/bin/bash
trap 'echo "got SIGINT, carrying on"' INT
for _ in $(seq 600); do sleep 0.1; done
"""


def fake_config(
    tmp_path: Path,
    *,
    steps: int = 20,
    env: Mapping[str, str] | None = None,
    slurm: str = "",
    stop_grace_s: float = 30,
    script: str = FAKE_BIN,
    poll_s: float = 0.2,
) -> Config:
    swift = tmp_path / "bin" / "swift"
    swift.parent.mkdir(parents=True)
    swift.write_text(script)
    swift.chmod(0o755)
    knobs = {"FAKE_SWIFT_STEP_S": "0.1", **(env or {})}
    path = tmp_path / "trainbot.toml"
    path.write_text(
        "\n".join(
            [
                "[swift]",
                f"bin = {json.dumps(str(swift))}",
                'version = "4.6.0"',
                "[swift.env]",
                *(f"{k} = {json.dumps(v)}" for k, v in knobs.items()),
                "[llm]",
                f"max_steps = {steps}",
                "save_steps = 10",
                "logging_steps = 1",
                "[runner]",
                "progress_poll_seconds = 0.2",
                f"stop_grace_seconds = {stop_grace_s}",
                "term_grace_seconds = 5",
                SLURM_SECTIONS.format(poll=poll_s) + slurm,
            ]
        )
    )
    return load_config(path, base_dir=tmp_path)


def request(config: Config, out: str, gpus: tuple[str, ...] = ("0",)) -> JobRequest:
    return JobRequest(Kind.LLM, gpus, config.output_root / out, {}, user_id="U1", channel_id="C1")


@asynccontextmanager
async def bot(config: Config, *, cancel_on_exit: bool = True) -> AsyncIterator[Runtime]:
    """A running trainbot; on exit its Slurm jobs are cancelled (a failed test leaves no GPU held)."""
    rt = await Runtime.open(config)
    await rt.store.register_reader("tests", keep_s=3600.0)  # reads nothing: every notice is kept to look at
    await rt.start()
    try:
        yield rt
    finally:
        if cancel_on_exit:
            for job in await rt.store.list_jobs():
                for slurm_id in (job.train_run.backend_job_id, job.export_run.backend_job_id):
                    if slurm_id:
                        await slurm_cli.cancel(slurm_id)
        await rt.close()


async def job_when(rt: Runtime, job_id: str, pred: Callable[[Job], object], what: str, within: float = 60) -> Job:
    async def check() -> Job | None:
        job = await rt.store.require(job_id)
        return job if pred(job) else None

    job: Job = await wait_until(check, within, f"job {job_id} {what}")
    return job


async def slurm_job(job_id: str | None) -> slurm_cli.SlurmJob:
    assert job_id is not None
    job = await slurm_cli.show_job(job_id)
    assert job is not None, f"Slurm does not know job {job_id}"
    return job


def summary_line(job: Job) -> dict[str, object]:
    lines = (Path(job.run_dir or "") / "logging.jsonl").read_text().splitlines()
    last: dict[str, object] = json.loads(lines[-1])
    return last
