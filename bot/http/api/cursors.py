"""`next_cursor` of the job lists: where a page ended, as an opaque token (base64url of the sort key), not a job
id, so that deleting the job a cursor stands on does not end the list. A list sorted otherwise than newest first
names its sort in its cursors: one is refused with another sort.

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

from storage.jobs import JobStore
from storage.listing import NEWEST, ListPosition, Sort, SortBy

MAX_LENGTH = 200
_JOB_ID = re.compile(r"[a-z0-9]{1,12}")  # the cursors of before: a job id (a token starts with "W": never one)
_MAX_SEQ = 2**63 - 1  # SQLite's integers


def sort_text(sort: Sort) -> str:
    """`created`, `-duration`, ...: `-` for descending (`-created`, newest first, is the lists' own order)."""
    return ("-" if sort.descending else "") + str(sort.by)


def parse_sort(text: str) -> Sort | None:
    """A sort's text back (None: not one)."""
    by = text.removeprefix("-")
    return Sort(SortBy(by), text.startswith("-")) if by in {str(b) for b in SortBy} else None


SORTS = tuple(sort_text(Sort(by, desc)) for by in SortBy for desc in (True, False))


def encode(position: ListPosition, sort: Sort = NEWEST) -> str:
    fields: list[object] = [position.created_at, position.seq]
    if sort != NEWEST:
        fields = [sort_text(sort), position.key, *fields]
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def decode(cursor: str, store: JobStore, sort: Sort = NEWEST) -> ListPosition:
    """The position a cursor names in a list sorted by `sort`; HTTPException(422) for one this server did not give,
    or gave for another sort."""
    if _JOB_ID.fullmatch(cursor):
        position = await store.position(cursor, sort)
        if position is None:
            raise HTTPException(
                422,
                f"cursor `{cursor}` names a job that no longer exists (a cursor from an older "
                "trainbot): list again without `cursor`",
            )
        return position
    try:
        fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        named = fields[0] if isinstance(fields, list) and len(fields) == 4 else sort_text(NEWEST)
        if named != sort_text(sort) and isinstance(named, str) and named in SORTS:
            raise HTTPException(
                422,
                f"`cursor` is of a list sorted by `{named}`, not `{sort_text(sort)}`: pass the "
                "same `sort` as the page before, or list again without `cursor`",
            )
        key, created_at, seq = fields[1:] if len(fields) == 4 and named in SORTS else (None, *fields)
        if (
            _number(created_at)
            and (key is None or _number(key))
            and type(seq) is int
            and 0 <= seq <= _MAX_SEQ
            and (sort == NEWEST) == (len(fields) == 2)
        ):
            return ListPosition(float(created_at), seq, None if key is None else float(key))
    except (ValueError, TypeError, OverflowError, binascii.Error):
        pass
    raise HTTPException(
        422,
        "`cursor` is not one this server gave: pass the `next_cursor` of the page before as it "
        "came, or list again without `cursor`",
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
