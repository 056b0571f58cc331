"""A speed lever never fails a job (issue 26, case 11): where swift's, transformers' or torch's internals that a
lever reaches into are not there (another version), the job runs on the plain path and says so, in its log and in
its thread. The real runtime, local backend, launcher and runner/swift_entry.py, with stand-in `swift`,
`transformers` and `torch` packages first on the job's path (through `[swift] env`); the stand-in swift's scripts
are tests/fake_swift.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.words.format import SLACK
from bot.words.notices import notice_text
from runner.config import Config, load_config
from runner.levers import not_applied
from runner.runtime import Runtime
from runner.supervisor import JobRequest
from runner.token_batches import split_packed
from storage.models import ExportState, Job, JobState, Kind
from storage.notices import ExportSucceeded, JobSucceeded, NotApplied, Notice
from tests.conftest import VENV_BIN, OpenRuntime
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
SCRIPT = f"""import sys
sys.path.insert(0, {str(REPO)!r})
from tests.fake_swift import main
code = main([{{script!r}}, *sys.argv[1:]])
if code:
    sys.exit(code)
"""
# What each lever needs, as another version of each package might have it: the names missing ...
MISSING = {
    "torch/__init__.py": "class backends:\n    class cuda:\n        pass\n",
    "transformers/__init__.py": "",
    "transformers/masking_utils.py": "",
    "transformers/modeling_utils.py": "class PreTrainedModel:\n    def save_pretrained(self, path):\n        pass\n",
    "swift/arguments/__init__.py": "",
    "swift/arguments/sft_args.py": "class SftArguments:\n    pass\n",
}
# ... or there, but the one the token micro-batches wrap takes other parameters
OTHER_SIGNATURE = MISSING | {
    "transformers/masking_utils.py": "def find_packed_sequence_indices(position_ids):\n    pass\n",
    "swift/arguments/sft_args.py": "class SftArguments:\n    def _check_padding_free(self):\n        pass\n",
    "transformers/trainer.py": "class Trainer:\n    def training_step(self, model, inputs):\n        pass\n"
    "    def compute_loss(self, model, inputs):\n        pass\n",
}


def standin_config(tmp_path: Path, packages: dict[str, str]) -> Config:
    root = tmp_path / "standin"
    files = {
        "swift/__init__.py": "",
        "swift/cli/__init__.py": "",
        "swift/cli/sft.py": SCRIPT.format(script="sft"),
        "swift/cli/export.py": SCRIPT.format(script="export"),
        **packages,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    swift = root / "bin" / "swift"  # a console script of the venv's python: jobs start through the entry
    swift.parent.mkdir()
    swift.write_text(f"#!{VENV_BIN / 'python'}\nimport sys\nsys.exit('not used')\n")
    swift.chmod(0o755)
    (tmp_path / "trainbot.toml").write_text(f"""[swift]
