"""The `/train` language: every command it accepts, and what each one parses to."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chat.grammar import JOB_ACTIONS, Command, CreateJob, JobCommand, ListJobs, Rejection, out_example, parse
from runner.config import load_config
from storage.models import JobState, Kind
from tests.grammar_cases import ACCEPTED, BASE, ROOT, llm, p


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted(text: str, expected: Command) -> None:
    assert p(text) == expected


@pytest.mark.parametrize("state", [*(s.value for s in JobState), "active"])
def test_list_every_state(state: str) -> None:
    assert p(f"list state={state}") == ListJobs(None, state)


@pytest.mark.parametrize("action", JOB_ACTIONS)
def test_every_job_action(action: str) -> None:
    assert p(f"{action} k3x9q") == JobCommand(action, "k3x9q")  # type: ignore[arg-type]


def test_sixteen_gpus_is_the_most() -> None:
    assert p(f"llm gpu={','.join(map(str, range(16)))} out=output/x") == llm(*map(str, range(16)))


def test_out_elsewhere_and_absolute() -> None:
    assert p("llm gpu=0 out=/data/runs/a", Path("/data/runs"), BASE) == CreateJob(
        Kind.LLM, ("0",), Path("/data/runs/a"), {}, False, "fast"
    )
    assert p("llm gpu=0 out=../runs/a", Path("/data/runs"), Path("/data/bot")) == CreateJob(
        Kind.LLM, ("0",), Path("/data/runs/a"), {}, False, "fast"
    )


def test_out_example_follows_the_configuration() -> None:
    assert out_example(ROOT, BASE) == "output/my-run"
    assert out_example(Path("/data/runs"), BASE) == "/data/runs/my-run"
    assert out_example(Path("/srv/trainbot/runs"), BASE) == "runs/my-run"
    rejection = p("llm gpu=0 out=../x", Path("/data/runs"), BASE)
    assert isinstance(rejection, Rejection) and "`out=/data/runs/my-run`" in rejection.message


def test_model_and_dataset_paths_are_judged_by_where_they_lead(tmp_path: Path) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    (models / "qwen").mkdir(parents=True)
    data.mkdir()
    (data / "ocr.jsonl").write_text("{}\n")
    (models / "escape").symlink_to("/etc")
    (tmp_path / "Qwen").symlink_to("/etc")  # a hub-id-shaped name that swift would read as a local path

    def run(text: str, roots: tuple[Path, ...] = (Path("models"),)) -> Command | Rejection:
        config = load_config(
            base_dir=tmp_path, overrides={"paths.model_roots": [str(r) for r in roots], "paths.data_roots": ["data"]}
        )
        return parse(
            text,
            output_root=Path("output"),
            base_dir=tmp_path,
            model_roots=config.model_roots,
            data_roots=config.data_roots,
        )

    ok = run("vlm gpu=0 out=output/x model=models/qwen dataset=data/ocr.jsonl#50")
    assert isinstance(ok, CreateJob)
    assert ok.overrides == {"model": str(models / "qwen"), "dataset": f"{data}/ocr.jsonl#50"}
    for text in ("vlm gpu=0 out=output/x model=models/escape", "vlm gpu=0 out=output/x model=Qwen/passwd"):
        refused = run(text)
        assert isinstance(refused, Rejection) and "which leads to `/etc" in refused.message, text
    none = run("vlm gpu=0 out=output/x model=models/qwen", roots=())
    assert isinstance(none, Rejection) and "`[paths] model_roots` is empty" in none.message


def test_symlinks_are_not_resolved(tmp_path: Path) -> None:
    """The grammar does text arithmetic only: a symlink inside the root is the runner's business."""
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "link").symlink_to("/")
    result = p("llm gpu=0 out=output/link/etc", Path("output"), tmp_path)
    assert isinstance(result, CreateJob) and result.output_dir == tmp_path / "output/link/etc"
