"""The New job form's words: each field's label and the help under it, what a refusal says about the field it names
(the form's labels, never the chat's `out=` or `/train ...`), and which field that is."""

from __future__ import annotations

from bot.words.refusals import error_text, gpus_missing
from runner.errors import GpuMissing, NotAllowed, OutputInUse
from runner.job_request import FLOAT_LIMITS, INT_LIMITS, InvalidField, Rule, SourceOutside, folded
from runner.paths import OutsideRoot

LABELS = {
    "gpus": "GPUs",
    "output_dir": "Output folder",
    "profile": "Speed profile",
    "name": "Name",
    "note": "Note",
    "model": "Model",
    "dataset": "Datasets",
    "epochs": "Epochs",
    "learning_rate": "Learning rate",
    "lora_rank": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "max_length": "Longest sample (tokens)",
    "batch_size": "Batch size per GPU",
    "max_pixels": "Largest image (pixels)",
}
HELP = {
    "model": "a hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct, or a local folder inside the config's model folders "
    "([paths] model_roots)",
    "dataset": "hub ids or local files (inside [paths] data_roots), comma-separated; #N uses N samples, e.g. "
    "AI-ModelScope/LaTeX_OCR#500",
    "epochs": f"above 0 and at most {FLOAT_LIMITS['epochs']:g}, e.g. 2 or 0.5",
    "learning_rate": f"above 0 and at most {FLOAT_LIMITS['learning_rate']:g}, e.g. 1e-4",
    "lora_rank": f"a whole number, 1 to {INT_LIMITS['lora_rank']}, e.g. 8",
    "lora_alpha": f"a whole number, 1 to {INT_LIMITS['lora_alpha']}, e.g. 32",
    "max_length": f"a whole number, 1 to {INT_LIMITS['max_length']}, e.g. 4096",
    "batch_size": f"a whole number, 1 to {INT_LIMITS['batch_size']}, e.g. 2",
    "max_pixels": f"a whole number, 1 to {INT_LIMITS['max_pixels']}, e.g. 1003520",
}
# the form's field that a request's field (or override key) came from
FORM_FIELD = {"gpus": "gpus", "output_dir": "out", "profile": "profile"}
_RULES = {
    Rule.EMPTY: "is empty: give a few words, or leave the field out",
    Rule.EMPTY_ITEM: "has an empty entry",
    Rule.CPU_MIXED: "mixes the CPU with GPUs: tick either the CPU or GPUs",
    Rule.NEGATIVE: "has a negative number",
    Rule.NOT_A_GPU: "is not a GPU of this machine",
    Rule.GPU_ABOVE_MAX: "names a GPU above {limit:g}",
    Rule.GPU_TWICE: "names a GPU twice",
    Rule.TOO_MANY_GPUS: "has {size} GPUs; a job uses at most {limit:g}",
    Rule.CONTROL_CHARACTER: "contains a control character (a newline, tab or NUL)",
    Rule.BROKEN_CHARACTER: "holds a character that no file name can hold",
    Rule.TOO_LONG: "is {size} characters long; at most {limit:g} will do",
    Rule.NAME_TOO_LONG: "has a folder name of {size} bytes (letters such as é or 训 take 2 to 4); at most {limit:g} "
    "will do",
    Rule.PATH_TOO_LONG: "makes a path of {size} bytes; at most {limit:g} will do",
    Rule.WHOLE_NUMBER: "is not a whole number from 1 to {limit:g}",
    Rule.NUMBER: "is not a number above 0 and at most {limit:g}",
    Rule.NOT_A_SOURCE: "is not a hub id like Qwen/Qwen2.5-VL-7B-Instruct nor a path (no spaces, quotes or leading -)",
}


def field_of(exc: Exception) -> str:
    """The form field a refusal is about ("form": the whole form)."""
    match exc:
        case InvalidField(field=name) | OutsideRoot(field=name):
            return FORM_FIELD.get(name, name)
        case GpuMissing():
            return "gpus"
        case OutputInUse():
            return "out"
    return "form"


def form_error(exc: Exception, out_example: str) -> str:
    """What the form says about a refusal; `out_example` an output folder that would do."""
    match exc:
        case SourceOutside(field=field, item=item, resolved=resolved, roots=roots, root_key=key):
            where = ", ".join(map(str, roots)) if roots else f"none: [{key.replace('.', '] ')} is empty"
            return (
                f"{LABELS.get(field, field)} “{item}” is not a hub id, and as a local path (it leads to "
                f"{resolved}) it lies outside the folders allowed for it ({where})."
            )
        case OutsideRoot(path=path, resolved=resolved, roots=roots):
            root = roots[0] if roots else resolved
            where = (
                "is the output folder itself"
                if resolved == folded(root)
                else f"leads to {resolved}, outside the output folder {root}"
            )
            return f"Output folder “{path}” {where}: choose a folder inside it, e.g. {out_example}."
        case InvalidField(field=field, value=value, rule=rule, allowed=allowed):
            label = LABELS.get(field, field)
            if rule is Rule.NOT_ALLOWED:
                return f"{label} “{value}” is not one of {', '.join(allowed) or 'the settings this recipe takes'}."
            item = f" (“{exc.item}”)" if exc.item is not None and exc.item != value else ""
            return f"{label} “{value}”{item} {_RULES[rule].format(limit=exc.limit or 0, size=exc.size)}."
        case GpuMissing(suggest=suggest):
            return f"{gpus_missing(exc)}. Tick {'GPU ' + ', '.join(suggest) if suggest else 'the CPU'} instead."
        case OutputInUse(output_dir=output_dir, job_id=job_id):
            return (
                f"Job {job_id} is still active and writes to {output_dir}: two jobs in one folder would mix their "
                f"checkpoints. Choose another output folder (e.g. {str(output_dir).rstrip('/')}-2), or stop job "
                f"{job_id} first."
            )
        case NotAllowed(job_id=None):
            return "You may not start jobs: ask an admin to add you to trainbot's access list ([access] users)."
    return error_text(exc)
