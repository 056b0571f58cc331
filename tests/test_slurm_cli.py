"""runner.slurm_cli against a real single-node Slurm with 2 fake GPUs (`scripts/slurm_up.sh up`, which
`make test` runs first).

Jobs hold themselves RUNNING until the test creates a "go" file (or 30 s pass), so every step waits on a
condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import slurm_cli, slurm_cluster, slurm_script
from runner.slurm_cli import SlurmJob, cancel, show_job, submit, training_script
from runner.slurm_cluster import nodes
from tests.slurm_cluster import require_slurm, wait_gpus_free

DEADLINE_S = 30.0
slurm = pytest.mark.slurm


def hold(go: Path) -> str:
    """Shell that waits until ``go`` exists (at most 30 s, so a test that dies leaves no job behind)."""
    return f"for _ in $(seq 300); do [ -e '{go}' ] && break; sleep 0.1; done"


async def wait_job(job_id: str, pred: Callable[[SlurmJob], bool], what: str, limit_s: float = DEADLINE_S) -> SlurmJob:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    job = None
    while loop.time() < end:
        job = await show_job(job_id)
        if job is not None and pred(job):
            return job
        await asyncio.sleep(0.1)
    pytest.fail(f"job {job_id}: not {what} within {limit_s} s; last seen: {job}")


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_text(path: Path, needle: str, limit_s: float = DEADLINE_S) -> str:
    end = asyncio.get_running_loop().time() + limit_s
    text = ""
    while asyncio.get_running_loop().time() < end:
        text = read(path)
        if needle in text:
            return text
        await asyncio.sleep(0.1)
    pytest.fail(f"{needle!r} not in {path} within {limit_s} s; it holds: {text!r}")


def state_is(*states: str) -> Callable[[SlurmJob], bool]:
    return lambda j: j.state in states


@pytest.fixture(scope="session")
def cluster() -> str:
    """The node name; skips when Slurm is not installed or not up."""
    return require_slurm()


@pytest.fixture
async def free_gpus(cluster: str) -> str:
    await wait_gpus_free()
    return cluster


@slurm
async def test_gpu_job_runs_then_completes(free_gpus: str, tmp_path: Path) -> None:
    out, go = tmp_path / "job-%j.out", tmp_path / "go"
    script = f'#!/bin/bash\necho "CVD=$CUDA_VISIBLE_DEVICES"\n{hold(go)}\necho done\n'
    job_id = await submit(script, job_name="tb-test-gpu", output_path=out, gres_gpus=1)
    job = await wait_job(job_id, state_is("RUNNING"), "RUNNING")
    assert job.stdout_path == tmp_path / f"job-{job_id}.out"
    assert job.node_list == free_gpus and job.start_time and job.reason == ""  # Slurm prints `None`: no reason
    await wait_text(job.stdout_path, "CVD=0\n")
    go.touch()
    job = await wait_job(job_id, lambda j: j.terminal, "finished")
    assert (job.state, job.exit_code, job.signal, job.reason) == ("COMPLETED", 0, 0, "")
    assert job.end_time and job.stdout_path is not None and read(job.stdout_path) == "CVD=0\ndone\n"


@slurm
async def test_exit_3_is_failed(cluster: str, tmp_path: Path) -> None:
    job_id = await submit(
        "#!/bin/bash\nexit 3\n", job_name="tb-test-exit3", output_path=tmp_path / "o.txt", gres_gpus=0
    )
    job = await wait_job(job_id, lambda j: j.terminal, "finished")
    assert (job.state, job.exit_code, job.signal, job.reason) == ("FAILED", 3, 0, "NonZeroExitCode")


@slurm
async def test_third_gpu_job_waits_for_resources(free_gpus: str, tmp_path: Path) -> None:
    ids, gos = [], []
    try:
        for i in range(3):
            gos.append(tmp_path / f"go{i}")
            script = f'#!/bin/bash\necho "CVD=$CUDA_VISIBLE_DEVICES"\n{hold(gos[i])}\n'
            ids.append(await submit(script, job_name=f"tb-test-q{i}", output_path=tmp_path / f"{i}.out", gres_gpus=1))
        first = [await wait_job(j, state_is("RUNNING"), "RUNNING") for j in ids[:2]]
        third = await wait_job(
            ids[2], lambda j: j.state == "PENDING" and j.reason == "Resources", "PENDING (Resources)"
        )
        assert third.node_list == "" and third.exit_code == 0
        used = {(await wait_text(tmp_path / f"{i}.out", "\n")).strip() for i in range(2)}
        assert used == {"CVD=0", "CVD=1"}
        assert [n.gpus_used for n in await nodes()] == [2]
        gos[0].touch()
        assert (await wait_job(ids[0], lambda j: j.terminal, "finished")).state == "COMPLETED"
        await wait_job(ids[2], state_is("RUNNING"), "RUNNING after a GPU freed")
        freed = read(tmp_path / "0.out").strip()
        assert (await wait_text(tmp_path / "2.out", "\n")).strip() == freed
        assert first[1].state == "RUNNING"
    finally:
        for go in gos:
            go.touch()
    for j in ids:
        assert (await wait_job(j, lambda j: j.terminal, "finished")).state == "COMPLETED"


TRAINER = """
trap 'echo "INT in step $SLURM_STEP_ID" >> "$MARK"; [ -n "$EXIT_ON_INT" ] && exit "$EXIT_ON_INT"' INT
echo ready > "$MARK.ready"
for _ in $(seq 300); do sleep 0.1; done
"""


@slurm
@pytest.mark.parametrize(
    ("exit_on_int", "final"),
    [
        # plain scancel: SIGTERM reaches srun (the batch script exec'd it), which exits 128+15
        ("", {("CANCELLED", 143, 0), ("CANCELLED", 0, 15)}),
        ("0", {("COMPLETED", 0, 0)}),
        ("130", {("FAILED", 130, 0)}),
    ],
)
async def test_sigint_reaches_trainer(
    cluster: str, tmp_path: Path, exit_on_int: str, final: set[tuple[str, int, int]]
) -> None:
    mark = tmp_path / "marker"
    script = training_script(["bash", "-c", TRAINER], env={"MARK": str(mark), "EXIT_ON_INT": exit_on_int}, nodes=1)
    job_id = await submit(script, job_name="tb-test-int", output_path=tmp_path / "o.txt", gres_gpus=1)
    await wait_text(Path(f"{mark}.ready"), "ready")  # INT sent before the srun step exists would be lost
    await cancel(job_id, signal="INT")
    assert await wait_text(mark, "INT in step 0\n") == "INT in step 0\n"
    if not exit_on_int:  # the trainer goes on (say, saving a checkpoint): a plain cancel ends it
        assert (await show_job(job_id) or pytest.fail("job gone")).state == "RUNNING"
        await cancel(job_id)
    job = await wait_job(job_id, lambda j: j.terminal, "finished")
    assert (job.state, job.exit_code, job.signal) in final


# A swift-like pair: a wrapper waiting on its trainer child. Only the trainer's command line names its file
# (the wrapper gets the path from the environment), as only swift's trainer runs swift/cli/sft.py.
WRAPPER = (
    'trap \'echo "wrapper INT" >> "$MARK"\' INT; bash "$TRAINER_FILE"; rc=$?; '
    'echo "wrapper done $rc" >> "$MARK"; exit $rc'
)
PAIRED_TRAINER = """
trap 'echo "trainer INT" >> "$MARK"; exit 7' INT
echo ready > "$MARK.ready"
for _ in $(seq 300); do sleep 0.1; done
"""


@slurm
@pytest.mark.parametrize(
    ("trainers", "marks"),
    [
        (["the-trainer.sh"], "trainer INT\nwrapper done 7\n"),  # the wrapper never saw the signal
        ([], "trainer INT\nwrapper INT\nwrapper done 7\n"),  # no trainer named: all of step 0 gets it
    ],
)
async def test_gentle_stop_reaches_the_trainer_not_its_wrapper(
    cluster: str, tmp_path: Path, trainers: list[str], marks: str
) -> None:
    mark, trainer = tmp_path / "marker", tmp_path / "the-trainer.sh"
    trainer.write_text(PAIRED_TRAINER)
    script = training_script(
        ["bash", "-c", WRAPPER], env={"MARK": str(mark), "TRAINER_FILE": str(trainer)}, nodes=1, trainers=trainers
    )
    job_id = await submit(script, job_name="tb-test-relay", output_path=tmp_path / "o.txt", gres_gpus=0)
    await wait_text(Path(f"{mark}.ready"), "ready")
    assert await slurm_cli.running_steps(job_id) == [f"{job_id}.0"]
    await cancel(job_id, signal="INT", batch_only=True)
    job = await wait_job(job_id, lambda j: j.terminal, "finished")
    assert read(mark) == marks, read(tmp_path / "o.txt")
    # a stopped job ends CANCELLED in Slurm's records (not FAILED), saying in its log how the trainer exited
    assert job.state == "CANCELLED" and "[trainbot] stopped: the trainer exited 7" in read(tmp_path / "o.txt")
    assert await slurm_cli.running_steps(job_id) == []


@slurm
async def test_queue_cluster_name_and_kill(free_gpus: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job_id = await submit(
        f"#!/bin/bash\n{hold(go)}\n", job_name="tb-test-queue", output_path=tmp_path / "o.txt", gres_gpus=2
    )
    try:
        await wait_job(job_id, state_is("RUNNING"), "RUNNING")
        (mine,) = [j for j in await slurm_cluster.queue() if j.job_id == job_id]
        assert (mine.state, mine.node_list, mine.gpus_per_node, mine.nodes, mine.name) == (
            "RUNNING",
            free_gpus,
            2,
            1,
            "tb-test-queue",
        )
        assert await slurm_cluster.cluster_name() == "trainbot"
        await cancel(job_id, signal="KILL", full=True)
        assert (await wait_job(job_id, lambda j: j.terminal, "killed")).state in {"CANCELLED", "FAILED"}
    finally:
        go.touch()


@slurm
async def test_signal_to_pending_job_cancels_it(cluster: str, tmp_path: Path) -> None:
    job_id = await submit(
        "#!/bin/bash\ntrue\n",
        job_name="tb-test-held",
        output_path=tmp_path / "o.txt",
        gres_gpus=1,
        extra_args=["--hold"],
    )
    job = await wait_job(job_id, state_is("PENDING"), "PENDING")
    assert job.reason == "JobHeldUser"
    async with asyncio.timeout(10):  # scancel --signal on a pending job would retry for ~70 s
        await cancel(job_id, signal="INT")
    job = await wait_job(job_id, lambda j: j.terminal, "finished")
    assert job.state == "CANCELLED" and read(tmp_path / "o.txt") == ""
    await cancel(job_id)  # finished: no-op
    await cancel(job_id, signal="INT")


@slurm
async def test_unknown_job(cluster: str) -> None:
    assert await show_job("987654321") is None
    await cancel("987654321")
    await cancel("987654321", signal="INT")


ECHO_ENV = (
    'echo "NNODES=${NNODES:-} NODE_RANK=${NODE_RANK:-} MASTER_ADDR=$MASTER_ADDR '
    'MASTER_PORT=$MASTER_PORT NPROC_PER_NODE=${NPROC_PER_NODE:-} CVD=$CUDA_VISIBLE_DEVICES"; '
    'echo "TB_VALUE=$TB_VALUE"; '
    'printf "%s|" "$@"; echo'
)
ODD_ARGS = ["it's", "a b", "$HOME", "x,y", "--lr=1e-4", ""]
ODD_ENV = 'a,b c\'d "e" $HOME'


@slurm
@pytest.mark.parametrize(("gpus", "dist"), [(2, True), (1, False)])
async def test_training_script_one_node(free_gpus: str, tmp_path: Path, gpus: int, dist: bool) -> None:
    script = training_script(["bash", "-c", ECHO_ENV, "argv0", *ODD_ARGS], env={"TB_VALUE": ODD_ENV}, nodes=1)
    out = tmp_path / "o.txt"
    job_id = await submit(script, job_name="tb-test-shape", output_path=out, gres_gpus=gpus)
    job = await wait_job(job_id, lambda j: j.terminal, "finished")
    assert (job.state, job.exit_code) == ("COMPLETED", 0), read(out)
    lines = read(out).splitlines()
    port = 20000 + int(job_id) % 10000
    cvd = ",".join(str(i) for i in range(gpus))
    if dist:
        want = f"NNODES=1 NODE_RANK=0 MASTER_ADDR={free_gpus} MASTER_PORT={port} NPROC_PER_NODE=2 CVD={cvd}"
    else:  # one GPU: no torchrun variables, ms-swift runs one plain process
        want = f"NNODES= NODE_RANK= MASTER_ADDR={free_gpus} MASTER_PORT={port} NPROC_PER_NODE= CVD={cvd}"
    assert lines == [want, f"TB_VALUE={ODD_ENV}", "|".join(ODD_ARGS) + "|"]


@slurm
async def test_nodes_show_gpus(free_gpus: str) -> None:
    (node,) = [n for n in await nodes() if n.name == free_gpus]
    assert (node.gres, node.gpus, node.gpus_used) == ("gpu:2", 2, 0)
    assert node.state in {"idle", "mixed"} and node.cpus >= 2


@slurm
async def test_submit_errors_carry_stderr(cluster: str, tmp_path: Path) -> None:
    with pytest.raises(slurm_cli.SlurmError, match=r"sbatch .*[Ii]nvalid partition"):
        await submit(
            "#!/bin/bash\ntrue\n",
            job_name="tb-test-bad",
            output_path=tmp_path / "o",
            gres_gpus=0,
            partition="no-such-partition",
        )


# --- pure functions: no cluster needed ---------------------------------------------------------------


def test_parse_record_values_with_spaces() -> None:
    rec = slurm_cli.parse_record(
        "JobId=7 JobName=a b,c JobState=PENDING Reason=Resources OS=Linux 6.1 #1 SMP "
        "Command=/x/t.sh --lr=1e-4 AllocNode:Sid=vm:1 CPUs/Task=1 StdOut=/t/sp ace 7.out Power= "
        "TresPerNode=gres:gpu:1 ExitCode=0:15\n"
    )
    assert rec["JobName"] == "a b,c" and rec["OS"] == "Linux 6.1 #1 SMP"
    assert rec["Command"] == "/x/t.sh --lr=1e-4"
    assert rec["AllocNode:Sid"] == "vm:1" and rec["CPUs/Task"] == "1" and rec["Power"] == ""
    job = slurm_cli.job_from_record(rec)
    assert (job.state, job.reason, job.exit_code, job.signal) == ("PENDING", "Resources", 0, 15)
    assert job.stdout_path == Path("/t/sp ace 7.out") and job.node_list == "" and job.start_time == ""


def test_exports_go_after_sbatch_header() -> None:
    text = slurm_script.with_exports("#!/bin/bash\n#SBATCH -n 1\n\necho hi\n", {"A": "x,y z"})
    assert text == "#!/bin/bash\n#SBATCH -n 1\n\nexport A='x,y z'\necho hi\n"
    with pytest.raises(ValueError):
        slurm_script.with_exports("echo\n", {"A-B": "1"})


def test_gpu_count() -> None:
    gres = ["gpu:2", "gpu:1(IDX:0)", "gpu:a100:2(S:0-1),gpu:v100:1", "", "shard:4,gpu:3"]
    assert [slurm_cluster.gpu_count(g) for g in gres] == [2, 1, 3, 0, 3]


def test_slurm_reason_keeps_slurms_words_without_prefixes_or_the_repeated_closing_line() -> None:
    stderr = (
        "sbatch: error: invalid partition specified: nosuch\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert slurm_cli.slurm_reason(stderr) == "invalid partition specified: nosuch"
    assert slurm_cli.slurm_reason("sbatch: error: Batch job submission failed: Access denied\n") == (
        "Batch job submission failed: Access denied"
    )
