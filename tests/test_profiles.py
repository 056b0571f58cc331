"""Speed profiles: what `fast` changes on which GPUs, and that it never changes what the recipe learns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.words.profiles import note_words
from runner.gpus import Gpu, GpuProbe, GpuProcess
from runner.profiles import (
    BASE_GIB,
    LAYOUTS,
    MARGIN_GIB,
    MASK_BYTES,
    NO_CHECKPOINTING_MIB,
    SAMPLES_PER_STEP,
    apply_profile,
    choose_layout,
    free_gib,
)
from runner.recipes import LLM_ARGS, Recipe, base_recipe
from runner.swift_levers import MICRO_BATCH_TOKENS
from storage.models import Kind

H100_MIB = 81559.0  # what NVML reports for an H100 80GB HBM3
LEARNING = (
    "model",
    "dataset",
    "num_train_epochs",
    "learning_rate",
    "lora_rank",
    "lora_alpha",
    "target_modules",
    "max_length",
    "warmup_ratio",
    "torch_dtype",
    "train_type",
    "system",
    "model_author",
    "model_name",
)


def applied(recipe: Recipe, profile: str, gpus: Sequence[Gpu], **kwargs: Any) -> tuple[Recipe, tuple[str, ...]]:
    """apply_profile, with its notes in the words people read."""
    changed, notes = apply_profile(recipe, profile, gpus, **kwargs)
    return changed, tuple(note_words(n) for n in notes)


def gpu(
    index: str = "0",
    used_gib: float = 0.5,
    total_mib: float | None = H100_MIB,
    name: str = "NVIDIA H100 80GB HBM3",
    procs: Sequence[GpuProcess] = (),
) -> Gpu:
    return Gpu(index, name, None if total_mib is None else used_gib * 1024, total_mib, 0.0, tuple(procs), "nvml")


def llm() -> Recipe:
    return base_recipe(Kind.LLM)


def samples_per_step(recipe: Recipe, n_gpus: int) -> int:
    return (
        int(str(recipe.value("per_device_train_batch_size")))
        * int(str(recipe.value("gradient_accumulation_steps")))
        * n_gpus
    )


def test_fast_on_an_idle_h100_changes_how_steps_are_computed_and_says_so() -> None:
    recipe, notes = applied(llm(), "fast", [gpu()], liger=True)
    assert recipe != llm()
    assert samples_per_step(recipe, 1) == SAMPLES_PER_STEP
    assert int(str(recipe.value("per_device_train_batch_size"))) > 1
    assert notes and "16 samples" in notes[0]
    assert all(recipe.value(k) == llm().value(k) for k in LEARNING)
    assert [k for k, _ in recipe.args][: len(LLM_ARGS)] == [k for k, _ in LLM_ARGS]  # the seed's order kept


def test_every_flag_the_profile_adds_is_named_in_a_note() -> None:
    recipe, notes = applied(llm(), "fast", [gpu()], liger=True, packed=True)
    text = " ".join(notes)
    changed = {k for k, v in recipe.args if llm().value(k) != v}
    words = {
        "per_device_train_batch_size": "batch",
        "gradient_accumulation_steps": "accumulation",
        "gradient_checkpointing": "checkpointing",
        "use_liger_kernel": "Liger",
        "padding_free": "padding-free",
        "attn_impl": "attention",
    }
    assert changed <= set(words)
    assert all(words[k] in text for k in changed)


@pytest.mark.parametrize("n_gpus", [1, 2, 4])
def test_padding_free_on_sdpa_where_transformers_masks_packed_samples_apart(n_gpus: int) -> None:
    gpus = [gpu(str(i), total_mib=141.0 * 1024) for i in range(n_gpus)]
    packed, notes = applied(llm(), "fast", gpus, liger=True, packed=True)
    padded, _ = applied(llm(), "fast", gpus, liger=True)
    assert packed.value("padding_free") == "true" and packed.value("attn_impl") == "sdpa"
    assert any("padding-free" in note and "same loss" in note for note in notes)
    assert padded.value("padding_free") is None  # a transformers without packed masks: padded, as before
    assert (
        packed.with_args({"padding_free": "false", "attn_impl": "x"}).args[: len(LLM_ARGS)]
        == padded.args[: len(LLM_ARGS)]
    )  # nothing else differs
    assert all(packed.value(k) == llm().value(k) for k in LEARNING)


@pytest.mark.parametrize("attn_impl", ["eager", "flash_attn"])
def test_padding_free_is_not_forced_on_an_attention_a_config_chose(attn_impl: str) -> None:
    chosen = llm().with_args({"attn_impl": attn_impl})
    recipe, _ = applied(chosen, "fast", [gpu()], liger=True, packed=True)
    assert recipe.value("attn_impl") == attn_impl and recipe.value("padding_free") is None


@pytest.mark.parametrize("profile", ["exact"])
def test_exact_runs_the_seed_flags(profile: str) -> None:
    assert applied(llm(), profile, [gpu()], liger=True) == (llm(), ())


def test_vlm_is_left_alone() -> None:
    vlm = base_recipe(Kind.VLM)
    assert applied(vlm, "fast", [gpu()], liger=True) == (vlm, ())


@pytest.mark.parametrize(
    "gpus",
    [
        [],  # no NVML: nothing known about the GPU
        [gpu(total_mib=None)],  # NVML without memory figures
        [gpu(used_gib=70.0)],  # busy: 9.6 GiB free
        [gpu(used_gib=0.2, total_mib=16 * 1024.0, name="Tesla T4")],  # too small for any layout
    ],
)
def test_unknown_busy_or_small_gpus_run_the_seed_flags(gpus: list[Gpu]) -> None:
    assert applied(llm(), "fast", gpus, liger=True) == (llm(), ())


def test_less_free_memory_never_gets_a_hungrier_layout() -> None:
    chosen = [choose_layout(1, free, 2048, liger=True) for free in range(0, 200, 2)]
    order = [LAYOUTS.index(c[0]) if c else len(LAYOUTS) for c in chosen]
    assert order == sorted(order, reverse=True)  # more free memory: the same layout or a faster one


def test_without_liger_installed_the_flag_is_never_added() -> None:
    recipe, notes = applied(llm(), "fast", [gpu()], liger=False)
    assert recipe.value("use_liger_kernel") is None
    assert not any("Liger" in n for n in notes)
    assert samples_per_step(recipe, 1) == SAMPLES_PER_STEP


def test_liger_turned_on_by_the_config_is_used_without_a_note() -> None:
    with_liger = llm().with_args({"use_liger_kernel": "true"})
    recipe, notes = applied(with_liger, "fast", [gpu()], liger=False)
    assert recipe.value("use_liger_kernel") == "true"
    assert not any("Liger" in n for n in notes)


def test_a_config_that_changed_the_step_size_is_left_alone() -> None:
    changed = llm().with_args({"gradient_accumulation_steps": "8"})
    assert applied(changed, "fast", [gpu()], liger=True) == (changed, ())


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_several_gpus_keep_16_samples_a_step(n: int) -> None:
    gpus = [gpu(str(i)) for i in range(n)]
    recipe, notes = applied(llm(), "fast", gpus, liger=True)
    assert samples_per_step(recipe, n) == SAMPLES_PER_STEP
    assert f"each of {n} GPUs" in notes[0]


@pytest.mark.parametrize("n", [3, 5, 6, 7])
def test_16_samples_that_cannot_be_split_evenly_run_the_seed_flags(n: int) -> None:
    assert applied(llm(), "fast", [gpu(str(i)) for i in range(n)], liger=True) == (llm(), ())


def test_the_busiest_gpu_decides() -> None:
    roomy, _ = applied(llm(), "fast", [gpu("0"), gpu("1")], liger=True)
    one_busy, _ = applied(llm(), "fast", [gpu("0"), gpu("1", used_gib=70.0)], liger=True)
    assert roomy != llm()
    assert samples_per_step(one_busy, 2) == SAMPLES_PER_STEP  # only the split of the 16 samples changes
    assert {k for k, v in one_busy.args if llm().value(k) != v} == {"gradient_accumulation_steps"}


@given(
    n=st.sampled_from([1, 2, 4, 8]),
    free=st.floats(0, 200),
    liger=st.booleans(),
    max_length=st.sampled_from([512, 1024, 2048, 4096, 8192]),
)
def test_the_chosen_layout_fits_its_worst_case_and_keeps_16_samples(
    n: int, free: float, liger: bool, max_length: int
) -> None:
    used = H100_MIB / 1024 - free
    gpus = [gpu(str(i), used_gib=used) for i in range(n)]
    recipe = llm().with_args({"max_length": str(max_length)})
    out, _ = applied(recipe, "fast", gpus, liger=liger)
    assert samples_per_step(out, n) == SAMPLES_PER_STEP
    assert all(out.value(k) == recipe.value(k) for k in LEARNING)
    chosen = choose_layout(n, free, max_length, liger=liger)
    if chosen is None:
        changed = {k for k, v in out.args if recipe.value(k) != v}
        assert changed == (set() if n == 1 else {"gradient_accumulation_steps"})
    else:
        layout, micro = chosen
        assert layout.need_gib(micro, max_length) + MARGIN_GIB <= free
        assert out.value("per_device_train_batch_size") == str(micro)
        assert (out.value("use_liger_kernel") == "true") == layout.liger
        assert liger or not layout.liger
        assert (out.value("gradient_checkpointing") == "false") == (not layout.checkpointing)


def token_need_gib(budget: int, liger: bool) -> float:
    """A micro-batch of `budget` tokens without checkpointing: autograd's per token, the packed masks per token²."""
    return BASE_GIB + NO_CHECKPOINTING_MIB[liger] * budget / 1024 + MASK_BYTES * budget**2 / 2**30


