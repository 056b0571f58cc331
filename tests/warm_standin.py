"""The warm-process tests' stand-in swift and torch, and how they launch jobs and wait for the warm process."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from runner import launcher
from runner.backends import ProcessRef
from runner.backends.local import LocalBackend
from runner.command import SwiftCommand, direct_entry
from runner.config import Config, load_config
from runner.warm import WarmSlot
from tests.conftest import VENV_BIN
from tests.waiting import wait_until

IMPORTED = "stand-in swift imported by"
PIPELINES = f"""import os, sys, time
if sys.argv[-1] == "--warm" and os.environ.get("STANDIN_WARM_FAILS"):
    sys.exit("stand-in: cannot import while warm")
if sys.argv[-1] == "--warm" and os.environ.get("STANDIN_WARM_FAILS_AFTER"):  # once that file exists
    print("stand-in: importing slowly", flush=True)
    while not os.path.exists(os.environ["STANDIN_WARM_FAILS_AFTER"]):
        time.sleep(0.05)
    import a_module_this_machine_lacks
if sys.argv[-1] == "--warm" and os.environ.get("STANDIN_WARM_SLOW"):
    print("stand-in: importing slowly", flush=True)
    time.sleep(60)
print("{IMPORTED}", os.getpid(), flush=True)
def sft_main(): pass
def export_main(): pass
"""
SFT = """import json, os, sys, time
import swift.pipelines
keys = ("CUDA_VISIBLE_DEVICES", "TRAINBOT_NO_CUDNN_ATTENTION", "JOB_ONLY", "PYTORCH_NVML_BASED_CUDA_CHECK")
print("job", json.dumps({"pid": os.getpid(), "args": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}}),
      flush=True)
if "--forever" in sys.argv:
    while True:
        time.sleep(0.05)
"""


TORCH = """from types import SimpleNamespace
cuda = SimpleNamespace(is_available=lambda: False)
backends = SimpleNamespace(cuda=SimpleNamespace(enable_cudnn_sdp=lambda enabled: None))
"""


def standin(root: Path) -> Path:
    files = {
        "swift/__init__.py": "",
        "swift/cli/__init__.py": "",
        "swift/ray_utils.py": "",
        "swift/cli/utils.py": "def try_use_single_device_mode(): pass\n",
        "swift/cli/export.py": SFT,
        "swift/cli/sft.py": SFT,
        "swift/pipelines/__init__.py": PIPELINES,
        "torch/__init__.py": TORCH,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    swift = root / "bin" / "swift"  # a console script of the venv's python, as ms-swift installs one
    swift.parent.mkdir()
    swift.write_text(f"#!{VENV_BIN / 'python'}\nimport sys\nsys.exit('not used')\n")
    swift.chmod(0o755)
    return swift


def standin_config(tmp_path: Path, swift_env: str = "") -> Config:
    root = tmp_path / "standin"
    swift = standin(root)
    (tmp_path / "trainbot.toml").write_text(
        f'[swift]\nbin = "{swift}"\n[swift.env]\nPYTHONPATH = "{root}"\n{swift_env}'
    )
    return load_config(tmp_path / "trainbot.toml", base_dir=tmp_path)


def sft(config: Config, *args: str, env: dict[str, str] | None = None) -> SwiftCommand:
    entry = direct_entry(config.swift_bin)
    assert entry is not None
    return SwiftCommand((*entry, "sft", *args), {"PYTHONPATH": config.swift_env["PYTHONPATH"], **(env or {})})


async def warm_saying(b: LocalBackend, text: str, what: str) -> WarmSlot:
    """The warm process, once its output (before any job) says `text`."""

    async def said() -> WarmSlot | None:
        slot = b.warm
        return slot if slot is not None and text in slot.preamble.read_text(errors="replace") else None

    found: WarmSlot = await wait_until(said, 30, what)
    return found


async def ready_slot(b: LocalBackend) -> WarmSlot:
    """The warm process, once it has imported swift (and said it is ready)."""

    async def ready() -> WarmSlot | None:
        return b.warm if b.warm is not None and b.warm.ready() else None

    slot: WarmSlot = await wait_until(ready, 30, "a warm process with swift imported")
    assert IMPORTED in slot.preamble.read_text()
    return slot


@contextlib.asynccontextmanager
async def standin_backend(tmp_path: Path, swift_env: str) -> AsyncIterator[tuple[LocalBackend, Config]]:
    """A backend whose stand-in swift gets `swift_env` (TOML lines of [swift.env]) in the warm process too."""
    config = standin_config(tmp_path, swift_env)
    b = LocalBackend(tmp_path / "exits", config)
    try:
        yield b, config
    finally:
        await b.close()


async def launch(b: LocalBackend, job: str, command: SwiftCommand, log: Path) -> ProcessRef:
    """The job's process started, and the reference a job in the store would keep to it."""
    launched = await b.launch(ProcessRef(job, "train"), command, log_path=log, gpus=("cpu",))
    return ProcessRef(job, "train", launched.run(log))


async def run(b: LocalBackend, job: str, command: SwiftCommand, log: Path) -> tuple[int | None, str]:
    return await exit_of(b, await launch(b, job, command, log)), log.read_text()


async def exit_of(b: LocalBackend, ref: ProcessRef) -> int | None:
    """The job's exit status, once it has ended."""

    async def ended() -> tuple[int | None] | None:
        return None if (await b.status(ref)).alive else (launcher.read_exit_file(b.exit_file(ref)),)

    return (await wait_until(ended, 30, f"job {ref.job_id} to end"))[0]


def job_line(log: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(next(line for line in log.splitlines() if line.startswith("job "))[4:])
    return found
