"""Which weights a try loads, and the `swift infer` flags that load them.

The job's export when it has one, else its last checkpoint's LoRA adapters on the base model, or the checkpoint
named (`checkpoint=N`). Whatever is missing is a typed refusal saying what exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.try_errors import CheckpointNotFound, NothingToTry, TryExportRunning
from runner.try_types import Weights
from storage.models import ExportState, Job

CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# What a base model needs besides its folder (the checkpoint's args.json has them): a local folder is not
# recognised by name, and the template and system prompt are the training's.
BASE_KEYS = ("model_type", "template", "system", "torch_dtype")


def checkpoints(job: Job) -> dict[int, Path]:
    """The job's checkpoints on disk, by step (the run folder's `checkpoint-N`, merged exports left out)."""
    folder = (
        Path(job.run_dir)
        if job.run_dir
        else Path(job.progress.last_checkpoint).parent
        if job.progress.last_checkpoint
        else None
    )
    if folder is None or not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = CHECKPOINT.fullmatch(path.name)
        if match and path.is_dir():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def resolve(job: Job, step: int | None) -> Weights:
    """The weights to load (see the module's docstring), or the refusal that says what exists."""
    have = checkpoints(job)
    if step is not None:
        if step not in have:
            raise CheckpointNotFound(job.id, step, tuple(have))
        return Weights("checkpoint", str(have[step]), step, _base_of(have[step]))
    if job.export_state is ExportState.EXPORTING:
        raise TryExportRunning(job.id, tuple(have))
    if job.export_state is ExportState.EXPORTED and job.export_dir and Path(job.export_dir).is_dir():
        merged = Path(job.export_dir)
        match = CHECKPOINT.match(merged.name)
        return Weights("export", str(merged), int(match.group(1)) if match else None, _base_of(merged))
    last = job.progress.last_checkpoint
    if last and Path(last).is_dir():
        match = CHECKPOINT.fullmatch(Path(last).name)
        return Weights("checkpoint", last, int(match.group(1)) if match else None, _base_of(Path(last)))
    if have:  # the last one recorded is gone (save_total_limit), an earlier one is there
        newest = max(have)
        return Weights("checkpoint", str(have[newest]), newest, _base_of(have[newest]))
    raise NothingToTry(job.id, str(job.state), job.progress.step, str(job.export_state))


def _args_json(folder: Path) -> dict[str, object]:
    try:
        loaded = json.loads((folder / "args.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _base_of(folder: Path) -> str | None:
    model = _args_json(folder).get("model")
    return model if isinstance(model, str) else None


def infer_flags(weights: Weights) -> list[str]:
    """`swift infer`'s flags for the weights, on its transformers engine (ms-swift 3's `pt`)."""
    which = ["--adapters", weights.path] if weights.kind == "checkpoint" else ["--model", weights.path]
    return [*which, "--infer_backend", "transformers"]


def base_flags(weights: Weights) -> list[str] | None:
    """The base model's flags, for base answers beside an export (beside a checkpoint none are needed: its
    adapters are switched off); None when the export's args.json does not name it."""
    if weights.kind != "export" or weights.base_model is None:
        return None
    args = _args_json(Path(weights.path))
    flags = ["--model", weights.base_model, "--infer_backend", "transformers"]
    for key in BASE_KEYS:
        value = args.get(key)
        if isinstance(value, str) and value:
            flags += [f"--{key}", value]
    return flags
