"""Slurm's states, reasons and nodes as trainbot tells them: pure functions, no cluster needed. Records are
written as `scontrol show job -o` prints them and parsed by the same code as real ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.words import failures as failure_words
from bot.words import notices as notice_words
from bot.words import texts
from bot.words.cluster import job_label, render_gpu_nodes
from bot.words.format import HTML, PLAIN, SLACK
from bot.words.waiting import waiting_words
from runner.backends import ProcessRef, RunStatus
from runner.backends.slurm import gpu_count, job_environment, job_name, run_status
from runner.backends.slurm_states import expand_hostlist
from runner.slurm_cli import SlurmJob, job_from_record, parse_record
from runner.slurm_cluster import ClusterGpus, QueuedJob, SlurmNode
from runner.slurm_script import training_script, try_script
from storage.failure_facts import JobFailure
from storage.models import Job, JobState, Kind, Run
from storage.notices import JobQueued, Notice
from storage.waiting import SlurmPending


def record(state: str, exit_code: str = "0:0", reason: str = "None", extra: str = "") -> SlurmJob:
    return job_from_record(
        parse_record(
            f"JobId=42 JobName=trainbot-abc-train JobState={state} Reason={reason} ExitCode={exit_code} "
            f"TimeLimit=01:00:00 NodeList=gpu01 NumNodes=1 TresPerNode=gres:gpu:1 {extra}"
        )
    )


@pytest.mark.parametrize(
    ("state", "exit_code", "returncode", "detail"),
    [
        ("COMPLETED", "0:0", 0, None),
        ("FAILED", "3:0", 3, None),  # the trainer's own failure: its log says why
        ("FAILED", "254:0", 254, None),  # swift after its trainer was interrupted
        ("FAILED", "127:0", 127, "not found on the compute node"),
        ("FAILED", "0:0", 1, "Slurm could not run the job: is the log folder writable from gpu01?"),
        ("CANCELLED", "0:15", 143, None),  # scancel: a stop, not a failure
        ("CANCELLED", "143:0", 143, None),
        ("CANCELLED", "0:0", 143, None),  # cancelled while pending: never 0, which would read as success
        ("TIMEOUT", "0:15", 143, "Slurm killed the job at its time limit (01:00:00)"),
        ("OUT_OF_MEMORY", "0:125", 137, "out of memory on the node (gpu01)"),
        ("NODE_FAIL", "0:0", 1, "the node failed under the job (gpu01, NODE_FAIL)"),
        ("PREEMPTED", "0:15", 143, "preempted"),
        ("BOOT_FAIL", "0:0", 1, "could not boot gpu01"),
        ("DEADLINE", "0:0", 143, "deadline"),
        ("SPECIAL_EXIT", "0:0", 1, "Slurm ended the job as SPECIAL_EXIT"),
    ],
)
def test_ended_jobs(state: str, exit_code: str, returncode: int, detail: str | None) -> None:
    status = run_status(record(state, exit_code))
    assert not status.alive and status.returncode == returncode and status.pending_reason is None
    if detail is None:
        assert status.cause is None
    else:
        assert status.cause is not None and status.cause.state == state
        failure = JobFailure(status.cause)
        hint = failure_words.hint(failure)
        words = failure_words.summary(failure) + (f": {hint}" if hint else "")
        assert detail in words, words
        assert "None" not in words and "()" not in words


def test_forgotten_job_is_settled_from_the_logs() -> None:
    assert run_status(None) == RunStatus(alive=False, returncode=None)


@pytest.mark.parametrize(
    ("state", "reason", "extra", "words"),
    [
        ("PENDING", "Resources", "", "Slurm: waiting for a free GPU (Resources)"),
        ("PENDING", "Resources", "TresPerNode=gres:gpu:2", "Slurm: waiting for 2 free GPUs on one node (Resources)"),
        (
            "PENDING",
            "Resources",
            "TresPerNode=gres:gpu:a100:4 NumNodes=2",
            "Slurm: waiting for 4 free GPUs on each of 2 nodes (Resources)",
        ),
        ("PENDING", "Resources", "TresPerNode=(null)", "Slurm: waiting for free CPUs or memory (Resources)"),
        ("PENDING", "Priority", "", "Slurm: behind higher-priority jobs (Priority)"),
        ("PENDING", "None", "", "Slurm: waiting for Slurm's scheduler"),  # Slurm's own `None`: no reason yet
        ("PENDING", "(null)", "", "Slurm: waiting for Slurm's scheduler"),
        (
            "PENDING",
            "ReqNodeNotAvail, UnavailableNodes:gpu01",
            "",
            "Slurm: the nodes it needs are down, drained or reserved (ReqNodeNotAvail, UnavailableNodes:gpu01)",
        ),
        ("PENDING", "QOSMaxGRESPerUser", "", "Slurm: over a limit of its QOS (QOSMaxGRESPerUser)"),
        (
            "PENDING",
            "PartitionTimeLimit",
            "",
            "Slurm: its time limit is above the partition's: lower [slurm] time_limit (PartitionTimeLimit)",
        ),
        ("PENDING", "SomethingNew", "", "Slurm: waiting (SomethingNew)"),
        ("CONFIGURING", "None", "", "Slurm: its nodes are being set up (CONFIGURING)"),
    ],
)
def test_waiting_jobs_say_why(state: str, reason: str, extra: str, words: str) -> None:
    status = run_status(record(state, reason=reason, extra=extra))
    assert status.alive and isinstance(status.pending_reason, SlurmPending)
    assert status.pending_reason.state == state
    assert waiting_words(status.pending_reason) == words


@pytest.mark.parametrize("reason", ["Reason=None ", ""])  # Slurm's own `None`, or no Reason at all
def test_a_job_slurm_has_not_looked_at_yet_reads_without_none(reason: str) -> None:
    """Issue 26 case 12: `Job mp4h6 submitted to Slurm as job 52 (Slurm: waiting for Slurm's scheduler (None))`."""
    status = run_status(
        job_from_record(
            parse_record(
                f"JobId=52 JobName=trainbot-mp4h6-train JobState=PENDING {reason}NumNodes=1 TresPerNode=gres:gpu:1"
            )
        )
    )
    job = Job(
        "mp4h6",
        Kind.LLM,
        JobState.QUEUED,
        "/o",
        ("0",),
        ("swift",),
        backend="slurm",
        train_run=Run(backend_job_id="52"),
        queue_reason=status.pending_reason,
    )
    queued = Notice("mp4h6", JobQueued(backend="slurm", backend_job_id="52", pending_reason=status.pending_reason))
    for fmt in (PLAIN, SLACK):
        said = [texts.start_reply(job, fmt), texts.job_status(job, fmt), notice_words.notice_text(queued, fmt)]
        assert said[0] == "submitted to Slurm as job 52 (Slurm: waiting for Slurm's scheduler)", said
        for words in said:
            assert "None" not in words and "null" not in words and "()" not in words, words


def test_a_missing_reason_is_no_reason_not_the_word_none() -> None:
    """Issue 26 case 12: slurm_cli kept no `None` for a reason Slurm left out (or printed as `None`)."""
    bare = job_from_record(parse_record("JobId=42 JobName=trainbot-abc-train JobState=PENDING NumNodes=1"))
    assert bare.reason == "" and record("PENDING", reason="None").reason == ""
    pending = run_status(bare).pending_reason
    assert pending == SlurmPending("PENDING", "", 0, 1)
    for fmt in (PLAIN, SLACK, HTML):
        words = waiting_words(pending, fmt)
        assert words == "Slurm: waiting for Slurm's scheduler"
        assert "None" not in words and "null" not in words and "()" not in words


@pytest.mark.parametrize("state", ["RUNNING", "COMPLETING", "SUSPENDED", "SIGNALING", "STAGE_OUT"])
def test_running_jobs(state: str) -> None:
    assert run_status(record(state)) == RunStatus(alive=True)


def test_environment_and_request() -> None:
    env = job_environment(
        None,
        {
            "PATH": "/bin",
            "SLACK_BOT_TOKEN": "x",
            "SLACK_APP_TOKEN": "y",
            "HF_TOKEN": "h",
            "CUDA_VISIBLE_DEVICES": "3",
            "SLURM_CONF": "/etc/s.conf",
            "TRAINBOT_API_TOKENS": "t",
            "TRAINBOT_SESSION_SECRET": "s",
        },
    )
    assert env == {"PATH": "/bin", "HF_TOKEN": "h", "SLURM_CONF": "/etc/s.conf"}
    assert [gpu_count(g) for g in [("cpu",), ("0",), ("0", "1")]] == [0, 1, 2]
    assert job_name(ProcessRef("k3x9a", "export")) == "trainbot-k3x9a-export"
    launch = ProcessRef("k3x9a", "train", Run(launch_token="5f0c1a2b3c4d"))
    assert job_name(launch) == "trainbot-k3x9a-train-5f0c1a2b3c4d"


def test_training_script_relays_sigint_to_trainers_only() -> None:
    script = training_script(
        ["swift", "sft", "--lr", "1e-4"], env={"A": "1"}, nodes=2, trainers=["swift/cli/sft.py", "it's"]
    )
    assert script.startswith(
        "#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1\n# trainbot training job\nexport A=1\n"
    )
    assert "trap relay_int INT" in script and "scontrol listpids" in script
    assert "-e swift/cli/sft.py" in script and script.rstrip().endswith('exit "$rc"')
    assert "grep" not in training_script(["true"], env={}, nodes=1)  # no trainers named: all of step 0


def test_expand_hostlist() -> None:
    assert expand_hostlist("vm") == ["vm"]
    assert expand_hostlist("gpu[01-03,7],cpu1") == ["gpu01", "gpu02", "gpu03", "gpu7", "cpu1"]
    assert expand_hostlist("") == []


def test_gpu_nodes_table() -> None:
    nodes = [
        SlurmNode("gpu01", "mixed", 64, 16, "gpu:8", "gpu:3(IDX:0-2)", 8, 3),
        SlurmNode("gpu02", "down*", 64, 0, "gpu:8", "gpu:0", 8, 0),
        SlurmNode("cpu01", "idle", 32, 0, "", "", 0, 0),
    ]
    jobs = [
        QueuedJob("101", "RUNNING", "alice", "gpu01", 2, 1, "trainbot-abc12-train-5f0c1a2b3c4d"),
        QueuedJob("102", "RUNNING", "bob", "gpu[01-02]", 1, 2, "bert-pretrain"),
        QueuedJob("103", "PENDING", "alice", "", 8, 2, "trainbot-def34-train"),
        QueuedJob("104", "RUNNING", "carol", "cpu01", 0, 1, "prep"),
    ]
    assert render_gpu_nodes(ClusterGpus(tuple(nodes), tuple(jobs)), SLACK).splitlines() == [
        "Slurm: 2 GPU nodes, 3/16 GPUs in use, 1 job waiting for GPUs",
        "• *gpu01* mixed · GPU 3/8 in use by `abc12` (2), bob's Slurm job 102 (1) · CPU 16/64",
        "• *gpu02* down* (takes no jobs) · GPU 0/8 in use by bob's Slurm job 102 (1) · CPU 0/64",
        "waiting: `def34` (8 GPUs x 2 nodes)",
    ]
    assert "No GPU nodes" in render_gpu_nodes(ClusterGpus(tuple(nodes[2:]), tuple(jobs)), SLACK)


def test_a_trys_batch_script_runs_its_argv_with_the_requests_on_stdin_and_the_answers_on_stdout(
    tmp_path: Path,
) -> None:
    folder = tmp_path / 'a folder\'s "odd" name; $HOME'
    folder.mkdir()
    requests, answers = folder / "t.requests.jsonl", folder / "t.answers.jsonl"
    requests.write_text('{"q": "hi"}\n')
    code = "import os, sys; sys.stdout.write(os.environ['TB_MARK'] + sys.stdin.read().upper())"
    script = try_script([sys.executable, "-c", code], stdin=requests, stdout=answers, env={"TB_MARK": "it's $HOME "})
    assert script.splitlines()[:2] == ["#!/bin/bash", "#SBATCH --nodes=1 --ntasks-per-node=1"]
    subprocess.run(["bash", "-c", script], check=True, capture_output=True, timeout=60)
    assert answers.read_text() == 'it\'s $HOME {"Q": "HI"}\n'


def test_the_gpus_command_names_a_trys_batch_job_as_the_jobs_try() -> None:
    job = QueuedJob("105", "RUNNING", "alice", "gpu01", 1, 1, "trainbot-abc12-try-5f0c1a2b3c4d")
    assert job_label(job, SLACK) == "`abc12` try"
