"""The `/train` language: text in, a typed command or a Rejection (what was wrong, what would work) out.

Independent of Slack: no I/O but path arithmetic, and bot/sources.py resolving `model=`/`dataset=`
paths. A rejection's `example` is a whole command (the
text after `/train`) that parses: the user's own command with the fault fixed where that works, else a stock
one.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, get_args

from bot.help_text import COMMANDS, SYNONYMS, VLM_KEYS, help_text
from bot.sources import Refused, check_source
from runner.profiles import PROFILES
from storage.jobs import ID_ALPHABET, ID_LENGTH
from storage.models import JobState, Kind

__all__ = ["COMMANDS", "Command", "CreateJob", "Help", "JobAction", "JobCommand", "ListJobs", "Rejection",
           "ShowGpus", "ShowStatus", "help_text", "normalise", "out_example", "parse", "unparse"]

JobAction: TypeAlias = Literal["start", "stop", "export", "status", "show", "logs", "delete"]
JOB_ACTIONS: tuple[JobAction, ...] = get_args(JobAction)
_ACTIONS: dict[str, JobAction] = {action: action for action in JOB_ACTIONS}
LIST_KINDS = ("llm", "vlm", "all")
LIST_STATES: tuple[str, ...] = (*(s.value for s in JobState), "active")
MAX_GPUS, MAX_GPU_INDEX, MAX_OUT_LEN, MAX_TEXT_LEN, MAX_LOG_LINES = 16, 255, 255, 4000, 10_000
RUN_KEYS = ("gpu", "out", "profile", "dry_run")  # what both recipes take; `vlm` adds VLM_KEYS
KEY_ALIASES = {"gpu_id": "gpu", "gpus": "gpu", "output_dir": "out", "lr": "learning_rate"}
INT_LIMITS = {"lora_rank": 1024, "lora_alpha": 4096, "max_length": 131072, "batch_size": 1024,
              "max_pixels": 100_000_000}
FLOAT_LIMITS = {"epochs": (1000.0, "epochs=2"), "learning_rate": (1.0, "lr=1e-4")}
_HELP_WORDS = ("help", "--help", "-h", "?")
_FULL_WORDS = ("full", "--full", "full=true")
_JOB_ID = re.compile(f"[{ID_ALPHABET}]{{{ID_LENGTH}}}")  # exactly what storage makes
_FLOAT = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?")
_PATH_ITEM = re.compile(r"[^\s\x00-\x1f\x7f,`'\"]+")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_SHELL = re.compile(r";|&&|\|\|?|`|\$\(")  # a shell's, not ours: commands never run through a shell
NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux counts them
# Slack and phone keyboards "improve" what people type (and Chinese IMEs type full-width signs): undo that.
_TYPOGRAPHY = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "‘": "'", "’": "'", "‚": "'", "‛": "'",
                             "＝": "=", "，": ",", "\u200b": None, "\u200c": None, "\u200d": None,
                             "\u2060": None, "\ufeff": None})
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_DASHES = re.compile(r"(?<!\S)[\u2012-\u2015\u2212]+")  # `—dry-run` was `--dry-run` before autocorrect


@dataclass(frozen=True)
class CreateJob:
    kind: Kind
    gpus: tuple[str, ...]  # GPU numbers as strings ("0", "1"), or ("cpu",)
    output_dir: Path  # normalised, joined to base_dir, strictly inside the output root
    overrides: dict[str, str]  # canonical VLM key -> normalised value; always empty for LLM
    dry_run: bool = False
    profile: str = "fast"
    hold: bool = False  # `--hold`: record the job only; `start <id>` starts it


@dataclass(frozen=True)
class JobCommand:
    action: JobAction
    job_id: str
    lines: int | None = None  # logs only
    full: bool = False  # logs only: the whole log as a file


@dataclass(frozen=True)
class ListJobs:
    kind: Kind | None = None
    state: str | None = None  # a JobState value or "active"


@dataclass(frozen=True)
class ShowStatus:
    """`status` without an id: the active jobs at a glance."""


@dataclass(frozen=True)
class ShowGpus:
    pass


@dataclass(frozen=True)
class Help:
    topic: str | None = None


Command: TypeAlias = CreateJob | JobCommand | ListJobs | ShowStatus | ShowGpus | Help


@dataclass(frozen=True)
class Rejection:
    message: str
    example: str | None = None  # a whole command that parses, without the leading `/train`

    def text(self) -> str:
        return self.message + (f"\nTry: `/train {self.example}`" if self.example else "")


class _Reject(Exception):
    def __init__(self, message: str, fixed: list[str] | None = None) -> None:
        super().__init__(message)
        self.message, self.fixed = message, fixed


@dataclass(frozen=True)
class _Ctx:
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


def _show(text: str, limit: int = 60) -> str:
    """User text made safe to quote in one line inside backticks."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text.replace("`", "'"))


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word[:40], choices, n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def _listing(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def normalise(text: str) -> str:
    """Undo smart quotes, odd spaces and auto-dashes that Slack or keyboards put into typed commands."""
    return _DASHES.sub("--", _SPACES.sub(" ", text.translate(_TYPOGRAPHY)))


def _norm(path: Path) -> Path:
    return Path(os.path.normpath(re.sub("/+", "/", str(path))))


def out_example(output_root: Path, base_dir: Path) -> str:
    """A folder people may pass as `out=` (relative to base_dir where it can be), for examples and help."""
    base = _norm(base_dir)
    target = _norm(base / output_root) / "my-run"
    return str(target.relative_to(base)) if target.is_relative_to(base) else str(target)


def parse(text: str, *, output_root: Path, base_dir: Path, model_roots: Sequence[Path] = (),
          data_roots: Sequence[Path] = ()) -> Command | Rejection:
    """The command in `text` (what follows `/train`); `out=` is taken relative to base_dir. A `model=` or
    `dataset=` path must lie in `model_roots` / `data_roots` (else only hub ids will do)."""
    base = _norm(base_dir)
    ctx = _Ctx([], _norm(base / output_root), base, out_example(output_root, base_dir), tuple(model_roots),
               tuple(data_roots))
    try:
        return _parse(text, ctx)
    except _Reject as err:
        stock = _stock_example(ctx.words[:1], ctx.good_out)
        fixed = " ".join(shlex.quote(w) for w in err.fixed) if err.fixed else None
        try:
            _parse(fixed or "", ctx)  # only an example that parses will do
        except _Reject:
            fixed = None
        return Rejection(err.message, fixed or stock)


def _stock_example(first: list[str], good_out: str) -> str:
    name = first[0].lower() if first else ""
    if name in ("llm", "vlm"):
        return f"{name} gpu=0 {good_out}" + (" epochs=1" if name == "vlm" else "")
    return name if name in ("list", "status", "gpus") else "help"


def _parse(text: str, ctx: _Ctx) -> Command:
    if len(text) > MAX_TEXT_LEN:
        raise _Reject(f"That is {len(text)} characters; a `/train` command has at most {MAX_TEXT_LEN}. "
                      "`/train help` shows the commands.")
    ctx.words[:] = normalise(text).split()[:1]  # for the stock example, should shlex fail
    try:
        words = shlex.split(normalise(text))
    except ValueError:
        raise _Reject("A quote is not closed: put a value with spaces between matching quotes, "
                      f'e.g. `out="{ctx.out_example} 2"`.') from None
    ctx.words[:] = words
    _refuse_shell(words)
    name = words[0].lower() if words else "help"
    if name in COMMANDS and any(w.lower() in _HELP_WORDS for w in words[1:]):
        return Help(name)
    if name in ("llm", "vlm"):
        return _create(Kind(name), ctx)
    if name in _ACTIONS:
        return _job_command(_ACTIONS[name], ctx)
    if name == "list":
        return _list(ctx)
    if name == "gpus" and len(words) > 1:
        raise _Reject(f"`gpus` takes nothing after it; `{_show(words[1])}` is extra.", ["gpus"])
    if name == "gpus":
        return ShowGpus()
    if name == "help":
        return _help(ctx)
    if name.partition("=")[0].lstrip("-") in (*RUN_KEYS, *VLM_KEYS, *KEY_ALIASES):
        raise _Reject("Say which recipe first, `llm` (the fixed LLM recipe) or `vlm`: "
                      f"e.g. `/train llm {_show(words[0])} ...`.", ["llm", *words])
    close = difflib.get_close_matches(name[:40], (*COMMANDS, *SYNONYMS), n=1, cutoff=0.6)
    hint = f" Did you mean `{SYNONYMS.get(close[0], close[0])}`?" if close else ""
    raise _Reject(f"`{_show(words[0])}` is not a `/train` command.{hint} Commands: {_listing(COMMANDS)}.")


def _refuse_shell(words: list[str]) -> None:
    """`;`, `&&`, `|`, `$(` anywhere, and backticks in a `key=value` (around a job id they are Slack's code)."""
    for at, word in enumerate(words):
        found = _SHELL.search(word if "=" in word else word.replace("`", ""))
        if found:
            sign = "Backticks are" if found.group() == "`" else f"`{found.group()}` is"
            before = word[: found.start()]
            raise _Reject(f"{sign} not part of the `/train` language (`;`, `&&`, `|`, backticks and `$(` are "
                          "a shell's, and nothing here runs in a shell): give one command with its settings only.",
                          [*words[:at], *([before] if before else [])])


def _help(ctx: _Ctx) -> Help:
    topic = ctx.words[1].lower() if len(ctx.words) > 1 else None
    if len(ctx.words) > 2 or (topic is not None and topic not in COMMANDS):
        hint = _suggest(topic or "", COMMANDS)
        raise _Reject(f"There is no help on `{_show(' '.join(ctx.words[1:]))}`.{hint} "
                      f"`help` takes one of: {_listing(COMMANDS)}.", ["help"])
    return Help(topic)


def _key_value(word: str, ctx: _Ctx, at: int, keys: tuple[str, ...]) -> tuple[str, str]:
    """`key=value` -> (canonical key, value). Keys are case-insensitive and may use `-` or a leading `--`."""
    key, sep, value = word.partition("=")
    canon = key.lower().lstrip("-").replace("-", "_")
    canon = KEY_ALIASES.get(canon, canon)
    if not sep:
        takes = _listing(tuple(k + "=" for k in keys)) + _suggest(canon, keys)
        how = (f"write it as `{canon}=<value>`" if canon in keys else
               f"settings look like `gpu=0`, and `{ctx.words[0].lower()}` takes {takes}")
        raise _Reject(f"`{_show(word)}` needs a value: {how}.", ctx.fixed(at, None))
    if not value:
        fix = {"gpu": "gpu=0", "out": ctx.good_out}.get(canon)
        raise _Reject(f"`{_show(word)}` has no value after the `=`" + (f", e.g. `{fix}`." if fix else "."),
                      ctx.fixed(at, fix))
    return canon, value


def _create(kind: Kind, ctx: _Ctx) -> CreateJob:
    allowed = RUN_KEYS + (tuple(VLM_KEYS) if kind is Kind.VLM else ())
    seen: dict[str, str] = {}
    values: dict[str, str] = {}
    dry_run = hold = False
    for at, word in enumerate(ctx.words[1:], start=1):
        if word.lower() == "--dry-run":
            dry_run = True
            continue
        if word.lower() == "--hold":
            hold = True
            continue
        if word.lower().lstrip("-").replace("-", "_") in ("dry_run", "dryrun"):
            raise _Reject(f"Write `{_show(word)}` as `--dry-run`.", ctx.fixed(at, "--dry-run"))
        key, value = _key_value(word, ctx, at, allowed)
        if key not in allowed:
            raise _Reject(_not_allowed(kind, word.partition("=")[0], key), ctx.fixed(at, None))
        if key in seen:
            raise _Reject(f"`{key}` is given twice (`{_show(seen[key])}` and `{_show(word)}`): give it once.",
                          ctx.fixed(at, None))
        seen[key] = word
        values[key] = _check_value(key, value, _show(word), ctx, at)
    for key, fix, what in (("gpu", "gpu=0", "which GPUs to use"), ("out", ctx.good_out, "where to write")):
        if key not in values:
            raise _Reject(f"`{kind}` needs `{key}=`, {what}: e.g. `{fix}`.", [*ctx.words, fix])
    dry_run = values.pop("dry_run", "false") == "true" or dry_run
    gpus, out, profile = values.pop("gpu"), values.pop("out"), values.pop("profile", "fast")
    return CreateJob(kind, tuple(gpus.split(",")), Path(out), values, dry_run, profile, hold)


def _not_allowed(kind: Kind, raw: str, key: str) -> str:
    if kind is Kind.LLM:
        return (f"`{_show(raw)}` can't be set: the LLM recipe is fixed.{_suggest(key, RUN_KEYS)} "
                "`llm` takes only `gpu=` and `out=` (plus `profile=fast|exact`, `--dry-run` and `--hold`).")
    return (f"`{_show(raw)}` may not be overridden.{_suggest(key, (*VLM_KEYS, *RUN_KEYS))} Keys that may: "
            f"{_listing(tuple(VLM_KEYS))} (`lr` = `learning_rate`), besides `gpu=`, `out=`, `profile=`, "
            "`--dry-run`, `--hold`.")


def _check_value(key: str, value: str, shown: str, ctx: _Ctx, at: int) -> str:
    """The normalised value of one setting, or a _Reject saying what the value should look like."""
    if key == "gpu":
        return _check_gpus(value.lower(), shown, ctx, at)
    if key == "out":
        return _check_out(value.strip(), shown, ctx, at)
    if key in ("profile", "dry_run"):
        choices = PROFILES if key == "profile" else ("true", "false", "yes", "no", "1", "0")
        if value.lower() not in choices:
            raise _Reject(f"`{shown}`: `{key}=` is one of {_listing(choices)}.", ctx.fixed(at, None))
        return value.lower() if key == "profile" else str(value.lower() in ("true", "yes", "1")).lower()
    if key in INT_LIMITS:
        top = INT_LIMITS[key]
        if not (value.isascii() and value.isdigit() and len(value) < 12 and 1 <= int(value) <= top):
            raise _Reject(f"`{shown}`: `{key}` is a whole number from 1 to {top}.", ctx.fixed(at, None))
        return str(int(value))
    if key in FLOAT_LIMITS:
        ceiling, good = FLOAT_LIMITS[key]
        number = float(value) if _FLOAT.fullmatch(value) else math.nan
        if not 0 < number <= ceiling:
            raise _Reject(f"`{shown}`: `{key}` is a number above 0 and at most {ceiling:g}, e.g. `{good}`.",
                          ctx.fixed(at, None))
        return str(int(number)) if number.is_integer() else repr(number)
    items = [item.strip() for item in value.split(",")] if key == "dataset" else [value]
    for item in items:  # swift reads a value starting with `-` as an option of its own
        if not _PATH_ITEM.fullmatch(item) or item.startswith("-") or len(item) > MAX_OUT_LEN:
            good = VLM_KEYS[key].split("`")[1]
            raise _Reject(f"`{shown}`: `{_show(item) or '(empty)'}` is not a {key} id or path (no spaces, "
                          f"quotes or leading `-`), e.g. `{good}`.", ctx.fixed(at, None))
    roots = ctx.model_roots if key == "model" else ctx.data_roots
    checked = [check_source(key, item, roots=roots, base_dir=ctx.base_dir) for item in items]
    for item, verdict in zip(items, checked, strict=True):
        if isinstance(verdict, Refused):
            raise _Reject(f"`{shown}`: `{_show(item)}` {verdict.why}.", ctx.fixed(at, None))
    return ",".join(str(verdict) for verdict in checked)


def _check_gpus(value: str, shown: str, ctx: _Ctx, at: int) -> str:
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
        raise _Reject(f"`{shown}` {problem}, e.g. `gpu=0` or `gpu=0,1`, or `gpu=cpu`.",
                      ctx.fixed(at, "gpu=0"))
    return "cpu" if ids == ["cpu"] else ",".join(map(str, numbers))


def _check_out(value: str, shown: str, ctx: _Ctx, at: int) -> str:
    # Text arithmetic only: resolving symlinks would read the disk, and the disk is the runner's business.
    target, root = _norm(ctx.base_dir / value), ctx.output_root
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
        (not target.is_relative_to(root), f"would write to `{_show(str(target), 120)}`, outside the output "
                                          f"folder `{_show(str(root), 120)}`"),
    ) if bad), "")
    if problem:
        raise _Reject(f"`{shown}` {problem}. Give a folder inside the output folder, e.g. `{ctx.good_out}`.",
                      ctx.fixed(at, ctx.good_out))
    return str(target)


