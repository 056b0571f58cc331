"""A create request, checked by the `/train` grammar itself: one source of truth for what a job may be.

The body becomes the words a person would type (`llm gpu_id=0 output_dir=output/x`, the seed's names being the
grammar's aliases), so HTTP rejects exactly what Slack rejects, with the same words; the grammar's corrected
command comes back as a request body that would work.
"""

from __future__ import annotations

import shlex
from typing import Any

from bot.api.schemas import LLMJobCreate, VLMJobCreate
from bot.grammar import Command, CreateJob, Rejection, out_example, parse
from runner.config import Config
from storage.models import Kind

# body field -> the grammar's key, where they differ
_GRAMMAR_KEYS = {"num_train_epochs": "epochs"}
_BODY_KEYS = {v: k for k, v in _GRAMMAR_KEYS.items()}
_NOT_SETTINGS = {"gpu_id", "output_dir", "profile", "start"}


class InvalidRequest(ValueError):
    """A body the grammar refused: what was wrong, and a body that would work."""

    def __init__(self, message: str, example: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.example = example


def _words(kind: Kind, body: LLMJobCreate) -> list[str]:
    words = [str(kind), f"gpu_id={body.gpu_id}", f"output_dir={body.output_dir}"]
    if body.profile is not None:
        words.append(f"profile={body.profile}")
    if isinstance(body, VLMJobCreate):
        for name, value in body.model_dump(exclude_none=True).items():
            if name in _NOT_SETTINGS:
                continue
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            words.append(f"{_GRAMMAR_KEYS.get(name, name)}={text}")
    return words


def to_command(kind: Kind, body: LLMJobCreate, config: Config) -> CreateJob:
    command = _parse(shlex.join(_words(kind, body)), config)
    if isinstance(command, Rejection):
        raise InvalidRequest(command.message, example_body(kind, command.example, config))
    assert isinstance(command, CreateJob)  # the words start with the recipe's name
    return command


def example_body(kind: Kind, example: str | None, config: Config) -> dict[str, Any]:
    """The grammar's example command as a request body (a stock one when the example is not a job)."""
    fixed = _parse(example or "", config)
    if not isinstance(fixed, CreateJob):
        out = shlex.quote(out_example(config.output_root, config.base_dir))
        fixed = _parse(f"{kind} gpu=0 out={out}", config)
        assert isinstance(fixed, CreateJob)
    folder = fixed.output_dir
    body: dict[str, Any] = {"gpu_id": ",".join(fixed.gpus),
                            "output_dir": str(folder.relative_to(config.base_dir))
                            if folder.is_relative_to(config.base_dir) else str(folder)}
    for key, value in fixed.overrides.items():
        body[_BODY_KEYS.get(key, key)] = value
    return body



def _parse(text: str, config: Config) -> Command | Rejection:
    """The grammar with this config's roots: the same words and checks as `/train`."""
    return parse(text, output_root=config.output_root, base_dir=config.base_dir, model_roots=config.model_roots,
                 data_roots=config.data_roots)
