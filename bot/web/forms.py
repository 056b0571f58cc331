"""The New job forms: the fields become a JobRequest directly (no chat words in between), judged by the runner's
one check as Slack's and the API's are, and worded for a form (bot/web/form_words.py); "Preview" shows the exact
command (a dry run), "Start" submits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.api.auth import Principal
from bot.api.context import ApiContext
from bot.commands import out_example
from bot.texts import warning_text
from bot.web.form_words import HELP, form_error
from runner import leases
from runner.access import check_start
from runner.errors import GpuMissing
from runner.job_request import OVERRIDE_KEYS, JobRequest, check_request
from storage.errors import JobError
from storage.models import Kind


@dataclass(frozen=True)
class GpuChoice:
    index: str
    label: str
    holder: str | None  # the job holding it, or "another process"

@dataclass(frozen=True)
class JobForm:
    kind: str
    gpu_choices: list[GpuChoice]
    values: dict[str, str] = field(default_factory=dict)  # what was typed, shown back as typed
    gpus: tuple[str, ...] = ()
    vlm_keys: dict[str, str] = field(default_factory=lambda: dict(HELP))
    preview: str | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None
    created: str | None = None

async def _choices(ctx: ApiContext) -> list[GpuChoice]:
    holding = await ctx.runtime.store.holding()
    holders = leases.held(holding)
    foreign = ctx.runtime.supervisor.foreign_busy(holding)
    out = []
    for gpu in ctx.runtime.probe.snapshot().devices():
        holder = holders.get(gpu.index) or ("another process" if gpu.index in foreign else None)
        label = "CPU" if gpu.index == "cpu" else f"GPU {gpu.index} {gpu.name}".rstrip()
        out.append(GpuChoice(gpu.index, label, holder))
    return out

async def blank(ctx: ApiContext, kind: str) -> JobForm:
    kind = kind if kind in ("llm", "vlm") else "llm"
    out = out_example(ctx.config.output_root, ctx.config.base_dir)
    return JobForm(kind, await _choices(ctx), {"out": out, "profile": "fast"})

async def submit(ctx: ApiContext, who: Principal, fields: dict[str, str]) -> JobForm:
    kind = Kind.VLM if fields.get("kind") == "vlm" else Kind.LLM
    gpus = [k.removeprefix("gpu_") for k in fields if re.fullmatch(r"gpu_[0-9a-z]{1,8}", k)]
    values = {k: v for k, v in fields.items() if k in ("out", "name", "profile", *OVERRIDE_KEYS)}
    form = JobForm(str(kind), await _choices(ctx), values, tuple(gpus))
    config = ctx.config
    example = out_example(config.output_root, config.base_dir)
    if not gpus:
        return replace(form, error="Pick at least one GPU (or the CPU) to train on.")
    if not values.get("out"):
        return replace(form, error=f"Give an output folder, e.g. {example}.")
    overrides = {key: values[key].strip() for key in OVERRIDE_KEYS if kind is Kind.VLM and values.get(key, "").strip()}
    req = JobRequest(kind, tuple(gpus), Path(values["out"]), overrides, who.user_id,
                     config.http.notify_channel, values.get("profile") or "fast",
                     name=values["name"] if values.get("name", "").strip() else None)  # a blank field: no name
    sup = ctx.runtime.supervisor
    try:
        req = check_request(req, config)
        if fields.get("go") != "start":
            plan = sup.plan(req)
            warnings = [form_error(w, example) if isinstance(w, GpuMissing) else warning_text(w)
                        for w in await sup.dry_run_warnings(req)]
            return replace(form, preview=plan.display, notes=plan.notes, warnings=tuple(warnings))
        check_start(who.caller(), config.access)
        job = await sup.submit(req)
    except JobError as exc:
        return replace(form, error=form_error(exc, example))
    return replace(form, created=job.id)