def _long_names(path: Path) -> int:
    """The byte length of the longest folder name in `path` over NAME_MAX, or 0."""
    return max((n for n in map(_bytes, path.parts) if n > NAME_MAX), default=0)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _job_command(action: JobAction, ctx: _Ctx) -> Command:
    words = ctx.words
    if action == "status" and len(words) == 1:
        return ShowStatus()
    if len(words) == 1:
        raise _Reject(f"`{action}` needs a job id, e.g. `/train {action} k3x9q`; `/train list` shows them.",
                      ["list"])
    job_id = words[1].strip("`<>").lower()
    if not _JOB_ID.fullmatch(job_id):
        confusable = " Job ids never contain 0, 1, i, l or o." if set(job_id) & set("01ilo") else ""
        raise _Reject(f"`{_show(words[1])}` is not a job id: ids are {ID_LENGTH} letters and digits like "
                      f"`k3x9q`, shown on the job card and by `/train list`.{confusable}", ["list"])
    lines: int | None = None
    for at, word in enumerate(words[2:], start=2):
        count = word.lower().removeprefix("--").removeprefix("lines=")
        if action != "logs":
            raise _Reject(f"`{action}` takes only a job id; `{_show(word)}` is extra.", ctx.fixed(at, None))
        if word.lower() in _FULL_WORDS:
            continue
        if not (count.isascii() and count.isdigit() and len(count) < 9 and 1 <= int(count) <= MAX_LOG_LINES):
            raise _Reject(f"`{_show(word)}`: `logs` takes `lines=N` (N from 1 to {MAX_LOG_LINES}) or `full`, "
                          "e.g. `/train logs k3x9q lines=200`.", ctx.fixed(at, None))
        if lines is not None:
            raise _Reject(f"`lines=` is given twice (`{_show(word)}`): give it once.", ctx.fixed(at, None))
        lines = int(count)
    full = any(w.lower() in _FULL_WORDS for w in words[2:])
    if full and lines is not None:
        raise _Reject("`full` sends the whole log, so `lines=` makes no sense with it: give one of them.",
                      [w for w in words if w.lower() not in _FULL_WORDS])
    return JobCommand(action, job_id, lines, full)


