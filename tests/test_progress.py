"""runner.progress against real ms-swift 4.6.0 output (tests/fixtures/swift46) and synthetic run dirs."""

from __future__ import annotations

import builtins
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from runner import run_files
from runner.progress import Milestone, ProgressTail, fold, parse_duration, read_final_summary
from runner.run_files import checkpoint_number, find_run_dir
from storage.models import Progress

FIXTURES = Path(__file__).parent / "fixtures" / "swift46"
OK_JSONL = (FIXTURES / "sft_ok.logging.jsonl").read_bytes()
INTERRUPTED_JSONL = (FIXTURES / "sft_interrupted.logging.jsonl").read_bytes()


def make_run(tmp_path: Path, jsonl: bytes | None = None, name: str = "v0-20261128-052335") -> Path:
    run = tmp_path / "out" / name
    run.mkdir(parents=True)
    if jsonl is not None:
        (run / "logging.jsonl").write_bytes(jsonl)
    return run


def make_checkpoint(run: Path, n: int, ready: bool = True) -> Path:
    ckpt = run / f"checkpoint-{n}"
    ckpt.mkdir()
    if ready:
        (ckpt / "trainer_state.json").write_text("{}")
    return ckpt


def kinds(milestones: list[Milestone]) -> list[tuple[str, int | None]]:
    return [(str(m.kind), m.step) for m in milestones]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("7s", 7.0),
        ("1m 2s", 62.0),
        ("1h 3m", 3780.0),
        ("2m 21s", 141.0),
        ("1h 0m 5s", 3605.0),
        ("2d 1h 0m 3s", 2 * 86400 + 3600 + 3.0),
        (5, 5.0),
        (2.5, 2.5),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_parse_duration(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_final_summary_of_a_successful_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, OK_JSONL)
    p = read_final_summary(run)
    assert (p.step, p.max_steps, p.percent) == (50, 50, 100.0)
    assert p.loss == pytest.approx(6.8669281)
    assert p.train_loss == pytest.approx(6.88231544)
    assert p.learning_rate == 0.0
    assert p.epoch == 1.0
    assert p.eval_loss is None  # no eval in that run
    assert (p.elapsed_s, p.remaining_s) == (7.0, 0.0)
    assert p.speed_s_per_it == pytest.approx(0.149411)
    assert p.last_checkpoint == "/data/demo/out/offline_fp32_checkmodel2/v0-20261128-052335/checkpoint-50"
    assert p.best_checkpoint is None


def test_final_summary_of_an_interrupted_run(tmp_path: Path) -> None:
    p = read_final_summary(make_run(tmp_path, INTERRUPTED_JSONL))
    assert (p.step, p.max_steps) == (30, 540)
    assert p.eval_loss == pytest.approx(6.87818861)
    assert p.loss == pytest.approx(6.893396)
    assert p.remaining_s == 102.0  # 1 s for the last 5 steps, 510 to go (the eval record at step 30 keeps it)
    assert p.train_loss is None  # no train_runtime line after a stop
    ckpt = "/data/demo/out/sig_int_child_late/v0-20261128-052107/checkpoint-20"
    assert (p.last_checkpoint, p.best_checkpoint) == (ckpt, ckpt)


def test_milestones_of_one_read(tmp_path: Path) -> None:
    tail = ProgressTail(make_run(tmp_path, INTERRUPTED_JSONL))
    got = tail.poll()
    assert kinds(got) == [("eval", 10), ("eval", 20), ("eval", 30)]
    assert [m.data["eval_loss"] for m in got] == pytest.approx([6.92885828, 6.91081715, 6.87818861])
    assert got[0].data["eval_token_acc"] == pytest.approx(0.00438596)
    p = tail.progress
    assert (p.step, p.max_steps, p.loss) == (30, 540, pytest.approx(6.893396))
    assert p.last_checkpoint is not None and p.last_checkpoint.endswith("/checkpoint-20")
    assert tail.finished  # swift's summary line was read
    assert tail.poll() == []
    assert tail.offset == len(INTERRUPTED_JSONL)


def test_finished_of_a_complete_run(tmp_path: Path) -> None:
    tail = ProgressTail(make_run(tmp_path, OK_JSONL))
    assert tail.poll() == []  # no eval, no checkpoint folder: nothing to tell, all in the progress
    assert tail.finished and tail.progress.step == tail.progress.max_steps == 50
    assert tail.progress.train_loss == pytest.approx(6.88231544)


