"""A try on Slurm: one short batch job a try (its questions), like the export.

The try's requests go to a file under the data dir (`tries/<job>-<token>.requests.jsonl`); sbatch runs
runner/try_entry.py with its stdin from that file and its stdout to the answers file beside it, which it writes a
JSON line at a time (runner/try_entry.py's protocol: `loaded`, then each request's deltas and `done`) and leaves
once it has read its stdin to the end. The bot follows that file as it grows (`SlurmTurn`, read as
runner/try_process.TryProcess reads a local session's stdout) and Slurm's record of the job (scontrol) for its
wait in Slurm's queue and its end. Each try loads the model afresh: no process is kept warm, none stays loaded.
Both files go when the try ends (those a crashed bot left, when the next one starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from runner import slurm_cli, try_weights
from runner.backends import slurm_states
from runner.backends.slurm import gpu_count, job_environment
from runner.backends.slurm_states import run_status
from runner.command import swift_env
from runner.config import Config
from runner.log_tail import clean_lines, read_log_tail
from runner.slurm_cli import SlurmError, SlurmJob
from runner.slurm_script import EnvNameError, try_script
from runner.try_entry import BASE
from runner.try_entry import __file__ as TRY_ENTRY
from runner.try_errors import TryFailed
from runner.try_plan import Plan
from runner.try_process import LINE_LIMIT, Loaded, TryProcessError
from runner.try_types import TryWaiting

log = logging.getLogger(__name__)

FOLLOW_S = 0.05  # how often the answers file is looked at while it does not grow
END_WAIT_S = 30.0  # after its last answer the job leaves by itself (its stdin read to the end); else scancel
TAIL_LINES = 12


def slurm_job_name(job_id: str, token: str) -> str:
    """`trainbot-<id>-try-<token>`, like the training's and the export's (runner/backends/slurm.py)."""
    return f"trainbot-{job_id}-try-{token}"


class SlurmTurn:
    """A try's Slurm batch job as the try loop sees a session's process: `pending()` while Slurm keeps it waiting,
    `loaded()`, then `ask()` for each of its `requests` in the order they were written; `close()` ends it."""

    def __init__(
        self, slurm_id: str, requests: int, request_file: Path, answers: Path, log: Path, poll_s: float
    ) -> None:
        self.slurm_id, self.requests, self.log, self.poll_s = slurm_id, requests, log, poll_s
        self.request_file, self.answers = request_file, answers  # both gone after close()
        self.job: SlurmJob | None = None  # Slurm's record, as last asked
        self._asked_at = float("-inf")
        self._offset, self._partial = 0, b""
        self._seq, self._answered = 0, False  # requests asked, and whether the last one's answer was read whole
        self._gone = False  # Slurm has ended it (or forgotten it)

    def alive(self) -> bool:
        return not self._gone

    async def _look(self, every: float) -> SlurmJob | None:
        """Slurm's record of the job, asked at most every `every` seconds (SlurmError: Slurm did not answer)."""
        if not self._gone and time.monotonic() - self._asked_at >= every:
            self._asked_at = time.monotonic()
            self.job = await slurm_cli.show_job(self.slurm_id)
            self._gone = self.job is None or self.job.terminal
        return self.job

    async def pending(self, gpus: tuple[str, ...]) -> AsyncIterator[TryWaiting]:
        """Until Slurm runs the job (or has ended it): what it waits for, each time that changes."""
        told: TryWaiting | None = None
        while not self._grown():
            try:
                job = await self._look(self.poll_s)
            except SlurmError as exc:  # slurmctld slow or down: the job most likely still waits
                log.warning("cannot ask Slurm about try job %s: %s", self.slurm_id, exc)
                job = self.job
            status = run_status(job)
            if not status.alive or (job is not None and status.pending_reason is None):  # ended, or it runs
                return
            if job is not None:
                waiting = TryWaiting(1, gpus, slurm=slurm_states.pending(job), slurm_job=self.slurm_id)
                if waiting != told:
                    told = waiting
                    yield waiting
            await asyncio.sleep(min(self.poll_s, 0.2))  # the answers file, often; Slurm every `poll_s`

    def ran(self) -> bool:
        """Slurm started it (it runs, or wrote its answers): not ended while it waited."""
        return self.alive() or self._grown()

    def _grown(self) -> bool:
        try:
            return self.answers.stat().st_size > self._offset
        except OSError:
            return False

    async def loaded(self) -> Loaded:
        """The model is loaded (TryProcessError: it failed, with its last words, or the job ended)."""
        message = await self._read()
        if "loaded" in message:
            return Loaded(float(message["loaded"].get("load_s") or 0.0), False)
        raise TryProcessError("child_error", str(message.get("failed") or message), tail=self.tail())

    async def ask(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The answer to the next request written (`request` is in the requests file already): its `delta`s, and
        last its `done` (TryProcessError: its `error`, or the job ended)."""
        self._seq += 1
        rid = f"r{self._seq}"
        while True:
            message = await self._read()
            if message.get("id") != rid:
                continue
            if "error" in message:
                raise TryProcessError("child_error", str(message["error"]))
            self._answered = "done" in message
            yield message
            if "done" in message:
                return

    async def _read(self) -> dict[str, Any]:
        """The next whole line of the answers file, as it is written; TryProcessError once the job has ended
        without writing one."""
        while True:
            line = self._next_line()
            if line is not None:
                break
            ended = not self.alive()
            if not ended:
                with contextlib.suppress(SlurmError):
                    await self._look(self.poll_s)
            if ended:  # its last words were read after its end was seen
                status = run_status(self.job)
                state = self.job.state if self.job is not None else None
                raise TryProcessError("ended", returncode=status.returncode, slurm_state=state, tail=self.tail())
            await asyncio.sleep(FOLLOW_S)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise TryProcessError("not_json", repr(line[:200])) from exc
        return message if isinstance(message, dict) else {"failed": repr(message)}

    def _next_line(self) -> bytes | None:
        try:
            with self.answers.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read(LINE_LIMIT)
        except OSError:
            chunk = b""
        self._offset += len(chunk)
        self._partial += chunk
        line, newline, rest = self._partial.partition(b"\n")
        if not newline:
            if len(self._partial) > LINE_LIMIT:
                raise TryProcessError("line_too_long", f"{len(self._partial)} bytes")
            return None
        self._partial = rest
        return line

    def tail(self) -> str:
        """The last lines of the job's log (what swift printed, and Slurm's own complaints)."""
        return "\n".join(clean_lines(read_log_tail(self.log))[-TAIL_LINES:])

    async def close(self) -> None:
        """Once every answer was read, wait (up to END_WAIT_S) for the job to leave by itself; then (at once, when
        its asker left before) scancel it if it has not."""
        end = time.monotonic() + (END_WAIT_S if self._seq == self.requests and self._answered else 0.0)
        while self.alive() and time.monotonic() < end:
            with contextlib.suppress(SlurmError):
                await self._look(min(self.poll_s, 0.5))
            if self.alive():
                await asyncio.sleep(min(self.poll_s, 0.5))
        if self.alive():
            try:
                await slurm_cli.cancel(self.slurm_id)
            except SlurmError:
                log.warning("could not cancel the try's Slurm job %s", self.slurm_id, exc_info=True)
            self._gone = True
        _remove(self.request_file, self.answers)  # a job still running holds them open: they go when it ends


async def submit(config: Config, python: list[str], plan: Plan, log_path: Path, token: str) -> SlurmTurn:
    """Write the try's requests and hand its batch job to sbatch (TryFailed `slurm_refused` where it refuses)."""
    folder = tries_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{plan.job.id}-{token}"
    requests, answers = folder / f"{stem}.requests.jsonl", folder / f"{stem}.answers.jsonl"
    lines = [{**turn.request(), "id": f"r{i}"} for i, turn in enumerate(plan.turns, 1)]
    requests.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    answers.write_bytes(b"")
    base = try_weights.base_flags(plan.weights)
    argv = [*python, TRY_ENTRY, *([BASE, json.dumps(base)] if base else []), "--"]
    argv += try_weights.infer_flags(plan.weights)
    if gpu_count(plan.gpus) == 0:  # Slurm unsets CUDA_VISIBLE_DEVICES in a job without GPUs: no GPU means none
        argv = ["env", "CUDA_VISIBLE_DEVICES=", *argv]
    slurm = config.slurm
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as f:
        f.write(f"[trainbot] {time.strftime('%Y-%m-%d %H:%M:%S')} try (Slurm): {' '.join(argv)}\n")
    try:
        script = try_script(argv, stdin=requests, stdout=answers, env=swift_env(config) | {"PYTHONUNBUFFERED": "1"})
        slurm_id = await slurm_cli.submit(
            script,
            job_name=slurm_job_name(plan.job.id, token),
            output_path=log_path,
            gres_gpus=gpu_count(plan.gpus),
            partition=slurm.partition,
            account=slurm.account,
            time_limit=slurm.time_limit,
            extra_args=["--export=ALL", "--open-mode=append", *slurm.extra_args],
            workdir=config.base_dir,
            process_env=job_environment(config),
        )
    except SlurmError as exc:
        _remove(requests, answers)
        detail = exc.reason or exc.problem
        raise TryFailed(plan.job.id, "slurm_refused", str(log_path), detail=detail, strerror=exc.command) from exc
    except EnvNameError as exc:
        _remove(requests, answers)
        raise TryFailed(plan.job.id, "slurm_refused", str(log_path), detail=str(exc)) from exc
    return SlurmTurn(slurm_id, len(lines), requests, answers, log_path, config.slurm.poll_seconds)


def tries_folder(config: Config) -> Path:
    return config.data_dir / "tries"


def remove_left_files(config: Config) -> None:
    """The requests and answers files of tries an earlier bot left (at start, none of this bot's is running)."""
    _remove(*tries_folder(config).glob("*.jsonl"))


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def cancel_left(slurm_id: str | None, job_id: str, token: str | None) -> None:
    """The batch job of a try an earlier bot left (by its id, else by its name's launch token): cancelled."""
    try:
        if slurm_id is None and token is not None:
            found = await slurm_cli.jobs_named(slurm_job_name(job_id, token))
            slurm_id = found[0] if found else None
        if slurm_id is not None:
            await slurm_cli.cancel(slurm_id)
            log.info("cancelled Slurm job %s, job %s's try an earlier bot left", slurm_id, job_id)
    except SlurmError:
        log.warning("could not cancel the Slurm job of job %s's try", job_id, exc_info=True)
