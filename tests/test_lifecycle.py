"""The job's one lifecycle (runner/lifecycle.py) and what it allows (runner/actions.py), on a real store and runtime:
the state machine, a restart that clears what the last run left, the actions every view shows, and requests that
answer at once and wake the loop."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from bot.chat.help_text import TOPICS
from bot.http.web.pages import ACTIONS
from bot.slack import views
from runner import actions, lifecycle
from runner.access import Caller
from runner.actions import Action, allowed_actions
from runner.config import AccessConfig
from runner.errors import AlreadySucceeded, NothingToStop, NotRestartable
from runner.failures import Failure
from runner.lifecycle import apply
from runner.progress import Milestone, MilestoneKind
from runner.supervisor import JobRequest
from storage.actors import User
from storage.errors import StaleState
from storage.events import Failed, Restarted
from storage.failure_facts import CudaOom, JobFailure
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Kind, Progress, Run
from tests.conftest import OpenRuntime
from tests.slack_env import fake_config
from tests.waiting import wait_for_state, wait_until

S = JobState


def job(state: JobState = S.QUEUED, **kw: object) -> Job:
    return Job(
        id="j1", kind=Kind.LLM, state=state, output_dir="/o", gpus=("0",), argv=("swift", "sft"), user_id="UOWNER", **kw
    )  # type: ignore[arg-type]


def test_the_state_machine_has_one_way_back_into_the_line() -> None:
    machine = lifecycle.machine()
    assert machine[S.SUCCEEDED] == frozenset()  # a succeeded job is exported, not trained again
    assert machine[S.FAILED] == machine[S.STOPPED] == {S.QUEUED}  # restart
    assert machine[S.CREATED] == {S.QUEUED}
    assert machine[S.RUNNING] == {S.STOPPING, S.SUCCEEDED, S.FAILED, S.STOPPED}
    reached = {S.CREATED}
    for _ in JobState:
        reached |= {t for s in reached for t in machine[s]}
    assert reached == set(JobState)  # every state can be reached, from a job created on hold


async def test_restart_clears_what_the_last_run_left_and_keeps_its_log(store: JobStore) -> None:
    made = await store.create(job(train_run=Run(log_path="/logs/j.log")))
    made = await apply(store, made.id, lifecycle.launch(Run(log_path="/logs/j.log", launch_token="t"), scheduled=False))
    made = await apply(store, made.id, lifecycle.launched(made, Run(pid=4242, log_path="/logs/j.log"), "here"))
    made = await apply(store, made.id, lifecycle.running(made, 1.0, "swift sft"))
    made = await apply(store, made.id, lifecycle.stop_requested("UOWNER", 2.0, 5.0, 5.0))
    assert (made.stop_term_at, made.stop_kill_at) == (7.0, 12.0)
    saved = Milestone(MilestoneKind.CHECKPOINT, 3, {"path": "/o/v0/checkpoint-3"})
    await apply(store, made.id, lifecycle.milestone(saved))  # told while it stops
    failure = Failure(CudaOom(), "torch.OutOfMemoryError: CUDA out of memory")
    progress = Progress(step=3, max_steps=10, last_checkpoint="/o/v0/checkpoint-3")
    ended = await apply(store, made.id, lifecycle.fail(made, failure, progress, 1, 3.0))
    with pytest.raises(StaleState):  # not after its end (a second bot on the database that saw it late)
        await apply(store, made.id, lifecycle.milestone(saved))
    assert [type(e.facts).__name__ for e in await store.events(made.id)][-2:] == ["CheckpointSaved", "Failed"]
    assert ended.state is S.FAILED and ended.failure == JobFailure(CudaOom()) and ended.exit_code == 1
    again = await apply(store, made.id, lifecycle.restart(ended, "UOWNER", ("swift", "sft", "--resume"), {}, "cmd"))
    assert again.state is S.QUEUED and again.argv == ("swift", "sft", "--resume")
    left = {
        k: getattr(again, k)
        for k in (
            "failure",
            "exit_code",
            "stopped_by",
            "queue_reason",
            "finished_at",
            "run_dir",
            "stop_term_at",
            "stop_kill_at",
            "stop_interrupted_at",
        )
    }
    assert set(left.values()) == {None}, left
    assert again.train_run == Run(log_path="/logs/j.log")  # a new run, appending to the same log
    assert again.progress.last_checkpoint == "/o/v0/checkpoint-3"  # what it resumes from
    facts = [e.facts for e in await store.events(made.id)]
    assert facts[-2] == Failed(failure=JobFailure(CudaOom()))
    assert facts[-1] == Restarted(by=User("UOWNER"), resume_from="/o/v0/checkpoint-3")
    with pytest.raises(StaleState):  # it is queued now: a second restart starts from a state it has left
        await apply(store, made.id, lifecycle.restart(again, "UOWNER", (), {}, ""))


async def test_each_checkpoint_and_eval_is_told_once_per_run_however_many_bots_watch_it(store: JobStore) -> None:
    async def run_once(made: Job) -> Job:
        made = await apply(store, made.id, lifecycle.launch(Run(launch_token="t"), scheduled=False))
        return await apply(store, made.id, lifecycle.running(made, 1.0, "swift sft"))

    await store.register_reader("slack", keep_s=60)  # someone reads the notices: they are kept for it
    made = await run_once(await store.create(job()))
    saved = Milestone(MilestoneKind.CHECKPOINT, 3, {"path": "/o/v0/checkpoint-3"})
    evaluated = Milestone(MilestoneKind.EVAL, 3, {"step": 3, "epoch": 0.5, "eval_loss": 1.25})
    for _ in range(2):  # a console beside the Slack bot: both watch the run and read the same logging.jsonl
        await apply(store, made.id, lifecycle.milestone(evaluated))
        await apply(store, made.id, lifecycle.milestone(saved))
    later = Milestone(MilestoneKind.CHECKPOINT, 6, {"path": "/o/v0/checkpoint-6"})
    await apply(store, made.id, lifecycle.milestone(later))
    kinds = [type(e.facts).__name__ for e in await store.events(made.id)]
    assert kinds.count("CheckpointSaved") == 2 and kinds.count("EvalDone") == 1, kinds
    notices = [type(n.facts).__name__ for n in await store.notices(made.id)]
    assert notices.count("CheckpointSaved") == 2 and notices.count("EvalDone") == 1, notices

    ended = await apply(store, made.id, lifecycle.fail(made, Failure(CudaOom(), "oom"), Progress(step=6), 1, 3.0))
    again = await apply(store, made.id, lifecycle.restart(ended, "UOWNER", ("swift", "sft"), {}, "cmd"))
    await run_once(again)
    await apply(store, made.id, lifecycle.milestone(saved))  # a new run from the start reaches step 3 again
    kinds = [type(e.facts).__name__ for e in await store.events(made.id)]
    assert kinds.count("CheckpointSaved") == 3 and kinds[-1] == "CheckpointSaved", kinds


@pytest.mark.parametrize(
    ("state", "export", "checkpoint", "expected"),
    [
        (S.CREATED, ExportState.NONE, None, {Action.START, Action.DELETE}),
        (S.QUEUED, ExportState.NONE, None, {Action.STOP, Action.DELETE}),
        (S.STARTING, ExportState.NONE, None, {Action.STOP}),
        (S.RUNNING, ExportState.NONE, "/c", {Action.STOP}),
        (S.STOPPING, ExportState.NONE, "/c", set()),
        (S.SUCCEEDED, ExportState.NONE, "/c", {Action.EXPORT, Action.DELETE}),
        (S.SUCCEEDED, ExportState.EXPORTING, "/c", set()),
        (S.FAILED, ExportState.NONE, None, {Action.START, Action.DELETE}),
        (S.STOPPED, ExportState.EXPORTED, "/c", {Action.START, Action.EXPORT, Action.DELETE}),
    ],
)
def test_every_view_offers_the_actions_the_job_allows(
    state: JobState, export: ExportState, checkpoint: str | None, expected: set[Action]
) -> None:
    j = job(state, export_state=export, progress=Progress(last_checkpoint=checkpoint))
    assert allowed_actions(j) == expected
    access = AccessConfig()
    assert allowed_actions(j, Caller(user_id="UOWNER"), access) == expected  # its owner
    assert allowed_actions(j, Caller(user_id="USOMEONE"), access) == set()  # nobody else's to manage
    assert allowed_actions(j, Caller(console=True), access) == expected  # an admin
    card = views.job_card(j).blocks[-1]
    buttons = {e["action_id"] for e in card.get("elements", [])} if card["type"] == "actions" else set()
    assert buttons == {
        name
        for action, name in ((Action.STOP, views.STOP_ACTION), (Action.EXPORT, views.EXPORT_ACTION))
        if action in expected
    }
    for action in set(Action) - expected:  # each refused with its typed reason, the job and its state in it
        assert actions.refusal(j, action) is not None


def test_refusals_name_why_and_the_help_says_when_each_action_applies() -> None:
    assert isinstance(actions.refusal(job(S.SUCCEEDED), Action.START), AlreadySucceeded)
    assert isinstance(actions.refusal(job(S.RUNNING), Action.START), NotRestartable)
    assert isinstance(refused := actions.refusal(job(S.CREATED), Action.STOP), NothingToStop)
    assert refused.state == "created"
    assert "For a job that is queued, starting or running." in TOPICS["stop"].about
    assert "created, failed or stopped" in TOPICS["start"].about
    assert ACTIONS == ("start", "stop", "export", "delete")


async def test_a_request_answers_at_once_and_wakes_the_loop(tmp_path: Path, open_runtime: OpenRuntime) -> None:
    # a pace so slow that only a wake-up can start the second job in time (store changes do not wake a busy loop)
    config = fake_config(tmp_path, gpus=2, steps=400, step_s=0.1).changed(runner={"progress_poll_seconds": 60.0})
    rt = await open_runtime(config)

    def request(name: str, gpu: str) -> JobRequest:
        return JobRequest(Kind.LLM, (gpu,), config.base_dir / "output" / name, {}, user_id="UOWNER")

    first = await rt.supervisor.submit(request("a", "0"))
    assert first.state is S.QUEUED  # answered before any tick took it from the line
    await wait_for_state(rt.store, first.id, S.RUNNING, within=10)
    second = await rt.supervisor.submit(request("b", "1"))
    assert second.state is S.QUEUED
    await wait_for_state(rt.store, second.id, S.RUNNING, within=10)
    for started in (first, second):
        # swift is there, so the SIGINT reaches it at once (the loop looks again only once a minute)
        await wait_until(functools.partial(_swift_started, rt.store, started.id), 20, "swift to start")
        assert (await rt.supervisor.stop(started.id, by="UOWNER")).state is S.STOPPING
        await wait_for_state(rt.store, started.id, S.STOPPED, within=20)  # its exit wakes the loop too


async def _swift_started(store: JobStore, job_id: str) -> bool:
    log = (await store.require(job_id)).train_run.log
    return log is not None and "run sh:" in log.read_text()