def run_in_pieces(tmp_path: Path, data: bytes, seed: int) -> tuple[list[Milestone], list[Progress], ProgressTail]:
    run = make_run(tmp_path, b"", name=f"v{seed}-20261128-052335")
    tail = ProgressTail(run)
    rng = random.Random(seed)
    got: list[Milestone] = []
    seen: list[Progress] = []
    pos = 0
    with open(run / "logging.jsonl", "ab") as f:
        while pos < len(data):
            step = rng.randint(1, 400)
            f.write(data[pos : pos + step])
            f.flush()
            pos += step
            got += tail.poll()
            seen.append(tail.progress)
            content = (run / "logging.jsonl").read_bytes()
            assert tail.offset == content.rfind(b"\n") + 1  # only complete lines are consumed
    return got, seen, tail


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("data", [OK_JSONL, INTERRUPTED_JSONL], ids=["ok", "interrupted"])
def test_reading_in_pieces_equals_one_read(tmp_path: Path, data: bytes, seed: int) -> None:
    once = ProgressTail(make_run(tmp_path, data))
    once_milestones = once.poll()
    pieces, seen, tail = run_in_pieces(tmp_path, data, seed)
    assert tail.progress == once.progress
    assert pieces == once_milestones
    steps = [p.step for p in seen if p.step is not None]
    assert steps == sorted(steps)  # never goes backwards, never garbage from a half line


def test_partial_line_waits_for_its_end(tmp_path: Path) -> None:
    first, second = INTERRUPTED_JSONL.split(b"\n", 2)[:2]
    run = make_run(tmp_path, first[:40])
    tail = ProgressTail(run)
    assert tail.poll() == [] and tail.progress == Progress() and tail.offset == 0
    (run / "logging.jsonl").write_bytes(first + b"\n" + second[:10])
    assert tail.poll() == [] and tail.progress.step == 1
    assert tail.offset == len(first) + 1
    (run / "logging.jsonl").write_bytes(first + b"\n" + second + b"\n")
    assert tail.poll() == [] and tail.progress.step == 5


def test_no_read_when_nothing_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(run_files, "open", counting_open, raising=False)  # where files are read
    tails = [ProgressTail(make_run(tmp_path, OK_JSONL, name=f"v{i}-20261128-052335")) for i in range(8)]
    for tail in tails:
        tail.poll()
    assert len(opened) == 8
    for _ in range(100):
        for tail in tails:
            assert tail.poll() == []
    assert len(opened) == 8  # stat only: no file was opened again


def test_checkpoints_are_told_once_when_complete(tmp_path: Path) -> None:
    run = make_run(tmp_path, INTERRUPTED_JSONL.split(b"\n")[0] + b"\n")
    tail = ProgressTail(run)
    tail.poll()
    make_checkpoint(run, 10)
    (run / "checkpoint-10-merged").mkdir()
    (run / "tmp-checkpoint-40").mkdir()
    os.symlink(run / "checkpoint-10", run / "last-checkpoint")
    assert kinds(tail.poll()) == [("checkpoint", 10)]
    assert tail.progress.last_checkpoint == str(run / "checkpoint-10")
    assert tail.poll() == []
    make_checkpoint(run, 20, ready=False)  # being written
    assert tail.poll() == []
    make_checkpoint(run, 30, ready=False)  # a newer one started: 20 is complete
    got = tail.poll()
    assert kinds(got) == [("checkpoint", 20)]
    assert got[0].data == {"step": 20, "path": str(run / "checkpoint-20")}
    (run / "checkpoint-30" / "trainer_state.json").write_text("{}")
    assert kinds(tail.poll()) == [("checkpoint", 30)]
    assert tail.progress.last_checkpoint == str(run / "checkpoint-30")
    assert tail.poll() == []


def test_the_summary_tells_the_last_checkpoint_and_the_pending_one(tmp_path: Path) -> None:
    run = make_run(tmp_path, b"")
    make_checkpoint(run, 10)
    make_checkpoint(run, 20, ready=False)
    tail = ProgressTail(run)
    assert kinds(tail.poll()) == [("checkpoint", 10)]
    (run / "logging.jsonl").write_bytes(INTERRUPTED_JSONL)
    got = tail.poll()
    assert kinds(got)[-1:] == [("checkpoint", 20)] and tail.finished  # the run ended: 20 counts
    assert tail.progress.last_checkpoint == "/data/demo/out/sig_int_child_late/v0-20261128-052107/checkpoint-20"