def test_an_idle_h100_runs_each_step_by_tokens_without_checkpointing_within_its_memory() -> None:
    """Issue 31: 8 x 2 without checkpointing needs 124 GiB at max_length, so the H100 got 16 x 1 with it; with
    padding-free micro-batches memory follows their tokens, and each step's 16 samples fit one or two."""
    recipe, notes = applied(llm(), "fast", [gpu()], liger=True, packed=True)
    budget = int(dict(recipe.env)[MICRO_BATCH_TOKENS])
    assert budget > 8000  # the fixed data's steps hold 4,450 tokens on average, ~6,500 at most: one micro-batch
    free = free_gib(gpu())
    assert free is not None and token_need_gib(budget, True) + MARGIN_GIB <= free
    assert token_need_gib(budget + 1, True) + MARGIN_GIB > free  # the most that fits
    # the command is the layout chosen before, which runs where swift's process cannot split the steps
    assert (recipe.value("per_device_train_batch_size"), recipe.value("gradient_accumulation_steps")) == ("16", "1")
    assert recipe.value("gradient_checkpointing") is None and recipe.value("padding_free") == "true"
    assert any(f"at most {budget} tokens" in n and "without gradient checkpointing" in n for n in notes)


@pytest.mark.parametrize(
    ("gpus", "packed", "why"),
    [
        ([gpu(used_gib=0.0, total_mib=141.0 * 1024)], True, "8 x 2 runs without checkpointing already"),
        ([gpu()], False, "no padding-free micro-batches: memory follows micro-batch x max_length"),
        ([gpu("0"), gpu("1")], True, "several GPUs: each rank would split its steps its own way"),
        ([gpu(used_gib=49.0)], True, "30 GiB free: a sample at max_length would not fit without checkpointing"),
    ],
)
def test_no_micro_batches_by_tokens_where_they_bring_nothing_or_cannot_hold_a_sample(
    gpus: list[Gpu], packed: bool, why: str
) -> None:
    recipe, notes = applied(llm(), "fast", gpus, liger=True, packed=packed)
    assert MICRO_BATCH_TOKENS not in dict(recipe.env), why
    assert not any("by tokens" in n for n in notes)


