"""One way in (issue 27): every front end builds the runner's JobRequest and the runner's one check judges it.
Only Slack and the console read chat words; a rooted local `model=` and a symlink out of the output folder are
judged alike from the console, the HTTP API and (tests/test_web.py) the web form."""

from __future__ import annotations

import ast
from pathlib import Path

import requests

from bot.chat.handlers import Handlers
from runner.access import Caller
from tests.api_env import serving
from tests.conftest import OpenRuntime
from tests.slack_env import fake_config

ROOT = Path(__file__).resolve().parent.parent
CHAT_ONLY = ("bot.chat.grammar", "bot.chat.settings", "shlex")  # the chat's parser, its words, and a shell's quoting
ROOTED = '[paths]\nmodel_roots = ["models"]\n'


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_api_and_the_web_form_do_not_read_chat_words() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.startswith(CHAT_ONLY))
        for folder in ("bot/http/api", "bot/http/web")
        for p in sorted((ROOT / folder).glob("*.py"))
    }
    assert {p: found for p, found in offenders.items() if found} == {}


def _rooted(tmp_path: Path) -> Path:
    fake_config(tmp_path, sections=ROOTED)
    model = tmp_path / "models" / "qwen-vl"
    model.mkdir(parents=True)
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "escape-link").symlink_to(tmp_path)
    return model


async def test_the_console_takes_a_rooted_model_and_follows_a_symlink_out(
    tmp_path: Path, open_runtime: OpenRuntime
) -> None:
    model = _rooted(tmp_path)
    runtime = await open_runtime(fake_config(tmp_path, sections=ROOTED))
    handlers, me = Handlers(runtime), Caller(user_id="UALICE")
    made = await handlers.handle("vlm gpu=0 out=output/v model=models/qwen-vl --hold", me)
    assert made.ok and made.job_id, made.text
    assert (await runtime.store.require(made.job_id)).overrides == {"model": str(model)}
    escape = await handlers.handle("llm gpu=0 out=output/escape-link/x --hold", me)
    assert not escape.ok and str(tmp_path / "x") in escape.text
    assert "leads to" in escape.text and "symbolic link" in escape.text, escape.text
    dry = await handlers.handle("llm gpu=0 out=output/escape-link/x --dry-run", me)
    assert not dry.ok and "outside the output folder" in dry.text
    assert len(await runtime.store.list_jobs()) == 1


def test_the_api_takes_the_same_rooted_model(tmp_path: Path) -> None:
    model = _rooted(tmp_path)
    with serving(tmp_path) as api:
        made = requests.post(
            f"{api.url}/training/jobs",
            json={"gpu_id": "0", "output_dir": "output/v", "model": "models/qwen-vl"},
            timeout=10,
        )
        assert made.status_code == 201, made.text
        job = requests.get(f"{api.url}/training/jobs/{made.json()['job_id']}", timeout=10).json()
        assert job["overrides"] == {"model": str(model)} and f"--model {model}" in job["command"]
        outside = requests.post(
            f"{api.url}/training/jobs", json={"gpu_id": "0", "output_dir": "output/w", "model": "/etc"}, timeout=10
        )
        assert outside.status_code == 422 and outside.json()["fields"][0]["field"] == "model"
        assert outside.json()["fields"][0]["roots"] == [str(tmp_path / "models")]
