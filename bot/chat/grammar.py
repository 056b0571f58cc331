"""The `/train` language: text in, a typed command (bot/chat/commands.py) or a Rejection (what was wrong, what would
work) out.

Independent of Slack. The words are read here; a job's settings become a JobRequest, judged by the runner's one
check (runner/job_request.py: the same for the HTTP API and the web form; it resolves `model=`/`dataset=` paths on
disk, the output folder only by its text: creating the job resolves that) and worded by bot/chat/settings.py. A
rejection's `example` is a whole command (the text after `/train`) that parses: the user's own command with the
fault fixed where that works, else a stock one.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from bot.chat import free_text
from bot.chat.commands import (
    JOB_ACTIONS,
    MAX_LOG_LINES,
    MAX_RUNS,
    MIN_RUNS,
    AddNote,
    Command,
    CompareJobs,
    CreateJob,
    Help,
    JobAction,
    JobCommand,
    ListJobs,
    Rejection,
    ShowGpus,
    ShowStatus,
    TryJob,
    norm,
    out_example,
)
from bot.chat.help_text import COMMANDS, SYNONYMS, VLM_KEYS, help_text
from bot.chat.settings import RUN_KEYS, Ctx, Reject, grammar_key, listing, not_allowed, refusal, show, suggest
from bot.chat.typed import HELP_WORDS, JOB_ID, normalise, read_job_id
from runner.job_request import InvalidField, JobRequest, check_request
from runner.paths import OutsideRoot
from storage.models import JobState, Kind

__all__ = [
    "COMMANDS",
    "JOB_ACTIONS",
    "AddNote",
    "Command",
    "CompareJobs",
    "CreateJob",
    "Help",
    "JobAction",
    "JobCommand",
    "ListJobs",
    "Rejection",
    "ShowGpus",
    "ShowStatus",
    "TryJob",
    "help_text",
    "normalise",
    "out_example",
    "parse",
]

_ACTIONS: dict[str, JobAction] = {action: action for action in JOB_ACTIONS}
LIST_KINDS = ("llm", "vlm", "all")
LIST_STATES: tuple[str, ...] = (*(s.value for s in JobState), "active")
MAX_TEXT_LEN = 4000
KEY_ALIASES = {"gpu_id": "gpu", "gpus": "gpu", "output_dir": "out", "lr": "learning_rate"}
_FULL_WORDS = ("full", "--full", "full=true")
_SHELL = re.compile(r";|&&|\|\|?|`|\$\(")  # a shell's, not ours: commands never run through a shell


def parse(
    text: str, *, output_root: Path, base_dir: Path, model_roots: Sequence[Path] = (), data_roots: Sequence[Path] = ()
) -> Command | Rejection:
    """The command in `text` (what follows `/train`); `out=` is taken relative to base_dir. A `model=` or
    `dataset=` path must lie in `model_roots` / `data_roots` (else only hub ids will do)."""
    base = norm(base_dir)
    ctx = Ctx(
        [], norm(base / output_root), base, out_example(output_root, base_dir), tuple(model_roots), tuple(data_roots)
    )
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
    return name if name in ("list", "status", "gpus") else "help compare" if name == "compare" else "help"


def _parse(text: str, ctx: Ctx) -> Command:
    if len(text) > MAX_TEXT_LEN:
        raise Reject(
            f"That is {len(text)} characters; a `/train` command has at most {MAX_TEXT_LEN}. "
            "`/train help` shows the commands."
        )
    if free_text.TRY.match(text):
        return free_text.try_command(text, ctx)  # before shlex: the question is free text (quotes, `;` and all)
    ctx.words[:] = normalise(text).split()[:1]  # for the stock example, should shlex fail
    if ctx.words and ctx.words[0].lower() == "note":  # free text: read as typed, no quotes or shell signs looked at
        return free_text.note_command(text)
    try:
        words = shlex.split(normalise(text))
    except ValueError:
        raise Reject(
            f'A quote is not closed: put a value with spaces between matching quotes, e.g. `out="{ctx.out_example} 2"`.'
        ) from None
    ctx.words[:] = words
    _refuse_shell(words)
    name = words[0].lower() if words else "help"
    if name in COMMANDS and any(w.lower() in HELP_WORDS for w in words[1:]):
        return Help(name)
    if name in ("llm", "vlm"):
        return _create(Kind(name), ctx)
    if name in _ACTIONS:
        return _job_command(_ACTIONS[name], ctx)
    if name == "list":
        return _list(ctx)
    if name == "compare":
        return _compare(ctx)
    if name == "gpus" and len(words) > 1:
        raise Reject(f"`gpus` takes nothing after it; `{show(words[1])}` is extra.", ["gpus"])
    if name == "gpus":
        return ShowGpus()
    if name == "help":
        return _help(ctx)
    if name.partition("=")[0].lstrip("-") in (*RUN_KEYS, *VLM_KEYS, *KEY_ALIASES):
        raise Reject(
            f"Say which recipe first, `llm` (the fixed LLM recipe) or `vlm`: e.g. `/train llm {show(words[0])} ...`.",
            ["llm", *words],
        )
    close = difflib.get_close_matches(name[:40], (*COMMANDS, *SYNONYMS), n=1, cutoff=0.6)
    hint = f" Did you mean `{SYNONYMS.get(close[0], close[0])}`?" if close else ""
    raise Reject(f"`{show(words[0])}` is not a `/train` command.{hint} Commands: {listing(COMMANDS)}.")


def _refuse_shell(words: list[str]) -> None:
    """`;`, `&&`, `|`, `$(` anywhere, and backticks in a `key=value` (around a job id they are Slack's code)."""
    for at, word in enumerate(words):
        found = _SHELL.search(word if "=" in word else word.replace("`", ""))
        if found:
            sign = "Backticks are" if found.group() == "`" else f"`{found.group()}` is"
            before = word[: found.start()]
            raise Reject(
                f"{sign} not part of the `/train` language (`;`, `&&`, `|`, backticks and `$(` are "
                "a shell's, and nothing here runs in a shell): give one command with its settings only.",
                [*words[:at], *([before] if before else [])],
            )


def _help(ctx: Ctx) -> Help:
    topic = ctx.words[1].lower() if len(ctx.words) > 1 else None
    if len(ctx.words) > 2 or (topic is not None and topic not in COMMANDS):
        hint = suggest(topic or "", COMMANDS)
        raise Reject(
            f"There is no help on `{show(' '.join(ctx.words[1:]))}`.{hint} `help` takes one of: {listing(COMMANDS)}.",
            ["help"],
        )
    return Help(topic)


def _key_value(word: str, ctx: Ctx, at: int, keys: tuple[str, ...]) -> tuple[str, str]:
    """`key=value` -> (canonical key, value). Keys are case-insensitive and may use `-` or a leading `--`."""
    key, sep, value = word.partition("=")
    canon = key.lower().lstrip("-").replace("-", "_")
    canon = KEY_ALIASES.get(canon, canon)
    if not sep:
        takes = listing(tuple(k + "=" for k in keys)) + suggest(canon, keys)
        how = (
            f"write it as `{canon}=<value>`"
            if canon in keys
            else f"settings look like `gpu=0`, and `{ctx.words[0].lower()}` takes {takes}"
        )
        raise Reject(f"`{show(word)}` needs a value: {how}.", ctx.fixed(at, None))
    if not value:
        fix = {"gpu": "gpu=0", "out": ctx.good_out}.get(canon)
        raise Reject(
            f"`{show(word)}` has no value after the `=`" + (f", e.g. `{fix}`." if fix else "."), ctx.fixed(at, fix)
        )
    return canon, value


def _create(kind: Kind, ctx: Ctx) -> CreateJob:
    allowed = RUN_KEYS + (tuple(VLM_KEYS) if kind is Kind.VLM else ())
    seen: dict[str, tuple[int, str]] = {}  # key -> where it was given, and how
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
            raise Reject(f"Write `{show(word)}` as `--dry-run`.", ctx.fixed(at, "--dry-run"))
        key, value = _key_value(word, ctx, at, allowed)
        if key not in allowed:
            raise Reject(not_allowed(kind, word.partition("=")[0], key), ctx.fixed(at, None))
        if key in seen:
            raise Reject(
                f"`{key}` is given twice (`{show(seen[key][1])}` and `{show(word)}`): give it once.",
                ctx.fixed(at, None),
            )
        seen[key] = at, word
        values[key] = value
    for key, fix, what in (("gpu", "gpu=0", "which GPUs to use"), ("out", ctx.good_out, "where to write")):
        if key not in values:
            raise Reject(f"`{kind}` needs `{key}=`, {what}: e.g. `{fix}`.", [*ctx.words, fix])
    if "dry_run" in values:
        dry_run = _flag(values.pop("dry_run"), *seen["dry_run"], ctx) or dry_run
    gpus, out, profile = values.pop("gpu").lower(), values.pop("out").strip(), values.pop("profile", "fast").lower()
    name = values.pop("name", None)
    if not out:
        raise Reject(
            f"`{show(seen['out'][1])}` is empty. Give a folder inside the output folder, e.g. `{ctx.good_out}`.",
            ctx.fixed(seen["out"][0], ctx.good_out),
        )
    if kind is Kind.VLM and "dataset" in values:  # people type `a/b, c/d`
        values["dataset"] = ",".join(item.strip() for item in values["dataset"].split(","))
    req = JobRequest(
        kind, tuple(g.strip() for g in gpus.split(",")), Path(out), values, profile=profile, hold=hold, name=name
    )
    try:
        req = check_request(req, ctx, resolve=False)
    except (InvalidField, OutsideRoot) as err:
        where, word = seen[grammar_key(err.field)]
        good = {"gpus": "gpu=0", "output_dir": ctx.good_out}.get(err.field)
        raise Reject(refusal(err, show(word), ctx.good_out, ctx.base_dir), ctx.fixed(where, good)) from None
    return CreateJob(kind, req.gpus, req.output_dir, dict(req.overrides), dry_run, req.profile, hold, req.name)


def _flag(value: str, at: int, word: str, ctx: Ctx) -> bool:
    """`dry_run=`'s value: the grammar's own word, not a request's field."""
    choices = ("true", "false", "yes", "no", "1", "0")
    if value.lower() not in choices:
        raise Reject(f"`{show(word)}`: `dry_run=` is one of {listing(choices)}.", ctx.fixed(at, None))
    return value.lower() in ("true", "yes", "1")


def _job_command(action: JobAction, ctx: Ctx) -> Command:
    words = ctx.words
    if action == "status" and len(words) == 1:
        return ShowStatus()
    if len(words) == 1:
        raise Reject(f"`{action}` needs a job id, e.g. `/train {action} k3x9q`; `/train list` shows them.", ["list"])
    if action == "status" and len(words) == 2 and not JOB_ID.fullmatch(words[1].strip("`<>").lower()):
        return ShowStatus(words[1])  # a name: the job of that name, or those it finds
    job_id = read_job_id(words[1])
    lines: int | None = None
    for at, word in enumerate(words[2:], start=2):
        count = word.lower().removeprefix("--").removeprefix("lines=")
        if action != "logs":
            raise Reject(f"`{action}` takes only a job id; `{show(word)}` is extra.", ctx.fixed(at, None))
        if word.lower() in _FULL_WORDS:
            continue
        if not (count.isascii() and count.isdigit() and len(count) < 9 and 1 <= int(count) <= MAX_LOG_LINES):
            raise Reject(
                f"`{show(word)}`: `logs` takes `lines=N` (N from 1 to {MAX_LOG_LINES}) or `full`, "
                "e.g. `/train logs k3x9q lines=200`.",
                ctx.fixed(at, None),
            )
        if lines is not None:
            raise Reject(f"`lines=` is given twice (`{show(word)}`): give it once.", ctx.fixed(at, None))
        lines = int(count)
    full = any(w.lower() in _FULL_WORDS for w in words[2:])
    if full and lines is not None:
        raise Reject(
            "`full` sends the whole log, so `lines=` makes no sense with it: give one of them.",
            [w for w in words if w.lower() not in _FULL_WORDS],
        )
    return JobCommand(action, job_id, lines, full)


def _compare(ctx: Ctx) -> CompareJobs:
    ids: list[str] = []
    for at, word in enumerate(ctx.words[1:], start=1):
        job_id = word.strip("`<>,").lower()
        if not JOB_ID.fullmatch(job_id):
            confusable = " Job ids never contain 0, 1, i, l or o." if set(job_id) & set("01ilo") else ""
            raise Reject(
                f"`{show(word)}` is not a job id: `compare` takes {MIN_RUNS} to {MAX_RUNS} ids like "
                f"`k3x9q`, e.g. `/train compare k3x9q m4z8p`.{confusable}",
                ctx.fixed(at, None),
            )
        if job_id in ids:
            raise Reject(f"`{job_id}` is given twice: compare each job once.", ctx.fixed(at, None))
        ids.append(job_id)
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        more = "another job" if len(ids) == 1 else f"at least {MIN_RUNS} jobs"
        raise Reject(
            f"`compare` takes {MIN_RUNS} to {MAX_RUNS} job ids ({len(ids)} given): "
            + (
                f"name {more}, e.g. `/train compare k3x9q m4z8p`; `/train list` shows them."
                if len(ids) < MIN_RUNS
                else "leave some out."
            ),
            ctx.words[: MAX_RUNS + 1] if len(ids) > MAX_RUNS else ["list"],
        )
    return CompareJobs(tuple(ids))


def _list(ctx: Ctx) -> ListJobs:
    chosen: dict[str, str] = {}
    for at, word in enumerate(ctx.words[1:], start=1):
        if word.lower().lstrip("-").startswith("name="):
            if "text" in chosen:
                raise Reject(f"`list` takes one `name=`; `{show(word)}` is a second one.", ctx.fixed(at, None))
            chosen["text"] = word.partition("=")[2]
            if not chosen["text"].strip():
                raise Reject("`name=` needs the text to look for, e.g. `list name=sweep`.", ctx.fixed(at, None))
            continue
        key, sep, value = word.lower().rpartition("=")
        key = key.lstrip("-") if sep else "any"
        accepted = {"kind": LIST_KINDS, "state": LIST_STATES, "any": (*LIST_KINDS, *LIST_STATES)}.get(key, ())
        if value not in accepted:
            raise Reject(
                f"`{show(word)}` is not a job kind or state: `list` takes `llm`, `vlm` or `all`, "
                f"`state=` one of {listing(LIST_STATES)}, and `name=` to find jobs by name (or folder, "
                f"owner, id), e.g. `list vlm state=active` or `list name={show(word)}`.",
                ctx.fixed(at, None),
            )
        slot = "kind" if value in LIST_KINDS else "state"
        if slot in chosen:
            raise Reject(f"`list` takes one {slot}; `{show(word)}` is a second one.", ctx.fixed(at, None))
        chosen[slot] = value
    kind = chosen.get("kind", "all")
    return ListJobs(None if kind == "all" else Kind(kind), chosen.get("state"), chosen.get("text"))