@given(free=st.floats(0, 200), liger=st.booleans(), max_length=st.sampled_from([512, 1024, 2048, 4096, 8192]))
def test_micro_batches_by_tokens_fit_any_micro_batch_and_any_sample(free: float, liger: bool, max_length: int) -> None:
    recipe = llm().with_args({"max_length": str(max_length)})
    out, _ = apply_profile(recipe, "fast", [gpu(used_gib=H100_MIB / 1024 - free)], liger=liger, packed=True)
    if (tokens := dict(out.env).get(MICRO_BATCH_TOKENS)) is not None:
        assert max_length <= int(tokens)
        assert token_need_gib(int(tokens), out.value("use_liger_kernel") == "true") + MARGIN_GIB <= free


def test_the_seed_values_stay_in_recipes() -> None:
    seed = dict(LLM_ARGS)
    assert (seed["per_device_train_batch_size"], seed["gradient_accumulation_steps"]) == ("1", "16")
    assert "gradient_checkpointing" not in seed and "use_liger_kernel" not in seed


def test_a_probe_snapshot_feeds_the_profile() -> None:
    """What Supervisor.plan hands over: the requested GPUs as NVML saw them."""
    probe = GpuProbe(nvml=lambda: [gpu("0"), gpu("1", used_gib=79.0)])
    snap = probe.refresh()
    idle, busy = snap.get("0"), snap.get("1")
    assert idle is not None and busy is not None
    assert applied(llm(), "fast", [idle], liger=True)[0] != llm()
    assert applied(llm(), "fast", [busy], liger=True) == (llm(), ())


