"""Why a job failed or could not start, in words: a summary line and what to do about it, for every front end.

`reason_summary` and `reason_hint` match every kind of `FailureReason` and end in `assert_never`: a kind one of them
forgets fails mypy. Every fact not made by trainbot (paths, flags, log lines, Slurm's words) goes through `fmt`.
"""

from __future__ import annotations

from typing import assert_never

from bot.words.format import PLAIN, Format
from storage.failure_facts import (
    BadArgument,
    BadEnvName,
    CudaOom,
    DatasetNotFound,
    DiskFull,
    Distributed,
    FailureReason,
    FolderTaken,
    HostOomKilled,
    HubUnreachable,
    Interrupted,
    JobFailure,
    LegacyFailure,
    LogUnwritable,
    Network,
    OutputExists,
    OutputUnwritable,
    PathOutsideRoot,
    PermissionDenied,
    SchedulerEnded,
    SlurmEnd,
    SlurmRefused,
    SwiftMissing,
    Unknown,
)
from storage.waiting import SlurmProblem

MIRROR = "point the recipe to a local mirror in the config file (model/datasets) and set HF_HUB_OFFLINE=1"
AGAIN = "start it again to resume from its last checkpoint"


def summary(failure: JobFailure, fmt: Format = PLAIN) -> str:
    """One line: what went wrong (the scheduler's own end of the job leads, where it ended it)."""
    return reason_summary(failure.cause or failure.reason, fmt)


def hint(failure: JobFailure, fmt: Format = PLAIN) -> str | None:
    """What to do about it (None: nothing to say); a specific reason's advice beats the scheduler's."""
    return reason_hint(failure.reason, fmt) or (reason_hint(failure.cause, fmt) if failure.cause else None)


def reason_summary(reason: FailureReason, fmt: Format = PLAIN) -> str:
    t = fmt.text
    match reason:
        case Interrupted(requested=True, how=how):
            return "stopped on request" + (f" ({t(how)})" if how else "")
        case Interrupted(how=how):
            return "interrupted" + (f" ({t(how)})" if how else "") + ", not by a stop request from the bot"
        case CudaOom(tried_to_allocate=wanted):
            return "ran out of GPU memory (CUDA OOM" + (f", tried to allocate {t(wanted)})" if wanted else ")")
        case HostOomKilled(dataloader_worker=worker):
            who = "a DataLoader worker was" if worker else "swift was"
            return f"{who} killed (SIGKILL): most likely the machine ran out of RAM"
        case HubUnreachable(what="model", network=Network.OFFLINE) as f:
            model = f"model {t(f.name)}" if f.name else "the model"
            return f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it"
        case HubUnreachable() as f:
            what = f"{f.what} {t(f.name)}" if f.name else f"the {f.what}"
            hub = t(f.hub) if f.hub else "the hub" if f.what == "dataset" else "the model hub"
            return f"could not download {what} from {hub} ({network_words(f.network, f.host, fmt)})"
        case DatasetNotFound(dataset=dataset, load_error=error):
            name = f"dataset {t(dataset)}" if dataset else "the dataset"
            return f"{name} failed to load: {t(error)}" if error else f"{name} not found"
        case BadArgument(flag=flag):
            return f"swift rejected the argument {t(flag)}" if flag else "swift rejected its arguments"
        case OutputExists(path=path):
            return "the output folder already exists" + (f": {fmt.code(path)}" if path else "")
        case DiskFull(quota=quota, path=path):
            what = "the disk quota is used up" if quota else "the disk is full"
            return what + (f" (writing {fmt.code(path)})" if path else " (No space left on device)")
        case PermissionDenied(gated=True):
            return "the hub refused access to the model (gated or private repo)"
        case PermissionDenied(path=path):
            return "permission denied" + (f": {fmt.code(path)}" if path else "")
        case Distributed(port_in_use=True):
            return "distributed start failed: the rendezvous port is in use"
        case Distributed(backend=backend):
            return f"distributed training failed ({t(backend or 'torch.distributed')} error)"
        case Unknown(signal=str(signum)):
            return f"swift was killed by {t(signum)}"
        case Unknown(exception=str(exception)):
            return f"swift failed: {t(exception)}"
        case Unknown(returncode=int(returncode)):
            return f"swift exited with status {returncode}"
        case Unknown():
            return "swift ended, and its exit status is unknown"
        case SchedulerEnded() as f:
            return _scheduler_summary(f, fmt)
        case SwiftMissing(command=command):
            return f"the swift CLI {fmt.code(command)} was not found on this machine"
        case LogUnwritable(path=path, error=error):
            return f"cannot write the log {fmt.code(path)}" + (f": {t(error)}" if error else "")
        case OutputUnwritable(path=path, error=error, created=False):
            return f"cannot create the output folder {fmt.code(path)}" + (f": {t(error)}" if error else "")
        case OutputUnwritable(path=path):
            return f"the output folder {fmt.code(path)} is not writable by the bot's user"
        case SlurmRefused(problem=problem, reason=said, command=command):
            return slurm_trouble("Slurm refused the job", problem, said, command, fmt)
        case BadEnvName(name=name):
            return f"the job's environment names {fmt.code(name)}, which a shell cannot export"
        case PathOutsideRoot() as f:
            roots = ", ".join(fmt.code(r) for r in f.roots) or "any allowed folder"
            return f"{t(f.field)} {fmt.code(f.path)} leads to {fmt.code(f.resolved)} on disk, outside {roots}"
        case FolderTaken(output_dir=folder, job_id=job_id, writer=writer):
            whose = f"job {fmt.code(job_id)}" + ("'s export" if writer == "export" else "")
            return f"{whose} writes to {fmt.code(folder)} already"
        case LegacyFailure(summary=words):
            return t(words)
        case _:
            assert_never(reason)


