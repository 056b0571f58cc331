"""Sends signed Slack requests and prints each one's time to its answer, in a process of its own: the Slack
stand-in (in the benchmark's process) answers the bot's Web API calls meanwhile, and must not delay the clock that
times the acks.

python -m bench.ack_client PER_S < requests.json   (a JSON list of [url, body, headers]; PER_S `inf`: all at once)
prints a JSON list of [answered at (wall clock), seconds to the answer], one a request. One stream may go to several
servers (a baseline's requests interleaved with the measured server's: both see the same machine at the same time).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def send(requests: list[tuple[str, str, dict[str, str]]], per_s: float) -> list[tuple[float, float]]:
    """Each request's (wall clock when answered, seconds to its answer); the i-th is sent at i / `per_s` s, on
    its schedule whether or not the ones before were answered."""
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()

        async def one(i: int, url: str, body: str, headers: dict[str, str]) -> tuple[float, float]:
            await asyncio.sleep(max(0.0, start + i / per_s - time.perf_counter()))
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status} from {url}")
            return time.time(), time.perf_counter() - t0

        return list(await asyncio.gather(*(one(i, u, b, h) for i, (u, b, h) in enumerate(requests))))


def main() -> None:
    print(json.dumps(asyncio.run(send(json.load(sys.stdin), float(sys.argv[1])))))


if __name__ == "__main__":
    main()
