"""An idle bot costs nothing (issue 15): its loops sleep until there is work, and still react at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.slack_env import answers, card_of, command, fake_config, running_bot, standin

SAFETY_S = 3.0
WINDOW_S = 7.0

# The 7 s of nothing are the measurement (how often an idle bot wakes), not a wait for something: no condition can
# end them sooner, and a shorter safety poll would leave too little room for "reacts at once" on a busy machine.
pytestmark = pytest.mark.slow


async def test_an_idle_bot_wakes_only_for_its_safety_poll_and_reacts_at_once(tmp_path: Path) -> None:
    config = fake_config(tmp_path, gpus=1, steps=4).changed(runner={"safety_poll_seconds": SAFETY_S})
    async with standin() as slack, running_bot(config, slack) as bot:
        before = [loop.wakeups for loop in bot.loops]
        await asyncio.sleep(WINDOW_S)  # the measured window: nothing happens in it, by design
        woke = {loop.name: loop.wakeups - n for loop, n in zip(bot.loops, before, strict=True)}
        most = int(WINDOW_S / SAFETY_S) + 1  # the safety polls, and one round still under way when counting began
        assert all(n <= most for n in woke.values()), woke
        assert not slack.calls()  # nothing to tell, nothing told

        t0 = time.monotonic()
        assert await command(slack, bot, "llm gpu=0 out=output/j0") == (200, "")
        await slack.wait_for(lambda: len(answers(slack)) == 1, 10, what="the answer")
        [job] = await bot.runtime.store.list_jobs()
        await slack.wait_for(
            lambda: card_of(slack, job.id) is not None, SAFETY_S - 0.5, what="the card, long before the safety poll"
        )
        assert time.monotonic() - t0 < SAFETY_S