def config_key(key: str) -> str:
    """A config key as the TOML file spells it: `paths.output_root` -> `[paths] output_root`."""
    section, _, name = key.partition(".")
    return f"[{section}] {name}" if name else key


def reason_hint(reason: FailureReason, fmt: Format = PLAIN) -> str | None:
    match reason:
        case Interrupted(requested=True):
            return None
        case Interrupted():
            return "someone or something outside the bot stopped it; start it again if that was not meant"
        case CudaOom():
            return "lower max_length or the batch size, or use a GPU with more memory"
        case HostOomKilled():
            return (
                "lower dataloader_num_workers, the batch size or max_length, or use a machine with more RAM "
                "(dmesg | grep -i oom on the host tells for sure)"
            )
        case HubUnreachable(what="model", network=Network.OFFLINE):
            return f"download it once where there is network, or {MIRROR}"
        case HubUnreachable(what="dataset", name=str(name)):
            return f"{MIRROR} (if {fmt.text(name)} was meant as a local path, it does not exist)"
        case HubUnreachable():
            return MIRROR
        case DatasetNotFound():
            return (
                "check the dataset id or path in the recipe/config: a local path must exist, a hub id must be "
                "spelled as on the hub"
            )
        case BadArgument(flag=str(flag), renamed_to=str(new)):
            return (
                f"this ms-swift renamed {fmt.text(flag)} to {fmt.text(new)}: the command builder must pass "
                f"{fmt.text(new)} to this swift version"
            )
        case BadArgument():
            return "check the flag and its value against swift sft --help of the installed ms-swift version"
        case OutputExists():
            return (
                "delete or move that folder (an earlier export made it), or export with --exist_ok true "
                "(overwrites) or another --output_dir"
            )
        case DiskFull():
            return (
                "free space where the output goes (old runs, checkpoints), lower save_total_limit, or pick "
                "another output folder"
            )
        case PermissionDenied(gated=True):
            return f"accept the model's licence on the hub and set HF_TOKEN (or MODELSCOPE_API_TOKEN), or {MIRROR}"
        case PermissionDenied():
            return "make sure the bot's user can write the output folder and read the model and datasets"
        case Distributed(port_in_use=True):
            return "another job uses MASTER_PORT: set a different MASTER_PORT (or wait for it to end)"
        case Distributed():
            return (
                "retry; if it persists check the GPUs' interconnect (NCCL_DEBUG=INFO shows more; "
                "NCCL_P2P_DISABLE=1 or NCCL_IB_DISABLE=1 work around broken P2P/InfiniBand)"
            )
        case Unknown():
            return "read the log's tail (or the job's whole log)"
        case SchedulerEnded() as f:
            return _scheduler_hint(f, fmt)
        case SwiftMissing():
            return "install ms-swift, or set [swift] bin in the config file to its full path"
        case LogUnwritable() | OutputUnwritable():
            return "make sure the bot's user can write there"
        case SlurmRefused(problem="refused", reason=said):
            return _refusal_hint(said)
        case SlurmRefused():
            return "check that Slurm is installed and slurmctld answers (sinfo), and the [slurm] section of the config"
        case BadEnvName():
            return "rename that variable in the recipe's env in the config file (letters, digits and _)"
        case PathOutsideRoot(root_key=key):
            where = f" ({fmt.code(config_key(key))} in the config)" if key else ""
            return f"choose a path that stays inside its allowed folders{where}, without a link that leads out"
        case FolderTaken(writer="export"):
            return "a training in that folder would mix with the merged model: start it again once the export has ended"
        case FolderTaken():
            return "two jobs in one folder would mix their checkpoints: start it again once that job has ended"
        case LegacyFailure(hint=words):
            return fmt.text(words) if words else None
        case _:
            assert_never(reason)


