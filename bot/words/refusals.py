"""The words for a typed refusal from runner/ or storage/ (a job not found, in the wrong state, GPUs that do not
exist, a folder in use or outside its root, access), each front end's through its `Format`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from bot.chat.commands import MAX_RUNS, MIN_RUNS
from bot.chat.settings import refusal
from bot.compare import WrongCount
from bot.words import failures as failure_words
from bot.words import tries
from bot.words.actors import who
from bot.words.failures import config_key
from bot.words.format import PLAIN, Format
from bot.words.waiting import waiting_words
from runner.errors import (
    AlreadyExporting,
    AlreadySucceeded,
    CannotLaunch,
    ExportRunning,
    GpuMissing,
    GpusPerNodeMissing,
    NoCheckpoint,
    NoGpus,
    NotAllowed,
    NotEnded,
    NothingToStop,
    NotRestartable,
    OutputInUse,
)
from runner.job_request import IdempotencyKeyReused, InvalidField
from runner.paths import OutsideRoot
from runner.try_errors import TryRefused
from storage.errors import JobNotFound, StaleState, StillActive
from storage.models import IllegalTransition, JobState, Purpose
from storage.waiting import GpusBusy


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
            return f"job {fmt.code(job_id)} already succeeded; start a new job with {fmt.code(f'/train {kind} ...')}"
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
            return (
                f"job {fmt.code(job_id)} is {state}: stop it first ({fmt.code(f'/train stop {job_id}')}), then "
                "delete it (a created or queued job can be deleted at once)"
            )
        case GpusPerNodeMissing(suggest=suggest):
            return f"{gpus_missing(exc, fmt)} ({fmt.code('gpus')} lists them). Try {_gpu_choice(suggest, fmt)}."
        case GpuMissing() as missing:
            return f"{gpus_missing(missing, fmt)}. Try {_gpu_choice(missing.suggest, fmt)}."
        case CannotLaunch(refusal=why):
            hint = failure_words.reason_hint(why, fmt)
            return failure_words.reason_summary(why, fmt) + (f" ({hint})" if hint else "")
        case IllegalTransition(old=old, new=new, export=True) if old == "exporting":
            return "an export of this job is already running"
        case IllegalTransition(old=old, new=new, export=export, allowed=allowed):
            what = "its export" if export else "the job"
            may = ", ".join(allowed) or "nothing"
            return f"{what} is {fmt.text(old)} and cannot become {fmt.text(new)} (from {fmt.text(old)}: {may})"
        case InvalidField() | OutsideRoot():
            return fmt.text(refusal(exc))
        case WrongCount(ids=ids):
            return (
                f"compare takes {MIN_RUNS} to {MAX_RUNS} different jobs, not {len(ids)}: e.g. "
                f"{fmt.code('/train compare k3x9q m4z8p')}"
            )
        case IdempotencyKeyReused(job_id=job_id):
            return f"that idempotency key already made job {fmt.code(job_id)}, from another request"
        case NotAllowed(job_id=None):
            return (
                f"you may not start jobs: ask an admin to add you (or this channel) to {fmt.code('access.users')}"
                f" / {fmt.code('access.groups')} / {fmt.code('access.channels')} in trainbot's config"
            )
        case NotAllowed(action="try", job_id=str(job_id), owner=owner):
            return (
                f"only {who(owner, fmt)} (who started job {fmt.code(job_id)}), an admin, or whom "
                f"{fmt.code('access.try_users')} / {fmt.code('access.try_channels')} allow may try its model"
            )
        case NotAllowed(action=action, job_id=str(job_id), owner=owner):
            return f"only {who(owner, fmt)} (who started job {fmt.code(job_id)}) or an admin may {action} it"
        case TryRefused():
            return tries.refusal_text(exc, fmt)
    return fmt.text(exc)


def warning_text(warning: GpuMissing | GpusBusy, fmt: Format = PLAIN) -> str:
    """A dry run's warning: what would keep the job from starting at once."""
    if isinstance(warning, GpusBusy):
        return f"{waiting_words(warning, fmt)}: the job would wait in the queue"
    return error_text(warning, fmt)


