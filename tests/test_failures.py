"""runner.failures against real ms-swift 4.6.0 failure logs (tests/fixtures/swift46) and synthetic tails."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.words import failures as failure_words
from runner.failures import TAIL_LINES, Failure, FailureClass, classify_failure, classify_text
from runner.log_tail import clean_lines, read_log_tail
from storage.failure_facts import BadArgument, CudaOom, HubUnreachable, Network, Unknown

FIXTURES = Path(__file__).parent / "fixtures" / "swift46"
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/opt/venv/lib/python3.11/site-packages/swift/cli/sft.py", '
    "line 20, in <module>\n    sft_main()\n    ^^^^^^^^^^\n"
)


def said(f: Failure) -> str:
    """The summary every front end shows (plain words)."""
    return failure_words.summary(f.facts)


def advice(f: Failure) -> str:
    return failure_words.hint(f.facts) or ""


TRAINING = "[INFO:swift] use_logits_to_keep: True\n\rTrain:  14%|█▍        | 5/36 [00:00<00:05,  5.39it/s]\n"


# ---------------------------------------------------------------- real logs


def test_train_type_renamed_in_swift_4() -> None:
    f = classify_failure(1, FIXTURES / "fail_train_type_renamed.log")
    assert f.cls is FailureClass.BAD_ARGUMENT
    assert "--train_type" in said(f)
    assert "--tuner_type" in advice(f)
    assert f.reason == BadArgument(flag="--train_type", renamed_to="--tuner_type")
    assert f.detail == "ValueError: remaining_argv: ['--train_type', 'lora']"


def test_model_hub_unreachable_modelscope() -> None:
    f = classify_failure(1, FIXTURES / "fail_hub_model_unreachable.log")
    assert f.cls is FailureClass.HUB_UNREACHABLE
    assert "model Qwen/Qwen2.5-7B-Instruct" in said(f) and "ModelScope" in said(f)
    assert "modelscope.cn" in said(f)
    assert f.reason == HubUnreachable(
        "model", "Qwen/Qwen2.5-7B-Instruct", "ModelScope", Network.UNRESOLVED, "modelscope.cn"
    ), f.reason
    assert "local mirror" in advice(f) and "HF_HUB_OFFLINE=1" in advice(f)
    assert f.detail.startswith("modelscope_hub.errors.NetworkError:")


def test_model_not_in_the_hf_cache_offline() -> None:
    f = classify_failure(1, FIXTURES / "fail_hub_model_hf_offline.log")
    assert f.cls is FailureClass.HUB_UNREACHABLE
    assert "Qwen/Qwen2.5-7B-Instruct" in said(f) and "HF_HUB_OFFLINE" in said(f)
    assert f.detail.startswith("huggingface_hub.errors.LocalEntryNotFoundError:")
    assert "local mirror" in advice(f)


def test_dataset_hub_unreachable_names_the_dataset() -> None:
    f = classify_failure(1, FIXTURES / "fail_hub_dataset_unreachable.log")
    assert f.cls is FailureClass.HUB_UNREACHABLE
    assert "dataset AI-ModelScope/alpaca-gpt4-data-zh" in said(f)
    assert "deadline" in said(f)
    assert "_DownloadDeadlineError" in f.detail
    assert "local mirror" in advice(f)


def test_export_target_exists() -> None:
    f = classify_failure(1, FIXTURES / "export_fail_exists.log")
    assert f.cls is FailureClass.OUTPUT_EXISTS
    assert "/data/demo/out/run2/v0-20261128-051445/checkpoint-36-merged" in said(f)
    assert "--exist_ok true" in advice(f)
    assert f.detail.startswith("FileExistsError:")


def test_sigint_after_a_stop_request_is_not_a_failure() -> None:
    f = classify_failure(254, FIXTURES / "sft_interrupted_sigint_child.log", stop_requested=True)
    assert f.cls is FailureClass.INTERRUPTED
    assert f.detail == "KeyboardInterrupt"
    assert f.tail[-1] == "KeyboardInterrupt"  # the trailing tqdm redraw is noise


def test_sigint_from_elsewhere_is_recognised() -> None:
    f = classify_failure(254, FIXTURES / "sft_interrupted_sigint_child.log")
    assert f.cls is FailureClass.INTERRUPTED
    assert "not by a stop request" in said(f)


@pytest.mark.parametrize(
    "name",
    [
        "sft_interrupted_sigint_child.log",
        "sft_ok.stderr.log",
        "sft_ddp_nproc2.log",
        "fail_hub_dataset_unreachable.log",
    ],
)
def test_tail_is_short_and_free_of_progress_bars(name: str) -> None:
    f = classify_failure(1, FIXTURES / name)
    assert 0 < len(f.tail) <= TAIL_LINES
    for line in f.tail:
        assert "\r" not in line and "it/s]" not in line and "examples/s]" not in line
        assert line.strip() and not set(line.strip()) <= {"^", "~"}


def test_the_ok_logs_hold_no_error() -> None:
    for name in ("sft_ok.stderr.log", "export_ok.log", "sft_ddp_nproc2.log"):
        assert classify_failure(1, FIXTURES / name).cls is FailureClass.UNKNOWN


# ---------------------------------------------------------------- synthetic tails


def test_cuda_oom() -> None:
    text = (
        TRAINING
        + TRACEBACK
        + (
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
            "capacity of 79.19 GiB of which 1.06 GiB is free. Including non-PyTorch memory, this process has "
            "78.12 GiB in use.\n"
        )
    )
    f = classify_text(1, text)
    assert f.cls is FailureClass.CUDA_OOM
    assert "2.00 GiB" in said(f) and f.reason == CudaOom(tried_to_allocate="2.00 GiB")
    assert "max_length" in advice(f) and "batch size" in advice(f)
    assert f.detail.startswith("torch.OutOfMemoryError: CUDA out of memory")


def test_cuda_oom_on_one_ddp_rank_wins_over_the_launcher_error() -> None:
    text = (
        TRAINING
        + "".join(f"[rank1]: {line}\n" for line in TRACEBACK.splitlines())
        + (
            "[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB.\n"
            "E1128 05:30:27 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 1) "
            "local_rank: 1\n" + TRACEBACK + "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
            "  exitcode  : 1 (pid: 4242)\n"
        )
    )
    f = classify_text(1, text)
    assert f.cls is FailureClass.CUDA_OOM
    assert "512.00 MiB" in said(f)


@pytest.mark.parametrize(
    "line",
    [
        "OSError: [Errno 28] No space left on device: '/data/out/v0-20261128-052335/checkpoint-50/opt.pt'",
        "safetensors_rust.SafetensorError: Error while serializing: IoError(Os { code: 28, "
        "kind: StorageFull, "
        'message: "No space left on device" })',
        "RuntimeError: [enforce fail at inline_container.cc:603] . unexpected pos 1024 vs 512 (ENOSPC)",
    ],
)
def test_disk_full(line: str) -> None:
    f = classify_text(1, TRAINING + TRACEBACK + line + "\n")
    assert f.cls is FailureClass.DISK_FULL
    assert "disk is full" in said(f)
    assert "save_total_limit" in advice(f)


def test_disk_full_names_the_file() -> None:
    f = classify_text(1, TRACEBACK + "OSError: [Errno 28] No space left on device: '/data/out/x.pt'\n")
    assert "/data/out/x.pt" in said(f)


def test_nccl_error() -> None:
    text = (
        TRAINING
        + TRACEBACK
        + (
            "torch.distributed.DistBackendError: NCCL error in: "
            "../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp"
            ":1970, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
            "ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device "
            "error.\n"
        )
    )
    f = classify_text(1, text)
    assert f.cls is FailureClass.DISTRIBUTED
    assert "NCCL" in said(f)
    assert "NCCL_DEBUG=INFO" in advice(f)


def test_rendezvous_port_in_use() -> None:
    text = TRACEBACK + (
        "torch.distributed.DistNetworkError: The server socket has failed to listen on any local "
        "network address. port: 29500, useIpv6: false, code: -98, name: EADDRINUSE, message: "
        "address already in use\n"
    )
    f = classify_text(1, text)
    assert f.cls is FailureClass.DISTRIBUTED
    assert "MASTER_PORT" in advice(f)


def test_permission_denied() -> None:
    f = classify_text(1, TRACEBACK + "PermissionError: [Errno 13] Permission denied: '/data/out/run1'\n")
    assert f.cls is FailureClass.PERMISSION_DENIED
    assert "/data/out/run1" in said(f)


@pytest.mark.parametrize(
    ("returncode", "text"),
    [
        (-9, ""),
        (137, TRAINING),
        (247, TRAINING),  # the swift wrapper's sys.exit(-9)
        (1, TRAINING + "Killed\n"),
        (
            1,
            TRAINING + TRACEBACK + "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
            "  exitcode  : -9 (pid: 4242)\n  traceback : Signal 9 (SIGKILL) received by PID 4242\n",
        ),
    ],
)
def test_killed_by_sigkill(returncode: int, text: str) -> None:
    f = classify_text(returncode, text)
    assert f.cls is FailureClass.HOST_OOM_KILLED
    assert "RAM" in said(f)
    assert "dataloader_num_workers" in advice(f)


def test_dataloader_worker_killed() -> None:
    text = TRACEBACK + ("RuntimeError: DataLoader worker (pid 1234) is killed by signal: Killed. \n")
    f = classify_text(1, text)
    assert f.cls is FailureClass.HOST_OOM_KILLED
    assert "DataLoader worker" in said(f)


def test_sigkill_after_a_stop_request_is_a_stop() -> None:
    assert classify_text(-9, TRAINING, stop_requested=True).cls is FailureClass.INTERRUPTED
    assert classify_text(-15, "", stop_requested=True).cls is FailureClass.INTERRUPTED


def test_argparse_errors_name_the_flag() -> None:
    f = classify_text(2, "usage: sft.py [-h]\nsft.py: error: unrecognized arguments: --lora_rnak 8\n")
    assert f.cls is FailureClass.BAD_ARGUMENT
    assert "--lora_rnak" in said(f)
    f = classify_text(2, "sft.py: error: argument --lora_rank: invalid int value: 'eight'\n")
    assert f.cls is FailureClass.BAD_ARGUMENT and "--lora_rank" in said(f)


def test_dataset_not_found() -> None:
    text = (
        "[INFO:swift] Downloading the dataset from ModelScope, dataset_id: nobody/nothing\n"
        "[ERROR:swift] Dataset nobody/nothing load failed: subset_name=default,split=train with error: "
        "NotExistError: dataset nobody/nothing not found\n"
        + TRACEBACK
        + '  File "/opt/venv/lib/python3.11/site-packages/swift/dataset/loader.py", line 180, in load\n'
        "ValueError: dataset nobody/nothing not found\n"
    )
    f = classify_text(1, text)
    assert f.cls is FailureClass.DATASET_NOT_FOUND
    assert "nobody/nothing" in said(f)


def test_hf_dataset_not_found() -> None:
    text = TRACEBACK + (
        "datasets.exceptions.DatasetNotFoundError: Dataset 'nobody/nothing' doesn't exist on the Hub "
        "or cannot be accessed.\n"
    )
    f = classify_text(1, text)
    assert f.cls is FailureClass.DATASET_NOT_FOUND
    assert "dataset nobody/nothing" in said(f)


def test_a_warning_before_the_traceback_does_not_decide() -> None:
    text = (
        "[WARNING:swift] could not chmod: Permission denied: '/tmp/x'\n"
        "UserWarning: No space left on device for the cache, skipping\n"
        + TRAINING
        + TRACEBACK
        + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n"
    )
    assert classify_text(1, text).cls is FailureClass.CUDA_OOM
    text = "[WARNING:swift] could not chmod: Permission denied: '/tmp/x'\n" + TRACEBACK + "ValueError: boom\n"
    f = classify_text(1, text)
    assert f.cls is FailureClass.UNKNOWN
    assert said(f) == "swift failed: ValueError: boom"


def test_segfault_is_unknown_but_says_so() -> None:
    f = classify_text(-11, TRAINING)
    assert f.cls is FailureClass.UNKNOWN
    assert "SIGSEGV" in said(f)


def test_no_log_at_all() -> None:
    f = classify_failure(3, None)
    assert f.cls is FailureClass.UNKNOWN
    assert said(f) == "swift exited with status 3" and f.reason == Unknown(returncode=3)
    assert f.tail == []


def test_only_the_last_64_kib_are_read(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    early = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB.\n"
    log.write_text(TRACEBACK + early + ("x" * 99 + "\n") * 2000 + "the end\n")
    tail = read_log_tail(log)
    assert len(tail.encode()) <= 64 * 1024
    assert tail.startswith("x" * 99) and tail.endswith("the end\n")
    assert classify_failure(1, log).cls is FailureClass.UNKNOWN


def test_clean_lines_collapses_redraws() -> None:
    text = (
        "\rTrain:   3%|▎         | 1/36 [00:00<00:09,  3.59it/s]\r          \r{'loss': '6.938'}\n"
        "\rTrain: 100%|██████████| 25/25 [00:06<00:00,  3.94it/s][INFO:swift] Saving model checkpoint to /x\n"
        "Map (num_proc=1): 100%|██████████| 200/200 [00:00<?, ? examples/s]Map (num_proc=1): 400 examples "
        "[00:00, 1406.12 examples/s]        \n"
        "    ^^^^^^^^^^^^\n\n"
    )
    assert clean_lines(text) == ["{'loss': '6.938'}", "[INFO:swift] Saving model checkpoint to /x"]
