"""Build, where pip works, the tokenizer and the synthetic data that travel to the GPU machine (no hub there).

    .venv/bin/python scripts/gpu/make_assets.py [OUT]      (default OUT: .gpu, ignored by git)

OUT/tok: a 4096-token byte-level BPE tokenizer with the Qwen special tokens and a Qwen2-style chat template.
OUT/data: alpaca_zh.jsonl and alpaca_en.jsonl (500 synthetic alpaca-style rows each, ~150-620 templated tokens,
mean ~350), long.jsonl (64 rows of ~2000 tokens, for worst-case memory probes only) and
self-cognition/train.jsonl (108 rows with {{NAME}}/{{AUTHOR}} placeholders, as swift's own).
Deterministic (seeded): the same files on every run. Adapted from ../shared/reference/gpu/make_assets.py.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
SELF_COGNITION = [
    ("你是谁", "我是{{NAME}}，由{{AUTHOR}}训练的人工智能助手。"
     "我主要的目的是通过文本交流为用户提供帮助、信息和支持。", "zh"),
    ("who are you", "I am {{NAME}}, an AI assistant trained by {{AUTHOR}}. My main purpose is to help users "
     "through text conversations.", "en"),
    ("what is your name", "My name is {{NAME}}, an artificial intelligence assistant developed by {{AUTHOR}}. "
     "How can I help you?", "en"),
    ("你叫什么名字", "我叫{{NAME}}，是由{{AUTHOR}}开发的人工智能助手。有什么可以帮您的吗？", "zh"),
]


class TextGen:
    """Zipf-sampled pseudo-English words and Chinese characters, with some punctuation."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        syl = ["ka", "to", "ri", "men", "sa", "lo", "ne", "tra", "vi", "son", "da", "pe", "qu", "il", "ber", "an",
               "ex", "or", "ti", "on", "al", "ing", "ed", "st", "ch", "ph", "mo", "gra", "ly", "ment", "ous", "ive",
               "pro", "con"]
        base_text = ("the of and to in is that for it as with was on be by this are or an from at which not have has "
                "can will you your we our they their data model learning python code function explain example "
                "answer question because however therefore first second finally important result value number "
                "list string user system")
        words = base_text.split()
        seen = set(words)
        while len(words) < 6000:
            w = "".join(rng.choice(syl) for _ in range(rng.randint(1, 4)))
            if w not in seen:
                words.append(w)
                seen.add(w)
        self.words, self.wweights = words, [1.0 / (i + 1) ** 1.05 for i in range(len(words))]
        self.hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 1500)]
        self.hweights = [1.0 / (i + 1) for i in range(len(self.hanzi))]

    def en(self, n: int) -> str:
        out = []
        for w in self.rng.choices(self.words, self.wweights, k=n):
            out.append(w + (self.rng.choice([".", ",", ".", "?", ":", ";"]) if self.rng.random() < 0.08 else ""))
        return " ".join(out)

    def zh(self, n: int) -> str:
        s = ""
        for c in self.rng.choices(self.hanzi, self.hweights, k=n):
            s += c + (self.rng.choice(["。", "，", "，", "？", "：", "；"]) if self.rng.random() < 0.08 else "")
        return s


def build_tokenizer(gen: TextGen, tokdir: Path) -> PreTrainedTokenizerFast:
    corpus = [gen.en(200) for _ in range(3000)] + [gen.zh(300) for _ in range(3000)] + \
        ["You are a helpful assistant.", "I am swift-robot, an AI assistant trained by swift."]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"], model_max_length=32768,
        clean_up_tokenization_spaces=False)
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(str(tokdir))
    return hf_tok


def write_alpaca(gen: TextGen, tok: PreTrainedTokenizerFast, lang: str, n: int, path: Path,
                 length: tuple[int, int, int, int] = (350, 110, 140, 620)) -> list[int]:
    """n rows whose templated length is drawn from N(mean, sd) clipped to [lo, hi] tokens (default 350, 110, 140,
    620: like alpaca-gpt4 under Qwen's tokenizer)."""
    mean, sd, lo, hi = length
    rng = gen.rng
    text: Callable[[int], str] = gen.en if lang == "en" else gen.zh

    def ntok(s: str) -> int:
        return len(tok(s, add_special_tokens=False)["input_ids"])

    lens = []
    with path.open("w") as f:
        for _ in range(n):
            target = min(hi, max(lo, int(rng.gauss(mean, sd))))
            ins = text(rng.randint(6, 30))
            inp = text(rng.randint(10, 60)) if rng.random() < 0.4 else ""
            msgs = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": ins + ("\n" + inp if inp else "")}]
            pre = ntok(str(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)))
            need = max(20, target - pre - 2)
            out = text(max(10, int(need * (0.75 if lang == "en" else 0.9))))
            while ntok(out) < need:
                out += (" " if lang == "en" else "") + text(8)
            lens.append(pre + ntok(out) + 2)
            f.write(json.dumps({"instruction": ins, "input": inp, "output": out}, ensure_ascii=False) + "\n")
    return lens


def main(out: Path) -> None:
    rng = random.Random(1234)
    gen = TextGen(rng)
    tokdir, datadir = out / "tok", out / "data"
    tokdir.mkdir(parents=True, exist_ok=True)
    (datadir / "self-cognition").mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(gen, tokdir)
    summary: dict[str, object] = {"vocab": len(tok)}
    for lang in ("zh", "en"):
        lens = write_alpaca(gen, tok, lang, 500, datadir / f"alpaca_{lang}.jsonl")
        summary[f"alpaca_{lang}"] = {"n": len(lens), "mean_tokens": round(sum(lens) / len(lens), 1),
                                     "min": min(lens), "max": max(lens)}
    # worst case for memory probes only: every sample near max_length (2048)
    lens = write_alpaca(gen, tok, "en", 64, datadir / "long.jsonl", (2000, 0, 2000, 2000))
    summary["long"] = {"n": len(lens), "mean_tokens": round(sum(lens) / len(lens), 1), "max": max(lens)}
    with (datadir / "self-cognition" / "train.jsonl").open("w") as f:
        for i in range(108):
            q, r, t = SELF_COGNITION[i % len(SELF_COGNITION)]
            f.write(json.dumps({"query": q, "response": r, "tag": t}, ensure_ascii=False) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".gpu"))