def test_memory_the_driver_reserves_is_not_free() -> None:
    """NVML v2 (what nvidia-smi shows): an idle H100 has 0 MiB used and ~480 MiB reserved by the driver."""
    idle = gpu(used_gib=0.0)
    reserved = Gpu("0", idle.name, 0.0, H100_MIB, 0.0, (), "nvml", memory_reserved_mib=480.0)
    assert free_gib(idle) is not None and free_gib(reserved) is not None
    assert free_gib(idle) - free_gib(reserved) == pytest.approx(480 / 1024)  # type: ignore[operator]


H200_MIB = 143771.0  # what NVML reports for an H200


@pytest.mark.parametrize(
    ("n", "total_mib", "micro", "accumulation", "checkpointing"),
    [
        (1, H200_MIB, 8, 2, False),  # 8 x 2 without checkpointing: its 124 GiB worst case fits 140 GiB
        (2, H200_MIB, 8, 1, False),  # each GPU one micro-batch of 8 a step (measured: 1.57x one GPU)
        (4, H200_MIB, 4, 1, False),
        (1, H100_MIB, 16, 1, True),  # 124 GiB does not fit 80 GB: 16 x 1 with checkpointing (38 GiB)
        (2, H100_MIB, 8, 1, True),  # 8 without checkpointing would need 124 GiB a GPU
        (4, H100_MIB, 4, 1, False),  # 4 a GPU without checkpointing needs ~70 GiB: fits 80 GB
    ],
)
def test_what_fast_picks_on_1_2_4_gpus_of_80_and_141_gib(
    n: int, total_mib: float, micro: int, accumulation: int, checkpointing: bool
) -> None:
    gpus = [gpu(str(i), used_gib=0.0, total_mib=total_mib) for i in range(n)]
    recipe, notes = applied(llm(), "fast", gpus, liger=True)
    assert recipe.value("per_device_train_batch_size") == str(micro)
    assert recipe.value("gradient_accumulation_steps") == str(accumulation)
    assert samples_per_step(recipe, n) == SAMPLES_PER_STEP
    assert (recipe.value("gradient_checkpointing") == "false") is not checkpointing
    assert recipe.value("use_liger_kernel") == "true"
    assert (f"on each of {n} GPUs" in notes[0]) is (n > 1)
    assert any("checkpointing off" in note for note in notes) is not checkpointing
