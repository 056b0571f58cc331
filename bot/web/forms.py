"""The New job forms: the fields become the words a person would type to `/train`, so the grammar checks them
with its own words (as the HTTP API does); "Preview" shows the exact command (a dry run), "Start" submits."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.api.auth import Principal
from bot.api.context import ApiContext
from bot.grammar import CreateJob, Rejection, out_example, parse
from bot.help_text import VLM_KEYS
from bot.profile_words import note_words
from bot.texts import error_text, warning_text
from runner import leases
from runner.access import check_start
from runner.supervisor import JobRequest
from storage.errors import JobError


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
    vlm_keys: dict[str, str] = field(default_factory=lambda: dict(VLM_KEYS))
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

def _words(kind: str, gpus: list[str], values: dict[str, str]) -> list[str]:
    words = [kind, "gpu=" + ",".join(gpus), "out=" + values.get("out", "")]
    if values.get("profile"):
        words.append("profile=" + values["profile"])
    if kind == "vlm":
        words += [f"{key}={values[key].strip()}" for key in VLM_KEYS if values.get(key, "").strip()]
    return words

async def submit(ctx: ApiContext, who: Principal, fields: dict[str, str]) -> JobForm:
    kind = fields.get("kind") if fields.get("kind") in ("llm", "vlm") else "llm"
    gpus = [k.removeprefix("gpu_") for k in fields if re.fullmatch(r"gpu_[0-9a-z]{1,8}", k)]
    values = {k: v for k, v in fields.items() if k in ("out", "profile", *VLM_KEYS)}
    form = JobForm(str(kind), await _choices(ctx), values, tuple(gpus))
    if not gpus:
        return replace(form, error="Pick at least one GPU (or the CPU) to train on.")
    config = ctx.config
    command = parse(shlex.join(_words(str(kind), gpus, values)), output_root=config.output_root,
                    base_dir=config.base_dir)
    if isinstance(command, Rejection):
        return replace(form, error=command.message)
    assert isinstance(command, CreateJob)
    req = JobRequest(command.kind, command.gpus, Path(command.output_dir), command.overrides, who.user_id,
                     config.http.notify_channel, command.profile)
    sup = ctx.runtime.supervisor
    if fields.get("go") != "start":
        plan = sup.plan(req)
        return replace(form, preview=plan.display, notes=tuple(note_words(n) for n in plan.notes),
                       warnings=tuple(warning_text(w) for w in await sup.dry_run_warnings(req)))
    try:
        check_start(who.caller(), config.access)
        job = await sup.submit(req)
    except JobError as exc:
        return replace(form, error=error_text(exc))
    return replace(form, created=job.id)

