"""The one way in: every front end (Slack, the console, the HTTP API, the web page) creates and acts on jobs here.

Each call takes a typed request and the caller, checks access and the request once, and returns typed values or
raises typed errors with fields (runner/errors.py, storage/errors.py, runner/job_request.py); the front ends word
them. What an action may do in a job's state is runner/actions.py's; what it changes, runner/lifecycle.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner import admission, leases
from runner.access import Caller, check_manage, check_start
from runner.actions import Action
from runner.config import Config
from runner.errors import GpuMissing
from runner.job_request import MAX_NOTE, JobRequest, check_request, check_text
from runner.planner import Plan
from runner.supervisor import Submitted, Supervisor
from storage.actors import actor
from storage.jobs import JobStore
from storage.models import Job


@dataclass(frozen=True)
class DryRun:
    """What `create` would run, and what would hold it back, with nothing recorded."""

    request: JobRequest  # checked: paths resolved on disk
    plan: Plan
    warnings: tuple[GpuMissing | leases.GpusBusy, ...]


class JobService:
    def __init__(self, store: JobStore, config: Config, supervisor: Supervisor) -> None:
        self.store, self.config, self.supervisor = store, config, supervisor

    async def create(self, req: JobRequest, caller: Caller, *, idempotency_key: str | None = None) -> Submitted:
        """Record the job and queue it (`req.hold`: record only). A key already used for the same request finds
        that job (`new` False); for another request, IdempotencyKeyReused."""
        req = check_request(req, self.config)
        check_start(caller, self.config.access)
        return await self.supervisor.submit_checked(req, idempotency_key=idempotency_key)

    async def dry_run(self, req: JobRequest, caller: Caller, *, strict: bool = False) -> DryRun:
        """The plan `create` would make. `strict`: refuse what `create` would refuse (access, GPUs that do not
        exist, a folder in use), as the web form's preview does; otherwise those are warnings."""
        req = check_request(req, self.config)
        warnings = tuple(await self.supervisor.dry_run_warnings(req))
        if strict:
            check_start(caller, self.config.access)
            if missing := next((w for w in warnings if isinstance(w, GpuMissing)), None):
                raise missing
            admission.admit(self.config, None, Path(req.output_dir), req.overrides, await self.store.holding())
        return DryRun(req, self.supervisor.plan(req), warnings)

    async def act(self, job_id: str, action: Action, caller: Caller) -> Job | None:
        """Start, stop, export or delete a job, if the caller may manage it; the job as it is now (None: deleted).
        An action its state does not allow is refused with the typed error runner/actions.py names."""
        job = await self.store.require(job_id)
        check_manage(caller, self.config.access, job, str(action))
        by = caller.user_id
        match action:
            case Action.START:
                return await self.supervisor.start(job_id, by=by)
            case Action.STOP:
                return await self.supervisor.stop(job_id, by=by)
            case Action.EXPORT:
                return await self.supervisor.export(job_id, by=by)
            case Action.DELETE:
                await self.supervisor.delete(job_id, by=by)
                return None

    async def note(self, job_id: str, text: str, caller: Caller) -> Job:
        """The job with `text` as its note ("" takes it away), if the caller may manage it (NotAllowed, action
        "note"); InvalidField (field "note") past MAX_NOTE characters or with control characters but line breaks
        and tabs."""
        job = await self.store.require(job_id)
        check_manage(caller, self.config.access, job, "note")
        return await self.store.set_note(job_id, check_text("note", text, MAX_NOTE), by=actor(caller.user_id))

    async def get(self, job_id: str) -> Job:
        """A job by id (JobNotFound otherwise); anyone who may reach trainbot may read it."""
        return await self.store.require(job_id)
