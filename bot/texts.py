"""How jobs, GPUs and notices read as text (Slack mrkdwn-friendly); pure functions, shared by every front end.

Each function takes the front end's `Format` (bot/mrkdwn.py): every fact not made by trainbot goes through it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from bot.mrkdwn import PLAIN, Format
from bot.settings import refusal
from runner.errors import (
    AlreadyExporting,
    AlreadySucceeded,
    CannotLaunch,
    ExportRunning,
    GpuMissing,
    GpusPerNodeMissing,
    NoCheckpoint,
    NotAllowed,
    NotEnded,
    NothingToStop,
    NotRestartable,
    OutputInUse,
)
from runner.gpus import Gpu, GpuSnapshot
from runner.job_request import IdempotencyKeyReused, InvalidField
from runner.leases import GpusBusy
from runner.paths import OutsideRoot
from storage.errors import JobNotFound, StaleState, StillActive
from storage.jobs import Count
from storage.models import Event, Job, JobState, Purpose

STATE_ICONS = {
    JobState.CREATED: "🆕", JobState.QUEUED: "⏳", JobState.STARTING: "🚀", JobState.RUNNING: "🏃",
    JobState.STOPPING: "✋", JobState.SUCCEEDED: "✅", JobState.FAILED: "❌", JobState.STOPPED: "⏹️",
}


# a failure's class (runner/failures.py FailureClass, stored as the job's error_class) in words
CAUSES = {
    "cuda_oom": "out of GPU memory", "host_oom_killed": "out of memory on the host (killed)",
    "hub_unreachable": "the model hub could not be reached", "dataset_not_found": "a dataset was not found",
    "bad_argument": "swift refused an argument", "output_exists": "the export's folder already exists",
    "disk_full": "the disk is full", "permission_denied": "permission denied", "distributed": "distributed training "
    "broke down", "interrupted": "interrupted", "scheduler": "the scheduler ended it", "unknown": "an error",
    "launch": "it could not start",
}


def cause(error_class: str | None) -> str:
    """Why a job failed, in a few words, from its stored class."""
    return CAUSES.get(error_class or "unknown", "an error")


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
        return {JobState.CREATED: f"not started: {fmt.code('start ' + job.id)} starts it",
                JobState.QUEUED: f"waiting: {fmt.text(job.queue_reason or 'in line')}",
                JobState.RUNNING: "loading the model and data…"}.get(job.state, "")
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
    line = (f"{STATE_ICONS[job.state]} {job_ref(job.id, job.name, fmt)} {job.kind.upper()} {job.state} · "
            f"{gpus_label(job.gpus)}{owner}")
    extra = progress_line(job, fmt) if job.state.is_active else _ended(job, fmt)
    return line + (f" · {extra}" if extra else "")


def _ended(job: Job, fmt: Format) -> str:
    if job.state is JobState.FAILED:
        return f"{cause(job.error_class)}: {fmt.text(job.error_message or 'failed')}"
    if job.state is JobState.SUCCEEDED and job.progress.train_loss is not None:
        return f"final loss {job.progress.train_loss:.4g}"
    return ""


def job_status(job: Job, fmt: Format = PLAIN) -> str:
    name = f"{fmt.text(job.name)} · " if job.name else ""
    lines = [f"{name}{fmt.bold('Job ' + fmt.code(job.id))} ({job.kind.upper()}) is {fmt.bold(str(job.state))}"]
    if (pl := progress_line(job, fmt)):
        lines.append(pl)
    lines.append(f"{gpus_label(job.gpus)} · output {fmt.code(job.output_dir)}")
    if job.state is JobState.FAILED:
        hint = f"\nhint: {fmt.text(job.error_hint)}" if job.error_hint else ""
        lines.append(f"cause: {cause(job.error_class)}: {fmt.text(job.error_message)}{hint}")
    if job.stopped_by and job.state is JobState.STOPPED:
        lines.append(f"stopped by {who(job.stopped_by, fmt)}")
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
    when = [("created", job.created_at), ("started", job.started_at), ("finished", job.finished_at)]
    run = job.train_run
    lines = [job_status(job, fmt), "",
             " · ".join(f"{k} {_clock(v)}" for k, v in when if v),
             *([facts] if (facts := facts_line(job)) else []),
             f"log {fmt.code(run.log_path)}" + (f" · run dir {fmt.code(job.run_dir)}" if job.run_dir else ""),
             f"backend {job.backend}" + (f" on {fmt.text(job.host)}" if job.host else "")
             + (f" (pid {run.pid})" if run.pid else "") + (f" (Slurm job {run.backend_job_id})"
                                                          if run.backend_job_id else ""),
             "command:", fmt.block(_command(job))]
    if events:
        lines.append("events:")
        lines += [f"• {_clock(e.at)} {fmt.text(e.message)}" for e in events[-15:]]
    return "\n".join(lines)


def _command(job: Job) -> str:
    from runner.command import SwiftCommand  # display only: the runner's own quoting

    return SwiftCommand(job.argv, job.env).display()


def error_text(exc: Exception, fmt: Format = PLAIN) -> str:
    """The words for a typed refusal from runner/ or storage/ (anything else: its own message, as a fact)."""
    match exc:
        case JobNotFound(job_id=job_id):
            return f"there is no job {fmt.code(job_id)}; {fmt.code('list')} shows the jobs there are"
        case StaleState(job_id=job_id, state=state, wanted=wanted):
            return f"job {fmt.text(job_id)} is {state}, not {'/'.join(wanted)}"
        case OutputInUse(output_dir=output_dir, job_id=job_id, writer=writer, wanted=wanted):
            return output_in_use(str(output_dir), job_id, fmt, writer=writer, wanted=wanted)
        case OutsideRoot():
            return outside_root(exc, fmt)
        case AlreadySucceeded(job_id=job_id, kind=kind):
            return (f"job {fmt.code(job_id)} already succeeded; start a new job with "
                    f"{fmt.code(f'/train {kind} ...')}")
        case NotRestartable(job_id=job_id, state=state):
            return f"job {fmt.code(job_id)} is {state}: only a stopped or failed job can be started again"
        case NothingToStop(job_id=job_id, state=state) if state == JobState.CREATED:
            return f"job {fmt.code(job_id)} was never started; nothing to stop (delete it, or start it)"
        case NothingToStop(job_id=job_id, state=state):
            return f"job {fmt.code(job_id)} has already ended ({state}); nothing to stop"
        case NotEnded(job_id=job_id, state=state) if state == JobState.CREATED:
            return f"job {fmt.code(job_id)} was never started: start it, and export it once it has ended"
        case NotEnded(job_id=job_id, state=state):
            return f"job {fmt.code(job_id)} is {state}: export it once it has ended (or stop it first)"
        case ExportRunning(job_id=job_id):
            return f"job {fmt.code(job_id)} is being exported; delete it when the export has ended"
        case AlreadyExporting(job_id=job_id):
            return f"job {fmt.code(job_id)} is already being exported"
        case NoCheckpoint(job_id=job_id):
            return f"job {fmt.code(job_id)} has no checkpoint to export yet"
        case StillActive(job_id=job_id, state=state) if state == JobState.STOPPING:
            return f"job {fmt.code(job_id)} is stopping: delete it once it has stopped"
        case StillActive(job_id=job_id, state=state):
            return (f"job {fmt.code(job_id)} is {state}: stop it first ({fmt.code(f'/train stop {job_id}')}), then "
                    "delete it (a created or queued job can be deleted at once)")
        case GpusPerNodeMissing(suggest=suggest):
            return f"{fmt.text(exc)} ({fmt.code('gpus')} lists them). Try {_gpu_choice(suggest, fmt)}."
        case GpuMissing(suggest=suggest):
            return f"{fmt.text(exc)}. Try {_gpu_choice(suggest, fmt)}."
        case CannotLaunch(reason=reason):
            return fmt.text(reason)
        case InvalidField() | OutsideRoot():
            return fmt.text(refusal(exc))
        case IdempotencyKeyReused(job_id=job_id):
            return f"that idempotency key already made job {fmt.code(job_id)}, from another request"
        case NotAllowed(job_id=None):
            return (f"you may not start jobs: ask an admin to add you (or this channel) to {fmt.code('access.users')}"
                    f" / {fmt.code('access.groups')} / {fmt.code('access.channels')} in trainbot's config")
        case NotAllowed(action=action, job_id=str(job_id), owner=owner):
            return f"only {who(owner, fmt)} (who started job {fmt.code(job_id)}) or an admin may {action} it"
    return fmt.text(exc)


def warning_text(warning: GpuMissing | GpusBusy, fmt: Format = PLAIN) -> str:
    """A dry run's warning: what would keep the job from starting at once."""
    if isinstance(warning, GpusBusy):
        return f"{fmt.text(warning)}: the job would wait in the queue"
    return error_text(warning, fmt)


