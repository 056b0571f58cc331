"""`trainbot backup FILE` (docs/deploy.md): a copy of the job database taken while the bot writes to it, which
opens as a store with every job in it; an existing FILE is kept unless --replace; nothing half-written, ever."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path

from bot.chat.handlers import Handlers
from runner.access import Caller
from storage.jobs import JobStore
from tests.conftest import VENV_BIN, OpenRuntime
from tests.slack_env import fake_config

ME = Caller(user_id="U1", channel_id="C1", console=True)


async def trainbot_backup(root: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "trainbot"),
        "--config",
        str(root / "trainbot.toml"),
        "backup",
        *args,
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def partials(folder: Path) -> list[Path]:
    return list(folder.glob(".*.partial"))


async def test_a_backup_taken_while_the_bot_writes_restores_with_every_job(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    rt = await open_runtime(fake_config(tmp_path))
    bot = Handlers(rt)
    numbers = itertools.count()

    async def hold_one() -> None:  # a job recorded, not started: the store is written, nothing runs
        reply = await bot.handle(f"llm gpu=0 out=output/j{next(numbers)} --hold", ME)
        assert reply.ok, reply.text

    for _ in range(30):
        await hold_one()
    before = {job.id: job for job in await rt.store.list_jobs()}
    writing = asyncio.Event()

    async def keep_writing() -> int:
        written = 0
        while written < 3 or not writing.is_set():
            await hold_one()
            written += 1
        return written

    writer = asyncio.create_task(keep_writing())
    code, said = await trainbot_backup(tmp_path, "backups/trainbot-1.db")  # a missing folder: said, not made
    assert code == 1 and "could not back up to" in said and "nothing was written there" in said, said
    (tmp_path / "backups").mkdir()
    code, said = await trainbot_backup(tmp_path, "backups/trainbot-1.db")
    writing.set()
    written_meanwhile = await writer
    assert code == 0, said
    live = {job.id: job for job in await rt.store.list_jobs()}
    assert len(live) == len(before) + written_meanwhile

    restored_path = tmp_path / "restored" / "trainbot.db"  # a restore: the copy put where a bot's data_dir is
    restored_path.parent.mkdir()
    shutil.copy(tmp_path / "backups" / "trainbot-1.db", restored_path)
    restored = await JobStore.open(restored_path)
    try:
        jobs = {job.id: job for job in await restored.list_jobs()}
    finally:
        await restored.close()
    assert before.keys() <= jobs.keys() <= live.keys()  # every job there before it began; none made up
    assert all(jobs[i].output_dir == before[i].output_dir and jobs[i].state is before[i].state for i in before)
    assert f"backed up {len(jobs)} jobs" in said and str(tmp_path / "backups" / "trainbot-1.db") in said
    assert partials(tmp_path / "backups") == []


async def test_an_existing_file_is_kept_unless_replace_is_asked(tmp_path: Path, open_runtime: OpenRuntime) -> None:
    rt = await open_runtime(fake_config(tmp_path))
    assert (await Handlers(rt).handle("llm gpu=0 out=output/a --hold", ME)).ok
    target = tmp_path / "trainbot-backup.db"
    target.write_text("last week's backup")

    code, said = await trainbot_backup(tmp_path, target.name)
    assert code == 1 and f"{target} already exists" in said and "--replace" in said, said
    assert target.read_text() == "last week's backup"

    code, said = await trainbot_backup(tmp_path, target.name, "--replace")
    assert code == 0 and "backed up 1 job " in said, said
    copy = await JobStore.open(target)
    try:
        [job] = await copy.list_jobs()
    finally:
        await copy.close()
    assert job.output_dir == str(tmp_path / "output" / "a")
    assert partials(tmp_path) == []


async def test_no_database_yet_is_said(tmp_path: Path) -> None:
    fake_config(tmp_path)
    code, said = await trainbot_backup(tmp_path, "copy.db")
    assert code == 1 and "there is no database at" in said and "data_dir" in said, said
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / ".trainbot").exists()