bin = "{swift}"
[swift.env]
PYTHONPATH = "{root}"
TRAINBOT_NO_CUDNN_ATTENTION = "1"
TRAINBOT_MICRO_BATCH_TOKENS = "4096"
[llm]
padding_free = "true"
attn_impl = "sdpa"
max_steps = "3"
save_steps = "3"
[runner]
warm_start = false
""")
    return load_config(tmp_path / "trainbot.toml", base_dir=tmp_path)


async def ended(rt: Runtime, job_id: str, export: bool = False) -> Job:
    async def done() -> Job | None:
        job = await rt.store.require(job_id)
        finished = (
            job.export_state in (ExportState.EXPORTED, ExportState.EXPORT_FAILED) if export else job.state.is_terminal
        )
        return job if finished else None

    found: Job = await wait_until(done, 60, f"job {job_id} to end")
    return found


@pytest.mark.parametrize(
    ("packages", "expected"),
    [
        (
            MISSING,
            {
                "no_cudnn_attention": "torch.backends.cuda has no enable_cudnn_sdp",
                "padding_free_sdpa": "transformers.masking_utils has no find_packed_sequence_indices",
                "token_micro_batches": "they need padding-free micro-batches",
            },
        ),
        (
            OTHER_SIGNATURE,
            {
                "no_cudnn_attention": "torch.backends.cuda has no enable_cudnn_sdp",
                "token_micro_batches": "transformers.Trainer.training_step takes (self, model, inputs), not "
                "(self, model, inputs, num_items_in_batch, ...)",
            },
        ),
    ],
    ids=["names-missing", "other-signature"],
)
async def test_a_job_whose_swift_lacks_what_a_lever_patches_succeeds_on_the_plain_path_and_says_so(
    tmp_path: Path, open_runtime: OpenRuntime, packages: dict[str, str], expected: dict[str, str]
) -> None:
    config = standin_config(tmp_path, packages)
    rt = await open_runtime(config)
    job = await rt.supervisor.submit(JobRequest(Kind.LLM, ("cpu",), tmp_path / "output" / "one", {}))
    job = await ended(rt, job.id)
    log = Path(str(job.train_run.log)).read_text()
    assert job.state is JobState.SUCCEEDED, log
    for lever, why in expected.items():
        assert f"not applied ({lever}): {why}; " in log, log
    args = json.loads(next((tmp_path / "output" / "one").glob("v0-*/args.json")).read_text())
    plain = {
        "padding_free": ["false" if "padding_free_sdpa" in expected else "true"],
        "per_device_train_batch_size": ["1"],
        "gradient_accumulation_steps": ["16"],
    }
    assert {k: args[k] for k in plain} == plain and "gradient_checkpointing" not in args  # the layout planned

    succeeded = [n for n in await rt.store.notices(job.id) if isinstance(n.facts, JobSucceeded)]
    assert [(x.lever, x.detail) for x in succeeded[0].facts.not_applied] == list(expected.items())
    words = notice_text(succeeded[0])
    assert f"ran without attention without cuDNN's kernel: {expected['no_cudnn_attention']}" in words
    assert "ran without micro-batches by tokens (it ran the planned layout, with its checkpointing)" in words
    assert ("ran without padding-free micro-batches (it ran padded ones)" in words) == ("padding_free_sdpa" in expected)

    await rt.supervisor.export(job.id, by="U1")
    job = await ended(rt, job.id, export=True)
    exported = [n.facts for n in await rt.store.notices(job.id) if isinstance(n.facts, ExportSucceeded)]
    assert exported, Path(str(job.export_run.log)).read_text()
    assert NotApplied("shards_together", "transformers.modeling_utils has no safe_save_file") in exported[0].not_applied


def test_only_the_last_run_of_a_log_counts(tmp_path: Path) -> None:
    log = tmp_path / "llm_training_ab3cd.log"
    log.write_text(
        "[trainbot] 2026-12-07 10:00:00 job ab3cd train: swift sft ...\n"
        "[trainbot] attention without cuDNN's kernel not applied (no_cudnn_attention): gone; it stays on\n"
        "[trainbot] 2026-12-07 11:00:00 job ab3cd train: swift sft ...\n"
        "[rank1]: [trainbot] micro-batches by tokens not applied (token_micro_batches): a; b; the plan\n"
        "[rank0]: [trainbot] micro-batches by tokens not applied (token_micro_batches): a; b; the plan\n"
    )
    assert not_applied(log) == (NotApplied("token_micro_batches", "a; b"),)
    assert not_applied(tmp_path / "none.log") == ()


def test_the_thread_words_a_lever_not_applied_escaped() -> None:
    facts = JobSucceeded(
        not_applied=(
            NotApplied("warm_start", "ModuleNotFoundError: No module named '<x>'"),
            NotApplied("a_lever_of_a_newer_bot", ""),
        )
    )
    words = notice_text(Notice("ab3cd", facts))
    assert "started afresh, not in the process kept warm: ModuleNotFoundError: No module named '<x>'" in words
    assert "ran without a_lever_of_a_newer_bot" in words
    slack = notice_text(Notice("ab3cd", facts), SLACK)
    assert "No module named '&lt;x&gt;'" in slack and "ran without `a_lever_of_a_newer_bot`" in slack


@pytest.mark.swift  # torch: the swift extra
def test_a_step_is_split_between_samples_in_order_under_the_budget() -> None:
    import torch

    lengths = [3, 5, 2, 4]
    ids = torch.arange(sum(lengths)).unsqueeze(0)
    batch = {
        "input_ids": ids,
        "labels": ids + 100,
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "channel": [None] * 4,
        "loss_scale": None,
    }
    pieces = split_packed(batch, 7)
    assert pieces is not None
    assert [p["input_ids"].tolist() for p in pieces] == [[list(range(0, 3))], [list(range(3, 10))], [[10, 11, 12, 13]]]
    assert [p["labels"].tolist()[0][0] for p in pieces] == [100, 103, 110]
    assert [p["position_ids"].tolist() for p in pieces] == [[[0, 1, 2]], [[0, 1, 2, 3, 4, 0, 1]], [[0, 1, 2, 3]]]
    assert [len(p["channel"]) for p in pieces] == [1, 2, 1] and all(p["loss_scale"] is None for p in pieces)
    alone = split_packed(batch, 4)  # the 5-token sample, longer than the budget, alone
    assert alone is not None and [p["input_ids"].shape[-1] for p in alone] == [3, 5, 2, 4]
    assert split_packed(batch, 14) is None  # it fits
    assert split_packed({**batch, "pixel_values": torch.zeros(2, 3)}, 7) is None  # not a batch it knows how to split
    assert split_packed({**batch, "position_ids": torch.arange(14)[None] + 1}, 7) is None  # no sample starts at 0
