"""What `/train help` says: the usage of every command, with examples, written for people reading Slack.

Examples use `{out}` for a valid `out=` folder (it depends on where the output folder is configured).
"""

from __future__ import annotations

from dataclasses import dataclass

from runner import actions
from runner.actions import Action
from storage.models import JobState


@dataclass(frozen=True)
class Topic:
    usage: str
    about: str
    examples: tuple[str, ...]


def applies(action: Action) -> str:
    """In which states a job allows `action` (runner/actions.py's answer, which the buttons and refusals share)."""
    states = [str(s) for s in JobState if s in actions.STATES[action]]
    listed = f"{', '.join(states[:-1])} or {states[-1]}" if len(states) > 1 else states[0]
    return f"For a job that is {listed}" + (" and has a checkpoint." if action is Action.EXPORT else ".")


GPU_HELP = "`gpu=0` (one GPU), `gpu=0,1` (several, by number; `/train gpus` lists them) or `gpu=cpu`"
OUT_HELP = (
    "`out=<dir>`: where the run writes, inside the bot's output folder, e.g. `out={out}` "
    '(quote names with spaces: `out="{out} 2"`)'
)

# The keys `vlm` lets people set: name -> what it takes. The grammar checks values; this says them in words.
VLM_KEYS: dict[str, str] = {
    "model": "hub id, or a local path in the config's model folders, e.g. `model=Qwen/Qwen2.5-VL-7B-Instruct`",
    "dataset": "one or more hub ids or paths (in the config's data folders), comma-separated, `#N` for N "
    "samples, e.g. `dataset=AI-ModelScope/LaTeX_OCR#500`",
    "epochs": "number of epochs, e.g. `epochs=2` or `epochs=0.5`",
    "learning_rate": "also `lr`; e.g. `lr=1e-4`",
    "lora_rank": "LoRA rank, e.g. `lora_rank=8`",
    "lora_alpha": "LoRA alpha, e.g. `lora_alpha=32`",
    "max_length": "longest sample in tokens (at most 131072), e.g. `max_length=4096`",
    "batch_size": "per-device batch size, e.g. `batch_size=2`",
    "max_pixels": "largest image size in pixels, e.g. `max_pixels=1003520`",
}

TOPICS: dict[str, Topic] = {
    "llm": Topic(
        "llm gpu=<ids> out=<dir> [name=<name>] [profile=fast|exact] [--dry-run] [--hold]",
        "Fine-tunes a model with the team's fixed LLM recipe (by default `Qwen/Qwen2.5-7B-Instruct`, LoRA, "
        "alpaca-gpt4 zh+en and self-cognition, 1 epoch). You choose only the GPUs and the output folder; "
        "everything else is fixed. `name=` names the job (quote a name with spaces; without one its name is the "
        "output folder's last part). `profile=` is `fast` (default) or `exact`. "
        "`--dry-run` shows the exact `swift sft` command without starting anything; `--hold` records the "
        "job without starting it (`start <id>` does).",
        ("llm gpu=0 out={out}", 'llm gpu=0,1 out={out} name="lr sweep 3" --dry-run'),
    ),
    "vlm": Topic(
        "vlm gpu=<ids> out=<dir> [name=<name>] [key=value ...] [--dry-run] [--hold]",
        "Fine-tunes a vision-language model with the VLM recipe; these keys may be changed:\n"
        + "\n".join(f"  • `{key}`: {what}" for key, what in VLM_KEYS.items()),
        ("vlm gpu=0 out={out}", "vlm gpu=0,1 out={out} epochs=2 lr=1e-4 max_length=4096"),
    ),
    "start": Topic(
        "start <id>",
        "Starts a job created with `--hold`, or runs a failed or stopped one again (from its "
        "last checkpoint). " + applies(Action.START),
        ("start k3x9q",),
    ),
    "stop": Topic(
        "stop <id>",
        "Stops a job cleanly (swift saves what it has first); a queued one leaves the line. " + applies(Action.STOP),
        ("stop k3x9q",),
    ),
    "export": Topic(
        "export <id>",
        "Merges the LoRA of the job's last checkpoint into the model, in the background. " + applies(Action.EXPORT),
        ("export k3x9q",),
    ),
    "try": Topic(
        "try <id> [checkpoint=N] [gpu=0|cpu] [max_tokens=N] [question]",
        "Asks the job's model a question (its export if it has one, else its last checkpoint), the answer "
        "streamed into the job's thread; reply in the thread (mentioning the bot, or starting with `try`) to go "
        "on with the conversation. Without a question: the recipe's own check, who the model says it is, "
        "fine-tuned and base model side by side. It waits for the job's GPU like any job (`gpu=cpu` runs on the "
        "CPU) and keeps the model loaded a few idle minutes. `max_tokens=` bounds the answer (256 by default).",
        ("try k3x9q", "try k3x9q Who are you?", "try k3x9q checkpoint=50 gpu=cpu 你是谁？"),
    ),
    "status": Topic(
        "status [<id>|<name>]",
        "Without an id: a short overview of the active jobs. With one, or a job's name: that "
        "job's progress (a name several jobs share, or part of one, lists them).",
        ("status", "status k3x9q", 'status "lr sweep 3"'),
    ),
    "note": Topic(
        "note <id> <text>",
        "Gives the job a note (the rest of the line, as typed), shown on its card and page; it "
        "replaces the note it had. Its owner or an admin may.",
        ("note k3x9q lr 1e-4 was too high",),
    ),
    "show": Topic("show <id>", "Everything about one job: recipe, command, GPUs, progress, errors.", ("show k3x9q",)),
    "logs": Topic(
        "logs <id> [lines=N] [full]",
        "The end of the job's log (`lines=N` lines), or the whole log as a file with `full`.",
        ("logs k3x9q", "logs k3x9q lines=200", "logs k3x9q full"),
    ),
    "delete": Topic(
        "delete <id>",
        "Forgets a job (its output folder is kept): a queued one leaves the line and the jobs behind it move up; a "
        "running one must be stopped first. " + applies(Action.DELETE),
        ("delete k3x9q",),
    ),
    "list": Topic(
        "list [llm|vlm|all] [state=<state>] [name=<text>]",
        "Lists jobs. `state=` is one of created, queued, starting, running, stopping, succeeded, failed, stopped, "
        "or `active` (not ended yet). `name=` keeps the jobs whose name, output folder, owner or id holds the "
        "text (in any case).",
        ("list", "list vlm", "list state=active", "list name=sweep"),
    ),
    "compare": Topic(
        "compare <id> <id> [<id> ...]",
        "Puts 2 to 8 jobs side by side: their loss and eval-loss curves on one chart (posted in the first job's "
        "thread) and what differs between them (settings, how long they ran, their final losses).",
        ("compare k3x9q m4z8p", "compare k3x9q m4z8p r7t2w"),
    ),
    "gpus": Topic("gpus", "Shows the GPUs: which are free, and which job or process uses each.", ("gpus",)),
    "help": Topic("help [<command>]", "This help, or the details of one command.", ("help", "help vlm")),
}

