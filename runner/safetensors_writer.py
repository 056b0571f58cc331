"""A safetensors file written tensor by tensor without the GIL: the `shards_together` lever's writer (runner/
swift_levers.py), one thread a shard. Imports only the standard library until it writes (then torch).
"""

from __future__ import annotations

import json
from typing import Any

# safetensors' dtype names, in the order of its Rust enum: a file lists its tensors by dtype (this order, last
# first), then by name, as safetensors.torch.save_file writes them.
SAFETENSORS_DTYPES = (
    ("bool", "BOOL"),
    ("uint8", "U8"),
    ("int8", "I8"),
    ("float8_e5m2", "F8_E5M2"),
    ("float8_e4m3fn", "F8_E4M3"),
    ("int16", "I16"),
    ("uint16", "U16"),
    ("float16", "F16"),
    ("bfloat16", "BF16"),
    ("int32", "I32"),
    ("uint32", "U32"),
    ("float32", "F32"),
    ("complex64", "C64"),
    ("float64", "F64"),
    ("int64", "I64"),
    ("uint64", "U64"),
)


STAGING_BYTES = 64 << 20  # a shard's writer's pinned buffer for tensors on the GPU


def write_safetensors(tensors: dict[str, Any], path: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file's file, written tensor by tensor without the GIL; other dtypes than
    SAFETENSORS_DTYPES go through safetensors. A tensor on the GPU comes to the host through one pinned buffer of
    STAGING_BYTES, a copy at the bus's speed into memory used again and again: `.to("cpu")` made a new pageable
    tensor of each (page faults, then a staged copy), 10.6 s for the 7B's 15.2 GB on the H200."""
    import torch

    names = dict(SAFETENSORS_DTYPES)
    rank = {name: i for i, (name, _) in enumerate(SAFETENSORS_DTYPES)}
    kinds = {key: str(t.dtype).removeprefix("torch.") for key, t in tensors.items()}
    if any(kind not in names for kind in kinds.values()):
        from safetensors.torch import save_file

        save_file(tensors, path, metadata=metadata)
        return
    order = sorted(tensors, key=lambda key: (-rank[kinds[key]], key))
    header: dict[str, object] = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for key in order:
        size = tensors[key].numel() * tensors[key].element_size()
        header[key] = {
            "dtype": names[kinds[key]],
            "shape": list(tensors[key].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    staging = None
    with open(path, "wb") as out:
        out.write(len(text).to_bytes(8, "little") + text)
        for key in order:
            data = tensors[key].detach().contiguous().reshape(-1).view(torch.uint8)
            if data.device.type == "cpu":
                out.write(data.numpy().data)
                continue
            if staging is None:
                staging = torch.empty(STAGING_BYTES, dtype=torch.uint8, pin_memory=True)
            for start in range(0, data.numel(), STAGING_BYTES):
                chunk = staging[: min(STAGING_BYTES, data.numel() - start)]
                chunk.copy_(data[start : start + chunk.numel()])
                out.write(chunk.numpy().data)
