"""A try session's process: runner/try_entry.py on swift's own python, started in the process kept warm (swift's
inference already imported) when there is one, else afresh; and the next warm one started behind it."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from runner import try_weights
from runner.backends.local import device_env
from runner.child_env import child_env
from runner.command import swift_env
from runner.config import Config
from runner.swift_version import SwiftNotFound, interpreter_of, resolve_swift
from runner.try_entry import BASE
from runner.try_entry import __file__ as TRY_ENTRY
from runner.try_errors import TryFailed, TryUnavailable
from runner.try_process import TryProcess, TryProcessError, WarmTry
from runner.try_types import Weights

log = logging.getLogger(__name__)


class TrySpawner:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._warm: WarmTry | None = None
        self._warming: asyncio.Task[None] | None = None
        self._python: list[str] | None = None
        self._closed = False

    @property
    def folder(self) -> Path:
        return self.config.data_dir / "tries"

    @property
    def warm(self) -> bool:
        """A warm process is there for the next session."""
        return self._warm is not None and self._warm.alive()

    def interpreter(self) -> list[str]:
        """swift's python (runner/try_entry.py runs on it); TryUnavailable without one."""
        if self._python is None:
            try:
                python = interpreter_of(resolve_swift(self.config.swift_bin))
            except SwiftNotFound as exc:
                raise TryUnavailable("no_python", str(exc)) from exc
            if not python:
                raise TryUnavailable("no_python", self.config.swift_bin)
            self._python = python
        return self._python

    def keep_warm(self) -> None:
        """Start a process with swift's inference imported for the next session (unless `warm_start = false`)."""
        if self._closed or not self.config.warm_start or self._warming is not None or self.warm:
            return
        try:
            python = self.interpreter()
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

    async def spawn(
        self, job_id: str, weights: Weights, gpus: tuple[str, ...], log_path: Path
    ) -> tuple[TryProcess, bool]:
        """Start a session's process for `weights` on `gpus` (in the warm one when there is one: True with it)."""
        python = self.interpreter()
        args = [*_base_args(weights), "--", *try_weights.infer_flags(weights)]
        argv = [*python, TRY_ENTRY, *args]
        env = child_env(self.config, swift_env(self.config) | device_env(gpus) | {"PYTHONUNBUFFERED": "1"})
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
            raise TryFailed(job_id, "cannot_start", str(log_path), detail=python[0], strerror=exc.strerror) from exc
        self.keep_warm()  # for the next session
        return process, warm is not None and process.proc is warm.proc

    async def close(self) -> None:
        self._closed = True
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        if self._warm is not None:
            await self._warm.close()
            self._warm = None


def _base_args(weights: Weights) -> list[str]:
    base = try_weights.base_flags(weights)
    return [BASE, json.dumps(base)] if base else []
