"""Jobs as Slurm batch jobs: `sbatch` starts them, `scontrol show job` follows them, `scancel` stops them.

Slurm picks the GPUs and keeps the queue (`schedules_gpus`), so the supervisor hands every job over at once and
shows Slurm's reason while it waits. Nothing a restarted bot needs lives in memory: a job is found again from its
Slurm job id alone, and a launch it did not see through (it died between sbatch and recording the id) by the
launch token in the job's name. See docs/slurm.md.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner import slurm_cli, slurm_cluster
from runner.backends import Launched, LaunchError, NotKnownYet, ProcessRef, RunStatus
from runner.backends.local import TRAINER_SCRIPTS
from runner.backends.slurm_states import run_status
from runner.child_env import child_env
from runner.command import SwiftCommand
from runner.config import Config
from runner.errors import GpuMissing, GpusPerNodeMissing
from runner.slurm_cli import SlurmError, SlurmJob
from runner.slurm_cluster import ClusterGpus
from runner.slurm_script import EnvNameError
from storage.failure_facts import BadEnvName, LogUnwritable, SlurmRefused
from storage.waiting import SlurmSilent

log = logging.getLogger(__name__)


def job_environment(config: Config | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment sbatch runs in, which the job inherits (`--export=ALL`): the bot's, less its secrets
    (runner/child_env.py). CUDA_VISIBLE_DEVICES goes too: Slurm sets it from the GPUs it picks."""
    env = child_env(config, base=base)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def gpu_count(gpus: Sequence[str]) -> int:
    """GPUs per node to ask Slurm for: only how many counts, Slurm picks which (`gpu=cpu`: none)."""
    return 0 if tuple(gpus) == ("cpu",) else len(gpus)


def job_name(ref: ProcessRef) -> str:
    """`trainbot-<id>-<purpose>-<launch token>`: a restarted bot finds the launch it did not see through by it."""
    token = ref.run.launch_token
    return f"trainbot-{ref.job_id}-{ref.purpose}" + (f"-{token}" if token else "")