def _gpu_choice(gpus: Sequence[str], fmt: Format) -> str:
    return fmt.code(f"gpu={','.join(gpus) or 'cpu'}")


def output_in_use(output_dir: str, job_id: str, fmt: Format = PLAIN, *, writer: Purpose = "train",
                  wanted: Purpose = "train") -> str:
    c = fmt.code
    if wanted == "export" and writer == "export":
        return f"Job {c(job_id)}'s export writes to {c(output_dir)}: export once it has ended."
    if wanted == "export":
        return (f"Job {c(job_id)} is still active and writes to {c(output_dir)}, where this export would write its "
                f"merged model: export once {c(job_id)} has ended (or stop it: {c(f'/train stop {job_id}')}).")
    if writer == "export":
        return (f"Job {c(job_id)}'s export is writing to {c(output_dir)}: a training in that folder would mix with "
                f"the merged model. Start it once the export has ended, or give another {c('out=')}.")
    return (f"Job {c(job_id)} is still active and writes to {c(output_dir)}: two jobs in one folder would mix "
            f"their checkpoints. Give another {c('out=')} (e.g. {c(output_dir.rstrip('/') + '-2')}), or stop "
            f"{c(job_id)} first ({c(f'/train stop {job_id}')}).")


_ROOTS = {"output_dir": "the output folder", "export_dir": "the output folder", "log": "the log folder",
          "model": "the folders allowed for models", "dataset": "the folders allowed for datasets"}