COMMANDS: tuple[str, ...] = tuple(TOPICS)

# Words people reach for that are not commands -> the command(s) to suggest instead.
SYNONYMS: dict[str, str] = {
    "cancel": "stop",
    "kill": "stop",
    "abort": "stop",
    "rm": "delete",
    "remove": "delete",
    "del": "delete",
    "ls": "list",
    "jobs": "list",
    "ps": "list",
    "log": "logs",
    "tail": "logs",
    "gpu": "gpus",
    "info": "show",
    "describe": "show",
    "merge": "export",
    "diff": "compare",
    "vs": "compare",
    "resume": "start",
    "restart": "start",
    "train": "llm` or `vlm",
    "run": "llm` or `vlm",
    "sft": "llm` or `vlm",
    "new": "llm` or `vlm",
    "create": "llm` or `vlm",
}


def _examples(topic: Topic, out: str) -> str:
    return ", ".join(f"`/train {ex.format(out=out)}`" for ex in topic.examples)


def help_text(topic: str | None = None, *, out_example: str = "output/my-run") -> str:
    """The usage of every command, or of `topic` (a command name); an unknown topic gives the overview."""
    one = TOPICS.get((topic or "").strip().lower())
    if one is not None:
        lines = [f"*`/train {one.usage}`*", one.about, f"Examples: {_examples(one, out_example)}"]
        if one.usage.startswith(("llm", "vlm")):
            lines += [f"• {GPU_HELP}", "• " + OUT_HELP.format(out=out_example)]
        return "\n".join(lines)
    lines = ["*`/train`: fine-tune models with ms-swift from Slack*", "*Start a job*"]
    lines += [f"• `/train {TOPICS[name].usage}`" for name in ("llm", "vlm")]
    lines += [f"  {GPU_HELP}", "  " + OUT_HELP.format(out=out_example)]
    lines.append("*Follow and manage jobs* (`<id>` is on the job card, e.g. `k3x9q`)")
    lines += [f"• `/train {TOPICS[name].usage}`: {TOPICS[name].about}" for name in COMMANDS[2:]]
    lines.append(
        f"Examples: `/train llm gpu=0 out={out_example}`, `/train status`. "
        "More on one command: `/train help <command>`, e.g. `/train help vlm`."
    )
    return "\n".join(lines)
