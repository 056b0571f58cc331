"""The `/train` grammar's words for a setting (`gpu=`, `out=`, `profile=`, the VLM keys) that the runner's check
(runner/job_request.py) refused: what was wrong and what would work, as a `Reject` that bot/chat/grammar.py turns into a
Rejection with the user's command fixed. The rules are the runner's; only the words are here.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass
from pathlib import Path

from bot.chat.help_text import VLM_KEYS
from runner.job_request import InvalidField, Rule, SourceOutside, folded
from runner.paths import OutsideRoot
from storage.models import Kind

RUN_KEYS = ("gpu", "out", "name", "profile", "dry_run")  # what both recipes take; `vlm` adds VLM_KEYS
GRAMMAR_KEYS = {"gpus": "gpu", "output_dir": "out"}  # a request's field -> the grammar's key, where they differ
HUB_EXAMPLES = {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "dataset": "AI-ModelScope/LaTeX_OCR#500"}
_FLOAT_EXAMPLES = {"epochs": "epochs=2", "learning_rate": "lr=1e-4"}
_GPU_PROBLEMS = {
    Rule.EMPTY_ITEM: "has an empty entry: separate GPU numbers with single commas",
    Rule.CPU_MIXED: "mixes `cpu` with GPUs: use either `gpu=cpu` or GPU numbers",
    Rule.NEGATIVE: "has a negative number: GPUs count from 0",
    Rule.NOT_A_GPU: "is not a GPU list: use GPU numbers and commas",
    Rule.GPU_ABOVE_MAX: "names a GPU above {limit}: see `/train gpus`",
    Rule.GPU_TWICE: "names a GPU twice: name each GPU once",
    Rule.TOO_MANY_GPUS: "names {size} GPUs, and a job uses at most {limit}",
}
_OUT_PROBLEMS = {
    Rule.CONTROL_CHARACTER: "contains a control character (a newline, tab or NUL)",
    Rule.BROKEN_CHARACTER: "holds a broken character, which no folder name can hold",
    Rule.TOO_LONG: "is {size} characters long; at most {limit} will do",
    Rule.NAME_TOO_LONG: "has a folder name of {size} bytes (letters such as `é` or `训` take 2 to 4); at most {limit} "
    "bytes will do",
    Rule.PATH_TOO_LONG: "makes a path of {size} bytes; at most {limit} will do",
}

_TEXT_PROBLEMS = {  # a job's name or note
    Rule.EMPTY: 'is empty: give a few words, e.g. `name="lr sweep 3"`',
    Rule.CONTROL_CHARACTER: "holds a control character (a name is one line of text)",
    Rule.BROKEN_CHARACTER: "holds a broken character",
    Rule.TOO_LONG: "is {size} characters long; at most {limit} will do",
}


class Reject(Exception):
    def __init__(self, message: str, fixed: list[str] | None = None) -> None:
        super().__init__(message)
        self.message, self.fixed = message, fixed


@dataclass(frozen=True)
class Ctx:
    """What a parse knows: the words so far, and the roots a request is checked against (runner's `Roots`)."""

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
        return [*self.words[:at], *([word] if word else []), *self.words[at + 1 :]]


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
        return (
            f"`{show(raw)}` can't be set: the LLM recipe is fixed.{suggest(key, RUN_KEYS)} "
            "`llm` takes only `gpu=` and `out=` (plus `name=`, `profile=fast|exact`, `--dry-run` and `--hold`)."
        )
    return (
        f"`{show(raw)}` may not be overridden.{suggest(key, (*VLM_KEYS, *RUN_KEYS))} Keys that may: "
        f"{listing(tuple(VLM_KEYS))} (`lr` = `learning_rate`), besides `gpu=`, `out=`, `name=`, `profile=`, "
        "`--dry-run`, `--hold`."
    )


def grammar_key(field: str) -> str:
    return GRAMMAR_KEYS.get(field, field)


def refusal(
    err: InvalidField | OutsideRoot, shown: str | None = None, good_out: str | None = None, base_dir: Path | None = None
) -> str:
    """The words for a refused setting; `shown` is the user's word as typed (made safe by `show`; by default the
    key and the value refused), `good_out` an `out=` that works."""
    key = grammar_key(err.field)
    shown = shown or show(f"{key}={_value(err)}")
    give = (
        f"Give a folder inside the output folder, e.g. `{good_out}`."
        if good_out
        else "Give a folder inside the output folder."
    )
    if isinstance(err, SourceOutside):
        return f"`{shown}`: `{show(err.item)}` {_source_outside(err, base_dir)}."
    if isinstance(err, OutsideRoot):
        root = err.roots[0] if err.roots else err.resolved
        where = (
            "is the output folder itself"
            if err.resolved == folded(root)
            else f"{_leads(err, base_dir)} `{show(str(err.resolved), 120)}`, outside the output folder "
            f"`{show(str(root), 120)}`"
        )
        return f"`{shown}` {where}. {give}"
    if err.field == "gpus":
        problem = _GPU_PROBLEMS[err.rule].format(limit=err.limit, size=err.size)
        return f"`{shown}` {problem}, e.g. `gpu=0` or `gpu=0,1`, or `gpu=cpu`."
    if err.field == "output_dir":
        problem = _OUT_PROBLEMS[err.rule].format(limit=err.limit, size=err.size)
        return f"`{shown}` {problem}. {give}"
    if err.field in ("name", "note"):
        return f"`{shown}`: the {err.field} {_TEXT_PROBLEMS[err.rule].format(limit=err.limit, size=err.size)}."
    match err.rule:
        case Rule.NOT_ALLOWED:
            return (
                f"`{shown}`: `{key}=` is one of {listing(err.allowed)}."
                if err.allowed
                else f"`{shown}` can't be set: the recipe is fixed."
            )
        case Rule.WHOLE_NUMBER:
            return f"`{shown}`: `{key}` is a whole number from 1 to {err.limit}."
        case Rule.NUMBER:
            return (
                f"`{shown}`: `{key}` is a number above 0 and at most {err.limit:g}, "
                f"e.g. `{_FLOAT_EXAMPLES.get(key, key + '=1')}`."
            )
        case Rule.BROKEN_CHARACTER:
            return (
                f"`{shown}`: `{show(err.item or err.value)}` is not a hub id like `{HUB_EXAMPLES.get(key)}` nor "
                "a path: it holds a broken character."
            )
    good = VLM_KEYS[key].split("`")[1] if key in VLM_KEYS else f"{key}=..."
    return (
        f"`{shown}`: `{show(err.item or '') or '(empty)'}` is not a {key} id or path (no spaces, quotes or "
        f"leading `-`), e.g. `{good}`."
    )


def _value(err: InvalidField | OutsideRoot) -> str:
    if isinstance(err, SourceOutside):
        return err.item
    return str(err.path) if isinstance(err, OutsideRoot) else err.value


def _as_given(err: OutsideRoot, base_dir: Path | None) -> bool:
    """Whether the path leads where its text says (no symbolic link on the way)."""
    return err.resolved == folded((base_dir or Path("/")) / err.path)


def _leads(err: OutsideRoot, base_dir: Path | None) -> str:
    """`would write to` where the text says so; `leads to` where a symbolic link on disk takes it elsewhere."""
    return "would write to" if _as_given(err, base_dir) else "leads (through a symbolic link) to"


def _source_outside(err: SourceOutside, base_dir: Path | None) -> str:
    config_key = f"[paths] {'model' if err.field == 'model' else 'data'}_roots"
    allowed = (
        f"`{config_key}` allows only " + ", ".join(f"`{root}`" for root in err.roots)
        if err.roots
        else f"no local {err.field} folder is allowed (`{config_key}` is empty)"
    )
    leads = "" if _as_given(err, base_dir) else f", which leads to `{err.resolved}`"
    return (
        f"is not a hub id like `{HUB_EXAMPLES[err.field]}`, and as a local path{leads} it lies outside the "
        f"allowed folders: {allowed}"
    )
