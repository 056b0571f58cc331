"""The checks on a `/train` command's settings (`gpu=`, `out=`, `profile=`, the VLM keys): each value is normalised
or refused with what was wrong and what would work (a `Reject`, which bot/grammar.py turns into a Rejection).
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from bot.commands import norm
from bot.help_text import VLM_KEYS
from bot.sources import Refused, check_source
from runner.profiles import PROFILES
from storage.models import Kind

MAX_GPUS, MAX_GPU_INDEX, MAX_OUT_LEN = 16, 255, 255
RUN_KEYS = ("gpu", "out", "profile", "dry_run")  # what both recipes take; `vlm` adds VLM_KEYS
INT_LIMITS = {"lora_rank": 1024, "lora_alpha": 4096, "max_length": 131072, "batch_size": 1024,
              "max_pixels": 100_000_000}
FLOAT_LIMITS = {"epochs": (1000.0, "epochs=2"), "learning_rate": (1.0, "lr=1e-4")}
NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux counts them
_FLOAT = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?")
_PATH_ITEM = re.compile(r"[^\s\x00-\x1f\x7f,`'\"]+")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")


class Reject(Exception):
    def __init__(self, message: str, fixed: list[str] | None = None) -> None:
        super().__init__(message)
        self.message, self.fixed = message, fixed


@dataclass(frozen=True)
class Ctx:
    words: list[str]
    output_root: Path
    base_dir: Path
    out_example: str  # a valid `out=` folder, unquoted
    model_roots: tuple[Path, ...] = ()
    data_roots: tuple[Path, ...] = ()

    @property
    def good_out(self) -> str:
        return "out=" + shlex.quote(self.out_example)

    def fixed(self, at: int, word: str | None) -> list[str]:
        """The user's words with words[at] replaced by `word` (dropped if None)."""
        return [*self.words[:at], *([word] if word else []), *self.words[at + 1:]]