def network_words(network: Network, host: str | None, fmt: Format = PLAIN) -> str:
    match network:
        case Network.OFFLINE:
            return "HF_HUB_OFFLINE is set"
        case Network.DEADLINE:
            return "the download deadline ran out"
        case Network.UNRESOLVED:
            return f"cannot resolve {fmt.text(host)}" if host else "the host name does not resolve"
        case Network.REFUSED:
            return "connection refused"
        case Network.TIMED_OUT:
            return "timed out"
        case Network.OTHER:
            return "network error"
        case _:
            assert_never(network)


def slurm_trouble(lead: str, problem: SlurmProblem, said: str, command: str, fmt: Format = PLAIN) -> str:
    """What went wrong asking Slurm: `lead` where it answered with a refusal, else why it could not."""
    match problem:
        case "refused":
            return f"{lead}: {fmt.text(said)}" if said else lead
        case "missing":
            return f"Slurm's {fmt.code(command)} is not installed on this machine"
        case "timeout":
            return f"Slurm did not answer in time ({fmt.code(command)})"
        case "no_job_id":
            return "sbatch printed no job id" + (f": {fmt.text(said)}" if said else "")
        case _:
            assert_never(problem)


def _scheduler_summary(f: SchedulerEnded, fmt: Format) -> str:
    t = fmt.text
    nodes = t(f.nodes) if f.nodes else "its node"
    match f.end:
        case SlurmEnd.COMMAND_NOT_FOUND:
            return "the job's command was not found on the compute node (exit 127)"
        case SlurmEnd.NOT_RUN:
            return "Slurm could not run the job" + (f" ({t(f.reason)})" if f.reason else "")
        case SlurmEnd.TIME_LIMIT:
            return "Slurm killed the job at its time limit" + (f" ({t(f.time_limit)})" if f.time_limit else "")
        case SlurmEnd.OUT_OF_MEMORY:
            return f"out of memory on the node ({nodes}): the job used more RAM than Slurm gave it"
        case SlurmEnd.NODE_FAIL:
            return f"the node failed under the job ({nodes}, NODE_FAIL)"
        case SlurmEnd.PREEMPTED:
            return "Slurm preempted the job for a higher-priority one"
        case SlurmEnd.BOOT_FAIL:
            return f"Slurm could not boot {nodes} for the job (BOOT_FAIL)"
        case SlurmEnd.DEADLINE:
            return "Slurm ended the job at its deadline (--deadline)"
        case SlurmEnd.OTHER:
            return f"Slurm ended the job as {t(f.state)}"
        case _:
            assert_never(f.end)


def _scheduler_hint(f: SchedulerEnded, fmt: Format) -> str | None:
    match f.end:
        case SlurmEnd.COMMAND_NOT_FOUND:
            return "install ms-swift there, or set [swift] bin to its path on a filesystem the nodes share"
        case SlurmEnd.NOT_RUN:
            nodes = fmt.text(f.nodes) if f.nodes else "its node"
            return f"is the log folder writable from {nodes}? slurmd's log there tells more"
        case SlurmEnd.TIME_LIMIT:
            return f"raise [slurm] time_limit, or {AGAIN}"
        case SlurmEnd.OUT_OF_MEMORY:
            return "ask for more (e.g. --mem=64G in [slurm] extra_args) or lower the batch size or max_length"
        case SlurmEnd.NODE_FAIL | SlurmEnd.PREEMPTED:
            return AGAIN
        case SlurmEnd.BOOT_FAIL:
            return "start it again; tell the cluster's admins if it repeats"
        case SlurmEnd.DEADLINE | SlurmEnd.OTHER:
            return None
        case _:
            assert_never(f.end)


def _refusal_hint(reason: str) -> str:
    if "partition" in reason:
        return "sinfo lists the cluster's partitions; set one in [slurm] partition in the config"
    if "account" in reason:
        return "sacctmgr show assoc user=$USER lists your accounts; set one in [slurm] account in the config"
    if "time limit" in reason:
        return "sinfo shows the partitions' time limits; lower [slurm] time_limit in the config"
    return "check the [slurm] section of the config; sinfo shows what the cluster has"
