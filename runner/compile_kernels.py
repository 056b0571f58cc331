"""Triton's kernels for the fixed recipe, compiled ahead of the first job into the folder every `fast` job reads
(TRITON_CACHE_DIR, runner/kernels.py): on an H100 the first step of a job on a machine that had not compiled them
took 6.2 s longer (issue 31).

Run by swift's python on one idle GPU (standard library only at import, like runner/swift_entry.py):

    TRITON_CACHE_DIR=... CUDA_VISIBLE_DEVICES=N python runner/compile_kernels.py MODEL_DIR [--device cuda]

A tiny forward and backward of the recipe's own model code: one decoder layer of the model's shape (its
config.json; the embedding tied to the output layer, ~2.5 GB on the GPU for the 7B), LoRA on all linear layers as
swift adds it, Liger's kernels applied as transformers' Trainer applies them, bf16 autocast as the trainer runs it,
cuDNN's attention off, on padding-free batches of two lengths (Triton compiles a kernel anew for an integer
argument that is divisible by 16 and for one that is not). Kernels are compiled for what they are given, not for
the GPU's index, so any idle GPU of the machine's kind serves every other. A marker in the folder names what they
were compiled for (the packages' versions, the GPU, the model's shape, this file); where it is, nothing is done.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

LENGTHS = ((150, 122), (150, 151))  # samples of one padding-free batch: 272 tokens (divisible by 16), then 301
PROMPT = 12  # each sample's first tokens carry no label (the system prompt's)
PACKAGES = ("torch", "triton", "liger-kernel", "transformers", "peft")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("model", help="the recipe's model folder (its config.json)")
    ap.add_argument("--device", default="cuda", help="cuda (where there is one, else the CPU: nothing to keep) or cpu")
    args = ap.parse_args(argv)
    folder = os.environ.get("TRITON_CACHE_DIR")
    if not folder:
        print("[trainbot] kernels: TRITON_CACHE_DIR is not set: nowhere to keep them", flush=True)
        return 2
    began = time.monotonic()
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.model)
    config.num_hidden_layers, config.tie_word_embeddings = 1, True
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:1]
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    device = args.device if cuda else "cpu"
    liger = cuda and importlib.util.find_spec("liger_kernel") is not None
    marker = Path(folder) / f"trainbot-{_key(config, torch, cuda)}.json"
    if marker.exists():
        print(f"[trainbot] kernels: already compiled ({marker.name})", flush=True)
        return 0
    Path(folder).mkdir(parents=True, exist_ok=True)
    before = _files(folder)
    model = _model(config, torch, device, liger)
    for lengths in LENGTHS:
        _step(model, config, torch, device, lengths)
    if cuda:
        torch.cuda.synchronize()
    seconds, new = time.monotonic() - began, _files(folder) - before
    marker.write_text(json.dumps({"versions": _versions(), "seconds": round(seconds, 1), "liger": liger}))
    print(
        f"[trainbot] kernels: compiled in {seconds:.1f} s ({new} new file(s) in {folder}; "
        f"Liger {'on' if liger else 'not installed' if cuda else 'off on the CPU'})",
        flush=True,
    )
    return 0


def _model(config: Any, torch: Any, device: str, liger: bool) -> Any:
    """One layer of the recipe's model, as the job trains it: LoRA r8/alpha 32 on all linear layers, Liger's
    kernels where installed, attention by PyTorch's own kernels (sdpa, cuDNN's off)."""
    import peft
    from transformers import AutoModelForCausalLM

    if device.startswith("cuda") and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            config, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    model = peft.get_peft_model(
        model,
        peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    if liger:
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(model, None)  # type: ignore[no-untyped-call]
    model.train()
    return model


def _step(model: Any, config: Any, torch: Any, device: str, lengths: tuple[int, ...]) -> None:
    """A forward and backward of one padding-free batch of these samples, its loss over its labelled tokens."""
    total = sum(lengths)
    ids = torch.randint(0, config.vocab_size, (1, total), device=device)
    positions = torch.cat([torch.arange(n, device=device) for n in lengths]).unsqueeze(0)
    labels = ids.clone()
    labels[positions < PROMPT] = -100
    items = (labels[..., 1:] != -100).sum()
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
        out = model(input_ids=ids, position_ids=positions, labels=labels, num_items_in_batch=items)
    out.loss.backward()
    model.zero_grad(set_to_none=True)


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = ""
    return found


def _key(config: Any, torch: Any, cuda: bool) -> str:
    """What the kernels are compiled for: the packages, the GPU's kind, the model's shape, this file."""
    gpu = f"{torch.cuda.get_device_name()} {torch.cuda.get_device_capability()}" if cuda else "cpu"
    what = json.dumps([_versions(), gpu, config.to_json_string(use_diff=False), Path(__file__).read_text()])
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def _files(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]  # runner/ shadows nothing
    sys.exit(main())