_WHAT = {"output_dir": "the folder", "export_dir": "the export's folder", "log": "the log file",
         "model": "the model path", "dataset": "the dataset path"}


def outside_root(exc: OutsideRoot, fmt: Format = PLAIN) -> str:
    """A user's path that really leads (symbolic links followed) outside the folders it must stay in."""
    c = fmt.code
    head = f"{_WHAT.get(exc.field, exc.field)} ({c(exc.field)}) {c(str(exc.path))} leads to {c(str(exc.resolved))}"
    if not exc.roots:
        return f"{head}, and no local one is allowed ({c(exc.root_key)} is empty): give a hub id, or ask an admin"
    roots = " or ".join(c(str(root)) for root in exc.roots)
    return (f"{head}, outside {_ROOTS.get(exc.field, 'its folders')} {roots} ({c(exc.root_key)}): give a path that "
            "stays inside it (a symbolic link on the way may lead out)")


def count_words(count: Count) -> str:
    """A count from the store (storage/jobs.py JobStore.count): `1,234`, or `more than 1,000`."""
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
    mem = (f"{gpu.memory_used_mib / 1024:.1f}/{gpu.memory_total_mib / 1024:.1f} GiB"
           if gpu.memory_used_mib is not None and gpu.memory_total_mib else "memory ?")
    util = f"{gpu.utilization_pct:.0f}%" if gpu.utilization_pct is not None else "util ?"
    label = "CPU" if gpu.index == "cpu" else f"GPU {gpu.index}"
    who_ = f"job {fmt.code(holder)}" if holder else ("busy: " + ", ".join(
        f"{fmt.text(p.user or '?')} pid {p.pid}" for p in gpu.processes) if gpu.processes else "free")
    return f"• {fmt.bold(label)} {fmt.text(gpu.name)} · {mem} · {util} · {who_}"


def who(user: str | None, fmt: Format = PLAIN) -> str:
    """A Slack user id (from Slack, not typed) as a live mention; anything else as text."""
    if not user:
        return "the console"
    return fmt.mention(user) if re.fullmatch(r"[UW][A-Z0-9]+", user) else fmt.text(user)


def backend_label(name: str) -> str:
    return "Slurm" if name == "slurm" else name


def start_reply(job: Job, fmt: Format = PLAIN) -> str:
    """Where a job just created stands, as its real state says (a scheduler may refuse it at once)."""
    match job.state:
        case JobState.QUEUED if job.train_run.backend_job_id:
            words = f"submitted to {backend_label(job.backend)} as job {fmt.text(job.train_run.backend_job_id)}"
            reason = job.queue_reason if job.queue_reason and job.queue_reason.startswith("Slurm:") else None
            return words + (f" ({fmt.text(reason)})" if reason else "")
        case JobState.QUEUED:
            return f"queued ({fmt.text(job.queue_reason)})"
        case JobState.CREATED:
            return f"created, not started ({fmt.code('/train start ' + job.id)} starts it)"
        case JobState.FAILED:
            return (f"could not start: {fmt.text(job.error_message)}"
                    + (f" ({fmt.text(job.error_hint)})" if job.error_hint else ""))
        case _:
            return str(job.state) if job.state.is_terminal else "started"


def _clock(at: float | None) -> str:
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at else "?"
