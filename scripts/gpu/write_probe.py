"""How fast this machine takes a merged 7B's 15.2 GB into files: one writer after the other (as safetensors under
transformers' save_pretrained) against four at once (runner/swift_entry.py's export), from one buffer in memory,
and the kernel's dirty-page limits that decide when a writer must wait for the disk.

    python3 scripts/gpu/write_probe.py DIR [--gb 15.2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path


def write(path: Path, buffer: memoryview, chunks: int) -> None:
    with path.open("wb") as out:
        for _ in range(chunks):
            out.write(buffer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--gb", type=float, default=15.2)
    args = ap.parse_args()
    buffer = memoryview(bytearray(b"\x01" * (256 << 20)))  # 256 MiB, written again and again
    chunks = round(args.gb * 1e9 / len(buffer))
    facts: dict[str, object] = {k: Path(f"/proc/sys/vm/{k}").read_text().strip()
                                for k in ("dirty_ratio", "dirty_background_ratio", "dirty_bytes")}
    for writers in (1, 4):
        shutil.rmtree(args.folder, ignore_errors=True)
        args.folder.mkdir(parents=True)
        began = time.monotonic()
        threads = [threading.Thread(target=write, args=(args.folder / f"shard-{i}", buffer, chunks // writers))
                   for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - began
        written = sum(f.stat().st_size for f in args.folder.iterdir()) / 1e9
        facts[f"{writers}_writer(s)"] = {"gb": round(written, 2), "s": round(seconds, 2),
                                        "gb_per_s": round(written / seconds, 2)}
        print(json.dumps(facts), flush=True)
    shutil.rmtree(args.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
