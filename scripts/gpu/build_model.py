"""Make a model of the exact Qwen2.5-7B-Instruct shape (or a tiny one) with random bf16 weights, no hub needed.

    python3 scripts/gpu/build_model.py {7b|tiny} OUTDIR [cuda|cpu] [TOKDIR]

7b: 7.62e9 parameters (vocab 152064, hidden 3584, 28 layers, 28 heads / 4 KV heads, MLP 18944), created on the
device, saved as safetensors in 4 GB shards (15.2 GB; ~18 s on an H100 machine). The tokenizer (default
.gpu/tok, from make_assets.py) is copied beside it. Adapted from ../shared/reference/gpu/build_model.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

SHAPES: dict[str, dict[str, Any]] = {
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768, rope_theta=1e6,
               tie_word_embeddings=False, rms_norm_eps=1e-6, use_sliding_window=False, max_window_layers=28),
    "tiny": dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1e6, tie_word_embeddings=False),
}


def main(size: str, out: Path, device: str, tokdir: Path) -> None:
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    for f in tokdir.iterdir():
        shutil.copy(f, out)
    tok = AutoTokenizer.from_pretrained(str(out))
    eos, pad = (int(str(tok.convert_tokens_to_ids(t))) for t in ("<|im_end|>", "<|endoftext|>"))
    cfg = Qwen2Config(bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, **SHAPES[size])
    cfg.dtype = "bfloat16"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg)  # type: ignore[no-untyped-call]
    model = model.to(torch.bfloat16)  # type: ignore[arg-type]
    if device == "cuda":
        torch.cuda.synchronize()
    t1 = time.time()
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=[eos, pad], pad_token_id=pad, bos_token_id=pad, max_new_tokens=64, do_sample=False)
    model.save_pretrained(str(out), max_shard_size="4GB")
    t2 = time.time()
    print(json.dumps({"size": size, "params": sum(p.numel() for p in model.parameters()),
                      "create_s": round(t1 - t0, 1), "save_s": round(t2 - t1, 1),
                      "bytes": sum(f.stat().st_size for f in out.iterdir())}))


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(argv[0], Path(argv[1]), argv[2] if len(argv) > 2 else ("cuda" if torch.cuda.is_available() else "cpu"),
         Path(argv[3]) if len(argv) > 3 else Path(".gpu/tok"))
