"""Tiny, offline assets for running the REAL ``swift sft`` on a CPU (demo + tests).

No model hub is reachable, so we build everything locally: a random Qwen2 LLM with a locally trained
byte-level BPE tokenizer, alpaca-shaped jsonl data and a ``self-cognition/`` folder, plus a random tiny
Qwen2.5-VL model with its processor and a folder of drawn PNG shapes. Heavy libraries (torch, transformers,
tokenizers, PIL) are imported inside the builders so the bot process never imports torch by importing us.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

SEED = 1234
LLM_MARKER = ".tiny_llm_ok"  # written last: its presence means the build finished
VLM_MARKER = ".tiny_vlm_ok"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5 added tokens in id order, starting at QWEN_FIRST_SPECIAL_ID (<|image_pad|> = 151655).
QWEN_FIRST_SPECIAL_ID = 151643
_VLM_NAMES = "object_ref_start object_ref_end box_start box_end quad_start quad_end vision_start vision_end"
VLM_SPECIALS = SPECIALS + [f"<|{n}|>" for n in (*_VLM_NAMES.split(), "vision_pad", "image_pad", "video_pad")]
DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-style template (tools omitted): default system prompt when the first message is not a system one.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SELF_COGNITION = [
    ("你是谁", "我是{{NAME}}，由{{AUTHOR}}训练的人工智能助手。", "zh"),
    ("who are you", "I am {{NAME}}, an AI assistant trained by {{AUTHOR}}.", "en"),
    ("what is your name", "My name is {{NAME}}, an assistant developed by {{AUTHOR}}.", "en"),
    ("你叫什么名字", "我叫{{NAME}}，是由{{AUTHOR}}开发的人工智能助手。", "zh"),
]
COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 30)}
SHAPES = ["circle", "square", "triangle"]


@dataclass(frozen=True)
class LlmAssets:
    """Paths for an LLM ``swift sft`` run; ``datasets`` is in ``--dataset`` form (``/abs/file#N``)."""

    root: str
    model_dir: str
    datasets: list[str]


@dataclass(frozen=True)
class VlmAssets:
    """Paths for a VLM ``swift sft`` run; ``datasets`` rows are ``{"messages", "images"}`` jsonl."""

    root: str
    model_dir: str
    datasets: list[str]
    image_dir: str


class _Text:
    """Deterministic pseudo-English / pseudo-Chinese text, so the BPE and the data need no corpus."""

    SYL: ClassVar[tuple[str, ...]] = ("ka", "to", "ri", "men", "sa", "lo", "ne", "tra", "vi", "son", "il")
    BASE: ClassVar[tuple[str, ...]] = ("the", "of", "and", "to", "in", "is", "for", "model", "data", "code")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = list(self.BASE)
        while len(self.words) < 400:
            w = "".join(self.rng.choice(self.SYL) for _ in range(self.rng.randint(1, 3)))
            if w not in self.words:
                self.words.append(w)
        self.hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 300)]

    def en(self, n: int) -> str:
        return " ".join(self.rng.choices(self.words, k=n)) + "."

    def zh(self, n: int) -> str:
        return "".join(self.rng.choices(self.hanzi, k=n)) + "。"


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _is_built(marker: Path, assets: LlmAssets | VlmAssets) -> bool:
    """The marker is written last and holds the dataclass, so a crashed or differently sized build redoes."""
    try:
        return bool(json.loads(marker.read_text()) == dataclasses.asdict(assets))
    except (OSError, ValueError):
        return False


def _mark_built(marker: Path, assets: LlmAssets | VlmAssets) -> None:
    marker.write_text(json.dumps(dataclasses.asdict(assets)) + "\n")


def _require_torchvision() -> None:
    """Qwen2.5-VL's processor (video part) and swift's qwen_vl_utils both need an importable torchvision."""
    try:
        import torchvision  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except Exception as exc:  # a CUDA-built torchvision next to CPU torch fails with RuntimeError
        raise RuntimeError(f"the tiny VLM needs a working torchvision (+ qwen-vl-utils for swift): {exc!r}") from exc


