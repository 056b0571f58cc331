"""A try session's process: swift's own inference with the job's model loaded once, spoken to in JSON lines.

Run by swift's own interpreter, like runner/swift_entry.py:

    python .../runner/try_entry.py [--base FLAGS_JSON] -- INFER_FLAGS...
    python .../runner/try_entry.py --warm

INFER_FLAGS are `swift infer`'s (`--adapters <checkpoint>` or `--model <export>`, `--infer_backend transformers`):
the model and its template are set up by `swift infer`'s own pipeline (SwiftInfer: the checkpoint's args.json,
the base model, the adapters) and answered by its transformers engine (the `pt` backend of ms-swift 3, renamed
`transformers` in 4.x), streamed. `--base` gives the flags of the base model, for base answers beside an export
(beside a checkpoint, the base answers come from the same model with its adapters switched off).

Stdout carries the protocol only (whatever swift prints goes to stderr, the session's log):
    out  {"loaded": {"load_s": ..., "import_s": ..., "warm": ...}}   or {"failed": "...", "tail": "..."}, then exit
    in   {"id": "r1", "messages": [{"role": "user", "content": "..."}], "max_tokens": 64, "temperature": 0,
          "side": "tuned" | "base"}
    out  {"id": "r1", "delta": "..."} ... then {"id": "r1", "done": {"finish_reason": ..., "prompt_tokens": ...,
          "completion_tokens": ..., "first_token_s": ..., "total_s": ...}}   or {"id": "r1", "error": "..."}
Stdin closed (the bot ended the session, or died): it leaves.

`--warm` imports swift's inference before any session is asked for, prints {"ready": {...}}, then waits for one
line {"args": [...], "argv": [...], "env": {...}, "log": ...}: `args` what would follow this file on a fresh start,
`argv` that whole command, `env` its environment, `log` the session's log. The session runs here unless something
read at import could differ (runner/swift_entry.py's cold_reason); then this process becomes the fresh one (exec).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import IO, Any

ENTRY_MARK = "runner/try_entry.py"
WARM = "--warm"
BASE = "--base"


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # the script's own folder (runner/) must not shadow top-level modules of swift's dependencies
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    began = time.monotonic()
    out = _protocol_out()
    warm = sys.argv[1:] == [WARM]
    args = _warm(out, began) if warm else sys.argv[1:]
    base: list[str] | None = None
    if args[:1] == [BASE]:
        base, args = json.loads(args[1]), args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    serve(out, args, base, import_began=began, warm=warm)


def _protocol_out() -> IO[str]:
    """The protocol keeps the real stdout; fd 1 becomes stderr, so nothing swift prints can break a line."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    return out


def send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message, ensure_ascii=False) + "\n")
    out.flush()


def _warm(out: IO[str], began: float) -> list[str]:
    """Import swift's inference, wait for a session; becomes a fresh start of it where a warm one may differ."""
    entry = _swift_entry()
    import_env = dict(os.environ)
    os.environ.setdefault(entry.NVML_CHECK, "1")
    from swift.infer_engine import InferRequest, RequestConfig  # noqa: F401  (what serve imports, loaded now)
    from swift.pipelines.infer import SwiftInfer  # noqa: F401

    cuda = entry._cuda_seen()
    os.environ.clear()
    os.environ.update(import_env)
    imported = entry._module_files()
    send(out, {"ready": {"import_s": round(time.monotonic() - began, 3), "cuda": cuda}})
    line = sys.stdin.readline()
    if not line:
        os._exit(0)  # closed before any session came
    job = json.loads(line)
    _take_log(job["log"], job.get("preamble"))
    why = entry.cold_reason(
        import_env, job["env"], cuda=cuda, cuda_started=entry._cuda_started(), changed=entry.changed_since(imported)
    )
    if why is not None:
        print(f"[trainbot] not started warm: {why}; starting afresh", file=sys.stderr, flush=True)
        out.flush()
        os.dup2(out.fileno(), 1)  # the fresh process finds the protocol where a fresh start has it
        os.execvpe(job["argv"][0], job["argv"], job["env"])
    os.environ.clear()
    os.environ.update(job["env"])
    print(
        "[trainbot] started warm: in the process that imported swift before the session came",
        file=sys.stderr,
        flush=True,
    )
    return list(job["args"])


