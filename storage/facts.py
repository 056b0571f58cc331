"""How a typed fact is kept in a column: JSON of its fields, `code` among them, read back into the same type.

A fact is a frozen dataclass with a `code` Literal; a union of them is one column's (or notice field's) type. A value
no type fits (a row written before the types, as words) reads back as None, and its reader falls back to a legacy
fact that shows the stored text as it is.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Annotated, Any, Generic, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

T = TypeVar("T")


class FactCodec(Generic[T]):
    """JSON in, JSON out, for one fact type or a union of them told apart by `code`."""

    def __init__(self, union: Any) -> None:
        if typing.get_origin(union) in (types.UnionType, typing.Union):
            union = Annotated[union, Field(discriminator="code")]
        self._adapter: TypeAdapter[T] = TypeAdapter(union)

    def dump(self, fact: T) -> str:
        return self._adapter.dump_json(fact).decode()

    def to_python(self, fact: T) -> Any:
        """The fact as JSON-ready values (a notice's field holds it so)."""
        return self._adapter.dump_python(fact, mode="json")

    def load(self, text: str | None) -> T | None:
        """The fact back, or None where the text is no fact of this union (old words, another bot's fact)."""
        if not text or not text.startswith("{"):
            return None
        try:
            return self.from_python(json.loads(text))
        except ValueError:
            return None

    def from_python(self, value: Any) -> T | None:
        try:
            return self._adapter.validate_python(value)
        except (ValidationError, TypeError):
            return None
