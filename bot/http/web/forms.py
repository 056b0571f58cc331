"""The New job forms: the fields become a JobRequest directly (no chat words in between), judged by the runner's
one check as Slack's and the API's are, and worded for a form (bot/http/web/form_words.py); "Preview" shows the exact
command (a dry run) and refuses what "Start" would refuse; "Start" submits.

Every field's refusal is found at once (runner/job_request.field_problems) and shown by its field; the folder and
GPU checks that need the whole request (another job's folder, GPUs this machine lacks, who may start jobs) follow
once the fields are right, as creating the job would make them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.chat.commands import out_example
from bot.http.auth import Principal
from bot.http.context import ApiContext
from bot.http.web.form_words import HELP, LABELS, field_of, form_error
from bot.words.profiles import note_words
from bot.words.refusals import warning_text
from runner import leases
from runner.command import resolve_recipe
from runner.config import Config
from runner.job_request import FLOAT_LIMITS, INT_LIMITS, OVERRIDE_KEYS, JobRequest, field_problems
from runner.recipes import VLM_USER_KEYS
from storage.errors import JobError
from storage.models import JobState, Kind


@dataclass(frozen=True)
class GpuChoice:
    index: str
    label: str
    state: str  # in words: "free", "in use by job X", "promised to queued job Y", ...
    free: bool  # nothing holds it and no queued job waits for it


@dataclass(frozen=True)
class Field:
    """A recipe setting on the form: its name, label, help, the swift flag (or variable) it sets, the recipe's
    value (the placeholder) and, for numbers, the bounds of a number input."""

    key: str
    label: str
    help: str
    flag: str
    recipe_value: str
    number: tuple[str, str, str] | None = None  # (min, max, step) of <input type="number">


@dataclass(frozen=True)
class JobForm:
    kind: str
    gpu_choices: list[GpuChoice]
    values: dict[str, str] = field(default_factory=dict)  # what was typed, shown back as typed
    gpus: tuple[str, ...] = ()
    settings: tuple[Field, ...] = ()
    preview: str | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)  # form field ("gpus", "out", a key, "form") -> words
    created: str | None = None

    @property
    def first_error(self) -> str | None:
        """The field that gets the focus: the first on the page with an error."""
        order = ["form", "gpus", "out", "profile", *(f.key for f in self.settings)]
        return next((name for name in order if name in self.errors), None)


async def _choices(ctx: ApiContext) -> list[GpuChoice]:
    store = ctx.runtime.store
    holding = await store.holding()
    holders = leases.held(holding)
    foreign = ctx.runtime.supervisor.foreign_busy(holding)
    promised: dict[str, str] = {}  # GPU -> the first queued job waiting for it
    for job in holding:
        if job.state is JobState.QUEUED:
            for index in job.gpus:
                promised.setdefault(index, job.id)
    out = []
    for gpu in ctx.runtime.probe.snapshot().devices():
        label = "CPU" if gpu.index == "cpu" else f"GPU {gpu.index} {gpu.name}".rstrip()
        said = []
        if (holder := holders.get(gpu.index)) is not None:
            said.append(f"in use by job {holder}")
        elif gpu.index in foreign:
            said.append("in use by another process")
        if (waiting := promised.get(gpu.index)) is not None:
            said.append(f"promised {'next ' if said else ''}to queued job {waiting}")
        out.append(GpuChoice(gpu.index, label, "; ".join(said) or "free", not said))
    return out


def settings(kind: Kind, config: Config) -> tuple[Field, ...]:
    """The VLM recipe's settings a person may change, with the recipe's values as this config makes them."""
    if kind is not Kind.VLM:
        return ()
    recipe = resolve_recipe(kind, config)
    env = dict(recipe.env)
    out = []
    for key in OVERRIDE_KEYS:
        targets = VLM_USER_KEYS[key]
        first = targets[0]
        value = env.get(first[4:]) if first.startswith("env:") else recipe.value(first)
        shown = ",".join(value) if isinstance(value, tuple) else (value or "")
        flag = ", ".join(f"{t[4:]} (a variable)" if t.startswith("env:") else f"--{t}" for t in targets)
        number = (
            ("1", str(INT_LIMITS[key]), "1")
            if key in INT_LIMITS
            else ("0", f"{FLOAT_LIMITS[key]:g}", "any")
            if key in FLOAT_LIMITS
            else None
        )
        out.append(Field(key, LABELS[key], HELP[key], flag, shown, number))
    return tuple(out)


async def blank(ctx: ApiContext, kind: str) -> JobForm:
    chosen = Kind.VLM if kind == "vlm" else Kind.LLM
    out = out_example(ctx.config.output_root, ctx.config.base_dir)
    return JobForm(
        str(chosen), await _choices(ctx), {"out": out, "profile": "fast"}, settings=settings(chosen, ctx.config)
    )


async def submit(ctx: ApiContext, who: Principal, fields: Mapping[str, str]) -> JobForm:
    kind = Kind.VLM if fields.get("kind") == "vlm" else Kind.LLM
    gpus = [k.removeprefix("gpu_") for k in fields if re.fullmatch(r"gpu_[0-9a-z]{1,8}", k)]
    values = {k: v for k, v in fields.items() if k in ("out", "name", "profile", *OVERRIDE_KEYS)}
    form = JobForm(str(kind), await _choices(ctx), values, tuple(gpus), settings(kind, ctx.config))
    config = ctx.config
    example = out_example(config.output_root, config.base_dir)
    out = values.get("out", "").strip()
    overrides = {key: values[key].strip() for key in OVERRIDE_KEYS if kind is Kind.VLM and values.get(key, "").strip()}
    req = JobRequest(
        kind,
        tuple(gpus),
        Path(out),
        overrides,
        who.user_id,
        config.http.notify_channel,
        values.get("profile") or "fast",
        name=values["name"] if values.get("name", "").strip() else None,  # a blank field: no name
    )
    errors: dict[str, str] = {}
    if not gpus:
        errors["gpus"] = "Pick at least one GPU (or the CPU) to train on."
    if not out:
        errors["out"] = f"Give an output folder, e.g. {example}."
    for problem in field_problems(req, config):
        errors.setdefault(field_of(problem), form_error(problem, example))
    if errors:
        return replace(form, errors=errors)
    try:  # what Start would refuse, the preview refuses too
        dry = await ctx.runtime.jobs.dry_run(req, who.caller(), strict=True)
        if fields.get("go") != "start":
            return replace(
                form,
                preview=dry.plan.display,
                notes=tuple(note_words(n) for n in dry.plan.notes),
                warnings=tuple(warning_text(w) for w in dry.warnings),
            )
        job = (await ctx.runtime.jobs.create(dry.request, who.caller())).job
    except JobError as exc:
        return replace(form, errors={field_of(exc): form_error(exc, example)})
    return replace(form, created=job.id)