def gpus_missing(missing: GpuMissing, fmt: Format = PLAIN) -> str:
    """ "GPU 3 does not exist on this machine; it has GPUs 0 and 1 (2× NVIDIA H100)" (or Slurm's nodes, for
    GPUs a node)."""
    if isinstance(missing, GpusPerNodeMissing):
        nodes = f"at most {_count(missing.most, 'GPU')}" if missing.most else "no GPUs"
        return f"{_count(missing.wanted, 'GPU')} on one node asked for, but the Slurm cluster's nodes have {nodes} each"
    head = (
        f"GPU {fmt.text(missing.missing[0])} does not"
        if len(missing.missing) == 1
        else f"GPUs {_join(missing.missing, fmt)} do not"
    )
    have = missing.have
    if have:
        what = (f"GPU {fmt.text(have[0])}" if len(have) == 1 else f"GPUs {_join(have, fmt)}") + (
            f" ({fmt.text(missing.models)})" if missing.models else ""
        )
    else:
        what = f"no GPUs ({no_gpus_words(missing.why)})"
    return f"{head} exist on this machine; it has {what}"


def no_gpus_words(why: NoGpus | None) -> str:
    match why:
        case NoGpus.NONE_REPORTED:
            return "the NVIDIA driver reports none"
        case NoGpus.NONE_CONFIGURED:
            return "none configured"
        case NoGpus.NO_DRIVER | None:
            return "no NVIDIA driver and no GPU inventory configured"
        case NoGpus.NOT_PROBED:
            return "not probed yet"
        case _:
            assert_never(why)


def _join(items: Sequence[str], fmt: Format) -> str:
    texts = [fmt.text(i) for i in items]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} and {texts[-1]}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("s" if n != 1 else "")


def _gpu_choice(gpus: Sequence[str], fmt: Format) -> str:
    return fmt.code(f"gpu={','.join(gpus) or 'cpu'}")


def output_in_use(
    output_dir: str, job_id: str, fmt: Format = PLAIN, *, writer: Purpose = "train", wanted: Purpose = "train"
) -> str:
    c = fmt.code
    if wanted == "export" and writer == "export":
        return f"Job {c(job_id)}'s export writes to {c(output_dir)}: export once it has ended."
    if wanted == "export":
        return (
            f"Job {c(job_id)} is still active and writes to {c(output_dir)}, where this export would write its "
            f"merged model: export once {c(job_id)} has ended (or stop it: {c(f'/train stop {job_id}')})."
        )
    if writer == "export":
        return (
            f"Job {c(job_id)}'s export is writing to {c(output_dir)}: a training in that folder would mix with "
            f"the merged model. Start it once the export has ended, or give another {c('out=')}."
        )
    return (
        f"Job {c(job_id)} is still active and writes to {c(output_dir)}: two jobs in one folder would mix "
        f"their checkpoints. Give another {c('out=')} (e.g. {c(output_dir.rstrip('/') + '-2')}), or stop "
        f"{c(job_id)} first ({c(f'/train stop {job_id}')})."
    )


_ROOTS = {
    "output_dir": "the output folder",
    "export_dir": "the output folder",
    "log": "the log folder",
    "model": "the folders allowed for models",
    "dataset": "the folders allowed for datasets",
}
_WHAT = {
    "output_dir": "the folder",
    "export_dir": "the export's folder",
    "log": "the log file",
    "model": "the model path",
    "dataset": "the dataset path",
}


def outside_root(exc: OutsideRoot, fmt: Format = PLAIN) -> str:
    """A user's path that really leads (symbolic links followed) outside the folders it must stay in."""
    c = fmt.code
    head = f"{_WHAT.get(exc.field, exc.field)} ({c(exc.field)}) {c(str(exc.path))} leads to {c(str(exc.resolved))}"
    key = c(config_key(exc.root_key))
    if not exc.roots:
        return f"{head}, and no local one is allowed ({key} is empty): give a hub id, or ask an admin"
    roots = " or ".join(c(str(root)) for root in exc.roots)
    return (
        f"{head}, outside {_ROOTS.get(exc.field, 'its folders')} {roots} ({key}): give a path that "
        "stays inside it (a symbolic link on the way may lead out)"
    )
