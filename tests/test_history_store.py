"""The history's lists on a real SQLite file: every sort pages through every job once, forwards and back, with
positions that hold while jobs are deleted; search finds a case-insensitive substring of name, folder, owner, id."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storage.jobs import JobStore
from storage.listing import Count, JobFilter, ListPosition, Sort, SortBy
from storage.models import Job, JobState, Kind, Progress


def _job(i: int, rng: random.Random) -> Job:
    started = None if i % 7 == 0 else 1000.0 + i
    finished = None if started is None or i % 5 == 0 else started + rng.choice([10.0, 20.0, 30.0, 5.5])
    loss = None if i % 4 == 0 else rng.choice([0.5, 1.25, 2.0, 0.75])  # many ties: ties go by creation
    return Job(
        id="",
        kind=Kind.LLM if i % 2 else Kind.VLM,
        state=JobState.SUCCEEDED,
        output_dir=f"/o/run-{i}",
        gpus=("0",),
        argv=("swift",),
        user_id=f"U{i % 3}",
        started_at=started,
        finished_at=finished,
        progress=Progress(loss=loss),
    )


def _key(job: Job, sort: Sort) -> tuple[object, ...]:
    """What the store's order means, said in Python: valued jobs first, by value; then by creation."""
    tie = (job.created_at,) if not sort.descending else (-job.created_at,)
    if sort.by is SortBy.CREATED:
        return tie
    value = (
        job.progress.loss
        if sort.by is SortBy.LOSS
        else (job.finished_at - job.started_at if job.finished_at is not None and job.started_at is not None else None)
    )
    if value is None:
        return (1, 0.0, *tie)
    return (0, -value if sort.descending else value, *tie)


async def _walk(store: JobStore, sort: Sort, where: JobFilter, limit: int) -> list[Job]:
    seen: list[Job] = []
    after: ListPosition | None = None
    while True:
        page = await store.page(where, sort=sort, limit=limit, after=after)
        seen += page.jobs
        if page.next is None:
            return seen
        after = page.next


@pytest.mark.parametrize(
    "sort",
    [Sort(by, desc) for by in SortBy for desc in (True, False)],
    ids=lambda s: ("-" if s.descending else "") + s.by,
)
async def test_every_sort_pages_through_every_job_once_and_back(store: JobStore, sort: Sort) -> None:
    rng = random.Random(7)
    made = [await store.create(_job(i, rng)) for i in range(60)]
    expected = sorted(made, key=lambda j: _key(j, sort))
    walked = await _walk(store, sort, JobFilter(), 7)
    assert [j.id for j in walked] == [j.id for j in expected]
    back: list[str] = []  # from the last page, `prev` until the first
    page = await store.page(JobFilter(), sort=sort, limit=7, after=await store.position(expected[-8].id, sort))
    while True:
        back = [j.id for j in page.jobs] + back
        if page.prev is None:
            break
        page = await store.page(JobFilter(), sort=sort, limit=7, before=page.prev)
    assert back == [j.id for j in expected][-len(back) :] and back[0] == expected[0].id


async def test_a_position_holds_while_the_job_there_is_deleted(store: JobStore) -> None:
    rng = random.Random(3)
    made = [await store.create(_job(i, rng)) for i in range(12)]
    sort = Sort(SortBy.LOSS, descending=False)
    first = await store.page(JobFilter(), sort=sort, limit=4)
    assert first.next is not None and first.prev is None
    await store.delete(first.jobs[-1].id)
    rest = await store.page(JobFilter(), sort=sort, limit=100, after=first.next)
    expected = [j.id for j in sorted(made, key=lambda j: _key(j, sort))][4:]
    assert [j.id for j in rest.jobs] == expected and rest.prev is not None


async def test_search_finds_a_substring_of_name_folder_owner_or_id_in_any_case(tmp_path: Path) -> None:
    store = await JobStore.open(tmp_path / "t.db")
    try:
        base = Job(id="", kind=Kind.LLM, state=JobState.QUEUED, output_dir="/o/plain", gpus=("0",), argv=("s",))
        named = await store.create(base.replace(name="Größe LR-Sweep ✨", user_id="UANN"))
        folder = await store.create(base.replace(output_dir="/data/out/Qwen-Tiny-B"))
        other = await store.create(base.replace(user_id="UBOB"))
        assert named.name == "Größe LR-Sweep ✨" and folder.name == "Qwen-Tiny-B"  # unnamed: the folder's last part

        async def found(text: str, **kw: object) -> set[str]:
            return {j.id for j in (await store.page(JobFilter(text=text, **kw), limit=50)).jobs}  # type: ignore[arg-type]

        assert await found("lr-sweep") == {named.id} and await found("GRÖSSE") == set()  # folded, not transliterated
        assert await found("grÖßE") == {named.id} and await found("✨") == {named.id}
        assert await found("tiny-b") == {folder.id} and await found("/DATA/") == {folder.id}
        assert await found("bob") == {other.id} and await found(other.id.upper()) == {other.id}
        assert await found("ub") == {other.id}  # shorter than a trigram: read in full
        assert await store.count(JobFilter(text="o"), at_most=1) == Count(2, exact=False)  # counted up to a bound
        assert await found('"') == set() and await found('" OR "') == set()  # FTS5's syntax is only text here
        assert await found("plain", owner="UBOB") == {other.id}
        assert await store.count(JobFilter(text="plain")) == Count(2)
        await store.delete(other.id)
        assert await found("bob") == set() and await store.count(JobFilter(text="plain")) == Count(1)
    finally:
        await store.close()
