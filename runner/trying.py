"""Trying a job's model: a session of swift's inference with the job's weights loaded, asked questions, answering
as it generates.

A session is a GPU job like the others. It takes the job's GPU (or the one named; `gpu=cpu`: the CPU, which is not
leased) through the same line as the queued trainings (store.line, leases.plan_starts), so it never shares a GPU
with a training or an export, and a training queued after it waits for it. Its lease lives in the job's row
(try_state, try_gpus, try_run: pid and start time), so leases.held and store.holding see it, and a restarted bot
finds the process an earlier one left (and ends it: `recover`). The process (runner/try_entry.py, in the process
kept warm when it can) keeps the model loaded for `[runner] try_idle_minutes` of idleness for follow-up questions,
less when a job waits in line for its GPU, then ends and gives the GPU back.

On Slurm (`backend = "slurm"`) a try is one short batch job instead, like the export (runner/try_slurm.py): Slurm
picks its GPU and keeps its queue, the model is loaded for that try's questions only, and its session (held here
while it answers) ends with it. One batch job of a job's tries at a time.

Here: the sessions, asking them, and ending them. What a try asks is runner/try_plan.py's, its GPU lease (the line,
the row's try_state through runner/lifecycle_side.py) runner/try_lease.py's, its process runner/try_spawn.py's.
Everything is facts: the refusals are runner/try_errors.py's, the answers runner/try_types.py's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import try_plan, try_slurm
from runner.access import Caller, check_try
from runner.backends import new_launch_token
from runner.config import Config
from runner.gpus import GpuProbe
from runner.supervisor import Supervisor
from runner.try_lease import TryLease
from runner.try_plan import Plan
from runner.try_process import TryProcess, TryProcessError, end_group, remove_preambles
from runner.try_slurm import SlurmTurn
from runner.try_spawn import TrySpawner
from runner.try_types import (
    TryAnswer,
    TryAsk,
    TryAsking,
    TryDone,
    TryEnd,
    TryEvent,
    TryLoaded,
    TryLoading,
    TryToken,
    Weights,
)
from storage.errors import JobNotFound
from storage.jobs import JobStore
from storage.models import Job, Run

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Session:
    """A loaded model: one process (on Slurm: one batch job, for one try), one request at a time (`lock`)."""

    job_id: str
    weights: Weights
    gpus: tuple[str, ...]
    process: TryProcess | SlurmTurn
    warm: bool
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # tries using it now (asking, or waiting for the lock)
    last_used: float = field(default_factory=time.monotonic)
    poke: asyncio.Event = field(default_factory=asyncio.Event)  # wakes its idle watcher

    def serves(self, plan: Plan) -> bool:
        return self.weights == plan.weights and self.gpus == plan.gpus and self.process.alive()


class TryService:
    def __init__(self, store: JobStore, config: Config, supervisor: Supervisor, probe: GpuProbe) -> None:
        self.store, self.config, self.sup, self.probe = store, config, supervisor, probe
        self.lease = TryLease(store, config, supervisor)
        self._sessions: dict[str, Session] = {}
        self._starting: dict[str, asyncio.Lock] = {}  # per job: one session started at a time
        self._watchers: set[asyncio.Task[None]] = set()
        self.spawner = TrySpawner(config)
        supervisor.end_try = self.end

    def log_path(self, job: Job) -> Path:
        return self.config.log_dir / f"{job.kind}_try_{job.id}.log"

    def session(self, job_id: str) -> Session | None:
        """The job's loaded session, if there is one."""
        return self._sessions.get(job_id)

    # ---- start and end -------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Sessions an earlier bot left: their processes can no longer be spoken to (their stdin was the bot's);
        each is ended (it leaves by itself once it sees its stdin closed; a SIGKILL makes sure) and its lease
        given back."""
        remove_preambles(self.spawner.folder)
        try_slurm.remove_left_files(self.config)
        for job in await self.store.trying():
            run = job.try_run
            if run.pid is not None and end_group(run.pid, run.proc_start_time):
                log.info("ended the try session of job %s an earlier bot left (pid %s)", job.id, run.pid)
            elif self.sup.backend.schedules_gpus:
                await try_slurm.cancel_left(run.backend_job_id, job.id, run.launch_token)
            await self.lease.give_back(job.id, ended="bot_restarted")

    async def close(self) -> None:
        await self.spawner.close()  # first: no warm process is started for the next session
        for session in list(self._sessions.values()):
            await self._end(session, "bot_stopped")
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def end(self, job_id: str) -> None:
        """End the job's session now (the job is being deleted), or its place in line."""
        session = self._sessions.get(job_id)
        if session is not None:
            await self._end(session, "job_deleted")
        else:
            await self.lease.give_back(job_id)

    def keep_warm(self) -> None:
        """Start a process with swift's inference imported for the next session (unless `warm_start = false`)."""
        self.spawner.keep_warm()

    async def warm_ready(self) -> bool:
        """Wait for the warm process (if one is coming) to have imported swift."""
        return await self.spawner.warm_ready()

    # ---- asking --------------------------------------------------------------------------------------------

    async def open(self, ask: TryAsk, caller: Caller) -> AsyncGenerator[TryEvent, None]:
        """Check the try (refusals are raised here, before anything waits or loads) and return its stream of
        events: maybe TryWaiting (its place in line, again when it moves), TryLoading/TryLoaded (unless the model
        was loaded already), then for each question TryAsking, TryToken as the answer is generated and TryAnswer,
        and TryDone last.
        The stream raises TryFailed when the model could not answer. A reader that stops early closes it
        (`contextlib.aclosing`): the session is free for the next question at once."""
        job = await self.store.require(ask.job_id)
        check_try(caller, self.config.access, job)
        gpus = try_plan.pick_gpus(job, ask.gpus, scheduled=self.sup.backend.schedules_gpus, probe=self.probe)
        plan = try_plan.plan(job, ask, gpus)
        self.spawner.interpreter()
        return self._run(plan)

    async def _run(self, plan: Plan) -> AsyncGenerator[TryEvent, None]:
        slurm = self.sup.backend.schedules_gpus  # one batch job of a job's tries at a time
        one = self._starting.setdefault(plan.job.id, asyncio.Lock()) if slurm else contextlib.nullcontext()
        async with (
            one,
            contextlib.aclosing(self._answer(plan, self._submit(plan) if slurm else self._acquire(plan))) as events,
        ):
            async for event in events:
                yield event

    async def _answer(
        self, plan: Plan, acquire: AsyncGenerator[TryEvent | Session, None]
    ) -> AsyncGenerator[TryEvent, None]:
        began = time.monotonic()
        session: Session | None = None
        waited_s, load_s, warm = 0.0, None, None
        answered = False
        try:
            async with contextlib.aclosing(acquire) as acquiring:
                async for item in acquiring:
                    if isinstance(item, Session):
                        session = item
                        continue
                    if isinstance(item, TryLoading):
                        waited_s = time.monotonic() - began
                    if isinstance(item, TryLoaded):
                        load_s, warm = item.load_s, item.warm
                    yield item
            assert session is not None
            first_token_s: float | None = None
            answers: list[TryAnswer] = []
            async with session.lock:
                for turn in plan.turns:
                    yield TryAsking(turn.index, turn.side, turn.question)
                    asked = time.monotonic()
                    pieces: list[str] = []
                    done: dict[str, Any] = {}
                    try:
                        async for message in session.process.ask(turn.request()):
                            if "delta" in message:
                                if first_token_s is None:
                                    first_token_s = time.monotonic() - began
                                pieces.append(str(message["delta"]))
                                yield TryToken(turn.index, turn.side, str(message["delta"]))
                            else:
                                done = dict(message["done"])
                    except TryProcessError as exc:
                        if not session.process.alive():
                            await self._end(session, "process_ended")
                        raise exc.failed(plan.job.id, session.process.log) from exc
                    answer = TryAnswer(
                        turn.index,
                        turn.side,
                        turn.question,
                        "".join(pieces),
                        done.get("completion_tokens"),
                        done.get("prompt_tokens"),
                        done.get("finish_reason"),
                        done.get("first_token_s"),
                        time.monotonic() - asked,
                    )
                    answers.append(answer)
                    yield answer
            answered = True
            yield TryDone(
                plan.job.id,
                plan.weights,
                plan.gpus,
                tuple(answers),
                plan.check,
                waited_s,
                load_s,
                warm,
                first_token_s,
                time.monotonic() - began,
                session.process.slurm_id if isinstance(session.process, SlurmTurn) else None,
            )
        finally:
            if session is not None:
                session.users -= 1
                session.last_used = time.monotonic()
                session.poke.set()
                if isinstance(session.process, SlurmTurn):  # its batch job ends with the try, even a cancelled one
                    why: TryEnd = (
                        "answered" if answered else "process_ended" if not session.process.alive() else "abandoned"
                    )
                    await asyncio.shield(self._end(session, why))

    async def _acquire(self, plan: Plan) -> AsyncGenerator[TryEvent | Session, None]:
        """The job's session for the plan: the one loaded, or a new one (waiting for its GPU in line, loading)."""
        job_id = plan.job.id
        async with self._starting.setdefault(job_id, asyncio.Lock()):
            session = self._sessions.get(job_id)
            if session is not None and session.serves(plan):
                session.users += 1
                yield session
                return
            if session is not None:  # other weights or another GPU: this one goes first
                async with session.lock:
                    await self._end(session, "replaced")
            log_path = self.log_path(plan.job)
            try:
                async for waiting in self.lease.take(job_id, plan.gpus, log_path):
                    yield waiting
                yield TryLoading(plan.weights, plan.gpus, self.spawner.warm)
                spawned = time.monotonic()
                process, warm = await self.spawner.spawn(job_id, plan.weights, plan.gpus, log_path)
                await self.lease.started(job_id, Run(process.pid, process.started, None, str(log_path)))
            except BaseException:
                await self.lease.give_back(job_id)
                raise
            session = Session(job_id, plan.weights, plan.gpus, process, warm, users=1)
            self._sessions[job_id] = session
            try:
                loaded = await process.loaded()
            except TryProcessError as exc:
                await self._end(session, "load_failed")
                raise exc.failed(job_id, log_path) from exc
            except BaseException:
                await self._end(session, "abandoned")
                raise
            load_s = time.monotonic() - spawned
            with contextlib.suppress(JobNotFound):
                await self.lease.loaded(job_id, load_s, loaded.warm)
            self._watch(session)
            yield TryLoaded(load_s, loaded.warm)
            yield session

    async def _submit(self, plan: Plan) -> AsyncGenerator[TryEvent | Session, None]:
        """On Slurm: the try's batch job (runner/try_slurm.py), waiting in Slurm's queue, loading."""
        job_id, log_path, token = plan.job.id, self.log_path(plan.job), new_launch_token()
        await self.lease.record(job_id, Run(log_path=str(log_path), launch_token=token))
        try:
            turn = await try_slurm.submit(self.config, self.spawner.interpreter(), plan, log_path, token)
        except BaseException:
            await self.lease.give_back(job_id)
            raise
        self._sessions[job_id] = session = Session(job_id, plan.weights, plan.gpus, turn, warm=False, users=1)
        try:  # from here on, ending the session cancels the batch job if it has not ended
            await self.lease.started(job_id, Run(None, None, turn.slurm_id, str(log_path), token))
            async for waiting in turn.pending(plan.gpus):
                yield waiting
            if turn.ran():  # else it ended in Slurm's queue (cancelled there): loaded() says how
                yield TryLoading(plan.weights, plan.gpus, False, turn.slurm_id)
            running = time.monotonic()
            await turn.loaded()
        except TryProcessError as exc:
            await self._end(session, "load_failed")
            raise exc.failed(job_id, log_path) from exc
        except BaseException:
            await self._end(session, "abandoned")
            raise
        load_s = time.monotonic() - running
        with contextlib.suppress(JobNotFound):
            await self.lease.loaded(job_id, load_s, False)
        yield TryLoaded(load_s, False, each_turn=True)
        yield session

    # ---- idleness ------------------------------------------------------------------------------------------

    def _watch(self, session: Session) -> None:
        task = asyncio.create_task(self._idle(session), name=f"try-{session.job_id}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _idle(self, session: Session) -> None:
        """End the session once idle for `try_idle_minutes`, at once when idle while another job or try waits
        for its GPU, or when its process has ended."""
        assert isinstance(session.process, TryProcess)  # a Slurm batch job is not kept: it ends with its try
        ended = asyncio.create_task(session.process.proc.wait())
        try:
            while self._sessions.get(session.job_id) is session:
                seen = self.store.changes.seq
                idle = session.users == 0 and not session.lock.locked()
                idle_for = time.monotonic() - session.last_used
                if not session.process.alive():
                    await self._end(session, "process_ended")
                    return
                if idle and (
                    idle_for >= self.config.try_idle_s or await self.lease.wanted(session.job_id, session.gpus)
                ):
                    await self._end(session, "idle" if idle_for >= self.config.try_idle_s else "gpu_wanted")
                    return
                timeout = max(self.config.try_idle_s - idle_for, 0.05) if idle else self.config.try_idle_s
                session.poke.clear()
                changed = asyncio.create_task(self.store.changes.wait(seen, timeout))
                poked = asyncio.create_task(session.poke.wait())
                await asyncio.wait({changed, poked, ended}, timeout=timeout + 1, return_when=asyncio.FIRST_COMPLETED)
                for task in (changed, poked):
                    task.cancel()
        finally:
            ended.cancel()

    async def _end(self, session: Session, why: TryEnd) -> None:
        if self._sessions.get(session.job_id) is session:
            del self._sessions[session.job_id]
        await session.process.close()
        await self.lease.give_back(session.job_id, ended=why)
