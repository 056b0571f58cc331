"""Which import starts CUDA (loads libcuda) while runner/swift_entry.py --warm imports swift: each import is
followed by a look at /proc/self/maps; the first one after which libcuda is mapped is printed with the chain of
imports under way, and the Python stack at that moment.

    PYTORCH_NVML_BASED_CUDA_CHECK=1 python3 scripts/gpu/cuda_at_import.py
"""

from __future__ import annotations

import builtins
import importlib
import os
import sys
import time
import traceback

sys.path[:] = [p for p in sys.path if not p.endswith("/runner")]
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
real_import = builtins.__import__
chain: list[str] = []
found: list[str] = []


def mapped() -> bool:
    with open("/proc/self/maps") as maps:
        return any("libcuda.so" in line for line in maps)


def spy(name, globals=None, locals=None, fromlist=(), level=0):  # type: ignore[no-untyped-def]
    chain.append(name)
    try:
        return real_import(name, globals, locals, fromlist, level)
    finally:
        if not found and mapped():
            found.append(" > ".join(chain))
            print("libcuda mapped after importing:", " > ".join(chain), flush=True)
            print("".join(traceback.format_stack(limit=25)), flush=True)
        chain.pop()


builtins.__import__ = spy
began = time.time()
for module, attr in (("swift.cli.utils", ""), ("swift.ray_utils", ""), ("swift.pipelines", "sft_main"),
                     ("swift.pipelines", "export_main")):
    m = importlib.import_module(module)
    if attr:
        getattr(m, attr)
    print(f"{module}{'.' + attr if attr else ''} imported, libcuda mapped: {mapped()}", flush=True)
print(f"done in {time.time() - began:.1f} s; first: {found[:1]}")