def _list(ctx: _Ctx) -> ListJobs:
    chosen: dict[str, str] = {}
    for at, word in enumerate(ctx.words[1:], start=1):
        key, sep, value = word.lower().rpartition("=")
        key = key.lstrip("-") if sep else "any"
        accepted = {"kind": LIST_KINDS, "state": LIST_STATES, "any": (*LIST_KINDS, *LIST_STATES)}.get(key, ())
        if value not in accepted:
            raise _Reject(f"`{_show(word)}` is not a job kind or state: `list` takes `llm`, `vlm` or `all`, "
                          f"and `state=` one of {_listing(LIST_STATES)}, e.g. `list vlm state=active`.",
                          ctx.fixed(at, None))
        slot = "kind" if value in LIST_KINDS else "state"
        if slot in chosen:
            raise _Reject(f"`list` takes one {slot}; `{_show(word)}` is a second one.", ctx.fixed(at, None))
        chosen[slot] = value
    kind = chosen.get("kind", "all")
    return ListJobs(None if kind == "all" else Kind(kind), chosen.get("state"))


def unparse(command: Command, *, base_dir: Path) -> str:
    """The canonical text (after `/train`) of a command, with parse(unparse(c)) == c: for cards, re-runs."""
    if isinstance(command, CreateJob):
        out, base = command.output_dir, _norm(base_dir)
        words = [str(command.kind), "gpu=" + ",".join(command.gpus),
                 "out=" + str(out.relative_to(base) if out.is_relative_to(base) else out)]
        words += [] if command.profile == "fast" else [f"profile={command.profile}"]
        words += [f"{k}={v}" for k, v in command.overrides.items()] + ["--dry-run"] * command.dry_run
        words += ["--hold"] * command.hold
        return " ".join(shlex.quote(w) for w in words)
    if isinstance(command, JobCommand):
        extra = [f"lines={command.lines}"] * (command.lines is not None) + ["full"] * command.full
        return " ".join([command.action, command.job_id, *extra])
    if isinstance(command, ListJobs):
        kind = [str(command.kind)] if command.kind else []
        return " ".join(["list", *kind, *([f"state={command.state}"] if command.state else [])])
    if isinstance(command, Help):
        return "help" + (f" {command.topic}" if command.topic else "")
    return "status" if isinstance(command, ShowStatus) else "gpus"
