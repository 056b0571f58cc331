"""A stand-in for the `swift` CLI where many jobs must run at once on a 2-core machine (tests of the Slack bot).

`fake_swift.py sft --output_dir D [--max_steps N] [--save_steps K] [--eval_steps E] [--logging_steps L] ...`
writes what ms-swift 4.6 writes (see tests/fixtures/swift46/sft_ok.logging.jsonl): `D/vK-YYYYMMDD-HHMMSS/` (K: the
run folders there before) with args.json, a logging.jsonl line per logged step, eval lines, `checkpoint-N/` folders
(trainer_state.json last), then the train_runtime line and the summary line naming the last checkpoint. Each step
takes FAKE_SWIFT_STEP_S seconds (default 0.2); FAKE_SWIFT_MEMORY_GIB, when set, is logged as `memory(GiB)`. The
loss falls faster the higher `--learning_rate` (1e-4 when not given), which it logs as swift does;
`--resume_from_checkpoint .../checkpoint-N` goes on from step N+1, as swift's resume does. SIGINT ends it like
swift's trainer (after FAKE_SWIFT_STOP_S seconds, default 0): KeyboardInterrupt, the summary line, exit 254.
FAKE_SWIFT_SAY_FILE names a file whose lines it prints at the start (log text to show); an output_dir containing
FAKE_SWIFT_FAIL_IN makes it print them to stderr again after step 2, then a RuntimeError naming the first, and exit
1 (a failure with that tail and cause). FAKE_SWIFT_PRINT_STEPS=1 prints each logged step's record to stdout as swift
does (`{'loss': ..., 'global_step/max_steps': '3/10', ...}`): a log that grows a line a step.
`fake_swift.py export --adapters C --output_dir D ...` makes D (after FAKE_SWIFT_EXPORT_S seconds, default 0, and
once the file FAKE_SWIFT_EXPORT_UNTIL names is there, if it names one) and exits 0. Other flags are accepted and
ignored.
FAKE_SWIFT_STARTS names a file each run appends a line to as it starts (`sft <pid>`, `export <pid>`): how many
trainers and exports ever ran.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()


def fake_swift_bin(root: Path) -> str:
    """An executable at `root/fake-swift` that runs this script: a `[swift] bin` for tests and benchmarks."""
    path = root / "fake-swift"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SCRIPT}" "$@"\n')
    path.chmod(0o755)
    return str(path)


class Interrupted(Exception):
    pass


def _on_sigint(signum: int, frame: object) -> None:
    raise Interrupted


def flags(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for word in argv:
        if word.startswith("--"):
            key = word[2:]
            out[key] = []
        elif key is not None:
            out[key].append(word)
    return out


def one(f: dict[str, list[str]], key: str, default: str) -> str:
    return (f.get(key) or [default])[0]


def write_line(path: Path, rec: dict[str, object]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


def checkpoint(run_dir: Path, step: int) -> Path:
    ckpt = run_dir / f"checkpoint-{step}"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "adapter_config.json").write_text("{}")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def sft(f: dict[str, list[str]]) -> int:
    total = int(one(f, "max_steps", "10"))
    save, evals = int(one(f, "save_steps", "5")), int(one(f, "eval_steps", "0"))
    every = int(one(f, "logging_steps", "1"))
    step_s = float(os.environ.get("FAKE_SWIFT_STEP_S", "0.2"))
    lr = float(one(f, "learning_rate", "1e-4"))
    memory = os.environ.get("FAKE_SWIFT_MEMORY_GIB")  # GPU memory to log, as swift does on a GPU
    resumed = one(f, "resume_from_checkpoint", "")
    first = int(resumed.rsplit("-", 1)[1]) + 1 if resumed.rsplit("-", 1)[-1].isdigit() else 1
    out_dir = Path(one(f, "output_dir", "output"))
    version = len(list(out_dir.glob("v*-*"))) if out_dir.is_dir() else 0
    run_dir = out_dir / f"v{version}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps({k: v for k, v in f.items()}))
    log = run_dir / "logging.jsonl"
    print(f"run sh: `python swift/cli/sft.py {' '.join(sys.argv[2:])}`", flush=True)
    say_file = os.environ.get("FAKE_SWIFT_SAY_FILE")
    say = Path(say_file).read_text().splitlines() if say_file else []
    print("\n".join(say), flush=True)
    fail_in = os.environ.get("FAKE_SWIFT_FAIL_IN")
    fail = fail_in is not None and fail_in != "" and fail_in in str(run_dir)
    print_steps = os.environ.get("FAKE_SWIFT_PRINT_STEPS") == "1"
    started, step, last, losses = time.time(), 0, None, []
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        for step in range(first, total + 1):
            time.sleep(step_s)
            loss = 2.0 / (1 + 0.1 * step * lr / 1e-4)
            losses.append(loss)
            elapsed = time.time() - started
            common = {
                "epoch": round(step / total, 4),
                "global_step/max_steps": f"{step}/{total}",
                "elapsed_time": f"{elapsed:.0f}s",
                "remaining_time": f"{(total - step) * step_s:.0f}s",
                "train_speed(s/it)": step_s,
            }
            if memory:
                common["memory(GiB)"] = float(memory)
            if step % every == 0 or step in (first, total):
                rec = {
                    "loss": round(loss, 6),
                    "grad_norm": round(0.4 + loss / 4, 6),
                    "learning_rate": lr,
                    "token_acc": round(1 - loss / 2.2, 6),
                    **common,
                }
                write_line(log, rec)
                if print_steps:
                    print({k: str(v) for k, v in rec.items()}, flush=True)
            if evals and (step % evals == 0 or step == total):
                write_line(log, {"eval_loss": round(loss * 1.05, 6), "eval_runtime": 0.1, **common})
            if step % save == 0 or step == total:
                last = checkpoint(run_dir, step)
            if fail and step == 2:
                print("\n".join(say) + f"\nRuntimeError: fake failure {say[:1]}", file=sys.stderr, flush=True)
                return 1
    except Interrupted:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # its bookkeeping takes FAKE_SWIFT_STOP_S seconds
        time.sleep(float(os.environ.get("FAKE_SWIFT_STOP_S", "0")))
        print("Traceback (most recent call last):\nKeyboardInterrupt", file=sys.stderr, flush=True)
        write_line(
            log,
            {
                "last_model_checkpoint": str(last) if last else None,
                "best_model_checkpoint": None,
                "global_step": step - 1,
            },
        )
        return 254
    mean = sum(losses) / max(1, len(losses))
    write_line(
        log,
        {
            "train_runtime": time.time() - started,
            "train_loss": round(mean, 6),
            "epoch": 1.0,
            "global_step/max_steps": f"{total}/{total}",
            "elapsed_time": "1s",
            "remaining_time": "0s",
            "train_speed(s/it)": step_s,
        },
    )
    write_line(log, {"last_model_checkpoint": str(last), "best_model_checkpoint": str(last), "global_step": total})
    print(f"[INFO:swift] last_model_checkpoint: {last}", file=sys.stderr, flush=True)
    return 0


def export(f: dict[str, list[str]]) -> int:
    out = Path(one(f, "output_dir", "exported"))
    time.sleep(float(os.environ.get("FAKE_SWIFT_EXPORT_S", "0")))  # an export of a large model takes a while
    until, end = os.environ.get("FAKE_SWIFT_EXPORT_UNTIL"), time.monotonic() + 120
    while until and not os.path.exists(until) and time.monotonic() < end:
        time.sleep(0.05)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text("{}")
    print(f"[INFO:swift] Successfully merged LoRA and saved in {out}.", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("--version", "-V"):
        print("ms-swift 4.6.0 (fake)")
        return 0
    if not argv or argv[0] not in ("sft", "export"):
        print(f"fake swift: unknown command {argv[:1]}", file=sys.stderr)
        return 2
    if starts := os.environ.get("FAKE_SWIFT_STARTS"):
        with open(starts, "a") as f:
            f.write(f"{argv[0]} {os.getpid()}\n")
    return sft(flags(argv[1:])) if argv[0] == "sft" else export(flags(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
