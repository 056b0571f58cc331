"""`next_cursor` of the job lists: where a page ended, as an opaque token (base64url of the sort key), not a job
id, so that deleting the job a cursor stands on does not end the list.

A cursor of before this change (a job's bare id) still works while that job exists; once it is gone the request is
refused with a 422 that says to list again, never answered with an empty page.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from fastapi import HTTPException

from storage.jobs import JobStore, ListPosition

MAX_LENGTH = 200
_JOB_ID = re.compile(r"[a-z0-9]{1,12}")  # the cursors of before: a job id (a token starts with "W": never one)
_MAX_SEQ = 2**63 - 1  # SQLite's integers


def encode(position: ListPosition) -> str:
    raw = json.dumps([position.created_at, position.seq], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def decode(cursor: str, store: JobStore) -> ListPosition:
    """The position a cursor names; HTTPException(422) for one this server did not give."""
    if _JOB_ID.fullmatch(cursor):
        position = await store.position(cursor)
        if position is None:
            raise HTTPException(
                422,
                f"cursor `{cursor}` names a job that no longer exists (a cursor from an older "
                "trainbot): list again without `cursor`",
            )
        return position
    try:
        created_at, seq = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if (
            isinstance(created_at, int | float)
            and not isinstance(created_at, bool)
            and math.isfinite(created_at)
            and type(seq) is int
            and 0 <= seq <= _MAX_SEQ
        ):
            return ListPosition(float(created_at), seq)
    except (ValueError, TypeError, OverflowError, binascii.Error):
        pass
    raise HTTPException(
        422,
        "`cursor` is not one this server gave: pass the `next_cursor` of the page before as it "
        "came, or list again without `cursor`",
    )
