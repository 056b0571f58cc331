"""The `/train` language: text in, a typed command or a Rejection (what was wrong, what would work) out.

Pure and independent of Slack: no I/O but path arithmetic. A rejection's `example` is a whole command (the
text after `/train`) that parses: the user's own command with the fault fixed where that works, else a stock
one.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, get_args

from bot.grammar_values import ParseContext, Reject, check_value, listing, norm_path, show, suggest
from bot.help_text import COMMANDS, SYNONYMS, VLM_KEYS, help_text
from storage.jobs import ID_ALPHABET, ID_LENGTH
from storage.models import JobState, Kind

__all__ = ["COMMANDS", "Command", "CreateJob", "Help", "JobAction", "JobCommand", "ListJobs", "Rejection",
           "ShowGpus", "ShowStatus", "help_text", "normalise", "out_example", "parse", "unparse"]

JobAction: TypeAlias = Literal["start", "stop", "export", "status", "show", "logs", "delete"]
JOB_ACTIONS: tuple[JobAction, ...] = get_args(JobAction)
_ACTIONS: dict[str, JobAction] = {action: action for action in JOB_ACTIONS}
LIST_KINDS = ("llm", "vlm", "all")
LIST_STATES: tuple[str, ...] = (*(s.value for s in JobState), "active")
MAX_TEXT_LEN, MAX_LOG_LINES = 4000, 10_000
RUN_KEYS = ("gpu", "out", "profile", "dry_run")  # what both recipes take; `vlm` adds VLM_KEYS
KEY_ALIASES = {"gpu_id": "gpu", "gpus": "gpu", "output_dir": "out", "lr": "learning_rate"}
_HELP_WORDS = ("help", "--help", "-h", "?")
_FULL_WORDS = ("full", "--full", "full=true")
_JOB_ID = re.compile(f"[{ID_ALPHABET}]{{{ID_LENGTH}}}")  # exactly what storage makes
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


def normalise(text: str) -> str:
    """Undo smart quotes, odd spaces and auto-dashes that Slack or keyboards put into typed commands."""
    return _DASHES.sub("--", _SPACES.sub(" ", text.translate(_TYPOGRAPHY)))


def out_example(output_root: Path, base_dir: Path) -> str:
    """A folder people may pass as `out=` (relative to base_dir where it can be), for examples and help."""
    base = norm_path(base_dir)
    target = norm_path(base / output_root) / "my-run"
    return str(target.relative_to(base)) if target.is_relative_to(base) else str(target)


def parse(text: str, *, output_root: Path, base_dir: Path) -> Command | Rejection:
    """The command in `text` (what follows `/train`); `out=` is taken relative to base_dir."""
    base = norm_path(base_dir)
    ctx = ParseContext([], norm_path(base / output_root), base, out_example(output_root, base_dir))
    try:
        return _parse(text, ctx)
    except Reject as err:
        stock = _stock_example(ctx.words[:1], ctx.good_out)
        fixed = " ".join(shlex.quote(w) for w in err.fixed) if err.fixed else None
        try:
            _parse(fixed or "", ctx)  # only an example that parses will do
        except Reject:
            fixed = None
        return Rejection(err.message, fixed or stock)


def _stock_example(first: list[str], good_out: str) -> str:
    name = first[0].lower() if first else ""
    if name in ("llm", "vlm"):
        return f"{name} gpu=0 {good_out}" + (" epochs=1" if name == "vlm" else "")
    return name if name in ("list", "status", "gpus") else "help"


def _parse(text: str, ctx: ParseContext) -> Command:
    if len(text) > MAX_TEXT_LEN:
        raise Reject(f"That is {len(text)} characters; a `/train` command has at most {MAX_TEXT_LEN}. "
                      "`/train help` shows the commands.")
    ctx.words[:] = normalise(text).split()[:1]  # for the stock example, should shlex fail
    try:
        words = shlex.split(normalise(text))
    except ValueError:
        raise Reject("A quote is not closed: put a value with spaces between matching quotes, "
                      f'e.g. `out="{ctx.out_example} 2"`.') from None
    ctx.words[:] = words
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
        raise Reject(f"`gpus` takes nothing after it; `{show(words[1])}` is extra.", ["gpus"])
    if name == "gpus":
        return ShowGpus()
    if name == "help":
        return _help(ctx)
    if name.partition("=")[0].lstrip("-") in (*RUN_KEYS, *VLM_KEYS, *KEY_ALIASES):
        raise Reject("Say which recipe first, `llm` (the fixed LLM recipe) or `vlm`: "
                      f"e.g. `/train llm {show(words[0])} ...`.", ["llm", *words])
    close = difflib.get_close_matches(name[:40], (*COMMANDS, *SYNONYMS), n=1, cutoff=0.6)
    hint = f" Did you mean `{SYNONYMS.get(close[0], close[0])}`?" if close else ""
    raise Reject(f"`{show(words[0])}` is not a `/train` command.{hint} Commands: {listing(COMMANDS)}.")


def _help(ctx: ParseContext) -> Help:
    topic = ctx.words[1].lower() if len(ctx.words) > 1 else None
    if len(ctx.words) > 2 or (topic is not None and topic not in COMMANDS):
        hint = suggest(topic or "", COMMANDS)
        raise Reject(f"There is no help on `{show(' '.join(ctx.words[1:]))}`.{hint} "
                      f"`help` takes one of: {listing(COMMANDS)}.", ["help"])
    return Help(topic)


def _key_value(word: str, ctx: ParseContext, at: int, keys: tuple[str, ...]) -> tuple[str, str]:
    """`key=value` -> (canonical key, value). Keys are case-insensitive and may use `-` or a leading `--`."""
    key, sep, value = word.partition("=")
    canon = key.lower().lstrip("-").replace("-", "_")
    canon = KEY_ALIASES.get(canon, canon)
    if not sep:
        takes = listing(tuple(k + "=" for k in keys)) + suggest(canon, keys)
        how = (f"write it as `{canon}=<value>`" if canon in keys else
               f"settings look like `gpu=0`, and `{ctx.words[0].lower()}` takes {takes}")
        raise Reject(f"`{show(word)}` needs a value: {how}.", ctx.fixed(at, None))
    if not value:
        fix = {"gpu": "gpu=0", "out": ctx.good_out}.get(canon)
        raise Reject(f"`{show(word)}` has no value after the `=`" + (f", e.g. `{fix}`." if fix else "."),
                      ctx.fixed(at, fix))
    return canon, value


def _create(kind: Kind, ctx: ParseContext) -> CreateJob:
    allowed = RUN_KEYS + (tuple(VLM_KEYS) if kind is Kind.VLM else ())
    seen: dict[str, str] = {}
    values: dict[str, str] = {}
    dry_run = False
    for at, word in enumerate(ctx.words[1:], start=1):
        if word.lower() == "--dry-run":
            dry_run = True
            continue
        if word.lower().lstrip("-").replace("-", "_") in ("dry_run", "dryrun"):
            raise Reject(f"Write `{show(word)}` as `--dry-run`.", ctx.fixed(at, "--dry-run"))
        key, value = _key_value(word, ctx, at, allowed)
        if key not in allowed:
            raise Reject(_not_allowed(kind, word.partition("=")[0], key), ctx.fixed(at, None))
        if key in seen:
            raise Reject(f"`{key}` is given twice (`{show(seen[key])}` and `{show(word)}`): give it once.",
                          ctx.fixed(at, None))
        seen[key] = word
        values[key] = check_value(key, value, show(word), ctx, at)
    for key, fix, what in (("gpu", "gpu=0", "which GPUs to use"), ("out", ctx.good_out, "where to write")):
        if key not in values:
            raise Reject(f"`{kind}` needs `{key}=`, {what}: e.g. `{fix}`.", [*ctx.words, fix])
    dry_run = values.pop("dry_run", "false") == "true" or dry_run
    gpus, out, profile = values.pop("gpu"), values.pop("out"), values.pop("profile", "fast")
    return CreateJob(kind, tuple(gpus.split(",")), Path(out), values, dry_run, profile)


def _not_allowed(kind: Kind, raw: str, key: str) -> str:
    if kind is Kind.LLM:
        return (f"`{show(raw)}` can't be set: the LLM recipe is fixed.{suggest(key, RUN_KEYS)} "
                "`llm` takes only `gpu=` and `out=` (plus `profile=fast|exact` and `--dry-run`).")
    return (f"`{show(raw)}` may not be overridden.{suggest(key, (*VLM_KEYS, *RUN_KEYS))} Keys that may: "
            f"{listing(tuple(VLM_KEYS))} (`lr` = `learning_rate`), besides `gpu=`, `out=`, `profile=`, "
            "`--dry-run`.")


def _job_command(action: JobAction, ctx: ParseContext) -> Command:
    words = ctx.words
    if action == "status" and len(words) == 1:
        return ShowStatus()
    if len(words) == 1:
        raise Reject(f"`{action}` needs a job id, e.g. `/train {action} k3x9q`; `/train list` shows them.",
                      ["list"])
    job_id = words[1].strip("`<>").lower()
    if not _JOB_ID.fullmatch(job_id):
        confusable = " Job ids never contain 0, 1, i, l or o." if set(job_id) & set("01ilo") else ""
        raise Reject(f"`{show(words[1])}` is not a job id: ids are {ID_LENGTH} letters and digits like "
                      f"`k3x9q`, shown on the job card and by `/train list`.{confusable}", ["list"])
    lines: int | None = None
    for at, word in enumerate(words[2:], start=2):
        count = word.lower().removeprefix("--").removeprefix("lines=")
        if action != "logs":
            raise Reject(f"`{action}` takes only a job id; `{show(word)}` is extra.", ctx.fixed(at, None))
        if word.lower() in _FULL_WORDS:
            continue
        if not (count.isascii() and count.isdigit() and len(count) < 9 and 1 <= int(count) <= MAX_LOG_LINES):
            raise Reject(f"`{show(word)}`: `logs` takes `lines=N` (N from 1 to {MAX_LOG_LINES}) or `full`, "
                          "e.g. `/train logs k3x9q lines=200`.", ctx.fixed(at, None))
        if lines is not None:
            raise Reject(f"`lines=` is given twice (`{show(word)}`): give it once.", ctx.fixed(at, None))
        lines = int(count)
    full = any(w.lower() in _FULL_WORDS for w in words[2:])
    if full and lines is not None:
        raise Reject("`full` sends the whole log, so `lines=` makes no sense with it: give one of them.",
                      [w for w in words if w.lower() not in _FULL_WORDS])
    return JobCommand(action, job_id, lines, full)


def _list(ctx: ParseContext) -> ListJobs:
    chosen: dict[str, str] = {}
    for at, word in enumerate(ctx.words[1:], start=1):
        key, sep, value = word.lower().rpartition("=")
        key = key.lstrip("-") if sep else "any"
        accepted = {"kind": LIST_KINDS, "state": LIST_STATES, "any": (*LIST_KINDS, *LIST_STATES)}.get(key, ())
        if value not in accepted:
            raise Reject(f"`{show(word)}` is not a job kind or state: `list` takes `llm`, `vlm` or `all`, "
                          f"and `state=` one of {listing(LIST_STATES)}, e.g. `list vlm state=active`.",
                          ctx.fixed(at, None))
        slot = "kind" if value in LIST_KINDS else "state"
        if slot in chosen:
            raise Reject(f"`list` takes one {slot}; `{show(word)}` is a second one.", ctx.fixed(at, None))
        chosen[slot] = value
    kind = chosen.get("kind", "all")
    return ListJobs(None if kind == "all" else Kind(kind), chosen.get("state"))


def unparse(command: Command, *, base_dir: Path) -> str:
    """The canonical text (after `/train`) of a command, with parse(unparse(c)) == c: for cards, re-runs."""
    if isinstance(command, CreateJob):
        out, base = command.output_dir, norm_path(base_dir)
        words = [str(command.kind), "gpu=" + ",".join(command.gpus),
                 "out=" + str(out.relative_to(base) if out.is_relative_to(base) else out)]
        words += [] if command.profile == "fast" else [f"profile={command.profile}"]
        words += [f"{k}={v}" for k, v in command.overrides.items()] + ["--dry-run"] * command.dry_run
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