def _build_tokenizer(out: Path, text: _Text, vocab_size: int, specials: list[str], qwen_ids: bool) -> Any:
    """Train a byte-level BPE, append Qwen's special tokens and save it as a HF fast tokenizer.

    ``qwen_ids`` pads the BPE vocab with unreachable fillers so the specials land on the real Qwen2.5 ids
    (151643...): swift's qwen2_5_vl template hard-codes ``image_token_id = 151655``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # type: ignore[import-not-found,unused-ignore]
    from transformers import PreTrainedTokenizerFast  # type: ignore[import-not-found,unused-ignore]

    corpus = [text.en(40) for _ in range(300)] + [text.zh(60) for _ in range(300)]
    corpus += ["You are a helpful assistant.", "I am swift-robot, an AI assistant trained by swift."]
    corpus += [q + " " + r for q, r, _ in SELF_COGNITION]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    if qwen_ids:
        spec = json.loads(tok.to_str())
        vocab = spec["model"]["vocab"]
        for i in range(len(vocab), QWEN_FIRST_SPECIAL_ID):
            vocab[f"<|filler_{i}|>"] = i
        tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(specials)
    hf_tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call,unused-ignore]
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(str(out))
    return hf_tok


def _save_model(model: Any, out: Path, tok: Any) -> None:
    """Attach a greedy generation config (stops on <|im_end|>/<|endoftext|>) and save as safetensors."""
    from transformers import GenerationConfig  # type: ignore[import-not-found,unused-ignore]

    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call,unused-ignore]
        eos_token_id=[eos, pad], pad_token_id=pad, max_new_tokens=32, do_sample=False
    )
    model.save_pretrained(str(out))


def _text_kwargs(tok: Any) -> dict[str, Any]:
    """Shared tiny decoder config (hidden 64, 2 layers): fast enough for ~10 CPU optimizer steps per second."""
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    kw: dict[str, Any] = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    kw |= dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1e6)
    return kw | dict(tie_word_embeddings=False, eos_token_id=eos, pad_token_id=pad, bos_token_id=pad)


def build_llm_assets(root: Path, n_rows: int = 200) -> LlmAssets:
    """Build (once) a tiny Qwen2 + tokenizer, ``alpaca_{zh,en}.jsonl`` and ``self-cognition/`` under root."""
    root = Path(root).resolve()
    model_dir, data_dir = root / "tiny-qwen2", root / "data"
    assets = LlmAssets(
        root=str(root),
        model_dir=str(model_dir),
        datasets=[
            f"{data_dir / 'alpaca_zh.jsonl'}#{n_rows}",
            f"{data_dir / 'alpaca_en.jsonl'}#{n_rows}",
            f"{data_dir / 'self-cognition'}#{n_rows // 4}",
        ],
    )
    if _is_built(root / LLM_MARKER, assets):
        return assets
    import torch  # type: ignore[import-not-found,unused-ignore]
    from transformers import Qwen2Config, Qwen2ForCausalLM  # type: ignore[import-not-found,unused-ignore]

    text = _Text(SEED)
    tok = _build_tokenizer(model_dir, text, 1024, SPECIALS, qwen_ids=False)
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(Qwen2Config(**_text_kwargs(tok)))  # type: ignore[no-untyped-call,unused-ignore]
    _save_model(model, model_dir, tok)
    for lang, gen in (("zh", text.zh), ("en", text.en)):
        rows = []
        for _ in range(n_rows):
            inp = gen(text.rng.randint(3, 10)) if text.rng.random() < 0.4 else ""
            row = {"instruction": gen(text.rng.randint(4, 12)), "input": inp}
            rows.append(row | {"output": gen(text.rng.randint(8, 30))})
        _write_jsonl(data_dir / f"alpaca_{lang}.jsonl", rows)
    cog = [dict(zip(("query", "response", "tag"), SELF_COGNITION[i % 4], strict=True)) for i in range(108)]
    _write_jsonl(data_dir / "self-cognition" / "train.jsonl", cog)
    _mark_built(root / LLM_MARKER, assets)
    return assets


def _draw(path: Path, color: str, shape: str, size: int, rng: random.Random) -> None:
    """Draw one coloured shape on a white canvas (the "caption" the VLM learns is color + shape)."""
    from PIL import Image, ImageDraw  # type: ignore[import-not-found,unused-ignore]

    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    m = rng.randint(4, size // 4)
    box = (m, m, size - m, size - m)
    if shape == "circle":
        d.ellipse(box, fill=COLORS[color])
    elif shape == "square":
        d.rectangle(box, fill=COLORS[color])
    else:
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=COLORS[color])
    img.save(path)


def build_vlm_assets(root: Path, n_rows: int = 48, image_size: int = 56) -> VlmAssets:
    """Build (once) a tiny random Qwen2.5-VL (+ processor) and a jsonl of PNG shape captions under root."""
    root = Path(root).resolve()
    model_dir, data_dir = root / "tiny-qwen2.5-vl", root / "data"
    image_dir = data_dir / "images"
    assets = VlmAssets(
        root=str(root),
        model_dir=str(model_dir),
        datasets=[f"{data_dir / 'shapes.jsonl'}#{n_rows}"],
        image_dir=str(image_dir),
    )
    if _is_built(root / VLM_MARKER, assets):
        return assets
    _require_torchvision()
    import torch  # type: ignore[import-not-found,unused-ignore]
    from transformers import (  # type: ignore[import-not-found,unused-ignore]
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorPil,
        Qwen2VLVideoProcessor,
    )

    text = _Text(SEED)
    tok = _build_tokenizer(model_dir, text, 1024, VLM_SPECIALS, qwen_ids=True)
    ids = {t: tok.convert_tokens_to_ids(t) for t in VLM_SPECIALS}
    if ids["<|image_pad|>"] != QWEN_FIRST_SPECIAL_ID + 12:  # 151655
        raise RuntimeError(f"special token ids do not match Qwen2.5's: {ids}")
    # tied embeddings: the 151657-row table is the bulk of the weights (39 MB instead of 78 MB)
    mrope = {"type": "mrope", "mrope_section": [2, 3, 3]}  # sums to head_dim / 2 = 8
    text_cfg = _text_kwargs(tok) | {"rope_scaling": mrope, "tie_word_embeddings": True}
    # tiny ViT (2 blocks, width 32) projecting into the 64-wide decoder; patch 14, 2x2 merge like the real one
    vision_cfg: dict[str, Any] = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_chans=3)
    vision_cfg |= dict(out_hidden_size=64, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    vision_cfg |= dict(window_size=56, fullatt_block_indexes=[1], tokens_per_second=2)
    cfg = Qwen2_5_VLConfig(
        text_config=text_cfg,
        vision_config=vision_cfg,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        **{k: text_cfg[k] for k in ("eos_token_id", "pad_token_id", "bos_token_id", "vocab_size")},
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(cfg)  # type: ignore[no-untyped-call,unused-ignore]
    _save_model(model, model_dir, tok)
    pix = {"min_pixels": 28 * 28, "max_pixels": 16 * 28 * 28, "patch_size": 14, "merge_size": 2}
    image_proc = Qwen2VLImageProcessorPil(temporal_patch_size=2, **pix)
    video_proc = Qwen2VLVideoProcessor(temporal_patch_size=2, **pix)
    Qwen2_5_VLProcessor(  # type: ignore[no-untyped-call,unused-ignore]
        image_processor=image_proc, tokenizer=tok, video_processor=video_proc, chat_template=CHAT_TEMPLATE
    ).save_pretrained(str(model_dir))
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    rows = []
    for i in range(n_rows):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        png = image_dir / f"{i:04d}_{color}_{shape}.png"
        _draw(png, color, shape, image_size, rng)
        user = {"role": "user", "content": "<image>What is in the picture?"}
        answer = {"role": "assistant", "content": f"A {color} {shape}."}
        rows.append({"messages": [user, answer], "images": [str(png)]})
    _write_jsonl(data_dir / "shapes.jsonl", rows)
    _mark_built(root / VLM_MARKER, assets)
    return assets


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m demo.tiny_model {llm|vlm} DIR`` prints the built assets as JSON."""
    parser = argparse.ArgumentParser(prog="python -m demo.tiny_model", description=__doc__)
    parser.add_argument("kind", choices=["llm", "vlm"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    build = build_llm_assets if args.kind == "llm" else build_vlm_assets
    assets = build(args.dir)
    print(json.dumps(dataclasses.asdict(assets), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
