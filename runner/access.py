"""Who may do what: starting jobs (`[access]` users, groups, channels) and managing one (its owner or an admin).

The same rules for every front end; a refusal is a typed `NotAllowed`, worded by each front end.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.config import AccessConfig
from runner.errors import NotAllowed
from storage.models import Job


@dataclass(frozen=True)
class Caller:
    """Who asks, and where. The console is an admin of its own machine."""

    user_id: str | None = None
    channel_id: str | None = None
    groups: tuple[str, ...] = ()
    console: bool = False
    admin: bool = False  # an admin by other means than `access.admins` (an HTTP token's, say)

    def is_admin(self, access: AccessConfig) -> bool:
        return self.console or self.admin or (self.user_id is not None and self.user_id in access.admins)


def check_start(caller: Caller, access: AccessConfig) -> None:
    """Raises NotAllowed unless the caller may start jobs. Empty lists mean everyone in the workspace."""
    if caller.is_admin(access) or not (access.users or access.groups or access.channels):
        return
    if (
        caller.user_id in access.users
        or set(caller.groups) & set(access.groups)
        or caller.channel_id in access.channels
    ):
        return
    raise NotAllowed("start")


def check_manage(caller: Caller, access: AccessConfig, job: Job, action: str) -> None:
    """Raises NotAllowed unless the caller started the job or is an admin."""
    if not may_manage(caller, access, job):
        raise NotAllowed(action, job.id, job.user_id)


def may_manage(caller: Caller, access: AccessConfig, job: Job) -> bool:
    return caller.is_admin(access) or (caller.user_id is not None and caller.user_id == job.user_id)


def check_try(caller: Caller, access: AccessConfig, job: Job) -> None:
    """Raises NotAllowed unless the caller may ask the job's model: its owner, an admin, or whom `[access]`
    lets try (`try_users`, `try_groups`, `try_channels`)."""
    if (
        may_manage(caller, access, job)
        or caller.user_id in access.try_users
        or set(caller.groups) & set(access.try_groups)
        or caller.channel_id in access.try_channels
    ):
        return
    raise NotAllowed("try", job.id, job.user_id)
