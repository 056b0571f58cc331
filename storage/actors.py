"""Who did something to a job (who stopped it, `Job.stopped_by`): a typed value, worded by each front end."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

from storage.facts import FactCodec


@dataclass(frozen=True)
class User:
    """A person, by the id their front end knows them by (a Slack user id, an API token's user, a web sign-in)."""

    id: str
    code: Literal["user"] = "user"


@dataclass(frozen=True)
class Console:
    """Whoever runs trainbot's console (it has no user id)."""

    code: Literal["console"] = "console"


class SystemActor(enum.StrEnum):
    TRAINBOT = "trainbot"  # trainbot itself, by its own rules rather than a person's request


@dataclass(frozen=True)
class System:
    """A part of the system that acts on its own."""

    name: SystemActor
    code: Literal["system"] = "system"


@dataclass(frozen=True)
class Outside:
    """Nobody trainbot knows: the process was interrupted from outside it (a kill, a scancel, a reboot)."""

    code: Literal["outside"] = "outside"


Actor = User | Console | System | Outside

CODEC: FactCodec[Actor] = FactCodec(Actor)


def actor(user_id: str | None) -> User | Console:
    """The caller a front end names (a user id; None: the console)."""
    return Console() if user_id is None else User(user_id)


def dump_actor(who: Actor | None) -> str | None:
    return None if who is None else CODEC.dump(who)


def load_actor(text: str | None) -> Actor | None:
    """The stored actor; a row from before the types held the user's id (shown as it is)."""
    if text is None:
        return None
    return CODEC.load(text) or User(text)


def actor_name(who: Actor | None) -> str:
    """An identifier for logs and events: the user's id, else the kind of actor (None: the console)."""
    match who:
        case User(id=user_id):
            return user_id
        case System(name=name):
            return str(name)
        case Console() | Outside() | None:
            return who.code if who else "console"


def event_data(who: Actor | None) -> dict[str, Any]:
    """An event's data that tells who did it (front ends word the event from it)."""
    return {} if who is None else {"by": CODEC.to_python(who)}


def from_event_data(data: dict[str, Any]) -> Actor | None:
    return CODEC.from_python(data["by"]) if "by" in data else None
