"""Issue 30 on a real GPU: the fixed recipe's job, then `try` of its model through trainbot (the recipe's check,
fine-tuned and base side by side, then a question to the loaded model), against `swift infer` run by hand on the
same checkpoint with the same question.

    python3 scripts/gpu/try_check.py --config trainbot.toml --work DIR [--gpu 0]

Prints and writes DIR/try.json: the load, the first token and tokens per second of each answer (trainbot: from its
TryDone and TryAnswer figures; by hand: stdout time-stamped as swift prints it), and the answers quoted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runner.access import Caller
from runner.backends.local import device_env
from runner.child_env import child_env
from runner.command import swift_env
from runner.config import Config, load_config
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from runner.try_types import Message, TryAnswer, TryAsk, TryDone
from storage.models import JobState, Kind

QUESTION = "Who are you?"
TOKENS = 64


def rate(answer: TryAnswer) -> float | None:
    """Tokens a second after the first (the decode speed)."""
    if not answer.completion_tokens or answer.first_token_s is None or answer.total_s <= answer.first_token_s:
        return None
    return (answer.completion_tokens - 1) / (answer.total_s - answer.first_token_s)


def facts(done: TryDone) -> dict[str, Any]:
    return {"waited_s": done.waited_s, "load_s": done.load_s, "warm": done.warm, "first_token_s": done.first_token_s,
            "total_s": done.total_s, "answers": [
                {"question": a.question, "side": a.side, "text": a.text, "tokens": a.completion_tokens,
                 "first_token_s": a.first_token_s, "total_s": a.total_s, "tokens_per_s": rate(a)}
                for a in done.answers]}


async def ask(rt: Runtime, job_id: str, messages: tuple[Message, ...], gpu: str) -> TryDone:
    done = None
    async for event in await rt.tries.open(TryAsk(job_id, messages, gpus=(gpu,), max_tokens=TOKENS,
                                                  temperature=0.0), Caller(console=True)):
        if isinstance(event, TryDone):
            done = event
    assert done is not None
    return done


def by_hand(config: Config, checkpoint: str, gpu: str, work: Path) -> dict[str, Any]:
    """`swift infer --adapters <ckpt>` as a person runs it: the question typed, the answer streamed; stdout
    time-stamped as it comes."""
    argv = [config.swift_bin, "infer", "--adapters", checkpoint, "--infer_backend", "transformers", "--stream", "true",
            "--max_new_tokens", str(TOKENS), "--temperature", "0"]
    env = child_env(config, swift_env(config) | device_env((gpu,)))  # what trainbot gives its own processes
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(work / "infer.log").open("w"),
                            env=env)
    assert proc.stdin is not None and proc.stdout is not None
    out = b""
    asked = first = ended = None
    while True:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        now = time.monotonic() - t0
        out += chunk
        if asked is None and b"<<<" in out:
            asked = now
            proc.stdin.write(f"{QUESTION}\n".encode())
            proc.stdin.flush()
            mark = len(out)
        elif asked is not None and first is None and out[mark:].strip(b"< \n"):
            first = now
        if asked is not None and b"-" * 50 in out[mark:] and ended is None:
            ended = now
            proc.stdin.write(b"exit\n")
            proc.stdin.flush()
    proc.wait()
    answer = out[mark:].split(b"-" * 50)[0].decode(errors="replace").strip("< \n") if asked is not None else ""
    return {"argv": argv, "prompt_ready_s": asked, "first_token_s": None if first is None or asked is None
            else first - asked, "answer_s": None if ended is None or asked is None else ended - asked,
            "process_s": time.monotonic() - t0, "answer": answer, "returncode": proc.returncode}


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--gpu", default="0")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config, base_dir=args.work)
    result: dict[str, Any] = {}
    rt = await Runtime.open(config)
    await rt.start()
    try:
        t = time.monotonic()
        job = await rt.supervisor.submit(JobRequest(Kind.LLM, (args.gpu,), config.output_root / "tried", {}))
        while not (job := await rt.store.require(job.id)).state.is_terminal:
            await asyncio.sleep(1)
        print(f"job {job.id} {job.state} in {time.monotonic() - t:.1f} s: {job.progress.last_checkpoint}", flush=True)
        if job.state is not JobState.SUCCEEDED:
            return 1
        result["job"] = {"id": job.id, "checkpoint": job.progress.last_checkpoint, "s": time.monotonic() - t}
        print("warm try process ready:", await rt.tries.warm_ready(), flush=True)
        check = await ask(rt, job.id, (), args.gpu)
        result["check"] = facts(check)
        print(json.dumps(result["check"], ensure_ascii=False, indent=1), flush=True)
        loaded = await ask(rt, job.id, (Message("user", QUESTION),), args.gpu)
        result["loaded"] = facts(loaded)
        print(json.dumps(result["loaded"], ensure_ascii=False, indent=1), flush=True)
    finally:
        await rt.close()
    cold = await Runtime.open(config.changed(runner={"warm_start": False}))  # the same store, no warm process
    await cold.start()
    try:
        fresh = await ask(cold, result["job"]["id"], (Message("user", QUESTION),), args.gpu)
        result["afresh"] = facts(fresh)
        print(json.dumps(result["afresh"], ensure_ascii=False, indent=1), flush=True)
    finally:
        await cold.close()
    result["by_hand"] = by_hand(config, str(result["job"]["checkpoint"]), args.gpu, args.work)
    print(json.dumps(result["by_hand"], ensure_ascii=False, indent=1), flush=True)
    (args.work / "try.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
