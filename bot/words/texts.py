"""How jobs, GPUs and notices read as text (Slack mrkdwn-friendly); pure functions, shared by every front end.

Each function takes the front end's `Format` (bot/words/format.py): every fact not made by trainbot goes through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from bot.compare import Comparison
from bot.words import failures as failure_words
from bot.words.actors import by_words as by_words
from bot.words.actors import who as who
from bot.words.format import PLAIN, Format
from bot.words.waiting import backend_label as backend_label
from bot.words.waiting import waiting_words
from runner.gpus import Gpu, GpuSnapshot
from storage.listing import Count
from storage.models import Event, Job, JobState
from storage.waiting import SlurmPending, SlurmSilent

STATE_ICONS = {
    JobState.CREATED: "🆕",
    JobState.QUEUED: "⏳",
    JobState.STARTING: "🚀",
    JobState.RUNNING: "🏃",
    JobState.STOPPING: "✋",
    JobState.SUCCEEDED: "✅",
    JobState.FAILED: "❌",
    JobState.STOPPED: "⏹️",
}


def job_ref(job_id: str, name: str | None, fmt: Format = PLAIN) -> str:
    """A job as people know it: its id, and its name beside it in quotes (the id alone where it has none)."""
    return f"{fmt.code(job_id)} “{fmt.text(name)}”" if name else fmt.code(job_id)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def progress_bar(percent: float | None, width: int = 20) -> str:
    filled = 0 if percent is None else round(width * min(max(percent, 0.0), 100.0) / 100)
    return "█" * filled + "░" * (width - filled)


def progress_line(job: Job, fmt: Format = PLAIN) -> str:
    """`[██████░░░░] 30% step 15/50 · loss 6.87 · ETA 4s` (what a card and the console show)."""
    p = job.progress
    if p.step is None:
        return {
            JobState.CREATED: f"not started: {fmt.code('start ' + job.id)} starts it",
            JobState.QUEUED: f"waiting: {waiting_words(job.queue_reason, fmt) if job.queue_reason else 'in line'}",
            JobState.RUNNING: "loading the model and data…",
        }.get(job.state, "")
    parts = [f"[{progress_bar(p.percent)}] {p.percent or 0:.0f}% step {p.step}/{p.max_steps or '?'}"]
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4g}")
    if p.eval_loss is not None:
        parts.append(f"eval loss {p.eval_loss:.4g}")
    if job.state is JobState.RUNNING and p.remaining_s is not None:
        parts.append(f"ETA {duration(p.remaining_s)}")
    if p.gpu_mem_gib is not None:
        parts.append(f"mem {p.gpu_mem_gib:.1f} GiB")
    return " · ".join(parts)


def gpus_label(gpus: Sequence[str]) -> str:
    return "CPU" if tuple(gpus) == ("cpu",) else "GPU " + ",".join(gpus)


def job_line(job: Job, fmt: Format = PLAIN) -> str:
    owner = f" · {fmt.mention(job.user_id)}" if job.user_id else ""
    line = (
        f"{STATE_ICONS[job.state]} {job_ref(job.id, job.name, fmt)} {job.kind.upper()} {job.state} · "
        f"{gpus_label(job.gpus)}{owner}"
    )
    extra = progress_line(job, fmt) if job.state.is_active else _ended(job, fmt)
    return line + (f" · {extra}" if extra else "")


def _ended(job: Job, fmt: Format) -> str:
    if job.state is JobState.FAILED:
        return failure_words.summary(job.failure, fmt) if job.failure else "failed"
    if job.state is JobState.SUCCEEDED and job.progress.train_loss is not None:
        return f"final loss {job.progress.train_loss:.4g}"
    return ""


def job_status(job: Job, fmt: Format = PLAIN) -> str:
    name = f"{fmt.text(job.name)} · " if job.name else ""
    lines = [f"{name}{fmt.bold('Job ' + fmt.code(job.id))} ({job.kind.upper()}) is {fmt.bold(str(job.state))}"]
    if pl := progress_line(job, fmt):
        lines.append(pl)
    lines.append(f"{gpus_label(job.gpus)} · output {fmt.code(job.output_dir)}")
    if job.state is JobState.FAILED and job.failure:
        hint = failure_words.hint(job.failure, fmt)
        lines.append(f"cause: {failure_words.summary(job.failure, fmt)}" + (f"\nhint: {hint}" if hint else ""))
    if job.stopped_by and job.state is JobState.STOPPED:
        lines.append(f"stopped by {by_words(job.stopped_by, fmt)}")
    if job.progress.last_checkpoint:
        lines.append(f"last checkpoint {fmt.code(job.progress.last_checkpoint)}")
    if job.export_state != "none":
        lines.append(f"export: {job.export_state}" + (f" → {fmt.code(job.export_dir)}" if job.export_dir else ""))
    if job.note:
        lines.append(f"note: {fmt.text(job.note)}")
    return "\n".join(lines)


def facts_line(job: Job) -> str:
    """Start, end, duration, GPU-hours and the final losses, those it has (`started … · 2h 10m · 4.3 GPU-h`)."""
    p = job.progress
    parts = [f"started {_clock(job.started_at)}"] if job.started_at else []
    parts += [f"ended {_clock(job.finished_at)}"] if job.finished_at else []
    parts += [f"took {duration(job.duration_s)}"] if job.duration_s is not None else []
    parts += [f"{job.gpu_hours:.2f} GPU-hours"] if job.gpu_hours else []
    parts += [f"last train loss {p.loss:.4g}"] if p.loss is not None else []
    parts += [f"eval loss {p.eval_loss:.4g}"] if p.eval_loss is not None else []
    return " · ".join(parts)


def job_details(job: Job, events: Sequence[Event], fmt: Format = PLAIN) -> str:
    from bot.words.events import event_text  # here, not above: it words events with this module's helpers

    when = [("created", job.created_at), ("started", job.started_at), ("finished", job.finished_at)]
    run = job.train_run
    lines = [
        job_status(job, fmt),
        "",
        " · ".join(f"{k} {_clock(v)}" for k, v in when if v),
        *([facts] if (facts := facts_line(job)) else []),
        f"log {fmt.code(run.log_path)}" + (f" · run dir {fmt.code(job.run_dir)}" if job.run_dir else ""),
        f"backend {job.backend}"
        + (f" on {fmt.text(job.host)}" if job.host else "")
        + (f" (pid {run.pid})" if run.pid else "")
        + (f" (Slurm job {run.backend_job_id})" if run.backend_job_id else ""),
        "command:",
        fmt.block(_command(job)),
    ]
    if events:
        lines.append("events:")
        lines += [f"• {_clock(e.at)} {event_text(e.facts, fmt)}" for e in events[-15:]]
    return "\n".join(lines)


def _command(job: Job) -> str:
    from runner.command import SwiftCommand  # display only: the runner's own quoting

    return SwiftCommand(job.argv, job.env).display()


def count_words(count: Count) -> str:
    """A count from the store (storage/listing.py JobLists.count): `1,234`, or `more than 1,000`."""
    return f"{count.n:,}" if count.exact else f"more than {count.n - 1:,}"


def job_list(jobs: Sequence[Job], title: str, fmt: Format = PLAIN) -> str:
    if not jobs:
        return f"{title}: none."
    return f"{fmt.bold(title)} ({len(jobs)}):\n" + "\n".join(job_line(j, fmt) for j in jobs)


def gpu_table(snapshot: GpuSnapshot, holders: dict[str, str], fmt: Format = PLAIN) -> str:
    if not snapshot.devices():
        return f"No GPUs here (no NVIDIA driver and no inventory configured); {fmt.code('gpu=cpu')} runs on the CPU."
    return "\n".join(gpu_line(g, holders.get(g.index), fmt) for g in snapshot.devices())


def gpu_line(gpu: Gpu, holder: str | None, fmt: Format = PLAIN) -> str:
    mem = (
        f"{gpu.memory_used_mib / 1024:.1f}/{gpu.memory_total_mib / 1024:.1f} GiB"
        if gpu.memory_used_mib is not None and gpu.memory_total_mib
        else "memory ?"
    )
    util = f"{gpu.utilization_pct:.0f}%" if gpu.utilization_pct is not None else "util ?"
    label = "CPU" if gpu.index == "cpu" else f"GPU {gpu.index}"
    who_ = (
        f"job {fmt.code(holder)}"
        if holder
        else (
            "busy: " + ", ".join(f"{fmt.text(p.user or '?')} pid {p.pid}" for p in gpu.processes)
            if gpu.processes
            else "free"
        )
    )
    return f"• {fmt.bold(label)} {fmt.text(gpu.name)} · {mem} · {util} · {who_}"


def start_reply(job: Job, fmt: Format = PLAIN) -> str:
    """Where a job just created stands, as its real state says (a scheduler may refuse it at once)."""
    match job.state:
        case JobState.QUEUED if job.train_run.backend_job_id:
            words = f"submitted to {backend_label(job.backend, fmt)} as job {fmt.text(job.train_run.backend_job_id)}"
            said = job.queue_reason if isinstance(job.queue_reason, SlurmPending | SlurmSilent) else None
            return words + (f" ({waiting_words(said, fmt)})" if said else "")
        case JobState.QUEUED:
            if job.queue_reason:
                return f"queued ({waiting_words(job.queue_reason, fmt)})"
            return "queued"  # the loop takes it from the line (or says why it waits) right after this answer
        case JobState.CREATED:
            return f"created, not started ({fmt.code('/train start ' + job.id)} starts it)"
        case JobState.FAILED if job.failure:
            hint = failure_words.hint(job.failure, fmt)
            return f"could not start: {failure_words.summary(job.failure, fmt)}" + (f" ({hint})" if hint else "")
        case _:
            return str(job.state) if job.state.is_terminal else "started"


def number(value: float | None) -> str:
    """A metric as people read it: 4 significant digits, "" for none."""
    return "" if value is None else f"{value:.4g}"


def comparison_rows(cmp: Comparison) -> list[tuple[str, list[str]]]:
    """What differs between the compared runs, a row a fact: how each run went, then each setting that is not
    the same in all."""
    return comparison_facts(cmp) + comparison_settings(cmp)


def comparison_settings(cmp: Comparison) -> list[tuple[str, list[str]]]:
    """Each setting that is not the same in all runs: values as they ran, "—" where one was not set."""
    return [(d.name, [v if v is not None else "—" for v in d.values]) for d in cmp.differences]


def comparison_facts(cmp: Comparison) -> list[tuple[str, list[str]]]:
    """How each compared run went: state, steps, time, losses."""
    runs = cmp.runs
    return [
        ("state", [str(r.job.state) for r in runs]),
        ("steps", [r.steps or "—" for r in runs]),
        ("ran for", [duration(r.duration_s) if r.duration_s is not None else "—" for r in runs]),
        ("final loss", [number(r.final_loss) or "—" for r in runs]),
        ("final eval loss", [number(r.final_eval_loss) or "—" for r in runs]),
        ("best eval loss", [number(r.best_eval_loss) or "—" for r in runs]),
    ]


def comparison_text(cmp: Comparison, fmt: Format = PLAIN, *, cell: int = 28) -> str:
    """A comparison as a table in a code block (one column a job), for Slack and the console."""

    def cut(text: str) -> str:
        return text if len(text) <= cell else text[: cell - 1] + "…"

    rows = [("", list(cmp.ids)), *[(name, [cut(v) for v in values]) for name, values in comparison_rows(cmp)]]
    widths = [max(len(cut(name)) for name, _ in rows)] + [
        max(len(values[i]) for _, values in rows) for i in range(len(cmp.runs))
    ]
    table = "\n".join(
        "  ".join(text.ljust(w) for text, w in zip([cut(name), *values], widths, strict=True)).rstrip()
        for name, values in rows
    )
    same = (
        f"{cmp.same} other settings are" if cmp.same != 1 else "1 other setting is"
    ) + f" the same in all {len(cmp.runs)}."
    ids = ", ".join(fmt.code(i) for i in cmp.ids)
    return f"{fmt.bold('Comparing ' + str(len(cmp.runs)) + ' jobs')}: {ids}\n{fmt.block(table)}\n{same}"


def _clock(at: float | None) -> str:
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at else "?"