def test_read_final_summary_after_a_crash(tmp_path: Path) -> None:
    lines = INTERRUPTED_JSONL.split(b"\n")
    run = make_run(tmp_path, b"\n".join(lines[:4]))  # crashed: no summary, last line without its newline
    make_checkpoint(run, 10, ready=False)
    p = read_final_summary(run)
    assert p.step == 10 and p.eval_loss == pytest.approx(6.92885828)
    assert p.last_checkpoint == str(run / "checkpoint-10")
    assert p.train_loss is None


def test_gpu_memory_and_long_times() -> None:
    rec = {
        "loss": 1.5,
        "memory(GiB)": 12.5,
        "global_step/max_steps": "3/10",
        "elapsed_time": "1h 3m",
        "remaining_time": "7s",
        "train_speed(s/it)": 2.0,
    }
    p = fold(Progress(), rec)
    assert (p.gpu_mem_gib, p.elapsed_s, p.remaining_s, p.speed_s_per_it, p.percent) == (
        12.5,
        3780.0,
        None,  # a first record gives no pace yet
        2.0,
        30.0,
    )


def test_resume_from_a_saved_offset(tmp_path: Path) -> None:
    lines = INTERRUPTED_JSONL.split(b"\n")
    run = make_run(tmp_path, b"\n".join(lines[:5]) + b"\n")
    first = ProgressTail(run)
    first.poll()
    (run / "logging.jsonl").write_bytes(INTERRUPTED_JSONL)
    again = ProgressTail(run, offset=first.offset, resume=first.progress)
    from_zero = ProgressTail(run, resume=first.progress)
    fresh = ProgressTail(run)
    fresh.poll()
    expected = [("eval", 20), ("eval", 30)]
    assert kinds(again.poll()) == expected
    assert kinds(from_zero.poll()) == expected  # nothing at or below the stored step is told again
    assert again.progress == from_zero.progress == fresh.progress


def test_resume_does_not_repeat_checkpoints(tmp_path: Path) -> None:
    run = make_run(tmp_path, b"")
    make_checkpoint(run, 10)
    make_checkpoint(run, 20)
    tail = ProgressTail(run, resume=Progress(step=10, last_checkpoint=str(run / "checkpoint-10")))
    assert kinds(tail.poll()) == [("checkpoint", 20)]
    assert checkpoint_number(str(run / "checkpoint-20")) == 20
    assert checkpoint_number("/x/checkpoint-20-merged") is None


# ---------------------------------------------------------------- run directory


def version_name(n: int, at: float) -> str:
    return f"v{n}-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(at))


def test_find_run_dir_takes_the_highest_version(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = time.time() - 3600
    for n in (0, 2, 10):
        (out / version_name(n, old + n)).mkdir(parents=True)
    (out / "v99-notadate").mkdir()
    (out / "images").mkdir()
    found = find_run_dir(out, None)
    assert found is not None and found.name == version_name(10, old + 10)


def test_find_run_dir_ignores_runs_older_than_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = time.time() - 3600
    for n in (0, 1):
        d = out / version_name(n, old)
        d.mkdir(parents=True)
        os.utime(d, (old, old))
    started = time.time()
    assert find_run_dir(out, started) is None
    assert find_run_dir(out, None) == out / version_name(1, old)
    new = out / version_name(2, started)
    new.mkdir()
    assert find_run_dir(out, started) == new


def test_find_run_dir_trusts_a_fresh_mtime_over_the_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.time() - 5
    skewed = out / version_name(3, started - 7200)  # swift's clock in another time zone
    skewed.mkdir(parents=True)
    assert find_run_dir(out, started) == skewed


def test_find_run_dir_without_version_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert find_run_dir(out, None) is None  # no such folder yet
    out.mkdir()
    assert find_run_dir(out, None) is None
    (out / "logging.jsonl").write_text(json.dumps({"loss": 1.0}) + "\n")
    assert find_run_dir(out, None) == out  # --add_version false
    assert find_run_dir(out, time.time() + 60) is None


def test_eta_follows_the_pace_of_the_last_logged_interval() -> None:
    from runner.progress import fold
    from storage.models import Progress

    first = fold(Progress(), {"global_step/max_steps": "1/95", "elapsed_time": "40s", "remaining_time": "25m 8s"})
    assert first.remaining_s is None  # no pace yet, and swift's 25 min is mostly start-up: no ETA rather than that
    fifth = fold(first, {"global_step/max_steps": "5/95", "elapsed_time": "48s", "remaining_time": "7m 30s"})
    assert fifth.remaining_s == 2.0 * 90  # 8 s for 4 steps, 90 steps to go; swift's average still counts start-up