class SlurmBackend:
    name = "slurm"
    schedules_gpus = True

    def __init__(self, config: Config) -> None:
        self._config = config
        self._seen: dict[str, tuple[float, SlurmJob | None]] = {}  # job id -> (monotonic time, record)
        self._cluster: str | None = None

    async def launch(self, ref: ProcessRef, command: SwiftCommand, *, log_path: Path, gpus: Sequence[str]) -> Launched:
        slurm = self._config.slurm
        nodes = slurm.nodes if ref.purpose == "train" else 1  # an export merges on one machine
        env = dict(command.env) | {"PYTHONUNBUFFERED": "1"}
        argv = command.argv
        if gpu_count(gpus) == 0:  # Slurm unsets CUDA_VISIBLE_DEVICES in a job without GPUs: no GPU means none
            argv = ("env", "CUDA_VISIBLE_DEVICES=", *argv)
        _write_header(ref, command, log_path)
        try:
            script = slurm_cli.training_script(argv, env=env, nodes=nodes, trainers=TRAINER_SCRIPTS)
            job_id = await slurm_cli.submit(
                script,
                job_name=job_name(ref),
                output_path=log_path,
                gres_gpus=gpu_count(gpus),
                nodes=nodes,
                partition=slurm.partition,
                account=slurm.account,
                time_limit=slurm.time_limit,
                # append: a job started again keeps its earlier runs' log, as with the local backend
                extra_args=["--export=ALL", "--open-mode=append", *slurm.extra_args],
                workdir=self._config.base_dir,
                process_env=job_environment(self._config),
            )
        except SlurmError as exc:
            raise LaunchError(SlurmRefused(exc.problem, exc.reason, exc.command), detail=exc.command) from exc
        except EnvNameError as exc:
            raise LaunchError(BadEnvName(exc.name)) from exc
        self._seen.pop(job_id, None)
        return Launched(pid=None, proc_start_time=None, host=await self._host(), backend_job_id=job_id)

    async def status(self, ref: ProcessRef) -> RunStatus:
        if ref.run.backend_job_id is None:  # never submitted (the bot died mid-launch): nothing runs
            return RunStatus(alive=False)
        try:
            job = await self._show(ref.run.backend_job_id)
        except SlurmError as exc:  # slurmctld down or slow: the job is most likely still there
            log.warning("cannot ask Slurm about job %s: %s", ref.run.backend_job_id, exc)
            return RunStatus(alive=True, pending_reason=SlurmSilent(exc.problem, exc.command, exc.reason))
        return run_status(job)

    async def interrupt(self, ref: ProcessRef) -> bool:
        """SIGINT to the trainer processes of the job's srun step on every node, by way of the batch shell
        (runner/slurm_script.py says why not to the whole step). A job whose step has not started has nothing
        to save yet (and the signal would be lost): it is cancelled instead."""
        job_id = ref.run.backend_job_id
        if job_id is None:
            return False
        self._seen.pop(job_id, None)
        try:
            job = await slurm_cli.show_job(job_id)
            if job is None or job.terminal:
                return False
            if job.state != "PENDING" and await slurm_cli.running_steps(job_id):
                await slurm_cli.cancel(job_id, signal="INT", batch_only=True)
            else:
                await slurm_cli.cancel(job_id)
        except SlurmError as exc:  # the stop goes on: terminate() follows after the grace period
            log.warning("SIGINT to Slurm job %s failed: %s", job_id, exc)
            return False
        return True

    async def terminate(self, ref: ProcessRef) -> None:
        """Plain scancel: SIGTERM to everything of the job, SIGKILL after Slurm's KillWait; ends it CANCELLED.
        Raises SlurmError when Slurm refuses, so a job is never taken as gone while it still runs."""
        if ref.run.backend_job_id is not None:
            self._seen.pop(ref.run.backend_job_id, None)
            await slurm_cli.cancel(ref.run.backend_job_id)

    async def kill(self, ref: ProcessRef) -> None:
        if ref.run.backend_job_id is not None:
            self._seen.pop(ref.run.backend_job_id, None)
            await slurm_cli.cancel(ref.run.backend_job_id, signal="KILL", full=True)

    def own_pids(self, refs: Sequence[ProcessRef]) -> set[int]:
        return set()  # our processes run on the compute nodes, not on this machine

    async def cluster_gpus(self) -> ClusterGpus:
        """The `gpus` command on Slurm: the cluster's GPU nodes, their state and who uses their GPUs."""
        return ClusterGpus(tuple(await slurm_cluster.nodes()), tuple(await slurm_cluster.queue()))

    async def describe_missing_gpus(self, gpus: Sequence[str]) -> GpuMissing | None:
        """On Slurm `gpu=` says how many GPUs a node gives the job (which ones is Slurm's choice): refused
        only when no node has that many. Slurm not answering is not a refusal: sbatch will tell."""
        wanted = gpu_count(gpus)
        try:
            most = max((n.gpus for n in await slurm_cluster.nodes()), default=0)
        except SlurmError:
            return None
        if wanted <= most:
            return None
        return GpusPerNodeMissing(wanted, most)

    async def reclaim(self, ref: ProcessRef) -> Launched | None:
        """The Slurm job of this launch, found by its name (which holds the launch token) whether it waits, runs or
        has ended: the bot died between sbatch and recording the id. None: Slurm never had it (it may be
        submitted again); a cluster without accounting forgets an ended job after its MinJobAge."""
        if ref.run.launch_token is None:
            return None
        try:
            found = await slurm_cli.jobs_named(job_name(ref), user=_user())
        except SlurmError as exc:
            raise NotKnownYet(str(exc)) from exc
        if not found:
            return None
        log.warning("job %s: adopting Slurm job %s submitted before a restart", ref.job_id, found[0])
        return Launched(pid=None, proc_start_time=None, host=await self._host(), backend_job_id=found[0])

    async def _show(self, job_id: str) -> SlurmJob | None:
        """scontrol at most every `[slurm] poll_seconds` per job, however often the supervisor ticks."""
        now = time.monotonic()
        cached = self._seen.get(job_id)
        if cached is not None and now - cached[0] < self._config.slurm.poll_seconds:
            return cached[1]
        job = await slurm_cli.show_job(job_id)
        self._seen[job_id] = (now, job)
        return job

    async def _host(self) -> str:
        if self._cluster is None:
            try:
                self._cluster = await slurm_cluster.cluster_name()
            except SlurmError:
                return "slurm"
        return f"slurm:{self._cluster}" if self._cluster else "slurm"


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no USER and no passwd entry (some containers): match on the job name alone
        return None


def _write_header(ref: ProcessRef, command: SwiftCommand, log_path: Path) -> None:
    """Check the log can be written (Slurm would fail the job silently) and head it like the local backend."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as f:
            f.write(
                f"[trainbot] {time.strftime('%Y-%m-%d %H:%M:%S')} job {ref.job_id} {ref.purpose} "
                f"(Slurm): {command.display()}\n"
            )
    except OSError as exc:
        raise LaunchError(LogUnwritable(str(log_path), exc.strerror)) from exc
