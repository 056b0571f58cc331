"""The environment of every process trainbot starts (jobs, probes, Slurm commands): the bot's, less its secrets.

One function decides it, so a secret added later (or named in `[runner] scrub_env`) is kept out of every child.
What jobs need (HF_TOKEN, MODELSCOPE_API_TOKEN, CUDA_*, proxies) passes as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.config import Config

# Every variable trainbot reads a secret of its own from: Slack's three, the HTTP API's tokens, the web sessions'.
BOT_SECRETS = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "TRAINBOT_API_TOKENS",
    "TRAINBOT_SESSION_SECRET",
)
SECRET_PREFIXES = ("SLACK_",)  # the bot's own namespace: nothing a job needs


def child_env(
    config: Config | None = None, extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`base` (default: this process's environment) without the bot's secrets and the config's `scrub_env`,
    then `extra` on top. A probe run before any config is read passes `config=None` (built-in secrets only)."""
    scrub = set(BOT_SECRETS) | set(config.scrub_env if config is not None else ())
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in scrub and not k.startswith(SECRET_PREFIXES)
    }
    return env | dict(extra or {})