def show(text: str, limit: int = 60) -> str:
    """User text made safe to quote in one line inside backticks."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text.replace("`", "'"))


def suggest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word[:40], choices, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def listing(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def not_allowed(kind: Kind, raw: str, key: str) -> str:
    if kind is Kind.LLM:
        return (f"`{show(raw)}` can't be set: the LLM recipe is fixed.{suggest(key, RUN_KEYS)} "
                "`llm` takes only `gpu=` and `out=` (plus `profile=fast|exact`, `--dry-run` and `--hold`).")
    return (f"`{show(raw)}` may not be overridden.{suggest(key, (*VLM_KEYS, *RUN_KEYS))} Keys that may: "
            f"{listing(tuple(VLM_KEYS))} (`lr` = `learning_rate`), besides `gpu=`, `out=`, `profile=`, "
            "`--dry-run`, `--hold`.")


def check_value(key: str, value: str, shown: str, ctx: Ctx, at: int) -> str:
    """The normalised value of one setting, or a Reject saying what the value should look like."""
    if key == "gpu":
        return _check_gpus(value.lower(), shown, ctx, at)
    if key == "out":
        return _check_out(value.strip(), shown, ctx, at)
    if key in ("profile", "dry_run"):
        choices = PROFILES if key == "profile" else ("true", "false", "yes", "no", "1", "0")
        if value.lower() not in choices:
            raise Reject(f"`{shown}`: `{key}=` is one of {listing(choices)}.", ctx.fixed(at, None))
        return value.lower() if key == "profile" else str(value.lower() in ("true", "yes", "1")).lower()
    if key in INT_LIMITS:
        top = INT_LIMITS[key]
        if not (value.isascii() and value.isdigit() and len(value) < 12 and 1 <= int(value) <= top):
            raise Reject(f"`{shown}`: `{key}` is a whole number from 1 to {top}.", ctx.fixed(at, None))
        return str(int(value))
    if key in FLOAT_LIMITS:
        ceiling, good = FLOAT_LIMITS[key]
        number = float(value) if _FLOAT.fullmatch(value) else math.nan
        if not 0 < number <= ceiling:
            raise Reject(f"`{shown}`: `{key}` is a number above 0 and at most {ceiling:g}, e.g. `{good}`.",
                          ctx.fixed(at, None))
        return str(int(number)) if number.is_integer() else repr(number)
    items = [item.strip() for item in value.split(",")] if key == "dataset" else [value]
    for item in items:  # swift reads a value starting with `-` as an option of its own
        if not _PATH_ITEM.fullmatch(item) or item.startswith("-") or len(item) > MAX_OUT_LEN:
            good = VLM_KEYS[key].split("`")[1]
            raise Reject(f"`{shown}`: `{show(item) or '(empty)'}` is not a {key} id or path (no spaces, "
                          f"quotes or leading `-`), e.g. `{good}`.", ctx.fixed(at, None))
    roots = ctx.model_roots if key == "model" else ctx.data_roots
    checked = [check_source(key, item, roots=roots, base_dir=ctx.base_dir) for item in items]
    for item, verdict in zip(items, checked, strict=True):
        if isinstance(verdict, Refused):
            raise Reject(f"`{shown}`: `{show(item)}` {verdict.why}.", ctx.fixed(at, None))
    return ",".join(str(verdict) for verdict in checked)


def _check_gpus(value: str, shown: str, ctx: Ctx, at: int) -> str:
    ids = [item.strip() for item in value.split(",")]
    numbers = [int(i) for i in ids if i.isascii() and i.isdigit() and len(i) < 10]
    problem = next((why for bad, why in (
        ("" in ids, "has an empty entry: separate GPU numbers with single commas"),
        ("cpu" in ids and len(ids) > 1, "mixes `cpu` with GPUs: use either `gpu=cpu` or GPU numbers"),
        (any(i.startswith("-") and i[1:].isdigit() for i in ids), "has a negative number: GPUs count from 0"),
        (ids != ["cpu"] and len(numbers) < len(ids), "is not a GPU list: use GPU numbers and commas"),
        (any(n > MAX_GPU_INDEX for n in numbers), f"names a GPU above {MAX_GPU_INDEX}: see `/train gpus`"),
        (len(set(numbers)) < len(numbers), "names a GPU twice: name each GPU once"),
        (len(ids) > MAX_GPUS, f"names {len(ids)} GPUs, and a job uses at most {MAX_GPUS}"),
    ) if bad), "")
    if problem:
        raise Reject(f"`{shown}` {problem}, e.g. `gpu=0` or `gpu=0,1`, or `gpu=cpu`.",
                      ctx.fixed(at, "gpu=0"))
    return "cpu" if ids == ["cpu"] else ",".join(map(str, numbers))


def _check_out(value: str, shown: str, ctx: Ctx, at: int) -> str:
    # Text arithmetic only: resolving symlinks would read the disk, and the disk is the runner's business.
    target, root = norm(ctx.base_dir / value), ctx.output_root
    long = _long_names(target)
    problem = next((why for bad, why in (
        (not value, "is empty"),
        (bool(_CTRL.search(value)), "contains a control character (a newline, tab or NUL)"),
        (len(value) > MAX_OUT_LEN, f"is {len(value)} characters long; at most {MAX_OUT_LEN} will do"),
        (bool(long), f"has a folder name of {long} bytes (letters such as `é` or `训` take 2 to 4); "
                     f"at most {NAME_MAX} bytes will do"),
        (_bytes(str(target)) >= PATH_MAX, f"makes a path of {_bytes(str(target))} bytes; "
                                          f"at most {PATH_MAX - 1} will do"),
        (target == root, "is the output folder itself"),
        (not target.is_relative_to(root), f"would write to `{show(str(target), 120)}`, outside the output "
                                          f"folder `{show(str(root), 120)}`"),
    ) if bad), "")
    if problem:
        raise Reject(f"`{shown}` {problem}. Give a folder inside the output folder, e.g. `{ctx.good_out}`.",
                      ctx.fixed(at, ctx.good_out))
    return str(target)


def _long_names(path: Path) -> int:
    """The byte length of the longest folder name in `path` over NAME_MAX, or 0."""
    return max((n for n in map(_bytes, path.parts) if n > NAME_MAX), default=0)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