def _swift_entry() -> Any:
    """runner/swift_entry.py beside this file (its warm-start checks), loaded by path: runner/ is not on the path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "swift_entry.py")
    spec = importlib.util.spec_from_file_location("trainbot_swift_entry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _take_log(log: str, preamble: str | None) -> None:
    """Stderr (and fd 1, which points there) to the session's log, after what the imports printed."""
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if preamble:
        with contextlib.suppress(OSError):
            with open(preamble, "rb") as earlier:
                os.write(fd, earlier.read())
            os.unlink(preamble)
    os.dup2(fd, 2)
    os.dup2(fd, 1)
    os.close(fd)


def serve(out: IO[str], args: list[str], base: list[str] | None, *, import_began: float, warm: bool) -> None:
    """Load the model the way `swift infer` does, then answer requests until stdin closes."""
    try:
        from swift.pipelines.infer import SwiftInfer

        imported = time.monotonic()
        tuned = SwiftInfer(args).infer_engine
    except BaseException as exc:  # whatever stops the load is the answer
        traceback.print_exc()
        send(out, {"failed": f"{type(exc).__name__}: {exc}"[:2000]})
        sys.stderr.flush()
        os._exit(1)
    send(
        out,
        {
            "loaded": {
                "import_s": round(imported - import_began, 3),
                "load_s": round(time.monotonic() - imported, 3),
                "warm": warm,
            }
        },
    )
    engines: dict[str, Any] = {"tuned": tuned}
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        rid = request.get("id")
        try:
            answer(out, engines, base, request)
        except Exception as exc:  # one bad request does not end the session
            traceback.print_exc()
            send(out, {"id": rid, "error": f"{type(exc).__name__}: {exc}"[:2000]})
    sys.stderr.flush()
    os._exit(0)


def answer(out: IO[str], engines: dict[str, Any], base: list[str] | None, request: dict[str, Any]) -> None:
    from swift.infer_engine import InferRequest, RequestConfig

    rid, side = request.get("id"), request.get("side", "tuned")
    config = RequestConfig(max_tokens=request.get("max_tokens"), temperature=request.get("temperature"), stream=True)
    began = time.monotonic()
    first: float | None = None
    finish, usage = None, None
    with _side(engines, side, base) as engine:
        for chunk in engine.infer([InferRequest(messages=request["messages"])], config, use_tqdm=False)[0]:
            if chunk is None:
                continue
            choice = chunk.choices[0]
            if choice.delta.content:
                if first is None:
                    first = time.monotonic() - began
                send(out, {"id": rid, "delta": choice.delta.content})
            finish, usage = choice.finish_reason or finish, chunk.usage or usage
    send(
        out,
        {
            "id": rid,
            "done": {
                "finish_reason": finish,
                "first_token_s": None if first is None else round(first, 4),
                "total_s": round(time.monotonic() - began, 4),
                "prompt_tokens": getattr(usage, "prompt_tokens", None),
                "completion_tokens": getattr(usage, "completion_tokens", None),
            },
        },
    )


@contextlib.contextmanager
def _side(engines: dict[str, Any], side: str, base: list[str] | None) -> Iterator[Any]:
    """The engine answering for `side`: the tuned model; for the base, the same model with its LoRA adapters
    switched off (peft's disable_adapter), or, beside an export (a merged model), the base model loaded once."""
    tuned = engines["tuned"]
    if side == "tuned":
        yield tuned
        return
    if side != "base":
        raise ValueError(f"unknown side {side!r}")
    if hasattr(tuned.model, "disable_adapter"):
        with tuned.model.disable_adapter():
            yield tuned
        return
    if "base" not in engines:
        if not base:
            raise ValueError("no base model to answer with")
        from swift.pipelines.infer import SwiftInfer

        engines["base"] = SwiftInfer(base).infer_engine
    yield engines["base"]


if __name__ == "__main__":
    main()
