"""Trying a job's model: a session of swift's inference with the job's weights loaded, asked questions, answering
as it generates.

A session is a GPU job like the others. It takes the job's GPU (or the one named; `gpu=cpu`: the CPU, which is not
leased) through the same line as the queued trainings (store.line, leases.plan_starts), so it never shares a GPU
with a training or an export, and a training queued after it waits for it. Its lease lives in the job's row
(try_state, try_gpus, try_run: pid and start time), so leases.held and store.holding see it, and a restarted bot
finds the process an earlier one left (and ends it: `recover`). The process (runner/try_entry.py, in the process
kept warm when it can) keeps the model loaded for `[runner] try_idle_minutes` of idleness for follow-up questions,
less when a job waits in line for its GPU, then ends and gives the GPU back.

Everything here is facts: the refusals are runner/try_errors.py's, the answers runner/try_types.py's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import admission, leases, try_weights
from runner.access import Caller, check_try
from runner.backends.local import device_env
from runner.child_env import child_env
from runner.command import swift_env
from runner.config import Config
from runner.gpus import GpuProbe
from runner.recipes import CHECK_QUESTIONS
from runner.supervisor import Supervisor
from runner.swift_version import SwiftNotFound, interpreter_of, resolve_swift
from runner.try_entry import BASE
from runner.try_entry import __file__ as TRY_ENTRY
from runner.try_errors import BadConversation, NoCheckQuestions, TooLong, TryFailed, TryUnavailable
from runner.try_process import TryProcess, TryProcessError, WarmTry, end_group, remove_preambles
from runner.try_types import (
    CHECK_MAX_TOKENS,
    DEFAULT_MAX_TOKENS,
    MAX_CONVERSATION_CHARS,
    MAX_MESSAGES,
    MAX_QUESTION_CHARS,
    MAX_TOKENS,
    Message,
    Side,
    TryAnswer,
    TryAsk,
    TryAsking,
    TryDone,
    TryEnd,
    TryEvent,
    TryLoaded,
    TryLoading,
    TryToken,
    TryWaiting,
    Weights,
)
from storage.errors import JobNotFound
from storage.jobs import JobStore
from storage.models import Job, Run, TryState

log = logging.getLogger(__name__)

CPU = leases.CPU


@dataclass(frozen=True)
class Turn:
    """One answer to get: `messages` asked of `side`."""

    index: int
    side: Side
    question: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None

    def request(self) -> dict[str, Any]:
        return {
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "side": self.side,
        }


@dataclass(frozen=True)
class Plan:
    job: Job
    weights: Weights
    gpus: tuple[str, ...]
    turns: tuple[Turn, ...]
    check: bool


@dataclass(eq=False)
class Session:
    """A loaded model: one process, one request at a time (`lock`)."""

    job_id: str
    weights: Weights
    gpus: tuple[str, ...]
    process: TryProcess
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
        self._sessions: dict[str, Session] = {}
        self._starting: dict[str, asyncio.Lock] = {}  # per job: one session started at a time
        self._watchers: set[asyncio.Task[None]] = set()
        self._warm: WarmTry | None = None
        self._warming: asyncio.Task[None] | None = None
        self._python: list[str] | None = None
        self._closed = False
        supervisor.end_try = self.end

    @property
    def folder(self) -> Path:
        return self.config.data_dir / "tries"

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
        remove_preambles(self.folder)
        for job in await self.store.trying():
            if job.try_run.pid is not None and end_group(job.try_run.pid, job.try_run.proc_start_time):
                log.info("ended the try session of job %s an earlier bot left (pid %s)", job.id, job.try_run.pid)
            await self._clear(job.id, ended="bot_restarted")

    async def close(self) -> None:
        self._closed = True
        for session in list(self._sessions.values()):
            await self._end(session, "bot_stopped")
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        if self._warm is not None:
            await self._warm.close()
            self._warm = None
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def end(self, job_id: str) -> None:
        """End the job's session now (the job is being deleted), or its place in line."""
        session = self._sessions.get(job_id)
        if session is not None:
            await self._end(session, "job_deleted")
        else:
            await self._clear(job_id)

    def keep_warm(self) -> None:
        """Start a process with swift's inference imported for the next session (unless `warm_start = false`)."""
        if (
            self._closed
            or not self.config.warm_start
            or self._warming is not None
            or (self._warm is not None and self._warm.alive())
        ):
            return
        try:
            python = self._interpreter()
        except TryUnavailable:
            return
        env = child_env(self.config, swift_env(self.config) | {"PYTHONUNBUFFERED": "1"})

        async def start() -> None:
            try:
                self._warm = await WarmTry.start(python, env, self.folder)
            except OSError:
                log.warning("could not start a warm try process", exc_info=True)
            finally:
                self._warming = None

        self._warming = asyncio.create_task(start())

    async def warm_ready(self) -> bool:
        """Wait for the warm process (if one is coming) to have imported swift."""
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        return self._warm is not None and await self._warm.ready()

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
        plan = self.plan(job, ask)
        self._interpreter()
        return self._run(plan)

    def plan(self, job: Job, ask: TryAsk) -> Plan:
        weights = try_weights.resolve(job, ask.checkpoint)
        gpus = self._gpus(job, ask.gpus)
        if ask.max_tokens is not None and not 1 <= ask.max_tokens <= MAX_TOKENS:
            raise TooLong("max_tokens", ask.max_tokens, MAX_TOKENS)
        if ask.messages:
            _check_conversation(ask.messages)
            question = ask.messages[-1].content
            turn = Turn(0, "tuned", question, ask.messages, ask.max_tokens or DEFAULT_MAX_TOKENS, ask.temperature)
            return Plan(job, weights, gpus, (turn,), check=False)
        questions = CHECK_QUESTIONS.get(job.kind, ())
        if not questions:
            raise NoCheckQuestions(job.id, str(job.kind))
        temperature = 0.0 if ask.temperature is None else ask.temperature
        turns = tuple(
            Turn(i, side, q, (Message("user", q),), ask.max_tokens or CHECK_MAX_TOKENS, temperature)
            for i, q in enumerate(questions)
            for side in ("tuned", "base")
        )
        return Plan(job, weights, gpus, turns, check=True)

    def _gpus(self, job: Job, asked: tuple[str, ...] | None) -> tuple[str, ...]:
        gpus = asked if asked is not None else (job.gpus[:1] if job.gpus and job.gpus != CPU else CPU)
        gpus = CPU if "cpu" in gpus else gpus[:1]
        if gpus == CPU:
            return CPU
        if self.sup.backend.schedules_gpus:
            raise TryUnavailable("slurm")
        if (missing := self.probe.describe_missing(gpus)) is not None:
            raise missing
        return gpus

    def _interpreter(self) -> list[str]:
        """swift's python (runner/try_entry.py runs on it)."""
        if self._python is None:
            try:
                python = interpreter_of(resolve_swift(self.config.swift_bin))
            except SwiftNotFound as exc:
                raise TryUnavailable("no_python", str(exc)) from exc
            if not python:
                raise TryUnavailable("no_python", self.config.swift_bin)
            self._python = python
        return self._python

    async def _run(self, plan: Plan) -> AsyncGenerator[TryEvent, None]:
        began = time.monotonic()
        session: Session | None = None
        waited_s, load_s, warm = 0.0, None, None
        try:
            async with contextlib.aclosing(self._acquire(plan)) as acquiring:
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
                        raise _failed(plan.job.id, exc, session.process.log) from exc
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
            )
        finally:
            if session is not None:
                session.users -= 1
                session.last_used = time.monotonic()
                session.poke.set()

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
                async for waiting in self._lease(plan, log_path):
                    yield waiting
                warm = self._warm is not None and self._warm.alive()
                yield TryLoading(plan.weights, plan.gpus, warm)
                spawned = time.monotonic()
                process, warm = await self._spawn(plan, log_path)
            except BaseException:
                await self._clear(job_id)
                raise
            session = Session(job_id, plan.weights, plan.gpus, process, warm, users=1)
            self._sessions[job_id] = session
            try:
                loaded = await process.loaded()
            except TryProcessError as exc:
                await self._end(session, "load_failed")
                raise _failed(job_id, exc, log_path) from exc
            except BaseException:
                await self._end(session, "abandoned")
                raise
            load_s = time.monotonic() - spawned
            with contextlib.suppress(JobNotFound):
                await self.store.update(
                    job_id,
                    try_state=TryState.READY,
                    event="try_loaded",
                    event_kind="try_loaded",
                    event_data={"load_s": round(load_s, 1), "warm": loaded.warm},
                )
            self._watch(session)
            yield TryLoaded(load_s, loaded.warm)
            yield session

    async def _lease(self, plan: Plan, log_path: Path) -> AsyncIterator[TryWaiting]:
        """Take the GPU through the queue's line (returns once it is this try's), telling its place while it
        waits. The CPU is not leased: the lease is only recorded, for a restarted bot to find the process."""
        job_id = plan.job.id
        run = Run(log_path=str(log_path))
        if plan.gpus == CPU:
            await self.store.update(job_id, try_state=TryState.LOADING, try_gpus=CPU, try_seq=None, try_run=run)
            return
        async with self.sup.lock:
            await self.store.update(
                job_id,
                try_state=TryState.WAITING,
                try_gpus=plan.gpus,
                try_seq=await self.store.next_try_seq(),
                try_run=run,
            )
        told: TryWaiting | None = None
        while True:
            seen = self.store.changes.seq
            async with self.sup.lock:
                holding = await self.store.holding()
                holders, foreign = leases.held(holding), self.sup.foreign_busy(holding)
                decisions = admission.line(await self.store.line(), holding, foreign)
                mine = next((d for d in decisions if d.purpose == "try" and d.job.id == job_id), None)
                if mine is None:  # the job was deleted meanwhile (or its place taken back)
                    await self.store.require(job_id)
                    raise JobNotFound(job_id)
                if mine.start:
                    await self.store.update(
                        job_id,
                        try_state=TryState.LOADING,
                        event="try_started",
                        event_kind="try_started",
                        event_data={"gpus": list(plan.gpus)},
                    )
                    return
            waiting = TryWaiting(
                mine.position or 1,
                plan.gpus,
                {g: holders[g] for g in plan.gpus if g in holders},
                tuple(g for g in plan.gpus if g in foreign and g not in holders),
            )
            if waiting != told:
                told = waiting
                yield waiting
            await self.store.changes.wait(seen, self.config.gpu_poll_seconds)

    async def _spawn(self, plan: Plan, log_path: Path) -> tuple[TryProcess, bool]:
        """Start the session's process (in the warm one when there is one), and record it in the job's row."""
        python = self._interpreter()
        args = [*self._base_args(plan.weights), "--", *try_weights.infer_flags(plan.weights)]
        argv = [*python, TRY_ENTRY, *args]
        env = child_env(self.config, swift_env(self.config) | device_env(plan.gpus) | {"PYTHONUNBUFFERED": "1"})
        warm, self._warm = self._warm, None
        process: TryProcess | None = None
        if warm is not None:
            try:
                process = await warm.take(args, argv, env, log_path)
            except TryProcessError:
                await warm.close()
        try:
            if process is None:
                process = await TryProcess.start(argv, env, log_path)
        except OSError as exc:
            raise TryFailed(
                plan.job.id, "cannot_start", str(log_path), detail=python[0], strerror=exc.strerror
            ) from exc
        await self.store.update(plan.job.id, try_run=Run(process.pid, process.started, None, str(log_path)))
        self.keep_warm()  # for the next session
        return process, warm is not None and process.proc is warm.proc

    @staticmethod
    def _base_args(weights: Weights) -> list[str]:
        base = try_weights.base_flags(weights)
        return [BASE, json.dumps(base)] if base else []

    # ---- idleness ------------------------------------------------------------------------------------------

    def _watch(self, session: Session) -> None:
        task = asyncio.create_task(self._idle(session), name=f"try-{session.job_id}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _idle(self, session: Session) -> None:
        """End the session once idle for `try_idle_minutes`, at once when idle while another job or try waits
        for its GPU, or when its process has ended."""
        ended = asyncio.create_task(session.process.proc.wait())
        try:
            while self._sessions.get(session.job_id) is session:
                seen = self.store.changes.seq
                idle = session.users == 0 and not session.lock.locked()
                idle_for = time.monotonic() - session.last_used
                if not session.process.alive():
                    await self._end(session, "process_ended")
                    return
                if idle and (idle_for >= self.config.try_idle_s or await self._wanted(session)):
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

    async def _wanted(self, session: Session) -> bool:
        """Someone waits in line for the session's GPU (a queued training, its own job's too, or another job's
        try)."""
        if session.gpus == CPU:
            return False
        for job, purpose in await self.store.line():
            gpus = job.try_gpus if purpose == "try" else job.gpus
            if (purpose == "train" or job.id != session.job_id) and set(gpus) & set(session.gpus):
                return True
        return False

    async def _end(self, session: Session, why: TryEnd) -> None:
        if self._sessions.get(session.job_id) is session:
            del self._sessions[session.job_id]
        await session.process.close()
        await self._clear(session.job_id, ended=why)

    async def _clear(self, job_id: str, *, ended: TryEnd | None = None) -> None:
        """The job's try lease and process record go (the GPU is free for the next in line)."""
        try:
            job = await self.store.require(job_id)
            if job.try_state is not TryState.NONE:
                await self.store.update(
                    job_id,
                    try_state=TryState.NONE,
                    try_gpus=(),
                    try_seq=None,
                    try_run=Run(log_path=job.try_run.log_path),
                    event="try_ended" if ended else None,
                    event_kind="try_ended",
                    event_data={"why": ended} if ended else None,
                )
        except JobNotFound:
            return
        self.sup.wake()


def _failed(job_id: str, exc: TryProcessError, log_path: Path) -> TryFailed:
    return TryFailed(job_id, exc.cause, str(log_path), detail=exc.detail, returncode=exc.returncode)


def _check_conversation(messages: Sequence[Message]) -> None:
    if not messages:
        raise BadConversation("empty")
    if len(messages) > MAX_MESSAGES:
        raise TooLong("messages", len(messages), MAX_MESSAGES)
    if messages[-1].role != "user":
        raise BadConversation("last_not_user", messages[-1].role)
    for message in messages:
        if message.role != "assistant" and len(message.content) > MAX_QUESTION_CHARS:
            raise TooLong("question", len(message.content), MAX_QUESTION_CHARS)
    total = sum(len(m.content) for m in messages)
    if total > MAX_CONVERSATION_CHARS:
        raise TooLong("conversation", total, MAX_CONVERSATION_CHARS)
