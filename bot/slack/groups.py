"""Which Slack user groups a user is in, for `access.groups` (Slack sends no groups with a command).

One `usergroups.list?include_users=true` call (scope `usergroups:read`) answers for every group, cached for a
minute. `access.groups` may name a group by id (`S0123ABCD`) or handle (`ml-team`, with or without `@`).
"""

from __future__ import annotations

import logging
import time

from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

CACHE_S = 60.0


class GroupDirectory:
    def __init__(self, client: AsyncWebClient, *, cache_s: float = CACHE_S) -> None:
        self.client, self.cache_s = client, cache_s
        self._members: dict[str, set[str]] = {}  # group id and handle -> user ids
        self._fetched_at: float | None = None

    async def groups_of(self, user_id: str) -> tuple[str, ...]:
        """The ids and handles of the user's groups; () when Slack can't say (logged)."""
        now = time.monotonic()
        if self._fetched_at is None or now - self._fetched_at > self.cache_s:
            try:
                resp = await self.client.usergroups_list(include_users=True)
            except Exception as exc:  # missing scope, Slack down: nobody gets in by group meanwhile
                log.warning("cannot read Slack user groups (scope usergroups:read?): %s", exc)
                return ()
            members: dict[str, set[str]] = {}
            for group in resp.get("usergroups") or []:
                users = set(group.get("users") or ())
                for name in (group.get("id"), group.get("handle"), f"@{group.get('handle')}"):
                    if name:
                        members[str(name)] = users
            self._members, self._fetched_at = members, now
        return tuple(sorted(name for name, users in self._members.items() if user_id in users))
