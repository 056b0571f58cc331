"""A job's note: free text its owner or an admin adds later (the same rule as for stopping it, runner/access.py)."""

from __future__ import annotations

from runner.access import Caller, check_manage
from runner.config import AccessConfig
from runner.job_request import MAX_NOTE, check_text
from storage.jobs import JobStore
from storage.models import Job


async def set_note(store: JobStore, caller: Caller, access: AccessConfig, job_id: str, text: str) -> Job:
    """The job with `text` as its note ("" takes it away). JobNotFound, NotAllowed (action "note"), or
    InvalidField (field "note": at most MAX_NOTE characters, line breaks and tabs the only control characters)."""
    job = await store.require(job_id)
    check_manage(caller, access, job, "note")
    return await store.set_note(job_id, check_text("note", text, MAX_NOTE))
