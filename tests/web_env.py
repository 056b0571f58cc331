"""What the dashboard tests share: their API tokens, the `[http]` sections they serve with, a job made over the API."""

from __future__ import annotations

import itertools

import requests

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN,tok-bob=UBOB"}
SIGNED_ONLY = "[http]\nallow_anonymous_loopback = false\n"
ANONYMOUS_TOO = "[http]\nanonymous_loopback_with_tokens = true\n"  # loopback visitors need no token, tokens or not


_OUT = itertools.count()


def create(url: str, token: str, **body: object) -> str:
    """A job over the API, each in its own folder (two active jobs never share one)."""
    out = f"output/web-{next(_OUT)}"
    reply = requests.post(
        f"{url}/training/llm/jobs",
        headers={"Authorization": f"Bearer {token}"},
        json={"gpu_id": "0", "output_dir": out, "start": True, **body},
        timeout=10,
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["job_id"])
