"""A job's side lifecycles: its export's and its try session's, each a state on the job's row beside the job's own
(runner/lifecycle.py), with named transitions in the same shape: a `Change` (the states it starts from, the row's
fields, its typed event and notice), applied by lifecycle.apply in one transaction.

    export: none | exported | export_failed --export_begun--> exporting --exported / export_failed-->
    try:    none --try_waiting--> waiting --try_started--> loading --try_loaded--> ready --try_ended--> none
            none --try_on_cpu--> loading (the CPU is not leased: nothing to wait for)

An export runs only from an ended job, one at a time. A try session holds its GPU (its lease: try_gpus, try_run)
from `loading` until it ends, and waits in the queue's line (try_seq) before; runner/trying.py keeps one session per
job at a time, so its transitions expect no state.
"""

from __future__ import annotations

import dataclasses

from runner.failures import Failure
from runner.lifecycle import ENDED, Change, Levers
from storage import events as ev
from storage import notices as nt
from storage.actors import actor
from storage.failure_facts import JobFailure, LaunchRefusal
from storage.models import ExportState, Job, Run, TryState

EXPORTABLE = frozenset({ExportState.NONE, ExportState.EXPORTED, ExportState.EXPORT_FAILED})
ONLY_EXPORTING = frozenset({ExportState.EXPORTING})
CPU = ("cpu",)


# ---- its export ----------------------------------------------------------------------------------------------------


def export_begun(export_dir: str, gpus: tuple[str, ...], run: Run) -> Change:
    """An ended job's export is marked (its launch token recorded) before its process is handed to the backend."""
    return Change(
        expect=ENDED,
        expect_export=EXPORTABLE,
        export_state=ExportState.EXPORTING,
        fields={"export_dir": export_dir, "export_gpus": gpus, "export_run": run},
    )


def export_started(job: Job, run: Run, by: str | None, command: str, *, again: bool = False) -> Change:
    """Its process was handed over (`again`: by a restarted bot, the first hand-over having started nothing)."""
    checkpoint, gpus = job.progress.last_checkpoint, job.export_gpus
    return Change(
        expect_export=ONLY_EXPORTING,
        fields={"export_run": run},
        event=ev.ExportStarted(by=None if again else actor(by), gpus=gpus, command=command, again=again),
        notice=nt.ExportStarted(by=by, checkpoint=checkpoint, command=command, gpus=gpus),
    )


def export_handed_again(run: Run) -> Change:
    """An export whose first hand-over started nothing is handed over again: its new launch (token) recorded."""
    return Change(expect_export=ONLY_EXPORTING, fields={"export_run": run})


def export_found(run: Run) -> Change:
    """A restarted bot found the export its launch had started."""
    return Change(expect_export=ONLY_EXPORTING, fields={"export_run": run}, event=ev.ExportFound())


def exported(job: Job, export_dir: str, levers: Levers = ()) -> Change:
    return Change(
        expect_export=ONLY_EXPORTING,
        export_state=ExportState.EXPORTED,
        fields={"export_run": _ended_run(job)},
        event=ev.Exported(export_dir=export_dir),
        notice=nt.ExportSucceeded(export_dir=export_dir, not_applied=levers),
    )


def export_failed(job: Job, failure: Failure, levers: Levers = ()) -> Change:
    return Change(
        expect_export=ONLY_EXPORTING,
        export_state=ExportState.EXPORT_FAILED,
        fields={"export_run": _ended_run(job)},
        event=ev.ExportFailed(failure=failure.facts),
        notice=nt.ExportFailed(failure=failure.facts, tail=tuple(failure.tail), not_applied=levers),
    )


def export_launch_failed(refusal: LaunchRefusal, *, tell: bool) -> Change:
    """The export's process could not be started at all; `tell`: with a notice (no one asked just now, so no
    answer says it: a restarted bot's second hand-over)."""
    failed = JobFailure(refusal)
    return Change(
        expect_export=ONLY_EXPORTING,
        export_state=ExportState.EXPORT_FAILED,
        event=ev.ExportFailed(failure=failed, at_start=True),
        notice=nt.ExportFailed(failure=failed) if tell else None,
    )


def _ended_run(job: Job) -> Run:
    """No process of it left to signal."""
    return dataclasses.replace(job.export_run, pid=None)


# ---- a try session ---------------------------------------------------------------------------------------------


def try_waiting(gpus: tuple[str, ...], seq: float, run: Run) -> Change:
    """A try session joins the queue's line for `gpus` at place `seq` (between the queued jobs' places)."""
    return Change(fields={"try_state": TryState.WAITING, "try_gpus": gpus, "try_seq": seq, "try_run": run})


def try_on_cpu(run: Run) -> Change:
    """A try session on the CPU: no GPU to wait for, it loads at once (its run recorded, to be found again)."""
    return Change(fields={"try_state": TryState.LOADING, "try_gpus": CPU, "try_seq": None, "try_run": run})


def try_started(gpus: tuple[str, ...]) -> Change:
    """Its turn in line came: it holds its GPU and loads the model."""
    return Change(fields={"try_state": TryState.LOADING}, event=ev.TrySessionStarted(gpus=gpus))


def try_process(run: Run) -> Change:
    """Its process started (pid and start time: a restarted bot finds it, and ends it)."""
    return Change(fields={"try_run": run})


def try_loaded(load_s: float, warm: bool) -> Change:
    """The model is loaded (`warm`: in the process kept warm), ready for questions."""
    return Change(fields={"try_state": TryState.READY}, event=ev.TrySessionLoaded(load_s=round(load_s, 1), warm=warm))


def try_ended(job: Job, why: ev.TryEnd | None) -> Change:
    """Its lease and process record go (the GPU is free for the next in line); with an event where it ended for a
    reason (None: it only left the line, or never started)."""
    return Change(
        fields={
            "try_state": TryState.NONE,
            "try_gpus": (),
            "try_seq": None,
            "try_run": Run(log_path=job.try_run.log_path),
        },
        event=ev.TrySessionEnded(why=why) if why is not None else None,
    )
